"""The requirement board, the requirement page and inline edits (issue 3, items 1-3 and 6).

Dates are computed relative to today (UTC, as the app computes due marks) so the overdue and
due-within-30-days marks stay right whatever day the suite runs.
"""
import re
from datetime import date, datetime, timedelta

import pytest
import sqlalchemy as sa

from tests.factories import make_agency, make_module, make_recommendation, make_requirement, make_user
from tracker.models import (
    AuditEvent,
    Comment,
    DeadlineChange,
    Evidence,
    EvidenceReview,
    Requirement,
    StatusChange,
    utcnow,
)

HTMX_ROW = {"HX-Request": "true"}
HTMX_BOARD = {"HX-Request": "true", "HX-Target": "board"}


def _today():
    return utcnow().date()


def _count(db, model, *where):
    return db.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


def _audits(db, action=None):
    where = [AuditEvent.action == action] if action else []
    return _count(db, AuditEvent, *where)


def _row(html, req_id):
    match = re.search(rf'<tr id="req-{req_id}">.*?</tr>', html, re.S)
    assert match, f"no row for requirement {req_id}"
    return match.group(0)


def _section(html, module_key):
    match = re.search(rf'<section aria-labelledby="module-{module_key}">.*?</section>', html, re.S)
    return match.group(0) if match else None


def _req_url(agency, req, action=""):
    return f"/agencies/{agency.slug}/requirements/{req.id}" + (f"/{action}" if action else "")


@pytest.fixture
def world(db):
    """Agency A with two modules, staff in every role, a few requirements; agency B next door."""
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    data = make_module("data", "Data Collection", 2)
    a = make_agency(slug="agency-a", name="Harbor City PD")
    b = make_agency(slug="agency-b", name="Other Town PD")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "officer2": make_user("officer2@example.test", role="officer", agency=a, name="Oscar Second"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "officer_b": make_user("officer-b@example.test", role="officer", agency=b, name="Bea Elsewhere"),
        "admin": make_user("admin@example.test", is_admin=True),
    }
    reqs = {
        "crisis": make_requirement(a, module=cit, code="CIT-001", title="Crisis line staffing",
                                   summary="Staff the crisis line around the clock.",
                                   citation_text="Decree ¶ 131(a)"),
        "training": make_requirement(a, module=cit, code="CIT-002", title="Forty-hour training",
                                     summary="Train every officer.", citation_text="Decree ¶ 140",
                                     status="in_progress", owner_id=users["officer"].id),
        "data": make_requirement(a, module=data, code="DAT-001", title="Publish use-of-force data",
                                 summary="Quarterly reports.", citation_text="Decree ¶ 257"),
    }
    req_b = make_requirement(b, module=cit, code="CIT-001", title="B's own requirement")
    db.session.commit()
    return {"a": a, "b": b, "cit": cit, "data": data, "users": users, "reqs": reqs, "req_b": req_b}


def _login(auth, world, role="officer"):
    auth.login(world["users"][role].email)


# ---------------------------------------------------------------------------------------------
# Board
# ---------------------------------------------------------------------------------------------

def test_board_groups_rows_by_module_with_all_columns(client, auth, db, world):
    reqs = world["reqs"]
    today = _today()
    reqs["crisis"].due_date = today + timedelta(days=90)
    reqs["crisis"].updated_at = datetime(2025, 3, 4, 12, 0)
    db.session.add(Evidence(requirement_id=reqs["crisis"].id, kind="link", title="Roster", url="https://example.org/r"))
    db.session.commit()
    _login(auth, world)
    r = client.get("/agencies/agency-a")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<html" in html

    cit, data = _section(html, "cit"), _section(html, "data")
    assert cit and data
    assert "Crisis Intervention Teams" in cit and "Data Collection" in data
    assert html.index('id="module-cit"') < html.index('id="module-data"')  # module position order
    assert f'id="req-{reqs["crisis"].id}"' in cit and f'id="req-{reqs["training"].id}"' in cit
    assert f'id="req-{reqs["data"].id}"' in data and f'id="req-{reqs["data"].id}"' not in cit

    row = _row(html, reqs["crisis"].id)
    assert "CIT-001" in row
    assert "Crisis line staffing" in row
    assert "Decree ¶ 131(a)" not in row  # citations are on the requirement page; the row keeps to one line
    assert "Not started" in row
    assert (today + timedelta(days=90)).strftime("%b %-d, %Y") in row
    assert "overdue" not in row and "due within 30 days" not in row
    assert "1 item" in row and "1 submitted" in row
    assert "Mar 4, 2025" in row  # last change
    assert f'href="/agencies/agency-a/requirements/{reqs["crisis"].id}"' in row

    training = _row(html, reqs["training"].id)
    assert "In progress" in training
    assert "<td>Olive Officer</td>" in training  # owner
    assert "None" in training  # no evidence
    assert f'hx-get="/agencies/agency-a/requirements/{reqs["training"].id}/row?edit=1"' in training  # officer edits

    # Another agency's requirement never appears.
    assert "B&#39;s own requirement" not in html and "B's own requirement" not in html


def test_board_owner_is_plain_text_for_read_only_roles(client, auth, db, world):
    _login(auth, world, "committee")
    html = client.get("/agencies/agency-a").get_data(as_text=True)
    row = _row(html, world["reqs"]["training"].id)
    assert "Olive Officer" in row
    assert "<form" not in row and "edit=1" not in row  # no edit forms or edit button for the committee
    assert "<form" not in _row(html, world["reqs"]["crisis"].id)
    assert "Unassigned" in _row(html, world["reqs"]["crisis"].id)


