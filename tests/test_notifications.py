"""Notification events, preferences and follows on the pages, deadline reminders, and the admin's outbox page.

Delivery over SMTP is tests/test_mail.py; here the rows the events write are checked.
"""
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from tests.factories import make_user
from tests.security.conftest import signed_in, world  # noqa: F401 - the security suite's world, as a fixture
from tracker import mailer
from tracker.models import (
    AuditEvent,
    DocumentRequest,
    Notification,
    NotificationPreference,
    OutboxMessage,
    RequirementFollow,
    utcnow,
)
from tracker.services import accounts, document_requests, reminders, reviews
from tracker.services import notifications as notes


def _clear(db):
    db.session.execute(sa.update(Notification).values(message_id=None))
    db.session.execute(sa.delete(Notification))
    db.session.execute(sa.delete(OutboxMessage))
    db.session.commit()


def _rows(db):
    return sorted(db.session.execute(sa.select(Notification.user_id, Notification.category, Notification.delivery,
                                               Notification.subject)).all())


def test_defaults_follow_the_role_and_the_most_frequent_wins(app, db, world):  # noqa: F811 - fixture
    u = world["users"]
    assert notes.modes([u["officer"].id, u["monitor"].id, u["committee"].id], "comment") == {
        u["officer"].id: "daily", u["monitor"].id: "daily", u["committee"].id: "weekly"}
    assert notes.modes([u["monitor"].id], "deadline") == {u["monitor"].id: "weekly"}
    accounts.add_membership(u["monitor"], world["b"], "officer")  # a monitor here, an officer elsewhere
    assert notes.modes([u["monitor"].id], "deadline") == {u["monitor"].id: "immediate"}
    assert notes.modes([u["admin"].id], "comment") == {u["admin"].id: "off"}
    assert notes.modes([u["admin"].id], "account") == {u["admin"].id: "immediate"}


def test_account_page_shows_and_saves_the_choices_per_category(app, db, world):  # noqa: F811 - fixture
    officer = signed_in(app, "officer@example.test")
    page = officer.client.get("/account").get_data(as_text=True)
    assert 'id="notifications"' in page and "Save e-mail settings" in page
    assert 'name="evidence_review"' not in page  # a monitor's category, not an officer's
    assert 'id="pref-comment-daily" type="radio" name="comment" value="daily" checked' in page
    assert "Daily digest (default)" in page and "Always sent at once" in page
    r = officer.post("/account/notifications", {"comment": "weekly", "assigned": "immediate", "deadline": "off"})
    assert r.status_code == 303 and r.headers["Location"].endswith("/account#notifications")
    saved = dict(db.session.execute(sa.select(NotificationPreference.category, NotificationPreference.mode)).all())
    assert saved == {"comment": "weekly", "assigned": "immediate", "deadline": "off"}
    event = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert event.action == "notification.preferences" and event.after == {
        "comment": "weekly", "assigned": "immediate", "deadline": "off"}
    # A wrong value is named and nothing changes; a category of another role is ignored.
    r = officer.post("/account/notifications", {"comment": "hourly", "deadline": "daily",
                                                "evidence_review": "immediate"}, follow_redirects=True)
    assert "choose one of Immediately, Daily digest, Weekly digest, Off" in r.get_data(as_text=True)
    assert dict(db.session.execute(sa.select(NotificationPreference.category, NotificationPreference.mode)
                                   ).all()) == saved
    # Without a CSRF token: refused.
    assert officer.client.post("/account/notifications", data={"comment": "off"}).status_code == 400


def test_following_a_requirement_from_its_page(app, db, world, count_queries):  # noqa: F811 - fixture
    req = world["req"]
    committee = signed_in(app, "committee@example.test")
    url = f"/agencies/agency-a/requirements/{req.id}"
    assert ">Follow<span class=\"usa-sr-only\"> CIT-001</span>" in committee.client.get(url).get_data(as_text=True)
    r = committee.post(url + "/follow", {"follow": "1"})
    assert r.status_code == 303 and r.headers["Location"] == url
    assert db.session.execute(sa.select(RequirementFollow.user_id)).scalars().all() == [
        world["users"]["committee"].id]
    page = committee.client.get(url).get_data(as_text=True)
    assert ">Unfollow<span" in page
    account = committee.client.get("/account").get_data(as_text=True)
    assert "Harbor City PD · CIT-001: Crisis line staffing" in account
    assert committee.post(url + "/follow", {"follow": "0"}).status_code == 303
    assert db.session.scalar(sa.select(sa.func.count()).select_from(RequirementFollow)) == 0
    actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.action.like("requirement.%follow"))
                                 ).all()
    assert actions == ["requirement.follow", "requirement.unfollow"]
    # Another agency's requirement: 404, as every scoped route.
    outsider = signed_in(app, "officer-b@example.test")
    assert outsider.post(url + "/follow", {"follow": "1"}).status_code == 404


