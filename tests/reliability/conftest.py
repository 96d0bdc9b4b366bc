"""Reliability suite (SECURITY-PLAN T24, T25, T27, T29): the real server, the real database, real faults.

One deployment per run of this package: a fresh database (a temp-file SQLite, or the PostgreSQL
database named by TEST_DATABASE_URL with its schema dropped and rebuilt), an agency with requirements
and two compliance officers made with the app's own factories, and `gunicorn --workers 4 wsgi:app`
on a free loopback port with the same environment `make run` / bench/run.py use. Clients speak HTTP
with the standard library only (http.client; cookies and the CSRF token handled here), and each
test may kill and restart the server through `Deployment.server`.

The fixture is package-scoped, which is the session for these tests: gunicorn stops as soon as the
last reliability test has run, so it does not linger while the rest of the suite uses the same
PostgreSQL database.
"""
import http.client
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
FLASK = ROOT / ".venv" / "bin" / "flask"
PG_URL = os.environ.get("TEST_DATABASE_URL")
SECONDS = float(os.environ.get("RELIABILITY_SECONDS", "60"))
WORKERS = 4
SECRET_KEY = "reliability-only-secret-key-loopback"  # noqa: S105
OFFICERS = ("officer1@reliability.test", "officer2@reliability.test")
AGENCY_SLUG = "reliability-pd"
REQUIREMENTS = 60
# Environment variables tracker/config.py reads; the server gets only the ones set below.
APP_SETTINGS = {
    "TRACKER_ENV", "DATABASE_URL", "SESSION_COOKIE_SECURE", "SECRET_KEY", "EVIDENCE_DIR", "MAX_UPLOAD_MB",
    "SESSION_IDLE_MINUTES", "SESSION_MAX_HOURS", "RATELIMIT_STORAGE_URI", "RATELIMIT_ENABLED", "LOGIN_RATE_LIMIT",
    "LOCKOUT_THRESHOLD", "LOCKOUT_WINDOW_MINUTES", "LOCKOUT_MODE", "PASSWORD_MIN_LENGTH", "MFA_REQUIRED_ROLES",
    "ARGON2_TIME_COST", "ARGON2_MEMORY_KIB", "ARGON2_PARALLELISM", "TRUSTED_HOSTS", "PROXY_COUNT", "HSTS",
    "SECURITY_LOG_FILE", "SEED_DIR",
}

# Forms rendered by WTForms, and the hand-written sign-out form in the page header.
CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|type="hidden" name="csrf_token" value="([^"]+)"')
VERSION_RE = re.compile(r'name="row_version" type="hidden" value="(\d+)"')

# Figures measured by the tests, printed in the terminal summary (and with -s as they happen).
FIGURES = []


def csrf_token(page):
    match = CSRF_RE.search(page)
    assert match, "no CSRF token in the page"
    return match.group(1) or match.group(2)


def report(line):
    FIGURES.append(line)
    print(line, flush=True)


def pytest_terminal_summary(terminalreporter):
    if FIGURES:
        terminalreporter.section("reliability figures")
        for line in FIGURES:
            terminalreporter.write_line(line)


# --- HTTP with the standard library ------------------------------------------------------------------

@dataclass
class Response:
    status: int
    headers: dict
    body: bytes
    seconds: float

    @property
    def text(self):
        return self.body.decode("utf-8", "replace")


