"""Document and data requests (issue 13 §4): the monitor asks, the officer answers with evidence or a note and
asks for more time, the monitor decides, closes or withdraws. Overdue is derived from the date; committee
members see nothing of it."""
import io
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa
import time_machine

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import (
    AuditEvent,
    DocumentRequest,
    DocumentRequestAnswer,
    DocumentRequestExtension,
    Evidence,
    MonitoringPeriod,
    utcnow,
)
from tracker.services import document_requests as service
from tracker.services.errors import ValidationFailed

PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
NOW = datetime(2026, 3, 2, 15, 0)


@pytest.fixture
def dr(db):
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    a = make_agency(slug="agency-a", name="Harbor City PD")
    b = make_agency(slug="agency-b", name="Lakeside PD")
    users = {
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b, name="Bea Elsewhere"),
        "admin": make_user("admin@example.test", is_admin=True, name="Ada Admin"),
    }
    reqs = [make_requirement(a, module=cit, code="CIT-001", title="Crisis line"),
            make_requirement(a, module=data, code="DAT-001", title="Crisis data")]
    req_b = make_requirement(b, module=cit, code="CIT-001", title="B's")
    period = MonitoringPeriod(agency_id=a.id, name="Report 2", start_date=date(2026, 1, 1), end_date=date(2026, 6, 30))
    db.session.add(period)
    db.session.commit()
    return {"a": a, "b": b, "users": users, "reqs": reqs, "req_b": req_b, "period": period}


def _ask(w, title="CIT rosters", due=date(2026, 3, 16), reqs=None, period=True):
    return service.create_request(w["a"], {
        "title": title, "details": "All of them.", "due_date": due,
        "requirement_ids": [str(r.id) for r in (reqs or w["reqs"][:1])],
        "period_id": str(w["period"].id) if period else ""}, actor=w["users"]["monitor"])


def _login(app, email):
    auth = Auth(app.test_client())
    auth.login(email)
    return auth


# --- states ------------------------------------------------------------------------------------------

@time_machine.travel(NOW, tick=False)
def test_an_unanswered_request_turns_overdue_the_day_after_its_due_date(db, dr):
    request = _ask(dr)
    db.session.commit()
    assert request.number == 1 and request.state == "open"
    assert service.effective_state(request) == "open"
    with time_machine.travel(datetime(2026, 3, 16, 23, 0), tick=False):
        assert service.effective_state(request) == "open"      # due today is not late yet
    with time_machine.travel(datetime(2026, 3, 17, 8, 0), tick=False):
        assert service.effective_state(request) == "overdue"
        assert request.state == "open"                          # nothing stored went stale
        rows = service.list_requests([dr["a"].id], service.Filters(state="overdue"))
        assert [r.request.id for r in rows] == [request.id]
        assert service.list_requests([dr["a"].id], service.Filters(state="open")) == []
        assert service.agency_summary(dr["a"])["counts"]["overdue"] == 1


@time_machine.travel(NOW, tick=False)
def test_requests_are_numbered_per_agency_and_refuse_bad_input_naming_the_field(db, dr):
    first, second = _ask(dr), _ask(dr, title="Dispatch data", reqs=dr["reqs"])
    assert (first.number, second.number) == (1, 2)
    assert [r.code for r in second.requirements] == ["CIT-001", "DAT-001"]
    count = db.session.scalar(sa.select(sa.func.count()).select_from(DocumentRequest))
    with pytest.raises(ValidationFailed) as exc:
        service.create_request(dr["a"], {"title": "", "due_date": date(2026, 3, 1),
                                         "requirement_ids": [str(dr["req_b"].id)]}, actor=dr["users"]["monitor"])
    assert set(exc.value.errors) == {"title", "due_date", "requirement_ids"}
    assert "today or later" in exc.value.errors["due_date"]
    assert str(dr["req_b"].id) in exc.value.errors["requirement_ids"]
    with pytest.raises(ValidationFailed) as exc:
        service.create_request(dr["a"], {"title": "x", "due_date": date(2026, 4, 1), "requirement_ids": []},
                               actor=dr["users"]["monitor"])
    assert "at least one" in exc.value.errors["requirement_ids"]
    assert db.session.scalar(sa.select(sa.func.count()).select_from(DocumentRequest)) == count