def test_row_fragment_in_view_and_edit_mode(client, auth, db, world):
    a, req = world["a"], world["reqs"]["training"]
    url = _req_url(a, req, "row")
    _login(auth, world)
    view = client.get(url, headers=HTMX_ROW)
    assert view.status_code == 200
    html = view.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="req-{req.id}"') and "<form" not in html
    assert re.search(r'<a [^>]*hx-get="[^"]*/row\?edit=1"[^>]*data-tracker-focus', html)  # after Cancel: Edit
    edit = client.get(url + "?edit=1", headers=HTMX_ROW).get_data(as_text=True)
    # One form for status, note, owner and due date, with one Save; focus goes to its first field.
    assert edit.count("<form") == 1 and f'action="{_req_url(a, req, "row")}"' in edit
    assert edit.count('type="submit"') == 1
    assert re.search(r'<select[^>]*id="status-\d+"[^>]*data-tracker-focus', edit)
    for name in ("status", "note", "owner_id", "due_date", "reason"):
        assert f'name="{name}"' in edit, name
    assert 'name="row_version" value="1"' in edit
    assert '<option value="in_progress" selected>' in edit
    assert f'<option value="{world["users"]["officer"].id}" selected>Olive Officer</option>' in edit
    # Without JavaScript the row URL leads to the requirement page.
    plain = client.get(url + "?edit=1")
    assert plain.status_code == 303 and plain.headers["Location"].endswith(_req_url(a, req))
    # Read-only roles get the view mode even when they ask for the edit mode.
    auth.logout()
    _login(auth, world, "committee")
    html = client.get(url + "?edit=1", headers=HTMX_ROW).get_data(as_text=True)
    assert "<form" not in html and "Olive Officer" in html


def test_board_marks_overdue_and_due_soon_for_open_requirements(client, auth, db, world):
    reqs = world["reqs"]
    today = _today()
    reqs["crisis"].due_date = today - timedelta(days=3)          # open, overdue
    reqs["training"].due_date = today + timedelta(days=10)       # open, due soon
    reqs["data"].due_date = today - timedelta(days=3)            # overdue but implemented: no mark
    reqs["data"].status = "implemented"
    edge = make_requirement(world["a"], module=world["cit"], code="CIT-003", title="Edge",
                            due_date=today + timedelta(days=30))
    later = make_requirement(world["a"], module=world["cit"], code="CIT-004", title="Later",
                             due_date=today + timedelta(days=31))
    db.session.commit()
    _login(auth, world)
    html = client.get("/agencies/agency-a").get_data(as_text=True)
    crisis = _row(html, reqs["crisis"].id)
    assert "tracker-due--overdue" in crisis and "(overdue)" in crisis
    soon = _row(html, reqs["training"].id)
    assert "tracker-due--soon" in soon and "(due within 30 days)" in soon
    done = _row(html, reqs["data"].id)
    assert "tracker-due--" not in done and "overdue" not in done
    assert "(due within 30 days)" in _row(html, edge.id)
    assert "tracker-due--" not in _row(html, later.id)


def test_board_shows_status_counts_per_module(client, auth, db, world):
    a, cit = world["a"], world["cit"]
    make_requirement(a, module=cit, code="CIT-010", status="implemented")
    make_requirement(a, module=cit, code="CIT-011", status="implemented")
    make_requirement(a, module=cit, code="CIT-012", status="not_applicable")
    db.session.commit()
    _login(auth, world)
    html = client.get("/agencies/agency-a").get_data(as_text=True)

    def counts(section):
        stats = re.search(r'<ul class="tracker-stats"[^>]*requirements by status">(.*?)</ul>', section, re.S).group(1)
        return {key: int(n) for key, n in re.findall(r'tracker-badge--(\w+)">[^<]+</span> (\d+)', stats)}

    assert counts(_section(html, "cit")) == {"not_started": 1, "in_progress": 1, "implemented": 2,
                                              "not_applicable": 1}
    assert counts(_section(html, "data")) == {"not_started": 1, "in_progress": 0, "implemented": 0,
                                               "not_applicable": 0}


def test_board_evidence_count_and_review_states_count_current_versions_only(client, auth, db, world):
    req = world["reqs"]["crisis"]
    old = Evidence(requirement_id=req.id, kind="link", title="v1", url="https://example.org/1", superseded=True,
                   review_state="returned")
    db.session.add(old)
    db.session.flush()
    db.session.add_all([
        Evidence(requirement_id=req.id, kind="link", title="v2", url="https://example.org/2", supersedes_id=old.id),
        Evidence(requirement_id=req.id, kind="link", title="Other", url="https://example.org/3",
                 review_state="accepted"),
    ])
    db.session.commit()
    _login(auth, world)
    row = _row(client.get("/agencies/agency-a").get_data(as_text=True), req.id)
    assert "2 items" in row
    assert "1 submitted" in row and "1 accepted" in row
    assert "returned" not in row  # the superseded, returned version is history, not the current state


# ---------------------------------------------------------------------------------------------
# Filters
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def filter_world(db, world):
    a, cit, data = world["a"], world["cit"], world["data"]
    today = _today()
    reqs = world["reqs"]
    reqs["crisis"].due_date = today - timedelta(days=5)                       # overdue
    reqs["training"].due_date = today + timedelta(days=7)                     # upcoming
    extra = {
        "done_overdue": make_requirement(a, module=data, code="DAT-002", title="Already done",
                                         status="implemented", due_date=today - timedelta(days=5)),
        "far": make_requirement(a, module=data, code="DAT-003", title="Far away", due_date=today + timedelta(days=200),
                                owner_id=world["users"]["officer2"].id),
        "percent": make_requirement(a, module=cit, code="CIT-020", title="Reach 100% coverage"),
        "underscore": make_requirement(a, module=cit, code="CIT-021", title="Field snake_case name"),
        "abc": make_requirement(a, module=cit, code="CIT-022", title="abc plain"),
        "due_today": make_requirement(a, module=cit, code="CIT-023", title="Due today", due_date=today),
        "due_30": make_requirement(a, module=cit, code="CIT-024", title="Due in 30", due_date=today + timedelta(30)),
        "due_31": make_requirement(a, module=cit, code="CIT-025", title="Due in 31", due_date=today + timedelta(31)),
    }
    db.session.commit()
    return {**reqs, **extra}


