"""No lost updates (issue 3, item 4): two officers edit the same requirement from two browsers.

The second save, made against the version both loaded, answers 409 with the first user's values shown
and the second user's input kept; nothing is overwritten. Runs on SQLite and, with TEST_DATABASE_URL,
on PostgreSQL. The service tests make the ORM's version check fire at flush (StaleDataError) and check
it becomes a Conflict.
"""
import re
from datetime import date

import pytest
import sqlalchemy as sa

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import AuditEvent, DeadlineChange, Requirement, StatusChange
from tracker.services import requirements as req_service

HTMX_ROW = {"HX-Request": "true"}


@pytest.fixture
def two(app, db):
    module = make_module("cit", "Crisis Intervention Teams", 1)
    agency = make_agency(slug="agency-a")
    users = {
        "first": make_user("first@example.test", role="officer", agency=agency, name="Fay First"),
        "second": make_user("second@example.test", role="officer", agency=agency, name="Sam Second"),
        "third": make_user("third@example.test", role="officer", agency=agency, name="Tia Third"),
    }
    req = make_requirement(agency, module=module, code="CIT-001", title="Crisis line staffing")
    db.session.commit()
    first, second = Auth(app.test_client()), Auth(app.test_client())
    first.login("first@example.test")
    second.login("second@example.test")
    page = f"/agencies/agency-a/requirements/{req.id}"
    return {"agency": agency, "req": req, "users": users, "first": first, "second": second, "page": page}


def _loaded_version(auth, page):
    html = auth.client.get(page).get_data(as_text=True)
    versions = set(re.findall(r'name="row_version" type="hidden" value="(\d+)"', html))
    assert len(versions) == 1, versions  # every edit form carries the same row version
    return versions.pop()


def _count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _audits(db, action):
    return _count(db, AuditEvent, AuditEvent.action == action)


def _both_load(two):
    v1, v2 = _loaded_version(two["first"], two["page"]), _loaded_version(two["second"], two["page"])
    assert v1 == v2
    return v1


# --- status --------------------------------------------------------------------------------------

def test_status_conflict_keeps_the_second_users_input(db, two):
    version = _both_load(two)
    url = two["page"] + "/status"
    r = two["first"].post(url, {"status": "in_progress", "note": "Started by Fay", "row_version": version})
    assert r.status_code == 303
    r = two["second"].post(url, {"status": "implemented", "note": "Sam thinks it is done", "row_version": version})
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "Someone else saved this requirement first" in html
    assert "status <strong>In progress</strong>" in html                   # the current value ...
    assert '<option selected value="implemented">Implemented</option>' in html  # ... beside the user's own
    assert "Sam thinks it is done</textarea>" in html
    assert 'name="row_version" type="hidden" value="2"' in html  # saving again applies the input knowingly

    req = db.session.get(Requirement, two["req"].id)
    assert req.status == "in_progress" and req.row_version == 2
    changes = db.session.execute(sa.select(StatusChange)).scalars().all()
    assert [(c.new_status, c.note) for c in changes] == [("in_progress", "Started by Fay")]
    assert _audits(db, "requirement.status") == 1

    # Save again from the conflict page: now it applies, on top of the first user's change.
    r = two["second"].post(url, {"status": "implemented", "note": "Sam thinks it is done", "row_version": "2"})
    assert r.status_code == 303
    req = db.session.get(Requirement, two["req"].id)
    assert req.status == "implemented" and req.row_version == 3
    last = db.session.execute(sa.select(StatusChange).order_by(StatusChange.id.desc()).limit(1)).scalar_one()
    assert (last.old_status, last.new_status) == ("in_progress", "implemented")