@time_machine.travel(NOW, tick=False)
def test_answer_close_withdraw_and_what_each_state_allows(db, dr):
    officer, monitor = dr["users"]["officer"], dr["users"]["monitor"]
    one, two = _ask(dr), _ask(dr, title="Second")
    service.answer(one, actor=officer, note="Rosters are in the shared folder.")
    assert one.state == "answered" and one.answered_at is not None
    service.answer(one, actor=officer, note="And the make-up class.")           # more may follow
    service.finish(one, "close", "Received, thank you.", actor=monitor)
    assert (one.state, one.close_note, one.closed_by_id) == ("closed", "Received, thank you.", monitor.id)
    with pytest.raises(ValidationFailed, match="takes no more answers"):
        service.answer(one, actor=officer, note="late addition")
    with pytest.raises(ValidationFailed, match="Attach evidence or write a note"):
        service.answer(two, actor=officer)
    service.finish(two, "withdraw", "", actor=monitor)
    assert service.effective_state(two) == "withdrawn"
    with pytest.raises(ValidationFailed, match="already withdrawn"):
        service.finish(two, "close", "", actor=monitor)
    actions = db.session.scalars(sa.select(AuditEvent.action).where(AuditEvent.action.like("request.%"))
                                 .order_by(AuditEvent.id)).all()
    assert actions == ["request.create", "request.create", "request.answer", "request.answer", "request.close",
                       "request.withdraw"]


@time_machine.travel(NOW, tick=False)
def test_extension_asked_with_a_reason_then_granted_moves_the_due_date_and_is_audited(db, dr):
    officer, monitor = dr["users"]["officer"], dr["users"]["monitor"]
    request = _ask(dr)
    with pytest.raises(ValidationFailed) as exc:
        service.ask_extension(request, date(2026, 3, 10), "", actor=officer)
    assert set(exc.value.errors) == {"reason", "requested_due"}
    ext = service.ask_extension(request, date(2026, 4, 15), "Records unit short-staffed.", actor=officer)
    with pytest.raises(ValidationFailed, match="already waiting"):
        service.ask_extension(request, date(2026, 4, 30), "Again", actor=officer)
    with pytest.raises(ValidationFailed, match="reason for refusing"):
        service.decide_extension(request, ext.id, "refuse", "", actor=monitor)
    service.decide_extension(request, ext.id, "grant", "", actor=monitor)
    assert (request.due_date, request.original_due_date) == (date(2026, 4, 15), date(2026, 3, 16))
    assert ext.state == "granted" and ext.decided_by_id == monitor.id
    event = db.session.scalars(sa.select(AuditEvent).where(AuditEvent.action == "request.extension_grant")).one()
    assert event.before == {"due_date": "2026-03-16"} and event.after["due_date"] == "2026-04-15"
    # The old due date passes: the granted date is what counts.
    with time_machine.travel(datetime(2026, 3, 20), tick=False):
        assert service.effective_state(request) == "open"
    # A second extension is refused with a reason; the date stays.
    ext2 = service.ask_extension(request, date(2026, 5, 15), "More time please", actor=officer)
    service.decide_extension(request, ext2.id, "refuse", "The court's schedule does not allow it.", actor=monitor)
    assert request.due_date == date(2026, 4, 15) and ext2.state == "refused"
    with pytest.raises(ValidationFailed, match="already decided"):
        service.decide_extension(request, ext2.id, "grant", "", actor=monitor)