def test_events_notify_the_people_who_see_them(app, db, world):  # noqa: F811 - fixture
    _clear(db)
    u = world["users"]
    req = world["req"]
    req.owner_id = u["officer2"].id
    db.session.commit()
    # Evidence returned: its uploader (officer) and the owner (officer2), at once by default.
    reviews.return_(world["file"], "The roster is missing.", actor=u["monitor"])
    # A document request: every officer of the agency; the monitor who asked is not told.
    document_requests.create_request(world["a"], {"title": "Rosters", "due_date": date.today() + timedelta(days=20),
                                                  "requirement_ids": [str(req.id)]}, actor=u["monitor"])
    db.session.commit()
    rows = [(uid, cat, mode) for uid, cat, mode, _s in _rows(db)]
    assert sorted(rows) == sorted([
        (u["officer"].id, "evidence_returned", "immediate"), (u["officer2"].id, "evidence_returned", "immediate"),
        (u["officer"].id, "document_request", "immediate"), (u["officer2"].id, "document_request", "immediate")])
    subjects = {s for *_x, s in _rows(db)}
    assert "[Harbor City PD] CIT-001: evidence returned" in subjects
    assert any(s.startswith("[Harbor City PD] Request 2 (CIT-001): due ") for s in subjects)
    # The returned comment stays on the page; the message only links there.
    assert "roster is missing" not in " ".join(db.session.scalars(sa.select(OutboxMessage.body_text)).all())


def test_functions_for_the_period_and_committee_events(app, db, world):  # noqa: F811 - fixture
    """Issues 13 and 14 call these from their services; officers hear of shared and filed reports."""
    _clear(db)
    period = world["open"]
    notes.period_shared(period, actor=world["users"]["monitor"])
    period.docket_ref = "Dkt. 1123"
    notes.period_filed(period, actor=world["users"]["monitor"])
    db.session.commit()
    subjects = sorted({s for *_x, s in _rows(db)})
    assert subjects == ["[Harbor City PD] Report 2: draft shared", "[Harbor City PD] Report 2: report filed"]
    assert {uid for uid, *_x in _rows(db)} == {world["users"]["officer"].id, world["users"]["officer2"].id}
    body = db.session.scalars(sa.select(OutboxMessage.body_text).where(OutboxMessage.subject.like("%filed"))).first()
    assert "filed with the court (Dkt. 1123)" in body and f"/agencies/agency-a/periods/{period.id}" in body


def test_lockout_and_token_mails_are_written_with_the_sign_in_failure(app, db, world):  # noqa: F811 - fixture
    _clear(db)
    app.config["LOCKOUT_THRESHOLD"] = 2
    client = app.test_client()
    from tests.conftest import csrf_from

    for _ in range(2):
        token = csrf_from(client.get("/login").get_data(as_text=True))
        client.post("/login", data={"email": "officer2@example.test", "password": "wrong " * 3, "csrf_token": token})
    subjects = db.session.scalars(sa.select(OutboxMessage.subject).where(
        OutboxMessage.to_addr == "officer2@example.test")).all()
    assert subjects == ["Your account: Your account was locked after repeated failed sign-in attempts."]


