"""T27: SIGKILL mid-upload and mid-write.

(a) A 20 MB PDF is uploaded and the gunicorn worker serving it is killed with SIGKILL at three moments:
    while the body is still arriving (streamed slowly in chunks), while the app writes the file into
    EVIDENCE_DIR/tmp, and the instant the finished blob appears in the store (before or after the row
    is committed). After the master has replaced the worker: integrity_check ok, no evidence row without
    its blob; after `flask evidence sweep --min-age-hours 0`: no blob without its row, no temp file, and
    the blob of a completed upload survives.
(b) The master and all its workers are SIGKILLed while 20 writers save status changes. After a restart:
    every change that was answered 303 is in the database (with its audit event), integrity_check ok,
    `flask audit verify` exits 0, and the server takes writes again.
"""
import hashlib
import http.client
import os
import signal
import threading
import time

from tests.reliability.conftest import OFFICERS, audit_verify, make_pdf, multipart, report

UPLOAD_BYTES = 20 * 1024 * 1024
CHUNK = 256 * 1024


def _evidence_url(d, req_id):
    return d.page(req_id) + "/evidence"


def _start_upload(d, session, req_id, content, title):
    """Open a connection and send the headers and the form fields; the caller streams the file."""
    session.read_version(d.page(req_id))  # fresh token
    head, tail, ctype = multipart({"csrf_token": session.token, "kind": "file", "title": title,
                                   "visibility": "restricted"}, "file", f"{title}.pdf", "application/pdf")
    conn = session.connection()
    conn.putrequest("POST", _evidence_url(d, req_id))
    conn.putheader("Content-Type", ctype)
    conn.putheader("Content-Length", str(len(head) + len(content) + len(tail)))
    conn.putheader("Cookie", session._cookie_header())
    conn.endheaders()
    conn.send(head)
    return conn, tail


def _finish(conn, content, tail, offset=0):
    """Send the rest; return the status, or the exception that ended the exchange."""
    try:
        for i in range(offset, len(content), CHUNK):
            conn.send(content[i:i + CHUNK])
        conn.send(tail)
        resp = conn.getresponse()
        resp.read()
        resp.close()
        return resp.status
    except OSError as exc:  # ConnectionResetError, BrokenPipeError, RemoteDisconnected, timeouts
        return type(exc).__name__
    finally:
        conn.close()


def _kill_serving_worker(d, conn):
    client_port = conn.sock.getsockname()[1]
    pid = d.server.worker_serving(client_port)
    victims = [pid] if pid else d.server.worker_pids()  # fall back to every worker if /proc hides it
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    return victims


def _wait_until(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.0005)
    return False


def test_kill_worker_mid_upload(deployment):
    d = deployment
    s = d.session(OFFICERS[0])
    req_id = d.req_ids[40]
    outcomes = {}

    # A completed upload first: its blob must survive everything below, including the sweep.
    done = make_pdf(2 * 1024 * 1024)
    conn, tail = _start_upload(d, s, req_id, done, "completed")
    outcomes["completed upload"] = _finish(conn, done, tail)
    assert outcomes["completed upload"] == 303
    kept_sha = hashlib.sha256(done).hexdigest()

    # 1. Killed while the body is still arriving (20 MB at ~8 MB/s; killed after ~5 MB).
    content = make_pdf(UPLOAD_BYTES)
    conn, tail = _start_upload(d, s, req_id, content, "killed-while-receiving")
    for i in range(0, 5 * 1024 * 1024, CHUNK):
        conn.send(content[i:i + CHUNK])
        time.sleep(CHUNK / (8 * 1024 * 1024))
    victims = _kill_serving_worker(d, conn)
    outcomes["killed while receiving"] = _finish(conn, content, tail, offset=5 * 1024 * 1024)
    d.server.wait_for_workers(exclude=victims)

    # 2. Killed while the app streams the file into EVIDENCE_DIR/tmp (the temp file is seen to exist).
    content = make_pdf(UPLOAD_BYTES)
    conn, tail = _start_upload(d, s, req_id, content, "killed-while-storing")
    pid = d.server.worker_serving(conn.sock.getsockname()[1])
    result = {}
    sender = threading.Thread(target=lambda: result.setdefault("status", _finish(conn, content, tail)))
    sender.start()
    seen_temp = _wait_until(lambda: bool(d.temp_files()), timeout=20)
    victims = [pid] if pid else d.server.worker_pids()
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    sender.join(timeout=30)
    outcomes["killed while storing"] = (result.get("status"), f"temp file seen: {seen_temp}",
                                        f"left: {len(d.temp_files())}")
    d.server.wait_for_workers(exclude=victims)

    # 3. Killed the moment the finished blob appears in the store (before or just after the commit).
    content = make_pdf(UPLOAD_BYTES)
    sha = hashlib.sha256(content).hexdigest()
    final = d.evidence_dir / sha[:2] / sha[2:4] / sha
    conn, tail = _start_upload(d, s, req_id, content, "killed-at-blob")
    pid = d.server.worker_serving(conn.sock.getsockname()[1])
    result = {}
    sender = threading.Thread(target=lambda: result.setdefault("status", _finish(conn, content, tail)))
    sender.start()
    seen_blob = _wait_until(final.exists, timeout=20)
    victims = [pid] if pid else d.server.worker_pids()
    for victim in victims:
        os.kill(victim, signal.SIGKILL)
    sender.join(timeout=30)
    row = d.scalar("SELECT count(*) FROM evidence WHERE sha256 = :s", s=sha)
    outcomes["killed at blob"] = (result.get("status"), f"blob seen: {seen_blob}", f"row committed: {bool(row)}")
    d.server.wait_for_workers(exclude=victims)

    report(f"T27a [{d.backend}] upload outcomes: {outcomes}")
    report(f"T27a [{d.backend}] before sweep: {len(d.blobs())} blob(s), {len(d.temp_files())} temp file(s)")

    # The server is healthy again, and the database is intact.
    assert d.server.healthy()
    assert d.integrity_check() in ("ok", None)
    rows = {sha for (sha,) in d.rows("SELECT sha256 FROM evidence WHERE sha256 IS NOT NULL")}
    blobs = d.blobs()
    assert rows <= set(blobs), f"evidence rows without their blob: {rows - set(blobs)}"
    for name, path in blobs.items():  # every stored blob is complete
        assert hashlib.sha256(path.read_bytes()).hexdigest() == name

    sweep = d.flask("evidence", "sweep", "--min-age-hours", "0")
    assert sweep.returncode == 0, sweep.stderr
    rows = {sha for (sha,) in d.rows("SELECT sha256 FROM evidence WHERE sha256 IS NOT NULL")}
    blobs = d.blobs()
    report(f"T27a [{d.backend}] sweep: {sweep.stdout.strip()} -> {len(blobs)} blob(s), {len(rows)} file row(s), "
           f"{len(d.temp_files())} temp file(s)")
    assert set(blobs) == rows, f"blobs without rows: {set(blobs) - rows}; rows without blobs: {rows - set(blobs)}"
    assert kept_sha in blobs
    assert d.temp_files() == []
    # The completed upload still downloads.
    evidence_id = d.scalar("SELECT id FROM evidence WHERE sha256 = :s ORDER BY id LIMIT 1", s=kept_sha)
    r = s.get(f"/agencies/reliability-pd/evidence/{evidence_id}/download")
    assert r.status == 200 and hashlib.sha256(r.body).hexdigest() == kept_sha