@time_machine.travel(NOW, tick=False)
def test_period_summary_counts_requested_produced_and_late(db, dr):
    officer, monitor = dr["users"]["officer"], dr["users"]["monitor"]
    on_time, late_answer, unanswered, withdrawn = (_ask(dr, title=t) for t in ("A", "B", "C", "D"))
    _ask(dr, title="No period", period=False)
    service.answer(on_time, actor=officer, note="Here.")
    service.finish(withdrawn, "withdraw", "", actor=monitor)
    db.session.commit()
    with time_machine.travel(datetime(2026, 3, 20), tick=False):
        service.answer(late_answer, actor=officer, note="Sorry, late.")
        summary = service.period_summary(dr["period"])
    assert (summary["requested"], summary["produced"], summary["late"]) == (3, 2, 2)
    late = {r.title: is_late for r, _state, is_late in summary["requests"]}
    assert late == {"A": False, "B": True, "C": True, "D": False}
    assert unanswered.state == "open"


# --- through the web ---------------------------------------------------------------------------------

@time_machine.travel(NOW, tick=False)
def test_monitor_asks_officer_answers_with_an_uploaded_file_monitor_closes(app, db, dr):
    monitor = _login(app, "monitor@example.test")
    r = monitor.post("/agencies/agency-a/requests", {
        "title": "CIT training rosters", "details": "Spring classes.", "due_date": "2026-03-16",
        "requirement_ids": [str(dr["reqs"][0].id), str(dr["reqs"][1].id)], "period_id": str(dr["period"].id)})
    assert r.status_code == 303, r.get_data(as_text=True)[:500]
    request = db.session.scalars(sa.select(DocumentRequest)).one()
    officer = _login(app, "officer@example.test")
    page = officer.client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Request 1: CIT training rosters" in page and "Answer the request" in page
    # The evidence must belong to a requirement of the request: another agency's is refused.
    r = officer.post(f"/agencies/agency-a/requests/{request.id}/answer", {
        "evidence_choice": "new", "requirement_id": str(dr["req_b"].id), "kind": "file", "title": "Rosters",
        "visibility": "restricted", "file": (io.BytesIO(PDF), "rosters.pdf")}, content_type="multipart/form-data")
    assert r.status_code == 422 and "Choose the requirement" in r.get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Evidence)) == 0
    r = officer.post(f"/agencies/agency-a/requests/{request.id}/answer", {
        "evidence_choice": "new", "requirement_id": str(dr["reqs"][1].id), "kind": "file", "title": "Rosters",
        "visibility": "restricted", "note": "Both classes.", "file": (io.BytesIO(PDF), "rosters.pdf")},
        content_type="multipart/form-data")
    assert r.status_code == 303, r.get_data(as_text=True)[:800]
    answer = db.session.scalars(sa.select(DocumentRequestAnswer)).one()
    evidence = db.session.get(Evidence, answer.evidence_id)
    assert (evidence.requirement_id, evidence.filename, evidence.review_state) == (dr["reqs"][1].id, "rosters.pdf",
                                                                                 "submitted")
    assert evidence.sha256 and answer.note == "Both classes."
    page = monitor.client.get(f"/agencies/agency-a/requests/{request.id}").get_data(as_text=True)
    assert "Rosters" in page and evidence.sha256 in page and "Answered" in page
    r = monitor.post(f"/agencies/agency-a/requests/{request.id}/close", {"action": "close", "note": "Complete."})
    assert r.status_code == 303
    db.session.refresh(request)
    assert request.state == "closed"
    # The requirement's history shows the request and the answer, for the officer.
    history = officer.client.get(f"/agencies/agency-a/requirements/{dr['reqs'][1].id}").get_data(as_text=True)
    assert "asked for documents" in history and "answered" in history and "“Rosters”" in history


