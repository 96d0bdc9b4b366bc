"""T14: CSRF. Another session's token is refused; a cross-site auto-submitted form (no token, foreign
Origin/Referer) over HTTPS is refused even when it somehow carries a valid token; an htmx POST with the
X-CSRFToken header from the page succeeds. tests/test_web.py covers a missing or forged token over HTTP.
"""
import json
import re

import pytest
import sqlalchemy as sa

from tests.conftest import csrf_from
from tests.security.conftest import changed_tables, table_digests
from tracker.models import Requirement

pytestmark = pytest.mark.security

HTTPS = "https://localhost"
SAME_SITE = {"Referer": f"{HTTPS}/agencies/agency-a"}
PASSWORD = "correct horse battery staple"  # noqa: S105


class HttpsUser:
    """A browser on https://localhost: secure __Host- cookie, same-origin Referer on its own requests."""

    def __init__(self, app, email):
        self.client = app.test_client()
        page = self.client.get("/login", base_url=HTTPS)
        token = csrf_from(page.get_data(as_text=True))
        r = self.client.post("/login", base_url=HTTPS, headers={"Referer": f"{HTTPS}/login"},
                             data={"email": email, "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 303, r.status_code
        home = self.client.get("/", base_url=HTTPS).get_data(as_text=True)
        self.token = csrf_from(home)
        self.header_token = json.loads(re.search(r"hx-headers='([^']+)'", home).group(1))["X-CSRFToken"]

    def post(self, url, data, headers=None, token=True):
        data = dict(data)
        if token is True:
            data["csrf_token"] = self.token
        elif token:
            data["csrf_token"] = token
        return self.client.post(url, base_url=HTTPS, data=data, headers={**SAME_SITE, **(headers or {})})


@pytest.fixture
def secure_app(make_app, world):
    return make_app(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-session")


def _status_url(world):
    return f"/agencies/agency-a/requirements/{world['req'].id}/status"


def _version(db, world):
    db.session.commit()
    return db.session.scalar(sa.select(Requirement.row_version).where(Requirement.id == world["req"].id))


def test_token_of_another_session_is_refused(secure_app, db, world):
    one = HttpsUser(secure_app, "officer@example.test")
    two = HttpsUser(secure_app, "officer2@example.test")
    same_user_again = HttpsUser(secure_app, "officer@example.test")
    assert one.token != two.token
    before = table_digests(db)
    data = {"status": "implemented", "row_version": 1}
    for attacker, token in ((two, one.token), (same_user_again, one.token), (one, two.header_token)):
        assert attacker.post(_status_url(world), data, token=token).status_code == 400
        r = attacker.post(_status_url(world), data, token=False, headers={"X-CSRFToken": token, "HX-Request": "true"})
        assert r.status_code == 400
    assert changed_tables(before, table_digests(db)) == []


def test_token_from_before_sign_in_dies_at_sign_in(secure_app, db, world):
    """A token planted in a browser before the victim signs in (login CSRF / fixation) is useless after."""
    client = secure_app.test_client()
    planted = csrf_from(client.get("/login", base_url=HTTPS).get_data(as_text=True))
    r = client.post("/login", base_url=HTTPS, headers={"Referer": f"{HTTPS}/login"},
                    data={"email": "officer@example.test", "password": PASSWORD, "csrf_token": planted})
    assert r.status_code == 303
    before = table_digests(db)
    r = client.post(_status_url(world), base_url=HTTPS, headers=SAME_SITE,
                    data={"status": "implemented", "row_version": 1, "csrf_token": planted})
    assert r.status_code == 400
    assert changed_tables(before, table_digests(db)) == []


CROSS_SITE = [
    {"Origin": "https://evil.example", "Referer": "https://evil.example/attack.html"},
    {"Origin": "null"},                                                  # sandboxed iframe / data: page
    {"Origin": "https://localhost.evil.example", "Referer": "https://localhost.evil.example/"},
    {"Origin": "https://evil.example"},                                   # Referer stripped by the attacker
]


@pytest.mark.parametrize("headers", CROSS_SITE, ids=["foreign", "null-origin", "look-alike", "no-referer"])
def test_cross_site_auto_submit_without_token_is_refused(secure_app, db, world, headers):
    victim = HttpsUser(secure_app, "officer@example.test")
    before = table_digests(db)
    form = {"status": "implemented", "note": "forged", "row_version": _version(db, world)}
    r = victim.client.post(_status_url(world), base_url=HTTPS, data=form, headers=headers)
    assert r.status_code == 400
    assert "not sent from this site" in r.get_data(as_text=True)
    # enctype="text/plain" needs no preflight either.
    r = victim.client.post(_status_url(world), base_url=HTTPS, data="status=implemented&row_version=1",
                           content_type="text/plain", headers=headers)
    assert r.status_code == 400
    # The other writes a hostile page could aim at.
    for url, data in (("/logout", {}), ("/account/tokens", {"kind": "api", "name": "attacker"}),
                      (f"/agencies/agency-a/requirements/{world['req'].id}/comments", {"body": "forged"}),
                      (f"/public/agency-a/policies/{world['public_policy'].id}/comment", {"body": "forged"})):
        assert victim.client.post(url, base_url=HTTPS, data=data, headers=headers).status_code == 400, url
    assert changed_tables(before, table_digests(db)) == []
    assert victim.client.get("/account", base_url=HTTPS).status_code == 200  # still signed in: no logout CSRF


@pytest.mark.parametrize("referer", [None, "https://evil.example/attack.html", "http://localhost/agencies/agency-a",
                                     "https://localhost.evil.example/", "https://localhost:8443/"])
def test_valid_token_from_a_foreign_page_is_refused_over_https(secure_app, db, world, referer):
    """WTF_CSRF_SSL_STRICT: over HTTPS the Referer must be this site, so a leaked token alone is not enough."""
    victim = HttpsUser(secure_app, "officer@example.test")
    before = table_digests(db)
    headers = {"Referer": referer} if referer else {}
    r = victim.client.post(_status_url(world), base_url=HTTPS, headers=headers,
                           data={"status": "implemented", "row_version": _version(db, world),
                                 "csrf_token": victim.token})
    assert r.status_code == 400
    assert changed_tables(before, table_digests(db)) == []


def test_same_site_form_and_htmx_post_with_header_succeed(secure_app, db, world):
    user = HttpsUser(secure_app, "officer@example.test")
    r = user.post(_status_url(world), {"status": "in_progress", "row_version": _version(db, world)})
    assert r.status_code == 303
    # htmx: no token in the body, the one from <body hx-headers> in the X-CSRFToken header.
    for header in ("X-CSRFToken", "X-CSRF-Token"):
        status = "implemented" if header == "X-CSRFToken" else "not_started"
        r = user.client.post(_status_url(world), base_url=HTTPS,
                             data={"status": status, "row_version": _version(db, world)},
                             headers={**SAME_SITE, "HX-Request": "true", "HX-Target": f"req-{world['req'].id}",
                                      header: user.header_token})
        assert r.status_code == 200, (header, r.status_code)
        assert f'id="req-{world["req"].id}"' in r.get_data(as_text=True)
        db.session.commit()
        assert db.session.get(Requirement, world["req"].id).status == status


def test_api_is_read_only_so_its_csrf_exemption_reaches_no_write(app, db, world):
    before = table_digests(db)
    client = app.test_client()
    bearer = {"Authorization": f"Bearer {world['api_secret']}"}
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            assert rule.methods <= {"GET", "HEAD", "OPTIONS"}, rule
            url = re.sub(r"<[^>]+>", "agency-a", rule.rule)
            for method in ("POST", "PUT", "PATCH", "DELETE"):
                assert client.open(url, method=method, headers=bearer).status_code == 405, (method, url)
    after = table_digests(db)
    assert changed_tables(before, after) == []
