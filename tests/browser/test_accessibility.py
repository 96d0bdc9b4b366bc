"""WCAG 2.2 AA in a real browser (issue 17): every page reachable by link for each role runs axe with no
violation and reflows at 320 CSS px; the board, the requirement page, the review queue, the findings grid, the
dashboard, the roll-up and the import page reflow at 320 px and at 200% zoom; keyboard-only journeys check where
focus lands after each htmx swap and that the live regions are the same elements before and after.

The world is the demo agency (80 requirements: 75 adopted from the catalog, 5 imported paragraphs; findings,
evidence, requests, meetings, indicators) on its own live server."""
import re
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect
from werkzeug.exceptions import HTTPException
from werkzeug.serving import make_server

from tests.conftest import BASE_CONFIG
from tests.factories import PASSWORD, password_hash
from tracker import create_app
from tracker.extensions import db
from tracker.models import MonitoringPeriod, Requirement, User
from tracker.models.indicators import indicator_requirement

ROOT = Path(__file__).resolve().parents[2]
AXE_OPTIONS = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a",
                                                     "wcag22aa", "best-practice"]},
               "resultTypes": ["violations"]}
ROLES = ["officer", "monitor", "committee", "admin"]
# Not pages: downloads, feeds, sign-out, JSON.
NOT_PAGES = re.compile(r"/logout|/download|/file\b|\.(zip|csv|xlsx|pdf|docx|ics|json)\b|/export|/feed|/api/|"
                       r"/static/|/matrix|/package|/status-report")
PAGES_PER_ROLE = 45


@pytest.fixture(scope="module")
def demo_app(tmp_path_factory):
    from tracker.services.catalog import load_catalog
    from tracker.services.demo import load_demo

    tmp = tmp_path_factory.mktemp("a11y")
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'a11y.db'}",
                      "EVIDENCE_DIR": str(tmp / "evidence"), "HSTS": False,
                      "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_NAME": "__Host-session"})
    with app.app_context():
        db.create_all()
        load_catalog(ROOT / "seed" / "catalog.yaml")
        load_demo(ROOT / "seed" / "demo.yaml")
        for user in db.session.execute(sa.select(User)).scalars():
            user.password_hash = password_hash()
        db.session.commit()
    return app


@pytest.fixture(scope="module")
def demo(demo_app, tls_context):
    server = make_server("127.0.0.1", 0, demo_app, threaded=True, ssl_context=tls_context)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=5)


