"""Training rollout after a policy or curriculum is approved: who must be trained, by when, and how many are.

The department imports what its learning system reports, as CSV or XLSX:
- counts: columns `date` and `count` (completions to date, as reported on that date);
- a roster: columns `person_id` and `completion_date`. Person ids are never stored: each becomes a keyed hash
  (HMAC-SHA256 with a key derived from the app's secret, or TRAINING_ID_KEY), so a re-import counts each person
  once and nobody can read an id back from the database, an export or a page.
The whole file is checked first; an error names its row and column and nothing is written.
"""
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from flask import current_app

from tracker.extensions import db
from tracker.models import PolicyDocument, TrainingCount, TrainingPlan, TrainingRosterEntry
from tracker.services import audit
from tracker.services.errors import ValidationFailed
from tracker.services.imports import ImportFailed, read_rows

# An ISO date, as spreadsheets write it (they add a midnight time).
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]00:00(?::00)?)?$")

COUNT_COLUMNS = {"date": ("date", "as_of", "as of"), "count": ("count", "completed", "completions")}
ROSTER_COLUMNS = {"person_id": ("person_id", "person id", "employee_id", "employee id", "id"),
                  "completion_date": ("completion_date", "completion date", "completed_on", "completed on")}
MAX_ROWS = 50_000
MAX_POPULATION = 1_000_000
APPROVED_STATES = ("approved", "in_effect")


def create_plan(doc, values, *, actor):
    """Training a population must complete once the document is approved: e.g. all sworn members, 1,200."""
    errors = {}
    if doc.state not in APPROVED_STATES:
        errors["state"] = "Training is planned for an approved document; record the approval first."
    population = " ".join((values.get("population") or "").split())
    if not population:
        errors["population"] = "Name who must be trained, e.g. “All sworn members”."
    elif len(population) > 200:
        errors["population"] = "The population must be at most 200 characters."
    size = _int(values.get("population_size"))
    if size is None or not 0 < size <= MAX_POPULATION:
        errors["population_size"] = "Give the number of people to train as a whole number, e.g. 1200."
    target_pct = _int(values.get("target_pct") or 100)
    if target_pct is None or not 0 < target_pct <= 100:
        errors["target_pct"] = "The target must be a percentage from 1 to 100."
    target_date = values.get("target_date")
    if target_date is not None and not isinstance(target_date, date):
        errors["target_date"] = "Enter the target date as YYYY-MM-DD."
    if errors:
        raise ValidationFailed(errors)
    plan = TrainingPlan(document_id=doc.id, population=population, population_size=size, target_date=target_date,
                        target_pct=target_pct)
    db.session.add(plan)
    db.session.flush()
    audit.record("training.plan", plan, agency_id=doc.agency_id, actor=actor, after={
        "document": doc.id, "population": population, "population_size": size, "target_date": target_date,
        "target_pct": target_pct})
    return plan


def _int(value):
    text = str(value).replace(",", "").strip()
    if text.endswith(".0"):  # a spreadsheet's whole number
        text = text[:-2]
    try:
        return int(text)
    except (TypeError, ValueError):
        return None


def _columns(header, wanted):
    """{canonical name: index} when every wanted column is in the header, else None."""
    found = {}
    for name, aliases in wanted.items():
        for i, h in enumerate(header):
            if h in aliases:
                found[name] = i
                break
    return found if len(found) == len(wanted) else None


def _date(text):
    text = (text or "").strip()
    if not DATE_RE.match(text):
        return None
    try:
        return date.fromisoformat(text[:10])
    except ValueError:
        return None


def person_hash(agency_id, person_id):
    """Keyed hash of a person id within an agency; the id itself is never kept."""
    key = current_app.config.get("TRAINING_ID_KEY") or current_app.config["SECRET_KEY"]
    key = hmac.new(str(key).encode(), b"training-roster-person-id", hashlib.sha256).digest()
    message = f"{agency_id}:{' '.join(person_id.split()).casefold()}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    return value.isoformat() if isinstance(value, date) else str(value).strip()