def test_kill_master_during_status_writes(deployment):
    d = deployment
    targets = d.req_ids[20:40]  # one requirement per writer: no conflicts, every save should land
    sessions = [d.session(OFFICERS[i % 2]) for i in range(2)]
    for s in sessions:
        s.frozen = True  # shared by ten threads each: send the cookies as they are, never update them
    versions = {r: sessions[0].read_version(d.page(r)) for r in targets}
    statuses = ("in_progress", "implemented")

    lock = threading.Lock()
    acknowledged, unanswered, other = [], [], []
    go = threading.Barrier(len(targets) + 1, timeout=30)

    def writer(n, req_id):
        s = sessions[n % 2]
        version = versions[req_id]
        try:
            go.wait()
        except threading.BrokenBarrierError:
            return
        for k in range(10_000):
            note = f"crash writer {n} save {k}"
            try:
                r = s.post(d.page(req_id) + "/status", {"status": statuses[k % 2], "note": note,
                                                        "row_version": version})
            except (OSError, http.client.HTTPException) as exc:  # killed mid-request or mid-answer
                with lock:
                    unanswered.append((req_id, note, type(exc).__name__))
                return
            with lock:
                if r.status == 303:
                    acknowledged.append((req_id, note))
                else:
                    other.append((req_id, note, r.status))
            if r.status != 303:
                return
            version += 1

    threads = [threading.Thread(target=writer, args=(n, r), daemon=True) for n, r in enumerate(targets)]
    for t in threads:
        t.start()
    go.wait()
    # Kill once writes are flowing (at least one answered per writer on average, or after 10 s).
    deadline = time.monotonic() + 10
    while len(acknowledged) < len(targets) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    try:
        killed = d.server.kill_all()
        for t in threads:
            t.join(timeout=60)
        assert not any(t.is_alive() for t in threads)
        assert not d.server.healthy()
    finally:
        d.server.start()
    report(f"T27b [{d.backend}] SIGKILL master + {len(killed) - 1} workers during {len(targets)} concurrent writers: "
           f"{len(acknowledged)} saves answered 303, {len(unanswered)} cut off, other answers {other[:3]}")
    assert not other, other
    assert acknowledged, "the kill came before any write was answered"

    notes = {(r, n) for r, n in d.rows("SELECT requirement_id, note FROM status_change WHERE note LIKE 'crash %'")}
    missing = [a for a in acknowledged if a not in notes]
    assert not missing, f"acknowledged saves lost: {missing}"
    landed_unanswered = sum(1 for r, n, _ in unanswered if (r, n) in notes)
    report(f"T27b [{d.backend}] after restart: all {len(acknowledged)} acknowledged saves present; "
           f"{landed_unanswered} of {len(unanswered)} cut-off saves had committed")
    for req_id in targets:  # history, version and audit trail agree for every requirement
        changes = d.scalar("SELECT count(*) FROM status_change WHERE requirement_id = :r", r=req_id)
        version = d.scalar("SELECT row_version FROM requirement WHERE id = :r", r=req_id)
        audits = d.scalar("SELECT count(*) FROM audit_event WHERE action = 'requirement.status' "
                          "AND object_type = 'requirement' AND object_id = :r", r=str(req_id))
        assert version == versions[req_id] + changes == 1 + changes, (req_id, version, changes)
        assert audits == changes, (req_id, audits, changes)
    assert d.integrity_check() in ("ok", None)
    code, output = audit_verify(d)
    report(f"T27b [{d.backend}] audit verify: exit {code}: {output}")
    assert code == 0, output

    # And it takes writes again.
    s = d.session(OFFICERS[0])
    page = d.page(targets[0])
    r = s.post(page + "/status", {"status": "not_applicable", "note": "after the crash",
                                  "row_version": s.read_version(page)})
    assert r.status == 303