def _listed(html, reqs):
    return {name for name, r in reqs.items() if f'id="req-{r.id}"' in html}


FILTER_CASES = [
    ("module=data", {"data", "done_overdue", "far"}),
    ("status=in_progress", {"training"}),
    ("status=implemented", {"done_overdue"}),
    ("owner=none", {"crisis", "data", "done_overdue", "percent", "underscore", "abc", "due_today", "due_30",
                    "due_31"}),
    ("due=overdue", {"crisis"}),                    # not the implemented one, not the one due today
    ("due=upcoming", {"training", "due_today", "due_30"}),
    ("due=none", {"data", "percent", "underscore", "abc"}),
    ("q=CRISIS%20line", {"crisis"}),                # title, case-insensitive
    ("q=quarterly", {"data"}),                      # summary
    ("q=%C2%B6%20140", {"training"}),               # citation text "Decree ¶ 140"
    ("q=%25", {"percent"}),                         # '%' is a literal, not a wildcard
    ("q=_", {"underscore"}),                        # '_' is a literal, not a wildcard
    ("q=a_c", set()),                               # would match "abc" if '_' were a wildcard
    ("module=cit&status=not_started&owner=none", {"crisis", "percent", "underscore", "abc", "due_today", "due_30",
                                                  "due_31"}),
    ("q=nothing-matches-this", set()),
]


def test_board_filters(client, auth, world, filter_world):
    _login(auth, world)
    for query, expected in FILTER_CASES:
        r = client.get(f"/agencies/agency-a?{query}")
        assert r.status_code == 200, query
        html = r.get_data(as_text=True)
        assert _listed(html, filter_world) == expected, query
        assert "Unknown filter value" not in html, query
        if not expected:
            assert "No requirement matches these filters." in html, query


def test_board_filter_by_owner_id(client, auth, world, filter_world):
    _login(auth, world)
    officer, officer2 = world["users"]["officer"], world["users"]["officer2"]
    assert _listed(client.get(f"/agencies/agency-a?owner={officer.id}").get_data(as_text=True),
                   filter_world) == {"training"}
    assert _listed(client.get(f"/agencies/agency-a?owner={officer2.id}").get_data(as_text=True),
                   filter_world) == {"far"}


def test_board_filters_are_kept_in_the_form(client, auth, world, filter_world):
    """Filters live in the URL: the page reflects them, so a bookmarked URL restores the view."""
    _login(auth, world)
    html = client.get("/agencies/agency-a?module=cit&status=in_progress&owner=none&due=overdue&q=abc%22x"
                      ).get_data(as_text=True)
    assert '<option value="cit" selected>' in html
    assert '<option value="in_progress" selected>' in html
    assert '<option value="none" selected>' in html
    assert '<option value="overdue" selected>' in html
    assert 'value="abc&#34;x"' in html or 'value="abc&quot;x"' in html  # escaped, not injected
    assert 'method="get"' in html  # works without JavaScript


def test_board_search_is_case_insensitive_beyond_ascii(client, auth, db, world):
    make_requirement(world["a"], module=world["cit"], code="CIT-030", title="Évaluation annuelle")
    db.session.commit()
    _login(auth, world)
    html = client.get("/agencies/agency-a?q=%C3%A9valuation").get_data(as_text=True)  # "évaluation"
    assert "Évaluation annuelle" in html


UNKNOWN_FILTERS = [
    ("module=nope", "module"),
    ("status=done", "status"),
    ("due=someday", "due"),
    ("owner=abc", "owner"),
    ("owner=999999", "owner"),
    ("module=%3Cscript%3E&status=%27%3B--", "module, status"),
    ("owner=1.5", "owner"),
]


def test_unknown_filter_values_are_ignored_with_a_notice(client, auth, world):
    _login(auth, world)
    for query, ignored in UNKNOWN_FILTERS:
        r = client.get(f"/agencies/agency-a?{query}")
        assert r.status_code == 200, query
        html = r.get_data(as_text=True)
        assert f"Unknown filter value ignored: {ignored}." in html, query
        # The bad filter is dropped: every requirement is listed.
        assert _listed(html, world["reqs"]) == {"crisis", "training", "data"}, query
        assert "<script>" not in html


def test_owner_filter_ignores_a_member_who_cannot_own(client, auth, world):
    """Only the agency's officers are owners; a monitor's id is not a filter value."""
    _login(auth, world)
    html = client.get(f"/agencies/agency-a?owner={world['users']['monitor'].id}").get_data(as_text=True)
    assert "Unknown filter value ignored: owner." in html


def test_unknown_filter_notice_reaches_htmx_fragment_out_of_band(client, auth, world):
    _login(auth, world)
    r = client.get("/agencies/agency-a?status=bogus", headers=HTMX_BOARD)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<html" not in html
    assert 'id="flash"' in html and "hx-swap-oob" in html
    assert "Unknown filter value ignored: status." in html


def test_very_long_search_is_truncated_not_an_error(client, auth, world):
    _login(auth, world)
    r = client.get("/agencies/agency-a?q=" + "x" * 5000)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert 'name="q" type="search" value="' + "x" * 200 + '">' in html  # kept to its first 200 characters
    assert "0 requirements match the filters." in html


