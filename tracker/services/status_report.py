"""The agency's status report for a reporting period, drafted from the tracker.

`build()` gathers one plain structure (cover, summary by module with the latest FILED finding, one section per
requirement in decree order with what changed in the period, open deadlines ahead, an appendix of evidence with
SHA-256); `to_docx()`, `to_pdf()` and the HTML page render that same structure. Nothing in it depends on the
clock or on row order the database happens to return: the same data gives the same text, and the DOCX and PDF
carry the report's date (the period's last day) as their creation date, so they come out byte-identical too.
"""
import io
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import (
    APPROVAL_KINDS,
    STATUSES,
    DeadlineChange,
    Evidence,
    Finding,
    Indicator,
    IndicatorValue,
    Module,
    MonitoringPeriod,
    PolicyDocument,
    PolicyVersion,
    Requirement,
    StatusChange,
)
from tracker.models.indicators import indicator_requirement
from tracker.models.policies import policy_document_requirement
from tracker.services import monitoring, policies, training
from tracker.services.errors import ValidationFailed

DEFAULT_DAYS = 182
MAX_DAYS = 3 * 366


@dataclass(frozen=True)
class ModuleRow:
    name: str
    total: int
    by_status: tuple          # ((label, count), …) in STATUSES order
    findings: str             # "Partial 3, Substantial 1" from the latest filed findings, or "None filed"


@dataclass(frozen=True)
class Section:
    code: str
    title: str
    module: str
    citation: str
    status: str               # at the end of the period
    due: str
    finding: str              # the latest filed finding up to the end of the period
    changes: tuple            # lines, oldest first


@dataclass(frozen=True)
class Deadline:
    on: date
    what: str
    detail: str


@dataclass(frozen=True)
class EvidenceItem:
    code: str
    title: str
    added: date
    kind: str
    sha256: str
    location: str             # file name or link


@dataclass(frozen=True)
class Report:
    agency: str
    decree: str
    start: date
    end: date
    period_name: str
    filed_period: str
    summary: tuple
    sections: tuple
    deadlines: tuple
    evidence: tuple
    counts: dict = field(default_factory=dict)

    @property
    def title(self):
        return f"{self.agency}: status report, {self.start.isoformat()} to {self.end.isoformat()}"

    @property
    def report_date(self):
        return self.end


def default_range(agency, today):
    """The last monitoring period that has ended (else the latest one); without periods, the last half year."""
    periods = monitoring.periods(agency)
    ended = [p for p in periods if p.end_date <= today]
    period = (ended or periods or [None])[0]
    if period is None:
        return today - timedelta(days=DEFAULT_DAYS), today, ""
    return period.start_date, period.end_date, period.name


def resolve_range(agency, start, end, today):
    """(start, end, name) from chosen dates (either may be missing) or the default period."""
    if start is None and end is None:
        return default_range(agency, today)
    errors = {}
    if start is None:
        errors["start"] = "Enter the first day of the reporting period as YYYY-MM-DD."
    if end is None:
        errors["end"] = "Enter the last day of the reporting period as YYYY-MM-DD."
    if start and end and end < start:
        errors["end"] = "The period must end on or after its first day."
    elif start and end and (end - start).days > MAX_DAYS:
        errors["end"] = "A status report covers at most three years."
    if errors:
        raise ValidationFailed(errors)
    name = db.session.execute(sa.select(MonitoringPeriod.name).where(
        MonitoringPeriod.agency_id == agency.id, MonitoringPeriod.start_date == start,
        MonitoringPeriod.end_date == end)).scalar_one_or_none()
    return start, end, name or ""


def _bounds(start, end):
    return datetime.combine(start, time.min), datetime.combine(end + timedelta(days=1), time.min)


def build(agency, start, end, period_name=""):
    """The report's structure for the period start..end (inclusive)."""
    requirements = db.session.execute(
        sa.select(Requirement).where(Requirement.agency_id == agency.id)
        .options(sa.orm.joinedload(Requirement.module)).order_by(Requirement.sort_key, Requirement.id)
    ).scalars().all()
    findings, filed = _filed_findings(agency, end)
    statuses = _status_at_end(requirements, end)
    changes = _changes(agency, requirements, start, end)
    sections = tuple(Section(
        code=r.code, title=r.title, module=r.module.name, citation=r.citation_text or "",
        status=STATUSES.get(statuses[r.id], statuses[r.id]), due=r.due_date.isoformat() if r.due_date else "none",
        finding=(f"{findings[r.id].level.label} ({findings[r.id].period.name})" if r.id in findings
                 else "No filed finding"),
        changes=tuple(line for _key, line in sorted(changes.get(r.id, [])))) for r in requirements)
    instrument = agency.primary_instrument
    decree = ""
    if instrument is not None:
        decree = instrument.title or instrument.short_name
        if instrument.case_number:
            decree += f", Case No. {instrument.case_number}"
    evidence = _evidence(agency, start, end)
    return Report(agency=agency.name, decree=decree, start=start, end=end, period_name=period_name,
                  filed_period=filed.name if filed else "", summary=_summary(requirements, statuses, findings),
                  sections=sections, deadlines=_deadlines(agency, requirements, end), evidence=evidence,
                  counts={"requirements": len(sections), "evidence": len(evidence),
                          "changed": sum(1 for s in sections if s.changes)})