def test_status_conflict_with_htmx_returns_the_row(db, two):
    version = _both_load(two)
    url = two["page"] + "/status"
    assert two["first"].post(url, {"status": "in_progress", "row_version": version},
                             headers=HTMX_ROW).status_code == 200
    r = two["second"].post(url, {"status": "not_applicable", "note": "Out of scope", "row_version": version},
                           headers=HTMX_ROW)
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    req_id = two["req"].id
    assert html.lstrip().startswith(f'<tr id="req-{req_id}"') and "<html" not in html
    row = re.search(rf'<tr id="req-{req_id}">.*?</tr>', html, re.S).group(0)
    assert "Changed by someone else while you edited: status is now <strong>In progress</strong>" in row
    assert 'tracker-badge--in_progress">In progress' in row
    assert '<option value="not_applicable" selected>' in row
    assert 'value="Out of scope"' in row
    assert 'name="row_version" value="2"' in row
    assert re.search(r'<div id="flash"[^>]*hx-swap-oob="innerHTML"', html) and "Someone else saved" in html
    assert db.session.get(Requirement, req_id).status == "in_progress"
    assert _count(db, StatusChange) == 1 and _audits(db, "requirement.status") == 1


def test_any_saved_edit_makes_older_forms_stale(db, two):
    """Fields differ (owner, then status) but the version is per row: the second save is still a conflict."""
    version = _both_load(two)
    third = two["users"]["third"]
    assert two["first"].post(two["page"] + "/owner", {"owner_id": str(third.id), "row_version": version}
                             ).status_code == 303
    r = two["second"].post(two["page"] + "/status", {"status": "implemented", "row_version": version})
    assert r.status_code == 409
    assert "owner <strong>Tia Third</strong>" in r.get_data(as_text=True)
    req = db.session.get(Requirement, two["req"].id)
    assert (req.status, req.owner_id, req.row_version) == ("not_started", third.id, 2)


# --- owner ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("htmx", [False, True], ids=["plain", "htmx"])
def test_owner_conflict(db, two, htmx):
    version = _both_load(two)
    url = two["page"] + "/owner"
    third, second = two["users"]["third"], two["users"]["second"]
    headers = HTMX_ROW if htmx else {}
    assert two["first"].post(url, {"owner_id": str(third.id), "row_version": version},
                             headers=headers).status_code == (200 if htmx else 303)
    r = two["second"].post(url, {"owner_id": str(second.id), "row_version": version}, headers=headers)
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "owner <strong>Tia Third</strong>" in html
    if htmx:
        assert f'<option value="{second.id}" selected>Sam Second</option>' in html
    else:
        assert f'<option selected value="{second.id}">Sam Second</option>' in html
    req = db.session.get(Requirement, two["req"].id)
    assert req.owner_id == third.id and req.row_version == 2
    assert _audits(db, "requirement.owner") == 1


# --- due date ------------------------------------------------------------------------------------

def test_due_date_conflict_when_both_move_a_set_date(db, two):
    two["req"].due_date = date(2026, 6, 30)
    db.session.commit()
    version = _both_load(two)
    url = two["page"] + "/due-date"
    assert two["first"].post(url, {"due_date": "2026-09-30", "reason": "Court order 12", "row_version": version}
                             ).status_code == 303
    r = two["second"].post(url, {"due_date": "2026-12-31", "reason": "Monitor agreed", "row_version": version})
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "due <strong>Sep 30, 2026</strong>" in html
    assert 'value="2026-12-31"' in html and "Monitor agreed</textarea>" in html
    req = db.session.get(Requirement, two["req"].id)
    assert req.due_date == date(2026, 9, 30) and req.row_version == int(version) + 1
    moves = db.session.execute(sa.select(DeadlineChange)).scalars().all()
    assert [(m.old_date, m.new_date, m.reason) for m in moves] == [(date(2026, 6, 30), date(2026, 9, 30),
                                                                      "Court order 12")]
    assert _audits(db, "requirement.due_date") == 1


def test_due_date_conflict_when_both_set_a_first_date(db, two):
    """Neither user saw a date, so neither gave a reason: the second one is told about the conflict (409),
    not asked for a reason (422) to move a date they never saw."""
    version = _both_load(two)
    url = two["page"] + "/due-date"
    assert two["first"].post(url, {"due_date": "2026-06-30", "reason": "", "row_version": version}
                             ).status_code == 303
    r = two["second"].post(url, {"due_date": "2026-07-31", "reason": "", "row_version": version})
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "due <strong>Jun 30, 2026</strong>" in html and 'value="2026-07-31"' in html
    req = db.session.get(Requirement, two["req"].id)
    assert req.due_date == date(2026, 6, 30) and req.row_version == 2
    assert _count(db, DeadlineChange) == 1 and _audits(db, "requirement.due_date") == 1


