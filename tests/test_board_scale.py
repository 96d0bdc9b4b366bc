"""The board at 120-1,000 requirements (issue 17): pages, sorting, jump links, one Save per row, bulk edit,
and the markup the keyboard and screen-reader behaviour relies on (focus marks, permanent live regions)."""
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker.models import (
    AuditEvent,
    DeadlineChange,
    Notification,
    OutboxMessage,
    Requirement,
    StatusChange,
    utcnow,
)

HTMX_ROW = {"HX-Request": "true"}
HTMX_BOARD = {"HX-Request": "true", "HX-Target": "board"}


def _listed(html):
    return [int(i) for i in re.findall(r'<tr id="req-(\d+)">', html)]


def _audits(db, action):
    return db.session.scalar(sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.action == action))


@pytest.fixture
def big(db):
    """Agency A with 120 requirements over two modules (ids as a decree writes them), two officers, a monitor."""
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    a = make_agency(slug="agency-a", name="Harbor City PD")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "officer2": make_user("officer2@example.test", role="officer", agency=a, name="Oscar Second"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
    }
    today = utcnow().date()
    reqs = []
    for i in range(120):
        reqs.append(make_requirement(
            a, module=cit if i < 70 else data, code=f"¶ {i + 1}", title=f"Duty {i + 1}",
            due_date=today + timedelta(days=(i % 50) - 10) if i % 7 else None,
            owner_id=users["officer"].id if i % 3 == 0 else None,
            status=("not_started", "in_progress", "implemented")[i % 3]))
    db.session.commit()
    return {"a": a, "cit": cit, "data": data, "users": users, "reqs": reqs}


def _login(auth, email="officer@example.test"):
    auth.login(email)


def test_board_pages_100_rows_by_default_and_the_page_size_is_in_the_url(client, auth, big):
    _login(auth)
    html = client.get("/agencies/agency-a").get_data(as_text=True)
    assert len(_listed(html)) == 100
    assert "120 requirements. Page 1 of 2: rows 1 to 100." in html
    assert 'rel="next"' in html and "page=2" in html
    second = client.get("/agencies/agency-a?page=2").get_data(as_text=True)
    assert len(_listed(second)) == 20 and "rows 101 to 120" in second
    assert set(_listed(html)).isdisjoint(_listed(second))
    assert len(_listed(client.get("/agencies/agency-a?per_page=25").get_data(as_text=True))) == 25
    # A page past the end shows the last page; a page size that is not offered is ignored with a notice.
    assert _listed(client.get("/agencies/agency-a?page=9").get_data(as_text=True)) == _listed(second)
    odd = client.get("/agencies/agency-a?per_page=100000").get_data(as_text=True)
    assert "Unknown filter value ignored: per_page." in odd and len(_listed(odd)) == 100


def test_ids_sort_in_decree_order_and_columns_sort_both_ways(client, auth, big):
    _login(auth)
    reqs = {r.id: r for r in big["reqs"]}
    html = client.get("/agencies/agency-a?module=cit&per_page=200").get_data(as_text=True)
    codes = [reqs[i].code for i in _listed(html)]
    assert codes[:11] == [f"¶ {n}" for n in range(1, 12)]  # ¶ 2 before ¶ 10, not text order
    assert 'aria-sort="ascending"' in html

    html = client.get("/agencies/agency-a?module=cit&per_page=200&sort=due").get_data(as_text=True)
    dues = [reqs[i].due_date for i in _listed(html)]
    dated = [d for d in dues if d is not None]
    assert dated == sorted(dated) and dues[len(dated):] == [None] * (len(dues) - len(dated))  # no date: last
    html = client.get("/agencies/agency-a?module=cit&per_page=200&sort=due&dir=desc").get_data(as_text=True)
    dated = [reqs[i].due_date for i in _listed(html) if reqs[i].due_date]
    assert dated == sorted(dated, reverse=True)
    assert re.search(r'aria-sort="descending"><a [^>]*href="/agencies/agency-a\?module=cit&amp;sort=due&amp;'
                     r'per_page=200"', html)  # the sorted heading's link reverses the order
    html = client.get("/agencies/agency-a?per_page=200&sort=owner").get_data(as_text=True)
    owned = [reqs[i].owner_id is not None for i in _listed(html) if reqs[i].module_id == big["cit"].id]
    assert owned == sorted(owned, reverse=True)  # owned first, unassigned last


