"""Import an agency's own decree paragraphs (CSV or XLSX) as custom requirements, as the decree writes them.

Columns (header row, any order, any case; "Due date" = "due_date"): paragraph (required), title, text, module,
section, instrument, entity, deadline (aliases: due, due_date), catalog. The paragraph id is kept as typed
(tracker/services/paragraphs.py); deadlines and recurring duties are read by tracker/services/deadlines.py.

Bounded: at most MAX_BYTES and MAX_ROWS rows, read as a stream and refused as soon as a limit is passed; an XLSX
is checked for its zip entry count and uncompressed size before it is opened. The whole file is validated before
anything is written; any error names row and column and nothing is written. Re-importing the same file changes
nothing; an edited row updates its requirement, and the import's audit event lists what changed.
"""
import csv
import io
import re
import zipfile
from datetime import date, datetime
from types import SimpleNamespace

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import DeadlineChange, DecreeSection, Module, Requirement, RequirementLink, ResponsibleEntity
from tracker.services import audit, deadlines, decree, occurrences
from tracker.services.agencies import derive_due_date
from tracker.services.errors import ValidationFailed
from tracker.services.paragraphs import display_id, id_key

COLUMNS = ("paragraph", "title", "text", "module", "section", "instrument", "entity", "deadline", "due", "due_date",
           "catalog")
DEADLINE_COLUMNS = ("deadline", "due", "due_date")
DEFAULT_MODULE = "additional"
MAX_ROWS = 5000
MAX_BYTES = 5 * 1024 * 1024
MAX_XLSX_ENTRIES = 500
MAX_XLSX_UNCOMPRESSED = 50 * 1024 * 1024
MAX_TEXT = 20000
MAX_COLUMNS = 64
# Control characters (other than tab and newline) never belong in decree text; they break XML exports.
CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
FIELDS = ("code", "title", "summary", "module_id", "instrument_id", "section_id", "entity_id", "deadline_text",
          "deadline_amount", "deadline_unit", "cadence_months", "cadence_text", "citation_text")


class ImportFailed(Exception):
    def __init__(self, filename, problems):
        self.filename = filename
        self.problems = problems
        super().__init__(f"{filename}: " + "; ".join(problems))


def _bounded(filename, rows, max_rows):
    """Yield (row number, values) for non-blank rows; stop at once past max_rows (blank rows count too, so a
    sheet of millions of empty rows is refused as quickly as one of full rows)."""
    for number, row in enumerate(rows, start=1):
        if number > max_rows + 1:
            raise ImportFailed(filename, [f"the file has more than {max_rows:,} rows, the limit for one import; "
                                          "split it into several files"])
        if any(v is not None and str(v).strip() for v in row):
            yield number, row


def _csv_rows(filename, data):
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportFailed(filename, ["the file is not UTF-8 text; save it as CSV UTF-8"]) from None
    first = text[:text.find("\n")] if "\n" in text else text
    if first.strip().lower().startswith("sep="):  # Excel's delimiter hint line
        text = text[len(first) + 1:]
        first = text[:text.find("\n")] if "\n" in text else text
    delimiter = ";" if first.count(";") > first.count(",") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        yield from reader
    except csv.Error as exc:
        raise ImportFailed(filename, [f"row {reader.line_num}: the CSV cannot be read ({exc})"]) from None


def _check_xlsx(filename, data):
    """Like evidence packages: a zip with the workbook parts, bounded in entries and uncompressed size."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            entries = archive.infolist()
            if len(entries) > MAX_XLSX_ENTRIES:
                raise ImportFailed(filename, [f"the workbook has {len(entries):,} parts; at most "
                                              f"{MAX_XLSX_ENTRIES} are accepted"])
            if sum(e.file_size for e in entries) > MAX_XLSX_UNCOMPRESSED:
                raise ImportFailed(filename, [f"the workbook expands to more than "
                                              f"{MAX_XLSX_UNCOMPRESSED // (1024 * 1024)} MB; it is refused"])
            names = {e.filename for e in entries}
    except zipfile.BadZipFile:
        raise ImportFailed(filename, ["the file is not a readable XLSX workbook"]) from None
    if "xl/workbook.xml" not in names:
        raise ImportFailed(filename, ["the file is not a readable XLSX workbook"])


def _no_size_scan(sheet):
    """Replaces openpyxl's ReadOnlyWorksheet._get_size, which parses the WHOLE sheet when it has no <dimension>
    element before a single row is read (300,000 one-cell rows: 2.3 s; a 50 MB sheet far longer). Rows are
    streamed and counted here instead, so the sheet's size is never needed: it stays unknown."""