def _filed_findings(agency, end):
    """{requirement_id: Finding}: each requirement's current finding in the latest filed period ending by `end`,
    and that last filed period."""
    rows = db.session.execute(
        sa.select(Finding).join(MonitoringPeriod, MonitoringPeriod.id == Finding.period_id)
        .where(MonitoringPeriod.agency_id == agency.id, MonitoringPeriod.end_date <= end,
               monitoring.counted(period=MonitoringPeriod))
        .options(sa.orm.contains_eager(Finding.period))
        .order_by(MonitoringPeriod.end_date, MonitoringPeriod.id, Finding.id)).scalars().all()
    latest = {f.requirement_id: f for f in rows}
    filed = db.session.execute(
        sa.select(MonitoringPeriod).where(MonitoringPeriod.agency_id == agency.id,
                                          MonitoringPeriod.state == monitoring.FILED, MonitoringPeriod.end_date <= end)
        .order_by(MonitoringPeriod.end_date.desc(), MonitoringPeriod.id.desc()).limit(1)).scalar_one_or_none()
    return latest, filed


def _status_at_end(requirements, end):
    """{requirement_id: status} as it stood at the end of the period, from the status history."""
    _, upper = _bounds(end, end)
    ids = [r.id for r in requirements] or [0]
    last_before, first_after = {}, {}
    for change in db.session.execute(sa.select(StatusChange).where(StatusChange.requirement_id.in_(ids))
                                     .order_by(StatusChange.created_at, StatusChange.id)).scalars():
        if change.created_at < upper:
            last_before[change.requirement_id] = change.new_status
        else:
            first_after.setdefault(change.requirement_id, change.old_status)
    return {r.id: last_before.get(r.id) or first_after.get(r.id) or r.status for r in requirements}


def _summary(requirements, statuses, findings):
    modules = db.session.execute(Module.in_order()).scalars().all()
    rows = []
    for module in modules:
        reqs = [r for r in requirements if r.module_id == module.id]
        if not reqs:
            continue
        by_status = tuple((label, sum(1 for r in reqs if statuses[r.id] == key)) for key, label in STATUSES.items())
        levels = {}
        for r in reqs:
            if r.id in findings:
                level = findings[r.id].level
                levels[(level.position, level.label)] = levels.get((level.position, level.label), 0) + 1
        text = ", ".join(f"{label} {n}" for (_pos, label), n in sorted(levels.items())) or "None filed"
        rows.append(ModuleRow(name=module.name, total=len(reqs), by_status=by_status, findings=text))
    return tuple(rows)


def _changes(agency, requirements, start, end):
    """{requirement_id: [(sort key, line)]}: what happened in the period, each line dated."""
    lower, upper = _bounds(start, end)
    ids = [r.id for r in requirements] or [0]
    out = {}

    def add(req_id, day, order, line):
        out.setdefault(req_id, []).append(((day, order, line), f"{day.isoformat()}: {line}"))

    for c in db.session.execute(sa.select(StatusChange).where(
            StatusChange.requirement_id.in_(ids), StatusChange.created_at >= lower, StatusChange.created_at < upper)
            .order_by(StatusChange.created_at, StatusChange.id)).scalars():
        old = STATUSES.get(c.old_status, c.old_status or "none")
        note = f" ({' '.join(c.note.split())})" if c.note.strip() else ""
        add(c.requirement_id, c.created_at.date(), 0, f"status changed from {old} to "
            f"{STATUSES.get(c.new_status, c.new_status)}{note}.")
    for e in db.session.execute(sa.select(Evidence).where(
            Evidence.requirement_id.in_(ids), Evidence.created_at >= lower, Evidence.created_at < upper)
            .order_by(Evidence.created_at, Evidence.id)).scalars():
        what = "new version of evidence" if e.supersedes_id else "evidence"
        add(e.requirement_id, e.created_at.date(), 1, f"{what} “{e.title}” produced "
            f"({'file, SHA-256 ' + e.sha256[:12] + '…' if e.kind == 'file' else 'link'}).")
    for d in db.session.execute(sa.select(DeadlineChange).where(
            DeadlineChange.requirement_id.in_(ids), DeadlineChange.created_at >= lower,
            DeadlineChange.created_at < upper).order_by(DeadlineChange.created_at, DeadlineChange.id)).scalars():
        if d.old_date is not None:
            reason = f": {' '.join(d.reason.split())}" if d.reason.strip() else ""
            add(d.requirement_id, d.created_at.date(), 2, f"due date moved from {d.old_date.isoformat()} to "
                f"{d.new_date.isoformat() if d.new_date else 'none'}{reason}.")
    _deadline_outcomes(requirements, start, end, add)
    _policy_changes(agency, start, end, add)
    _indicator_values(ids, start, end, add)
    return out


