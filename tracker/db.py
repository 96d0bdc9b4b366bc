"""Database engine tuning.

SQLite: WAL, foreign keys, busy timeout, durable commits. pysqlite's deferred transactions fail
at once with "database is locked" when a reader later writes, and busy_timeout does not help
there, so we emit BEGIN ourselves: BEGIN IMMEDIATE for anything that may write (non-GET
requests, CLI commands), plain BEGIN for page reads.
"""
import sqlite3

import sqlalchemy as sa
from flask import has_request_context, request
from sqlalchemy.engine import Engine


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


@sa.event.listens_for(Engine, "begin")
def _sqlite_on_begin(conn):
    if conn.dialect.name != "sqlite":
        return
    read_only = has_request_context() and request.method in ("GET", "HEAD", "OPTIONS")
    conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