@time_machine.travel(NOW, tick=False)
def test_officer_answers_with_existing_evidence_or_a_note_and_asks_for_more_time(app, db, dr):
    from tracker.services import evidence as evidence_service

    existing = evidence_service.add_link(dr["reqs"][0], "https://example.org/policy", {"title": "Policy page"},
                                         actor=dr["users"]["officer"])
    request = _ask(dr)
    db.session.commit()
    officer = _login(app, "officer@example.test")
    url = f"/agencies/agency-a/requests/{request.id}"
    r = officer.post(url + "/extension", {"requested_due": "2026-04-01", "reason": "Records unit move."})
    assert r.status_code == 303
    r = officer.post(url + "/answer", {"evidence_choice": "existing", "evidence_id": str(existing.id)},
                     content_type="multipart/form-data")
    assert r.status_code == 303
    assert db.session.scalars(sa.select(DocumentRequestAnswer.evidence_id)).one() == existing.id
    monitor = _login(app, "monitor@example.test")
    ext = db.session.scalars(sa.select(DocumentRequestExtension)).one()
    page = monitor.client.get(url).get_data(as_text=True)
    assert "Records unit move." in page and "Grant: due Apr 1, 2026" in page
    r = monitor.post(url + "/extension/decide", {"extension_id": str(ext.id), "decision": "grant"})
    assert r.status_code == 303
    db.session.refresh(request)
    assert request.due_date == date(2026, 4, 1)
    # Only the roles that may: the officer cannot close or decide, the monitor cannot answer.
    assert officer.post(url + "/close", {"action": "close"}).status_code == 403
    assert monitor.post(url + "/answer", {"evidence_choice": "none", "note": "x"}).status_code == 403


@time_machine.travel(NOW, tick=False)
def test_committee_members_see_no_requests_anywhere(app, db, dr):
    request = _ask(dr)
    service.answer(request, actor=dr["users"]["officer"], note="Produced a note.")
    db.session.commit()
    committee = _login(app, "committee@example.test")
    for url in ("/agencies/agency-a/requests", f"/agencies/agency-a/requests/{request.id}",
                "/agencies/agency-a/requests.csv", "/agencies/agency-a/requests/new"):
        assert committee.client.get(url).status_code == 403, url
    for page in (f"/agencies/agency-a/requirements/{dr['reqs'][0].id}", "/agencies/agency-a/dashboard",
                 f"/agencies/agency-a/periods/{dr['period'].id}/report", "/"):
        html = committee.client.get(page).get_data(as_text=True)
        assert "CIT rosters" not in html and "Document requests" not in html, page
    officer = _login(app, "officer@example.test")
    for page in (f"/agencies/agency-a/requirements/{dr['reqs'][0].id}",
                 f"/agencies/agency-a/periods/{dr['period'].id}/report"):
        assert "CIT rosters" in officer.client.get(page).get_data(as_text=True), page
    dashboard = officer.client.get("/agencies/agency-a/dashboard").get_data(as_text=True)
    assert "<strong>1</strong> answered" in dashboard and "Document requests" in dashboard


@time_machine.travel(NOW, tick=False)
def test_another_agencys_request_is_404_and_bad_input_writes_nothing(app, db, dr):
    request = service.create_request(dr["b"], {"title": "B's", "due_date": date(2026, 4, 1),
                                               "requirement_ids": [str(dr["req_b"].id)]},
                                     actor=dr["users"]["admin"])
    db.session.commit()
    officer = _login(app, "officer@example.test")
    assert officer.client.get(f"/agencies/agency-a/requests/{request.id}").status_code == 404
    assert officer.client.get(f"/agencies/agency-b/requests/{request.id}").status_code == 404
    assert officer.post(f"/agencies/agency-a/requests/{request.id}/answer", {"note": "x"}).status_code == 404
    monitor = _login(app, "monitor@example.test")
    before = db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent))
    r = monitor.post("/agencies/agency-a/requests", {"title": "", "due_date": "soon"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "What is asked is required." in html and "Enter the due date as YYYY-MM-DD." in html
    assert 'aria-invalid="true"' in html
    assert db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent)) == before


