"""Flow 1 in a real browser: admin signs in, creates an agency, adopts modules, an officer sees them."""
import re

import sqlalchemy as sa
from playwright.sync_api import expect

from tests.factories import PASSWORD, make_user
from tracker.extensions import db
from tracker.models import Agency


def sign_in(page, base, email):
    page.goto(f"{base}/login")
    page.get_by_label("Email address").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def test_admin_sets_up_agency_and_officer_sees_requirements(page, live_server, live_app, check_a11y):
    errors = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)

    page.goto(f"{live_server}/catalog/")
    expect(page.get_by_role("heading", name="Recommendation catalog")).to_be_visible()
    check_a11y(page)
    page.get_by_role("link", name="Crisis Intervention Teams").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Crisis Intervention Teams")
    check_a11y(page)
    page.get_by_role("link", name="CIT-001").click()
    expect(page.get_by_role("heading", name="Citations")).to_be_visible()
    check_a11y(page)

    page.goto(f"{live_server}/login")
    check_a11y(page)
    sign_in(page, live_server, "admin@example.test")
    page.get_by_role("link", name="Administration").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Administration")  # the boosted swap has landed
    check_a11y(page)
    page.get_by_role("link", name="Create an agency").click()
    page.get_by_label("Agency name").fill("Lakeview Police Department")
    page.get_by_label("Short name for web addresses (slug)").fill("lakeview")
    page.get_by_label("State").fill("OH")
    page.get_by_label("Governing decree or agreement").select_option(
        label="Cleveland Settlement Agreement (2015) (Cleveland, Ohio (Cleveland Division of Police))")
    page.get_by_label("Effective date").fill("2025-06-02")
    page.get_by_label("Compliance scale").select_option(
        label="Cleveland-style scale (four rating levels, plus not yet assessed and evaluation deferred)")
    check_a11y(page)
    page.get_by_role("button", name="Save agency").click()
    expect(page.get_by_text("Agency Lakeview Police Department created")).to_be_visible()
    # USWDS draws its own checkbox; people click the label.
    page.locator("label", has_text="Crisis Intervention Teams").click()
    page.locator("label", has_text="Advisory Committees").click()
    expect(page.get_by_label(re.compile("Crisis Intervention Teams"))).to_be_checked()
    page.get_by_role("button", name="Adopt selected modules").click()
    expect(page.get_by_text(re.compile(r"\d+ requirement\(s\) created"))).to_be_visible()
    check_a11y(page)

    with live_app.app_context():
        agency = db.session.execute(sa.select(Agency).where(Agency.slug == "lakeview")).scalar_one()
        make_user("officer@lakeview.example", role="officer", agency=agency)
        db.session.commit()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have been signed out")).to_be_visible()

    sign_in(page, live_server, "officer@lakeview.example")
    page.get_by_role("link", name="Lakeview Police Department").first.click()
    expect(page.get_by_role("heading", name=re.compile("Crisis Intervention Teams"))).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Advisory Committees"))).to_be_visible()
    # ADV-001 has a 180-day deadline: 2025-06-02 + 180 days = 2025-11-29.
    expect(page.get_by_role("row", name=re.compile("ADV-001"))).to_contain_text("Nov 29, 2025")
    check_a11y(page)
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_keyboard_only_sign_in(page, live_server, live_app):
    with live_app.app_context():
        make_user("keys@example.test")
        db.session.commit()
    page.goto(f"{live_server}/login")
    page.keyboard.press("Tab")  # skip link first
    expect(page.get_by_role("link", name="Skip to main content")).to_be_focused()
    page.get_by_label("Email address").focus()
    page.keyboard.type("keys@example.test")
    page.keyboard.press("Tab")
    expect(page.get_by_label("Password")).to_be_focused()
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="My agencies")).to_be_visible()
