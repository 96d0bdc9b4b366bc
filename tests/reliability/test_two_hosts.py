"""Two app hosts behind one PostgreSQL, one Redis and one object store (issue 18, "More than one host").

Two gunicorn servers run as separate processes, each with its own (empty) EVIDENCE_DIR, so nothing
can pass between them on a local disk. Through them: a change made on one is visible at once on the
other (fragment caches included); a session and its CSRF token from one work on the other; sign-in
rate limits (Redis) and lockouts (database) count across both; evidence uploaded through one
downloads through the other, byte for byte.

PostgreSQL only: SQLite is a file on one host, so two hosts cannot share it.
"""
import hashlib
import re
import uuid

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import (
    AGENCY_SLUG,
    OFFICERS,
    PG_URL,
    Gunicorn,
    HttpSession,
    _pg_url,
    app_role_url,
    build_database,
    csrf_token,
    make_pdf,
    multipart,
    report,
    server_env,
)
from tests.s3_server import CREDENTIALS, make_bucket, s3_server

pytestmark = pytest.mark.skipif(not PG_URL, reason="two hosts share a PostgreSQL server (SQLite is one host's file)")

REDIS_DB = 11  # a database of the local Redis that no other test uses; emptied first
LOGIN_LIMIT = 12
SIGN_INS_BEFORE = 9  # POST /login made by the tests above this one (5 sign-ins) and its lockout part (4)


def _own_database(url):
    """<test database>_two_hosts, created when missing, so the package's deployment keeps its own."""
    base = sa.engine.make_url(url)
    name = f"{base.database}_two_hosts"
    server = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    server.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    import redis

    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    work = tmp_path_factory.mktemp("two-hosts")
    url = _own_database(_pg_url(PG_URL))
    req_ids, password = build_database(url, work / "unused")
    app_url = app_role_url(url)  # the hosts connect as production's restricted role when make test names it
    with s3_server() as endpoint:
        bucket = f"two-hosts-{uuid.uuid4().hex[:10]}"
        make_bucket(endpoint, bucket)
        servers = []
        try:
            for name in ("a", "b"):
                env = {**server_env(app_url, work / f"evidence-{name}"), **CREDENTIALS,
                       "EVIDENCE_STORE": f"s3://{bucket}/evidence", "S3_ENDPOINT_URL": endpoint,
                       "RATELIMIT_ENABLED": "true", "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:6379/{REDIS_DB}",
                       "LOGIN_RATE_LIMIT": f"{LOGIN_LIMIT} per minute", "LOCKOUT_THRESHOLD": "3",
                       "LOCKOUT_MODE": "admin"}
                servers.append(Gunicorn(env, 2, work / f"gunicorn-{name}.log").start())
            yield {"a": servers[0], "b": servers[1], "req_ids": req_ids, "password": password, "work": work,
                   "url": url}
        finally:
            for server in servers:
                server.stop()


def _browser(server):
    return HttpSession("127.0.0.1", server.port)


def _status_on_board(session, req_id):
    page = session.get(f"/agencies/{AGENCY_SLUG}/requirements/{req_id}")
    assert page.status == 200, page.status
    return page.text


def test_a_session_and_its_csrf_token_from_one_host_work_on_the_other(hosts):
    on_a = _browser(hosts["a"]).sign_in(OFFICERS[0], hosts["password"])
    on_b = _browser(hosts["b"])
    on_b.cookies, on_b.token = dict(on_a.cookies), on_a.token
    req_id = hosts["req_ids"][0]
    page = f"/agencies/{AGENCY_SLUG}/requirements/{req_id}"
    version = on_b.read_version(page)
    # the token of host A's page, sent to host B
    answer = on_b.post(page + "/status", {"status": "in_progress", "note": "from host B", "csrf_token": on_a.token,
                                          "row_version": version})
    assert answer.status == 303, (answer.status, answer.text[:300])
    report(f"two hosts: session and CSRF token from host A accepted by host B (HTTP {answer.status})")