def test_htmx_board_request_returns_the_fragment_and_plain_get_the_page(client, auth, world):
    _login(auth, world)
    fragment = client.get("/agencies/agency-a?module=data", headers=HTMX_BOARD)
    assert fragment.status_code == 200
    body = fragment.get_data(as_text=True)
    assert "<html" not in body and "<body" not in body
    assert _listed(body, world["reqs"]) == {"data"}
    assert "requirement match the filters" in body  # "1 requirement match the filters."

    page = client.get("/agencies/agency-a?module=data")
    body = page.get_data(as_text=True)
    assert body.lstrip().lower().startswith("<!doctype html>") and "<html" in body
    assert 'id="board"' in body and 'hx-get="/agencies/agency-a"' in body
    assert _listed(body, world["reqs"]) == {"data"}

    # Boosted navigation (whole-page swap) still gets the whole page.
    boosted = client.get("/agencies/agency-a", headers={**HTMX_BOARD, "HX-Boosted": "true"})
    assert "<html" in boosted.get_data(as_text=True)


def test_board_query_count_is_constant(client, auth, db, world, count_queries, no_page_cache):
    a, cit, data = world["a"], world["cit"], world["data"]
    officers = [world["users"]["officer"].id, world["users"]["officer2"].id, None]
    today = _today()

    def add(n, start):
        new = [Requirement(agency_id=a.id, instrument_id=a.primary_instrument.id,
                           module_id=(cit if i % 2 else data).id, code=f"BULK-{start + i:04d}",
                           title=f"Bulk {start + i}", owner_id=officers[i % 3],
                           due_date=today + timedelta(days=(i % 60) - 20),
                           status=("not_started", "in_progress", "implemented")[i % 3])
               for i in range(n)]
        db.session.add_all(new)
        db.session.flush()
        db.session.add_all([Evidence(requirement_id=r.id, kind="link", title="e", url="https://example.org/e",
                                     review_state=("submitted", "accepted", "returned")[i % 3])
                            for i, r in enumerate(new) if i % 2])
        db.session.commit()

    add(7, 0)  # 10 with the three of the fixture
    _login(auth, world)
    client.get("/agencies/agency-a")  # warm up (first-request work)

    def measure(query=""):
        with count_queries() as n:
            r = client.get(f"/agencies/agency-a{query}")
        assert r.status_code == 200
        return n.count, r.get_data(as_text=True)

    small, html = measure()
    assert html.count('<tr id="req-') == 10
    small_filtered, _ = measure("?q=bulk&status=in_progress")
    small_fragment = None
    with count_queries() as n:
        client.get("/agencies/agency-a", headers=HTMX_BOARD)
    small_fragment = n.count

    add(190, 100)
    large, html = measure()
    assert html.count('<tr id="req-') == 100  # the first page of 100
    large_filtered, _ = measure("?q=bulk&status=in_progress")
    assert measure("?per_page=200")[1].count('<tr id="req-') == 200
    assert measure("?per_page=200")[0] == small
    assert measure("?page=2&sort=due&dir=desc")[0] == small
    with count_queries() as n:
        client.get("/agencies/agency-a", headers=HTMX_BOARD)
    assert n.count == small_fragment
    assert large == small, f"board ran {small} queries at 10 requirements and {large} at 200"
    assert large_filtered == small_filtered


# ---------------------------------------------------------------------------------------------
# Inline status edits
# ---------------------------------------------------------------------------------------------

def test_inline_status_change_with_htmx_returns_row_and_oob_flash(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "status"), {"status": "in_progress", "note": "Kick-off held",
                                               "row_version": "1"}, headers=HTMX_ROW)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert html.lstrip().startswith(f'<tr id="req-{req.id}"')
    assert "<html" not in html
    assert re.search(r'<div id="flash"[^>]*hx-swap-oob="innerHTML"', html)
    assert "CIT-001: status is now In progress." in html
    row = _row(html, req.id)
    assert 'tracker-badge--in_progress">In progress' in row
    # The row's edit mode now carries the new version.
    edit = client.get(_req_url(a, req, "row") + "?edit=1", headers=HTMX_ROW).get_data(as_text=True)
    assert 'name="row_version" value="2"' in edit

    req = db.session.get(Requirement, req.id)
    assert req.status == "in_progress" and req.row_version == 2
    change = db.session.execute(sa.select(StatusChange).where(StatusChange.requirement_id == req.id)).scalar_one()
    assert (change.old_status, change.new_status, change.note) == ("not_started", "in_progress", "Kick-off held")
    assert change.actor_id == world["users"]["officer"].id
    assert _audits(db) == before + 1
    event = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert event.action == "requirement.status" and event.object_id == str(req.id)
    assert event.agency_id == a.id and event.before == {"status": "not_started"}


