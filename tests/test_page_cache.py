"""The fragment cache of the board, dashboard, review queue, roll-up and CSV (tracker/cache.py).

A cached page must never show data older than the last change made through the app, never show one
viewer what their rights or scope would not, and never serve a request that writes.
"""
import re
from datetime import timedelta

import pytest
import sqlalchemy as sa

from tests.conftest import Auth
from tests.factories import make_agency, make_module, make_requirement, make_user
from tracker import cache
from tracker.cache import MISSING, FragmentCache


@pytest.fixture
def world(db):
    return build_world()


def build_world():
    """Two agencies with a requirement each; an officer, committee member and monitor of A, a monitor of B."""
    cit = make_module("cit", "Crisis Intervention Teams", 1)
    a = make_agency(slug="agency-a", name="Harbor City PD")
    b = make_agency(slug="agency-b", name="Other Town PD")
    users = {
        "officer": make_user("officer@example.test", role="officer", agency=a, name="Olive Officer"),
        "committee": make_user("committee@example.test", role="committee", agency=a, name="Cole Committee"),
        "monitor": make_user("monitor@example.test", role="monitor", agency=a, name="Mona Monitor"),
        "monitor_b": make_user("monitor-b@example.test", role="monitor", agency=b, name="Bo Monitor"),
        "admin": make_user("admin@example.test", is_admin=True),
    }
    req = make_requirement(a, module=cit, code="CIT-001", title="Crisis line staffing", citation_text="¶ 131")
    make_requirement(b, module=cit, code="CIT-001", title="Other town staffing", citation_text="¶ 9")
    return {"a": a, "b": b, "users": users, "req": req}


def _as(app, email):
    auth = Auth(app.test_client())
    auth.login(email)
    return auth


def _status(auth, req, status, version):
    r = auth.post(f"/agencies/agency-a/requirements/{req.id}/status",
                  {"status": status, "note": "", "row_version": str(version)})
    assert r.status_code == 303


def test_board_shows_a_change_at_once(app, world):
    officer = _as(app, "officer@example.test")
    committee = _as(app, "committee@example.test")
    assert "tracker-badge--not_started" in officer.client.get("/agencies/agency-a").get_data(as_text=True)
    assert "tracker-badge--not_started" in committee.client.get("/agencies/agency-a").get_data(as_text=True)
    _status(officer, world["req"], "implemented", 1)
    for viewer in (officer, committee):
        html = viewer.client.get("/agencies/agency-a").get_data(as_text=True)
        row = re.search(rf'<tr id="req-{world["req"].id}">.*?</tr>', html, re.S).group(0)
        assert "tracker-badge--implemented" in row and "tracker-badge--not_started" not in row


def test_a_repeated_view_is_served_from_the_cache(app, world, count_queries):
    officer = _as(app, "officer@example.test")
    with count_queries() as first:
        page1 = officer.client.get("/agencies/agency-a").get_data(as_text=True)
    hits = cache.store().hits
    with count_queries() as second:
        page2 = officer.client.get("/agencies/agency-a").get_data(as_text=True)
    assert cache.store().hits > hits
    assert second.count < first.count
    assert page1.split('<div id="board">')[1] == page2.split('<div id="board">')[1]


def test_renderings_are_not_shared_across_rights(app, world):
    officer = _as(app, "officer@example.test")
    committee = _as(app, "committee@example.test")
    edit = "Edit<span class=\"usa-sr-only\"> CIT-001</span>"
    assert edit in officer.client.get("/agencies/agency-a").get_data(as_text=True)
    assert edit not in committee.client.get("/agencies/agency-a").get_data(as_text=True)
    assert edit in officer.client.get("/agencies/agency-a").get_data(as_text=True)


def test_the_review_queue_is_not_shared_across_scopes(app, world):
    officer = _as(app, "officer@example.test")
    r = officer.post(f"/agencies/agency-a/requirements/{world['req'].id}/evidence",
                     {"kind": "link", "url": "https://example.org/policy", "title": "Crisis line policy",
                      "visibility": "restricted"})
    assert r.status_code == 303
    monitor = _as(app, "monitor@example.test")
    monitor_b = _as(app, "monitor-b@example.test")
    assert "Crisis line policy" in monitor.client.get("/reviews").get_data(as_text=True)
    page_b = monitor_b.client.get("/reviews").get_data(as_text=True)
    assert "Crisis line policy" not in page_b and "Nothing is waiting for review." in page_b
    assert "Harbor City PD" not in monitor_b.client.get("/rollup").get_data(as_text=True)


