"""Hostile bytes in any input end in a 4xx or a stored value, never in a 500 (ASVS 16.5.1; WSTG-INPV).

A NUL byte is the sharp case: SQLite stores it, PostgreSQL refuses it ("text fields cannot contain NUL
(0x00) bytes"), so on PostgreSQL every input that reaches a query before any check answers 500 and logs
a traceback — including sign-in and public pages, which anyone can reach.
"""
import pytest
import sqlalchemy as sa

from tests.conftest import csrf_from
from tests.security.conftest import signed_in
from tracker.models import ApiToken, AuditEvent, Comment, Evidence, Requirement, StatusChange, UserSession

pytestmark = pytest.mark.security

def _anonymous(app):
    client = app.test_client()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client, token


ANONYMOUS = {
    "sign-in e-mail": lambda c, t, w: c.post("/login", data={"email": "a\x00b@example.org", "password": "x" * 12,
                                                             "csrf_token": t}),
    "catalog code": lambda c, t, w: c.get("/catalog/recommendations/A%00B"),
    "catalog module": lambda c, t, w: c.get("/catalog/a%00b"),
    "public slug": lambda c, t, w: c.get("/public/agency-a%00"),
    "public comment": lambda c, t, w: c.post(f"/public/agency-a/policies/{w['public_policy'].id}/comment",
                                             data={"body": "a\x00b", "csrf_token": t}),
}
# Secrets are hashed before any query, so these never reach the database as text.
HASHED = {
    "calendar token": lambda c, t, w: c.get("/calendar/dt_cal_a%00b.ics"),
    "API bearer token": lambda c, t, w: c.get("/api/v1/agencies", headers={"Authorization": "Bearer dt_api_\x00"}),
}

SIGNED_IN = {
    "comment": lambda o, w: o.post(f"/agencies/agency-a/requirements/{w['req'].id}/comments", {"body": "a\x00b"}),
    "notes": lambda o, w: o.post(f"/agencies/agency-a/requirements/{w['req'].id}/notes",
                                 {"notes": "a\x00b", "row_version": 1}),
    "status note": lambda o, w: o.post(f"/agencies/agency-a/requirements/{w['req'].id}/status",
                                       {"status": "in_progress", "note": "a\x00b", "row_version": 1}),
    "evidence title": lambda o, w: o.post(f"/agencies/agency-a/requirements/{w['req'].id}/evidence",
                                          {"kind": "link", "url": "https://example.org/", "title": "a\x00b"}),
    "token name": lambda o, w: o.post("/account/tokens", {"kind": "api", "name": "a\x00b",
                                                          "current_password": "correct horse battery staple"}),
    "board search": lambda o, w: o.client.get("/agencies/agency-a?q=a%00b"),
    "agency slug": lambda o, w: o.client.get("/agencies/agency-a%00"),
    "API slug": lambda o, w: o.client.get("/api/v1/agencies/agency-a%00/requirements"),
}


# A NUL byte is refused before any view runs: in the path with a 404 (no address has one), in a query
# or form field with a 400.
STATUS = {"sign-in e-mail": 400, "catalog code": 404, "catalog module": 404, "public slug": 404, "public comment": 400,
          "comment": 400, "notes": 400, "status note": 400, "evidence title": 400, "token name": 400,
          "board search": 400, "agency slug": 404, "API slug": 404}


def _written(db, world):
    """What any of these inputs could have written."""
    db.session.expire_all()
    counts = [db.session.scalar(sa.select(sa.func.count()).select_from(model))
              for model in (AuditEvent, Comment, Evidence, ApiToken, StatusChange, UserSession)]
    req = db.session.get(Requirement, world["req"].id)
    return counts, (req.status, req.notes, req.row_version)


@pytest.mark.parametrize("case", sorted(ANONYMOUS))
def test_nul_byte_from_anyone_is_refused_and_writes_nothing(make_app, db, world, case):
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    client, token = _anonymous(app)
    before = _written(db, world)
    response = ANONYMOUS[case](client, token, world)
    assert response.status_code == STATUS[case], response.status_code
    assert _written(db, world) == before


@pytest.mark.parametrize("case", sorted(HASHED))
def test_nul_byte_in_a_secret_is_a_plain_404(make_app, world, case):
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    client, token = _anonymous(app)
    assert HASHED[case](client, token, world).status_code == 404


@pytest.mark.parametrize("case", sorted(SIGNED_IN))
def test_nul_byte_from_a_signed_in_user_is_refused_and_writes_nothing(make_app, db, world, case):
    app = make_app(PROPAGATE_EXCEPTIONS=False)
    officer = signed_in(app, "officer@example.test")
    before = _written(db, world)
    response = SIGNED_IN[case](officer, world)
    assert response.status_code == STATUS[case], response.status_code
    assert _written(db, world) == before


@pytest.mark.parametrize("raw", ["%ff%fe", "%c0%af", "%ed%a0%80", "\u202e", "\ufeff", "a" * 5000])
def test_odd_but_valid_bytes_in_the_search_box_are_fine(app, world, raw):
    officer = signed_in(app, "officer@example.test")
    response = officer.client.get(f"/agencies/agency-a?q={raw}")
    assert response.status_code == 200
