"""E-mail through the transactional outbox to a real SMTP server on a loopback port (tests/smtp_sink.py).

What is checked: a change that rolls back sends nothing; a change sends exactly one message to exactly the
right people, in the categories they chose; the worker survives the server being down and delivers when it
returns, backing off exponentially and giving up after the bound; two workers never send a message twice;
a daily digest assembled twice is sent once; unsubscribe works without sign-in and only for its category;
a user removed from the agency receives nothing more about it; CR/LF in names and titles cannot add headers.
"""
import threading
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
import time_machine
from flask import has_request_context

from tests.factories import PASSWORD
from tests.security.conftest import signed_in, world  # noqa: F401 - the security suite's world, as a fixture
from tests.smtp_sink import SmtpSink
from tracker import mailer
from tracker.models import Membership, Notification, NotificationPreference, OutboxMessage, User, utcnow
from tracker.services import accounts, outbox
from tracker.services import notifications as notes
from tracker.services import requirements as req_service


@pytest.fixture(autouse=True)
def _morning_of_december_3():
    """The tests name moments on 2026-12-03 (09:00 deliveries, 05:00/07:00 digests): the clock starts at
    08:00 that day and ticks, so messages are written before those moments whatever day the suite runs."""
    with time_machine.travel(datetime(2026, 12, 3, 8, 0, tzinfo=UTC), tick=True):
        yield


@pytest.fixture
def sink():
    server = SmtpSink().start()
    yield server
    server.stop()


@pytest.fixture
def app(make_app, sink, tmp_path):
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=sink.port, SMTP_STARTTLS=False, SMTP_TIMEOUT=5,
                   MAIL_FROM="Decree tracker <tracker@tracker.example>", MAIL_BASE_URL="https://tracker.example",
                   MAIL_DIR=str(tmp_path / "mail"), MAIL_MAX_ATTEMPTS=3, MAIL_RETRY_SECONDS=60)
    with app.app_context():
        yield app


def _clear_outbox(db):
    """Forget what building the world queued (token and evidence notices), so each test counts its own."""
    db.session.execute(sa.update(Notification).values(message_id=None))
    db.session.execute(sa.delete(Notification))
    db.session.execute(sa.delete(OutboxMessage))
    db.session.commit()


def _prefer(db, user, **modes):
    for category, mode in modes.items():
        db.session.merge(NotificationPreference(user_id=user.id, category=category, mode=mode))
    db.session.commit()


def _received(sink):
    return sorted((tuple(rcpts), msg["Subject"]) for rcpts, msg in sink.parsed())


def test_a_change_that_rolls_back_sends_nothing(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    officer, officer2 = world["users"]["officer"], world["users"]["officer2"]
    req = world["req"]
    req.owner_id = officer2.id
    db.session.commit()
    _prefer(db, officer2, comment="immediate")
    auth = signed_in(app, officer.email)

    def fail(session):
        if has_request_context():
            raise RuntimeError("the commit fails")

    sa.event.listen(db.session, "before_commit", fail)
    try:
        with pytest.raises(RuntimeError):
            auth.post(f"/agencies/agency-a/requirements/{req.id}/status",
                      {"status": "in_progress", "note": "", "row_version": str(req.row_version)})
    finally:
        sa.event.remove(db.session, "before_commit", fail)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage)) == 0
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification)) == 0
    assert mailer.send_pass()["sent"] == 0 and sink.messages == []

    # The same change committed: one message, to the owner.
    db.session.refresh(req)
    r = auth.post(f"/agencies/agency-a/requirements/{req.id}/status",
                  {"status": "in_progress", "note": "", "row_version": str(req.row_version)})
    assert r.status_code == 303
    assert mailer.deliver()["sent"] == 1
    assert _received(sink) == [(("officer2@example.test",), "[Harbor City PD] CIT-001: status In progress")]


