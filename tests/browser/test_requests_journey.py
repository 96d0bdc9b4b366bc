"""Issue 13 in a real browser: the monitor plans a period (paragraph in scope, methodology), asks the agency for
documents; the officer finds the request from the navigation, answers it with an uploaded PDF; the monitor sees
the file and closes the request. A request nobody answered shows as overdue. Every page is checked with axe."""
import re
from datetime import date, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import ComplianceScale, MonitoringPeriod, Requirement, User, utcnow
from tracker.services import agencies, document_requests

AGENCY = "Westport Police Department"
OFFICER = "officer@westport.example"
MONITOR = "monitor@westport.example"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(scope="module")
def westport(live_app):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
        agency = agencies.create_agency({"name": AGENCY, "slug": "westport", "state": "CT", "source_id": None,
                                         "effective_date": date(2025, 1, 6), "scale_id": scale.id})
        agencies.adopt(agency, ["cit"])
        make_user(OFFICER, role="officer", agency=agency, name="Wren Officer")
        monitor = make_user(MONITOR, role="monitor", agency=agency, name="Wade Monitor")
        today = utcnow().date()
        period = MonitoringPeriod(agency_id=agency.id, name="Report 1", start_date=today - timedelta(days=30),
                                  end_date=today + timedelta(days=150))
        db.session.add(period)
        db.session.flush()
        reqs = {r.code: r.id for r in db.session.execute(
            sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
        # A request made on paper earlier and never answered: overdue since yesterday.
        document_requests.create_request(agency, {
            "title": "Dispatch protocol for 988 transfers", "due_date": today - timedelta(days=1),
            "requirement_ids": [reqs["CIT-001"]], "period_id": period.id},
            actor=db.session.get(User, monitor.id), allow_past_due=True)
        db.session.commit()
        return {"slug": agency.slug, "reqs": reqs, "period": period.id}


def _context(browser, live_server, email):
    context = browser.new_context(ignore_https_errors=True)
    sign_in(context.new_page(), live_server, email)
    return context


def test_monitor_plans_and_asks_officer_answers_with_a_file_monitor_closes(
        browser, live_server, westport, check_a11y, tmp_path):
    slug, cit002 = westport["slug"], westport["reqs"]["CIT-002"]
    monitor_context, officer_context = _context(browser, live_server, MONITOR), _context(browser, live_server, OFFICER)
    try:
        monitor, officer = monitor_context.pages[0], officer_context.pages[0]

        # The plan: CIT-002 in scope, with its methodology.
        monitor.goto(f"{live_server}/agencies/{slug}/periods/{westport['period']}/plan")
        expect(monitor.get_by_role("heading", name="Monitoring plan: Report 1")).to_be_visible()
        check_a11y(monitor)
        monitor.locator(f"label[for='scope-{cit002}']").click()   # USWDS draws the box on the label
        expect(monitor.get_by_label("CIT-002 in scope")).to_be_checked()
        monitor.get_by_role("button", name="Save the plan").click()
        expect(monitor.locator("#flash")).to_contain_text("1 paragraph(s) added")
        monitor.get_by_role("link", name="No methodology yet for CIT-002").click()
        check_a11y(monitor)
        monitor.get_by_label("What is measured").fill("Share of patrol officers trained in the 40-hour course.")
        monitor.get_by_label("Sample").fill("Every officer on the roster on the last day.")
        monitor.get_by_role("button", name="Save methodology").click()
        expect(monitor.locator("#flash")).to_contain_text("methodology version 1 saved")

        # The request.
        monitor.goto(f"{live_server}/agencies/{slug}/requests")
        check_a11y(monitor)
        monitor.get_by_role("link", name="Ask for documents or data").click()
        monitor.get_by_label("What is asked").fill("CIT training rosters, spring classes")
        monitor.get_by_label("Requirements it concerns").select_option(str(cit002))
        monitor.get_by_label("Due date").fill((utcnow().date() + timedelta(days=14)).isoformat())
        check_a11y(monitor)
        monitor.get_by_role("button", name="Send the request").click()
        expect(monitor.get_by_role("heading", level=1)).to_have_text("Request 2: CIT training rosters, spring classes")
        check_a11y(monitor)

        # The officer sees two requests waiting, one of them overdue, and answers the new one with a PDF.
        officer.goto(live_server)
        nav = officer.get_by_role("link", name=re.compile("^Document requests"))
        expect(nav).to_have_accessible_name("Document requests 2 waiting, 1 overdue")
        nav.click()
        expect(officer.get_by_role("row", name=re.compile("Dispatch protocol"))).to_contain_text("Overdue")
        check_a11y(officer)
        officer.get_by_role("link", name="Request 2: CIT training rosters, spring classes").click()
        pdf = tmp_path / "rosters.pdf"
        pdf.write_bytes(PDF)
        officer.get_by_label("File", exact=True).set_input_files(str(pdf))
        officer.get_by_label("Title", exact=True).fill("Spring CIT rosters")
        officer.get_by_label("Note to the monitor").fill("Both classes, with completion dates.")
        check_a11y(officer)
        officer.get_by_role("button", name="Send the answer").click()
        expect(officer.locator("#flash")).to_contain_text("Answer to request 2 sent to the monitor")
        expect(officer.get_by_role("listitem").filter(has_text="Spring CIT rosters")).to_contain_text(
            "Both classes, with completion dates.")
        # The upload is ordinary evidence of CIT-002, waiting for review.
        officer.get_by_role("link", name="CIT-002").click()
        expect(officer.get_by_role("row", name=re.compile("^Spring CIT rosters"))).to_contain_text("Submitted")
        expect(officer.locator("#methodology + dl")).to_contain_text("40-hour course")
        check_a11y(officer)

        # The monitor opens the answered request and closes it.
        monitor.reload()
        expect(monitor.get_by_role("link", name="Spring CIT rosters")).to_be_visible()
        monitor.get_by_label("Note").fill("Received; the rosters match the academy records.")
        monitor.get_by_role("button", name="Close the request").click()
        expect(monitor.locator("#flash")).to_contain_text("Request 2 closed")
        expect(monitor.get_by_text(re.compile("^State: Closed"))).to_be_visible()
        check_a11y(monitor)
    finally:
        monitor_context.close()
        officer_context.close()
