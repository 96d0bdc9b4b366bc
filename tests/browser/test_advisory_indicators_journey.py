"""Issue 14 in a real browser. A committee member drafts and submits a recommendation adopted at a meeting; the
officer answers it; the dashboard shows it answered, and the recommendation nobody answered in time as
overdue. Then the officer imports eight quarters of an indicator: one bad row and nothing is written, the row
named; fixed, the chart, the table, the target and the change appear, and the dashboard panel and the API
agree with the file. Every page is checked with axe."""
import csv
import io
import re
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import ComplianceScale, Meeting, Requirement, User, utcnow
from tracker.services import agencies, committee, indicators

AGENCY = "Eastlake Police Department"
OFFICER = "officer@eastlake.example"
MEMBER = "member@eastlake.example"
QUARTERS = [(f"{2024 + i // 4}-Q{i % 4 + 1}", n) for i, n in enumerate((60, 70, 84, 96, 104, 118, 130, 142))]


@pytest.fixture(scope="module")
def eastlake(live_app):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
        agency = agencies.create_agency({"name": AGENCY, "slug": "eastlake", "state": "WA", "source_id": None,
                                         "effective_date": datetime(2025, 1, 6).date(), "scale_id": scale.id})
        agencies.adopt(agency, ["cit", "advisory", "data"])
        officer = make_user(OFFICER, role="officer", agency=agency, name="Priya Castellanos")
        member = make_user(MEMBER, role="committee", agency=agency, name="Marcus Bell")
        reqs = {r.code: r for r in db.session.execute(
            sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
        meeting = Meeting(agency_id=agency.id, title="Spring quarterly meeting", location="Eastlake City Hall",
                          starts_at=datetime.combine(utcnow().date() - timedelta(days=1), datetime.min.time())
                          + timedelta(hours=18), agenda="1. Crisis line staffing\n2. CIT coverage at night",
                          created_by_id=officer.id)
        db.session.add(meeting)
        # A recommendation submitted 61 days ago that nobody answered: its answer was due yesterday.
        late = committee.create(agency, {"title": "Publish CIT coverage by shift", "body": "Every quarter."},
                                actor=db.session.get(User, member.id))
        committee.submit(late, late.row_version, actor=db.session.get(User, member.id))
        late.submitted_at = utcnow() - timedelta(days=61)
        late.response_due = late.submitted_at.date() + timedelta(days=60)
        indicators.adopt(agency, "cit-on-scene", actor=db.session.get(User, officer.id), target_value="75")
        db.session.commit()
        cit = reqs["CIT-001"]
        return {"slug": agency.slug, "meeting": meeting.id, "cit": f"{cit.code} — {cit.title}"}


def _context(browser, live_server, email):
    context = browser.new_context(ignore_https_errors=True)
    sign_in(context.new_page(), live_server, email)
    return context


def _csv(rows):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["indicator", "period", "numerator", "denominator"])
    writer.writerows(rows)
    return out.getvalue().encode()


def test_recommendation_answered_and_overdue_on_the_dashboard(browser, live_server, eastlake, check_a11y):
    slug = eastlake["slug"]
    member_context, officer_context = _context(browser, live_server, MEMBER), _context(browser, live_server, OFFICER)
    try:
        member, officer = member_context.pages[0], officer_context.pages[0]
        # The member drafts at the meeting and submits.
        member.goto(f"{live_server}/agencies/{slug}")
        member.get_by_role("link", name="Advisory committee: meetings and recommendations").click()
        expect(member.get_by_role("heading", level=1)).to_have_text("Advisory committee")
        check_a11y(member)
        member.get_by_role("link", name="Spring quarterly meeting").click()
        expect(member.get_by_role("heading", level=1)).to_have_text("Spring quarterly meeting")
        check_a11y(member)
        member.get_by_role("link", name="Draft a recommendation adopted at this meeting").click()
        expect(member.get_by_label("Adopted at meeting")).to_have_value(str(eastlake["meeting"]))
        check_a11y(member)
        member.get_by_label("Title").fill("Staff the crisis line at night")
        member.get_by_label("Recommendation", exact=True).fill("Two more call-takers from 22:00 to 06:00.")
        member.get_by_label("Rationale").fill("Calls wait over a minute at night.")
        member.get_by_label("Requirements concerned").select_option(label=eastlake["cit"])
        member.get_by_role("button", name="Save draft").click()
        expect(member.get_by_role("heading", level=1)).to_have_text("Recommendation 2: Staff the crisis line at night")
        check_a11y(member)
        member.get_by_role("button", name="Submit to the department").click()
        expect(member.get_by_text(re.compile(r"Recommendation 2 submitted; the department's written answer is due by"))
               ).to_be_visible()
        check_a11y(member)

        # The officer sees the overdue one counted in the navigation, and answers the new one.
        officer.goto(f"{live_server}/agencies/{slug}/committee")
        expect(officer.get_by_role("link", name=re.compile(r"^Overdue answers 1"))).to_be_visible()
        expect(officer.get_by_role("row", name=re.compile("Publish CIT coverage by shift"))).to_contain_text("Overdue")
        officer.get_by_role("link", name="Schedule a meeting").click()
        expect(officer.get_by_role("heading", level=1)).to_have_text("Schedule a meeting")
        check_a11y(officer)
        officer.go_back()
        officer.get_by_role("link", name="Staff the crisis line at night").click()
        officer.locator("label[for=decision-accepted]").click()  # the USWDS radio hides its input
        officer.get_by_label("Reasons").fill("Night calls doubled since 2024.")
        officer.get_by_label("Implementation steps").fill("Hire two call-takers by July; report in Q3.")
        officer.get_by_role("button", name="Save the department's answer").click()
        expect(officer.get_by_text("The department's answer to recommendation 2 is saved.")).to_be_visible()
        expect(officer.get_by_text("Answered: Accepted")).to_be_visible()
        check_a11y(officer)

        # The dashboard: answered, one overdue, and the paragraph says so.
        officer.goto(f"{live_server}/agencies/{slug}/dashboard")
        expect(officer.locator("#dashboard-summary")).to_contain_text(
            "The department has answered 1 of 2 committee recommendations; 1 answer is overdue.")
        answered = officer.get_by_role("table", name="Recently answered")
        expect(answered.get_by_role("row", name=re.compile("Staff the crisis line at night"))).to_contain_text(
            "Answered: Accepted")
        awaiting = officer.get_by_role("table", name="Awaiting the department's answer")
        expect(awaiting.get_by_role("row", name=re.compile("Publish CIT coverage by shift"))).to_contain_text(
            "(overdue)")
        expect(officer.get_by_text("Priya Castellanos answered committee recommendation 2.")).to_be_visible()
        check_a11y(officer)
    finally:
        member_context.close()
        officer_context.close()


def test_eight_quarters_imported_after_one_bad_row(browser, live_server, eastlake, check_a11y):
    slug = eastlake["slug"]
    context = _context(browser, live_server, OFFICER)
    try:
        page = context.pages[0]
        page.goto(f"{live_server}/agencies/{slug}")
        page.get_by_role("link", name="Indicators: numbers with targets").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Indicators")
        check_a11y(page)
        page.get_by_role("link", name="Import values from a CSV or Excel file").click()
        check_a11y(page)
        rows = [("cit-on-scene", period, n, 200) for period, n in QUARTERS]
        bad = list(rows)
        bad[5] = ("cit-on-scene", "2025-Q5", 118, 200)
        page.get_by_label("CSV or Excel (.xlsx) file").set_input_files(
            files=[{"name": "quarters.csv", "mimeType": "text/csv", "buffer": _csv(bad)}])
        page.get_by_role("button", name="Check and import").click()
        expect(page.get_by_role("heading", name="Nothing was imported from quarters.csv")).to_be_visible()
        expect(page.get_by_text(re.compile(r"row 7, column period: '2025-Q5' is not a period"))).to_be_visible()
        check_a11y(page)
        page.goto(f"{live_server}/agencies/{slug}/indicators")
        expect(page.get_by_text("No values yet")).to_be_visible()

        page.get_by_role("link", name="Import values from a CSV or Excel file").click()
        page.get_by_label("CSV or Excel (.xlsx) file").set_input_files(
            files=[{"name": "quarters.csv", "mimeType": "text/csv", "buffer": _csv(rows)}])
        page.get_by_role("button", name="Check and import").click()
        expect(page.get_by_text("Imported quarters.csv: 8 values added, 0 updated, 0 unchanged.")).to_be_visible()
        check_a11y(page)

        page.get_by_role("link", name="Crisis calls with a CIT-certified officer on scene").click()
        expect(page.get_by_role("img", name=re.compile(
            r"^Crisis calls with a CIT-certified officer on scene: Q1 2024 30%, .*Q4 2025 71%; target 75%$"))
        ).to_be_visible()
        values = page.get_by_role("table", name=re.compile("^Overall value by period"))
        expect(values.get_by_role("row")).to_have_count(9)
        expect(values.get_by_role("row", name=re.compile("^Q4 2025"))).to_contain_text("71%")
        expect(page.get_by_label("Latest value against the target")).to_contain_text("Latest: 71% (Q4 2025)")
        expect(page.get_by_label("Latest value against the target")).to_contain_text("Target: 75%")
        expect(page.get_by_label("Latest value against the target")).to_contain_text("+6 points (better)")
        check_a11y(page)

        page.goto(f"{live_server}/agencies/{slug}/dashboard")
        panel = page.get_by_role("table", name="Latest value of each indicator against its target")
        row = panel.get_by_role("row", name=re.compile("Crisis calls with a CIT-certified officer on scene"))
        for text in ("71%", "Q4 2025", "+6 points", "75%", "Not yet at target"):
            expect(row).to_contain_text(text)
        check_a11y(page)

        api = page.request.get(f"{live_server}/api/v1/agencies/{slug}/indicators").json()["items"][0]
        assert [(v["period"], v["value"]) for v in api["values"]] == [(p, n / 2) for p, n in QUARTERS]
        assert api["latest"] == {"period": "2025-Q4", "value": 71.0} and api["target"] == 75.0
    finally:
        context.close()
