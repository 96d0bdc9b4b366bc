"""T29: `flask --app wsgi backup DIR` under ~10 writes/s, then a restore proves the copy.

While a writer saves ~10 status changes and comments a second for ~5 s over HTTP, the backup runs as
a separate process with the server's environment. Restore: for SQLite, open DIR/database.sqlite3 -
integrity_check ok, `flask audit verify` against it exits 0; for PostgreSQL, pg_restore
DIR/database.pgdump into a new database, verify the audit chain there, drop it. Either way every blob
in DIR/evidence matches its SHA-256 name, every file row of the copy has its blob in DIR/evidence, and
the copy holds the audit head named in the manifest.
"""
import hashlib
import json
import shutil
import sqlite3
import subprocess
import threading
import time
import uuid

import pytest
import sqlalchemy as sa

from tests.reliability.conftest import (
    FLASK,
    OFFICERS,
    PG_URL,
    ROOT,
    audit_verify,
    build_database,
    libpq_url,
    make_pdf,
    multipart,
    report,
    server_env,
)

RATE = 10  # writes per second
DURATION = 5.0


def _upload(d, s, req_id, content, title):
    s.read_version(d.page(req_id))
    head, tail, ctype = multipart({"csrf_token": s.token, "kind": "file", "title": title,
                                   "visibility": "shareable"}, "file", f"{title}.pdf", "application/pdf")
    r = s.request("POST", d.page(req_id) + "/evidence", body=head + content + tail,
                  headers={"Content-Type": ctype})
    assert r.status == 303, r.text[:300]