def test_nav_count_and_queue_follow_a_new_submission(app, world):
    monitor = _as(app, "monitor@example.test")
    assert "items waiting" not in monitor.client.get("/reviews").get_data(as_text=True)
    officer = _as(app, "officer@example.test")
    officer.post(f"/agencies/agency-a/requirements/{world['req'].id}/evidence",
                 {"kind": "link", "url": "https://example.org/p", "title": "Training roster",
                  "visibility": "restricted"})
    html = monitor.client.get("/reviews").get_data(as_text=True)
    assert '<span class="tracker-nav__count">1</span><span class="usa-sr-only"> items waiting' in html
    assert "Training roster" in html


def test_the_navigation_renders_once_per_user_and_data_version(app, world):
    from flask import template_rendered

    rendered = []

    def record(sender, template, context, **extra):
        rendered.append(template.name)

    admin = _as(app, "admin@example.test")
    monitor = _as(app, "monitor@example.test")
    app.extensions["fragment_cache"].clear()
    template_rendered.connect(record, app)
    try:
        for path in ("/agencies/agency-a", "/agencies/agency-a/dashboard", "/catalog/"):
            assert "Administration" in admin.client.get(path).get_data(as_text=True)
        assert rendered.count("_nav.html") == 1
        # Sign-ins change no page: another user signing in leaves the admin's links cached.
        _as(app, "officer@example.test")
        rendered.clear()
        admin.client.get("/catalog/")
        assert rendered.count("_nav.html") == 0
        # The monitor's own links, never the admin's.
        monitor_page = monitor.client.get("/reviews").get_data(as_text=True)
        assert "Administration" not in monitor_page and "Account (Mona Monitor)" in monitor_page
        officer = _as(app, "officer@example.test")
        officer.post(f"/agencies/agency-a/requirements/{world['req'].id}/evidence",
                     {"kind": "link", "url": "https://example.org/p", "title": "Roster", "visibility": "restricted"})
        rendered.clear()
        html = admin.client.get("/agencies/agency-a").get_data(as_text=True)
        assert rendered.count("_nav.html") == 1  # the data changed: rendered afresh
        assert '<span class="tracker-nav__count">1</span><span class="usa-sr-only"> items waiting' in html
        assert "Account (" in html and 'name="csrf_token"' in html.split("Sign out")[0]
    finally:
        template_rendered.disconnect(record, app)


def test_the_admins_waiting_count_recounts_only_the_agency_that_changed(app, world, monkeypatch):
    from tracker.services import reviews

    counted = []
    real = reviews._counts_by_agency
    monkeypatch.setattr(reviews, "_counts_by_agency", lambda ids: counted.append(sorted(ids)) or real(ids))
    admin = _as(app, "admin@example.test")
    admin.client.get("/catalog/")
    assert counted == [sorted([world["a"].id, world["b"].id])]
    officer = _as(app, "officer@example.test")
    officer.post(f"/agencies/agency-a/requirements/{world['req'].id}/evidence",
                 {"kind": "link", "url": "https://example.org/p", "title": "Roster", "visibility": "restricted"})
    counted.clear()
    html = admin.client.get("/catalog/").get_data(as_text=True)
    assert counted == [[world["a"].id]]  # B's count is still current
    assert '<span class="tracker-nav__count">1</span><span class="usa-sr-only"> items waiting' in html


def test_csv_and_dashboard_follow_a_change(app, world):
    officer = _as(app, "officer@example.test")
    assert "Not started" in officer.client.get("/agencies/agency-a/export.csv").get_data(as_text=True)
    dashboard = officer.client.get("/agencies/agency-a/dashboard").get_data(as_text=True)
    _status(officer, world["req"], "implemented", 1)
    csv = officer.client.get("/agencies/agency-a/export.csv").get_data(as_text=True)
    assert "Implemented" in csv and "Not started" not in csv
    assert officer.client.get("/agencies/agency-a/dashboard").get_data(as_text=True) != dashboard


def test_the_unknown_filter_notice_shows_on_a_cached_page_too(app, world):
    officer = _as(app, "officer@example.test")
    for _ in range(2):
        html = officer.client.get("/agencies/agency-a?status=bogus").get_data(as_text=True)
        assert "Unknown filter value ignored: status." in html


def test_requests_that_write_never_use_the_cache(app, world):
    calls = []

    def compute():
        calls.append(1)
        return len(calls)

    with app.app_context(), app.test_request_context("/", method="POST"):
        assert (cache.value("t", 1, compute), cache.value("t", 1, compute)) == (1, 2)
    with app.app_context(), app.test_request_context("/", method="GET"):
        assert (cache.value("t", 1, compute), cache.value("t", 1, compute)) == (3, 3)


