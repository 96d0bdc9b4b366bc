"""Flow 4 in a real browser: an advisory-committee member opens the dashboard, filters it by module,
downloads the requirement matrix, prints a period report and subscribes to the deadline calendar.
Then the module filter once by keyboard only."""
import re
from datetime import date

import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import PASSWORD, make_user
from tracker.extensions import db
from tracker.models import ComplianceLevel, ComplianceScale, Requirement
from tracker.services import agencies, monitoring, requirements
from tracker.services.exports import MATRIX_COLUMNS

AGENCY = "Northbay Police Department"
MEMBER = "member@northbay.example"
MEMBER_NAME = "Cora Committee"


@pytest.fixture(scope="module")
def northbay(live_app):
    """An agency with two filed monitoring reports (a trend, one upgrade) and one implemented requirement."""
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "cleveland")).scalar_one()
        agency = agencies.create_agency({"name": AGENCY, "slug": "northbay", "state": "OR", "source_id": None,
                                         "effective_date": date(2025, 3, 3), "scale_id": scale.id})
        agencies.adopt(agency, ["cit", "advisory"])
        officer = make_user("officer@northbay.example", role="officer", agency=agency, name="Nina Officer")
        monitor = make_user("monitor@northbay.example", role="monitor", agency=agency, name="Max Monitor")
        make_user(MEMBER, role="committee", agency=agency, name=MEMBER_NAME)
        reqs = {r.code: r for r in db.session.execute(
            sa.select(Requirement).where(Requirement.agency_id == agency.id)).scalars()}
        levels = {lvl.key: lvl.id for lvl in db.session.execute(
            sa.select(ComplianceLevel).where(ComplianceLevel.scale_id == scale.id)).scalars()}
        requirements.set_status(reqs["ADV-001"], "implemented", "Charter adopted", reqs["ADV-001"].row_version,
                                actor=officer)
        # The two earliest open deadlines of the agency, one per module: they head the "overdue and upcoming" list.
        for code, due in (("CIT-001", date(2025, 3, 4)), ("ADV-002", date(2025, 3, 5))):
            requirements.set_due_date(reqs[code], due, "Court order at entry", reqs[code].row_version, actor=officer)
        plan = [("Northbay report 1", date(2025, 3, 3), date(2025, 8, 31),
                 {"ADV-001": "partial", "CIT-001": "non_compliance"}),
                ("Northbay report 2", date(2025, 9, 1), date(2026, 2, 28),
                 {"ADV-001": "general", "CIT-001": "partial", "CIT-002": "operational"})]
        for name, start, end, ratings in plan:
            period = monitoring.create_period(agency, name, start, end, actor=monitor)
            for code, level in ratings.items():
                monitoring.record_finding(reqs[code], period, levels[level], f"{code} in {name}.", actor=monitor)
            monitoring.file_period(period, end, "Dkt. 7", actor=monitor)
        db.session.commit()
        dated = sum(1 for r in reqs.values() if r.due_date is not None)
        return {"slug": agency.slug, "count": len(reqs), "dated": dated}


@pytest.fixture(scope="module")
def member_context(browser, live_server, northbay):
    """The committee member signs in once for the module (the login form is rate-limited per address)."""
    context = browser.new_context(ignore_https_errors=True)
    sign_in(context.new_page(), live_server, MEMBER)
    state = context.storage_state()
    context.close()
    contexts = []

    def _new():
        contexts.append(browser.new_context(ignore_https_errors=True, storage_state=state))
        return contexts[-1]

    yield _new
    for context in contexts:
        context.close()


def tab_to(page, target, *, limit=120):
    """Press Tab until `target` has the focus, as a keyboard user would."""
    for _ in range(limit):
        if target.evaluate("el => el === document.activeElement"):
            break
        page.keyboard.press("Tab")
    expect(target).to_be_focused()


