"""Database engine tuning.

SQLite: WAL, foreign keys, busy timeout, durable commits. pysqlite's deferred transactions fail
at once with "database is locked" when a reader later writes, and busy_timeout does not help
there, so we emit BEGIN ourselves: BEGIN IMMEDIATE for anything that may write (non-GET
requests, CLI commands), plain BEGIN for page reads.
"""
import contextvars
import sqlite3

import sqlalchemy as sa
from flask import has_request_context, request
from sqlalchemy.engine import Engine

# How transactions begin outside a request (CLI, background jobs). Tests set plain "BEGIN" so a
# test's own reads never hold the write lock while the app under test writes.
outside_request_begin = contextvars.ContextVar("outside_request_begin", default="BEGIN IMMEDIATE")


@sa.event.listens_for(Engine, "connect")
def _sqlite_on_connect(dbapi_connection, connection_record):
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.close()
    # SQLite's lower() folds ASCII only; searches must match "Évaluation" as PostgreSQL does.
    dbapi_connection.create_function("lower", 1, _unicode_lower, deterministic=True)


@sa.event.listens_for(Engine, "connect")
def _postgresql_on_connect(dbapi_connection, connection_record):
    # A write that would wait longer than SQLite's busy timeout for a row or table lock fails instead,
    # and the app answers "busy, try again" (503) rather than holding a worker for as long as it takes.
    if type(dbapi_connection).__module__.startswith("psycopg"):
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '5s'")
        dbapi_connection.commit()


def _unicode_lower(value):
    return value.lower() if isinstance(value, str) else value


@sa.event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn):
    if conn.dialect.name != "sqlite":
        return
    if has_request_context():
        statement = "BEGIN" if request.method in ("GET", "HEAD", "OPTIONS") else "BEGIN IMMEDIATE"
    else:
        statement = outside_request_begin.get()
    conn.exec_driver_sql(statement)


# PostgreSQL: a page read ends its transaction with COMMIT, not ROLLBACK. psycopg forgets its prepared statements on
# every rollback, and every GET ended in one (Flask-SQLAlchemy closes the session with a rollback), so no statement
# was ever prepared: PostgreSQL parsed and planned each of a page's 15-30 statements again on every request (the
# board's row query alone: 2.7 ms of planning). Committing a transaction that wrote nothing is the same as rolling
# it back; a transaction that wrote anything still ends as before.
READ_METHODS = ("GET", "HEAD", "OPTIONS")


@sa.event.listens_for(Engine, "begin")
def _note_begin(conn):
    conn.info["wrote"] = False


@sa.event.listens_for(Engine, "before_cursor_execute")
def _note_write(conn, cursor, statement, parameters, context, executemany):
    if statement.lstrip()[:6].upper() != "SELECT":  # a WITH ... SELECT counts as a write: the safe side
        conn.info["wrote"] = True


def end_read_transaction(error):
    """Request teardown (before Flask-SQLAlchemy's app-context teardown removes the session): commit a GET's
    PostgreSQL transaction when it only read and the request did not fail; anything else is rolled back by the
    session's removal, as before."""
    from tracker.extensions import db

    if error is not None or not has_request_context() or request.method not in READ_METHODS:
        return
    session = db.session()  # the request's Session (db.session is its scoped proxy)
    if not session.in_transaction() or session.new or session.dirty or session.deleted:
        return
    connection = session.connection()
    if connection.dialect.name == "postgresql" and not connection.info.get("wrote", True):
        # Without expiring what the view loaded: a streamed response (the CSV export) reads those objects after
        # this teardown, as it did after the session's removal, which detaches them but keeps their values.
        session.expire_on_commit = False
        try:
            session.commit()
        finally:
            session.expire_on_commit = True
