"""Flows 2 and 5 in a real browser: the officer's board, inline edits, a deadline extension, a PDF
upload; two officers editing the same requirement at once."""
import re
from datetime import date

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import ComplianceScale, Requirement
from tracker.services import agencies


@pytest.fixture(scope="module")
def harbor(live_app):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "chicago")).scalar_one()
        agency = agencies.create_agency({"name": "Riverbend Police Department", "slug": "riverbend", "state": "WA",
                                         "source_id": None, "effective_date": date(2025, 1, 6),
                                         "scale_id": scale.id})
        agencies.adopt(agency, ["cit", "advisory"])
        make_user("o1@riverbend.example", role="officer", agency=agency, name="Olivia One")
        make_user("o2@riverbend.example", role="officer", agency=agency, name="Oscar Two")
        db.session.commit()
        req = db.session.execute(sa.select(Requirement).where(Requirement.agency_id == agency.id,
                                                              Requirement.code == "ADV-001")).scalar_one()
        return {"slug": agency.slug, "adv001": req.id}


def test_officer_edits_inline_extends_deadline_and_uploads_pdf(page, live_server, harbor, check_a11y, tmp_path):
    sign_in(page, live_server, "o1@riverbend.example")
    page.get_by_role("link", name="Riverbend Police Department").first.click()
    expect(page.get_by_role("heading", name="Riverbend Police Department")).to_be_visible()
    check_a11y(page)

    # Filter to the advisory module without reloading the page; the URL follows.
    page.get_by_label("Module").select_option(label="Advisory Committees")
    expect(page).to_have_url(re.compile(r"module=advisory"))
    expect(page.get_by_role("heading", name=re.compile("Crisis Intervention Teams"))).to_have_count(0)

    row = page.locator(f"#req-{harbor['adv001']}")
    # The row turns into its edit form in place: status, note, owner and due date with one Save.
    row.get_by_role("link", name=re.compile("Edit")).click()
    row = page.locator(f"#req-{harbor['adv001']}")
    expect(row.get_by_label(re.compile("New status"))).to_be_focused()
    # Not applicable without a justification is refused next to the field.
    row.get_by_label(re.compile("New status")).select_option("not_applicable")
    row.get_by_role("button", name=re.compile("^Save")).click()
    expect(page.locator("#flash")).to_contain_text("justification is required")
    row = page.locator(f"#req-{harbor['adv001']}")
    row.get_by_label(re.compile("New status")).select_option("in_progress")
    row.get_by_label(re.compile("^Owner")).select_option(label="Olivia One")
    row.get_by_role("button", name=re.compile("^Save")).click()
    expect(page.locator("#flash")).to_contain_text("saved (status, owner)")
    expect(row).to_contain_text("Olivia One")
    check_a11y(page)

    # Extend the deadline on the requirement page: a reason is required.
    page.locator(f"#req-{harbor['adv001']}").get_by_role("link").first.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("ADV-001")
    check_a11y(page)
    page.get_by_label("Due date").fill("2026-02-15")
    page.get_by_role("button", name="Save due date").click()
    expect(page.locator("#reason-error")).to_have_text("A reason is required.")
    page.get_by_label("Due date").fill("2026-02-15")
    page.get_by_label("Reason for the change").fill("Court order of Nov 3, 2025 (Dkt. 412) extended the deadline")
    page.get_by_role("button", name="Save due date").click()
    expect(page.locator("#flash")).to_contain_text("due date is now 2026-02-15")
    expect(page.locator("#history")).to_be_visible()
    expect(page.get_by_text("Court order of Nov 3, 2025")).to_be_visible()

    # Upload a PDF as evidence.
    pdf = tmp_path / "mhrac-charter.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    form = page.locator("form[action$='/evidence']")
    form.get_by_label("File", exact=True).set_input_files(str(pdf))
    form.get_by_label("Title").fill("Advisory committee charter")
    form.get_by_label("Period start").fill("2025-01-01")
    form.get_by_label("Period end").fill("2025-06-30")
    form.get_by_role("button", name="Add evidence").click()
    expect(page.locator("#evidence-added")).to_contain_text("added and submitted for review")
    expect(page.locator("#evidence-added")).to_be_focused()
    expect(page.get_by_role("link", name=re.compile("Download mhrac-charter.pdf"))).to_be_visible()
    expect(page.locator(".tracker-mono").first).to_have_text(re.compile("^[0-9a-f]{64}$"))
    check_a11y(page)


def test_two_officers_editing_at_once_see_the_conflict(browser, live_server, harbor):
    first = browser.new_context(ignore_https_errors=True).new_page()
    second = browser.new_context(ignore_https_errors=True).new_page()
    sign_in(first, live_server, "o1@riverbend.example")
    sign_in(second, live_server, "o2@riverbend.example")
    url = f"{live_server}/agencies/{harbor['slug']}/requirements/{harbor['adv001']}"
    first.goto(url)
    second.goto(url)
    first.get_by_label("Status", exact=True).select_option("implemented")
    first.get_by_role("button", name="Save status").click()
    expect(first.locator("#flash")).to_contain_text("status is now Implemented")

    second.get_by_label("Status", exact=True).select_option("not_started")
    second.get_by_label("Note on this change").fill("Charter lapsed; restarting")
    second.get_by_role("button", name="Save status").click()
    expect(second.get_by_role("heading", name="Someone else saved this requirement first")).to_be_visible()
    expect(second.get_by_text(re.compile("status Implemented"))).to_be_visible()
    # The second officer's input is kept for a deliberate second save.
    expect(second.get_by_label("Status", exact=True)).to_have_value("not_started")
    expect(second.get_by_label("Note on this change")).to_have_value("Charter lapsed; restarting")
    second.get_by_role("button", name="Save status").click()
    expect(second.locator("#flash")).to_contain_text("status is now Not started")
