"""Issue 12 in a real browser: an officer imports a decree section as Excel saves it (CSV with a byte-order mark,
CRLF and multi-line cells; then an XLSX with date cells), sees every paragraph with its id as typed, its text
with line breaks, its section, instrument and entity, groups the board by section, and completes a recurring
duty's occurrence, which advances its next due date."""
import csv
import io
import re
from datetime import date, datetime

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import ComplianceScale, Requirement
from tracker.services import agencies, decree

ROWS = [
    ["Paragraph", "Section", "Instrument", "Entity", "Title", "Text", "Module", "Deadline", "Catalog"],
    ["¶ 96", "III.C Crisis Intervention", "Decree", "Police Department", "Crisis line staffing",
     "CPD will staff the crisis line at all hours.\n\n(a) Call-takers are trained;\n(b) supervisors review calls.",
     "cit", "within 45 days of the Effective Date", "CIT-001; CIT-004"],
    ["§ III.C ¶ 97", "III.C Crisis Intervention", "Decree", "Office of Emergency Communications",
     "Annual crisis report", "OEMC will publish a report on crisis calls every year.", "cit",
     "annually, beginning 12 months after the Effective Date", ""],
    ["¶¶ 98–100", "III.C Crisis Intervention", "Decree", "Police Department", "", "Dispatch protocol.",
     "cit", "December 31, 2025", ""],
    ["M–3", "IV Data", "MOA 2024", "Office of Emergency Communications", "Dispatch data", "Publish the data.", "data",
     "no later than 90 days after the Effective Date", ""],
]


def _excel_csv():
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\r\n").writerows(ROWS)
    return ("\ufeff" + buf.getvalue()).encode("utf-8")


def _xlsx():
    from openpyxl import Workbook

    workbook = Workbook()
    for row in (["paragraph", "title", "module", "instrument", "section", "due"],
                ["131(a)", "Quarterly audit", "cit", "Decree", "V Training", "quarterly"],
                ["131(b)", "Dated", "cit", "MOA 2024", "V Training", datetime(2026, 5, 1)]):
        workbook.active.append(row)
    buf = io.BytesIO()
    workbook.save(buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def lakeport(live_app):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "chicago")).scalar_one()
        agency = agencies.create_agency({"name": "Lakeport Police Department", "slug": "lakeport", "state": "IL",
                                         "source_id": None, "effective_date": date(2025, 1, 1),
                                         "scale_id": scale.id})
        admin = make_user("admin@lakeport.example", is_admin=True, name="Lake Admin")
        values = {"short_name": "MOA 2024", "title": "Memorandum of Agreement", "kind": "memorandum_of_agreement",
                  "court": "", "case_number": "", "approved_date": None, "effective_date": date(2024, 7, 1),
                  "scale_id": scale.id, "sustainment_months": None}
        decree.add_instrument(agency, values, actor=admin)
        make_user("officer@lakeport.example", role="officer", agency=agency, name="Lena Officer")
        db.session.commit()
        return {"slug": agency.slug, "id": agency.id}


def _requirement_id(live_app, agency_id, code):
    with live_app.app_context():
        return db.session.execute(sa.select(Requirement.id).where(Requirement.agency_id == agency_id,
                                                                  Requirement.code == code)).scalar_one()