def _deadline_outcomes(requirements, start, end, add):
    """A due date inside the period was met when the requirement was implemented (or found not applicable)
    by then, and missed otherwise."""
    due = [r for r in requirements if r.due_date and start <= r.due_date <= end]
    if not due:
        return
    done = {}
    for req_id, new_status, created in db.session.execute(
            sa.select(StatusChange.requirement_id, StatusChange.new_status, StatusChange.created_at)
            .where(StatusChange.requirement_id.in_([r.id for r in due]))
            .order_by(StatusChange.created_at, StatusChange.id)):
        if new_status in ("implemented", "not_applicable"):
            done.setdefault(req_id, created.date())
        else:
            done.pop(req_id, None)
    for r in due:
        met = done.get(r.id)
        if met is not None and met <= r.due_date:
            add(r.id, r.due_date, 3, f"deadline met (implemented on {met.isoformat()}).")
        else:
            add(r.id, r.due_date, 3, "deadline missed: not implemented by the due date.")


def _policy_changes(agency, start, end, add):
    approved = policies.approved_in(agency, start, end)
    for req_id, docs in approved.items():
        for doc in docs:
            ref = f", {doc.approval_ref}" if doc.approval_ref else ""
            add(req_id, doc.approved_on, 4, f"{doc.title} approved ({APPROVAL_KINDS.get(doc.approval_kind, '')}"
                f"{ref}); in effect from {doc.effective_on.isoformat() if doc.effective_on else 'a date to be set'}.")
    links = {}
    for doc_id, req_id in db.session.execute(
            sa.select(policy_document_requirement.c.document_id, policy_document_requirement.c.requirement_id)
            .join(PolicyDocument, PolicyDocument.id == policy_document_requirement.c.document_id)
            .where(PolicyDocument.agency_id == agency.id)):
        links.setdefault(doc_id, []).append(req_id)
    for plan, doc, points in training.agency_plans(agency):
        point = training.percent_on(points, end)
        if point is None or point.on < start:
            continue
        target = f"; target {plan.target_pct}% by {plan.target_date.isoformat()}" if plan.target_date else ""
        for req_id in links.get(doc.id, []):
            add(req_id, point.on, 5, f"training on {doc.title}: {point.pct:.1f}% of {plan.population} trained "
                f"({point.completed:,} of {plan.population_size:,}){target}.")


def _indicator_values(requirement_ids, start, end, add):
    rows = db.session.execute(
        sa.select(indicator_requirement.c.requirement_id, Indicator, IndicatorValue)
        .join(Indicator, Indicator.id == indicator_requirement.c.indicator_id)
        .join(IndicatorValue, IndicatorValue.indicator_id == Indicator.id)
        .where(indicator_requirement.c.requirement_id.in_(requirement_ids), IndicatorValue.breakdown == "",
               IndicatorValue.period_start >= start, IndicatorValue.period_start <= end)
        .order_by(IndicatorValue.period_start, Indicator.position, Indicator.id)).all()
    for req_id, indicator, value in rows:
        number = f"{float(value.value):,.4f}".rstrip("0").rstrip(".")
        unit = "%" if indicator.unit == "percent" else f" ({indicator.unit_label.lower()})"
        add(req_id, value.period_start, 6, f"indicator {indicator.name}: {number}{unit} for the period starting "
            f"{value.period_start.isoformat()}.")


def _deadlines(agency, requirements, end):
    """Open requirements due after the period, and the policy and training deadlines after it."""
    items = [Deadline(on=r.due_date, what=f"{r.code} due", detail=r.title) for r in requirements
             if r.due_date and r.due_date > end and r.is_open and r.terminated_at is None]
    items += [Deadline(on=day, what=summary, detail=description)
              for _uid, day, summary, description, _path in policies.calendar_events(agency, end)
              if day and day > end]
    return tuple(sorted(items, key=lambda d: (d.on, d.what, d.detail)))