def test_deadline_reminders_are_written_once_per_requirement_threshold_and_day(app, db, world):  # noqa: F811
    _clear(db)
    u = world["users"]
    today = date(2026, 12, 3)
    req, req2 = world["req"], world["req2"]
    req.due_date, req.owner_id = today + timedelta(days=7), u["officer2"].id  # owner only
    req2.due_date = today + timedelta(days=40)  # no owner: every officer, once in the window
    notes.set_follow(u["monitor"], req, True, actor=u["monitor"])
    db.session.add(DocumentRequest(agency_id=world["a"].id, number=9, title="Call data", due_date=today - timedelta(2),
                                   original_due_date=today - timedelta(2), state="open", requirements=[req]))
    db.session.commit()
    first = reminders.run(today)
    db.session.commit()
    got = sorted((n.user_id, n.category, n.delivery, n.subject) for n in first)
    assert got == sorted([
        (u["officer2"].id, "deadline", "immediate", "[Harbor City PD] CIT-001: deadline approaching"),
        (u["monitor"].id, "deadline", "weekly", "[Harbor City PD] CIT-001: deadline approaching"),
        (u["officer"].id, "document_request", "immediate", "[Harbor City PD] Request 9 overdue"),
        (u["officer2"].id, "document_request", "immediate", "[Harbor City PD] Request 9 overdue")])
    assert "CIT-001: Crisis line staffing is due in 7 days (2026-12-10)." in first[0].body
    assert reminders.run(today) == [] and reminders.run(today + timedelta(days=1)) == []  # the 7-day one is sent
    db.session.commit()
    # Tomorrow-but-one is the 1-day threshold; 40 days out comes into the 30-day window 10 days later.
    later = reminders.run(today + timedelta(days=6))
    assert [(n.user_id, n.subject) for n in later] == [(u["officer2"].id, "[Harbor City PD] CIT-001: deadline "
                                                                          "approaching"),
                                                       (u["monitor"].id, "[Harbor City PD] CIT-001: deadline "
                                                                         "approaching")]
    db.session.commit()
    in_window = reminders.run(today + timedelta(days=10))
    assert sorted(n.user_id for n in in_window if "CIT-002" in n.subject) == sorted([u["officer"].id,
                                                                                    u["officer2"].id])
    db.session.commit()
    # Implemented requirements get no reminders; the CLI command reports the count.
    req2.status = "implemented"
    db.session.commit()
    assert [n for n in reminders.run(today + timedelta(days=29)) if "CIT-002" in n.subject] == []
    db.session.rollback()


def test_a_recurring_duty_gets_reminders_for_its_open_occurrence_whatever_its_status(app, db, world):  # noqa: F811
    _clear(db)
    today = date(2026, 12, 3)
    req = world["req"]
    # A quarterly report marked implemented: its next occurrence (the requirement's due date) still binds.
    req.cadence_months, req.status, req.due_date = 3, "implemented", today + timedelta(days=7)
    req.owner_id = world["users"]["officer2"].id
    db.session.commit()
    written = reminders.run(today)
    assert [(n.user_id, n.subject) for n in written if "CIT-001" in n.subject] == [
        (world["users"]["officer2"].id, "[Harbor City PD] CIT-001: deadline approaching")]
    db.session.rollback()


@pytest.mark.parametrize(("days_left", "expected"), [(31, None), (30, "30"), (8, "30"), (7, "7"), (2, "7"),
                                                     (1, "1"), (0, "1"), (-1, "passed"), (-30, "passed"),
                                                     (-31, None)])
def test_reminder_thresholds(days_left, expected):
    assert reminders.threshold(days_left, reminders.REQUIREMENT_WINDOWS) == expected


def test_mail_commands(app, db, world, tmp_path):  # noqa: F811 - fixture
    app.config.update(MAIL_DIR=str(tmp_path / "mail"))
    world["req"].due_date = utcnow().date() + timedelta(days=1)
    world["req"].owner_id = world["users"]["officer"].id
    db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["mail", "reminders"])
    assert result.exit_code == 0 and result.output == "Reminders: 1 notification(s) written.\n"
    assert runner.invoke(args=["mail", "reminders"]).output == "Reminders: 0 notification(s) written.\n"
    result = runner.invoke(args=["mail", "send"])
    assert result.exit_code == 0 and result.output.startswith("Mail: ") and " 0 retry" in result.output
    assert len(list((tmp_path / "mail").glob("*.eml"))) >= 3  # two token notices and the reminder
    app.config["TRACKER_ENV"] = "production"
    result = runner.invoke(args=["mail", "send"])
    assert result.exit_code == 1 and "SMTP_HOST is not set" in result.output


