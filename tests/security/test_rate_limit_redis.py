"""T07: the per-address sign-in limit is shared by every gunicorn worker through Redis.

A real gunicorn with two workers (`--reuse-port`, so the kernel spreads connections) serves the app on
a loopback port; 25 sign-in attempts for 25 different addresses, each on a new connection, land on both
workers (the access log records each answer's worker pid). With LOGIN_RATE_LIMIT="20 per minute" exactly
the first 20 are answered (401) and the rest are 429; with per-process `memory://` storage each worker
would allow 20 of its own (checked once by hand: this test then fails).

Needs Redis on 127.0.0.1:6379 (database 15 is flushed). Skipped when Redis does not answer, except in CI
(the CI variable is set), where it must run.
"""
import http.cookiejar
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.security

ROOT = Path(__file__).resolve().parents[2]
REDIS_HOST, REDIS_PORT, REDIS_DB = "127.0.0.1", 6379, 15
LIMIT = 20
ATTEMPTS = 25


def _redis_command(*commands):
    """Send raw RESP commands on one connection; returns the raw reply (standard library only)."""
    payload = b""
    for command in commands:
        payload += f"*{len(command)}\r\n".encode()
        for part in command:
            part = str(part).encode()
            payload += f"${len(part)}\r\n".encode() + part + b"\r\n"
    with socket.create_connection((REDIS_HOST, REDIS_PORT), timeout=2) as sock:
        sock.sendall(payload)
        reply = b""
        while reply.count(b"\r\n") < len(commands):
            chunk = sock.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def _redis_answers():
    try:
        return _redis_command(["PING"]).startswith(b"+PONG")
    except OSError:
        return False


def _flush_redis_db():
    try:
        import redis
    except ImportError:
        reply = _redis_command(["SELECT", REDIS_DB], ["FLUSHDB"])
        assert reply == b"+OK\r\n+OK\r\n", reply
        return
    client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB, socket_timeout=2)
    try:
        client.flushdb()
    finally:
        client.close()


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _schema_database(path):
    from tracker import create_app
    from tracker.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}", "SECRET_KEY": "schema-only",
                      "RATELIMIT_STORAGE_URI": "memory://", "TESTING": True})
    with app.app_context():
        db.create_all()
        db.engine.dispose()


def _wait_until_serving(base, proc, log, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2) as response:
                if response.status == 200 and log.read_text().count("Booting worker") >= 2:
                    return
        except (urllib.error.URLError, ConnectionError, OSError):
            time.sleep(0.2)
    pytest.fail(f"gunicorn did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def gunicorn(tmp_path):
    if not _redis_answers():
        if os.environ.get("CI"):
            pytest.fail(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT}; CI must run the shared-limit test")
        pytest.skip(f"Redis does not answer on {REDIS_HOST}:{REDIS_PORT} (set CI to make this a failure)")
    _flush_redis_db()
    database = tmp_path / "ratelimit.db"
    _schema_database(database)
    port = _free_port()
    access_log, server_log = tmp_path / "access.log", tmp_path / "server.log"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("TEST_DATABASE_URL", "TRUSTED_HOSTS", "PROXY_COUNT")},
        "TRACKER_ENV": "development",
        "SECRET_KEY": "rate-limit-test-secret-key-0123456789abcdef",
        "DATABASE_URL": f"sqlite:///{database}",
        "EVIDENCE_DIR": str(tmp_path / "evidence"),
        "RATELIMIT_STORAGE_URI": f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        "RATELIMIT_ENABLED": "1",
        "LOGIN_RATE_LIMIT": f"{LIMIT} per minute",
        "MFA_REQUIRED_ROLES": "",
        "ARGON2_TIME_COST": "1", "ARGON2_MEMORY_KIB": "8", "ARGON2_PARALLELISM": "1",
    }
    with open(server_log, "wb") as out:
        proc = subprocess.Popen(
            # --reuse-port: each worker listens on its own SO_REUSEPORT socket and the kernel spreads new
            # connections over them by address hash, so 25 new connections land on both workers.
            [str(ROOT / ".venv/bin/gunicorn"), "--workers", "2", "--reuse-port", "--bind", f"127.0.0.1:{port}",
             "--access-logfile", str(access_log), "--access-logformat", "%(p)s %(m)s %(U)s %(s)s", "wsgi:app"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(base, proc, server_log)
        yield base, access_log
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        _flush_redis_db()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def test_login_limit_is_shared_by_all_workers_through_redis(gunicorn):
    base, access_log = gunicorn
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    with opener.open(f"{base}/login", timeout=10) as page:
        html = page.read().decode()
    token = re.search(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"', html).group(1)
    codes = []
    for i in range(ATTEMPTS):
        body = urllib.parse.urlencode({"email": f"nobody{i}@example.org", "password": "not the password 42",
                                       "csrf_token": token}).encode()
        request = urllib.request.Request(f"{base}/login", data=body, headers={"Connection": "close"})
        try:
            with opener.open(request, timeout=10) as response:  # urllib opens a new connection for each
                codes.append(response.status)
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
            exc.close()
    assert codes == [401] * LIMIT + [429] * (ATTEMPTS - LIMIT), codes

    time.sleep(0.3)  # let the workers write their access-log lines
    posts = [line.split() for line in access_log.read_text().splitlines() if " POST /login " in line]
    assert len(posts) == ATTEMPTS, posts
    pids = {pid for pid, *_ in posts}
    answered = {pid for pid, _m, _u, status in posts if status == "401"}
    refused = {pid for pid, _m, _u, status in posts if status == "429"}
    # Both workers answered sign-ins; the limit still held at 20 in total, not 20 per worker.
    assert len(pids) == 2, f"all attempts reached one worker ({pids}); the test proves nothing"
    assert answered and refused
