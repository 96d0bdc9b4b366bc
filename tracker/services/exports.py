"""Exports: requirement matrix (CSV, XLSX), calendar feed (iCalendar), evidence package (zip)."""
import csv
import hashlib
import io
import json
import re
import tempfile
import zipfile
from datetime import date, timedelta

import sqlalchemy as sa
from icalendar import Calendar, Event

from tracker.extensions import db
from tracker.models import (
    STATUSES,
    ComplianceLevel,
    DecreeSection,
    Evidence,
    Finding,
    Instrument,
    Module,
    MonitoringPeriod,
    Occurrence,
    Recommendation,
    Requirement,
    RequirementLink,
    ResponsibleEntity,
    User,
    utcnow,
)
from tracker.services import monitoring
from tracker.services.deadlines import cadence_label
from tracker.storage import get_store

MATRIX_COLUMNS = ("Requirement", "Title", "Citation", "Module", "Status", "Owner", "Due date", "Latest finding",
                  "Evidence (current)", "Evidence accepted", "Evidence submitted", "Evidence returned", "Terminated",
                  # Issue 12: the decree's own structure and wording; "Due date" is a recurring duty's next one.
                  "Instrument", "Section", "Responsible entity", "Deadline as written", "Recurs",
                  "Implements (catalog)", "Text")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value):
    """Spreadsheet formula injection: a text cell starting with = + - @ (or tab/CR) is prefixed with '."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def matrix_rows(agency, batch_size=1000):
    """Yield one list per requirement, in decree order, a page of `batch_size` rows at a time, each page read
    after the last (sort_key, id): nothing is loaded before the first row and memory stays flat (100,000
    rows: first row in milliseconds). A PostgreSQL server-side cursor planned the whole export first (the
    first row after 1.5 s); a LIMIT page is planned for its own rows. The latest filed finding and the
    evidence counts are correlated subqueries, each an index lookup per row."""
    after = None
    while True:
        page = db.session.execute(_matrix_page(agency, after, batch_size)).all()
        for row in page:
            yield _matrix_row(row)
        if len(page) < batch_size:
            return
        after = (page[-1].sort_key, page[-1].id)


def _matrix_row(row):
    (code, title, citation, module, status, owner, due, finding, total, accepted, submitted, returned,
     terminated, instrument, section, entity, deadline, cadence, links, text) = row[:20]
    return [code, title, citation, module, STATUSES.get(status, status), owner or "",
            due.isoformat() if due else "", finding or "", total, accepted, submitted, returned,
            terminated.isoformat() if terminated else "", instrument, section or "", entity or "", deadline,
            cadence_label(cadence), "; ".join(sorted(links.split("; "))) if links else "", text]


def _matrix_page(agency, after, size):
    query = (sa.select(Requirement.code, Requirement.title, Requirement.citation_text, Module.name,
                       Requirement.status, sa.func.coalesce(sa.func.nullif(User.name, ""), User.email),
                       Requirement.due_date, _latest_finding(), *_evidence_counts(), Requirement.terminated_at,
                       Instrument.short_name, DecreeSection.label, ResponsibleEntity.name, Requirement.deadline_text,
                       Requirement.cadence_months, _catalog_links(), Requirement.summary, Requirement.sort_key,
                       Requirement.id)
             .join(Module, Module.id == Requirement.module_id)
             .join(Instrument, Instrument.id == Requirement.instrument_id)
             .outerjoin(DecreeSection, DecreeSection.id == Requirement.section_id)
             .outerjoin(ResponsibleEntity, ResponsibleEntity.id == Requirement.entity_id)
             .outerjoin(User, User.id == Requirement.owner_id)
             .where(Requirement.agency_id == agency.id)
             .order_by(Requirement.sort_key, Requirement.id).limit(size))
    if after is not None:
        query = query.where(sa.tuple_(Requirement.sort_key, Requirement.id) > sa.tuple_(*after))
    return query


def _catalog_links():
    """"CIT-001; CIT-004": the catalog recommendations the paragraph implements (sorted by the caller)."""
    return (sa.select(sa.func.aggregate_strings(Recommendation.code, "; "))
            .select_from(RequirementLink).join(Recommendation, Recommendation.id == RequirementLink.recommendation_id)
            .where(RequirementLink.requirement_id == Requirement.id)
            .correlate(Requirement).scalar_subquery())


def _latest_finding():
    """"Level (period)" of the requirement's current finding in its most recent filed period."""
    return (sa.select(ComplianceLevel.label + " (" + MonitoringPeriod.name + ")")
            .select_from(Finding)
            .join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
            .join(ComplianceLevel, ComplianceLevel.id == Finding.level_id)
            .where(Finding.requirement_id == Requirement.id, monitoring.counted(period=MonitoringPeriod))
            .order_by(MonitoringPeriod.end_date.desc(), Finding.id.desc()).limit(1)
            .correlate(Requirement).scalar_subquery())


