"""Issue 19 §2: tokens and secrets with a lifecycle, re-authentication that counts, one-time passwords kept out
of the cookie, and a lockout nobody can use to lock a holder out.

Each test failed on the code before the fix: tokens never expired, survived a password change, "end all
sessions" and disabling, and were created without the password; 25 wrong current passwords all answered
422; the new user's password decoded from the session cookie; 5 failures from anywhere locked the account
for everyone until an administrator acted.
"""
import re
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import Auth, csrf_from
from tests.factories import PASSWORD, make_agency, make_user
from tracker.models import ApiToken, AuditEvent, LoginBlock, User, utcnow
from tracker.services import accounts

pytestmark = pytest.mark.security
ATTACKER = "203.0.113.5"
HOLDER = "198.51.100.7"


def _secret(response):
    match = re.search(r'<input[^>]*id="secret"[^>]*value="([^"]+)"', response.get_data(as_text=True))
    assert match, response.get_data(as_text=True)[:3000]
    return match.group(1)


def _api(client, secret):
    return client.get("/api/v1/agencies", headers={"Authorization": f"Bearer {secret}"}).status_code


@pytest.fixture
def officer(app, db, client, auth):
    agency = make_agency(slug="harbor")
    make_user("officer@example.test", role="officer", agency=agency)
    db.session.commit()
    auth.login("officer@example.test")
    return auth


def _new_token(auth, **fields):
    return auth.post("/account/tokens", {"kind": "api", "name": "nightly", "current_password": PASSWORD, **fields})


def test_a_token_needs_the_current_password_and_a_wrong_one_counts(officer, db):
    for data in ({}, {"current_password": "not my password at all"}):
        r = officer.post("/account/tokens", {"kind": "api", "name": "nightly", **data})
        assert r.status_code == 303 and r.headers["Location"].endswith("/account#tokens")
    assert db.session.execute(sa.select(sa.func.count(ApiToken.id))).scalar() == 0
    block = db.session.execute(sa.select(LoginBlock)).scalar_one()
    assert (block.source, block.failures, block.locked_at) == ("127.0.0.1", 2, None)
    reauth = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "auth.reauth")).scalars().all()
    assert [e.outcome for e in reauth] == ["failure", "failure"]

    r = _new_token(officer)
    assert r.status_code == 200
    token = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert timedelta(days=89, hours=23) < token.expires_at - utcnow() <= timedelta(days=90)


def test_a_token_needs_the_authenticator_code_when_enrolled(app, db, client, auth):
    secret = pyotp.random_base32()
    make_user("mfa@example.test", role="officer", agency=make_agency(), totp_secret=secret)
    db.session.commit()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    client.post("/login", data={"email": "mfa@example.test", "password": PASSWORD, "csrf_token": token})
    token = csrf_from(client.get("/login/code").get_data(as_text=True))
    assert client.post("/login/code", data={"code": pyotp.TOTP(secret).now(), "csrf_token": token}).status_code == 303
    auth.token = csrf_from(client.get("/account").get_data(as_text=True))
    with time_machine.travel(utcnow() + timedelta(seconds=60)):  # a fresh step: codes are single-use
        assert _new_token(auth).status_code == 303
        assert _new_token(auth, code=pyotp.TOTP(secret).now()).status_code == 200


def test_expiry_is_chosen_within_bounds_shown_and_enforced(officer, db, client):
    r = _new_token(officer, days="400")
    assert r.status_code == 303
    page = client.get("/account").get_data(as_text=True)
    assert "a whole number from 1 to 365" in page
    secret = _secret(_new_token(officer, days="30"))
    token = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert round((token.expires_at - token.created_at) / timedelta(days=1)) == 30
    assert f"{token.expires_at:%b %-d, %Y %H:%M} UTC" in client.get("/account").get_data(as_text=True)
    assert _api(client, secret) == 200
    with time_machine.travel(utcnow() + timedelta(days=31)):
        assert _api(client.application.test_client(), secret) == 404
        officer.login("officer@example.test")
        assert ">Expired" in client.get("/account").get_data(as_text=True)