def _read(filename, data):
    """(header, [(row number, [cell text])]) from the shared CSV/XLSX reader, whichever shape it gives: a list
    of rows after the header, or (row number, values) pairs; empty rows left out, at most MAX_ROWS."""
    header, rows = read_rows(filename, data)
    header = [str(h or "").strip().lower().replace("-", "_") for h in header]
    out = []
    for index, row in enumerate(rows):
        number, values = row if (isinstance(row, tuple) and len(row) == 2 and isinstance(row[0], int)
                                 and isinstance(row[1], list | tuple)) else (index + 2, row)
        cells = [_cell(v) for v in values]
        if not any(cells):
            continue
        if len(out) == MAX_ROWS:
            raise ImportFailed(filename, [f"the file has more than {MAX_ROWS:,} rows; at most {MAX_ROWS:,} are "
                                          "imported at once"])
        out.append((number, cells))
    return header, out


def parse(filename, data, plan):
    """('counts', [(date, count)]) or ('roster', [(person id, date)]); ImportFailed names every bad row."""
    header, rows = _read(filename, data)
    counts, roster = _columns(header, COUNT_COLUMNS), _columns(header, ROSTER_COLUMNS)
    if counts is None and roster is None:
        raise ImportFailed(filename, ["expected columns date and count (completion counts), or person_id and "
                                      "completion_date (a roster); found: " + (", ".join(h for h in header if h)
                                                                               or "no header")])
    problems, parsed = [], []
    for number, cells in rows:

        def cell(index, cells=cells):
            return cells[index] if index < len(cells) else ""

        if counts is not None:
            day, n = _date(cell(counts["date"])), _int(cell(counts["count"]))
            if day is None:
                problems.append(f"row {number}, column date: “{cell(counts['date'])}” is not a date (YYYY-MM-DD)")
            if n is None or n < 0:
                problems.append(f"row {number}, column count: “{cell(counts['count'])}” is not a whole number")
            elif n > plan.population_size:
                problems.append(f"row {number}, column count: {n:,} is more than the {plan.population_size:,} "
                                "people to train")
            parsed.append((day, n))
        else:
            person, day = cell(roster["person_id"]), _date(cell(roster["completion_date"]))
            if not person:
                problems.append(f"row {number}, column person_id: empty")
            elif len(person) > 200:
                problems.append(f"row {number}, column person_id: longer than 200 characters")
            if day is None:
                problems.append(f"row {number}, column completion_date: "
                                f"“{cell(roster['completion_date'])}” is not a date (YYYY-MM-DD)")
            parsed.append((person, day))
    if problems:
        raise ImportFailed(filename, problems[:50] + ([f"… and {len(problems) - 50} more"] if len(problems) > 50
                                                      else []))
    return ("counts" if counts is not None else "roster"), parsed


def import_file(plan, agency, filename, data, *, actor):
    """Apply a counts file (a date's count replaces that date's earlier one) or a roster (each person counted
    once, at their earliest completion). Returns (kind, rows read, rows that changed something)."""
    kind, rows = parse(filename, data, plan)
    changed = 0
    if kind == "counts":
        existing = {c.as_of: c for c in db.session.execute(
            sa.select(TrainingCount).where(TrainingCount.plan_id == plan.id)).scalars()}
        for day, n in dict(rows).items():  # a date given twice: the later row wins
            row = existing.get(day)
            if row is None:
                db.session.add(TrainingCount(plan_id=plan.id, as_of=day, completed=n))
                changed += 1
            elif row.completed != n:
                row.completed = n
                changed += 1
    else:
        existing = {e.person_hash: e for e in db.session.execute(
            sa.select(TrainingRosterEntry).where(TrainingRosterEntry.plan_id == plan.id)).scalars()}
        for person, day in rows:
            key = person_hash(agency.id, person)
            entry = existing.get(key)
            if entry is None:
                existing[key] = entry = TrainingRosterEntry(plan_id=plan.id, person_hash=key, completed_on=day)
                db.session.add(entry)
                changed += 1
            elif day < entry.completed_on:
                entry.completed_on = day
                changed += 1
    db.session.flush()
    audit.record("training.import", plan, agency_id=agency.id, actor=actor,
                 after={"kind": kind, "rows": len(rows), "changed": changed, "filename": filename})
    return kind, len(rows), changed


@dataclass(frozen=True)
class Point:
    on: date
    completed: int
    pct: float


