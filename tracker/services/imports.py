"""Import an agency's own decree paragraphs (CSV or XLSX) as custom requirements.

Columns (header row, any order, case-insensitive): paragraph, title, text, module, and at most
one of due_date (YYYY-MM-DD) or deadline ("180 days", "12 months" after the effective date).
The whole file is validated first; any error names row and column and nothing is written.
Re-importing the same file changes nothing; an edited row updates its requirement.
"""
import csv
import io
import re
from datetime import date, datetime, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import Module, Requirement
from tracker.services import audit
from tracker.services.agencies import add_months
from tracker.services.errors import ValidationFailed

COLUMNS = ("paragraph", "title", "text", "module", "due_date", "deadline")
REQUIRED = ("paragraph", "title", "module")
DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(?:[ T]00:00(?::00)?)?$")  # spreadsheets add a midnight time
DEADLINE_RE = re.compile(r"^(\d{1,4})\s*(days?|months?)$", re.IGNORECASE)
MAX_ROWS = 5000
# Control characters (other than tab and newline) never belong in decree text; they break XML exports.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class ImportFailed(Exception):
    def __init__(self, filename, problems):
        self.filename = filename
        self.problems = problems
        super().__init__(f"{filename}: " + "; ".join(problems))


def read_rows(filename, data):
    """Return (header, rows) as lists of strings from CSV or XLSX bytes."""
    ext = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if ext == "csv":
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ImportFailed(filename, ["the file is not UTF-8 text; save it as CSV UTF-8"]) from None
        rows = list(csv.reader(io.StringIO(text)))
    elif ext == "xlsx":
        from openpyxl import load_workbook

        try:
            workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
            raise ImportFailed(filename, ["the file is not a readable XLSX workbook"]) from None
        sheet = workbook.worksheets[0]
        rows = [["" if v is None else (v.date().isoformat() if isinstance(v, datetime) else
                                       v.isoformat() if isinstance(v, date) else str(v)) for v in row]
                for row in sheet.iter_rows(values_only=True)]
        workbook.close()
    else:
        raise ImportFailed(filename, ["only .csv and .xlsx files can be imported"])
    rows = [r for r in rows if any(str(c).strip() for c in r)]
    if not rows:
        raise ImportFailed(filename, ["the file is empty"])
    return [str(h).strip().lower() for h in rows[0]], rows[1:]


def _code(paragraph):
    """'131(d)', '¶131(d)' and '¶ 131(d)' are the same paragraph: '¶ 131(d)'."""
    bare = paragraph.lstrip("¶").strip()
    return f"¶ {bare}" if bare else ""


def parse(filename, data, agency):
    header, rows = read_rows(filename, data)
    problems = []
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (expected: {', '.join(COLUMNS)})")
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        problems.append(f"missing column(s): {', '.join(missing)}")
    if problems:
        raise ImportFailed(filename, problems)
    if len(rows) > MAX_ROWS:
        raise ImportFailed(filename, [f"at most {MAX_ROWS} rows per file"])
    modules = {m.key: m for m in db.session.execute(sa.select(Module)).scalars()}
    index = {name: header.index(name) for name in COLUMNS if name in header}
    seen = {}
    records = []
    for number, row in enumerate(rows, start=2):
        def cell(name, row=row):
            i = index.get(name)
            value = str(row[i]) if i is not None and i < len(row) else ""
            return CONTROL_RE.sub(" ", value).strip()

        where = f"row {number}"
        paragraph, title, module_key = cell("paragraph"), cell("title"), cell("module").lower()
        for name, value in (("paragraph", paragraph), ("title", title), ("module", module_key)):
            if not value:
                problems.append(f"{where}, column '{name}': required")
        code = _code(paragraph)
        if paragraph:
            if len(paragraph) > 50:
                problems.append(f"{where}, column 'paragraph': at most 50 characters")
            if code in seen:
                problems.append(f"{where}, column 'paragraph': '{paragraph}' already appears in row {seen[code]}")
            seen.setdefault(code, number)
        if len(title) > 300:
            problems.append(f"{where}, column 'title': at most 300 characters")
        if module_key and module_key not in modules:
            problems.append(f"{where}, column 'module': unknown module '{module_key}' "
                            f"(use one of {', '.join(modules)})")
        due = _due_date(cell("due_date"), cell("deadline"), agency, where, problems)
        records.append({"code": code,
                        "title": title, "summary": cell("text"), "module_key": module_key, "due_date": due})
    if problems:
        raise ImportFailed(filename, problems)
    return records, modules


def _due_date(due_text, deadline_text, agency, where, problems):
    """The row's due date from a date or a deadline relative to the effective date; None when blank or wrong."""
    if due_text and deadline_text:
        problems.append(f"{where}: give either 'due_date' or 'deadline', not both")
    elif due_text:
        if DATE_RE.match(due_text):
            try:
                return date.fromisoformat(due_text[:10])
            except ValueError:
                pass
        problems.append(f"{where}, column 'due_date': '{due_text}' is not a date like 2026-03-31")
    elif deadline_text:
        match = DEADLINE_RE.match(deadline_text)
        if not match:
            problems.append(f"{where}, column 'deadline': '{deadline_text}' is not like '180 days' or '12 months'")
        elif agency.effective_date is None:
            problems.append(f"{where}, column 'deadline': the agency has no effective date to count from")
        else:
            amount, unit = int(match.group(1)), match.group(2).lower()
            return (add_months(agency.effective_date, amount) if unit.startswith("month")
                    else agency.effective_date + timedelta(days=amount))
    return None


def import_paragraphs(agency, filename, data, *, actor):
    records, modules = parse(filename, data, agency)
    existing = {r.code: r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
    added, updated, unchanged = [], [], 0
    for rec in records:
        req = existing.get(rec["code"])
        values = {"title": rec["title"], "summary": rec["summary"], "module_id": modules[rec["module_key"]].id,
                  "citation_text": f"{agency.name} decree {rec['code']}"[:300]}
        if req is None:
            req = Requirement(agency_id=agency.id, instrument_id=agency.primary_instrument.id, code=rec["code"],
                              due_date=rec["due_date"],
                              due_date_derived=False, **values)
            db.session.add(req)
            added.append(rec["code"])
            continue
        if req.recommendation_id is not None:
            raise ValidationFailed({"file": f"{rec['code']} is a catalog requirement of this agency; "
                                            "imported paragraphs need their own numbers"})
        changed = {k: v for k, v in values.items() if getattr(req, k) != v}
        # The due date is only set on first import; later moves go through deadline changes with a reason.
        if changed:
            for k, v in changed.items():
                setattr(req, k, v)
            updated.append(rec["code"])
        else:
            unchanged += 1
    db.session.flush()
    if added or updated:
        audit.record("requirement.import", agency, actor=actor,
                     after={"file": filename, "added": added, "updated": updated})
    return added, updated, unchanged