def _xlsx_rows(filename, data):
    from openpyxl import load_workbook
    from openpyxl.worksheet._read_only import ReadOnlyWorksheet

    _check_xlsx(filename, data)
    ReadOnlyWorksheet._get_size = _no_size_scan  # the only reader of workbooks in the app (see _no_size_scan)
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        sheet = workbook.worksheets[0]
    except Exception:  # noqa: BLE001 - openpyxl raises many kinds for a broken file
        raise ImportFailed(filename, ["the file is not a readable XLSX workbook"]) from None
    try:
        # At most MAX_COLUMNS values a row: a cell in column XFD must not make every row 16,384 wide.
        yield from sheet.iter_rows(values_only=True, max_col=MAX_COLUMNS)
    except Exception:  # noqa: BLE001
        raise ImportFailed(filename, ["the file is not a readable XLSX workbook"]) from None
    finally:
        workbook.close()


def read_rows(filename, data, max_rows=MAX_ROWS, max_bytes=MAX_BYTES):
    """(header, iterator of (row number, values)). Values are strings, or dates for XLSX date cells. Shared with
    other imports (training rosters), which may pass their own limits."""
    if len(data) > max_bytes:
        raise ImportFailed(filename, [f"the file is larger than {max_bytes // (1024 * 1024)} MB, the limit for "
                                      "one import; split it into several files"])
    ext = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if ext == "csv":
        rows = _bounded(filename, _csv_rows(filename, data), max_rows)
    elif ext == "xlsx":
        rows = _bounded(filename, _xlsx_rows(filename, data), max_rows)
    else:
        raise ImportFailed(filename, ["only .csv and .xlsx files can be imported"])
    first = next(rows, None)
    if first is None:
        raise ImportFailed(filename, ["the file is empty"])
    header = [re.sub(r"[\s-]+", "_", str(h or "").strip().lower()) for h in first[1]]
    return header, rows


def _cell_text(value):
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value.isoformat()
    text = CONTROL_RE.sub(" ", str(value)).replace("\r\n", "\n").replace("\r", "\n")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.split("\n"))).strip()


def _check_header(filename, header):
    problems = []
    unknown = [h for h in header if h and h not in COLUMNS]
    if unknown:
        problems.append(f"unknown column(s) {', '.join(unknown)} (expected: {', '.join(COLUMNS)})")
    if "paragraph" not in header:
        problems.append("missing column(s): paragraph")
    if "title" not in header and "text" not in header:
        problems.append("missing column(s): title or text (one of them names the requirement)")
    if problems:
        raise ImportFailed(filename, problems)


class _Context:
    """What rows are checked against: the agency's modules, instruments, sections, entities, the catalog."""

    def __init__(self, agency, catalog_codes):
        self.agency = agency
        self.modules = {m.key: m for m in db.session.execute(sa.select(Module)).scalars()}
        self.instruments = decree.instruments(agency)
        self.recommendations = decree.recommendations_by_code(sorted(catalog_codes))

    def instrument(self, name, where, problems):
        if not name:
            if len(self.instruments) == 1:
                return self.instruments[0]
            names = ", ".join(f"'{i.short_name}'" for i in self.instruments)
            problems.append(f"{where}, column 'instrument': required, because the agency has "
                            f"{len(self.instruments)} instruments ({names})")
            return None
        for inst in self.instruments:
            if name.lower() in (inst.short_name.lower(), inst.title.lower(), inst.case_number.lower()):
                return inst
        names = ", ".join(f"'{i.short_name}'" for i in self.instruments)
        problems.append(f"{where}, column 'instrument': unknown instrument '{name}' (the agency has {names}; "
                        "an administrator adds others on the decree structure page)")
        return None


def _title(title, text):
    if title:
        return " ".join(title.split())
    first = text.split("\n", 1)[0].strip()
    if len(first) <= 120:
        return first
    return first[:117].rsplit(" ", 1)[0] + "…"


def _schedule(deadline, instrument, where, column, problems):
    """(due date, derived from the effective date) for a parsed deadline; a recurring one's first due date."""
    if deadline.on is not None:
        return deadline.on, False
    if deadline.blank or instrument is None:
        return None, not deadline.blank
    if instrument.effective_date is None:
        problems.append(f"{where}, column '{column}': '{deadline.text}' counts from the effective date, and "
                        f"'{instrument.short_name}' has none yet (an administrator sets it on the decree "
                        "structure page)")
        return None, True
    amount, unit = (deadline.amount, deadline.unit) if deadline.relative else (deadline.cadence_months, "months")
    return derive_due_date(instrument.effective_date,
                           SimpleNamespace(deadline_amount=amount, deadline_unit=unit)), True