@pytest.mark.parametrize("how", ["password change", "end all sessions", "disable"])
def test_tokens_and_feeds_end_with_the_sessions(app, db, client, officer, how):
    api_secret = _secret(_new_token(officer))
    feed = _secret(officer.post("/account/tokens", {"kind": "calendar", "agency": "harbor",
                                                    "current_password": PASSWORD}))
    feed_path = feed.split("localhost", 1)[1]
    outsider = app.test_client()
    assert _api(outsider, api_secret) == 200 and outsider.get(feed_path).status_code == 200
    me = db.session.execute(sa.select(User).where(User.email == "officer@example.test")).scalar_one()
    if how == "password change":
        r = officer.post("/account", {"current_password": PASSWORD, "new_password": "an entirely new passphrase 9"})
        assert r.status_code == 303
        assert "Revoked" in client.get("/account").get_data(as_text=True)
        assert "(password change)" in client.get("/account").get_data(as_text=True)
    else:
        make_user("admin@example.test", is_admin=True)
        db.session.commit()
        admin = Auth(app.test_client())
        admin.login("admin@example.test")
        action = "sign-out" if how == "end all sessions" else "disable"
        assert admin.post(f"/admin/users/{me.id}/{action}").status_code == 303
    assert _api(outsider, api_secret) == 404 and outsider.get(feed_path).status_code == 404
    reasons = set(db.session.execute(sa.select(ApiToken.revoked_reason)).scalars())
    assert reasons == {{"password change": "password change", "end all sessions": "admin sign-out",
                        "disable": "deactivated"}[how]}


def test_rotation_gives_a_new_secret_and_ends_the_old_one(officer, db, client):
    old = _secret(_new_token(officer, days="45"))
    token = db.session.execute(sa.select(ApiToken)).scalar_one()
    assert officer.post(f"/account/tokens/{token.id}/rotate", {"current_password": "wrong"}).status_code == 303
    new = _secret(officer.post(f"/account/tokens/{token.id}/rotate", {"current_password": PASSWORD}))
    assert new != old
    assert _api(client.application.test_client(), old) == 404
    assert _api(client.application.test_client(), new) == 200
    rows = db.session.execute(sa.select(ApiToken).order_by(ApiToken.id)).scalars().all()
    assert [(t.name, t.revoked_reason) for t in rows] == [("nightly", "rotated"), ("nightly", "")]
    assert round((rows[1].expires_at - rows[1].created_at) / timedelta(days=1)) == 45


def test_wrong_current_passwords_lock_the_address_and_end_the_session(officer, db, client):
    """25 guesses used to answer 422 every time; now the 5th locks the account for that address and signs the
    guesser out; the holder, elsewhere, still signs in."""
    answers, responses = [], []
    for i in range(25):
        responses.append(officer.post("/account", {"current_password": f"guess number {i:02d}",
                                                   "new_password": "x" * 20}))
        answers.append(responses[-1].status_code)
    assert answers[:4] == [422] * 4
    # Then signed out: the next tries are sent to sign in again (or refused for a stale form), never checked.
    assert answers[4] == 303 and 422 not in answers[5:], answers
    assert responses[4].headers["Location"].endswith("/login")
    me = db.session.execute(sa.select(User).where(User.email == "officer@example.test")).scalar_one()
    assert [b.source for b in accounts.locked_sources(me)] == ["127.0.0.1"]
    elsewhere = Auth(_client_from(client.application, HOLDER))
    assert elsewhere.login("officer@example.test").status_code == 303


def test_wrong_current_passwords_meet_the_rate_limit(make_app, db):
    app = make_app(LOGIN_RATE_LIMIT="3 per minute")
    with app.app_context():
        make_user("limited@example.test")
        db.session.commit()
        auth = Auth(app.test_client())
        auth.login("limited@example.test")
        codes = [auth.post("/account", {"current_password": "nope nope nope", "new_password": "y" * 20}).status_code
                 for _ in range(4)]
    assert codes == [422, 422, 422, 429]