def _writer(d, stop, answers, errors):
    s = d.session(OFFICERS[1])
    req_id = d.req_ids[45]
    page = d.page(req_id)
    n = 0
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            if n % 2:
                r = s.post(page + "/comments", {"body": f"backup load comment {n}"})
            else:
                version = s.read_version(page)
                r = s.post(page + "/status", {"status": ("in_progress", "implemented")[(n // 2) % 2],
                                              "note": f"backup load {n}", "row_version": version})
            answers.append((r.status, r.seconds))
            n += 1
            next_at += 1 / RATE
            time.sleep(max(0.0, next_at - time.monotonic()))
    except Exception as exc:
        errors.append(repr(exc))


def _check_blobs(d, target, shas):
    blobs = d.blobs(target / "evidence")
    for name, path in blobs.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name, f"blob {name} does not match its hash"
    missing = set(shas) - set(blobs)
    assert not missing, f"file rows in the backup without a blob in DIR/evidence: {missing}"
    return len(blobs)


def _audit_head(engine):
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT id, hash FROM audit_event ORDER BY id DESC LIMIT 1")).first()
        conn.rollback()
    return {"id": row[0], "hash": row[1]} if row else None


def test_backup_under_load_restores(deployment, tmp_path):
    d = deployment
    s = d.session(OFFICERS[0])
    for i in range(3):  # some evidence files to copy
        _upload(d, s, d.req_ids[46], make_pdf(256 * 1024 + i), f"backup-evidence-{i}")

    stop, answers, errors = threading.Event(), [], []
    writer = threading.Thread(target=_writer, args=(d, stop, answers, errors), daemon=True)
    writer.start()
    time.sleep(1.5)
    target = tmp_path / "backup"
    started = time.perf_counter()
    result = d.flask("backup", str(target))
    backup_seconds = time.perf_counter() - started
    time.sleep(max(0.0, DURATION - 1.5 - backup_seconds))
    stop.set()
    writer.join(timeout=30)
    assert not writer.is_alive()

    statuses = [a for a, _ in answers]
    worst = max((t for _, t in answers), default=0)
    report(f"T29 [{d.backend}] backup in {backup_seconds:.1f} s (exit {result.returncode}) during "
           f"{len(answers)} writes at ~{RATE}/s: answers {sorted(set(statuses))}, slowest write {worst * 1000:.0f} ms; "
           f"{result.stdout.strip()}")
    assert result.returncode == 0, result.stderr
    assert not errors, errors
    assert all(code == 303 for code in statuses), statuses
    assert len(answers) >= RATE * DURATION * 0.6
    manifest = json.loads((target / "manifest.json").read_text())

    if d.backend == "sqlite":
        copy = target / "database.sqlite3"
        assert d.integrity_check(copy) == "ok"
        code, output = audit_verify(d, DATABASE_URL=f"sqlite:///{copy}", EVIDENCE_DIR=str(target / "evidence"))
        engine = sa.create_engine(f"sqlite:///{copy}", poolclass=sa.pool.NullPool)
        try:
            with engine.connect() as conn:
                shas = conn.execute(sa.text("SELECT sha256 FROM evidence WHERE sha256 IS NOT NULL")).scalars().all()
                conn.rollback()
            head = _audit_head(engine)
        finally:
            engine.dispose()
    else:
        code, output, shas, head = _restore_postgres(d, target / "database.pgdump")
    blob_count = _check_blobs(d, target, shas)
    report(f"T29 [{d.backend}] restore: audit verify exit {code} ({output}); {blob_count} blob(s) verified; "
           f"manifest head #{manifest['audit_head']['id']}, copy head #{head['id'] if head else '-'}")
    assert code == 0, output
    assert len(shas) >= 3
    assert head is not None and head["id"] >= manifest["audit_head"]["id"]
    if d.backend == "sqlite":  # the SQLite copy is read before the manifest head, so they are the same event
        assert head == manifest["audit_head"]


def _restore_postgres(d, dump):
    pg_restore = shutil.which("pg_restore")
    if pg_restore is None:
        pytest.fail("pg_restore is not installed (Debian package postgresql-client)")
    name = f"{sa.engine.make_url(d.database_url).database}_restore_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(d.database_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        try:
            restored = subprocess.run([pg_restore, "--no-owner", "--exit-on-error",  # noqa: S603
                                       f"--dbname={libpq_url(d.database_url, name)}", str(dump)],
                                      capture_output=True, text=True, timeout=300, check=False)
            assert restored.returncode == 0, restored.stderr
            url = sa.engine.make_url(d.database_url).set(database=name).render_as_string(hide_password=False)
            code, output = audit_verify(d, DATABASE_URL=url)
            engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
            try:
                with engine.connect() as conn:
                    shas = conn.execute(sa.text("SELECT sha256 FROM evidence WHERE sha256 IS NOT NULL")).scalars().all()
                    conn.rollback()
                head = _audit_head(engine)
            finally:
                engine.dispose()
            return code, output, shas, head
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        admin.dispose()


LARGE_DB_MB = 150


@pytest.mark.skipif(bool(PG_URL), reason="the SQLite backup path; covered by the SQLite run")
def test_backup_of_a_larger_sqlite_database_finishes_under_10_writes_per_second(tmp_path):
    """~150 MB SQLite database, one write every 100 ms from another connection (as gunicorn's workers do).

    Idle, `flask backup` copies it in about a second; under the writes it must still finish (we allow 12 s).
    """
    db_file = tmp_path / "large.db"
    url = f"sqlite:///{db_file}"
    req_ids, _ = build_database(url, tmp_path / "evidence")
    conn = sqlite3.connect(db_file, isolation_level=None, timeout=30)
    try:
        user_id = conn.execute("SELECT id FROM user_account ORDER BY id LIMIT 1").fetchone()[0]
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows) "
                     "INSERT INTO comment (requirement_id, author_id, body, created_at) "
                     "SELECT :req, :user, printf('%.1000c', 'x'), '2025-01-01 00:00:00' FROM n",
                     {"rows": LARGE_DB_MB * 1000, "req": req_ids[0], "user": user_id})
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    env = server_env(url, tmp_path / "evidence")
    flask = [str(FLASK), "--app", "wsgi", "backup"]

    started = time.perf_counter()
    idle = subprocess.run([*flask, str(tmp_path / "idle")], cwd=ROOT, env=env, capture_output=True,  # noqa: S603
                          text=True, timeout=120, check=False)
    idle_seconds = time.perf_counter() - started
    assert idle.returncode == 0, idle.stderr

    stop = threading.Event()
    writes = []

    def writer():
        w = sqlite3.connect(db_file, isolation_level=None, timeout=30)
        try:
            while not stop.is_set():
                w.execute("BEGIN IMMEDIATE")
                w.execute("INSERT INTO comment (requirement_id, author_id, body, created_at) "
                          "VALUES (?, ?, 'during backup', '2025-01-01 00:00:00')", (req_ids[1], user_id))
                w.execute("COMMIT")
                writes.append(time.monotonic())
                stop.wait(1 / RATE)
        finally:
            w.close()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    started = time.perf_counter()
    try:
        loaded = subprocess.run([*flask, str(tmp_path / "loaded")], cwd=ROOT, env=env,  # noqa: S603
                                capture_output=True, text=True, timeout=12, check=False)
        outcome = f"exit {loaded.returncode}"
    except subprocess.TimeoutExpired:
        loaded, outcome = None, "still copying after 12 s (killed)"
    finally:
        loaded_seconds = time.perf_counter() - started
        stop.set()
        thread.join(timeout=30)
    size_mb = db_file.stat().st_size / 1e6
    for path in tmp_path.glob("large.db*"):  # do not leave 200 MB behind in pytest's kept temp folders
        path.unlink()
    shutil.rmtree(tmp_path / "idle", ignore_errors=True)
    shutil.rmtree(tmp_path / "loaded", ignore_errors=True)
    report(f"T29b [sqlite] {size_mb:.0f} MB database: backup idle {idle_seconds:.1f} s; under {RATE} writes/s "
           f"({len(writes)} writes): {outcome} after {loaded_seconds:.1f} s")
    assert loaded is not None and loaded.returncode == 0


