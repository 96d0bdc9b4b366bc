"""Sign-in, sign-out, lockout, throttling, sessions."""
from datetime import timedelta

import sqlalchemy as sa
import time_machine

from tests.conftest import csrf_from
from tests.factories import PASSWORD, make_agency, make_user
from tracker.models import AuditEvent, User, UserSession, utcnow
from tracker.services import accounts


def _events(db, action):
    return db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)).scalars().all()


def test_login_and_logout(client, auth, db):
    agency = make_agency(name="Metro PD")
    make_user("officer@example.test", role="officer", agency=agency)
    db.session.commit()
    response = auth.login("officer@example.test")
    assert response.status_code == 303
    page = client.get("/").get_data(as_text=True)
    assert "Metro PD" in page
    assert "Sign out" in page
    response = auth.logout()
    assert response.status_code == 303
    assert "Sign in" in client.get("/").get_data(as_text=True)
    actions = [(e.action, e.outcome) for e in db.session.execute(sa.select(AuditEvent)).scalars()]
    assert ("auth.login", "success") in actions
    assert ("auth.logout", "success") in actions


def test_wrong_password_and_unknown_user_get_same_answer(client, db):
    make_user("known@example.test")
    db.session.commit()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    wrong = client.post("/login", data={"email": "known@example.test", "password": "nope-nope-nope",
                                        "csrf_token": token})
    unknown = client.post("/login", data={"email": "ghost@example.test", "password": "nope-nope-nope",
                                          "csrf_token": token})
    assert wrong.status_code == unknown.status_code == 401

    def message(r):
        html = r.get_data(as_text=True)
        start = html.index('role="alert"')
        return html[start:start + 300]

    assert message(wrong) == message(unknown)
    failures = [e for e in _events(db, "auth.login") if e.outcome == "failure"]
    assert len(failures) == 2
    assert {f.after["reason"] for f in failures} == {"wrong password", "unknown user"}


def test_lockout_after_five_failures_until_admin_release(client, db, app):
    user = make_user("target@example.test")
    db.session.commit()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    for _ in range(5):
        r = client.post("/login", data={"email": user.email, "password": "wrong-password-x", "csrf_token": token})
        assert r.status_code == 401
    db.session.rollback()  # end the read snapshot; see what requests committed
    # Locked for the address the failures came from (the test client's), not for every address (issue 19).
    assert [(b.source, b.locked_until) for b in accounts.locked_sources(db.session.get(User, user.id))] == [
        ("127.0.0.1", None)]
    # The right password no longer works, with the same message as a wrong one.
    r = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 401
    assert len(_events(db, "auth.lockout")) == 1
    # Still locked an hour later (admin mode).
    with time_machine.travel(utcnow() + timedelta(hours=1)):
        r = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 401
    # Admin releases the account from the CLI.
    db.session.rollback()
    result = app.test_cli_runner().invoke(args=["users", "unlock", user.email])
    assert result.exit_code == 0, result.output
    r = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 303


def test_failures_outside_window_do_not_lock(client, db):
    user = make_user("slow@example.test")
    db.session.commit()
    token = csrf_from(client.get("/login").get_data(as_text=True))
    start = utcnow()
    for i in range(8):
        with time_machine.travel(start + timedelta(minutes=16 * i)):
            client.post("/login", data={"email": user.email, "password": "wrong-password-x", "csrf_token": token})
    db.session.rollback()  # end the read snapshot; see what requests committed
    assert db.session.get(User, user.id).locked_at is None
    assert accounts.locked_sources(db.session.get(User, user.id)) == []


def test_timed_lockout_mode_unlocks_itself(make_app):
    app = make_app(LOCKOUT_MODE="timed")
    with app.app_context():
        from tracker.extensions import db

        user = make_user("timed@example.test")
        db.session.commit()
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        for _ in range(5):
            client.post("/login", data={"email": user.email, "password": "wrong-password-x", "csrf_token": token})
        r = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 401
        with time_machine.travel(utcnow() + timedelta(minutes=16)):
            r = client.post("/login", data={"email": user.email, "password": PASSWORD, "csrf_token": token})
            assert r.status_code == 303


def test_per_ip_rate_limit_across_usernames(make_app):
    app = make_app(LOGIN_RATE_LIMIT="5 per minute")
    with app.app_context():
        client = app.test_client()
        token = csrf_from(client.get("/login").get_data(as_text=True))
        codes = [client.post("/login", data={"email": f"u{i}@example.test", "password": "x" * 12,
                                             "csrf_token": token}).status_code for i in range(7)]
        assert codes[:5] == [401] * 5
        assert codes[5:] == [429, 429]
        # GET of the form is not throttled.
        assert client.get("/login").status_code == 200


