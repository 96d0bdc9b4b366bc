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