def _sign_in(page, base, role):
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill(f"{role}@harbor-city.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def _settled(page):
    page.wait_for_function("() => document.readyState === 'complete' && document.querySelector('main') "
                           "&& !document.querySelector('.htmx-request')")


def _axe(page):
    _settled(page)
    results = Axe().run(page, options=AXE_OPTIONS)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']][:3]}" for v in results.response["violations"]]


def _page_width(page):
    """How wide the page is beyond the window (0 when nothing scrolls sideways at page level)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def _kind(routes, url):
    """One visit per kind of page: the route that answers it, whatever its ids, slugs or query (sorted, filtered
    and per-module views of one page are the same template; the keyboard journeys check sorting and filtering)."""
    try:
        return routes.match(url.partition("?")[0], method="GET")[0]
    except HTTPException:  # not a page of the app (or a redirect to one): judged by its own address
        return url


def _crawl(page, base, check, app):
    routes = app.url_map.bind("127.0.0.1")
    seen, queue, visited = set(), ["/"], []
    while queue and len(visited) < PAGES_PER_ROLE:
        url = queue.pop(0)
        if _kind(routes, url) in seen:
            continue
        seen.add(_kind(routes, url))
        response = page.goto(base + url)
        if response is None or response.status >= 400 or "text/html" not in response.headers.get("content-type", ""):
            continue
        visited.append(url)
        check(url)
        for href in page.eval_on_selector_all("header a[href], main a[href]",
                                              "links => links.map(a => a.getAttribute('href'))"):
            if href.startswith("/") and not href.startswith("//") and not NOT_PAGES.search(href):
                queue.append(href.split("#")[0])
    return visited


@pytest.mark.parametrize("role", ROLES)
def test_every_page_reachable_by_link_passes_axe_and_reflows_at_320px(browser, demo, demo_app, role):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo, role)
    problems = []

    def check(url):
        problems.extend(f"{url} {v}" for v in _axe(page))
        page.set_viewport_size({"width": 320, "height": 800})
        if _page_width(page) > 0:
            problems.append(f"{url} is {_page_width(page)} px wider than a 320 px window")
        page.set_viewport_size({"width": 1280, "height": 900})

    visited = _crawl(page, demo, check, demo_app)
    context.close()
    assert len(visited) >= 10, visited
    assert problems == [], "\n".join(problems)


def test_states_the_crawl_may_not_reach_pass_axe_and_reflow(browser, demo, demo_app):
    """The crawl visits one page per route; these are the same routes with the content the demo data adds: a
    requirement with indicators, a catalog module with suggested indicators, the board grouped by the agreement's
    own sections, and a monitoring plan holding those paragraphs."""
    with demo_app.app_context():
        req = db.session.execute(sa.select(Requirement).where(Requirement.id.in_(
            sa.select(indicator_requirement.c.requirement_id))).order_by(Requirement.sort_key).limit(1)).scalar_one()
        period = db.session.execute(sa.select(MonitoringPeriod).order_by(MonitoringPeriod.id.desc())).scalars().first()
    urls = [f"/agencies/harbor-city/requirements/{req.id}", "/catalog/data", "/agencies/harbor-city?group=section",
            f"/agencies/harbor-city/periods/{period.id}/plan"]
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo, "monitor")
    problems = []
    for url in urls:
        assert page.goto(demo + url).status == 200, url
        problems.extend(f"{url} {v}" for v in _axe(page))
        page.set_viewport_size({"width": 320, "height": 800})
        if _page_width(page) > 0:
            problems.append(f"{url} is {_page_width(page)} px wider than a 320 px window")
        page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(demo + "/catalog/data")
    expect(page.get_by_role("heading", name="Suggested indicators")).to_be_visible()
    page.goto(demo + f"/agencies/harbor-city/requirements/{req.id}")
    linked = page.get_by_role("table", name=re.compile("^Indicators that show whether this requirement works"))
    expect(linked.get_by_role("rowheader")).not_to_have_count(0)
    context.close()
    assert problems == [], "\n".join(problems)


def _ids(demo_app):
    with demo_app.app_context():
        req = db.session.execute(sa.select(Requirement).order_by(Requirement.sort_key).limit(1)).scalar_one()
        period = db.session.execute(sa.select(MonitoringPeriod).order_by(MonitoringPeriod.id.desc())).scalars().first()
        return {"req": req.id, "period": period.id}


@pytest.mark.parametrize("width", [320, 640], ids=["320px", "200pct-zoom"])
def test_named_pages_reflow(browser, demo, demo_app, width):
    """640 CSS px is a 1280 px window at 200% zoom."""
    ids = _ids(demo_app)
    pages = {"officer": ["/agencies/harbor-city", f"/agencies/harbor-city/requirements/{ids['req']}",
                         "/agencies/harbor-city/dashboard", "/agencies/harbor-city/import"],
             "monitor": ["/reviews", f"/agencies/harbor-city/periods/{ids['period']}", "/rollup"]}
    wide = []
    for role, urls in pages.items():
        context = browser.new_context(ignore_https_errors=True, viewport={"width": width, "height": 800})
        page = context.new_page()
        _sign_in(page, demo, role)
        for url in urls:
            response = page.goto(demo + url)
            assert response.status == 200, url
            _settled(page)
            if _page_width(page) > 0:
                wide.append(f"{url} as {role}: {_page_width(page)} px too wide")
            # A table wider than the window scrolls in its own container, which keyboard users can reach.
            stuck = page.evaluate("""() => [...document.querySelectorAll('.tracker-scroll')]
                .filter(b => b.scrollWidth > b.clientWidth + 1 && b.getAttribute('tabindex') !== '0').length""")
            if stuck:
                wide.append(f"{url}: {stuck} scrolling table(s) not focusable")
        context.close()
    assert wide == []


def _focused(page):
    return page.evaluate("() => { const e = document.activeElement; "
                         "return (e.id || '') + '|' + e.tagName + '|' + (e.textContent || '').trim().slice(0, 40); }")


def _same_element(page, handle, selector):
    return page.evaluate("([el, sel]) => el.isConnected && document.querySelector(sel) === el", [handle, selector])


def test_keyboard_journey_on_the_board_focus_and_live_regions(browser, demo, demo_app):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo, "officer")
    page.goto(f"{demo}/agencies/harbor-city")
    _settled(page)
    flash, count = page.query_selector("#flash"), page.query_selector("#board-count")
    loading = page.locator("#board-loading")
    expect(loading).to_have_text("")  # silent while nothing loads
    row_id = page.locator("tbody tr").first.get_attribute("id")
    row = page.locator(f"#{row_id}")

    # Edit: focus goes to the first field of the row's form.
    row.get_by_role("link", name=re.compile("^Edit")).focus()
    page.keyboard.press("Enter")
    expect(row.get_by_label(re.compile("New status"))).to_be_focused()
    assert not _axe(page), _axe(page)

    # 422: not applicable without a note; focus on the note, the message names it, the owner choice is kept.
    row.get_by_label(re.compile("New status")).select_option("not_applicable")
    row.get_by_label(re.compile("^Owner")).select_option(index=1)
    owner_choice = row.get_by_label(re.compile("^Owner")).input_value()
    row.get_by_role("button", name=re.compile("^Save")).focus()
    page.keyboard.press("Enter")
    expect(row.get_by_label(re.compile("^Note"))).to_be_focused()
    expect(row.get_by_label(re.compile("^Owner"))).to_have_value(owner_choice)
    expect(page.locator("#flash")).to_contain_text("justification is required")
    assert _same_element(page, flash, "#flash")
    assert not _axe(page), _axe(page)

    # 200: one Save sets status and owner; focus back on the row's Edit; "Saved" on the row.
    row.get_by_label(re.compile("New status")).select_option("in_progress")
    page.keyboard.press("Tab")
    row.get_by_label(re.compile("^Note")).fill("Kick-off held")
    row.get_by_role("button", name=re.compile("^Save")).focus()
    page.keyboard.press("Enter")
    expect(row.get_by_role("link", name=re.compile("^Edit"))).to_be_focused()
    expect(row.locator(".tracker-saved")).to_have_text("Saved")
    expect(page.locator("#flash")).to_contain_text("saved (status, owner)")
    assert _same_element(page, flash, "#flash")

    # Cancel: back to the Edit button.
    page.keyboard.press("Enter")
    expect(row.get_by_label(re.compile("New status"))).to_be_focused()
    row.get_by_role("button", name=re.compile("^Cancel")).focus()
    page.keyboard.press("Enter")
    expect(row.get_by_role("link", name=re.compile("^Edit"))).to_be_focused()

    # 409: someone else saves first; focus on the alert beside the form, which shows both values.
    page.keyboard.press("Enter")
    expect(row.get_by_label(re.compile("New status"))).to_be_focused()
    other = browser.new_context(ignore_https_errors=True).new_page()
    _sign_in(other, demo, "officer2")
    other.goto(f"{demo}/agencies/harbor-city")
    other_row = other.locator(f"#{row_id}")
    other_row.get_by_role("link", name=re.compile("^Edit")).click()
    other_row.get_by_label(re.compile("New status")).select_option("implemented")
    other_row.get_by_role("button", name=re.compile("^Save")).click()
    expect(other.locator("#flash")).to_contain_text("saved (status)")
    other.context.close()
    row.get_by_label(re.compile("New status")).select_option("not_started")
    row.get_by_role("button", name=re.compile("^Save")).focus()
    page.keyboard.press("Enter")
    alert = row.get_by_role("alert")
    expect(alert).to_be_focused()
    expect(alert).to_contain_text("status is now Implemented")
    expect(alert).to_contain_text("You chose status Not started")
    expect(row.get_by_label(re.compile("New status"))).to_have_value("not_started")
    assert not _axe(page), _axe(page)

    # Sorting by a column: the count region is the same element, focus stays on that column's link.
    page.locator("[data-focus-key='sort-due']").first.focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"sort=due"))
    expect(page.locator("[data-focus-key='sort-due']").first).to_be_focused()
    assert _same_element(page, count, "#board-count")
    expect(loading).to_have_text("")

    # Filtering: the count live region changes its text, not the element.
    page.get_by_label("Status", exact=True).select_option("implemented")
    expect(page.locator("#board-count")).to_contain_text("match the filters")
    assert _same_element(page, count, "#board-count") and _same_element(page, flash, "#flash")
    assert not _axe(page), _axe(page)
    context.close()


def test_board_at_phone_width_edits_by_keyboard(browser, demo):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 320, "height": 700})
    page = context.new_page()
    _sign_in(page, demo, "officer2")
    page.goto(f"{demo}/agencies/harbor-city")
    row = page.locator("tbody tr").nth(3)
    row.get_by_role("link", name=re.compile("^Edit")).focus()
    page.keyboard.press("Enter")
    expect(row.get_by_label(re.compile("New status"))).to_be_focused()
    assert _page_width(page) == 0
    assert not _axe(page), _axe(page)
    context.close()


def test_bulk_edit_by_keyboard(browser, demo):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo, "officer")
    page.goto(f"{demo}/agencies/harbor-city?module=data")
    boxes = page.get_by_role("checkbox", name=re.compile("^Select DAT-"))
    for i in (0, 1):
        boxes.nth(i).focus()
        page.keyboard.press("Space")
    page.locator(".tracker-bulk summary").focus()
    page.keyboard.press("Enter")
    page.get_by_label("New status").select_option("not_applicable")
    page.get_by_role("button", name="Set the status of the selected").focus()
    page.keyboard.press("Enter")
    # Refused without a note: the error summary takes focus and links to the field; the ticks are kept.
    summary = page.locator(".tracker-error-summary")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link")).to_have_attribute("href", "#bulk-note")
    expect(page.get_by_role("checkbox", name=re.compile("^Select DAT-")).nth(1)).to_be_checked()
    assert not _axe(page), _axe(page)
    page.get_by_label(re.compile("^Note")).fill("Out of scope per the amended decree")
    page.get_by_role("button", name="Set the status of the selected").click()
    expect(page.locator("#flash")).to_contain_text("Status set for 2 requirements")
    context.close()


def test_dashboard_module_swap_is_announced_in_a_permanent_region(browser, demo):
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    _sign_in(page, demo, "monitor")
    page.goto(f"{demo}/agencies/harbor-city/dashboard")
    region = page.query_selector("#dashboard-status")
    assert region.get_attribute("role") == "status"
    page.get_by_label("Module").select_option(label="Data Collection and Analysis")
    expect(page.locator("#dashboard-status")).to_have_text("The dashboard now shows Data Collection and Analysis.")
    assert _same_element(page, region, "#dashboard-status")
    assert not _axe(page), _axe(page)
    context.close()


def test_evidence_upload_confirmation_and_errors_take_focus(browser, demo, demo_app, tmp_path):
    ids = _ids(demo_app)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo, "officer")
    page.goto(f"{demo}/agencies/harbor-city/requirements/{ids['req']}")
    form = page.locator("form[action$='/evidence']")
    form.get_by_role("button", name="Add evidence").click()  # no title, no file
    summary = page.locator("#evidence-errors")
    expect(summary).to_be_focused()
    expect(summary.get_by_role("link", name=re.compile("Title"))).to_have_attribute("href", "#title")
    assert page.evaluate("() => document.activeElement.getBoundingClientRect().top") < 900  # in view
    assert not _axe(page), _axe(page)
    pdf = tmp_path / "roster.pdf"
    pdf.write_bytes(b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    form = page.locator("form[action$='/evidence']")
    form.get_by_label("File", exact=True).set_input_files(str(pdf))
    form.get_by_label("Title").fill("Crisis line roster")
    form.get_by_role("button", name="Add evidence").click()
    added = page.locator("#evidence-added")
    expect(added).to_be_focused()
    expect(added).to_contain_text("“Crisis line roster” added and submitted for review")
    assert page.evaluate("() => document.activeElement.getBoundingClientRect().top") < 900
    context.close()


def test_import_file_input_is_named_by_its_label(browser, demo):
    context = browser.new_context(ignore_https_errors=True)
    page = context.new_page()
    _sign_in(page, demo, "officer")
    page.goto(f"{demo}/agencies/harbor-city/import")
    _settled(page)
    name = page.evaluate("""async () => { const el = document.getElementById('file');
        return el.getAttribute('aria-label') || el.labels[0].textContent.trim(); }""")
    assert name == "CSV or XLSX file"
    expect(page.get_by_label("CSV or XLSX file")).to_have_attribute("type", "file")
    context.close()


def test_saving_a_finding_keeps_focus_on_its_row(browser, demo, demo_app):
    ids = _ids(demo_app)
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _sign_in(page, demo, "monitor")
    page.goto(f"{demo}/agencies/harbor-city/periods/{ids['period']}")
    summary = page.locator("tr[id^='finding-'] details summary").first
    row_id = summary.locator("xpath=ancestor::tr").get_attribute("id")
    summary.focus()
    page.keyboard.press("Enter")
    row = page.locator(f"#{row_id}")
    row.get_by_role("button", name=re.compile("^Save")).first.focus()
    page.keyboard.press("Enter")
    _settled(page)
    # Whether the answer is the saved row or the form with an error, focus stays in this row, not on <body>.
    page.wait_for_function(f"() => document.activeElement && document.activeElement.closest('#{row_id}')")
    assert page.evaluate("() => document.activeElement !== document.body")
    context.close()