def _row_record(ctx, cell, where, problems):
    paragraph, title, text = cell("paragraph"), cell("title"), cell("text")
    if not paragraph:
        problems.append(f"{where}, column 'paragraph': required")
    elif len(paragraph) > 50 or "\n" in paragraph:
        problems.append(f"{where}, column 'paragraph': at most 50 characters on one line")
    title = _title(title, text)
    if not title:
        problems.append(f"{where}, column 'title': required when the row has no text")
    elif len(title) > 300:
        problems.append(f"{where}, column 'title': at most 300 characters")
    if len(text) > MAX_TEXT:
        problems.append(f"{where}, column 'text': at most {MAX_TEXT:,} characters")
    module_key = cell("module").lower() or DEFAULT_MODULE
    if not cell("module") and module_key not in ctx.modules:
        problems.append(f"{where}, column 'module': required (use one of {', '.join(ctx.modules)})")
    elif module_key not in ctx.modules:
        problems.append(f"{where}, column 'module': unknown module '{module_key}' (use one of "
                        f"{', '.join(ctx.modules)})")
    section, entity = " ".join(cell("section").split()), " ".join(cell("entity").split())
    if len(section) > 300:
        problems.append(f"{where}, column 'section': at most 300 characters")
    if len(entity) > 200:
        problems.append(f"{where}, column 'entity': at most 200 characters")
    instrument = ctx.instrument(" ".join(cell("instrument").split()), where, problems)
    given = [(c, cell.raw(c)) for c in DEADLINE_COLUMNS if cell(c)]
    if len(given) > 1:
        problems.append(f"{where}: give either {' or '.join(repr(c) for c, _ in given)}, not both")
    deadline, column = deadlines.Deadline(), given[0][0] if given else "deadline"
    if len(given) == 1:
        try:
            deadline = deadlines.parse(given[0][1])
        except deadlines.DeadlineError as exc:
            problems.append(f"{where}, column '{column}': {exc}")
    due, derived = _schedule(deadline, instrument, where, column, problems)
    catalog = decree.split_codes(cell("catalog"))
    for code in catalog:
        if code not in ctx.recommendations:
            problems.append(f"{where}, column 'catalog': there is no catalog recommendation '{code}'")
    return {"paragraph": paragraph, "title": title, "summary": text, "module_key": module_key,
            "section": section, "entity": entity, "instrument": instrument, "deadline": deadline, "due": due,
            "derived": derived, "catalog": catalog}


class _Cell:
    def __init__(self, index, row):
        self.index, self.row = index, row

    def raw(self, name):
        i = self.index.get(name)
        value = self.row[i] if i is not None and i < len(self.row) else None
        return value if isinstance(value, (date, datetime)) else _cell_text(value)

    def __call__(self, name):
        i = self.index.get(name)
        return _cell_text(self.row[i]) if i is not None and i < len(self.row) else ""


def parse(filename, data, agency):
    header, rows = read_rows(filename, data)
    _check_header(filename, header)
    index = {name: header.index(name) for name in COLUMNS if name in header}
    rows = list(rows)  # bounded by MAX_ROWS
    catalog_codes = set()
    if "catalog" in index:
        for _, row in rows:
            catalog_codes.update(decree.split_codes(_Cell(index, row)("catalog")))
    ctx = _Context(agency, catalog_codes)
    problems, seen, records = [], {}, []
    for number, row in rows:
        where = f"row {number}"
        record = _row_record(ctx, _Cell(index, row), where, problems)
        key = id_key(record["paragraph"])
        if record["paragraph"]:
            if key in seen:
                problems.append(f"{where}, column 'paragraph': '{record['paragraph']}' already appears in row "
                                f"{seen[key]}")
            seen.setdefault(key, number)
        records.append(record)
    if problems:
        raise ImportFailed(filename, problems)
    return records, ctx, "catalog" in index


def _values(agency, rec, ctx, sections, entities):
    d = rec["deadline"]
    code = display_id(rec["paragraph"])
    recurring = d.cadence_months is not None
    amount, unit = (d.amount, d.unit) if d.relative else ((d.cadence_months, "months") if recurring and d.on is None
                                                           else (None, None))
    return {
        "code": code, "title": rec["title"], "summary": rec["summary"],
        "module_id": ctx.modules[rec["module_key"]].id, "instrument_id": rec["instrument"].id,
        "section_id": sections[rec["section"].lower()].id if rec["section"] else None,
        "entity_id": entities[rec["entity"].lower()].id if rec["entity"] else None,
        "deadline_text": d.text[:300], "deadline_amount": amount, "deadline_unit": unit,
        "cadence_months": d.cadence_months, "cadence_text": d.text[:300] if recurring else "",
        "citation_text": f"{rec['instrument'].short_name} {code}"[:300],
    }