# --- notes ---------------------------------------------------------------------------------------

def test_notes_conflict_keeps_the_second_users_text(db, two):
    version = _both_load(two)
    url = two["page"] + "/notes"
    assert two["first"].post(url, {"notes": "Fay: met with dispatch.", "row_version": version}).status_code == 303
    r = two["second"].post(url, {"notes": "Sam: budget approved.", "row_version": version})
    assert r.status_code == 409
    html = r.get_data(as_text=True)
    assert "Someone else saved this requirement first" in html
    assert "Sam: budget approved.</textarea>" in html   # the user's own text, kept in the form ...
    assert "Fay: met with dispatch." in html            # ... beside the current notes
    req = db.session.get(Requirement, two["req"].id)
    assert req.notes == "Fay: met with dispatch." and req.row_version == 2
    assert _audits(db, "requirement.notes") == 1


# --- service level: the ORM's version check at flush ----------------------------------------------

EDITS = {
    "status": lambda req, v, actor: req_service.set_status(req, "implemented", "", v, actor=actor),
    "owner": lambda req, v, actor: req_service.set_owner(req, actor.id, v, actor=actor),
    "due_date": lambda req, v, actor: req_service.set_due_date(req, date(2027, 1, 1), "", v, actor=actor),
    "notes": lambda req, v, actor: req_service.set_notes(req, "mine", v, actor=actor),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_row_changed_behind_the_orm_in_the_same_transaction_becomes_conflict(db, two, edit):
    req, actor = two["req"], two["users"]["first"]
    assert req.row_version == 1 and actor.id  # both loaded before the change behind our back
    # Someone bumps the version behind the ORM's back; the loaded object still says 1.
    db.session.execute(sa.text("UPDATE requirement SET status = 'in_progress', row_version = row_version + 1 "
                               "WHERE id = :id"), {"id": req.id})
    with pytest.raises(req_service.Conflict):
        EDITS[edit](req, 1, actor)
    db.session.rollback()
    assert _count(db, StatusChange) == 0 and _count(db, DeadlineChange) == 0
    assert _count(db, AuditEvent, AuditEvent.action.like("requirement.%")) == 0


@pytest.mark.parametrize("edit", list(EDITS))
def test_concurrent_commit_between_read_and_write_becomes_conflict_with_current_values(db, two, edit):
    req_id, actor = two["req"].id, two["users"]["first"]
    session = db.session()
    session.expire_on_commit = False
    try:
        req = session.get(Requirement, req_id)
        assert req.row_version == 1 and req.owner is None and actor.id
        session.commit()  # end our read; the loaded values stay as they were read
        with db.engine.begin() as other:  # another request commits in between
            other.execute(sa.text("UPDATE requirement SET status = 'in_progress', notes = 'theirs', "
                                  "row_version = row_version + 1 WHERE id = :id"), {"id": req_id})
        with pytest.raises(req_service.Conflict) as exc:
            EDITS[edit](req, 1, actor)  # the form's version matches what we read: only the flush can tell
    finally:
        session.expire_on_commit = True
    db.session.rollback()  # the caller's job: services never roll back
    current = exc.value.requirement  # reloads with the values saved first
    assert current.id == req_id and current.row_version == 2
    assert current.status == "in_progress" and current.notes == "theirs"
    fresh = db.session.get(Requirement, req_id)
    assert (fresh.status, fresh.notes, fresh.owner_id, fresh.due_date) == ("in_progress", "theirs", None, None)
    assert _count(db, StatusChange) == 0 and _count(db, DeadlineChange) == 0
    assert _count(db, AuditEvent, AuditEvent.action.like("requirement.%")) == 0


def test_stale_form_version_is_conflict_before_any_write(db, two):
    req, actor = two["req"], two["users"]["first"]
    with pytest.raises(req_service.Conflict) as exc:
        req_service.set_notes(req, "x", "0", actor=actor)
    assert exc.value.requirement is req and "now version 1" in str(exc.value)
    assert not db.session.dirty and not db.session.new