def _evidence_counts():
    """Current (not superseded) evidence of the requirement: all, accepted, submitted, returned."""
    def count(*conditions):
        return (sa.select(sa.func.count()).select_from(Evidence)
                .where(Evidence.requirement_id == Requirement.id, Evidence.superseded.is_(False), *conditions)
                .correlate(Requirement).scalar_subquery())
    return [count(), *(count(Evidence.review_state == state) for state in ("accepted", "submitted", "returned"))]


def csv_stream(rows, columns=MATRIX_COLUMNS):
    """Yield CSV text chunk by chunk; UTF-8 with BOM so spreadsheet programs detect the encoding."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    yield "\ufeff"
    writer.writerow(columns)
    for row in rows:
        writer.writerow([neutralise(v) for v in row])
        if buffer.tell() > 16384:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def sheet_name(text, used):
    """A title Excel accepts: none of / \\ ? * [ ] :, not starting or ending with an apostrophe, 31 characters at
    most, not the reserved "History", and unique in the workbook (case-insensitively). `used` collects them."""
    name = re.sub(r"[/\\?*\[\]:]", "-", text or "").strip().strip("'").strip()[:31].strip().strip("'")
    if not name or name.lower() == "history":
        name = "Requirements"
    base, n = name, 2
    while name.lower() in used:
        suffix = f" ({n})"
        name, n = base[:31 - len(suffix)] + suffix, n + 1
    used.add(name.lower())
    return name


def xlsx_file(rows, title, columns=MATRIX_COLUMNS, extra_sheets=()):
    """Write an XLSX (openpyxl write-only mode) to a temporary file and return it, rewound.
    `extra_sheets`: further (title, columns, rows) sheets, e.g. the document requests (issue 13)."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
    from openpyxl.styles import Font

    workbook = Workbook(write_only=True)
    used = set()
    for sheet_title, sheet_columns, sheet_rows in ((title, columns, rows), *extra_sheets):
        sheet = workbook.create_sheet(title=sheet_name(sheet_title, used))
        header = []
        for name in sheet_columns:
            cell = WriteOnlyCell(sheet, value=name)
            cell.font = Font(bold=True)
            header.append(cell)
        sheet.append(header)
        for row in sheet_rows:
            # Text cells are stored as strings; neutralised ones can never be read back as formulas.
            # XML forbids most control characters; openpyxl refuses them rather than writing a broken file.
            sheet.append([ILLEGAL_CHARACTERS_RE.sub("", v) if isinstance(v, str) else v
                          for v in (neutralise(v) for v in row)])
    out = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)
    workbook.save(out)
    out.seek(0)
    return out


def calendar(agency, base_url):
    """An iCalendar of the agency's dated, active requirements (all-day events on the due date; the
    description says the status, so implemented ones stay visible as met deadlines)."""
    cal = Calendar()
    cal.add("prodid", "-//Consent-decree tracker//deadlines//EN")
    cal.add("version", "2.0")
    cal.add("x-wr-calname", f"{agency.name}: decree deadlines")
    stamp = utcnow()
    rows = db.session.execute(
        sa.select(Requirement.id, Requirement.code, Requirement.title, Requirement.due_date, Requirement.status,
                  Requirement.citation_text, Requirement.cadence_months, Occurrence.label)
        .outerjoin(Occurrence, sa.and_(Occurrence.requirement_id == Requirement.id, Occurrence.state == "open"))
        .where(Requirement.agency_id == agency.id, Requirement.due_date.is_not(None),
               Requirement.terminated_at.is_(None))
        .order_by(Requirement.due_date)
    ).all()
    for r in rows:
        event = Event()
        event.add("uid", f"requirement-{r.id}@{agency.slug}.decree-tracker")
        event.add("dtstamp", stamp)
        event.add("dtstart", r.due_date)
        event.add("dtend", day_after(r.due_date))
        # A recurring duty shows its open occurrence (the next due date); completing it moves the event.
        event.add("summary", f"{r.code} due: {r.title}" + (f" ({r.label})" if r.label else ""))
        recurs = f"\nRecurs: {cadence_label(r.cadence_months)}" if r.cadence_months else ""
        event.add("description", f"Status: {STATUSES.get(r.status, r.status)}{recurs}\nCitation: {r.citation_text}")
        event.add("url", f"{base_url}agencies/{agency.slug}/requirements/{r.id}")
        cal.add_component(event)
    from tracker.services.meetings import calendar_events  # issue 14: the committee's meetings

    for event in calendar_events(agency, base_url, stamp):
        cal.add_component(event)
    from tracker.services import policies  # issue 16: review comments due, comment windows, training targets

    for uid, day, summary, description, path in policies.calendar_events(agency):
        event = Event()
        for name, value in (("uid", f"{uid}@{agency.slug}.decree-tracker"), ("dtstamp", stamp), ("dtstart", day),
                            ("dtend", day_after(day)), ("summary", summary), ("description", description),
                            ("url", f"{base_url}{path}")):
            event.add(name, value)
        cal.add_component(event)
    return cal.to_ical()


