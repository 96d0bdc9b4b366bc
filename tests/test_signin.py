"""The sign-in steps (services/signin.py) and the writes around sign-in that now leave an audit event:
a password rehashed, a timed lock lifted, a second-factor enrolment started; and the activity stamps,
which a read writes only in their own transaction."""
import json
import logging
import time
from datetime import timedelta

import pyotp
import sqlalchemy as sa
import time_machine
from argon2 import PasswordHasher

from tests.conftest import Auth, csrf_from
from tests.factories import PASSWORD, make_agency, make_user
from tracker.models import ApiToken, AuditEvent, User, UserSession, utcnow
from tracker.passwords import verify_password
from tracker.services import signin, tokens


def _events(db, action):
    return db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == action)
                              .order_by(AuditEvent.id)).scalars().all()


def _password_step(client, email, password=PASSWORD):
    token = csrf_from(client.get("/login").get_data(as_text=True))
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


def test_a_password_rehashed_at_sign_in_is_audited(make_app):
    app = make_app(ARGON2_TIME_COST=2)  # stronger than the factories' hash: it is rehashed at sign-in
    with app.app_context():
        from tracker.extensions import db

        user = make_user("rehash@example.test")
        user.password_hash = old_hash = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
        db.session.commit()
        assert _password_step(app.test_client(), user.email).status_code == 303
        db.session.rollback()
        stored = db.session.get(User, user.id)
        assert stored.password_hash != old_hash and "t=2" in stored.password_hash
        assert verify_password(stored.password_hash, PASSWORD)
        [event] = _events(db, "user.password_rehash")
        assert (event.actor_label, event.object_id, event.after) == (
            "rehash@example.test", str(user.id), {"reason": "hashing parameters changed"})
        assert old_hash not in json.dumps([event.before, event.after])


def test_a_timed_lock_lifted_at_the_next_attempt_is_audited_as_the_system(make_app):
    app = make_app(LOCKOUT_MODE="timed")
    with app.app_context():
        from tracker.extensions import db

        locked_at = utcnow() - timedelta(minutes=16)
        user = make_user("timed@example.test", locked_at=locked_at, failed_logins=5, first_failed_at=locked_at)
        db.session.commit()
        assert _password_step(app.test_client(), user.email).status_code == 303
        db.session.rollback()
        [event] = _events(db, "user.unlock")
        assert event.actor_label == "system" and event.actor_id is None
        assert event.before["failed_logins"] == 5
        assert event.after == {"locked_at": None, "reason": "lockout window passed"}


def test_enrolment_started_at_sign_in_is_audited_without_the_secret(make_app):
    app = make_app(MFA_REQUIRED_ROLES=["admin"])
    with app.app_context():
        from tracker.extensions import db

        admin = make_user("admin@example.test", is_admin=True)
        db.session.commit()
        r = _password_step(app.test_client(), admin.email)
        assert r.status_code == 303 and r.headers["Location"] == "/login/code"
        db.session.rollback()
        secret = db.session.get(User, admin.id).totp_pending_secret
        [event] = _events(db, "user.mfa_enrol")
        assert event.actor_label == "admin@example.test" and event.after == {"pending": True}
        assert secret and secret not in json.dumps([event.before, event.after])


def test_enrolment_started_from_the_account_page_is_audited(client, auth, db):
    make_user("keen@example.test")
    db.session.commit()
    auth.login("keen@example.test")
    assert auth.post("/account/mfa", {"action": "start"}).status_code == 303
    [event] = _events(db, "user.mfa_enrol")
    assert event.actor_label == "keen@example.test"


def test_the_pending_second_step_expires_and_survives_only_well_formed(app):
    now = time.time()
    assert signin.Pending.from_cookie({"user_id": 7, "next": "/x", "started": now, "attempts": 2}) == signin.Pending(
        7, "/x", now, 2)
    assert signin.Pending.from_cookie({"user_id": 7, "started": now - signin.MFA_WINDOW_SECONDS - 1}) is None
    assert signin.Pending.from_cookie(None) is None and signin.Pending.from_cookie({"user_id": "7"}) is None