def test_status_change_without_htmx_redirects_with_303(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    r = auth.post(_req_url(a, req, "status"), {"status": "implemented", "note": "", "row_version": "1"})
    assert r.status_code == 303
    assert r.headers["Location"].endswith(_req_url(a, req))
    page = client.get(r.headers["Location"]).get_data(as_text=True)
    assert "CIT-001: status is now Implemented." in page
    assert db.session.get(Requirement, req.id).status == "implemented"


def test_status_change_returns_to_a_local_next_only(client, auth, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    cases = [("https://evil.example/phish", None), ("//evil.example/phish", None), ("/\\evil.example", None),
             ("/agencies/agency-a?status=in_progress", "/agencies/agency-a?status=in_progress")]
    for version, (next_url, expected) in enumerate(cases, start=1):
        status = ("not_started", "in_progress")[version % 2]
        r = auth.post(_req_url(a, req, "status"), {"status": status, "row_version": str(version), "next": next_url})
        assert r.status_code == 303, next_url
        location = r.headers["Location"]
        assert location.endswith(expected or _req_url(a, req)), next_url
        assert "evil" not in location


def test_not_applicable_requires_a_justification(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before_audit = _audits(db)
    for note, htmx in [("", False), ("   ", False), ("", True), (" \n ", True)]:
        r = auth.post(_req_url(a, req, "status"), {"status": "not_applicable", "note": note, "row_version": "1"},
                      headers=HTMX_ROW if htmx else {})
        assert r.status_code == 422
        html = r.get_data(as_text=True)
        if htmx:
            row = _row(html, req.id)
            # The message sits next to the note field, linked to it.
            assert re.search(rf'<span class="usa-error-message" id="note-{req.id}-error">A justification is required.',
                             row)
            assert f'aria-describedby="note-{req.id}-error"' in row
            assert '<option value="not_applicable" selected>' in row  # the user's choice is kept
        else:
            assert re.search(r'id="note-error"[^>]*>A justification is required.', html)  # next to the field
            assert '<option selected value="not_applicable">' in html
    req = db.session.get(Requirement, req.id)
    assert req.status == "not_started" and req.row_version == 1
    assert _count(db, StatusChange) == 0
    assert _audits(db) == before_audit


def test_not_applicable_with_a_justification_is_saved(client, auth, db, world):
    a, req = world["a"], world["reqs"]["data"]
    _login(auth, world)
    r = auth.post(_req_url(a, req, "status"), {"status": "not_applicable", "note": "No such unit in this city",
                                               "row_version": "1"})
    assert r.status_code == 303
    change = db.session.execute(sa.select(StatusChange)).scalar_one()
    assert change.new_status == "not_applicable" and change.note == "No such unit in this city"


def test_unknown_status_value_is_refused(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "status"), {"status": "done", "row_version": "1"})
    assert r.status_code == 422
    assert 'id="status-error" role="alert">Not a valid choice.</span>' in r.get_data(as_text=True)
    req = db.session.get(Requirement, req.id)
    assert (req.status, req.row_version) == ("not_started", 1)
    assert _count(db, StatusChange) == 0 and _audits(db) == before


def test_saving_the_same_status_without_a_note_writes_nothing(client, auth, db, world):
    a, req = world["a"], world["reqs"]["training"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "status"), {"status": "in_progress", "row_version": "1"})
    assert r.status_code == 303
    assert db.session.get(Requirement, req.id).row_version == 1
    assert _count(db, StatusChange) == 0 and _audits(db) == before


def test_missing_or_tampered_row_version_changes_nothing(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    for row_version, status in [("", 422), ("abc", 422), ("99", 409), ("0", 409)]:
        r = auth.post(_req_url(a, req, "status"), {"status": "implemented", "row_version": row_version})
        assert r.status_code == status, row_version
    r = auth.post(_req_url(a, req, "status"), {"status": "implemented"})  # no row_version at all
    assert r.status_code == 422
    assert "The form is missing its version; reload the page." in r.get_data(as_text=True)
    req = db.session.get(Requirement, req.id)
    assert req.status == "not_started" and req.row_version == 1
    assert _count(db, StatusChange) == 0 and _audits(db) == before


# ---------------------------------------------------------------------------------------------
# Owner, due date, notes
# ---------------------------------------------------------------------------------------------

def test_assign_and_unassign_owner(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    officer2 = world["users"]["officer2"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "owner"), {"owner_id": str(officer2.id), "row_version": "1"}, headers=HTMX_ROW)
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "<td>Oscar Second</td>" in _row(html, req.id)
    assert "CIT-001: owner is now Oscar Second." in html and "hx-swap-oob" in html
    req = db.session.get(Requirement, req.id)
    assert req.owner_id == officer2.id and req.row_version == 2
    assert _audits(db) == before + 1
    event = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert event.action == "requirement.owner" and event.after == {"owner": officer2.email}

    r = auth.post(_req_url(a, req, "owner"), {"owner_id": "0", "row_version": "2"})
    assert r.status_code == 303
    req = db.session.get(Requirement, req.id)
    assert req.owner_id is None and req.row_version == 3
    assert _audits(db) == before + 2


def test_owner_choices_are_the_agency_officers(client, auth, world):
    _login(auth, world)
    row = client.get(_req_url(world["a"], world["reqs"]["crisis"], "row") + "?edit=1",
                     headers=HTMX_ROW).get_data(as_text=True)
    assert 'name="owner_id"' in row
    assert "Olive Officer" in row and "Oscar Second" in row
    assert "Mona Monitor" not in row and "Cole Committee" not in row and "Bea Elsewhere" not in row


def test_owner_must_be_an_officer_of_the_agency(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    for who, htmx in [("missing", False), ("missing", True), ("officer_b", False), ("monitor", True),
                      ("committee", False), ("admin", False)]:
        owner_id = 999999 if who == "missing" else world["users"][who].id
        r = auth.post(_req_url(a, req, "owner"), {"owner_id": str(owner_id), "row_version": "1"},
                      headers=HTMX_ROW if htmx else {})
        assert r.status_code == 422, who
        html = r.get_data(as_text=True)
        assert "The owner must be a compliance officer of this agency." in html, who
        if htmx:
            assert f'id="owner-{req.id}-error"' in _row(html, req.id)
    req = db.session.get(Requirement, req.id)
    assert req.owner_id is None and req.row_version == 1
    assert _audits(db) == before


def test_owner_that_is_not_a_number_is_refused(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "owner"), {"owner_id": "abc", "row_version": "1"})
    assert r.status_code == 422
    assert 'id="owner_id-error" role="alert">Invalid Choice: could not coerce.</span>' in r.get_data(as_text=True)
    req = db.session.get(Requirement, req.id)
    assert (req.owner_id, req.row_version) == (None, 1) and _audits(db) == before


def test_due_date_first_set_needs_no_reason_then_moves_need_one(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    start = _audits(db)
    r = auth.post(_req_url(a, req, "due-date"), {"due_date": "2026-06-30", "reason": "", "row_version": "1"})
    assert r.status_code == 303
    req = db.session.get(Requirement, req.id)
    assert req.due_date == date(2026, 6, 30) and req.row_version == 2 and req.due_date_derived is False
    assert _audits(db) == start + 1

    # Moving a set date without a reason: 422, nothing changed.
    r = auth.post(_req_url(a, req, "due-date"), {"due_date": "2026-09-30", "reason": "  ", "row_version": "2"})
    assert r.status_code == 422
    assert "A reason is required." in r.get_data(as_text=True)
    req = db.session.get(Requirement, req.id)
    assert req.due_date == date(2026, 6, 30) and req.row_version == 2
    assert _count(db, DeadlineChange, DeadlineChange.old_date.is_not(None)) == 0
    assert _audits(db) == start + 1

    # With a reason: kept as a deadline change with old, new and reason.
    r = auth.post(_req_url(a, req, "due-date"), {"due_date": "2026-09-30", "reason": "Court order of May 2, 2026",
                                                 "row_version": "2"})
    assert r.status_code == 303
    req = db.session.get(Requirement, req.id)
    assert req.due_date == date(2026, 9, 30) and req.row_version == 3
    move = db.session.execute(sa.select(DeadlineChange).where(DeadlineChange.old_date.is_not(None))).scalar_one()
    assert (move.old_date, move.new_date, move.reason) == (date(2026, 6, 30), date(2026, 9, 30),
                                                           "Court order of May 2, 2026")
    assert move.actor_id == world["users"]["officer"].id
    assert _audits(db) == start + 2
    event = db.session.execute(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).scalar_one()
    assert event.action == "requirement.due_date"
    assert event.before == {"due_date": "2026-06-30"}
    assert event.after == {"due_date": "2026-09-30", "reason": "Court order of May 2, 2026"}

    # Removing a set date is also a move: it needs a reason.
    r = auth.post(_req_url(a, req, "due-date"), {"due_date": "", "reason": "", "row_version": "3"})
    assert r.status_code == 422
    assert db.session.get(Requirement, req.id).due_date == date(2026, 9, 30)


def test_due_date_in_a_wrong_format_is_refused_next_to_the_field(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    for value in ["31/12/2026", "2026-13-01", "tomorrow", "2026-02-30"]:
        r = auth.post(_req_url(a, req, "due-date"), {"due_date": value, "reason": "x", "row_version": "1"})
        assert r.status_code == 422, value
        html = r.get_data(as_text=True)
        assert re.search(r'<span class="usa-error-message" id="due_date-error" role="alert">Not a valid date',
                         html), value
        assert f'value="{value}"' in html  # the user's input is kept
    req = db.session.get(Requirement, req.id)
    assert req.due_date is None and req.row_version == 1
    assert _count(db, DeadlineChange) == 0 and _audits(db) == before


def test_notes_edit(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "notes"), {"notes": "Met with dispatch <b>Tuesday</b>.", "row_version": "1"})
    assert r.status_code == 303
    req = db.session.get(Requirement, req.id)
    assert req.notes == "Met with dispatch <b>Tuesday</b>." and req.row_version == 2
    assert _audits(db, "requirement.notes") == 1 and _audits(db) == before + 1
    page = client.get(_req_url(a, req)).get_data(as_text=True)
    assert "Met with dispatch &lt;b&gt;Tuesday&lt;/b&gt;." in page  # escaped

    # Saving the same notes again is a no-op.
    auth.post(_req_url(a, req, "notes"), {"notes": "Met with dispatch <b>Tuesday</b>.", "row_version": "2"})
    assert db.session.get(Requirement, req.id).row_version == 2 and _audits(db) == before + 1


def test_notes_too_long_are_refused(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "notes"), {"notes": "x" * 20001, "row_version": "1"})
    assert r.status_code == 422
    assert ('id="notes-error" role="alert">Field cannot be longer than 20000 characters.</span>'
            in r.get_data(as_text=True))
    req = db.session.get(Requirement, req.id)
    assert (req.notes, req.row_version) == ("", 1) and _audits(db) == before


EDITS = {
    "status": ({"status": "in_progress", "note": "started"}, "requirement.status", StatusChange),
    "owner": ({"owner_id": "{officer2}"}, "requirement.owner", None),
    "due-date": ({"due_date": "2027-01-15", "reason": ""}, "requirement.due_date", DeadlineChange),
    "notes": ({"notes": "new notes"}, "requirement.notes", None),
}


@pytest.mark.parametrize("action", list(EDITS))
def test_each_successful_change_writes_history_and_exactly_one_audit_event(client, auth, db, world, action):
    a, req = world["a"], world["reqs"]["crisis"]
    data, audit_action, history = EDITS[action]
    data = {k: v.format(officer2=world["users"]["officer2"].id) for k, v in data.items()}
    _login(auth, world)
    before = _audits(db)
    r = auth.post(_req_url(a, req, action), {**data, "row_version": "1"})
    assert r.status_code == 303
    assert _audits(db) == before + 1
    assert _audits(db, audit_action) == 1
    event = db.session.execute(sa.select(AuditEvent).where(AuditEvent.action == audit_action)).scalar_one()
    assert event.actor_id == world["users"]["officer"].id and event.agency_id == a.id
    if history is not None:
        assert _count(db, history, history.requirement_id == req.id) == 1
    req = db.session.get(Requirement, req.id)
    assert req.row_version == 2
    # The board's "last change" moves to now.
    assert req.updated_at.date() == utcnow().date()


@pytest.mark.parametrize("role", ["monitor", "committee"])
def test_monitor_and_committee_cannot_edit(client, auth, db, world, role):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world, role)
    before = _audits(db)
    for action, (data, _, _) in EDITS.items():
        data = {k: v.format(officer2=world["users"]["officer2"].id) for k, v in data.items()}
        r = auth.post(_req_url(a, req, action), {**data, "row_version": "1"})
        assert r.status_code == 403, action
        r = auth.post(_req_url(a, req, action), {**data, "row_version": "1"}, headers=HTMX_ROW)
        assert r.status_code == 403, action
    req = db.session.get(Requirement, req.id)
    assert (req.status, req.owner_id, req.due_date, req.notes, req.row_version) == ("not_started", None, None, "", 1)
    assert _count(db, StatusChange) == 0 and _count(db, DeadlineChange) == 0
    assert _audits(db) == before


def test_admin_may_edit(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world, "admin")
    r = auth.post(_req_url(a, req, "status"), {"status": "in_progress", "row_version": "1"})
    assert r.status_code == 303
    assert db.session.get(Requirement, req.id).status == "in_progress"


def test_another_agencys_officer_gets_404(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world, "officer_b")
    assert client.get("/agencies/agency-a").status_code == 404
    assert client.get(_req_url(a, req)).status_code == 404
    for action in ("status", "owner", "due-date", "notes", "comments"):
        assert auth.post(_req_url(a, req, action), {"status": "implemented", "row_version": "1",
                                                    "body": "hi"}).status_code == 404
    # Own slug with the other agency's requirement id: 404 as well.
    assert client.get(f"/agencies/agency-b/requirements/{req.id}").status_code == 404
    assert db.session.get(Requirement, req.id).status == "not_started"


def test_mass_assignment_extra_fields_are_ignored(client, auth, db, world):
    a, b, req = world["a"], world["b"], world["reqs"]["crisis"]
    officer2 = world["users"]["officer2"]
    _login(auth, world)
    extra = {"agency_id": str(b.id), "code": "HACKED", "title": "Hacked", "summary": "x", "module_id": "999",
             "recommendation_id": "1", "created_by": "1", "created_at": "2000-01-01", "id": "424242",
             "updated_at": "2000-01-01", "citation_text": "forged", "terminated_at": "2020-01-01"}
    # The status form cannot set the owner, due date or notes.
    r = auth.post(_req_url(a, req, "status"), {"status": "in_progress", "row_version": "1", **extra,
                                               "owner_id": str(officer2.id), "due_date": "2027-01-01",
                                               "notes": "sneaky"})
    assert r.status_code == 303
    # The owner form cannot set the status.
    r = auth.post(_req_url(a, req, "owner"), {"owner_id": str(officer2.id), "row_version": "2", **extra,
                                              "status": "implemented", "note": "sneaky"})
    assert r.status_code == 303
    # The notes form cannot set the due date or the version.
    r = auth.post(_req_url(a, req, "notes"), {"notes": "fine", "row_version": "3", "due_date": "2027-01-01",
                                              **extra})
    assert r.status_code == 303
    req = db.session.get(Requirement, req.id)
    assert req.agency_id == a.id and req.code == "CIT-001" and req.title == "Crisis line staffing"
    assert req.citation_text == "Decree ¶ 131(a)" and req.module_id == world["cit"].id
    assert req.recommendation_id is None and req.terminated_at is None
    assert req.status == "in_progress" and req.owner_id == officer2.id and req.notes == "fine"
    assert req.due_date is None and req.row_version == 4
    assert req.updated_at.year != 2000
    assert db.session.get(Requirement, 424242) is None
    assert _count(db, Requirement, Requirement.agency_id == b.id) == 1
    assert db.session.get(Requirement, world["req_b"].id).title == "B's own requirement"
    change = db.session.execute(sa.select(StatusChange)).scalar_one()
    assert change.actor_id == world["users"]["officer"].id


# ---------------------------------------------------------------------------------------------
# Requirement page, timeline, comments
# ---------------------------------------------------------------------------------------------

def test_requirement_page_shows_details_citations_and_merged_timeline(client, auth, db, world):
    a = world["a"]
    users = world["users"]
    rec = make_recommendation("CIT-REC", world["cit"], title="Catalog rec")
    req = make_requirement(a, module=world["cit"], code="CIT-100", title="Mobile crisis teams",
                           summary="Field co-responder teams in every district.", recommendation_id=rec.id,
                           owner_id=users["officer"].id, due_date=date(2027, 2, 1), notes="Budget pending.",
                           status="in_progress")
    base = datetime(2026, 1, 1, 9, 0)
    evidence = Evidence(requirement_id=req.id, kind="link", title="Team roster", url="https://example.org/roster",
                        uploaded_by_id=users["officer"].id, created_at=base + timedelta(hours=3))
    db.session.add(evidence)
    db.session.flush()
    db.session.add_all([
        StatusChange(requirement_id=req.id, old_status="not_started", new_status="in_progress", note="Kick-off",
                     actor_id=users["officer"].id, created_at=base + timedelta(hours=1)),
        DeadlineChange(requirement_id=req.id, old_date=date(2026, 12, 1), new_date=date(2027, 2, 1),
                       reason="Court order 12", actor_id=users["officer"].id, created_at=base + timedelta(hours=2)),
        EvidenceReview(evidence_id=evidence.id, reviewer_id=users["monitor"].id, decision="returned",
                       comment="Roster is missing names", created_at=base + timedelta(hours=4)),
        Comment(requirement_id=req.id, author_id=users["monitor"].id, body="Please add the roster.",
                created_at=base + timedelta(hours=5)),
    ])
    db.session.commit()
    _login(auth, world)
    r = client.get(_req_url(a, req))
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    assert "CIT-100: Mobile crisis teams" in html
    assert "Field co-responder teams in every district." in html
    assert "¶ 1" in html  # catalog citation
    assert 'tracker-badge--in_progress">In progress' in html
    assert "Owner: Olive Officer" in html
    assert "Due: Feb 1, 2027" in html
    assert "Budget pending." in html
    assert "Team roster" in html

    history = html[html.index('id="history"'):]
    entries = re.findall(r"<li>(.*?)</li>", history, re.S)
    kinds = []
    for entry in entries:
        if "commented" in entry:
            kinds.append("comment")
        elif "returned" in entry:
            kinds.append("review")
        elif "added evidence" in entry:
            kinds.append("evidence")
        elif "due date" in entry:
            kinds.append("deadline")
        elif "status" in entry:
            kinds.append("status")
    assert kinds == ["comment", "review", "evidence", "deadline", "status"], kinds  # newest first
    assert "Dec 1, 2026 → Feb 1, 2027 — Court order 12" in history
    assert "Not started → In progress — “Kick-off”" in history
    assert "Roster is missing names" in history
    assert "Mona Monitor" in history


def test_requirement_page_for_the_committee_only_comments(client, auth, db, world):
    # Issue 14: committee members comment on requirements; status, owner, notes and evidence stay read-only.
    a, req = world["a"], world["reqs"]["crisis"]
    req.notes = "Shared notes"
    db.session.commit()
    _login(auth, world, "committee")
    html = client.get(_req_url(a, req)).get_data(as_text=True)
    assert "Shared notes" in html
    assert "/status" not in html and "/owner" not in html and "/notes" not in html
    assert "/comments" in html
    assert "Add evidence" not in html


def test_requirement_without_citation(client, auth, db, world):
    a = world["a"]
    req = make_requirement(a, module=world["cit"], code="CIT-200", title="No cite")
    db.session.commit()
    _login(auth, world)
    html = client.get(_req_url(a, req)).get_data(as_text=True)
    assert "No citation recorded." in html
    assert "No changes recorded yet." in html


@pytest.mark.parametrize("role", ["officer", "monitor"])
def test_officer_and_monitor_comment(client, auth, db, world, role):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world, role)
    before = _audits(db)
    r = auth.post(_req_url(a, req, "comments"), {"body": "Where is the <i>roster</i>?"})
    assert r.status_code == 303
    assert r.headers["Location"].endswith(_req_url(a, req) + "#comments")
    comment = db.session.execute(sa.select(Comment)).scalar_one()
    assert comment.author_id == world["users"][role].id and comment.body == "Where is the <i>roster</i>?"
    assert _audits(db, "comment.create") == 1 and _audits(db) == before + 1
    # Visible to the agency's members, including the committee (read-only).
    for viewer in ("officer", "monitor", "committee"):
        auth.logout()
        _login(auth, world, viewer)
        html = client.get(_req_url(a, req)).get_data(as_text=True)
        comments = html[html.index('id="comments"'):html.index('id="history"')]
        assert "Where is the &lt;i&gt;roster&lt;/i&gt;?" in comments
        assert world["users"][role].name in comments


