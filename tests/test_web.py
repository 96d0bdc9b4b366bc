"""Web baseline: security headers, CSRF, error pages, assets served by the app."""
import sqlalchemy as sa

from tests.conftest import csrf_from
from tests.factories import make_agency, make_user
from tracker.models import Agency, AuditEvent

CSP_PARTS = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "object-src 'none'",
             "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"]


def _assert_security_headers(response, private=True):
    csp = response.headers["Content-Security-Policy"]
    for part in CSP_PARTS:
        assert part in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert response.headers["Strict-Transport-Security"].startswith("max-age=31536000")
    if private:
        assert response.headers["Cache-Control"] == "no-store"


def test_headers_on_pages_fragments_errors_and_static(client, auth, db):
    make_user("admin@example.test", is_admin=True)
    db.session.commit()
    _assert_security_headers(client.get("/login"))
    _assert_security_headers(client.get("/catalog/"))
    _assert_security_headers(client.get("/nope"))
    auth.login("admin@example.test")
    page = client.get("/admin/")
    _assert_security_headers(page)
    assert "HX-Request" in page.headers.get_all("Vary")[0] or "HX-Request" in ",".join(page.headers.get_all("Vary"))
    _assert_security_headers(client.get("/agencies/missing", headers={"HX-Request": "true"}))
    with client.get("/static/app.css") as static:
        assert static.status_code == 200
        _assert_security_headers(static, private=False)
    assert client.post("/catalog/").status_code == 405


def test_pages_have_no_inline_script_or_style(client):
    html = client.get("/login").get_data(as_text=True)
    assert "<style" not in html
    assert " style=" not in html
    for tag in html.split("<script")[1:]:
        assert tag.lstrip().startswith("src="), "inline script found"
    assert "https://" not in html.split("<body")[0], "external asset in <head>"


def test_vendored_assets_are_served(client):
    for path in ("/static/vendor/htmx/htmx.min.js", "/static/vendor/uswds/css/uswds.min.css",
                 "/static/vendor/uswds/js/uswds.min.js", "/static/vendor/uswds/js/uswds-init.min.js"):
        with client.get(path) as response:
            assert response.status_code == 200, path
    html = client.get("/login").get_data(as_text=True)
    assert "hx-headers" in html and "X-CSRFToken" in html
    assert '"allowEval":false' in html and '"includeIndicatorStyles":false' in html


def test_post_without_csrf_token_is_refused_and_changes_nothing(client, auth, db):
    make_user("admin@example.test", is_admin=True)
    scale_agency = make_agency()
    db.session.commit()
    auth.login("admin@example.test")
    before = db.session.execute(sa.select(sa.func.count()).select_from(Agency)).scalar()
    data = {"name": "New", "slug": "new-agency", "state": "OH", "scale_id": str(scale_agency.scale_id),
            "source_id": "0"}
    r = client.post("/admin/agencies/new", data=data)
    assert r.status_code == 400
    assert "form expired or was not sent from this site" in r.get_data(as_text=True)
    r = client.post("/admin/agencies/new", data={**data, "csrf_token": "forged-token"})
    assert r.status_code == 400
    assert db.session.execute(sa.select(sa.func.count()).select_from(Agency)).scalar() == before
    # The same POST with the token as an htmx header succeeds.
    r = client.post("/admin/agencies/new", data=data, headers={"X-CSRFToken": auth.token})
    assert r.status_code == 303
    assert db.session.execute(sa.select(sa.func.count()).select_from(Agency)).scalar() == before + 1


def test_another_sessions_token_is_refused(app, db):
    make_user("one@example.test")
    db.session.commit()
    from tests.conftest import Auth

    one, two = Auth(app.test_client()), Auth(app.test_client())
    one.login("one@example.test")
    two.client.get("/login")
    r = two.client.post("/logout", data={"csrf_token": one.token})
    assert r.status_code == 400  # another session's token: refused before anything happens
    assert "form expired or was not sent from this site" in r.get_data(as_text=True)
    assert one.client.get("/account").status_code == 200  # the token's owner is still signed in
    token = csrf_from(two.client.get("/login").get_data(as_text=True))
    r = two.client.post("/login", data={"email": "one@example.test", "password": "x" * 12,
                                        "csrf_token": one.token})
    assert r.status_code == 400
    assert token


def test_server_error_page_is_generic(make_app):
    app = make_app(PROPAGATE_EXCEPTIONS=False)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret internals")

    with app.app_context():
        response = app.test_client().get("/boom")
    assert response.status_code == 500
    body = response.get_data(as_text=True)
    assert "secret internals" not in body and "Traceback" not in body
    assert "Reference:" in body
    _assert_security_headers(response)


def test_error_pages_for_unknown_paths_and_methods(client):
    assert client.get("/.git/config").status_code == 404
    r = client.open("/", method="TRACE")
    assert r.status_code == 405


def test_audit_event_per_agency_write(client, auth, db):
    make_user("admin@example.test", is_admin=True)
    agency = make_agency()
    db.session.commit()
    auth.login("admin@example.test")
    before = db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent)).scalar()
    r = auth.post(f"/admin/agencies/{agency.slug}", data={
        "name": "Renamed", "slug": agency.slug, "state": "OH", "scale_id": str(agency.scale_id), "source_id": "0",
        "effective_date": "2025-02-01"})
    assert r.status_code == 303
    events = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id)).scalars().all()
    assert len(events) == before + 1
    event = events[-1]
    assert event.action == "agency.update"
    assert event.before["name"].startswith("Agency") and event.after["name"] == "Renamed"
    assert event.actor_label == "admin@example.test" and event.ip == "127.0.0.1"
    assert event.agency_id == agency.id


def test_every_page_title_is_plain_text(client, auth, db):
    make_user("titles@example.test")
    db.session.commit()
    pages = {"/login": client.get("/login").get_data(as_text=True)}
    auth.login("titles@example.test")
    for path in ("/", "/account", "/catalog/"):
        pages[path] = client.get(path).get_data(as_text=True)
    for path, html in pages.items():
        title = html.split("<title>", 1)[1].split("</title>", 1)[0]
        assert "<" not in title and title.endswith("Consent-decree tracker"), (path, title)