class HttpSession:
    """One browser: its own cookies and CSRF token. A new connection per request (gunicorn's sync
    workers close after each response anyway). Not for concurrent use unless `frozen` (then the
    cookies are sent as they were after sign-in and answers do not change them)."""

    def __init__(self, host, port, timeout=30):
        self.host, self.port, self.timeout = host, port, timeout
        self.cookies = {}
        self.token = None
        self.frozen = False

    def _cookie_header(self):
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())

    def _take_cookies(self, headers):
        if self.frozen:
            return
        for name, value in headers:
            if name.lower() != "set-cookie":
                continue
            pair, _, attrs = value.partition(";")
            key, _, val = pair.strip().partition("=")
            attrs = attrs.lower()
            if "max-age=0" in attrs or "expires=thu, 01 jan 1970" in attrs:
                self.cookies.pop(key, None)
            else:
                self.cookies[key] = val

    def connection(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None):
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = self._cookie_header()
        started = time.perf_counter()
        conn = self.connection()
        try:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            raw_headers = resp.getheaders()
            resp.close()
        finally:
            conn.close()
        self._take_cookies(raw_headers)
        return Response(resp.status, {k.lower(): v for k, v in raw_headers}, data, time.perf_counter() - started)

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, fields):
        fields = dict(fields)
        fields.setdefault("csrf_token", self.token)
        body = urllib.parse.urlencode(fields).encode()
        return self.request("POST", path, body=body,
                            headers={"Content-Type": "application/x-www-form-urlencoded"})

    def sign_in(self, email, password):
        page = self.get("/login")
        assert page.status == 200, page.status
        token = csrf_token(page.text)
        r = self.post("/login", {"email": email, "password": password, "csrf_token": token})
        assert r.status == 303, (r.status, r.text[:500])
        home = self.get("/")  # shows (and so clears) the "Signed in" flash; carries the session's token
        assert home.status == 200, home.status
        self.token = csrf_token(home.text)
        return self

    def read_version(self, path):
        """Open a requirement page as a browser would; return its row_version (and refresh the token)."""
        r = self.get(path)
        assert r.status == 200, (r.status, r.text[:300])
        versions = set(VERSION_RE.findall(r.text))
        assert len(versions) == 1, versions
        if not self.frozen:
            self.token = csrf_token(r.text)
        return int(versions.pop())


def multipart(fields, file_field, filename, content_type, boundary=None):
    """(head, tail, content_type) around a file part, so the file itself can be streamed."""
    boundary = boundary or f"----reliability{uuid.uuid4().hex}"
    head = b""
    for name, value in fields.items():
        head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n").encode()
    head += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{file_field}\"; filename=\"{filename}\"\r\n"
             f"Content-Type: {content_type}\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return head, tail, f"multipart/form-data; boundary={boundary}"