def test_session_id_changes_at_login_and_cookie_flags(make_app):
    app = make_app(SESSION_COOKIE_SECURE=True, SESSION_COOKIE_NAME="__Host-session")
    with app.app_context():
        from tracker.extensions import db

        make_user("flags@example.test")
        db.session.commit()
        client = app.test_client()
        page = client.get("/login", base_url="https://localhost")
        token = csrf_from(page.get_data(as_text=True))
        before = client.get_cookie("__Host-session", domain="localhost")
        r = client.post("/login", base_url="https://localhost",
                        headers={"Referer": "https://localhost/login"},
                        data={"email": "flags@example.test", "password": PASSWORD, "csrf_token": token})
        assert r.status_code == 303
        header = r.headers["Set-Cookie"]
        assert header.startswith("__Host-session=")
        for flag in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"):
            assert flag in header
        assert "Domain" not in header
        after = client.get_cookie("__Host-session", domain="localhost")
        assert before is None or before.value != after.value


def test_logout_kills_server_side_session(client, auth, db):
    make_user("replay@example.test")
    db.session.commit()
    auth.login("replay@example.test")
    cookie = client.get_cookie("tracker_session").value
    auth.logout()
    # Replaying the captured cookie does not sign anyone in.
    other = client.application.test_client()
    other.set_cookie("tracker_session", cookie)
    assert other.get("/account").status_code == 302
    assert db.session.execute(sa.select(sa.func.count()).select_from(UserSession)
                              .where(UserSession.revoked_at.is_(None))).scalar() == 0


def test_idle_and_absolute_timeouts(client, auth, db):
    make_user("idle@example.test")
    db.session.commit()
    auth.login("idle@example.test")
    assert client.get("/account").status_code == 200
    with time_machine.travel(utcnow() + timedelta(minutes=31)):
        assert client.get("/account").status_code == 302
    auth.login("idle@example.test")
    start = utcnow()
    # Active every 20 minutes for 12 hours: still signed out at the absolute limit.
    for step in range(1, 37):
        with time_machine.travel(start + timedelta(minutes=20 * step)):
            code = client.get("/account").status_code
    assert code == 302


def test_disabled_user_is_signed_out(client, auth, db):
    from tracker.services import accounts

    user = make_user("gone@example.test")
    db.session.commit()
    auth.login("gone@example.test")
    assert client.get("/account").status_code == 200
    accounts.set_active(db.session.get(User, user.id), False)
    db.session.commit()
    r = client.get("/account")
    assert r.status_code == 302 and r.headers["Location"] == "/login?next=/account?"


def test_open_redirect_refused(client, db):
    make_user("next@example.test")
    db.session.commit()
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        token = csrf_from(client.get("/login").get_data(as_text=True))
        r = client.post(f"/login?next={target}", data={"email": "next@example.test", "password": PASSWORD,
                                                       "csrf_token": token})
        assert r.status_code == 303
        assert r.headers["Location"] == "/"
        client.post("/logout", data={"csrf_token": csrf_from(client.get("/").get_data(as_text=True))})
    token = csrf_from(client.get("/login").get_data(as_text=True))
    r = client.post("/login?next=/account", data={"email": "next@example.test", "password": PASSWORD,
                                                  "csrf_token": token})
    assert r.headers["Location"] == "/account"


def test_password_change_needs_current_and_signs_out_others(app, db):
    make_user("pw@example.test")
    db.session.commit()
    from tests.conftest import Auth

    first, second = Auth(app.test_client()), Auth(app.test_client())
    first.login("pw@example.test")
    second.login("pw@example.test")
    r = first.post("/account", data={"current_password": "wrong-wrong-wrong", "new_password": "a new long passphrase"})
    assert r.status_code == 422
    assert "Current password is incorrect" in r.get_data(as_text=True)
    r = first.post("/account", data={"current_password": PASSWORD, "new_password": "password"})
    assert r.status_code == 422
    r = first.post("/account", data={"current_password": PASSWORD, "new_password": "a new long passphrase " * 4})
    assert r.status_code == 303
    assert first.client.get("/account").status_code == 200
    assert second.client.get("/account").status_code == 302


def test_production_password_hash_parameters(make_app):
    app = make_app(ARGON2_TIME_COST=3, ARGON2_MEMORY_KIB=65536, ARGON2_PARALLELISM=4)
    with app.app_context():
        from tracker.passwords import hash_password, verify_password

        long_passphrase = "correct horse battery staple " * 4
        stored = hash_password(long_passphrase)
        assert stored.startswith("$argon2id$")
        assert "m=65536" in stored and "t=3" in stored
        assert verify_password(stored, long_passphrase)
        assert not verify_password(stored, long_passphrase[:-1])


def test_htmx_request_with_expired_session_gets_hx_redirect(client):
    r = client.get("/account", headers={"HX-Request": "true"})
    assert r.status_code == 401
    assert r.headers["HX-Redirect"].startswith("/login")
    assert "<form" not in r.get_data(as_text=True)