def test_jump_links_count_rows_and_overdue_and_point_at_the_right_page(client, auth, big):
    _login(auth)
    html = client.get("/agencies/agency-a?per_page=50").get_data(as_text=True)
    nav = re.search(r'<nav class="tracker-jump"[^>]*>(.*?)</nav>', html, re.S).group(1)
    today = utcnow().date()
    overdue_cit = sum(1 for r in big["reqs"][:70] if r.due_date and r.due_date < today and r.status != "implemented")
    assert 'href="#module-cit">Crisis Intervention Teams</a>\n    70, ' in nav
    assert f"{overdue_cit} overdue" in nav and "#warning" in nav  # an icon and words, not colour alone
    # Data Collection starts on row 71: page 2 of 50-row pages.
    assert 'href="/agencies/agency-a?page=2&amp;per_page=50#module-data"' in nav


def test_board_query_count_is_bounded_at_1000_requirements(client, auth, db, big, count_queries, no_page_cache):
    _login(auth)
    client.get("/agencies/agency-a")
    with count_queries() as n:
        small = client.get("/agencies/agency-a").get_data(as_text=True)
    at_120 = n.count
    a = big["a"]
    db.session.add_all([Requirement(agency_id=a.id, instrument_id=a.primary_instrument.id, module_id=big["data"].id,
                                    code=f"¶ {i}", title=f"More {i}", due_date=utcnow().date())
                        for i in range(200, 1080)])
    db.session.commit()
    with count_queries() as n:
        large = client.get("/agencies/agency-a").get_data(as_text=True)
    assert n.count == at_120
    assert len(_listed(large)) == len(_listed(small)) == 100
    assert "1000 requirements. Page 1 of 10" in large
    assert len(large) < 1.3 * len(small)


def test_count_and_flash_are_permanent_live_regions(client, auth, big):
    _login(auth)
    page = client.get("/agencies/agency-a").get_data(as_text=True)
    # The count sits outside the swapped #board region, so it is the same element after every swap.
    assert page.index('id="board-count"') < page.index('<div id="board">')
    assert re.search(r'<p id="board-count" class="tracker-count" role="status">', page)
    assert 'id="board-loading" class="tracker-loading" role="status"' in page
    assert re.search(r'id="board-loading"[^>]*></span>', page)  # silent until a request runs
    fragment = client.get("/agencies/agency-a?status=implemented", headers=HTMX_BOARD).get_data(as_text=True)
    assert '<p id="board-count" hx-swap-oob="innerHTML">40 requirements match the filters.' in fragment
    assert 'role="status"' not in fragment.split('id="board-count"')[1][:60]  # content only, not a new region
    r = client.get("/agencies/agency-a?status=bogus", headers=HTMX_BOARD).get_data(as_text=True)
    assert '<div id="flash" role="status" aria-live="polite" hx-swap-oob="innerHTML">' in r


def _row_url(req):
    return f"/agencies/agency-a/requirements/{req.id}/row"