def _evidence(agency, start, end):
    lower, upper = _bounds(start, end)
    rows = db.session.execute(
        sa.select(Evidence, Requirement.code, Requirement.sort_key)
        .join(Requirement, Requirement.id == Evidence.requirement_id)
        .where(Requirement.agency_id == agency.id, Evidence.created_at >= lower, Evidence.created_at < upper)
    ).all()
    items = [(sort_key, e.created_at, e.id, EvidenceItem(
        code=code, title=e.title, added=e.created_at.date(), kind="File" if e.kind == "file" else "Link",
        sha256=e.sha256 or "", location=(e.filename or "") if e.kind == "file" else (e.url or "")))
        for e, code, sort_key in rows]
    versions = db.session.execute(
        sa.select(PolicyVersion, PolicyDocument.title)
        .join(PolicyDocument, PolicyDocument.id == PolicyVersion.document_id)
        .where(PolicyDocument.agency_id == agency.id, PolicyVersion.created_at >= lower,
               PolicyVersion.created_at < upper)).all()
    items += [("\uffff", v.created_at, v.id, EvidenceItem(
        code="Policy", title=f"{title}, version {v.number}", added=v.created_at.date(), kind="Policy version",
        sha256=v.file.sha256, location=v.file.filename)) for v, title in versions]
    return tuple(item for *_key, item in sorted(items, key=lambda t: (t[0], t[1], t[2], t[3].kind)))


# --- rendering ---------------------------------------------------------------------------------------------

def text_lines(report):
    """The report as plain lines, in reading order: what the DOCX, PDF and HTML all say."""
    lines = [report.title, report.decree, f"Reporting period: {report.start.isoformat()} to {report.end.isoformat()}"
             + (f" ({report.period_name})" if report.period_name else ""),
             f"Latest filed monitoring report: {report.filed_period or 'none filed'}", "Summary by module"]
    for row in report.summary:
        lines.append(f"{row.name}: {row.total} requirements; " + ", ".join(f"{label} {n}" for label, n in row.by_status)
                     + f"; latest filed findings: {row.findings}")
    lines.append("Requirements")
    for s in report.sections:
        lines += [f"{s.code} {s.title}", f"Module: {s.module}. Status at the end of the period: {s.status}. "
                  f"Due: {s.due}. Latest filed finding: {s.finding}.",
                  *(s.changes or ("No recorded change in the period.",))]
    lines.append("Open deadlines ahead")
    lines += [f"{d.on.isoformat()} {d.what}: {d.detail}" for d in report.deadlines] or ["None."]
    lines.append("Appendix: evidence produced in the period")
    lines += [f"{e.code} {e.title} {e.added.isoformat()} {e.kind} {e.sha256 or e.location}" for e in report.evidence]
    return lines


def _fixed_zip(data, when):
    """Rewrite a zip with every entry dated `when`, in the same order: the same content gives the same bytes."""
    stamp = (max(when.year, 1980), when.month, when.day, 0, 0, 0)
    source = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            entry = zipfile.ZipInfo(info.filename, date_time=stamp)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o600 << 16
            target.writestr(entry, source.read(info.filename))
    return out.getvalue()


def to_docx(report):
    """An editable Word document: Title and Heading 1/2 styles, real tables."""
    from docx import Document

    doc = Document()
    when = datetime.combine(report.report_date, time(12, 0))
    props = doc.core_properties
    props.title, props.author, props.last_modified_by = report.title, report.agency, report.agency
    props.created = props.modified = props.last_printed = when
    props.revision, props.comments = 1, "Drafted from the consent-decree tracker."
    props.subject = "Status report"
    doc.add_heading(report.title, level=0)
    for line in text_lines(report)[1:4]:
        doc.add_paragraph(line)
    doc.add_heading("Summary by module", level=1)
    header = ["Module", "Requirements", *[label for label in STATUSES.values()], "Latest filed findings"]
    _docx_table(doc, header, [[r.name, str(r.total), *[str(n) for _l, n in r.by_status], r.findings]
                              for r in report.summary])
    doc.add_heading("Requirements", level=1)
    for s in report.sections:
        doc.add_heading(f"{s.code} {s.title}", level=2)
        doc.add_paragraph(f"Module: {s.module}. Status at the end of the period: {s.status}. Due: {s.due}. "
                          f"Latest filed finding: {s.finding}.")
        for line in s.changes or ("No recorded change in the period.",):
            doc.add_paragraph(line, style="List Bullet")
    doc.add_heading("Open deadlines ahead", level=1)
    _docx_table(doc, ["Date", "Deadline", "Detail"], [[d.on.isoformat(), d.what, d.detail] for d in report.deadlines])
    doc.add_heading("Appendix: evidence produced in the period", level=1)
    _docx_table(doc, ["Requirement", "Title", "Added", "Kind", "SHA-256 or link"],
                [[e.code, e.title, e.added.isoformat(), e.kind, e.sha256 or e.location] for e in report.evidence])
    out = io.BytesIO()
    doc.save(out)
    return _fixed_zip(out.getvalue(), report.report_date)