def day_after(day):
    """The all-day event's end; the last representable day ends on itself rather than overflowing (a date
    stored before dates were bounded to 1900-2200 must not take a whole feed down)."""
    return day + timedelta(days=1) if day < date.max else day


def period_evidence(agency, period, shareable_only=False):
    """Current evidence whose period covered overlaps the monitoring period (or, with no period
    covered, that was added during it)."""
    start, end = period.start_date, period.end_date
    overlap = sa.or_(
        sa.and_(Evidence.period_start.is_not(None), Evidence.period_start <= end,
                sa.func.coalesce(Evidence.period_end, Evidence.period_start) >= start),
        sa.and_(Evidence.period_start.is_(None), Evidence.period_end.is_not(None), Evidence.period_end >= start,
                Evidence.period_end <= end),
        sa.and_(Evidence.period_start.is_(None), Evidence.period_end.is_(None),
                sa.func.date(Evidence.created_at) >= start, sa.func.date(Evidence.created_at) <= end),
    )
    query = (sa.select(Evidence, Requirement.code).join(Requirement, Requirement.id == Evidence.requirement_id)
             .where(Requirement.agency_id == agency.id, Evidence.superseded.is_(False), overlap)
             .order_by(Requirement.code, Evidence.id))
    if shareable_only:
        query = query.where(Evidence.visibility == "shareable")
    return db.session.execute(query).all()


def evidence_package(agency, period, checkpoint=None):
    """A zip of the period's shareable evidence files plus manifest.json and MANIFEST.txt (names, hashes), and the
    signed audit checkpoint (a document of services/checkpoints.py) when one is given."""
    store = get_store()
    items = period_evidence(agency, period, shareable_only=True)
    out = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
    try:
        count = _write_package(out, store, agency, period, items, checkpoint)
    except BaseException:
        out.close()  # a file that fails its hash check (CorruptBlob) ends the package; nothing half-made is kept
        raise
    out.seek(0)
    return out, count


def _write_package(out, store, agency, period, items, checkpoint):
    manifest = []
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        used = set()
        for evidence, code in items:
            entry = {"requirement": code, "title": evidence.title, "kind": evidence.kind,
                     "review_state": evidence.review_state, "added": evidence.created_at.isoformat()}
            if evidence.kind == "link":
                entry["url"] = evidence.url
            elif store.exists(evidence.sha256):
                folder = re.sub(r"[^A-Za-z0-9._-]+", "_", code.replace("¶", "para")).strip("._") or "requirement"
                name = f"{folder}/{evidence.id}-{re.sub(r'[^A-Za-z0-9._-]+', '_', evidence.filename or 'file')}"
                while name in used:
                    name = "_" + name
                used.add(name)
                digest = hashlib.sha256()
                with store.open(evidence.sha256) as src, archive.open(name, "w") as dst:
                    while chunk := src.read(1024 * 1024):
                        digest.update(chunk)
                        dst.write(chunk)
                entry.update(file=name, sha256=digest.hexdigest(), size_bytes=evidence.size_bytes)
            else:
                entry["missing"] = True
            manifest.append(entry)
        header = {"agency": agency.name, "period": period.name, "start": period.start_date.isoformat(),
                  "end": period.end_date.isoformat(), "generated_at": utcnow().isoformat() + "Z",
                  "items": manifest, "audit_checkpoint": checkpoint}
        archive.writestr("manifest.json", json.dumps(header, indent=2, ensure_ascii=False))
        lines = [f"{agency.name} - {period.name} - shareable evidence", "sha256  file  (requirement: title)"]
        lines += [f"{e.get('sha256', '-' * 64)}  {e.get('file') or e.get('url')}  ({e['requirement']}: {e['title']})"
                  for e in manifest]
        archive.writestr("MANIFEST.txt", "\n".join(lines) + "\n")
    return len(manifest)