def test_a_change_through_one_host_is_visible_at_once_through_the_other(hosts):
    on_a = _browser(hosts["a"]).sign_in(OFFICERS[0], hosts["password"])
    on_b = _browser(hosts["b"]).sign_in(OFFICERS[1], hosts["password"])
    req_id = hosts["req_ids"][1]
    board = f"/agencies/{AGENCY_SLUG}"
    for _ in range(3):  # warm host A's fragment caches (every worker)
        assert on_a.get(board).status == 200
    page = f"/agencies/{AGENCY_SLUG}/requirements/{req_id}"
    version = on_b.read_version(page)
    note = f"implemented on host B {uuid.uuid4().hex[:6]}"
    answer = on_b.post(page + "/status", {"status": "implemented", "note": note, "row_version": version})
    assert answer.status == 303, answer.status
    for _ in range(4):  # whichever worker of host A answers
        board_page = on_a.get(board).text
        row = re.search(rf'<tr[^>]*id="req-{req_id}".*?</tr>', board_page, re.DOTALL)
        assert row and "Implemented" in row.group(0), "host A still shows the old status"
    assert note in _status_on_board(on_a, req_id)


def test_evidence_uploaded_through_one_host_downloads_through_the_other(hosts):
    on_a = _browser(hosts["a"]).sign_in(OFFICERS[0], hosts["password"])
    on_b = _browser(hosts["b"]).sign_in(OFFICERS[0], hosts["password"])
    req_id = hosts["req_ids"][2]
    page = f"/agencies/{AGENCY_SLUG}/requirements/{req_id}"
    on_a.token = csrf_token(on_a.get(page).text)
    content = make_pdf(3 * 1024 * 1024)
    head, tail, ctype = multipart({"csrf_token": on_a.token, "kind": "file", "title": "Shared roster",
                                   "visibility": "restricted", "description": ""}, "file", "roster.pdf",
                                  "application/pdf")
    answer = on_a.request("POST", page + "/evidence", body=head + content + tail, headers={"Content-Type": ctype})
    assert answer.status == 303, (answer.status, answer.text[:300])
    engine = sa.create_engine(hosts["url"], poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        evidence_id, sha = conn.execute(sa.text(
            "SELECT id, sha256 FROM evidence WHERE title = 'Shared roster'")).one()
    engine.dispose()
    download = on_b.get(f"/agencies/{AGENCY_SLUG}/evidence/{evidence_id}/download")
    assert download.status == 200, download.status
    assert hashlib.sha256(download.body).hexdigest() == sha == hashlib.sha256(content).hexdigest()
    for name in ("a", "b"):  # neither host kept the file on its own disk
        assert not list((hosts["work"] / f"evidence-{name}").glob("??/??/*"))
    report(f"two hosts: 3 MB evidence uploaded through A, downloaded through B, SHA-256 {sha[:12]}… matches")


# Last: it uses up the shared sign-in limit.
def test_rate_limits_and_lockouts_count_across_both_hosts(hosts):
    # Lockout (database): three wrong passwords split over the hosts lock the account on both.
    victim = OFFICERS[1]
    answers = []
    for server in ("a", "b", "a"):
        session = _browser(hosts[server])
        token = csrf_token(session.get("/login").text)
        answers.append(session.post("/login", {"email": victim, "password": "wrong " * 3, "csrf_token": token}).status)
    assert answers == [401, 401, 401], answers
    on_b = _browser(hosts["b"])
    token = csrf_token(on_b.get("/login").text)
    locked = on_b.post("/login", {"email": victim, "password": hosts["password"], "csrf_token": token})
    assert locked.status not in (303, 429), "the account locked through host A signed in through host B"
    # Rate limit (Redis): attempts alternate between hosts; each host alone stays under the limit,
    # together they pass it, so only a shared counter answers 429.
    statuses = []
    for n in range(10):
        session = _browser(hosts["ab"[n % 2]])
        token = csrf_token(session.get("/login").text)
        statuses.append(session.post("/login", {"email": f"nobody{n}@example.test", "password": "x" * 14,
                                                "csrf_token": token}).status)
    allowed = LOGIN_LIMIT - SIGN_INS_BEFORE
    assert statuses == [401] * allowed + [429] * (10 - allowed), statuses
    report(f"two hosts: lockout after 3 failures over both hosts; sign-in answers {statuses} "
           f"(limit {LOGIN_LIMIT}/min shared through Redis)")
