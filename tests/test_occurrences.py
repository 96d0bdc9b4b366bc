"""Recurring duties occurrence by occurrence (issue 12 §1): the next due date advances when the open occurrence is
completed; each occurrence keeps its own completion, note and evidence; overdue applies to the open one."""
from datetime import date

import pytest
import sqlalchemy as sa
import time_machine

from tests.factories import make_agency, make_module, make_recommendation, make_requirement, make_user
from tracker.models import AuditEvent, DeadlineChange, Evidence, Occurrence, Requirement
from tracker.services import agencies, decree, imports, occurrences
from tracker.services import evidence as evidence_service
from tracker.services import requirements as req_service
from tracker.services.errors import ValidationFailed


@pytest.fixture
def duty(db):
    make_module("cit", "Crisis Intervention Teams", 1)
    a = make_agency(slug="agency-a", name="Harbor City PD", effective_date=date(2025, 1, 1))
    b = make_agency(slug="agency-b")
    users = {role: make_user(f"{role}@example.test", role=role, agency=a) for role in ("officer", "monitor",
                                                                                        "committee")}
    users["officer_b"] = make_user("officer-b@example.test", role="officer", agency=b)
    imports.import_paragraphs(a, "d.csv", b"paragraph,title,module,deadline\n"
                                          b"88,Annual report,cit,\"annually, beginning 12 months after the Effective "
                                          b"Date\"\n89,One-off,cit,within 90 days\n", actor=users["officer"])
    db.session.commit()
    reqs = {r.code: r for r in db.session.execute(sa.select(Requirement).where(Requirement.agency_id == a.id))
            .scalars()}
    return {"a": a, "b": b, "users": users, "req": reqs["¶ 88"], "once": reqs["¶ 89"]}


def _url(req, agency="agency-a"):
    return f"/agencies/{agency}/requirements/{req.id}"


def _open(db, req):
    return db.session.execute(sa.select(Occurrence).where(Occurrence.requirement_id == req.id,
                                                          Occurrence.state == "open")).scalar_one()


def test_completing_the_open_occurrence_advances_the_next_due_date(client, auth, db, duty):
    req = duty["req"]
    first = _open(db, req)
    assert (first.label, first.due_date, req.due_date) == ("2026 annual", date(2026, 1, 1), date(2026, 1, 1))
    auth.login("officer@example.test")
    page = client.get(_url(req)).get_data(as_text=True)
    assert "Recurring: annually, next due" in page
    assert "Mark 2026 annual completed" in page
    r = auth.post(f"{_url(req)}/occurrences", {"occurrence_id": first.id, "completed_on": "2025-12-15",
                                                "note": "Filed as Dkt. 310."})
    assert r.status_code == 303 and r.headers["Location"].endswith(f"{_url(req)}#occurrences")
    db.session.expire_all()
    done = db.session.get(Occurrence, first.id)
    assert (done.state, done.completed_on, done.note) == ("completed", date(2025, 12, 15), "Filed as Dkt. 310.")
    assert done.completed_by_id == duty["users"]["officer"].id
    following = _open(db, req)
    assert (following.sequence, following.label, following.due_date) == (2, "2027 annual", date(2027, 1, 1))
    assert db.session.get(Requirement, req.id).due_date == date(2027, 1, 1)
    change = db.session.execute(sa.select(DeadlineChange).where(DeadlineChange.requirement_id == req.id)
                                .order_by(DeadlineChange.id.desc()).limit(1)).scalar_one()
    assert (change.old_date, change.new_date) == (date(2026, 1, 1), date(2027, 1, 1))
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == "occurrence.complete")).scalar_one()
    assert event.agency_id == duty["a"].id and event.after["next_due_date"] == "2027-01-01"
    page = client.get(_url(req)).get_data(as_text=True)
    assert "2026 annual" in page and "Completed" in page and "Filed as Dkt. 310." in page
    assert "Mark 2027 annual completed" in page


def test_an_occurrence_is_completed_once(client, auth, db, duty):
    req = duty["req"]
    first = _open(db, req)
    auth.login("officer@example.test")
    data = {"occurrence_id": first.id, "completed_on": "2025-12-15"}
    assert auth.post(f"{_url(req)}/occurrences", data).status_code == 303
    r = auth.post(f"{_url(req)}/occurrences", data)
    assert r.status_code == 303
    assert "2026 annual was already completed on 2025-12-15" in client.get(r.headers["Location"]).get_data(as_text=True)
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Occurrence)) == 2


def test_a_completion_date_is_required(client, auth, db, duty):
    req = duty["req"]
    auth.login("officer@example.test")
    r = auth.post(f"{_url(req)}/occurrences", {"occurrence_id": _open(db, req).id, "completed_on": ""})
    assert "Enter the date it was completed." in client.get(r.headers["Location"]).get_data(as_text=True)
    assert _open(db, req).sequence == 1


def test_who_may_complete(client, auth, db, duty):
    req, occurrence_id = duty["req"], _open(db, duty["req"]).id
    data = {"occurrence_id": occurrence_id, "completed_on": "2025-12-15"}
    for role, status in (("monitor", 403), ("committee", 403), ("officer_b", 404)):
        auth.login(f"{role.replace('_', '-')}@example.test")
        assert auth.post(f"{_url(req)}/occurrences", data).status_code == status, role
        auth.logout()
    # An occurrence of another requirement (here: another agency's) is 404 through this one.
    other = make_requirement(duty["b"], code="¶ 1", cadence_months=12, due_date=date(2026, 1, 1))
    db.session.flush()
    foreign = occurrences.start(other, date(2026, 1, 1))
    db.session.commit()
    auth.login("officer@example.test")
    assert auth.post(f"{_url(req)}/occurrences", {"occurrence_id": foreign.id,
                                                  "completed_on": "2025-12-15"}).status_code == 404
    assert _open(db, req).sequence == 1


