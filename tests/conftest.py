"""Fixtures: app, database (SQLite by default, PostgreSQL via TEST_DATABASE_URL), clients, login.

SQLite: the schema is built once into a template file and copied for each test (fast, and every
test gets real commits). PostgreSQL: the schema is built once per run and rows are deleted between
tests, in one script (DELETE on near-empty tables takes milliseconds where TRUNCATE of twenty tables takes ~0.3 s);
under pytest-xdist each worker has its own database.
"""
import functools
import os
import re
import shutil

import psycopg
import pytest
import sqlalchemy as sa
from flask import has_app_context
from flask.testing import FlaskClient
from flask_sqlalchemy import SQLAlchemy
from jinja2 import BytecodeCache
from werkzeug.routing import Rule

from tracker import create_app
from tracker.db import outside_request_begin
from tracker.extensions import db as _db
from tracker.models import Base
from tracker.models.audit import APPEND_ONLY_TABLES

PG_URL = os.environ.get("TEST_DATABASE_URL")
# With TEST_APP_ROLE (make test-postgres: tracker_app) the app under test connects as that restricted role,
# which may only SELECT and INSERT on the audit tables; TEST_DATABASE_URL's user builds and empties the schema.
APP_ROLE = os.environ.get("TEST_APP_ROLE")

BASE_CONFIG = {
    "TESTING": True,
    "TRACKER_ENV": "testing",
    "SECRET_KEY": "test-secret-key-not-for-production",  # noqa: S105
    # Cheap hashing in tests; one test checks the production parameters.
    "ARGON2_TIME_COST": 1,
    "ARGON2_MEMORY_KIB": 8,
    "ARGON2_PARALLELISM": 1,
    "RATELIMIT_STORAGE_URI": "memory://",
    "HSTS": True,
    "SESSION_COOKIE_SECURE": False,
    "SESSION_COOKIE_NAME": "tracker_session",
    "MFA_REQUIRED_ROLES": [],  # tests/test_mfa.py turns it on
    # Audit checkpoints are signed with this fixed test key (never a real installation's).
    "AUDIT_SIGNING_KEY": "WvDJ2eVSg5FvLuDyKlOwXAvOdcsFgXiBpLTVjQ1Ee9Y=",
}


# On PostgreSQL, tests that use no database fixture are deselected: the SQLite run runs them, and here they
# would run the same code again. The count and the reason are printed at the end (from each xdist worker).
NO_DATABASE_REASON = "tests use no database fixture: deselected on PostgreSQL, they run in the SQLite run"
_no_database_counts = []


def _uses_database(item):
    # The reliability tests start their own servers on TEST_DATABASE_URL (tests/reliability/conftest.py).
    fixtures = set(getattr(item, "fixturenames", ()))
    return "reliability" in item.path.parts or bool({"database_url", "pg_schema"} & fixtures)