def _docx_table(doc, header, rows):
    if not rows:
        doc.add_paragraph("None.")
        return
    table = doc.add_table(rows=1, cols=len(header))
    table.style = "Table Grid"
    for cell, text in zip(table.rows[0].cells, header, strict=True):
        cell.text = text
        for run in cell.paragraphs[0].runs:
            run.bold = True
    for row in rows:
        for cell, text in zip(table.add_row().cells, row, strict=True):
            cell.text = text


_LATIN1 = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-",
                         "\u2026": "...", "\u2022": "-", "\u00a0": " ", "\u2192": "->", "\u2264": "<=", "\u2265": ">="})


def pdf_text(text):
    """The PDF's built-in fonts speak Latin-1: typographic punctuation becomes its plain form, anything else '?'."""
    return text.translate(_LATIN1).encode("latin-1", "replace").decode("latin-1")


def to_pdf(report):
    """A PDF with the same content (fpdf2, pure Python: no system libraries), dated the report's date."""
    from fpdf import FPDF
    from fpdf.enums import XPos, YPos

    pdf = FPDF(format="Letter")
    pdf.set_creation_date(datetime.combine(report.report_date, time(12, 0)))
    pdf.set_title(pdf_text(report.title))
    pdf.set_author(pdf_text(report.agency))
    pdf.set_creator("Consent-decree tracker")
    pdf.set_producer("Consent-decree tracker")
    pdf.set_auto_page_break(True, margin=15)
    pdf.add_page()

    def heading(text, size):
        pdf.set_font("Helvetica", "B", size)
        pdf.multi_cell(0, size * 0.55, pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        pdf.ln(1)

    def para(text, indent=0):
        pdf.set_font("Helvetica", "", 10)
        pdf.set_x(pdf.l_margin + indent)
        pdf.multi_cell(0, 5, pdf_text(text), new_x=XPos.LMARGIN, new_y=YPos.NEXT)

    heading(report.title, 16)
    for line in text_lines(report)[1:4]:
        para(line)
    heading("Summary by module", 13)
    _pdf_table(pdf, ["Module", "Reqs", *STATUSES.values(), "Latest filed findings"],
               [[r.name, str(r.total), *[str(n) for _l, n in r.by_status], r.findings] for r in report.summary],
               (40, 12, 17, 17, 19, 19, 62))
    heading("Requirements", 13)
    for s in report.sections:
        heading(f"{s.code} {s.title}", 11)
        para(f"Module: {s.module}. Status at the end of the period: {s.status}. Due: {s.due}. "
             f"Latest filed finding: {s.finding}.")
        for line in s.changes or ("No recorded change in the period.",):
            para(f"- {line}", indent=4)
        pdf.ln(1)
    heading("Open deadlines ahead", 13)
    _pdf_table(pdf, ["Date", "Deadline", "Detail"], [[d.on.isoformat(), d.what, d.detail] for d in report.deadlines],
               (24, 70, 92))
    heading("Appendix: evidence produced in the period", 13)
    _pdf_table(pdf, ["Requirement", "Title", "Added", "Kind", "SHA-256 or link"],
               [[e.code, e.title, e.added.isoformat(), e.kind, e.sha256 or e.location] for e in report.evidence],
               (24, 48, 20, 18, 76))
    return bytes(pdf.output())


def _pdf_table(pdf, header, rows, widths):
    if not rows:
        pdf.set_font("Helvetica", "", 10)
        pdf.cell(0, 6, "None.", new_x="LMARGIN", new_y="NEXT")
        return
    pdf.set_font("Helvetica", "", 8)
    with pdf.table(col_widths=widths, text_align="LEFT", line_height=4, first_row_as_headings=True) as table:
        for values in [header, *rows]:
            row = table.row()
            for value in values:
                row.cell(pdf_text(value))
    pdf.ln(2)