def test_a_comment_reaches_exactly_the_right_people_in_the_categories_they_chose(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    u = world["users"]
    req = world["req"]
    req.owner_id = u["officer2"].id  # owner: comment by default in the daily digest
    db.session.commit()
    for who in ("monitor", "committee", "admin", "officer"):
        notes.set_follow(u[who], req, True, actor=u[who])
    db.session.commit()
    _prefer(db, u["monitor"], comment="immediate")  # follower, wants it at once
    _prefer(db, u["committee"], comment="off")      # follower, turned it off
    _prefer(db, u["admin"], comment="immediate")    # an admin follows too
    auth = signed_in(app, u["officer"].email)        # the author follows but is never told of their own comment
    assert auth.post(f"/agencies/agency-a/requirements/{req.id}/comments", {"body": "Roster attached."}
                     ).status_code == 303

    rows = db.session.execute(sa.select(User.email, Notification.delivery, Notification.message_id)
                              .join(User, User.id == Notification.user_id).order_by(User.email)).all()
    assert [(e, d, m is not None) for e, d, m in rows] == [
        ("admin@example.test", "immediate", True), ("monitor@example.test", "immediate", True),
        ("officer2@example.test", "daily", False)]
    assert mailer.deliver() == {"sent": 2, "retry": 0, "failed": 0, "withdrawn": 0}
    assert _received(sink) == [(("admin@example.test",), "[Harbor City PD] CIT-001: new comment"),
                               (("monitor@example.test",), "[Harbor City PD] CIT-001: new comment")]
    # The body links to the page and carries no comment text (the page shows it after sign-in).
    _rcpts, message = sink.parsed()[0]
    text = message.get_body(("plain",)).get_content()
    assert f"https://tracker.example/agencies/agency-a/requirements/{req.id}#comments" in text
    assert "Roster attached" not in message.as_string()
    assert message.get_body(("html",)) is not None
    # A second pass sends nothing more.
    assert mailer.deliver()["sent"] == 0 and len(sink.messages) == 2


def test_the_worker_survives_the_server_being_down_backs_off_and_delivers_when_it_returns(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    u = world["users"]
    sink.stop()
    req_service.set_owner(world["req2"], u["officer2"].id, world["req2"].row_version, actor=u["officer"])
    db.session.commit()
    start = datetime(2026, 12, 3, 9, 0)
    assert mailer.deliver(start) == {"sent": 0, "retry": 1, "failed": 0, "withdrawn": 0}
    message = db.session.execute(sa.select(OutboxMessage)).scalar_one()
    assert (message.state, message.attempts, message.next_attempt_at) == ("queued", 1, start + timedelta(seconds=60))
    assert "Connection refused" in message.last_error or "ConnectionRefused" in message.last_error
    # Not due yet: nothing is tried before the back-off has passed.
    assert mailer.deliver(start + timedelta(seconds=59)) == dict.fromkeys(("sent", "retry", "failed", "withdrawn"), 0)
    assert mailer.deliver(start + timedelta(seconds=60))["retry"] == 1
    db.session.refresh(message)
    assert (message.attempts, message.next_attempt_at) == (2, start + timedelta(seconds=180))  # 60, then 120

    sink.start()  # the server returns on the same port
    assert mailer.deliver(start + timedelta(seconds=180))["sent"] == 1
    db.session.refresh(message)
    assert (message.state, message.attempts, message.last_error) == ("sent", 3, "")
    assert _received(sink) == [(("officer2@example.test",), "[Harbor City PD] CIT-002: you are the owner")]


def test_a_message_the_server_keeps_refusing_is_given_up_visible_to_admins_and_retried(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    u = world["users"]
    sink.reject_rcpt = True  # 451 on every recipient
    req_service.set_owner(world["req2"], u["officer2"].id, world["req2"].row_version, actor=u["officer"])
    db.session.commit()
    when = datetime(2026, 12, 3, 9, 0)
    outcomes = [mailer.deliver(when + timedelta(hours=n)) for n in range(4)]
    assert [o["retry"] for o in outcomes] == [1, 1, 0, 0] and [o["failed"] for o in outcomes] == [0, 0, 1, 0]
    message = db.session.execute(sa.select(OutboxMessage)).scalar_one()
    assert message.state == "failed" and message.attempts == 3
    assert message.last_error.startswith("Gave up after 3 attempts: SMTPRecipientsRefused")

    admin = signed_in(app, u["admin"].email)
    page = admin.client.get("/admin/outbox?state=failed").get_data(as_text=True)
    assert "Failed: 1" in page and "Gave up after 3 attempts" in page and "Retry" in page
    sink.reject_rcpt = False
    assert admin.post("/admin/outbox/retry", {"message_id": str(message.id)}).status_code == 303
    db.session.refresh(message)
    assert (message.state, message.attempts) == ("queued", 0)
    assert mailer.deliver()["sent"] == 1 and len(sink.messages) == 1
    # Only failed messages are retried: a sent one is refused with a message, nothing changes.
    r = admin.post("/admin/outbox/retry", {"message_id": str(message.id)}, follow_redirects=True)
    assert "only failed ones are retried" in r.get_data(as_text=True)


def test_backoff_doubles_up_to_six_hours():
    assert [outbox.backoff(n, 60).total_seconds() for n in (1, 2, 3, 4, 10, 20)] == [60, 120, 240, 480, 21600,
                                                                                     21600]


def test_two_workers_never_send_the_same_message_twice(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    officer2 = world["users"]["officer2"]
    for n in range(30):
        notes.account_changed(officer2, "token_api", name=f"script {n}")
    db.session.commit()
    sink.delay = 0.005
    results, errors = [], []

    def work(name):
        try:
            with app.app_context():
                results.append(mailer.deliver(worker=name, batch=4))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"worker-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert sum(r["sent"] for r in results) == 30
    assert all(r["sent"] > 0 for r in results), f"both workers should have taken part: {results}"
    bodies = [msg.get_body(("plain",)).get_content() for _r, msg in sink.parsed()]
    names = sorted(line for body in bodies for line in body.splitlines() if line.startswith("Name: "))
    assert names == sorted(f"Name: script {n}." for n in range(30))  # each exactly once
    assert db.session.execute(sa.select(OutboxMessage.state, OutboxMessage.attempts).distinct()).all() == [("sent", 1)]
    # A re-run (the cron line firing again) sends nothing.
    assert mailer.deliver()["sent"] == 0 and len(sink.messages) == 30


def test_a_daily_digest_assembled_twice_is_sent_once(app, db, world, sink):  # noqa: F811 - fixture
    # Building the world queued two "new evidence" notices for the monitor, in the daily digest by default.
    monitor = world["users"]["monitor"]
    pending = db.session.scalars(sa.select(Notification.subject).where(Notification.user_id == monitor.id)).all()
    assert sorted(pending) == ["[Harbor City PD] CIT-001: new evidence to review"] * 2
    before_hour = datetime(2026, 12, 3, 5, 0)
    assert mailer.send_pass(before_hour)["digests"] == 0  # MAIL_DIGEST_HOUR is 6 (UTC)
    morning = datetime(2026, 12, 3, 7, 0)
    assert mailer.send_pass(morning)["digests"] == 1
    assert mailer.send_pass(morning + timedelta(hours=3))["digests"] == 0
    assert mailer.assemble_digests(morning + timedelta(hours=4)) == 0
    digests = [(rcpts, msg) for rcpts, msg in sink.parsed() if msg["Subject"].startswith("Daily digest")]
    assert len(digests) == 0
    digests = [(rcpts, msg) for rcpts, msg in sink.parsed() if "Daily digest" in msg["Subject"]]
    assert len(digests) == 1 and digests[0][0] == ["monitor@example.test"]
    assert digests[0][1]["Subject"] == "[Harbor City PD] Daily digest: 2 updates"
    text = digests[0][1].get_body(("plain",)).get_content()
    assert text.count("CIT-001: new evidence to review") == 2 and "== Harbor City PD ==" in text

    # A notice arriving later that day waits for tomorrow's digest.
    notes.evidence_submitted(world["file"], world["req"], actor=world["users"]["officer"])
    db.session.commit()
    assert mailer.send_pass(morning + timedelta(hours=5))["digests"] == 0
    assert mailer.send_pass(morning + timedelta(days=1))["digests"] == 1


def test_unsubscribe_works_without_sign_in_and_only_for_that_category(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    u = world["users"]
    req = world["req"]
    _prefer(db, u["officer2"], comment="immediate")
    req.owner_id = u["officer2"].id
    db.session.commit()
    req_service.add_comment(req, "Question.", actor=u["officer"])
    db.session.commit()
    mailer.deliver()
    (_rcpts, message), = sink.parsed()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = message["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://tracker.example/unsubscribe/")
    assert f"\r\nList-Unsubscribe: <{url}>\r\n".encode() in sink.messages[0][2]  # one line, not encoded words
    path = urlsplit(url).path

    stranger = app.test_client()  # no session, no cookie, no CSRF token: what a mail program sends
    page = stranger.get(path)
    assert page.status_code == 200 and "Comments and status changes" in page.get_data(as_text=True)
    r = stranger.post(path, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 303
    modes = dict(db.session.execute(sa.select(NotificationPreference.category, NotificationPreference.mode)
                                    .where(NotificationPreference.user_id == u["officer2"].id)).all())
    assert modes == {"comment": "off"}
    assert "no longer receive" in stranger.get(r.headers["Location"]).get_data(as_text=True)
    # Other categories still arrive; comments do not.
    req_service.add_comment(req, "Another question.", actor=u["officer"])
    req_service.set_owner(world["req2"], u["officer2"].id, world["req2"].row_version, actor=u["officer"])
    db.session.commit()
    mailer.deliver()
    assert [m["Subject"] for _r, m in sink.parsed()][1:] == ["[Harbor City PD] CIT-002: you are the owner"]
    # A forged or expired link changes nothing.
    assert stranger.post(path[:-3] + "xyz").status_code == 404
    with time_machine.travel(utcnow() + timedelta(days=notes.UNSUBSCRIBE_DAYS + 1)):
        assert stranger.post(path).status_code == 404


def test_a_user_removed_from_the_agency_receives_nothing_more_about_it(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    u = world["users"]
    req, req2 = world["req"], world["req2"]
    _prefer(db, u["officer2"], comment="immediate")
    req.owner_id = u["officer2"].id
    db.session.commit()
    notes.set_follow(u["officer2"], req2, True, actor=u["officer2"])
    req_service.add_comment(req, "Queued before the removal.", actor=u["officer"])  # immediate, queued
    _prefer(db, u["officer2"], deadline="daily")
    notes.notify("deadline", [u["officer2"].id], agency=world["a"], subject="CIT-001: deadline approaching",
                 lines=["Due soon."])  # pending in the daily digest
    db.session.commit()
    membership = db.session.execute(sa.select(Membership).where(Membership.user_id == u["officer2"].id)).scalar_one()
    accounts.remove_membership(membership)
    db.session.commit()

    req_service.add_comment(req2, "After the removal.", actor=u["officer"])  # a followed requirement
    db.session.commit()
    result = mailer.send_pass(datetime(2026, 12, 4, 7, 0))
    assert result["withdrawn"] == 1 and result["sent"] == 0 and result["digests"] == 0
    assert sink.messages == []
    message = db.session.execute(sa.select(OutboxMessage)).scalar_one()
    assert message.state == "failed" and message.last_error.startswith("Not sent: the recipient no longer")
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
        Notification.message_id.is_(None))) == 0  # the pending digest item was dropped


def test_line_breaks_in_names_and_titles_cannot_add_headers_or_recipients(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    u = world["users"]
    officer2 = u["officer2"]
    officer2.name = "Oscar\r\nBcc: evil@example.org"
    req2 = world["req2"]
    req2.title = "Training\r\nBcc: evil@example.org\r\nSubject: hijacked"
    req2.code = "CIT-002\nX-Injected: 1"
    u["officer"].name = "Olive\r\nCc: evil@example.org"
    db.session.commit()
    req_service.set_owner(req2, officer2.id, req2.row_version, actor=u["officer"])
    db.session.commit()
    assert mailer.deliver()["sent"] == 1
    (_sender, rcpts, raw), = sink.messages
    assert rcpts == ["officer2@example.test"]
    _r, message = sink.parsed()[0]
    assert message["Bcc"] is None and message["Cc"] is None and message["X-Injected"] is None
    assert message.get_all("Subject") == ["[Harbor City PD] CIT-002 X-Injected: 1: you are the owner"]
    assert b"\nBcc:" not in raw and b"\nCc:" not in raw and b"\nX-Injected" not in raw


def test_account_messages_are_always_sent_and_carry_no_secret(app, db, world, sink):  # noqa: F811 - fixture
    _clear_outbox(db)
    officer = world["users"]["officer"]
    _prefer(db, officer, account="off")  # not a choice the form offers; ignored if stored anyway
    auth = signed_in(app, officer.email)
    page = auth.post("/account/tokens", {"kind": "api", "name": "nightly export", "current_password": PASSWORD}
                     ).get_data(as_text=True)
    secret = page.split('id="token-secret"')[1].split(">")[1].split("<")[0] if 'id="token-secret"' in page else None
    assert mailer.deliver()["sent"] == 1
    (_r, message), = sink.parsed()
    assert message["Subject"] == "Your account: A new API token was created for your account."
    assert message["List-Unsubscribe"] is None  # security notices cannot be turned off
    raw = sink.messages[0][2].decode()
    assert "nightly export" in raw and "dt_api_" not in raw
    if secret:
        assert secret not in raw


def test_without_smtp_host_development_writes_eml_files(make_app, tmp_path, db):
    app = make_app(TRACKER_ENV="development", SMTP_HOST="", MAIL_DIR=str(tmp_path / "mail"))
    with app.app_context():
        from tests.factories import make_user

        user = make_user("dev@example.test")
        notes.account_changed(user, "password_change", actor=user)
        db.session.commit()
        assert mailer.deliver()["sent"] == 1
        files = list((tmp_path / "mail").glob("*.eml"))
        assert len(files) == 1 and b"Subject: Your account: Your password was changed." in files[0].read_bytes()
        app.config["TRACKER_ENV"] = "production"
        with pytest.raises(mailer.MailConfigError, match="SMTP_HOST is not set"):
            mailer.deliver()
