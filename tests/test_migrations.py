"""Alembic migrations: one head, upgrade builds exactly the models' schema (with the audit guard), downgrade
removes it. Runs on a fresh SQLite file, and on a fresh PostgreSQL database when TEST_DATABASE_URL is set."""
import logging
import os
from datetime import datetime
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from tests.conftest import PG_URL
from tracker.extensions import db as _db
from tracker.models import Base

MIGRATIONS = Path(__file__).parent.parent / "migrations"
APP_TABLES = {t.name for t in Base.metadata.sorted_tables}


def _script():
    config = Config(str(MIGRATIONS / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(config)


def test_single_head():
    script = _script()
    heads = script.get_heads()
    assert len(heads) == 1, heads
    # Every revision chains back to the base without gaps.
    revisions = list(script.walk_revisions())
    assert revisions[-1].down_revision is None
    assert script.get_base() == revisions[-1].revision


@pytest.fixture
def _keep_logging():
    """migrations/env.py calls logging.config.fileConfig, which disables every logger already created and
    changes levels and root handlers. Put all of that back so later tests see normal logging."""
    root = logging.getLogger()
    root_state = (root.level, list(root.handlers))
    loggers = {name: (lg.disabled, lg.level, list(lg.handlers), lg.propagate)
               for name, lg in logging.Logger.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    yield
    root.setLevel(root_state[0])
    root.handlers[:] = root_state[1]
    for name, lg in list(logging.Logger.manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        if name in loggers:
            lg.disabled, level, handlers, lg.propagate = loggers[name]
            lg.setLevel(level)
            lg.handlers[:] = handlers
        else:
            lg.disabled = False


@pytest.fixture
def empty_database_url(tmp_path):
    """A database with no tables at all: a new SQLite file, or a new PostgreSQL database."""
    if not PG_URL:
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    server_url = sa.engine.make_url(PG_URL)
    if server_url.drivername == "postgresql":
        server_url = server_url.set(drivername="postgresql+psycopg")
    name = f"tracker_migrations_test_{os.getpid()}"
    server = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield server_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        server.dispose()


@pytest.fixture
def migrated_app(make_app, empty_database_url, _keep_logging):
    """An app on the empty database, upgraded to head, with its app context pushed."""
    app = make_app(SQLALCHEMY_DATABASE_URI=empty_database_url)
    with app.app_context():
        assert sa.inspect(_db.engine).get_table_names() == []
        flask_migrate.upgrade()
        yield app
        _db.session.remove()
        _db.engine.dispose()


def _diff(engine):
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, Base.metadata)


def test_upgrade_matches_models(migrated_app):
    engine = _db.engine
    tables = set(sa.inspect(engine).get_table_names())
    assert tables == APP_TABLES | {"alembic_version"}
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == tuple(_script().get_heads())
    diff = _diff(engine)
    assert diff == [], "migrations and models differ:\n" + "\n".join(map(str, diff))


def _insert_event(conn, hash_):
    conn.execute(sa.text(
        "INSERT INTO audit_event (created_at, actor_label, action, object_type, object_id, ip, outcome, "
        "prev_hash, hash) VALUES (:now, 'system', 'test.event', '', '', 'cli', 'success', :prev, :hash)"),
        {"now": datetime(2025, 1, 1, 12, 0), "prev": "0" * 64, "hash": hash_})


def test_audit_event_is_append_only_after_upgrade(migrated_app):
    engine = _db.engine
    with engine.begin() as conn:
        _insert_event(conn, "a" * 64)
        _insert_event(conn, "b" * 64)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET action = 'tampered' WHERE hash = :h"), {"h": "a" * 64})
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event WHERE hash = :h"), {"h": "b" * 64})
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM audit_event"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT action, hash FROM audit_event ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [("test.event", "a" * 64), ("test.event", "b" * 64)]


def test_downgrade_to_base_removes_everything(migrated_app):
    flask_migrate.downgrade(revision="base")
    engine = _db.engine
    inspector = sa.inspect(engine)
    left = set(inspector.get_table_names()) - {"alembic_version"}
    assert left == set()
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == ()
        if engine.dialect.name == "postgresql":
            functions = conn.execute(sa.text(
                "SELECT proname FROM pg_proc WHERE proname = 'audit_event_append_only'")).all()
            assert functions == []
            triggers = conn.execute(sa.text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")).all()
            assert triggers == []
        else:
            objects = conn.execute(sa.text(
                "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' "
                "AND name NOT LIKE '%alembic_version%'")).all()
            assert objects == []

    # And back up again: the downgrade left nothing that blocks a new upgrade.
    flask_migrate.upgrade()
    assert set(sa.inspect(engine).get_table_names()) == APP_TABLES | {"alembic_version"}
