"""The agency's status report (issue 16 §2): for a chosen period (by default the last monitoring period), a
printable page, an editable DOCX with Word's heading styles and real tables, and a PDF whose text can be
extracted; the same data gives the same bytes; only the department (and administrators) draft it."""
import html
import io
import re
from datetime import date

import sqlalchemy as sa
import time_machine
from docx import Document
from pypdf import PdfReader

from tests.conftest import Auth
from tests.factories import make_user
from tests.policy_builders import sign_in, status_world
from tracker.models import Agency, MonitoringPeriod, Requirement
from tracker.services import status_report

BASE = "/agencies/agency-a/status-report"
CODES = ["¶ 9", "¶ 131", "¶ 132"]


def _docx(response):
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype.endswith("wordprocessingml.document")
    return Document(io.BytesIO(response.data))


def _pdf_text(data):
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def _styled(doc, style):
    return [p.text for p in doc.paragraphs if p.style.name == style]


def _rows(table):
    return [[cell.text for cell in row.cells] for row in table.rows]


def test_the_docx_has_word_headings_and_tables_that_match_the_data(app, db, pol):
    w = status_world(db, pol)
    officer = sign_in(app, "officer@example.test")
    response = officer.client.get(BASE + ".docx")
    assert 'filename="agency-a-status-report-2025-01-01-2025-06-30.docx"' in response.headers["Content-Disposition"]
    doc = _docx(response)
    assert _styled(doc, "Title") == ["Harbor City PD: status report, 2025-01-01 to 2025-06-30"]
    assert _styled(doc, "Heading 1") == ["Summary by module", "Requirements", "Open deadlines ahead",
                                         "Appendix: evidence produced in the period"]
    assert _styled(doc, "Heading 2") == ["¶ 9 Crisis line staffing", "¶ 131 CIT policy", "¶ 132 CIT training"]
    assert "Reporting period: 2025-01-01 to 2025-06-30 (Report 1)" in [p.text for p in doc.paragraphs]
    summary, deadlines, appendix = doc.tables
    assert _rows(summary) == [
        ["Module", "Requirements", "Not started", "In progress", "Implemented", "Not applicable",
         "Latest filed findings"],
        ["Crisis Intervention Teams", "3", "1", "1", "1", "0", "Partial 1"]]
    assert ["2025-12-31", "Training target: General Order 4.12: Crisis Intervention",
            "95% of All sworn members (1,200) trained."] in _rows(deadlines)
    assert ["2026-06-30", "¶ 131 due", "CIT policy"] in _rows(deadlines)
    appendix_rows = _rows(appendix)
    assert appendix_rows[0] == ["Requirement", "Title", "Added", "Kind", "SHA-256 or link"]
    assert ["¶ 131", "CIT roster", "2025-03-01", "File", w["evidence"].sha256] in appendix_rows
    version = w["doc"].versions[0]
    assert ["Policy", "General Order 4.12: Crisis Intervention, version 1", "2025-03-01", "Policy version",
            version.file.sha256] in appendix_rows
    bullets = _styled(doc, "List Bullet")
    assert "2025-02-10: status changed from Not started to In progress (Drafting GO 4.12)." in bullets
    assert ("2025-03-03: General Order 4.12: Crisis Intervention approved (Court order, Order (Dkt. 512)); in "
            "effect from 2025-04-01.") in bullets
    assert bullets.count("2025-06-01: training on General Order 4.12: Crisis Intervention: 85.0% of All sworn "
                         "members trained (1,020 of 1,200); target 95% by 2025-12-31.") == 2  # ¶ 131 and ¶ 132
    assert "2025-05-01: status changed from Not started to Implemented." in bullets
    sections = [p.text for p in doc.paragraphs if p.text.startswith("Module: ")]
    assert sections[1] == ("Module: Crisis Intervention Teams. Status at the end of the period: In progress. "
                           "Due: 2026-06-30. Latest filed finding: Partial (Report 1).")
    assert doc.core_properties.title == "Harbor City PD: status report, 2025-01-01 to 2025-06-30"


