"""Committee recommendations and the department's written answers (issue 14 §2): who drafts, submits, answers
and publishes; the response due date; overdue on the dashboard and in the navigation; the history on the
requirement page; a stale edit is 409 and changes nothing; committee members comment on requirements."""
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import (
    Agency,
    AuditEvent,
    Comment,
    CommitteeRecommendation,
    CommitteeResponse,
    Meeting,
    Membership,
    utcnow,
)
from tracker.services import committee


def _count(db, model, *where):
    db.session.commit()
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _audits(db, action):
    return _count(db, AuditEvent, AuditEvent.action == action)


@pytest.fixture
def world(db):
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    a = make_agency(slug="harbor", name="Harbor City PD", public_enabled=True)
    b = make_agency(slug="other", name="Other Town PD")
    reqs = {"cit": make_requirement(a, module=cit, code="CIT-001", title="Crisis line"),
            "data": make_requirement(a, module=data, code="DATA-001", title="Crisis call data"),
            "b": make_requirement(b, module=cit, code="CIT-001", title="B's")}
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "member2": make_user("member2@example.test", role="committee", agency=a, name="Mia Member"),
        "chair": make_user("chair@example.test", role="committee", agency=a, name="Chris Chair"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
        "outsider": make_user("outsider@example.test", role="committee", agency=b, name="Otto Outside"),
    }
    db.session.execute(sa.update(Membership).where(Membership.user_id == users["chair"].id).values(is_chair=True))
    meeting = Meeting(agency_id=a.id, title="Spring meeting", starts_at=datetime(2026, 3, 4, 18, 0))
    db.session.add(meeting)
    db.session.commit()
    return {"a": a, "b": b, "reqs": reqs, "users": users, "modules": {"cit": cit, "data": data},
            "meeting": meeting}


def _login(auth, world, role):
    if auth.token:
        auth.logout()
    assert auth.login(world["users"][role].email).status_code == 303


BASE = "/agencies/harbor/committee/recommendations"


def _draft(auth, world, **values):
    data = {"title": "Staff the crisis line around the clock", "body": "Fund two more call-takers per shift.",
            "rationale": "Calls wait over 60 seconds at night.", "meeting_id": str(world["meeting"].id),
            "requirement_ids": [str(world["reqs"]["cit"].id)], "module_ids": [str(world["modules"]["cit"].id)],
            **values}
    return auth.post(BASE, data)


def _rec(db, number=1):
    db.session.commit()
    db.session.expire_all()
    return db.session.execute(sa.select(CommitteeRecommendation).where(
        CommitteeRecommendation.number == number)).scalar_one()


def _submit(auth, db, rec):
    return auth.post(f"{BASE}/{rec.id}/submit", {"row_version": str(rec.row_version)})


def _answer(auth, rec, **values):
    data = {"decision": "accepted", "reasons": "Funded in the FY27 budget.",
            "steps": "Hire four call-takers by July.", "requirement_ids": [], "row_version": str(rec.row_version),
            **values}
    return auth.post(f"{BASE}/{rec.id}/response", data)


def _drafted_and_submitted(auth, db, world):
    _login(auth, world, "committee")
    assert _draft(auth, world).status_code == 303
    assert _submit(auth, db, _rec(db)).status_code == 303
    return _rec(db)


# --- drafting and submitting ------------------------------------------------------------------------------

@pytest.mark.parametrize("role", ["committee", "chair"])
def test_committee_members_draft_and_submit_with_a_response_due_date(client, auth, db, world, role):
    _login(auth, world, role)
    r = _draft(auth, world)
    assert r.status_code == 303, r.get_data(as_text=True)[-2000:]
    rec = _rec(db)
    assert r.headers["Location"].endswith(f"{BASE}/{rec.id}")
    assert rec.state == "draft" and rec.response_due is None and rec.meeting_id == world["meeting"].id
    assert [q.code for q in rec.requirements] == ["CIT-001"] and [m.key for m in rec.modules] == ["cit"]
    assert _submit(auth, db, rec).status_code == 303
    rec = _rec(db)
    assert rec.state == "submitted" and rec.submitted_by_id == world["users"][role].id
    assert rec.response_due == rec.submitted_at.date() + timedelta(days=60)
    assert rec.submitted_at.date() == utcnow().date()
    assert _audits(db, "committee_recommendation.create") == 1
    assert _audits(db, "committee_recommendation.submit") == 1