def test_a_new_day_renders_afresh(app, world, monkeypatch):
    calls = []
    with app.app_context(), app.test_request_context("/"):
        cache.value("t", 1, lambda: calls.append(1))
        cache.value("t", 1, lambda: calls.append(1))
    tomorrow = cache.utcnow() + timedelta(days=1)
    monkeypatch.setattr(cache, "utcnow", lambda: tomorrow)
    with app.app_context(), app.test_request_context("/"):
        cache.value("t", 1, lambda: calls.append(1))
    assert len(calls) == 2


def test_a_setting_of_zero_entries_turns_the_cache_off(app, world):
    app.config["PAGE_CACHE_ENTRIES"] = 0
    calls = []
    with app.app_context(), app.test_request_context("/"):
        cache.value("t", 1, lambda: calls.append(1))
        cache.value("t", 1, lambda: calls.append(1))
    assert len(calls) == 2


def test_entries_expire_and_the_store_is_bounded(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(cache.time, "monotonic", lambda: now[0])
    store = FragmentCache(max_entries=2, seconds=60)
    store.put("a", 1)
    store.put("b", 2)
    assert store.get("a") == 1  # "a" is now the most recently used
    store.put("c", 3)
    assert (store.get("a"), store.get("b"), store.get("c")) == (1, MISSING, 3)
    now[0] += 61
    assert store.get("a") is MISSING and store.get("c") is MISSING


def test_the_version_is_the_newest_change(app, db, world):
    from tracker.services import audit

    with app.app_context(), app.test_request_context("/"):
        before = cache.data_version()
    event = audit.record("test.event", object_type="test", object_id="1")
    db.session.commit()
    with app.app_context(), app.test_request_context("/"):
        # A change that belongs to no agency moves both halves: the newest change, the newest shared one.
        assert cache.data_version() == (event.id, event.id) > before
    in_b = audit.record("requirement.status", object_type="requirement", object_id="9", agency_id=world["b"].id)
    audit.record("auth.login", object_type="user_account", object_id="1")
    db.session.commit()
    with app.app_context(), app.test_request_context("/"):
        assert cache.data_version() == (in_b.id, event.id)  # the sign-in changes no page


def _board_renders(app, client, path):
    from flask import template_rendered

    rendered = []

    def record(sender, template, context, **extra):
        rendered.append(template.name)

    template_rendered.connect(record, app)
    try:
        assert client.get(path).status_code == 200
    finally:
        template_rendered.disconnect(record, app)
    return rendered.count("board/_content.html")


def test_a_write_in_another_agency_leaves_this_agencys_pages_cached(app, db, world):
    """Issue 18: the version is per agency, so 200 agencies with writes in a few still hit the cache."""
    from tracker.services import audit

    admin = _as(app, "admin@example.test")
    assert _board_renders(app, admin.client, "/agencies/agency-a") == 1
    assert _board_renders(app, admin.client, "/agencies/agency-a") == 0
    # A change in agency B, and sign-in events (which belong to no agency and change no page).
    audit.record("requirement.status", object_type="requirement", object_id="9", agency_id=world["b"].id)
    db.session.commit()
    _as(app, "monitor-b@example.test")
    assert _board_renders(app, admin.client, "/agencies/agency-a") == 0
    assert _board_renders(app, admin.client, "/agencies/agency-b") == 1
    # A change in agency A, then one that belongs to no agency (the catalog, an account): A renders afresh.
    _status(_as(app, "officer@example.test"), world["req"], "implemented", 1)
    assert _board_renders(app, admin.client, "/agencies/agency-a") == 1
    audit.record("catalog.load", object_type="catalog", object_id="1")
    db.session.commit()
    assert _board_renders(app, admin.client, "/agencies/agency-a") == 1
    assert _board_renders(app, admin.client, "/agencies/agency-a") == 0


def test_a_scope_version_moves_with_its_own_agencies_only(app, db, world):
    from tracker.services import audit

    a, b = world["a"].id, world["b"].id
    with app.app_context(), app.test_request_context("/"):
        before_a, before_ab, before_all = cache.data_version(a), cache.data_version([a, b]), cache.data_version()
    audit.record("requirement.status", object_type="requirement", object_id="9", agency_id=b)
    db.session.commit()
    with app.app_context(), app.test_request_context("/"):
        assert cache.data_version(a) == before_a
        assert cache.data_version([b, a]) != before_ab and cache.data_version() != before_all
    # More agencies than WIDE_SCOPE use the newest event of all (one index step each would cost more).
    with app.app_context(), app.test_request_context("/"):
        assert cache.data_version(range(cache.WIDE_SCOPE + 1)) == cache.data_version()


def test_versions_cost_one_primary_key_step_once_the_log_has_started(app, db, world):
    a, b = world["a"].id, world["b"].id
    with app.app_context(), app.test_request_context("/"):
        cache.data_version(a)  # starts this process's log and reads A's newest event
    seen = []

    def record(conn, cursor, statement, params, *args):
        if statement != "BEGIN":  # each block below is a new request: a new transaction
            seen.append((statement, params))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    with app.app_context(), app.test_request_context("/"):
        cache.data_version(a)
        cache.data_version(a)
        cache.data_version()
    assert len(seen) == 1, seen  # the events added since the previous request: none
    with app.app_context(), app.test_request_context("/"):
        cache.data_version([a, b])
    assert len(seen) == 3, seen  # the sync again, and B's newest event: B was never asked about
    if db.engine.dialect.name == "sqlite":
        plans = [" | ".join(row[-1] for row in db.session.connection().exec_driver_sql(
            "EXPLAIN QUERY PLAN " + statement, tuple(params)).all()) for statement, params in (seen[0], seen[2])]
        assert "INTEGER PRIMARY KEY (rowid>?)" in plans[0], plans[0]
        assert "COVERING INDEX ix_audit_event_agency_id_id" in plans[1], plans[1]


def test_the_version_log_starts_afresh_after_a_rewrite_or_a_long_gap(app, db, world, monkeypatch):
    from tracker.services import audit

    log = app.extensions["version_log"]
    a = world["a"].id
    with app.app_context(), app.test_request_context("/"):
        first = cache.data_version(a)
    # The event last seen now has another hash (a restored or rewritten log): the next request starts afresh.
    log.position = (log.position[0], "0" * 64)
    event = audit.record("requirement.status", object_type="requirement", object_id="1", agency_id=a)
    db.session.commit()
    with app.app_context(), app.test_request_context("/"):
        assert cache.data_version(a) == (event.id, first[1])
    assert log.position[0] == event.id
    # More new events than it folds in: it starts afresh too, and the versions are still right.
    monkeypatch.setattr(type(log), "CATCH_UP", 2)
    events = [audit.record("requirement.status", object_type="requirement", object_id="1", agency_id=a)
              for _ in range(3)]
    db.session.commit()
    with app.app_context(), app.test_request_context("/"):
        assert cache.data_version(a) == (events[-1].id, first[1])


def test_the_roll_up_recomputes_only_the_agency_that_changed(app, db, world, monkeypatch):
    from tracker.services import audit, dashboard

    computed = []
    real = dashboard.rollup
    monkeypatch.setattr(dashboard, "rollup", lambda agencies, *a, **k: computed.append(
        sorted(x.slug for x in agencies)) or real(agencies, *a, **k))
    admin = _as(app, "admin@example.test")
    first = admin.client.get("/rollup?sort=name").get_data(as_text=True).split("<table")[1]
    assert computed == [["agency-a", "agency-b"]]
    assert first.index("Harbor City PD") < first.index("Other Town PD")
    audit.record("requirement.status", object_type="requirement", object_id="9", agency_id=world["b"].id)
    db.session.commit()
    # Another sort of the same data: the rows come from the cache, only B's is computed again.
    again = admin.client.get("/rollup?sort=name&dir=desc").get_data(as_text=True).split("<table")[1]
    assert computed == [["agency-a", "agency-b"], ["agency-b"]]
    assert again.index("Other Town PD") < again.index("Harbor City PD")


def test_the_store_is_bounded_by_the_characters_it_holds():
    store = FragmentCache(max_entries=100, seconds=60, max_chars=250)
    store.put("a", "x" * 100)
    store.put("b", ("y" * 100, ()))
    assert store.get("a") == "x" * 100  # "a" is now the most recently used
    store.put("c", "z" * 100)  # 300 characters: the least recently used, "b", goes
    assert (store.get("a"), store.get("b"), store.get("c")) == ("x" * 100, MISSING, "z" * 100)
    store.put("c", "z" * 10)  # replacing an entry counts its new size only
    store.put("d", "w" * 130)
    assert store.get("a") == "x" * 100 and store.get("d") == "w" * 130