def _structure(agency, records):
    """Sections and entities named by the file, created when new; returns the lookups and what was created."""
    sections = {s.label.lower(): s for s in db.session.execute(
        sa.select(DecreeSection).where(DecreeSection.agency_id == agency.id)).scalars()}
    entities = {e.name.lower(): e for e in db.session.execute(
        sa.select(ResponsibleEntity).where(ResponsibleEntity.agency_id == agency.id)).scalars()}
    before = (set(sections), set(entities))
    for rec in records:
        if rec["section"]:
            decree.ensure_section(agency, rec["section"], sections)
        if rec["entity"]:
            decree.ensure_entity(agency, rec["entity"], entities)
    db.session.flush()
    created = {"sections": sorted(sections[k].label for k in set(sections) - before[0]),
               "entities": sorted(entities[k].name for k in set(entities) - before[1])}
    return sections, entities, created


def _update(req, values, rec, filename, actor):
    """Apply an edited row; returns {field: [old, new]} of what changed."""
    changed = {k: [getattr(req, k), v] for k, v in values.items() if getattr(req, k) != v}
    if not changed:
        return changed
    was_recurring = req.recurring
    opened = occurrences.open_occurrence(req) if was_recurring else None
    for k, (_old, new) in changed.items():
        setattr(req, k, new)
    # A duty already under way (an occurrence completed) keeps its next due date; its cadence applies from now on.
    under_way = req.recurring and opened is not None and opened.sequence > 1
    if {"deadline_text", "instrument_id"} & set(changed) and rec["due"] != req.due_date and not under_way:
        old_due = req.due_date
        db.session.add(DeadlineChange(requirement_id=req.id, old_date=old_due, new_date=rec["due"], actor_id=actor.id,
                                      reason=f"Import of {filename}: deadline now '{values['deadline_text']}'"[:1000]))
        changed["due_date"] = [old_due, rec["due"]]
        req.due_date, req.due_date_derived = rec["due"], rec["derived"]
        if was_recurring and req.recurring:
            occurrences.move_first(req, rec["due"], opened)
    if was_recurring and not req.recurring:
        occurrences.stop(req, opened)
    elif req.recurring and not was_recurring and req.due_date is not None:
        occurrences.start(req, req.due_date)
    return changed


def _sync_links(req, codes, ctx, current, actor):
    wanted = {ctx.recommendations[c].id for c in codes}
    have = current.get(req.id, set())
    for rec_id in wanted - have:
        db.session.add(RequirementLink(requirement_id=req.id, recommendation_id=rec_id, created_by_id=actor.id))
    for rec_id in have - wanted:
        db.session.delete(db.session.get(RequirementLink, (req.id, rec_id)))
    return wanted != have


def import_paragraphs(agency, filename, data, *, actor):
    records, ctx, with_links = parse(filename, data, agency)
    existing = {r.code_key: r for r in db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
    for rec in records:
        req = existing.get(id_key(rec["paragraph"]))
        if req is not None and req.recommendation_id is not None:
            raise ValidationFailed({"file": f"{req.code} is a catalog requirement of this agency; "
                                            "imported paragraphs need their own numbers"})
    sections, entities, created = _structure(agency, records)
    current = {}
    for req_id, rec_id in db.session.execute(
            sa.select(RequirementLink.requirement_id, RequirementLink.recommendation_id)
            .join(Requirement, Requirement.id == RequirementLink.requirement_id)
            .where(Requirement.agency_id == agency.id)).all():
        current.setdefault(req_id, set()).add(rec_id)
    added, updated, unchanged, new = [], {}, 0, []
    for rec in records:
        values = _values(agency, rec, ctx, sections, entities)
        req = existing.get(id_key(rec["paragraph"]))
        if req is None:
            req = Requirement(agency_id=agency.id, due_date=rec["due"], due_date_derived=rec["derived"], **values)
            db.session.add(req)
            new.append((req, rec))
            added.append(values["code"])
            continue
        changed = _update(req, values, rec, filename, actor)
        if with_links and _sync_links(req, rec["catalog"], ctx, current, actor):
            changed["catalog"] = ["…", rec["catalog"]]
        if changed:
            updated[req.code] = {k: [_plain(o), _plain(n)] for k, (o, n) in changed.items()}
        else:
            unchanged += 1
    db.session.flush()
    for req, rec in new:
        if req.recurring and req.due_date is not None:
            occurrences.start(req, req.due_date)
        _sync_links(req, rec["catalog"], ctx, current, actor)
    db.session.flush()
    if added or updated or created["sections"] or created["entities"]:
        audit.record("requirement.import", agency, actor=actor,
                     after={"file": filename, "added": added, "updated": sorted(updated), "changes": updated,
                            **created})
    return added, list(updated), unchanged


def _plain(value):
    return value.isoformat() if isinstance(value, date) else value