def test_one_save_sets_status_owner_and_due_date(client, auth, db, big):
    req = big["reqs"][1]  # in progress, unassigned, with a due date
    _login(auth)
    officer2 = big["users"]["officer2"]
    r = auth.post(_row_url(req), {"status": "implemented", "note": "Done", "owner_id": str(officer2.id),
                                  "due_date": "2030-01-31", "reason": "Court order (Dkt. 99)",
                                  "row_version": str(req.row_version)}, headers=HTMX_ROW)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="req-{req.id}">')
    assert '<span class="tracker-saved">Saved</span>' in html
    assert re.search(r'hx-get="[^"]*/row\?edit=1"[^>]*data-tracker-focus', html)  # focus back on Edit
    assert "¶ 2: saved (status, owner, due date)." in html and 'hx-swap-oob="innerHTML"' in html
    db.session.expire_all()
    req = db.session.get(Requirement, req.id)
    assert (req.status, req.owner_id, req.due_date.isoformat()) == ("implemented", officer2.id, "2030-01-31")
    assert [_audits(db, f"requirement.{k}") for k in ("status", "owner", "due_date")] == [1, 1, 1]
    change = db.session.execute(sa.select(DeadlineChange)).scalar_one()
    assert change.reason == "Court order (Dkt. 99)"


def test_row_save_refuses_bad_input_with_focus_on_the_first_invalid_field(client, auth, db, big):
    req = big["reqs"][1]
    _login(auth)
    r = auth.post(_row_url(req), {"status": "not_applicable", "note": "", "owner_id": str(big["users"]["officer2"].id),
                                  "due_date": "2031-01-01", "reason": "", "row_version": str(req.row_version)},
                  headers=HTMX_ROW)
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert re.search(r'id="note-\d+"[^>]*aria-invalid="true"[^>]*data-tracker-focus', html)
    assert re.search(r'id="reason-\d+"[^>]*aria-invalid="true"', html)
    assert f'id="note-{req.id}-error">A justification is required' in html
    assert f'id="reason-{req.id}-error">A reason is required to move a due date.' in html
    # The owner change is kept in the form, not lost, and nothing was saved.
    assert f'<option value="{big["users"]["officer2"].id}" selected>' in html
    assert 'value="2031-01-01"' in html
    db.session.expire_all()
    assert db.session.get(Requirement, req.id).owner_id is None
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StatusChange)) == 0


def test_row_conflict_shows_both_values_beside_the_form(client, auth, db, big):
    req = big["reqs"][1]
    version = str(req.row_version)
    _login(auth)
    assert auth.post(_row_url(req), {"status": "implemented", "owner_id": "0", "due_date": req.due_date.isoformat(),
                                     "row_version": version}, headers=HTMX_ROW).status_code == 200
    r = auth.post(_row_url(req), {"status": "not_started", "note": "Reopened", "owner_id": "0",
                                  "due_date": req.due_date.isoformat(), "row_version": version}, headers=HTMX_ROW)
    assert r.status_code == 409
    row = r.get_data(as_text=True)
    alert = re.search(r'<div class="usa-alert usa-alert--warning[^>]*>.*?</div></div>', row, re.S).group(0)
    assert 'role="alert"' in alert and "data-tracker-focus" in alert and 'tabindex="-1"' in alert
    assert "status is now <strong>Implemented</strong>" in alert and "You chose status <strong>Not started" in alert
    assert alert.index("usa-alert") < row.index("<form")  # beside the form, before its fields
    assert 'value="Reopened"' in row and '<option value="not_started" selected>' in row


def _bulk(auth, data):
    return auth.post("/agencies/agency-a/requirements/bulk", data)


def test_bulk_edit_of_50_rows_applies_49_and_names_the_one_changed_meanwhile(client, auth, db, big):
    chosen = big["reqs"][:50]
    versions = [f"{r.id}:{r.row_version}" for r in chosen]
    _login(auth)
    # Someone else changes the 50th after the page was shown.
    late = chosen[49]
    assert auth.post(_row_url(late), {"status": "in_progress", "note": "meanwhile", "owner_id": "0",
                                      "due_date": late.due_date.isoformat() if late.due_date else "",
                                      "row_version": str(late.row_version)}, headers=HTMX_ROW).status_code == 200
    before = _audits(db, "requirement.owner")
    officer2 = big["users"]["officer2"]
    r = _bulk(auth, {"change": "owner", "owner_id": str(officer2.id), "ids": versions, "as_of": "0"})
    assert r.status_code == 303
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "Owner set for 49 requirements" in page
    assert f"Not changed, because someone else changed it after the page was shown: {late.code}." in page
    db.session.expire_all()
    owners = {r.id: db.session.get(Requirement, r.id).owner_id for r in chosen}
    assert [r.id for r in chosen if owners[r.id] == officer2.id] == [r.id for r in chosen[:49]]
    assert owners[late.id] is None
    assert _audits(db, "requirement.owner") == before + 49  # one event per requirement