def test_a_new_users_password_is_in_the_page_only_never_in_the_cookie(app, db, client, auth):
    make_user("admin@example.test", is_admin=True)
    agency = make_agency()
    db.session.commit()
    auth.login("admin@example.test")
    r = auth.post("/admin/users", {"email": "new@example.org", "name": "New", "role": "officer",
                                   "agency_id": str(agency.id)})
    assert r.status_code == 201
    password = re.search(r'id="one-time-password" readonly value="([^"]+)"', r.get_data(as_text=True)).group(1)
    cookie = client.get_cookie(app.config["SESSION_COOKIE_NAME"])
    decoded = app.session_interface.get_signing_serializer(app).loads(cookie.value)
    assert password not in repr(decoded) and password not in cookie.value
    assert password not in client.get("/admin/users").get_data(as_text=True)

    newcomer = Auth(app.test_client())
    r = newcomer.login("new@example.org", password)
    assert r.status_code == 303 and r.headers["Location"].endswith("/account")
    home = newcomer.client.get("/")
    assert home.status_code == 303 and home.headers["Location"].endswith("/account")
    newcomer.token = csrf_from(newcomer.client.get("/account").get_data(as_text=True))
    r = newcomer.post("/account", {"current_password": password, "new_password": "my very own passphrase 5"})
    assert r.status_code == 303
    assert newcomer.client.get("/").status_code == 200


def test_a_reset_password_must_be_replaced_at_the_next_sign_in(app, db, client, auth):
    make_user("reset@example.test", role="officer", agency=make_agency())
    db.session.commit()
    out = app.test_cli_runner().invoke(args=["users", "reset-password", "reset@example.test"]).output
    password = out.rsplit(": ", 1)[1].strip()
    r = auth.login("reset@example.test", password)
    assert r.headers["Location"].endswith("/account")


def _client_from(app, address):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _fail_from(app, email, address, times, password="wrong-password-x"):
    client = _client_from(app, address)
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return [client.post("/login", data={"email": email, "password": password, "csrf_token": token}).status_code
            for _ in range(times)]


def test_an_attacker_locks_the_account_only_for_the_attackers_address(app, db):
    """Before: 5 tries from anywhere locked the account for everyone until an administrator acted."""
    make_user("chief@example.test", is_admin=True)
    db.session.commit()
    assert _fail_from(app, "chief@example.test", ATTACKER, 6) == [401] * 6
    assert _fail_from(app, "chief@example.test", ATTACKER, 1, PASSWORD) == [401]  # right password, locked source

    holder = _client_from(app, HOLDER)
    token = csrf_from(holder.get("/login").get_data(as_text=True))
    r = holder.post("/login", data={"email": "chief@example.test", "password": PASSWORD, "csrf_token": token},
                    follow_redirects=True)
    assert f"5 from {ATTACKER} (locked until an administrator releases it)" in r.get_data(as_text=True)
    holder = Auth(holder)
    page = holder.client.get(f"/admin/users/{db.session.execute(sa.select(User.id)).scalar()}")
    assert ATTACKER in page.get_data(as_text=True)

    result = app.test_cli_runner().invoke(args=["users", "unlock", "chief@example.test"])
    assert result.exit_code == 0
    assert _fail_from(app, "chief@example.test", ATTACKER, 1, PASSWORD) == [303]


def test_timed_mode_locks_with_growing_delays(make_app, db):
    app = make_app(LOCKOUT_MODE="timed")
    with app.app_context():
        make_user("timed@example.test")
        db.session.commit()
        start = utcnow()
        lengths = []
        for n in range(3):
            with time_machine.travel(start + timedelta(days=n)):
                _fail_from(app, "timed@example.test", ATTACKER, 5)
                db.session.rollback()
                block = db.session.execute(sa.select(LoginBlock)).scalar_one()
                lengths.append(round((block.locked_until - block.locked_at) / timedelta(minutes=1)))
        assert lengths == [15, 30, 60]
        with time_machine.travel(start + timedelta(days=2, minutes=61)):
            assert _fail_from(app, "timed@example.test", ATTACKER, 1, PASSWORD) == [303]


def test_a_hundred_failures_from_many_addresses_lock_the_whole_account(make_app, db):
    """CJIS IA-5 l: at most 100 consecutive failures, wherever they come from."""
    app = make_app(LOGIN_RATE_LIMIT="1000 per minute")
    with app.app_context():
        make_user("many@example.test")
        db.session.commit()
        for n in range(25):
            _fail_from(app, "many@example.test", f"192.0.2.{n + 1}", 4)
        db.session.rollback()
        assert db.session.execute(sa.select(User.locked_at)).scalar() is not None
        assert _fail_from(app, "many@example.test", HOLDER, 1, PASSWORD) == [401]
