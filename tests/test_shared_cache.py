"""The page cache's second level in Redis (PAGE_CACHE_REDIS_URL, tracker/shared_cache.py).

Two apps on one database stand for two workers (or two hosts): what one renders after a change, the other
fetches instead of rendering; a change through either is still visible at once through both; two databases
never share entries; Redis down is a miss, never an error page. Needs the local Redis (CI starts it); skipped
when it does not answer, except in CI.
"""
import json
import os
import socket
from collections import namedtuple

import pytest
from flask import template_rendered

from tests.test_page_cache import _as, _status, build_world
from tracker.shared_cache import SharedStore, plain

REDIS_URL = "redis://127.0.0.1:6379/12"


def _redis_answers():
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not os.environ.get("CI") and not _redis_answers(),
                                reason="Redis on 127.0.0.1:6379 does not answer (CI requires it)")


@pytest.fixture
def world(db):
    return build_world()


def _renders(app, client, path, template):
    rendered = []

    def record(sender, template, context, **extra):
        rendered.append(template.name)

    template_rendered.connect(record, app)
    try:
        response = client.get(path)
        assert response.status_code == 200
    finally:
        template_rendered.disconnect(record, app)
    return rendered.count(template), response.get_data(as_text=True)


def test_a_page_rendered_by_one_worker_is_fetched_by_the_other(app, make_app, world):
    other = make_app(PAGE_CACHE_REDIS_URL=REDIS_URL)
    first = make_app(PAGE_CACHE_REDIS_URL=REDIS_URL)
    officer_1, officer_2 = _as(first, "officer@example.test"), _as(other, "officer@example.test")
    rendered, page_1 = _renders(first, officer_1.client, "/agencies/agency-a", "board/_content.html")
    assert rendered == 1
    rendered, page_2 = _renders(other, officer_2.client, "/agencies/agency-a", "board/_content.html")
    assert rendered == 0 and other.extensions["fragment_cache"].shared_hits >= 1
    row = f'<tr id="req-{world["req"].id}">'
    assert page_2.split(row)[1].split("</tr>")[0] == page_1.split(row)[1].split("</tr>")[0]
    # A change through the first worker: the second renders afresh (a new version), and shows it.
    _status(officer_1, world["req"], "implemented", 1)
    rendered, page_2 = _renders(other, officer_2.client, "/agencies/agency-a", "board/_content.html")
    assert rendered == 1 and "tracker-badge--implemented" in page_2.split(row)[1].split("</tr>")[0]
    # ... and the first, having rendered nothing since, fetches that rendering.
    rendered, page_1 = _renders(first, officer_1.client, "/agencies/agency-a", "board/_content.html")
    assert rendered == 0 and "tracker-badge--implemented" in page_1.split(row)[1].split("</tr>")[0]


def test_the_dashboard_and_review_queue_are_shared_too(app, make_app, world):
    first, other = make_app(PAGE_CACHE_REDIS_URL=REDIS_URL), make_app(PAGE_CACHE_REDIS_URL=REDIS_URL)
    for path, template, who in (("/agencies/agency-a/dashboard", "dashboard/_content.html", "officer@example.test"),
                                ("/reviews", "reviews/_queue.html", "monitor@example.test")):
        assert _renders(first, _as(first, who).client, path, template)[0] == 1, path
        assert _renders(other, _as(other, who).client, path, template)[0] == 0, path


def test_two_databases_never_share_entries(app, make_app, world, tmp_path):
    first = make_app(PAGE_CACHE_REDIS_URL=REDIS_URL)
    _renders(first, _as(first, "officer@example.test").client, "/agencies/agency-a", "board/_content.html")
    # The same page of another database (its first audit event differs): a miss in the shared level.
    store = first.extensions["shared_cache"]
    key = next(k for k in first.extensions["fragment_cache"]._entries if k[0] == "board")
    genesis = first.extensions["version_log"].genesis
    assert store.get(genesis, key)[1] is True
    assert store.get("another database's first event", key) == (None, False)


def test_redis_down_is_a_miss_not_an_error(app, make_app, world, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    down = make_app(PAGE_CACHE_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    officer = _as(down, "officer@example.test")
    for _ in range(2):
        assert officer.client.get("/agencies/agency-a").status_code == 200
    assert "shared page cache unavailable" in caplog.text
    assert caplog.text.count("shared page cache unavailable") == 1  # once a minute, not once a request


def test_only_plain_values_travel_and_anything_else_found_is_a_miss():
    link = namedtuple("Link", "name slug")
    assert plain(("<p>board</p>", ("status",))) and plain(["a", 1, None, 2.5, True])
    assert not plain((link("A", "a"),)) and not plain({"a": 1}) and not plain(b"bytes")
    store = SharedStore(REDIS_URL, 60)
    store.put("ns", ["k"], {"not": "plain"})  # refused: never stored
    assert store.get("ns", ["k"]) == (None, False)
    store.client.set(store._name("ns", ["bad"]), b"\x80 not json")
    assert store.get("ns", ["bad"]) == (None, False)
    store.put("ns", ["ok"], ("<p>x</p>", ("status",)))
    assert store.get("ns", ["ok"]) == (["<p>x</p>", ["status"]], True)
    assert json.loads(store.client.get(store._name("ns", ["ok"]))) == ["<p>x</p>", ["status"]]