def test_a_bulk_change_sends_each_person_one_message_listing_every_requirement(client, auth, db, big):
    """Issue 15 follow-up: 30 requirements given to a colleague are one notification (and one e-mail) naming the
    30, not 30 e-mails; a bulk change of one requirement reads like a single change."""
    officer2 = big["users"]["officer2"]
    chosen = [r for r in big["reqs"] if r.owner_id is None][:31]
    _login(auth)
    r = _bulk(auth, {"change": "owner", "owner_id": str(officer2.id), "as_of": "0",
                     "ids": [f"{q.id}:{q.row_version}" for q in chosen[:30]]})
    assert r.status_code == 303
    notes = db.session.execute(sa.select(Notification).where(Notification.user_id == officer2.id)).scalars().all()
    assert len(notes) == 1
    assert notes[0].subject == "[Harbor City PD] you are the owner of 30 requirements"
    assert notes[0].body.splitlines() == [f"Olive Officer made you the owner of {q.code}: {q.title}."
                                          for q in chosen[:30]]
    assert notes[0].link == "/agencies/agency-a" and notes[0].category == "assigned"
    mails = db.session.execute(sa.select(OutboxMessage).where(OutboxMessage.user_id == officer2.id)).scalars().all()
    assert len(mails) == (1 if notes[0].delivery == "immediate" else 0)

    last = chosen[30]
    assert _bulk(auth, {"change": "owner", "owner_id": str(officer2.id), "as_of": "0",
                        "ids": [f"{last.id}:{last.row_version}"]}).status_code == 303
    newest = db.session.execute(sa.select(Notification).where(Notification.user_id == officer2.id)
                                .order_by(Notification.id.desc()).limit(1)).scalar_one()
    assert newest.subject == f"[Harbor City PD] {last.code}: you are the owner"
    assert newest.link == f"/agencies/agency-a/requirements/{last.id}"