def test_officer_imports_a_decree_as_written_and_completes_a_recurring_duty(page, live_server, live_app, lakeport,
                                                                            check_a11y, tmp_path):
    sign_in(page, live_server, "officer@lakeport.example")
    page.goto(f"{live_server}/agencies/lakeport")
    page.get_by_role("link", name="Import decree paragraphs").click()
    expect(page.get_by_role("heading", name="Import decree paragraphs")).to_be_visible()
    check_a11y(page)

    upload = tmp_path / "crisis-section.csv"
    upload.write_bytes(_excel_csv())
    page.get_by_label("CSV or XLSX file").set_input_files(str(upload))
    page.get_by_role("button", name="Import paragraphs").click()
    expect(page.locator("#flash")).to_contain_text("Imported crisis-section.csv: 4 added, 0 updated, 0 unchanged.")
    for code in ("¶ 96", "§ III.C ¶ 97", "¶¶ 98–100", "M–3"):           # ids as typed, en dashes and signs kept
        expect(page.get_by_role("rowheader", name=code, exact=True)).to_be_visible()
    expect(page.get_by_text("Recurs annually")).to_be_visible()
    check_a11y(page)

    # An XLSX with a date cell and a recurring duty, on the first try too.
    workbook = tmp_path / "training.xlsx"
    workbook.write_bytes(_xlsx())
    page.get_by_role("link", name="Import decree paragraphs").click()
    page.get_by_label("CSV or XLSX file").set_input_files(str(workbook))
    page.get_by_role("button", name="Import paragraphs").click()
    expect(page.locator("#flash")).to_contain_text("Imported training.xlsx: 2 added")

    # Group the board by the decree's sections, in the decree's order; the URL keeps it. htmx (deferred) listens
    # for the change once the page has loaded: a change made before that is a plain form's, sent by its button.
    page.wait_for_load_state()
    page.get_by_label("Group by").select_option(label="Decree section")
    expect(page).to_have_url(re.compile(r"group=section"))
    headings = page.locator("#board h2")
    expect(headings).to_have_count(3)
    expect(headings.nth(0)).to_contain_text("III.C Crisis Intervention")
    expect(headings.nth(1)).to_contain_text("IV Data")
    expect(headings.nth(2)).to_contain_text("V Training")
    page.get_by_label("Responsible entity").select_option(label="Office of Emergency Communications")
    expect(page).to_have_url(re.compile(r"entity=\d+"))
    expect(page.get_by_role("rowheader", name="¶ 96", exact=True)).to_have_count(0)
    expect(page.get_by_role("rowheader", name="M–3", exact=True)).to_be_visible()
    check_a11y(page)

    # The paragraph's page: text with its line breaks, section, instrument, entity, catalog links.
    page.goto(f"{live_server}/agencies/lakeport/requirements/{_requirement_id(live_app, lakeport['id'], '¶ 96')}")
    text = page.locator("p.usa-intro")
    assert "all hours.\n\n(a) Call-takers are trained;\n(b) supervisors" in text.inner_text()
    expect(page.get_by_text("Section: III.C Crisis Intervention")).to_be_visible()
    expect(page.get_by_text("Responsible entity: Police Department")).to_be_visible()
    expect(page.get_by_text("Deadline as written: “within 45 days of the Effective Date”")).to_be_visible()
    expect(page.locator("#crosswalk + ul")).to_contain_text("CIT-001")
    expect(page.locator("#crosswalk + ul")).to_contain_text("CIT-004")
    check_a11y(page)

    # The recurring duty: first due 12 months after the effective date; completing it advances the next one.
    page.goto(f"{live_server}/agencies/lakeport/requirements/"
              f"{_requirement_id(live_app, lakeport['id'], '§ III.C ¶ 97')}")
    expect(page.get_by_text("Recurring: annually, next due")).to_contain_text("2026")
    check_a11y(page)
    page.get_by_label("Completed on").fill("2025-12-18")
    page.get_by_label("Note on this occurrence").fill("Published as Crisis Report 2025")
    page.get_by_role("button", name="Mark 2026 annual completed").click()
    expect(page.locator("#flash")).to_contain_text("2026 annual completed; 2027 annual is due 2027-01-01.")
    occurrences = page.locator("#occurrences ~ div table")
    expect(occurrences.get_by_role("rowheader", name="2027 annual")).to_be_visible()
    expect(occurrences.locator("tr", has_text="2026 annual")).to_contain_text("Completed")
    expect(occurrences.locator("tr", has_text="2026 annual")).to_contain_text("Published as Crisis Report 2025")
    expect(page.get_by_role("button", name="Mark 2027 annual completed")).to_be_visible()
    check_a11y(page)

    # The decree structure page lists what the imports named.
    page.goto(f"{live_server}/agencies/lakeport/decree")
    for name in ("MOA 2024", "III.C Crisis Intervention", "IV Data", "V Training", "Police Department",
                 "Office of Emergency Communications"):
        expect(page.get_by_role("rowheader", name=re.compile(re.escape(name))).first).to_be_visible()
    check_a11y(page)