def test_overdue_applies_to_the_open_occurrence_whatever_the_status(client, auth, db, duty):
    req = duty["req"]
    req_service.set_status(req, "implemented", "", req.row_version, actor=duty["users"]["officer"])
    db.session.commit()
    assert req.is_open  # implemented, but a recurring duty's open round still binds
    with time_machine.travel(date(2026, 2, 1)):
        auth.login("officer@example.test")
        page = client.get(_url(req)).get_data(as_text=True)
        assert "<strong>(overdue)</strong>" in page
        overdue = db.session.execute(sa.select(Requirement.code).where(
            Requirement.due_date < date(2026, 2, 1), Requirement.is_open).order_by(Requirement.sort_key)).scalars()
        assert overdue.all() == ["¶ 88", "¶ 89"]   # ¶ 89 is a one-off still not started


def test_evidence_belongs_to_the_open_occurrence(db, duty):
    req, officer = duty["req"], duty["users"]["officer"]
    first = _open(db, req)
    link = evidence_service.add_link(req, "https://example.org/report-2026", {"title": "2026 report",
                                                                               "visibility": "shareable"},
                                     actor=officer)
    assert link.occurrence_id == first.id
    _done, following = occurrences.complete(req, first.id, date(2025, 12, 20), "", actor=officer)
    second = evidence_service.add_link(req, "https://example.org/report-2027", {"title": "2027 report",
                                                                                 "visibility": "shareable"},
                                       actor=officer)
    assert second.occurrence_id == following.id
    revised = evidence_service.add_link(req, "https://example.org/report-2026b", {"title": "2026 report, revised",
                                                                                  "visibility": "shareable"},
                                        actor=officer, supersedes=link)
    assert revised.occurrence_id == first.id      # a new version stays with its round
    counts = {o.label: n for o, n in occurrences.history(req)}
    assert counts == {"2027 annual": 1, "2026 annual": 1}
    once = evidence_service.add_link(duty["once"], "https://example.org/x", {"title": "x", "visibility": "shareable"},
                                     actor=officer)
    assert once.occurrence_id is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(Evidence)) == 4


def test_moving_the_due_date_moves_the_open_occurrence(db, duty):
    req, officer = duty["req"], duty["users"]["officer"]
    req_service.set_due_date(req, date(2026, 3, 1), "Extension granted (Dkt. 400)", req.row_version, actor=officer)
    occurrence = _open(db, req)
    assert (occurrence.due_date, occurrence.label) == (date(2026, 3, 1), "2026 annual")
    with pytest.raises(ValidationFailed, match="always has a next due date"):
        req_service.set_due_date(req, None, "No date", req.row_version, actor=officer)
    _done, following = occurrences.complete(req, occurrence.id, date(2026, 2, 27), "", actor=officer)
    assert following.due_date == date(2027, 3, 1)     # one interval after the round it follows


def test_a_moved_effective_date_moves_the_first_occurrence_until_one_is_completed(db, duty):
    req, officer, instrument = duty["req"], duty["users"]["officer"], duty["a"].primary_instrument
    values = {name: getattr(instrument, name) for name in decree.INSTRUMENT_FIELDS}
    decree.update_instrument(instrument, {**values, "effective_date": date(2025, 3, 1)}, actor=officer)
    assert (_open(db, req).due_date, req.due_date) == (date(2026, 3, 1), date(2026, 3, 1))
    assert duty["once"].due_date == date(2025, 5, 30)
    occurrences.complete(req, _open(db, req).id, date(2026, 2, 20), "", actor=officer)
    decree.update_instrument(instrument, {**values, "effective_date": date(2025, 6, 1)}, actor=officer)
    assert (_open(db, req).due_date, req.due_date) == (date(2027, 3, 1), date(2027, 3, 1))  # under way: kept


def test_catalog_cadences_use_the_same_model(db):
    module = make_module("data", "Data", 2)
    make_recommendation("DATA-009", module=module, cadence="quarterly", cadence_note="Quarterly public report")
    make_recommendation("DATA-010", module=module, cadence="annual", deadline_amount=180, deadline_unit="days")
    agency = make_agency(slug="agency-c", effective_date=date(2025, 1, 1))
    agencies.adopt(agency, ["data"])
    reqs = {r.code: r for r in db.session.execute(sa.select(Requirement).where(Requirement.agency_id == agency.id))
            .scalars()}
    quarterly, annual = reqs["DATA-009"], reqs["DATA-010"]
    assert (quarterly.cadence_months, quarterly.cadence_text, quarterly.due_date) == (
        3, "Quarterly public report", date(2025, 4, 1))
    assert (annual.cadence_months, annual.due_date) == (12, date(2025, 6, 30))   # first due at its typical deadline
    assert _open(db, quarterly).label == "Apr 2025 quarterly"
    assert _open(db, annual).label == "2025 annual"


def test_a_one_off_requirement_has_no_occurrences(client, auth, db, duty):
    auth.login("officer@example.test")
    page = client.get(_url(duty["once"])).get_data(as_text=True)
    assert 'id="occurrences"' not in page
    with pytest.raises(ValidationFailed):
        occurrences.complete(duty["once"], None, date(2025, 1, 2), "", actor=duty["users"]["officer"])
