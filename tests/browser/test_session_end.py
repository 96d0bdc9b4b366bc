"""SECURITY-PLAN T19 and T08 in a real browser over HTTPS: the session cookie is `__Host-` prefixed,
Secure, HttpOnly and SameSite=Lax; after signing out, Back shows the sign-in page, never a page of
agency data from the browser's cache, and htmx has kept no copy of pages in localStorage."""
import re
from datetime import date

import sqlalchemy as sa
from playwright.sync_api import expect

from tests.browser.test_foundation_journey import sign_in
from tests.factories import make_user
from tracker.extensions import db
from tracker.models import ComplianceScale
from tracker.services import agencies


def test_back_after_sign_out_shows_sign_in_and_nothing_is_cached(page, live_server, live_app, check_a11y):
    with live_app.app_context():
        scale = db.session.execute(sa.select(ComplianceScale).where(ComplianceScale.key == "chicago")).scalar_one()
        agency = agencies.create_agency({"name": "Backbay Police Department", "slug": "backbay", "state": "MA",
                                         "source_id": None, "effective_date": date(2025, 3, 3), "scale_id": scale.id})
        agencies.adopt(agency, ["cit"])
        make_user("back@backbay.example", role="officer", agency=agency, name="Bea Back")
        db.session.commit()

    sign_in(page, live_server, "back@backbay.example")
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert set(cookies) == {"__Host-session"}, cookies
    session = cookies["__Host-session"]
    assert session["secure"] and session["httpOnly"] and session["sameSite"] == "Lax" and session["path"] == "/"
    page.goto(f"{live_server}/agencies/backbay")
    expect(page.get_by_role("heading", name=re.compile("Crisis Intervention Teams"))).to_be_visible()
    # A filter change is an htmx request that pushes a history entry: the case htmx would cache.
    page.get_by_label("Status", exact=True).select_option(label="Not started")
    expect(page).to_have_url(re.compile(r"status=not_started"))
    expect(page.get_by_role("row", name=re.compile("CIT-001"))).to_be_visible()

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have been signed out")).to_be_visible()
    page.go_back()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Backbay Police Department")).to_have_count(0)
    expect(page.get_by_role("row", name=re.compile("CIT-001"))).to_have_count(0)
    check_a11y(page)

    page.go_back()  # the board as it was before the filter: also fetched afresh, so also the sign-in page
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    stored = page.evaluate("() => Object.keys(window.localStorage)")
    assert "htmx-history-cache" not in stored, stored