def test_the_due_date_follows_the_agency_setting(client, auth, db, world):
    db.session.execute(sa.update(Agency).where(Agency.id == world["a"].id).values(committee_response_days=30))
    db.session.commit()
    _login(auth, world, "committee")
    _draft(auth, world)
    # A fixed day (the form's CSRF token is made at the same moment, so it is not from the future).
    with time_machine.travel(datetime(2031, 1, 10, 9, 0), tick=False):
        _login(auth, world, "committee")
        assert _submit(auth, db, _rec(db)).status_code == 303
    assert _rec(db).response_due == date(2031, 2, 9)


@pytest.mark.parametrize("role", ["officer", "monitor"])
def test_officers_and_monitors_may_not_draft_and_do_not_see_drafts(client, auth, db, world, role):
    _login(auth, world, "committee")
    _draft(auth, world)
    rec = _rec(db)
    _login(auth, world, role)
    assert _draft(auth, world, title="Theirs").status_code == 403
    assert client.get(f"{BASE}/new").status_code == 403
    assert client.get(f"{BASE}/{rec.id}").status_code == 404  # a draft is the committee's own
    assert "Staff the crisis line" not in client.get("/agencies/harbor/committee").get_data(as_text=True)
    assert _submit(auth, db, rec).status_code == 404
    assert _count(db, CommitteeRecommendation) == 1


def test_only_the_author_or_the_chair_changes_or_submits_a_draft(client, auth, db, world):
    _login(auth, world, "committee")
    _draft(auth, world)
    rec = _rec(db)
    _login(auth, world, "member2")
    assert client.get(f"{BASE}/{rec.id}").status_code == 200  # the committee reads its drafts
    assert _submit(auth, db, rec).status_code == 403
    assert auth.post(f"{BASE}/{rec.id}", {"title": "Hijacked", "body": "x",
                                          "row_version": str(rec.row_version)}).status_code == 403
    _login(auth, world, "chair")
    r = auth.post(f"{BASE}/{rec.id}", {"title": "Staff the line 24/7", "body": "Two more per shift.",
                                       "meeting_id": "0", "requirement_ids": [str(world["reqs"]["cit"].id),
                                                                              str(world["reqs"]["data"].id)],
                                       "row_version": str(rec.row_version)})
    assert r.status_code == 303
    rec = _rec(db)
    assert rec.title == "Staff the line 24/7" and rec.meeting_id is None and len(rec.requirements) == 2
    event = db.session.execute(sa.select(AuditEvent).where(
        AuditEvent.action == "committee_recommendation.update")).scalar_one()
    assert event.after["requirements"] == ["CIT-001", "DATA-001"] and event.actor_id == world["users"]["chair"].id
    assert _submit(auth, db, rec).status_code == 303