def pytest_collection_modifyitems(config, items):
    if not PG_URL:
        return
    deselected = [item for item in items if not _uses_database(item)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = [item for item in items if _uses_database(item)]
    _no_database_counts.append(len(deselected))
    if hasattr(config, "workeroutput"):
        config.workeroutput["no_database_deselected"] = len(deselected)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    _no_database_counts.append(getattr(node, "workeroutput", {}).get("no_database_deselected", 0))


def pytest_terminal_summary(terminalreporter):
    if max(_no_database_counts, default=0):
        terminalreporter.write_line(f"{max(_no_database_counts)} {NO_DATABASE_REASON}")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("template") / "template.db"
    app = create_app({**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{path}"})
    with app.app_context():
        _db.create_all()
        _db.engine.dispose()
    return path


def _worker_database(url):
    """Under pytest-xdist each worker gets its own database next to the given one (test_gw0, ...)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker:
        return url
    base = sa.engine.make_url(url)
    name = f"{base.database}_{worker}"
    server = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        if not conn.execute(sa.text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    server.dispose()
    return base.set(database=name).render_as_string(hide_password=False)


def rebuild_postgres_schema(conn):
    """Drop every table in the schema, also ones this checkout does not know (left by another branch
    or a newer migration), then create the models' tables."""
    tables = conn.exec_driver_sql("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()").scalars()
    for name in list(tables):
        conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}" CASCADE')
    Base.metadata.create_all(conn)


@pytest.fixture(scope="session")
def pg_schema():
    """A session-wide engine on this worker's PostgreSQL database with a fresh schema."""
    if not PG_URL:
        yield None
        return
    url = PG_URL
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    url = _worker_database(url)
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        rebuild_postgres_schema(conn)
        if APP_ROLE:
            from scripts.db_roles import ensure_role, grant_app

            ensure_role(conn, APP_ROLE)
            grant_app(conn, APP_ROLE)
    yield engine
    engine.dispose()


def app_role_url(engine):
    """The URL the app under test uses: the owner's, or the restricted role's with TEST_APP_ROLE."""
    url = engine.url.set(username=APP_ROLE, password=None) if APP_ROLE else engine.url
    return url.render_as_string(hide_password=False)


RESTART_SEQUENCES = ("SELECT setval(oid, 1, false) FROM pg_class "
                     "WHERE relkind = 'S' AND relnamespace = 'public'::regnamespace")


@functools.cache
def _emptying_sql(replica):
    """Every table emptied and every sequence restarted, as one script (one round trip). The audit tables refuse
    DELETE (row triggers) and TRUNCATE (statement triggers): with replica=True this transaction fires no trigger
    (the owner's own session only; needs a superuser, as `make test` has), else their TRUNCATE guards are lifted
    for this transaction only."""
    tables = [table.name for table in reversed(Base.metadata.sorted_tables)]
    if replica:
        head = ["SET LOCAL session_replication_role = replica"]
    else:
        head = [*(f"ALTER TABLE {n} DISABLE TRIGGER {n}_no_truncate" for n in APPEND_ONLY_TABLES),
                "TRUNCATE " + ", ".join(APPEND_ONLY_TABLES),
                *(f"ALTER TABLE {n} ENABLE TRIGGER {n}_no_truncate" for n in APPEND_ONLY_TABLES)]
        tables = [name for name in tables if name not in APPEND_ONLY_TABLES]
    return ";\n".join([*head, *(f'DELETE FROM "{name}"' for name in tables), RESTART_SEQUENCES])


_replica_allowed = [True]


def _empty_postgres(engine):
    if _replica_allowed[0]:
        try:
            with engine.begin() as conn:
                conn.connection.driver_connection.execute(_emptying_sql(True))
            return
        except psycopg.errors.InsufficientPrivilege:
            _replica_allowed[0] = False
    with engine.begin() as conn:
        conn.connection.driver_connection.execute(_emptying_sql(False))


# Every test builds its own app, and Flask-SQLAlchemy would give each a new engine, whose empty
# statement cache then compiles every query again (a quarter of the suite's CPU). The test database
# has one URL per worker, so its engine is made once and handed to every app.
_ORIGINAL_MAKE_ENGINE = SQLAlchemy._make_engine
_SHARED_ENGINES = {}
_SHARED_URLS = set()


def _make_engine_once(self, bind_key, options, app):
    url = str(options.get("url"))
    if url not in _SHARED_URLS:
        return _ORIGINAL_MAKE_ENGINE(self, bind_key, options, app)
    key = (url, repr(sorted((k, v) for k, v in options.items() if k != "url")))
    if key not in _SHARED_ENGINES:
        _SHARED_ENGINES[key] = _ORIGINAL_MAKE_ENGINE(self, bind_key, options, app)
    return _SHARED_ENGINES[key]


@pytest.fixture(scope="session", autouse=True)
def _one_engine_per_test_database():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SQLAlchemy, "_make_engine", _make_engine_once)
        yield
    for engine in _SHARED_ENGINES.values():
        engine.dispose()


# Every test's new app also compiles a URL builder for each of its ~140 routes (werkzeug generates and
# compiles Python code per rule: about 90 % of create_app's time, ~0.1 s a test). The generated function
# depends only on the rule's parsed parts, its defaults and which builder it is; it reads the rule's
# converters from the rule it is bound to at call time. So each distinct builder is compiled once per run.
_ORIGINAL_COMPILE_BUILDER = Rule._compile_builder
_BUILDERS = {}


def _builder_key(rule, append_unknown):
    defaults = rule.defaults or {}
    converted = tuple((k, rule._converters[k].to_url(v)) for k, v in sorted(defaults.items())
                      if k in rule._converters)
    return (rule.rule, tuple(rule._trace), repr(sorted(defaults.items())), converted, append_unknown)


def _compile_builder_once(self, append_unknown=True):
    key = _builder_key(self, append_unknown)
    if key not in _BUILDERS:
        _BUILDERS[key] = _ORIGINAL_COMPILE_BUILDER(self, append_unknown)
    return _BUILDERS[key]


@pytest.fixture(scope="session", autouse=True)
def _one_url_builder_per_rule():
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Rule, "_compile_builder", _compile_builder_once)
        yield


@pytest.fixture(scope="session")
def sqlite_path(tmp_path_factory):
    """This worker's test database file; each test starts from a fresh copy of the template."""
    path = tmp_path_factory.mktemp("database") / "test.db"
    _SHARED_URLS.add(f"sqlite:///{path}")
    return path


