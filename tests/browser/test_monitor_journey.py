"""Flow 3 in a real browser: the officer uploads a PDF, the monitor returns it with a comment, the officer
sees the comment and uploads a new version, the monitor accepts it, records a finding in a monitoring period
(the committee's pages, API and export do not change), shares the draft (the officer sees it marked draft and
answers it), files the report (the committee sees it), rates a second period, files it and reads the upgrade.
Then the monitor's decisions once by keyboard only."""
import re
from datetime import date

import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import Agency, ComplianceScale, Requirement, User
from tracker.services import agencies, monitoring
from tracker.services import evidence as evidence_service

AGENCY = "Eastport Police Department"
OFFICER = "officer@eastport.example"
MONITOR = "monitor@eastport.example"
COMMITTEE = "committee@eastport.example"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"


@pytest.fixture(scope="module")
def eastport(live_app):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
        agency = agencies.create_agency({"name": AGENCY, "slug": "eastport", "state": "CT", "source_id": None,
                                         "effective_date": date(2025, 1, 6), "scale_id": scale.id})
        agencies.adopt(agency, ["advisory", "cit"])
        make_user(OFFICER, role="officer", agency=agency, name="Erin Officer")
        make_user(MONITOR, role="monitor", agency=agency, name="Milo Monitor")
        make_user(COMMITTEE, role="committee", agency=agency, name="Cora Committee")
        db.session.commit()
        reqs = {r.code: r.id for r in db.session.execute(
            sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
        return {"slug": agency.slug, "id": agency.id, "reqs": reqs}


@pytest.fixture(scope="module")
def signed_in(browser, live_server):
    """One sign-in per user for the module (the login form is rate-limited per address)."""
    states = {}

    def _context(email):
        if email not in states:
            context = browser.new_context(ignore_https_errors=True)
            sign_in(context.new_page(), live_server, email)
            states[email] = context.storage_state()
            context.close()
        return browser.new_context(ignore_https_errors=True, storage_state=states[email])

    return _context


def tab_to(page, target, *, limit=120):
    """Press Tab until `target` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def test_monitor_returns_evidence_officer_revises_monitor_accepts_and_rates(
        signed_in, live_server, eastport, check_a11y, tmp_path):
    officer_context, monitor_context = signed_in(OFFICER), signed_in(MONITOR)
    committee_context = signed_in(COMMITTEE)
    try:
        officer, monitor = officer_context.new_page(), monitor_context.new_page()
        adv001 = eastport["reqs"]["ADV-001"]

        # The officer opens ADV-001 from the board and uploads a PDF.
        officer.goto(live_server)
        officer.get_by_role("link", name=AGENCY).first.click()
        officer.locator(f"#req-{adv001}").get_by_role("link").first.click()
        expect(officer.get_by_role("heading", level=1)).to_contain_text("ADV-001")
        pdf = tmp_path / "eastport-charter.pdf"
        pdf.write_bytes(PDF)
        officer.get_by_label("File", exact=True).set_input_files(str(pdf))
        officer.get_by_label("Title", exact=True).fill("Eastport advisory charter")
        officer.get_by_role("button", name="Add evidence").click()
        added = officer.locator("#evidence-added")  # the confirmation beside the evidence list
        expect(added).to_contain_text("“Eastport advisory charter” added and submitted for review")
        # Nothing has been returned yet: no "Returned to you" link.
        expect(officer.get_by_role("link", name=re.compile("^Returned to you"))).to_have_count(0)

        # The monitor finds it in the review queue.
        monitor.goto(live_server)
        monitor.get_by_role("link", name=re.compile(r"^Review queue \d+ items waiting")).click()
        expect(monitor.get_by_role("heading", name="Evidence waiting for review")).to_be_visible()
        check_a11y(monitor)
        monitor.get_by_role("link", name="Review “Eastport advisory charter”").click()
        expect(monitor.get_by_role("heading", name="Review: Eastport advisory charter")).to_be_visible()
        expect(monitor.get_by_role("link", name="Download eastport-charter.pdf")).to_be_visible()
        check_a11y(monitor)

        # Returning without a comment is refused, with the error next to the field.
        monitor.get_by_role("button", name="Return to the agency").click()
        comment = monitor.get_by_label("Comment to the agency")
        expect(monitor.locator("#comment-error")).to_contain_text("a comment is required to return evidence")
        expect(comment).to_have_attribute("aria-describedby", re.compile(r"\bcomment-error\b"))
        check_a11y(monitor)
        comment.fill("The charter is unsigned; upload the version the council adopted.")
        monitor.get_by_role("button", name="Return to the agency").click()
        expect(monitor.locator("#flash")).to_contain_text("“Eastport advisory charter” returned to the agency")
        expect(monitor.get_by_role("link", name="Review “Eastport advisory charter”")).to_have_count(0)

        # The officer sees the comment on the requirement page and under "Returned to you".
        officer.reload()
        evidence_row = officer.get_by_role("row", name=re.compile("^Eastport advisory charter "))
        expect(evidence_row).to_contain_text("Returned")
        expect(evidence_row).to_contain_text("“The charter is unsigned; upload the version the council adopted.” "
                                             "— Milo Monitor")
        check_a11y(officer)
        returned_link = officer.get_by_role("link", name=re.compile("^Returned to you"))
        expect(returned_link).to_have_accessible_name("Returned to you 1 items")
        returned_link.click()
        expect(officer.get_by_role("heading", name="Evidence returned to you")).to_be_visible()
        expect(officer.get_by_role("row", name=re.compile("^Eastport advisory charter "))).to_contain_text(
            "The charter is unsigned")
        check_a11y(officer)

        # ... and uploads a new version from the requirement page.
        officer.get_by_role("link", name=re.compile("^ADV-001: ")).click()
        versions = officer.locator("details").filter(
            has=officer.get_by_text("Upload a new version of “Eastport advisory charter”"))
        versions.get_by_text("Upload a new version of “Eastport advisory charter”").click()
        signed = tmp_path / "eastport-charter-signed.pdf"
        signed.write_bytes(PDF.replace(b"%%EOF", b"% signed\n%%EOF"))
        versions.get_by_label("File", exact=True).set_input_files(str(signed))
        versions.get_by_label("Title", exact=True).fill("Eastport advisory charter (signed)")
        versions.get_by_role("button", name="Add new version").click()
        expect(officer.locator("#evidence-added")).to_contain_text(
            "New version “Eastport advisory charter (signed)” added")
        expect(officer.get_by_role("row", name=re.compile(r"^Eastport advisory charter Superseded"))).to_be_visible()
        expect(officer.get_by_role("link", name=re.compile("^Returned to you"))).to_have_count(0)

        # The monitor sees the new version in the queue and accepts it.
        monitor.get_by_role("link", name=re.compile("^Review queue")).click()
        item = monitor.get_by_role("row", name=re.compile("Eastport advisory charter \\(signed\\)"))
        expect(item).to_contain_text("New version")
        item.get_by_role("link", name="Review “Eastport advisory charter (signed)”").click()
        expect(monitor.get_by_role("heading", name="Versions")).to_be_visible()
        monitor.get_by_role("button", name="Accept").click()
        expect(monitor.locator("#flash")).to_contain_text("“Eastport advisory charter (signed)” accepted")

        # The monitor opens a monitoring period from the board and rates ADV-001.
        monitor.get_by_role("link", name=AGENCY).first.click()
        expect(monitor.get_by_role("heading", level=1)).to_have_text(AGENCY)
        check_a11y(monitor)
        monitor.get_by_role("link", name="Monitoring periods and findings").click()
        expect(monitor.get_by_role("heading", name="Monitoring periods", exact=True)).to_be_visible()
        check_a11y(monitor)
        _open_period(monitor, "Eastport report 1: Jan–Jun 2025", "2025-01-01", "2025-06-30")
        check_a11y(monitor)
        period_url = monitor.url
        _rate(monitor, adv001, "ADV-001", "Partial compliance", "Charter adopted; no meetings held yet.")
        expect(monitor.locator("#rated-count")).to_have_text(re.compile(r"^1 of \d+ requirements rated$"))
        check_a11y(monitor)
        _committee_sees_no_finding(committee_context, live_server, adv001, period_url)

        # The monitor shares the draft; the officer sees it, marked draft, and answers it in place.
        monitor.get_by_role("button", name=re.compile("^Share the draft of Eastport report 1")).click()
        expect(monitor.locator("#flash")).to_contain_text("is shared with the parties")
        officer.goto(period_url)
        row = officer.locator(f"#finding-{adv001}")
        expect(row).to_contain_text("Charter adopted; no meetings held yet.")
        expect(row.locator(".tracker-badge", has_text="Draft")).to_be_visible()
        row.get_by_text("Answer this draft finding").click()
        row.get_by_label("Agency's response to the draft finding on ADV-001").fill("Two meetings are set for July.")
        row.get_by_role("button", name="Save response on ADV-001").click()
        expect(officer.locator(f"#finding-{adv001}")).to_contain_text("Agency's response")
        expect(officer.locator(f"#finding-{adv001}")).to_contain_text("Two meetings are set for July.")
        check_a11y(officer)
        _committee_sees_no_finding(committee_context, live_server, adv001, period_url)

        # The monitor files the report: the committee sees the finding and the response.
        monitor.reload()
        monitor.get_by_label("Date filed with the court").fill("2025-07-20")
        monitor.get_by_label("Docket reference").fill("Dkt. 88")
        monitor.get_by_role("button", name="File Eastport report 1: Jan–Jun 2025").click()
        expect(monitor.locator("#flash")).to_contain_text("is filed (Dkt. 88, 2025-07-20)")
        expect(monitor.get_by_text("No report was filed before this period; there is nothing to compare with.")
               ).to_be_visible()
        expect(monitor.get_by_role("button", name=re.compile("^(File|Share) "))).to_have_count(0)
        # A correction replaces an existing finding; a row without one offers none.
        expect(monitor.locator(f"#finding-{adv001}").get_by_text("Record a correction for ADV-001")).to_be_visible()
        expect(monitor.locator(f"#finding-{eastport['reqs']['ADV-002']}").get_by_text(
            re.compile("^Record a"))).to_have_count(0)
        check_a11y(monitor)
        committee = committee_context.new_page()
        committee.goto(f"{live_server}/agencies/eastport/requirements/{adv001}")
        findings = committee.get_by_role("table", name="Findings by monitoring period, newest first")
        expect(findings).to_contain_text("Charter adopted; no meetings held yet.")
        committee.goto(period_url)
        expect(committee.locator(f"#finding-{adv001}")).to_contain_text("Two meetings are set for July.")
        check_a11y(committee)
        assert committee_context.request.get(f"{live_server}/api/v1/agencies/eastport/findings").json()["total"] == 1

        # A second period: ADV-001 moves up a level.
        monitor.get_by_role("link", name="Monitoring periods", exact=True).click()
        _open_period(monitor, "Eastport report 2: Jul–Dec 2025", "2025-07-01", "2025-12-31")
        row = monitor.locator(f"#finding-{adv001}")
        expect(row.get_by_role("cell").nth(1)).to_contain_text("Partial compliance")  # previous filed rating
        _rate(monitor, adv001, "ADV-001", "Operational compliance", "Committee met quarterly; minutes published.")
        monitor.get_by_label("Date filed with the court").fill("2025-12-31")
        monitor.get_by_label("Docket reference").fill("Dkt. 97")
        monitor.get_by_role("button", name="File Eastport report 2: Jul–Dec 2025").click()
        expect(monitor.get_by_role("heading", name="Changes since the previous filed ratings")).to_be_visible()
        expect(monitor.get_by_text("1 upgrade, 0 downgrades, 0 newly rated")).to_be_visible()
        deltas = monitor.get_by_role("table", name=re.compile("Upgrades, downgrades and newly rated"))
        expect(deltas.get_by_role("row", name=re.compile("^Advisory Committees"))).to_contain_text(
            "ADV-001: Partial compliance (Eastport report 1: Jan–Jun 2025) → Operational compliance")
        check_a11y(monitor)

        # The officer reads both findings on the requirement page.
        officer.goto(f"{live_server}/agencies/eastport/requirements/{adv001}")
        findings = officer.get_by_role("table", name="Findings by monitoring period, newest first")
        expect(findings.get_by_role("row", name=re.compile("^Eastport report 2"))).to_contain_text(
            "Operational compliance")
        expect(findings.get_by_role("row", name=re.compile("^Eastport report 1"))).to_contain_text(
            "Partial compliance")
        evidence_row = officer.get_by_role("row", name=re.compile(r"^Eastport advisory charter \(signed\)"))
        expect(evidence_row).to_contain_text("Accepted")
        check_a11y(officer)
    finally:
        officer_context.close()
        monitor_context.close()
        committee_context.close()


def _committee_sees_no_finding(context, live_server, req_id, period_url):
    """A draft or shared finding changes nothing the committee sees: requirement page, period page, API, export
    (the dashboard's counts: tests/test_findings_process.py)."""
    page = context.new_page()
    page.goto(f"{live_server}/agencies/eastport/requirements/{req_id}")
    expect(page.get_by_text("Charter adopted; no meetings held yet.")).to_have_count(0)
    page.goto(period_url)
    expect(page.get_by_text(re.compile("confidential until the report is filed"))).to_be_visible()
    expect(page.get_by_text("Two meetings are set for July.")).to_have_count(0)
    assert context.request.get(f"{live_server}/api/v1/agencies/eastport/findings").json()["total"] == 0
    assert "Partial compliance" not in context.request.get(f"{live_server}/agencies/eastport/export.csv").text()
    page.close()


def _open_period(page, name, first, last):
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_label("First day").fill(first)
    page.get_by_label("Last day").fill(last)
    page.get_by_role("button", name="Open period").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    expect(page.locator("#flash")).to_contain_text(f"Monitoring period “{name}” opened")


def _rate(page, req_id, code, level, narrative):
    row = page.locator(f"#finding-{req_id}")
    row.get_by_text(f"Record a finding for {code}").click()
    row.get_by_label(f"Level for {code}").select_option(label=level)
    row.get_by_label(f"Narrative for {code}").fill(narrative)
    row.get_by_role("button", name=f"Save finding for {code}").click()
    # htmx swaps the row in place; the page is not reloaded.
    row = page.locator(f"#finding-{req_id}")
    expect(row.get_by_role("cell").nth(2)).to_contain_text(level)
    expect(row).to_contain_text(narrative)
    expect(page.locator("#flash")).to_contain_text(f"{code}: finding recorded")


def test_keyboard_only_review_decision_and_finding(signed_in, live_server, live_app, eastport):
    """The monitor reaches and operates the review decision and the finding form with the keyboard alone."""
    adv002 = eastport["reqs"]["ADV-002"]
    with live_app.app_context():
        officer = db.session.execute(sa.select(User).where(User.email == OFFICER)).scalar_one()
        monitor = db.session.execute(sa.select(User).where(User.email == MONITOR)).scalar_one()
        agency = db.session.get(Agency, eastport["id"])
        evidence_service.add_link(db.session.get(Requirement, adv002), "https://eastport.example/minutes",
                                  {"title": "Eastport committee minutes", "visibility": "restricted"}, actor=officer)
        period = monitoring.create_period(agency, "Eastport keyboard review 2030", date(2030, 1, 1),
                                          date(2030, 6, 30), actor=monitor)
        db.session.commit()
        period_id = period.id

    context = signed_in(MONITOR)
    try:
        page = context.new_page()
        page.goto(f"{live_server}/reviews")
        item = page.get_by_role("link", name="Review “Eastport committee minutes”")
        tab_to(page, item)
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name="Review: Eastport committee minutes")).to_be_visible()

        # Tab into the comment, type, Tab past Accept to Return, Shift+Tab back to Accept, press Space.
        comment = page.get_by_label("Comment to the agency")
        tab_to(page, comment)
        page.keyboard.type("Minutes match the meeting calendar.")
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Accept")).to_be_focused()
        page.keyboard.press("Tab")
        expect(page.get_by_role("button", name="Return to the agency")).to_be_focused()
        page.keyboard.press("Shift+Tab")
        expect(page.get_by_role("button", name="Accept")).to_be_focused()
        page.keyboard.press("Space")
        expect(page.locator("#flash")).to_contain_text("“Eastport committee minutes” accepted")

        # The finding form: open the row's details with Enter, choose a level by typing, save with Enter.
        page.goto(f"{live_server}/agencies/{eastport['slug']}/periods/{period_id}")
        row = page.locator(f"#finding-{adv002}")
        summary = row.get_by_text("Record a finding for ADV-002")
        tab_to(page, summary)
        page.keyboard.press("Enter")
        level = row.get_by_label("Level for ADV-002")
        expect(level).to_be_visible()
        page.keyboard.press("Tab")
        expect(level).to_be_focused()
        page.keyboard.type("General")  # type-ahead in a focused select
        expect(level.locator("option:checked")).to_have_text("General compliance")
        page.keyboard.press("Tab")
        expect(row.get_by_label("Narrative for ADV-002")).to_be_focused()
        page.keyboard.type("Minutes for every quarter of the period.")
        page.keyboard.press("Tab")
        expect(row.get_by_role("button", name="Save finding for ADV-002")).to_be_focused()
        page.keyboard.press("Enter")
        row = page.locator(f"#finding-{adv002}")
        expect(row.get_by_role("cell").nth(2)).to_contain_text("General compliance")
        expect(page.locator("#flash")).to_contain_text("ADV-002: finding recorded for Eastport keyboard review 2030")
    finally:
        context.close()