def test_admin_outbox_lists_by_state_with_counts_in_constant_queries(app, db, world, count_queries):  # noqa: F811
    _clear(db)
    admin = signed_in(app, "admin@example.test")
    admin.client.get("/admin/outbox")

    def add(n, state):
        for i in range(n):
            db.session.add(OutboxMessage(to_addr=f"p{i}@example.test", category="comment", subject=f"Subject {i}",
                                         body_text=f"Body {i}", state=state, attempts=1 if state != "queued" else 0))
        db.session.commit()

    add(2, "queued")
    add(1, "failed")
    with count_queries() as few:
        page = admin.client.get("/admin/outbox").get_data(as_text=True)
    assert "Queued: 2" in page and "Sent: 0" in page and "Failed: 1" in page
    add(40, "queued")
    with count_queries() as many:
        page = admin.client.get("/admin/outbox?state=queued").get_data(as_text=True)
    assert "Queued: 42" in page and page.count("Subject ") == 42
    assert many.count == few.count
    message_id = db.session.scalar(sa.select(OutboxMessage.id).where(OutboxMessage.state == "failed"))
    shown = admin.client.get(f"/admin/outbox?state=failed&show={message_id}").get_data(as_text=True)
    assert "Body 0" in shown and "Retry<span" in shown
    # Officers do not see it (404, like every admin page).
    assert signed_in(app, "officer@example.test").client.get("/admin/outbox").status_code == 404


def test_make_run_starts_the_mail_worker_beside_gunicorn(monkeypatch):
    import runpy
    from pathlib import Path

    config = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "gunicorn_run.py"))
    started = []

    class FakeProcess:
        def __init__(self, args, **kwargs):
            started.append(args)
            self.stopped = False

        def terminate(self):
            self.stopped = True

        def wait(self, timeout=None):
            return 0

    monkeypatch.setattr(config["subprocess"], "Popen", FakeProcess)
    monkeypatch.delenv("MAIL_WORKER", raising=False)
    config["on_starting"](None)
    assert started and started[0][-3:] == ["mail", "worker", "--quiet"]
    process = config["MAIL_WORKER_PROCESS"][0]
    config["on_exit"](None)
    assert process.stopped


def test_a_user_without_roles_still_gets_account_mail(app, db):
    user = make_user("lonely@example.test")
    assert [c for c, *_r in notes.preference_rows(user)] == ["account"]
    notes.account_changed(user, "mfa_enable", actor=user)
    db.session.commit()
    assert db.session.scalar(sa.select(OutboxMessage.subject)) == (
        "Your account: Two-step sign-in was turned on for your account.")
    assert mailer.build(db.session.scalar(sa.select(OutboxMessage)), app.config)["List-Unsubscribe"] is None


def test_sharing_and_filing_a_period_tell_the_agency_officers(app, db, world):  # noqa: F811 - fixture
    _clear(db)
    monitor = signed_in(app, "monitor@example.test")
    period = world["open"]
    assert monitor.post(f"/agencies/agency-a/periods/{period.id}/share").status_code == 303
    assert monitor.post(f"/agencies/agency-a/periods/{period.id}/file",
                        {"filed_on": "2026-01-20", "docket_ref": "Dkt. 1123"}).status_code == 303
    officers = {world["users"]["officer"].id, world["users"]["officer2"].id}
    rows = _rows(db)
    assert {(uid, cat, mode) for uid, cat, mode, _s in rows} == {(o, "period", "immediate") for o in officers}
    assert sorted({s for *_x, s in rows}) == ["[Harbor City PD] Report 2: draft shared",
                                              "[Harbor City PD] Report 2: report filed"]


def test_policy_events_reach_monitors_and_the_committee(app, db, world):  # noqa: F811 - fixture
    """services/policies.py calls notifications.policy_event when a review round or comment window opens."""
    from types import SimpleNamespace

    from tracker.services import policies

    _clear(db)
    doc = SimpleNamespace(id=7, agency_id=world["a"].id, title="General Order 4.12")
    policies._notify("review_round_opened", doc, SimpleNamespace(comment_due=date(2027, 1, 15)),
                     world["users"]["officer"])
    policies._notify("comment_window_opened", doc, SimpleNamespace(closes_on=date(2027, 2, 1)),
                     world["users"]["officer"])
    policies._notify("something_else", doc, None, world["users"]["officer"])
    db.session.commit()
    assert [(uid, cat, mode, s) for uid, cat, mode, s in _rows(db)] == sorted([
        (world["users"]["monitor"].id, "policy_review", "immediate",
         "[Harbor City PD] General Order 4.12: review, comments due 2027-01-15"),
        (world["users"]["committee"].id, "policy_review", "immediate",
         "[Harbor City PD] General Order 4.12: open for comment until 2027-02-01")])
    body = db.session.scalars(sa.select(OutboxMessage.body_text)).first()
    assert "/agencies/agency-a/policies/7" in body
