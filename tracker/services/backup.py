"""Consistent backups: the database (SQLite online backup API, or pg_dump for PostgreSQL) plus the
evidence blobs (content-addressed, so copying them is idempotent) and a manifest to check against."""
import json
import os
import shutil
import sqlite3
import subprocess  # noqa: S404 - pg_dump is called with a fixed argument list, never a shell
from pathlib import Path

import sqlalchemy as sa

from tracker.db import outside_request_begin
from tracker.extensions import db
from tracker.models import AuditEvent, utcnow
from tracker.services import checkpoints
from tracker.services.evidence import referenced_blobs
from tracker.storage import copy_blob, get_store


class BackupError(RuntimeError):
    pass


def _libpq_url(url):
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def backup(target):
    """Write DIR/database.sqlite3 (or DIR/database.pgdump), DIR/evidence/ and DIR/manifest.json."""
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise BackupError(f"{target} exists and is not empty; choose a new folder.")
    target.mkdir(parents=True, exist_ok=True)
    url = db.engine.url
    backend = url.get_backend_name()
    if backend == "sqlite":
        db_file, head = _copy_sqlite(url, target / "database.sqlite3")
    elif backend == "postgresql":
        db_file, head = _dump_postgresql(url, target / "database.pgdump")
    else:
        raise BackupError(f"backups of {backend} databases are not supported")
    copied = _copy_evidence(target / "evidence")
    manifest = {
        "created_at": utcnow().isoformat() + "Z", "database": db_file.name, "backend": backend,
        "evidence_files": copied, "audit_head": {"id": head[0], "hash": head[1]} if head else None,
        # The copy's own head, signed (not stored in the live database: no write during the backup).
        "audit_checkpoint": checkpoints.unstored("backup", *head) if head else None,
    }
    (target / "manifest.json").write_text(json.dumps(manifest, indent=2))
    os.sync()
    return manifest


def _copy_sqlite(url, db_file):
    """The SQLite online backup of the whole database, checked; returns (file, newest audit event)."""
    source = sqlite3.connect(url.database)
    dest = sqlite3.connect(db_file)
    try:
        # One step (pages=-1): the copy is taken inside a single read transaction, so writers
        # keep working and cannot restart it (a stepwise copy restarts after every write).
        source.backup(dest, pages=-1)
        check = dest.execute("PRAGMA integrity_check").fetchone()[0]
        head = dest.execute("SELECT id, hash, (SELECT count(*) FROM audit_event) FROM audit_event "
                            "ORDER BY id DESC LIMIT 1").fetchone()
    finally:
        dest.close()
        source.close()
    if check != "ok":
        raise BackupError(f"integrity check of the copy failed: {check}")
    return db_file, head


def _dump_postgresql(url, db_file):
    """pg_dump in its custom format; returns (file, an audit event the dump holds at least)."""
    # Read before the dump starts: the chain only grows, so the dump holds at least this event.
    head = db.session.execute(
        sa.select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()
    if head is not None:
        head = (*head, db.session.execute(sa.select(sa.func.count()).select_from(AuditEvent)
                                         .where(AuditEvent.id <= head[0])).scalar())
    db.session.rollback()
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        raise BackupError("pg_dump is not installed (Debian package postgresql-client).")
    result = subprocess.run([pg_dump, "--format=custom", f"--file={db_file}", _libpq_url(url)],  # noqa: S603
                            capture_output=True, text=True, timeout=3600, check=False)
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()[:500]}")
    return db_file, head


def _copy_evidence(folder):
    """Copy the blobs the database refers to at (or after) the snapshot; returns how many were copied.
    A blob written later is harmless."""
    # Read the references in a plain (shared) transaction and end it before the slow file copying.
    token = outside_request_begin.set("BEGIN")
    try:
        shas = referenced_blobs()
        db.session.rollback()
    finally:
        outside_request_begin.reset(token)
    store = get_store()
    copied = 0
    for sha in sorted(shas):
        if store.exists(sha):
            copy_blob(store, sha, folder / sha[:2] / sha[2:4] / sha)
            copied += 1
    return copied