def test_committee_member_reads_dashboard_exports_prints_and_subscribes(
        member_context, live_server, northbay, check_a11y, tmp_path):
    page = member_context().new_page()
    page.goto(live_server)
    expect(page.get_by_role("heading", name="My agencies")).to_be_visible()
    check_a11y(page)
    page.get_by_role("link", name=f"Dashboard of {AGENCY}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{AGENCY}: dashboard")

    # Progress tables and the charts beside them.
    status_table = page.get_by_role("table", name="Requirements by agency-reported status")
    expect(status_table.get_by_role("row", name=re.compile("^Advisory Committees"))).to_be_visible()
    expect(status_table.get_by_role("row", name=re.compile("^Crisis Intervention Teams"))).to_be_visible()
    expect(status_table.get_by_role("row", name=re.compile("^All shown"))).to_contain_text(str(northbay["count"]))
    expect(page.get_by_role("table", name="Requirements by latest monitor finding")).to_be_visible()
    trend = page.get_by_role("table", name="Findings per monitoring period")
    expect(trend.get_by_role("row", name=re.compile("^Northbay report 1"))).to_be_visible()
    expect(trend.get_by_role("row", name=re.compile("^Northbay report 2"))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Crisis Intervention Teams by agency status: "))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Advisory Committees by latest finding: "))).to_be_visible()
    expect(page.get_by_role("img", name=re.compile(
        r"^Share of active requirements at the top level by period: Northbay report 1 \d+%, "
        r"Northbay report 2 \d+%$"))).to_be_visible()
    check_a11y(page)

    # Filter by module: the body is swapped in place (no reload) and the address follows.
    page.evaluate("window.__sameDocument = true")
    page.get_by_label("Module").select_option(label="Advisory Committees")
    expect(page).to_have_url(re.compile(r"[?&]module=advisory\b"))
    expect(page.get_by_role("heading", name="At a glance: Advisory Committees")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Crisis Intervention Teams"))).to_have_count(0)
    expect(status_table.get_by_role("row", name=re.compile("^Crisis Intervention Teams"))).to_have_count(0)
    assert page.evaluate("window.__sameDocument") is True
    check_a11y(page)

    # The requirement matrix as Excel.
    with page.expect_download() as info:
        page.get_by_role("link", name="Requirement matrix (Excel)").click()
    download = info.value
    assert re.fullmatch(r"northbay-requirements-\d{4}-\d{2}-\d{2}\.xlsx", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    download.save_as(saved)
    workbook = load_workbook(saved, read_only=True)
    try:
        rows = list(workbook.active.iter_rows(values_only=True))
    finally:
        workbook.close()
    assert rows[0] == MATRIX_COLUMNS
    assert len(rows) == northbay["count"] + 1
    adv001 = next(r for r in rows if r[0] == "ADV-001")
    assert adv001[MATRIX_COLUMNS.index("Status")] == "Implemented"
    assert adv001[MATRIX_COLUMNS.index("Latest finding")] == "General compliance (Northbay report 2)"

    # The printable report of the latest period.
    page.get_by_role("listitem").filter(has_text="Northbay report 2 (filed)").get_by_role(
        "link", name="printable report").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{AGENCY}Monitoring report: Northbay report 2")
    expect(page.get_by_text("2 upgrades, 0 downgrades")).to_be_visible()
    expect(page.get_by_text("Newly rated: CIT-002 Operational compliance")).to_be_visible()
    expect(page.get_by_text("Upgrade: ADV-001 Partial compliance (Northbay report 1) → General compliance")
           ).to_be_visible()
    check_a11y(page)
    nav = page.get_by_role("navigation", name="Primary")
    expect(nav).to_be_visible()
    page.emulate_media(media="print")
    expect(nav).to_be_hidden()
    expect(page.locator("header.usa-header")).to_be_hidden()
    expect(page.get_by_role("link", name="Back to the dashboard")).to_be_hidden()
    expect(page.get_by_role("heading", level=1)).to_be_visible()
    expect(page.get_by_role("table", name="Advisory Committees findings")).to_be_visible()
    page.emulate_media(media="screen")

    # A calendar feed from the account page; its address is shown once.
    page.get_by_role("link", name=f"Account ({MEMBER_NAME})").click()
    expect(page.get_by_role("heading", name="API tokens and calendar feeds")).to_be_visible()
    expect(page).to_have_title("Your account · Consent-decree tracker")
    check_a11y(page)
    page.get_by_label("Agency for a calendar feed").select_option(label=AGENCY)
    page.get_by_label("Your current password, to create the calendar feed").fill(PASSWORD)  # issue 19
    page.get_by_role("button", name="Create calendar feed").click()
    expect(page.get_by_role("heading", name="Calendar feed created")).to_be_visible()
    check_a11y(page)
    address = page.get_by_label(f"Subscription address for {AGENCY}")
    expect(address).to_have_attribute("readonly", "")
    url = page.locator("#secret").input_value()
    assert url.startswith(f"{live_server}/calendar/") and url.endswith(".ics")
    response = page.request.get(url)
    assert response.ok
    assert response.headers["content-type"].startswith("text/calendar")
    body = response.text()
    assert body.startswith("BEGIN:VCALENDAR")
    assert body.count("BEGIN:VEVENT") == northbay["dated"] > 0
    assert f"X-WR-CALNAME:{AGENCY}: decree deadlines" in body
    # Shown once: the account page lists the feed by its prefix only.
    page.get_by_role("link", name="Back to your account").click()
    tokens = page.get_by_role("table", name="Your tokens")
    expect(tokens.get_by_role("row", name=re.compile(f"^{AGENCY} Calendar feed"))).to_be_visible()
    assert url.rsplit("/", 1)[1].removesuffix(".ics") not in page.content()


def test_filtered_dashboard_lists_only_that_modules_deadlines(member_context, live_server, northbay):
    page = member_context().new_page()
    page.goto(f"{live_server}/agencies/{northbay['slug']}/dashboard?module=advisory")
    expect(page.get_by_role("heading", name="At a glance: Advisory Committees")).to_be_visible()
    deadlines = page.get_by_role("table", name="Open requirements due within 90 days or overdue, soonest first")
    expect(deadlines.get_by_role("rowheader", name=re.compile("^ADV-"))).not_to_have_count(0)
    expect(deadlines.get_by_role("rowheader", name=re.compile("^CIT-"))).to_have_count(0, timeout=1000)


def test_keyboard_only_module_filter(member_context, live_server, northbay):
    page = member_context().new_page()
    page.goto(live_server)
    link = page.get_by_role("link", name=f"Dashboard of {AGENCY}")
    tab_to(page, link)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{AGENCY}: dashboard")

    module = page.get_by_label("Module")
    tab_to(page, module)
    page.keyboard.type("Crisis")  # type-ahead in a focused select changes it and fires "change"
    expect(module).to_have_value("cit")
    expect(page).to_have_url(re.compile(r"[?&]module=cit\b"))
    expect(page.get_by_role("heading", name="At a glance: Crisis Intervention Teams")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Advisory Committees"))).to_have_count(0)
    # The select sits outside the swapped region: the keyboard user keeps their place.
    expect(module).to_be_focused()
    page.keyboard.press("Home")  # back to "All modules"
    expect(module).to_have_value("")
    expect(page.get_by_role("heading", name="At a glance", exact=True)).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("^Advisory Committees by agency status"))).to_be_visible()