@time_machine.travel(NOW, tick=False)
def test_navigation_counts_and_list_filters(app, db, dr):
    _ask(dr, title="First"), _ask(dr, title="Second", reqs=[dr["reqs"][1]])
    third = _ask(dr, "Third")
    service.answer(third, actor=dr["users"]["officer"], note="Done.")
    db.session.commit()
    with time_machine.travel(datetime(2026, 3, 20), tick=False):
        officer = _login(app, "officer@example.test")
        home = officer.client.get("/").get_data(as_text=True)
        assert 'Document requests <span class="tracker-nav__count">2</span>' in home
        assert "2 overdue" in home
        monitor = _login(app, "monitor@example.test")
        assert 'Document requests <span class="tracker-nav__count">1</span>' in monitor.client.get("/").get_data(
            as_text=True)                                            # the answered one, waiting to be closed
        page = officer.client.get("/agencies/agency-a/requests?state=overdue").get_data(as_text=True)
        assert "First" in page and "Second" in page and "Third" not in page
        page = officer.client.get(f"/agencies/agency-a/requests?requirement={dr['reqs'][1].id}").get_data(
            as_text=True)
        assert "Second" in page and "First" not in page
        page = officer.client.get("/requests?state=answered").get_data(as_text=True)
        assert "Third" in page and "First" not in page
        r = officer.client.get("/agencies/agency-a/requests?state=bogus&due=never")
        assert r.status_code == 200 and "Unknown filter value ignored: state, due" in r.get_data(as_text=True)


def test_nav_count_is_one_query(app, db, dr, count_queries):
    _ask(dr, due=utcnow().date() + timedelta(days=3))
    db.session.commit()
    from flask_login import login_user

    with app.test_request_context():
        login_user(dr["users"]["officer"])
        from tracker.access import memberships

        ms = memberships()
        with count_queries() as n:
            counts = service.nav_counts(dr["users"]["officer"], ms)
        assert counts == {"requests": 1, "overdue": 0} and n.count == 1


def test_list_page_query_count_does_not_grow_with_requests(app, db, dr, count_queries, no_page_cache):
    officer = _login(app, "officer@example.test")

    def add(n):
        for i in range(n):
            request = _ask(dr, title=f"Item {i}", due=utcnow().date() + timedelta(days=i), reqs=dr["reqs"])
            service.answer(request, actor=dr["users"]["officer"], note="x") if i % 2 else None
            service.ask_extension(request, request.due_date + timedelta(days=9), "why", actor=dr["users"]["officer"]
                                  ) if not i % 2 else None
        db.session.commit()

    def measure():
        with count_queries() as n:
            r = officer.client.get("/agencies/agency-a/requests")
        assert r.status_code == 200
        return n.count, r.get_data(as_text=True).count("Request ")

    add(3)
    small, shown_small = measure()
    add(30)
    large, shown_large = measure()
    assert shown_large > shown_small
    assert large == small, f"{small} queries at 3 requests, {large} at 33"


@time_machine.travel(NOW, tick=False)
def test_exports_carry_the_requests_for_the_agency_not_the_committee(app, db, dr):
    from openpyxl import load_workbook

    _ask(dr, title="=HYPERLINK(evil)")
    db.session.commit()
    officer = _login(app, "officer@example.test")
    with officer.client.get("/agencies/agency-a/requests.csv") as r:
        assert r.status_code == 200
        text = r.get_data(as_text=True)
    assert "Request,What is asked,Requirements,State" in text and "'=HYPERLINK(evil)" in text
    with officer.client.get("/agencies/agency-a/export.xlsx") as response:
        book = load_workbook(io.BytesIO(response.get_data()))
    assert book.sheetnames[1] == "Document requests"
    rows = list(book["Document requests"].iter_rows(values_only=True))
    assert rows[1][:4] == (1, "'=HYPERLINK(evil)", "CIT-001", "Open")
    committee = _login(app, "committee@example.test")
    with committee.client.get("/agencies/agency-a/export.xlsx") as response:
        book = load_workbook(io.BytesIO(response.get_data()))
    assert "Document requests" not in book.sheetnames  # (the indicator values are everyone's: issue 14)