def series(plan, counts=None, roster=None):
    """Percent trained over time: reported counts, and a roster's cumulative completions per day; on a day
    with both, the larger (the roster may be partial, the count may lag)."""
    if counts is None:
        counts = db.session.execute(sa.select(TrainingCount.as_of, TrainingCount.completed)
                                    .where(TrainingCount.plan_id == plan.id)).all()
    if roster is None:
        roster = db.session.execute(
            sa.select(TrainingRosterEntry.completed_on, sa.func.count())
            .where(TrainingRosterEntry.plan_id == plan.id).group_by(TrainingRosterEntry.completed_on)).all()
    by_day = {}
    total = 0
    for day, n in sorted(roster):
        total += n
        by_day[day] = total
    for day, n in counts:
        by_day[day] = max(n, by_day.get(day, 0))
    size = plan.population_size or 1
    return [Point(day, n, round(100 * n / size, 1)) for day, n in sorted(by_day.items())]


def percent_on(points, on):
    """The last reported percentage on or before `on`, or None."""
    last = None
    for p in points:
        if p.on <= on:
            last = p
    return last


def plans_for(doc):
    """[(plan, points)] for a document, in creation order; three queries whatever the number of plans."""
    plans = db.session.execute(sa.select(TrainingPlan).where(TrainingPlan.document_id == doc.id)
                               .order_by(TrainingPlan.id)).scalars().all()
    return _with_points(plans)


def _with_points(plans):
    ids = [p.id for p in plans] or [0]
    counts, roster = {}, {}
    for plan_id, day, n in db.session.execute(sa.select(TrainingCount.plan_id, TrainingCount.as_of,
                                                        TrainingCount.completed).where(TrainingCount.plan_id.in_(ids))):
        counts.setdefault(plan_id, []).append((day, n))
    for plan_id, day, n in db.session.execute(
            sa.select(TrainingRosterEntry.plan_id, TrainingRosterEntry.completed_on, sa.func.count())
            .where(TrainingRosterEntry.plan_id.in_(ids))
            .group_by(TrainingRosterEntry.plan_id, TrainingRosterEntry.completed_on)):
        roster.setdefault(plan_id, []).append((day, n))
    return [(p, series(p, counts.get(p.id, []), roster.get(p.id, []))) for p in plans]


def agency_plans(agency):
    """[(plan, document, points)] for every training plan of the agency."""
    rows = db.session.execute(
        sa.select(TrainingPlan, PolicyDocument).join(PolicyDocument, PolicyDocument.id == TrainingPlan.document_id)
        .where(PolicyDocument.agency_id == agency.id).order_by(PolicyDocument.title, TrainingPlan.id)).all()
    docs = {plan.id: doc for plan, doc in rows}
    return [(plan, docs[plan.id], points) for plan, points in _with_points([plan for plan, _ in rows])]


def latest_by_document(agency):
    """{document id: [(plan, latest point or None)]}: how far each document's training has got, for the list."""
    result = {}
    for plan, doc, points in agency_plans(agency):
        result.setdefault(doc.id, []).append((plan, points[-1] if points else None))
    return result


def plans_with_targets(agency):
    return db.session.execute(
        sa.select(TrainingPlan, PolicyDocument).join(PolicyDocument, PolicyDocument.id == TrainingPlan.document_id)
        .where(PolicyDocument.agency_id == agency.id, TrainingPlan.target_date.is_not(None))
        .order_by(TrainingPlan.target_date, TrainingPlan.id)).all()


def chart(points, plan, width=600, height=200):
    """Coordinates for the server-drawn line chart: percent (0-100) over time against the target line and
    the target date. Returns None without points."""
    if not points:
        return None
    left, right, top, bottom = 44, width - 16, 12, height - 30
    first = points[0].on
    last = max(points[-1].on, plan.target_date or points[-1].on)
    span = max((last - first).days, 1)

    def x(day):
        return round(left + (right - left) * (day - first).days / span, 1)

    def y(pct):
        return round(bottom - (bottom - top) * min(pct, 100) / 100, 1)

    return {
        "width": width, "height": height, "left": left, "right": right, "top": top, "bottom": bottom,
        "line": " ".join(f"{x(p.on)},{y(p.pct)}" for p in points),
        "dots": [(x(p.on), y(p.pct), p) for p in points],
        "target_y": y(plan.target_pct), "target_x": x(plan.target_date) if plan.target_date else None,
        "ticks": [(y(v), v) for v in (0, 25, 50, 75, 100)], "first": first, "last": last,
    }