@pytest.fixture
def database_url(sqlite_template, sqlite_path, pg_schema):
    if pg_schema is not None:
        url = app_role_url(pg_schema)
        _SHARED_URLS.add(url)
        _empty_postgres(pg_schema)
        return url
    for engine in _SHARED_ENGINES.values():
        engine.dispose()  # no pooled connection may outlive the file it points to
    for leftover in (sqlite_path.with_name("test.db-wal"), sqlite_path.with_name("test.db-shm")):
        leftover.unlink(missing_ok=True)
    shutil.copyfile(sqlite_template, sqlite_path)
    return f"sqlite:///{sqlite_path}"


class SharedBytecode(BytecodeCache):
    """Every test builds a new app (and Jinja environment): compile each template once per run.

    Buckets are keyed by template name and checked against the source's checksum, so edits still show.
    """

    store = {}

    def load_bytecode(self, bucket):
        if bucket.key in self.store:
            bucket.bytecode_from_string(self.store[bucket.key])

    def dump_bytecode(self, bucket):
        self.store[bucket.key] = bucket.bytecode_to_string()


class FreshContextClient(FlaskClient):
    """Each request gets its own app context (own `g` and DB session), as in a real server.

    Without this, requests made while a test holds an app context share that context's `g`.
    """

    def open(self, *args, **kwargs):
        if has_app_context():
            # Commit what the test built and end its read snapshot, so the test sees what the
            # request commits (SQLite keeps a reader on its snapshot until the transaction ends).
            _db.session.commit()
        with self.application.app_context():
            return super().open(*args, **kwargs)


@pytest.fixture
def make_app(database_url, tmp_path):
    apps = []

    def _make(**overrides):
        config = {**BASE_CONFIG, "SQLALCHEMY_DATABASE_URI": database_url,
                  "EVIDENCE_DIR": str(tmp_path / "evidence"),
                  "AUDIT_CHECKPOINT_DIR": str(tmp_path / "audit-checkpoints"), **overrides}
        app = create_app(config)
        app.test_client_class = FreshContextClient
        app.jinja_env.bytecode_cache = SharedBytecode()
        apps.append(app)
        return app

    yield _make
    for app in apps:
        with app.app_context():
            _db.session.remove()
            _db.engine.dispose()


@pytest.fixture(autouse=True)
def _deferred_test_transactions():
    token = outside_request_begin.set("BEGIN")
    yield
    outside_request_begin.reset(token)


@pytest.fixture
def app(make_app):
    app = make_app()
    with app.app_context():
        yield app


@pytest.fixture
def no_page_cache(app):
    """For tests that measure rendering work (query counts) after writing rows directly, which
    bypasses the audit trail the fragment cache is keyed on."""
    app.config["PAGE_CACHE_ENTRIES"] = 0


@pytest.fixture
def db(app):
    return _db


@pytest.fixture
def client(app):
    return app.test_client()


CSRF_RE = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


def csrf_from(html):
    match = CSRF_RE.search(html)
    assert match, "no CSRF token in page"
    return match.group(1) or match.group(2)


class Auth:
    """Sign in through the real form, like a browser, and keep the CSRF token for later posts."""

    def __init__(self, client):
        self.client = client
        self.token = None

    def login(self, email, password="correct horse battery staple"):  # noqa: S107
        page = self.client.get("/login")
        token = csrf_from(page.get_data(as_text=True))
        response = self.client.post("/login", data={"email": email, "password": password, "csrf_token": token})
        home = self.client.get("/")
        self.token = csrf_from(home.get_data(as_text=True)) if "csrf_token" in home.get_data(as_text=True) else None
        return response

    def logout(self):
        return self.client.post("/logout", data={"csrf_token": self.token})

    def post(self, url, data=None, **kwargs):
        data = dict(data or {})
        data.setdefault("csrf_token", self.token)
        return self.client.post(url, data=data, **kwargs)


@pytest.fixture
def auth(client):
    return Auth(client)


@pytest.fixture
def count_queries(db):
    """Count SQL statements run inside a `with count_queries() as n:` block (n.count)."""
    from contextlib import contextmanager

    class Counter:
        count = 0

    @contextmanager
    def _count():
        counter = Counter()

        def listener(*args, **kwargs):
            counter.count += 1

        sa.event.listen(db.engine, "after_cursor_execute", listener)
        try:
            yield counter
        finally:
            sa.event.remove(db.engine, "after_cursor_execute", listener)

    return _count


# The policy tests' agency, a fixture shared by their modules (imported last: the builders use Auth above).
from tests.policy_builders import pol  # noqa: E402, F401