def test_the_pdf_text_carries_every_requirement_code_in_decree_order(app, db, pol):
    w = status_world(db, pol)
    officer = sign_in(app, "officer@example.test")
    response = officer.client.get(BASE + ".pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert response.headers["Content-Security-Policy"].startswith("sandbox")
    text = _pdf_text(response.data)
    sections = text[text.index("\nRequirements\n"):text.index("Open deadlines ahead")]
    headings = [line for line in sections.splitlines() if re.match(r"¶ \d+ ", line)]
    assert [h.split(" ")[1] for h in headings] == ["9", "131", "132"], headings
    assert "Summary by module" in text and "Open deadlines ahead" in text
    assert w["evidence"].sha256[:20] in text.replace("\n", "")
    assert "85.0% of All sworn members" in text.replace("\n", " ")


def test_the_same_data_gives_the_same_bytes_whenever_it_is_drawn(app, db, pol):
    status_world(db, pol)
    officer = sign_in(app, "officer@example.test")
    first = {ext: officer.client.get(f"{BASE}.{ext}").data for ext in ("docx", "pdf")}
    with time_machine.travel(date(2031, 1, 1)):
        report = status_report.build(pol["a"], date(2025, 1, 1), date(2025, 6, 30), "Report 1")
        later = {"docx": status_report.to_docx(report), "pdf": status_report.to_pdf(report)}
    assert first == later
    page = html.unescape(officer.client.get(BASE).get_data(as_text=True))
    for s in report.sections:  # the printable page says what the documents say
        for line in (f"{s.code} {s.title}", f"Latest filed finding: {s.finding}.", *s.changes):
            assert line in page, line


def test_the_period_defaults_to_the_last_monitoring_period_and_can_be_chosen(app, db, pol):
    status_world(db, pol)
    officer = sign_in(app, "officer@example.test")
    page = officer.client.get(BASE).get_data(as_text=True)
    assert "Reporting period: 2025-01-01 to 2025-06-30 (Report 1)" in page
    assert f'href="{BASE}.docx?start=2025-01-01&amp;end=2025-06-30"' in page
    chosen = _docx(officer.client.get(BASE + ".docx?start=2025-04-01&end=2025-05-31"))
    bullets = _styled(chosen, "List Bullet")
    assert "2025-05-01: status changed from Not started to Implemented." in bullets
    assert not any(b.startswith("2025-02-10") for b in bullets)  # before the chosen period
    assert any("40.0% of All sworn members" in b for b in bullets)  # the last count by May 31
    bad = officer.client.get(BASE + "?start=2025-13-01&end=2025-01-01")
    text = bad.get_data(as_text=True)
    assert bad.status_code == 200 and "Enter the first day as YYYY-MM-DD." in text
    assert "Reporting period: 2025-01-01 to 2025-06-30" in text
    backwards = officer.client.get(BASE + "?start=2025-06-01&end=2025-01-01").get_data(as_text=True)
    assert "The period must end on or after its first day." in backwards


def test_an_agency_without_periods_reports_on_the_last_half_year(app, db, pol):
    report = status_report.build(pol["a"], *status_report.default_range(pol["a"], date(2026, 7, 1))[:2])
    assert (report.start, report.end) == (date(2025, 12, 31), date(2026, 7, 1))
    assert [s.code for s in report.sections] == ["¶ 131", "¶ 132"]
    assert status_report.to_pdf(report).startswith(b"%PDF")
    doc = Document(io.BytesIO(status_report.to_docx(report)))
    assert "None." in [p.text for p in doc.paragraphs]  # no evidence, no deadline ahead but ¶ 131's


def test_only_the_department_and_administrators_draft_it(app, db, pol):
    status_world(db, pol)
    expected = {"officer@example.test": 200, "admin@example.test": 200, "monitor@example.test": 403,
                "committee@example.test": 403, "officer-b@example.test": 404}
    for email, status in expected.items():
        client = sign_in(app, email).client
        for suffix in ("", ".docx", ".pdf"):
            assert client.get(BASE + suffix).status_code == status, (email, suffix)
    anonymous = app.test_client().get(BASE + ".docx")
    assert anonymous.status_code == 302 and "/login" in anonymous.headers["Location"]


def test_the_demo_agencys_report_for_its_last_period(app, db):
    """`flask seed demo`: the report for the last monitoring period reads back as the data says."""
    runner = app.test_cli_runner()
    assert runner.invoke(args=["catalog", "load"]).exit_code == 0
    assert runner.invoke(args=["seed", "demo"]).exit_code == 0
    db.session.rollback()
    agency = db.session.execute(sa.select(Agency)).scalar_one()
    last = db.session.execute(sa.select(MonitoringPeriod).order_by(MonitoringPeriod.end_date.desc()).limit(1)
                              ).scalar_one()
    codes = db.session.execute(sa.select(Requirement.code).where(Requirement.agency_id == agency.id)
                               .order_by(Requirement.sort_key)).scalars().all()
    make_user("reporter@example.test", role="officer", agency=agency)
    db.session.commit()
    officer = Auth(app.test_client())
    assert officer.login("reporter@example.test").status_code == 303
    base = f"/agencies/{agency.slug}/status-report"
    doc = _docx(officer.client.get(base + ".docx"))
    assert f"Reporting period: {last.start_date} to {last.end_date} ({last.name})" in [p.text for p in doc.paragraphs]
    headings = _styled(doc, "Heading 2")  # "<code> <title>"; the agreement's own ids hold spaces ("§ II.A ¶ 14")
    assert len(headings) == len(codes)
    assert all(h.startswith(f"{code} ") for h, code in zip(headings, codes, strict=True))
    summary = _rows(doc.tables[0])
    assert sum(int(row[1]) for row in summary[1:]) == len(codes)
    bullets = _styled(doc, "List Bullet")  # the demo's general order, approved and trained in that period
    assert ("2025-11-14: General Order 4.12: Crisis Intervention Team Response approved (Court order, Order "
            "approving General Order 4.12 (Dkt. 268)); in effect from 2025-12-01.") in bullets
    assert any("85.0% of All sworn members trained (1,020 of 1,200)" in b for b in bullets)
    text = _pdf_text(officer.client.get(base + ".pdf").data)
    positions = [text.index(f"\n{code} ") for code in codes]
    assert positions == sorted(positions) and len(codes) > 50