def test_bulk_status_needs_one_note_for_not_applicable_and_due_dates_one_reason(client, auth, db, big):
    chosen = [f"{r.id}:{r.row_version}" for r in big["reqs"][1:4]]
    _login(auth)
    r = _bulk(auth, {"change": "status", "status": "not_applicable", "note": "", "ids": chosen, "as_of": "0"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert 'class="usa-alert usa-alert--error usa-alert--slim tracker-error-summary" role="alert"' in html
    assert '<a class="usa-link" href="#bulk-note">A justification is required for Not applicable.</a>' in html
    assert html.count(" checked>") == 3  # the ticked rows stay ticked
    r = _bulk(auth, {"change": "due", "due_date": "2030-06-30", "reason": "", "ids": chosen, "as_of": "0"})
    assert r.status_code == 422 and 'href="#bulk-reason"' in r.get_data(as_text=True)
    assert _bulk(auth, {"change": "owner", "owner_id": "0", "as_of": "0"}).status_code == 422  # nothing ticked
    assert db.session.scalar(sa.select(sa.func.count()).select_from(StatusChange)) == 0

    r = _bulk(auth, {"change": "due", "due_date": "2030-06-30", "reason": "Order (Dkt. 7)", "ids": chosen,
                     "as_of": "0"})
    assert r.status_code == 303
    assert _audits(db, "requirement.due_date") == 3
    db.session.expire_all()
    assert {db.session.get(Requirement, r.id).due_date.isoformat() for r in big["reqs"][1:4]} == {"2030-06-30"}


def test_bulk_select_all_matching_covers_every_page_and_skips_rows_changed_since(client, auth, db, big):
    _login(auth)
    not_started = [r.id for r in big["reqs"] if r.status == "not_started"]
    page = client.get("/agencies/agency-a?status=not_started").get_data(as_text=True)
    as_of = re.search(r'name="as_of" value="(\d+)"', page).group(1)
    assert 'form="bulk-form"' in page and "Select all 40 requirements matching the filters" in page
    assert '<input type="hidden" name="filter_status" value="not_started" form="bulk-form">' in page
    target = big["reqs"][3]  # not started
    auth.post(_row_url(target), {"status": "not_started", "note": "a note meanwhile", "owner_id": "0",
                                 "due_date": target.due_date.isoformat() if target.due_date else "",
                                 "row_version": str(target.row_version)}, headers=HTMX_ROW)
    r = _bulk(auth, {"change": "status", "status": "in_progress", "note": "Started together", "all": "1",
                     "filter_status": "not_started", "as_of": as_of})
    assert r.status_code == 303
    db.session.expire_all()
    statuses = [db.session.get(Requirement, i).status for i in not_started]
    assert statuses.count("in_progress") == 39 and statuses.count("not_started") == 1
    assert db.session.get(Requirement, target.id).status == "not_started"


def test_bulk_is_for_officers_of_the_agency_only(client, auth, db, big):
    other = make_agency(slug="agency-b", name="Other")
    make_user("elsewhere@example.test", role="officer", agency=other)
    db.session.commit()
    ids = [f"{big['reqs'][0].id}:{big['reqs'][0].row_version}"]
    _login(auth, "monitor@example.test")
    assert _bulk(auth, {"change": "owner", "owner_id": "0", "ids": ids}).status_code == 403
    auth.logout()
    _login(auth, "elsewhere@example.test")
    assert _bulk(auth, {"change": "owner", "owner_id": "0", "ids": ids}).status_code == 404
    # Another agency's requirement ids in agency B's bulk form are not found there, so nothing changes.
    r = auth.post("/agencies/agency-b/requirements/bulk", {"change": "status", "status": "implemented",
                                                           "ids": ids, "as_of": "0"})
    assert r.status_code == 303
    db.session.expire_all()
    assert db.session.get(Requirement, big["reqs"][0].id).status == "not_started"


def test_cached_rows_follow_evidence_findings_and_the_date(client, auth, db, big, no_page_cache):
    """Rendered rows are reused across page renders; whatever a row shows is part of its key."""
    from tracker.models import Evidence

    req = big["reqs"][0]
    _login(auth)
    first = client.get("/agencies/agency-a").get_data(as_text=True)
    row = re.search(rf'<tr id="req-{req.id}">.*?</tr>', first, re.S).group(0)
    assert "None" in row  # no evidence yet
    db.session.add(Evidence(requirement_id=req.id, kind="link", title="Roster", url="https://example.org/r"))
    db.session.commit()  # no new row_version: the evidence count alone changes the row
    again = client.get("/agencies/agency-a").get_data(as_text=True)
    row = re.search(rf'<tr id="req-{req.id}">.*?</tr>', again, re.S).group(0)
    assert "1 item" in row and "1 submitted" in row
    # The committee sees the same row without the checkbox and Edit: the right to edit is in the key.
    auth.logout()
    make_user("committee@example.test", role="committee", agency=big["a"])
    db.session.commit()
    _login(auth, "committee@example.test")
    row = re.search(rf'<tr id="req-{req.id}">.*?</tr>', client.get("/agencies/agency-a").get_data(as_text=True),
                    re.S).group(0)
    assert "1 item" in row and "checkbox" not in row and "edit=1" not in row