def test_wrong_codes_end_the_second_step_after_the_limit(make_app):
    app = make_app()
    with app.app_context():
        from tracker.extensions import db

        secret = pyotp.random_base32()
        user = make_user("codes@example.test", totp_secret=secret)
        db.session.commit()
        pending = signin.Pending(user.id, None, time.time())
        for attempt in range(1, signin.MFA_MAX_ATTEMPTS):
            outcome = signin.code_step(pending, "000000", ip="127.0.0.1", user_agent="test")
            assert (outcome.error, outcome.restart, pending.attempts) == (signin.WRONG_CODE, False, attempt)
        outcome = signin.code_step(pending, "000000", ip="127.0.0.1", user_agent="test")
        assert outcome.restart and outcome.session is None
        assert len(_events(db, "auth.mfa")) == signin.MFA_MAX_ATTEMPTS


# --- activity stamps --------------------------------------------------------------------------------------

def _last_seen(db):
    db.session.rollback()
    return db.session.execute(sa.select(UserSession.last_seen_at)).scalar_one()


def test_the_session_stamp_is_written_at_most_once_a_minute(client, auth, db):
    make_user("reader@example.test")
    db.session.commit()
    auth.login("reader@example.test")
    signed_in_at = _last_seen(db)
    assert client.get("/account").status_code == 200
    assert _last_seen(db) == signed_in_at
    with time_machine.travel(utcnow() + timedelta(minutes=2)):
        assert client.get("/account").status_code == 200
    assert _last_seen(db) > signed_in_at + timedelta(minutes=1)


def test_api_token_use_is_logged_each_time_and_stamped_hourly(client, db, caplog):
    agency = make_agency()
    user = make_user("script@example.test", role="officer", agency=agency)
    token, secret = tokens.create(user, "api", "report script")
    db.session.commit()
    headers = {"Authorization": f"Bearer {secret}"}
    caplog.set_level(logging.INFO, logger="tracker.security")

    def last_used():
        db.session.rollback()
        return db.session.get(ApiToken, token.id).last_used_at

    assert client.get("/api/v1/agencies", headers=headers).status_code == 200
    first = last_used()
    assert first is not None
    assert client.get("/api/v1/agencies", headers=headers).status_code == 200
    assert last_used() == first  # within the hour: not written again
    with time_machine.travel(utcnow() + timedelta(hours=2)):
        assert client.get("/api/v1/agencies", headers=headers).status_code == 200
    assert last_used() > first + timedelta(hours=1)
    uses = [json.loads(r.getMessage()) for r in caplog.records if "token.use_api" in r.getMessage()]
    assert len(uses) == 3
    assert {(u["actor"], u["prefix"], u["endpoint"]) for u in uses} == {
        ("script@example.test", token.prefix, "api.agencies")}


def test_a_calendar_feed_use_is_logged_without_its_secret(client, db, caplog):
    agency = make_agency()
    user = make_user("cal@example.test", role="officer", agency=agency)
    _feed, secret = tokens.create(user, "calendar", "", agency)
    db.session.commit()
    caplog.set_level(logging.INFO, logger="tracker.security")
    assert client.get(f"/calendar/{secret}.ics").status_code == 200
    lines = [r.getMessage() for r in caplog.records if "token.use_calendar" in r.getMessage()]
    assert len(lines) == 1 and secret not in lines[0] and secret[7:] not in lines[0]


def test_a_session_stamp_touches_only_its_own_session(make_app):
    """Two browsers of one user: activity in one moves only that session's stamp."""
    app = make_app()
    with app.app_context():
        from tracker.extensions import db

        make_user("two@example.test")
        db.session.commit()
        first, second = Auth(app.test_client()), Auth(app.test_client())
        assert first.login("two@example.test").status_code == 303
        assert second.login("two@example.test").status_code == 303
        with time_machine.travel(utcnow() + timedelta(minutes=2)):
            assert first.client.get("/account").status_code == 200
        db.session.rollback()
        seen = sorted(db.session.execute(sa.select(UserSession.last_seen_at)).scalars())
        assert len(seen) == 2 and seen[1] - seen[0] > timedelta(minutes=1)