def test_committee_comments_but_does_not_edit(client, auth, db, world):
    # Issue 14: advisory-committee members comment on requirements; they still change nothing else.
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world, "committee")
    assert auth.post(_req_url(a, req, "notes"), {"notes": "x", "row_version": req.row_version}).status_code == 403
    r = auth.post(_req_url(a, req, "comments"), {"body": "Me too"})
    assert r.status_code == 303
    assert _count(db, Comment) == 1


def test_empty_or_too_long_comment_is_refused(client, auth, db, world):
    a, req = world["a"], world["reqs"]["crisis"]
    _login(auth, world, "monitor")
    before = _audits(db)
    for body, message in [("", "Write a comment first."), ("   \n ", "Write a comment first."),
                          ("x" * 4001, "Field cannot be longer than 4000 characters.")]:
        r = auth.post(_req_url(a, req, "comments"), {"body": body})
        assert r.status_code == 422
        html = r.get_data(as_text=True)
        assert re.search(rf'id="body-error"[^>]*>{re.escape(message)}<', html), body  # next to the field
    assert _count(db, Comment) == 0 and _audits(db) == before


# ---------------------------------------------------------------------------------------------
# Error placement on the no-JS requirement page
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("action, data, field, message", [
    ("status", {"status": "not_applicable", "note": ""}, "note", "A justification is required."),
    ("owner", {"owner_id": "999999"}, "owner_id", "The owner must be a compliance officer of this agency."),
    ("due-date", {"due_date": "2027-01-01", "reason": ""}, "reason", "A reason is required."),
])
def test_no_js_service_errors_are_shown_next_to_the_field(client, auth, db, world, action, data, field, message):
    a, req = world["a"], world["reqs"]["crisis"]
    req.due_date = date(2026, 6, 30)
    db.session.commit()
    version = str(req.row_version)
    _login(auth, world)
    r = auth.post(_req_url(a, req, action), {**data, "row_version": version})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert re.search(rf'id="{field}-error"[^>]*>{re.escape(message)}', html), f"no error next to {field}"