def test_a_submitted_recommendation_can_no_longer_be_changed(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    r = auth.post(f"{BASE}/{rec.id}", {"title": "Later", "body": "x", "row_version": str(rec.row_version)})
    assert r.status_code == 403
    assert _submit(auth, db, rec).status_code == 403
    assert _rec(db).title == "Staff the crisis line around the clock"


def test_bad_input_names_the_field_and_writes_nothing(client, auth, db, world):
    _login(auth, world, "committee")
    for values, message in [({"title": ""}, "The title is required."),
                            ({"body": ""}, "The recommendation is required."),
                            ({"requirement_ids": [str(world["reqs"]["b"].id)]}, "Choose requirements of this agency"),
                            ({"meeting_id": "99999"}, "Choose a meeting of this agency")]:
        r = _draft(auth, world, **values)
        assert r.status_code == 422, values
        assert message in r.get_data(as_text=True), values
    assert _count(db, CommitteeRecommendation) == 0


def test_outsiders_get_404(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    _login(auth, world, "outsider")
    assert client.get(f"{BASE}/{rec.id}").status_code == 404
    assert client.get(f"/agencies/other/committee/recommendations/{rec.id}").status_code == 404
    assert _answer(auth, rec).status_code == 404


# --- answering --------------------------------------------------------------------------------------------

def test_officers_answer_and_revise_and_the_earlier_answer_stays(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    for role in ("committee", "monitor"):
        _login(auth, world, role)
        assert _answer(auth, rec).status_code == 403
    _login(auth, world, "officer")
    r = _answer(auth, rec, decision="under_consideration", reasons="Costed in the budget review.", steps="")
    assert r.status_code == 303
    rec = _rec(db)
    assert rec.state == "responded"
    r = _answer(auth, rec, requirement_ids=[str(world["reqs"]["cit"].id)])
    assert r.status_code == 303
    rows = db.session.execute(sa.select(CommitteeResponse).order_by(CommitteeResponse.id)).scalars().all()
    assert [(x.decision, x.is_current) for x in rows] == [("under_consideration", False), ("accepted", True)]
    assert [q.code for q in rows[1].requirements] == ["CIT-001"]
    assert _audits(db, "committee_recommendation.respond") == 2
    page = client.get(f"{BASE}/{rec.id}").get_data(as_text=True)
    assert "Hire four call-takers by July." in page and "Earlier answers" in page
    assert "Costed in the budget review." in page


def test_accepting_needs_reasons_and_steps(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    _login(auth, world, "officer")
    r = _answer(auth, rec, steps="")
    assert r.status_code == 422 and "The implementation steps is required." in r.get_data(as_text=True)
    r = _answer(auth, rec, decision="declined", reasons="", steps="")
    assert r.status_code == 422 and "The reasons is required." in r.get_data(as_text=True)
    r = _answer(auth, rec, decision="maybe")
    assert r.status_code == 422 and "Choose one of: Accepted" in r.get_data(as_text=True)
    assert _count(db, CommitteeResponse) == 0 and _rec(db).state == "submitted"
    assert _answer(auth, rec, decision="declined", reasons="Outside the decree.", steps="").status_code == 303


def test_a_stale_answer_is_409_and_changes_nothing(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    stale = rec.row_version
    _login(auth, world, "officer")
    assert _answer(auth, rec, decision="declined", reasons="First answer.", steps="").status_code == 303
    r = _answer(auth, rec, reasons="My answer, written at the same time.", row_version=str(stale))
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "Someone else changed this recommendation first" in html
    assert "My answer, written at the same time." in html  # the input is kept in the form
    assert [x.reasons for x in db.session.execute(sa.select(CommitteeResponse)).scalars()] == ["First answer."]


def test_a_stale_draft_edit_is_409_and_changes_nothing(client, auth, db, world):
    _login(auth, world, "committee")
    _draft(auth, world)
    rec = _rec(db)
    stale = rec.row_version
    form = {"title": "Version A", "body": "Body A", "meeting_id": "0", "row_version": str(stale)}
    assert auth.post(f"{BASE}/{rec.id}", form).status_code == 303
    r = auth.post(f"{BASE}/{rec.id}", {**form, "title": "Version B"})
    assert r.status_code == 409 and "Version B" in r.get_data(as_text=True)
    assert _rec(db).title == "Version A"
    r = auth.post(f"{BASE}/{rec.id}/submit", {"row_version": str(stale)})
    assert r.status_code == 409  # the submit form of the old page is stale too
    assert _rec(db).state == "draft"


# --- overdue: dashboard and navigation ------------------------------------------------------------------

def test_an_unanswered_recommendation_turns_overdue_after_its_due_date(client, auth, db, world):
    _login(auth, world, "committee")
    _draft(auth, world)
    _draft(auth, world, title="Publish crisis data quarterly")
    _submit(auth, db, _rec(db, 1))
    _submit(auth, db, _rec(db, 2))
    _login(auth, world, "officer")
    assert _answer(auth, _rec(db, 2)).status_code == 303
    due = _rec(db, 1).response_due  # 60 days on
    with time_machine.travel(datetime.combine(due, datetime.min.time()) + timedelta(hours=12), tick=False):
        _login(auth, world, "officer")  # two months on, the earlier session has timed out
        html = client.get("/agencies/harbor/dashboard").get_data(as_text=True)
        assert "answered <strong>1</strong> of\n      <strong>2</strong>" in html
        assert "(overdue)" not in html and "Overdue answers" not in html
    with time_machine.travel(datetime.combine(due + timedelta(days=1), datetime.min.time()) + timedelta(hours=12),
                             tick=False):
        _login(auth, world, "officer")
        html = client.get("/agencies/harbor/dashboard").get_data(as_text=True)
        panel = html[html.index('id="committee-panel"'):]
        assert "1 overdue" in panel and "(overdue)" in panel
        assert "Answered: Accepted" in panel
        nav = html[:html.index('id="main-content"')]
        assert "Overdue answers" in nav and '<span class="tracker-nav__count">1</span>' in nav
        listing = client.get("/agencies/harbor/committee?state=overdue").get_data(as_text=True)
        assert "Staff the crisis line" in listing and "Publish crisis data" not in listing
        # Committee members see the count too; monitors do not get the link.
        _login(auth, world, "committee")
        assert "Overdue answers" in client.get("/agencies/harbor/committee").get_data(as_text=True)
        _login(auth, world, "monitor")
        assert "Overdue answers" not in client.get("/agencies/harbor/committee").get_data(as_text=True)


def test_nav_count_is_one_query_across_agencies(app, db, world):
    other = make_agency(slug="third", name="Third PD")
    late = utcnow().date() - timedelta(days=1)
    for agency, number in ((world["a"], 1), (other, 1), (other, 2)):
        db.session.add(CommitteeRecommendation(agency_id=agency.id, number=number, title="t", body="b",
                                               state="submitted", response_due=late))
    db.session.commit()
    user = world["users"]["admin"]
    assert user.is_admin  # loaded before counting
    statements = []

    def listener(conn, cursor, sql, *args):
        statements.append(sql)

    sa.event.listen(db.engine, "after_cursor_execute", listener)
    try:
        result = committee.overdue_by_agency(user, [])
    finally:
        sa.event.remove(db.engine, "after_cursor_execute", listener)
    assert result == [("harbor", 1), ("third", 2)]
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_dashboard_never_counts_drafts(client, auth, db, world):
    _login(auth, world, "committee")
    _draft(auth, world)
    html = client.get("/agencies/harbor/dashboard").get_data(as_text=True)
    assert "answered <strong>0</strong> of\n      <strong>0</strong>" in html


# --- history on the requirement page ---------------------------------------------------------------------

def test_the_history_is_on_the_requirement_timelines(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    _login(auth, world, "officer")
    _answer(auth, rec, decision="under_consideration", steps="")
    _answer(auth, _rec(db), requirement_ids=[str(world["reqs"]["data"].id)])
    cit = client.get(f"/agencies/harbor/requirements/{world['reqs']['cit'].id}").get_data(as_text=True)
    history = cit[cit.index('id="history"'):]
    for text in ("drafted committee recommendation", "submitted committee recommendation",
                 "answered (Under consideration) committee recommendation",
                 "revised the answer to (Accepted) committee recommendation"):
        assert text in history, text
    assert "Cole Committee" in history and "Olive Officer" in history
    # The requirement the accepted steps link to shows it too.
    data = client.get(f"/agencies/harbor/requirements/{world['reqs']['data'].id}").get_data(as_text=True)
    assert "revised the answer to (Accepted) committee recommendation" in data[data.index('id="history"'):]


def test_drafts_stay_off_the_requirement_timeline(client, auth, db, world):
    _login(auth, world, "committee")
    _draft(auth, world)
    _login(auth, world, "officer")
    page = client.get(f"/agencies/harbor/requirements/{world['reqs']['cit'].id}").get_data(as_text=True)
    assert "committee recommendation" not in page[page.index('id="history"'):]


# --- publishing -------------------------------------------------------------------------------------------

def test_the_admin_publishes_a_recommendation_with_its_answer(client, auth, db, world):
    rec = _drafted_and_submitted(auth, db, world)
    _login(auth, world, "officer")
    _answer(auth, rec, reasons="Funded <b>now</b>.")
    rec = _rec(db)
    for role in ("officer", "chair"):
        _login(auth, world, role)
        assert auth.post(f"{BASE}/{rec.id}/publish", {"public": "y"}).status_code == 403
    assert "Staff the crisis line" not in client.get("/public/harbor").get_data(as_text=True)
    _login(auth, world, "admin")
    assert auth.post(f"{BASE}/{rec.id}/publish", {"public": "y"}).status_code == 303
    assert _rec(db).public and _audits(db, "committee_recommendation.publish") == 1
    auth.logout()
    auth.token = None
    public = client.get("/public/harbor").get_data(as_text=True)
    assert "Recommendation 1: Staff the crisis line around the clock" in public
    assert "Funded &lt;b&gt;now&lt;/b&gt;." in public and "Hire four call-takers by July." in public
    assert "Accepted" in public
    assert "Cole Committee" not in public and "Olive Officer" not in public  # no names on the public page


def test_a_draft_is_never_published(client, auth, db, world):
    _login(auth, world, "committee")
    _draft(auth, world)
    rec = _rec(db)
    _login(auth, world, "admin")
    r = auth.post(f"{BASE}/{rec.id}/publish", {"public": "y"})
    assert r.status_code == 422 and "A draft cannot be published" in r.get_data(as_text=True)
    assert not _rec(db).public


# --- committee members comment on requirements -----------------------------------------------------------

def test_committee_members_comment_on_requirements(client, auth, db, world):
    req = world["reqs"]["cit"]
    _login(auth, world, "committee")
    page = client.get(f"/agencies/harbor/requirements/{req.id}").get_data(as_text=True)
    assert f'action="/agencies/harbor/requirements/{req.id}/comments"' in page
    r = auth.post(f"/agencies/harbor/requirements/{req.id}/comments", {"body": "When will nights be staffed?"})
    assert r.status_code == 303
    comment = db.session.execute(sa.select(Comment)).scalar_one()
    assert comment.author_id == world["users"]["committee"].id
    assert _audits(db, "comment.create") == 1
    _login(auth, world, "outsider")
    assert auth.post(f"/agencies/harbor/requirements/{req.id}/comments", {"body": "x"}).status_code == 404


def test_list_pages_use_a_fixed_number_of_queries(client, auth, db, world, count_queries, no_page_cache):
    _login(auth, world, "committee")
    _draft(auth, world)
    with count_queries() as few:
        assert client.get("/agencies/harbor/committee").status_code == 200
    for i in range(5):
        _draft(auth, world, title=f"Recommendation {i}",
               requirement_ids=[str(world["reqs"]["cit"].id), str(world["reqs"]["data"].id)])
    with count_queries() as many:
        assert "Recommendation 4" in client.get("/agencies/harbor/committee").get_data(as_text=True)
    assert many.count == few.count


def test_is_overdue_is_judged_against_today(world):
    rec = CommitteeRecommendation(state="submitted", response_due=utcnow().date() - timedelta(days=1))
    assert committee.is_overdue(rec)
    rec.response_due = utcnow().date()
    assert not committee.is_overdue(rec)
    rec.state = "responded"
    rec.response_due = utcnow().date() - timedelta(days=9)
    assert not committee.is_overdue(rec)


# --- the administrator's settings, and e-mail --------------------------------------------------------------

def test_the_admin_sets_the_answer_period_and_the_chair(client, auth, db, world):
    settings = "/agencies/harbor/committee/settings"
    _login(auth, world, "officer")
    assert auth.post(settings, {"response_days": "30", "chair_id": "0"}).status_code == 403
    _login(auth, world, "admin")
    page = client.get("/agencies/harbor/committee").get_data(as_text=True)
    assert "Committee settings" in page and 'value="60"' in page
    r = auth.post(settings, {"response_days": "30", "chair_id": str(world["users"]["member2"].id)})
    assert r.status_code == 303
    chairs = db.session.execute(sa.select(Membership.user_id).where(Membership.agency_id == world["a"].id,
                                                                    Membership.is_chair.is_(True))).scalars().all()
    assert chairs == [world["users"]["member2"].id]  # one chair: the former chair is no longer one
    assert db.session.get(Agency, world["a"].id).committee_response_days == 30
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "committee.settings")).scalar_one()
    assert event.before == {"committee_response_days": 60, "chair": "chair@example.test"}
    assert event.after == {"committee_response_days": 30, "chair": "member2@example.test"}
    # The new chair may change another member's draft.
    _login(auth, world, "committee")
    _draft(auth, world)
    _login(auth, world, "member2")
    assert _submit(auth, db, _rec(db)).status_code == 303
    assert _rec(db).response_due == utcnow().date() + timedelta(days=30)


@pytest.mark.parametrize(("values", "field"), [
    ({"response_days": "0", "chair_id": "0"}, "between 1 and 365"),
    ({"response_days": "400", "chair_id": "0"}, "between 1 and 365"),
    ({"response_days": "30", "chair_id": "999999"}, "Choose the chair among"),
])
def test_bad_settings_name_the_field_and_change_nothing(client, auth, db, world, values, field):
    _login(auth, world, "admin")
    r = auth.post("/agencies/harbor/committee/settings", values)
    assert r.status_code == 422 and field in r.get_data(as_text=True)
    assert db.session.get(Agency, world["a"].id).committee_response_days == 60
    assert _audits(db, "committee.settings") == 0


def test_submitting_tells_the_officers_and_answering_tells_the_committee(client, auth, db, world):
    from tracker.models import Notification

    rec = _drafted_and_submitted(auth, db, world)
    told = db.session.execute(sa.select(Notification.user_id, Notification.category)).all()
    assert told == [(world["users"]["officer"].id, "committee_recommendation")]
    _login(auth, world, "officer")
    assert _answer(auth, rec).status_code == 303
    told = set(db.session.execute(sa.select(Notification.user_id).where(
        Notification.category == "committee_response")).scalars())
    assert told == {world["users"][k].id for k in ("committee", "member2", "chair")}