@pytest.mark.skipif(bool(PG_URL), reason="the SQLite backup path; covered by the SQLite run")
def test_sqlite_backup_does_not_hold_the_write_lock_while_copying_files(tmp_path):
    """No other writer runs: any moment the write lock is unavailable during `flask backup` is the backup's.

    20 MB of evidence and 100 MB of not-yet-synced data elsewhere (os.sync() has to flush it). Reading the
    list of files needs a read, not the write lock; we allow 25 ms of lock for it.
    """
    db_file = tmp_path / "locks.db"
    url = f"sqlite:///{db_file}"
    evidence = tmp_path / "evidence"
    req_ids, _ = build_database(url, evidence)
    conn = sqlite3.connect(db_file, isolation_level=None, timeout=30)
    try:
        user_id = conn.execute("SELECT id FROM user_account ORDER BY id LIMIT 1").fetchone()[0]
        for i in range(5):
            data = make_pdf(4 * 1024 * 1024 + i)
            sha = hashlib.sha256(data).hexdigest()
            path = evidence / sha[:2] / sha[2:4] / sha
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            conn.execute("INSERT INTO evidence (requirement_id, kind, title, description, visibility, sha256, "
                         "size_bytes, review_state, superseded, uploaded_by_id, created_at) VALUES "
                         "(?, 'file', ?, '', 'restricted', ?, ?, 'submitted', 0, ?, '2025-01-01 00:00:00')",
                         (req_ids[0], f"file {i}", sha, len(data), user_id))
    finally:
        conn.close()

    stop = threading.Event()
    held = []

    def probe():
        p = sqlite3.connect(db_file, isolation_level=None, timeout=0)  # fail at once when locked
        since = None
        try:
            while not stop.is_set():
                try:
                    p.execute("BEGIN IMMEDIATE")
                    p.execute("ROLLBACK")
                    if since is not None:
                        held.append(time.perf_counter() - since)
                        since = None
                except sqlite3.OperationalError:
                    since = since or time.perf_counter()
                time.sleep(0.001)
            if since is not None:
                held.append(time.perf_counter() - since)
        finally:
            p.close()

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    with open(tmp_path / "unsynced.bin", "wb") as fh:
        fh.write(b"\xa5" * (100 * 1024 * 1024))
    try:
        result = subprocess.run([str(FLASK), "--app", "wsgi", "backup", str(tmp_path / "backup")],  # noqa: S603
                                cwd=ROOT, env=server_env(url, evidence), capture_output=True, text=True,
                                timeout=120, check=False)
    finally:
        stop.set()
        thread.join(timeout=30)
        (tmp_path / "unsynced.bin").unlink()
    longest = max(held, default=0.0)
    report(f"T29c [sqlite] `flask backup` with 20 MB of evidence: write lock unavailable {len(held)} time(s), "
           f"longest {longest * 1000:.0f} ms (no other writer running)")
    assert result.returncode == 0, result.stderr
    assert longest < 0.025