def make_pdf(size):
    """A PDF (by signature, as the app checks) of exactly `size` bytes with unique content."""
    head = b"%PDF-1.4\n% reliability " + uuid.uuid4().hex.encode() + b"\n1 0 obj << /Type /Catalog >> endobj\n"
    tail = b"\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    filler = (b"% " + b"x" * 1021 + b"\n")
    body = filler * ((size - len(head) - len(tail)) // len(filler) + 1)
    return head + body[: size - len(head) - len(tail)] + tail


# --- processes ---------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stat(pid):
    """(state, ppid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            data = fh.read()
    except OSError:
        return None
    fields = data.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def children(pid):
    """Live (non-zombie) child processes of `pid`, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[1] == pid and st[0] not in ("Z", "X"):
                found.append(int(entry))
    return sorted(found)


def alive(pid):
    st = _stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def _socket_inode(local_port, remote_port):
    want_local, want_remote = f":{local_port:04X}", f":{remote_port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[1].endswith(want_local) and parts[2].endswith(want_remote) and parts[9] != "0":
                return parts[9]
    return None


class Gunicorn:
    def __init__(self, env, workers, log_path, port=None):
        self.env, self.workers, self.log_path = env, workers, Path(log_path)
        self.port = port or free_port()
        self.proc = None
        self._log = None

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=60):
        self._log = open(self.log_path, "ab")  # closed in reap()
        self.proc = subprocess.Popen(  # noqa: S603
            [str(GUNICORN), "--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}",
             "--graceful-timeout", "5", "--log-level", "warning", "wsgi:app"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy() and len(children(self.pid)) >= self.workers:
                return self
            time.sleep(0.1)
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(f"gunicorn did not answer /healthz within {timeout} s:\n{tail}")

    def healthy(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            resp.close()
            return resp.status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def worker_pids(self):
        return children(self.pid)

    def wait_for_workers(self, exclude=(), timeout=30):
        """Until the master runs its full complement of workers, none of them in `exclude`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= self.workers and not set(pids) & set(exclude) and self.healthy():
                return pids
            time.sleep(0.1)
        raise AssertionError(f"master did not restore {self.workers} workers: {self.worker_pids()}\n"
                             f"{self.log_tail()}")

    def worker_serving(self, client_port, timeout=5):
        """The worker pid holding the server side of the client's TCP connection (None if not found)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inode = _socket_inode(self.port, client_port)
            if inode:
                target = f"socket:[{inode}]"
                for pid in self.worker_pids():
                    try:
                        fds = os.listdir(f"/proc/{pid}/fd")
                    except OSError:
                        continue
                    for fd in fds:
                        try:
                            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                                return pid
                        except OSError:
                            continue
            time.sleep(0.01)
        return None

    def kill_all(self):
        """SIGKILL the master and every worker at once (a power cut for the processes)."""
        pids = [self.pid, *self.worker_pids()]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.reap()
        deadline = time.monotonic() + 10
        while any(alive(p) for p in pids[1:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        return pids

    def reap(self):
        if self.proc is not None:
            self.proc.wait(timeout=30)
        if self._log is not None:
            self._log.close()
            self._log = None

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            self.reap()
            return
        workers = self.worker_pids()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            for pid in [self.pid, *workers]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.reap()

    def log_tail(self, chars=4000):
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


# --- the deployment -----------------------------------------------------------------------------------

def _pg_url(url):
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.removeprefix("postgres://")
    return url


def app_role_url(url):
    """With TEST_APP_ROLE on PostgreSQL (make test-postgres), the servers and `flask` commands connect as that
    restricted role, which may only SELECT and INSERT on the audit tables (issue 19); the tests' own checks and
    restores keep the owner's URL."""
    role = os.environ.get("TEST_APP_ROLE")
    if not role or not url.startswith("postgresql"):
        return url
    from scripts.db_roles import ensure_role, grant_app

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        ensure_role(conn, role)
        grant_app(conn, role)
    engine.dispose()
    return sa.engine.make_url(url).set(username=role, password=None).render_as_string(hide_password=False)


def libpq_url(url, database=None):
    u = sa.engine.make_url(url)
    if database:
        u = u.set(database=database)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def build_database(url, evidence_dir):
    """Schema and data through the app: an agency, REQUIREMENTS requirements and two officers."""
    from tests.conftest import BASE_CONFIG, rebuild_postgres_schema
    from tests.factories import PASSWORD, make_agency, make_module, make_requirement, make_user
    from tracker import create_app
    from tracker.extensions import db

    if url.startswith("postgresql"):
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            rebuild_postgres_schema(conn)
        engine.dispose()
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": url, "EVIDENCE_DIR": str(evidence_dir)})
    with app.app_context():
        if not url.startswith("postgresql"):
            db.create_all()
        module = make_module("cit", "Crisis Intervention Teams", 1)
        agency = make_agency(slug=AGENCY_SLUG, name="Reliability City Police Department")
        for n, email in enumerate(OFFICERS, 1):
            make_user(email, role="officer", agency=agency, name=f"Officer {n}")
        req_ids = [make_requirement(agency, module=module, code=f"REL-{i:03d}", title=f"Requirement {i}").id
                   for i in range(1, REQUIREMENTS + 1)]
        db.session.commit()
        db.session.remove()
        db.engine.dispose()
    return req_ids, PASSWORD


@dataclass
class Deployment:
    backend: str
    database_url: str
    evidence_dir: Path
    env: dict
    server: Gunicorn
    req_ids: list
    password: str
    work: Path
    _engine: object = field(default=None, repr=False)

    @property
    def host(self):
        return "127.0.0.1"

    def page(self, req_id):
        return f"/agencies/{AGENCY_SLUG}/requirements/{req_id}"

    def session(self, email=OFFICERS[0]):
        return HttpSession(self.host, self.server.port).sign_in(email, self.password)

    def engine(self):
        if self._engine is None:
            self._engine = sa.create_engine(self.database_url, poolclass=sa.pool.NullPool)
        return self._engine

    def scalar(self, sql, **params):
        with self.engine().connect() as conn:
            value = conn.execute(sa.text(sql), params).scalar()
            conn.rollback()
        return value

    def rows(self, sql, **params):
        with self.engine().connect() as conn:
            result = conn.execute(sa.text(sql), params).all()
            conn.rollback()
        return result

    def flask(self, *args, env=None, timeout=300):
        """`flask --app wsgi ARGS` with the server's environment (optionally overridden)."""
        return subprocess.run([str(FLASK), "--app", "wsgi", *args], cwd=ROOT,  # noqa: S603
                              env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout, check=False)

    def integrity_check(self, path=None):
        """PRAGMA integrity_check on the SQLite file (None on PostgreSQL, which has no such pragma)."""
        if path is None:
            if self.backend != "sqlite":
                return None
            path = sa.engine.make_url(self.database_url).database
        conn = sqlite3.connect(path)
        try:
            return conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()

    def blobs(self, root=None):
        """{sha256: path} of every stored blob (EVIDENCE_DIR/ab/cd/<sha256>)."""
        root = Path(root or self.evidence_dir)
        return {p.name: p for p in root.glob("??/??/*") if p.is_file()}

    def temp_files(self):
        tmp = self.evidence_dir / "tmp"
        return sorted(tmp.iterdir()) if tmp.exists() else []


def server_env(url, evidence_dir):
    """The environment of gunicorn and of `flask --app wsgi ...`, as bench/run.py sets it.

    Nothing the app reads is inherited from the caller's shell (CI may export other settings, e.g. a
    Redis limiter or a trusted-host list); PATH and the like are.
    """
    inherited = {k: v for k, v in os.environ.items() if k not in APP_SETTINGS and not k.startswith("FLASK_")}
    return {
        **inherited,
        "TRACKER_ENV": "development",
        "SECRET_KEY": SECRET_KEY,
        "DATABASE_URL": url,
        "EVIDENCE_DIR": str(evidence_dir),
        "RATELIMIT_ENABLED": "false",
        "RATELIMIT_STORAGE_URI": "memory://",
        "MFA_REQUIRED_ROLES": "",
        "HSTS": "false",
        # The users were hashed with the test suite's cheap argon2 parameters; keep them (no rehash on login).
        "ARGON2_TIME_COST": "1",
        "ARGON2_MEMORY_KIB": "8",
        "ARGON2_PARALLELISM": "1",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="package")
def deployment(tmp_path_factory):
    work = tmp_path_factory.mktemp("reliability")
    evidence_dir = work / "evidence"
    if PG_URL:
        backend, url = "postgresql", _pg_url(PG_URL)
    else:
        backend, url = "sqlite", f"sqlite:///{work / 'tracker.db'}"
    req_ids, password = build_database(url, evidence_dir)
    env = server_env(app_role_url(url), evidence_dir)
    server = Gunicorn(env, WORKERS, work / "gunicorn.log")
    server.start()
    d = Deployment(backend, url, evidence_dir, env, server, req_ids, password, work)
    print(f"\nreliability deployment: {backend}, gunicorn pid {server.pid} on port {server.port}", file=sys.stderr)
    try:
        yield d
    finally:
        d.server.stop()
        if d._engine is not None:
            d._engine.dispose()


@pytest.fixture(autouse=True)
def _server_running(request):
    """A test that killed the server and failed before restarting it must not take the next ones down too."""
    if "deployment" in request.fixturenames:
        d = request.getfixturevalue("deployment")
        if d.server.proc.poll() is not None or not d.server.healthy():
            d.server.stop()
            d.server.start()
    yield


def audit_verify(d, **env):
    result = d.flask("audit", "verify", env=env)
    return result.returncode, (result.stdout + result.stderr).strip()

