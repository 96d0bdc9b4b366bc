"""Signed checkpoints: the audit chain's head anchored outside the database (issue 19).

A checkpoint signs (event id, event hash, number of events, time, reason, database) with the Ed25519 key of
tracker/signing.py. It is stored in audit_checkpoint (append-only, like audit_event), written as a JSON file
to AUDIT_CHECKPOINT_DIR, and put into period reports, evidence packages and backup manifests, where
monitors keep it. `flask audit verify` then checks that the chain still reaches every checkpoint's event
with the same hash and count: deleting the newest events, truncating the table or recomputing every hash
with the app's own function no longer verifies.

Made: in the filing of a monitoring period (in its transaction), by `flask audit checkpoint`, from each
backup's copy (not stored), and, in transactions of their own (tracker/anchoring.py, as a service never
commits), for each period report and evidence package when the head moved since the newest checkpoint and at
least every AUDIT_CHECKPOINT_MINUTES while there are events no checkpoint covers.
"""
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app

from tracker import signing
from tracker.extensions import db
from tracker.models import AuditCheckpoint, AuditEvent, utcnow

FORMAT = "decree-tracker-audit-checkpoint/1"
REASONS = ("manual", "hourly", "period_filed", "backup", "report", "evidence_package")
# Signed from a backup's own copy, never stored as a row (a write on the live database would take SQLite's write
# lock during the copy): the manifest and AUDIT_CHECKPOINT_DIR keep them.
UNSTORED = ("backup",)
log = logging.getLogger("tracker.security")
_PENDING = "audit_checkpoint_files"


def enabled():
    return current_app.config.get("AUDIT_PRIVATE_KEY") is not None


def database_label(url=None):
    """Which database a checkpoint belongs to, without user or password (the app and the owner connect as
    different roles to the same one)."""
    url = url or db.engine.url
    if url.get_backend_name() == "sqlite":
        return f"sqlite:///{Path(url.database).resolve()}" if url.database else "sqlite://"
    return f"postgresql://{url.host or ''}:{url.port or 5432}/{url.database}"


def _private_key():
    return current_app.config["AUDIT_PRIVATE_KEY"]


def signed_fields(doc):
    """The canonical bytes a signature covers."""
    fields = {k: doc[k] for k in ("format", "created_at", "event_id", "event_hash", "event_count", "reason",
                                  "database", "key_id")}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode("utf-8")


def document(checkpoint):
    """The checkpoint as a monitor keeps it (and as `flask audit verify` reads it back)."""
    doc = {
        "format": FORMAT, "created_at": checkpoint.created_at.isoformat(timespec="microseconds") + "Z",
        "event_id": checkpoint.event_id, "event_hash": checkpoint.event_hash, "event_count": checkpoint.event_count,
        "reason": checkpoint.reason, "database": checkpoint.database, "key_id": checkpoint.key_id,
        "signature": checkpoint.signature,
    }
    if enabled() and checkpoint.key_id == signing.key_id(_private_key().public_key()):
        doc["public_key"] = signing.public_text(_private_key().public_key())
    return doc


def public_key():
    """(key id, base64 public key) of the signing key, or None while checkpoints are off."""
    if not enabled():
        return None
    key = _private_key().public_key()
    return signing.key_id(key), signing.public_text(key)


def head_of(session):
    return session.execute(sa.select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)).first()


def latest(session=None):
    session = session or db.session
    return session.execute(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.id.desc()).limit(1)).scalar_one_or_none()


def sign_head(session, reason):
    head = head_of(session)
    if head is None:
        return None
    count = session.execute(sa.select(sa.func.count()).select_from(AuditEvent).where(AuditEvent.id <= head.id)).scalar()
    key = _private_key()
    checkpoint = AuditCheckpoint(created_at=utcnow(), event_id=head.id, event_hash=head.hash, event_count=count,
                                 reason=reason, database=database_label(), key_id=signing.key_id(key.public_key()),
                                 signature="")
    checkpoint.signature = signing.sign(key, signed_fields(document(checkpoint)))
    session.add(checkpoint)
    session.flush()
    session.info.setdefault(_PENDING, []).append(document(checkpoint))
    return checkpoint


def make(reason):
    """A checkpoint of the head in the caller's transaction (e.g. the filing of a period), or None when
    checkpoints are off or there is no event. Its file is written once the transaction commits."""
    if reason not in REASONS:
        raise ValueError(f"unknown checkpoint reason {reason!r}")
    if not enabled():
        return None
    return sign_head(db.session, reason)


def unstored(reason, event_id, event_hash, event_count):
    """A signed document of a head read elsewhere (a backup's copy), written to AUDIT_CHECKPOINT_DIR at once."""
    if reason not in UNSTORED:
        raise ValueError(f"{reason!r} checkpoints are stored in the table")
    if not enabled() or event_id is None:
        return None
    key = _private_key()
    checkpoint = AuditCheckpoint(created_at=utcnow(), event_id=event_id, event_hash=event_hash,
                                 event_count=event_count, reason=reason, database=database_label(),
                                 key_id=signing.key_id(key.public_key()), signature="")
    checkpoint.signature = signing.sign(key, signed_fields(document(checkpoint)))
    doc = document(checkpoint)
    write_file(doc)
    return doc


def due(session=None, now=None):
    """True when an event older than AUDIT_CHECKPOINT_MINUTES is not covered by any checkpoint."""
    session = session or db.session
    now = now or utcnow()
    covered = session.execute(sa.select(sa.func.max(AuditCheckpoint.event_id))).scalar() or 0
    oldest = session.execute(sa.select(sa.func.min(AuditEvent.created_at)).where(AuditEvent.id > covered)).scalar()
    interval = timedelta(minutes=current_app.config["AUDIT_CHECKPOINT_MINUTES"])
    return oldest is not None and now - oldest >= interval


# --- files outside the database --------------------------------------------------------------------------

def file_name(doc):
    stamp = doc["created_at"].replace("-", "").replace(":", "").replace(".", "")[:15]
    return f"checkpoint-{stamp}-event-{doc['event_id']}-{doc['signature'][:12]}.json"


def write_file(doc, folder=None):
    """Write one checkpoint file (never replacing one); returns its path, or None when it could not be written.
    A failure is logged as a security event: the anchor outside the database is missing (CJIS AU-5)."""
    folder = Path(folder or current_app.config["AUDIT_CHECKPOINT_DIR"])
    path = folder / file_name(doc)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
    except FileExistsError:
        return path
    except OSError as exc:
        log.error(json.dumps({"event": "audit.checkpoint_file_failed", "folder": str(folder), "error": str(exc),
                              "event_id": doc["event_id"]}))
        return None
    return path


@sa.event.listens_for(so.Session, "after_commit")
def _write_pending_files(session):
    for doc in session.info.pop(_PENDING, []):
        write_file(doc)


@sa.event.listens_for(so.Session, "after_soft_rollback")
def _forget_pending_files(session, previous_transaction):
    if previous_transaction.parent is None:  # the outermost transaction rolled back: none of them exists
        session.info.pop(_PENDING, None)


def read_files(folder):
    """(path, document) of every checkpoint file in folder; unreadable ones as (path, None)."""
    found = []
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        try:
            found.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            found.append((path, None))
    return found


# --- verification -----------------------------------------------------------------------------------------

@dataclass
class Report:
    """What `flask audit verify` found. `problems` is empty when everything verified."""

    checked: int = 0
    last_event_id: int | None = None
    checkpoints: int = 0
    newest: dict | None = None
    problems: list = field(default_factory=list)
    bad_event_id: int | None = None
    notes: list = field(default_factory=list)

    @property
    def ok(self):
        return not self.problems


def trusted_keys(extra=()):
    """{key id: public key}: the signing key, AUDIT_PUBLIC_KEYS and keys given on the command line."""
    keys = {}
    if enabled():
        public = _private_key().public_key()
        keys[signing.key_id(public)] = public
    for text in [*current_app.config.get("AUDIT_PUBLIC_KEYS", []), *extra]:
        public = signing.parse_public(text)
        keys[signing.key_id(public)] = public
    return keys


def _signature_problem(doc, keys):
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return f"not a checkpoint (format {FORMAT!r} expected)"
    try:
        message = signed_fields(doc)
        int(doc["event_id"]), int(doc["event_count"])
        signature = str(doc["signature"])
    except (KeyError, TypeError, ValueError):
        return "not a checkpoint (fields missing)"
    key = keys.get(doc["key_id"])
    if key is None:
        return (f"signed by key {doc['key_id']}, which is not trusted here (give its public key with --public-key, "
                "or list it in AUDIT_PUBLIC_KEYS)")
    if not signing.verifies(key, message, signature):
        return "its signature does not verify: the checkpoint was altered or forged"
    return None


def _key(doc):
    """Copies of one checkpoint are checked once; a copy that differs in anything is checked on its own."""
    return json.dumps({k: v for k, v in doc.items() if k != "public_key"}, sort_keys=True, default=str)


def _label(doc):
    return f"checkpoint of {doc['created_at'][:19].replace('T', ' ')} UTC ({doc['reason']}, event #{doc['event_id']})"


def _collect(report, keys, given):
    """Every checkpoint known for this database, signature checked: the table's rows, the files in
    AUDIT_CHECKPOINT_DIR and the files given. A file whose checkpoint is not in the table means rows were
    deleted. Returns [(event_id, document)] in event order."""
    label = database_label()
    docs, in_table = {}, set()
    for row in db.session.execute(sa.select(AuditCheckpoint).order_by(AuditCheckpoint.id)).scalars():
        doc = document(row)
        docs[_key(doc)] = (doc, f"checkpoint row #{row.id}")
        in_table.add(doc["signature"])
    folder = current_app.config.get("AUDIT_CHECKPOINT_DIR")
    files = [(path, doc, False) for path, doc in (read_files(folder) if folder else [])]
    files += [(Path(path), doc, True) for path, doc in given]
    for path, doc, named in files:
        if doc is None:
            report.problems.append(f"{path}: not a readable checkpoint file")
            continue
        if doc.get("database") != label and not named:
            continue  # another installation's checkpoint in a shared folder
        docs.setdefault(_key(doc), (doc, f"file {path}"))
        if doc.get("database") == label and doc.get("signature") not in in_table \
                and doc.get("reason") not in UNSTORED and not _signature_problem(doc, keys):
            report.problems.append(f"{_label(doc)} in {path} is missing from the database: audit_checkpoint rows "
                                   "were deleted")
    valid = []
    for doc, source in docs.values():
        problem = _signature_problem(doc, keys)
        if problem:
            report.problems.append(f"{source}: {problem}")
        else:
            valid.append((int(doc["event_id"]), doc))
    return sorted(valid, key=lambda item: item[0])


def _check_event(report, event, pending, state):
    """Compare one event of the walk with the checkpoints at or before it. False stops the walk."""
    while pending and pending[0][0] < event.id:
        _, doc = pending.pop(0)
        report.bad_event_id = doc["event_id"]
        report.problems.append(f"event #{doc['event_id']} is missing: the {_label(doc)} signed it with hash "
                               f"{doc['event_hash'][:16]}…, and the chain goes from #{state['last_id']} to #{event.id}")
        return False
    while pending and pending[0][0] == event.id:
        _, doc = pending.pop(0)
        if event.hash != doc["event_hash"] or report.checked != int(doc["event_count"]):
            report.bad_event_id = event.id
            what = (f"{int(doc['event_count']) - report.checked} event(s) before it were removed"
                    if report.checked != int(doc["event_count"]) else "its hash differs")
            report.problems.append(
                f"event #{event.id} does not match the {_label(doc)}: {what}, so the chain was rewritten and every "
                f"hash recomputed. The first changed or missing event is after #{state['good']} (the newest event "
                f"a checkpoint still confirms) and at or before #{event.id}")
            return False
        state["good"] = event.id
    return True


def verify(given=(), extra_keys=(), batch_size=1000):
    """Walk the chain and hold it against every checkpoint. Returns a Report naming the first missing,
    altered or truncated event."""
    from tracker.services.audit import GENESIS, compute_hash, event_payload

    report = Report()
    pending = _collect(report, trusted_keys(extra_keys), given)
    report.checkpoints = len(pending)
    report.newest = max((doc for _, doc in pending), key=lambda d: int(d["event_id"]), default=None)
    state = {"last_id": 0, "good": 0}
    prev_hash = GENESIS
    while True:
        events = db.session.execute(sa.select(AuditEvent).where(AuditEvent.id > state["last_id"])
                                    .order_by(AuditEvent.id).limit(batch_size)).scalars().all()
        if not events:
            break
        for event in events:
            if event.prev_hash != prev_hash or compute_hash(prev_hash, event_payload(event)) != event.hash:
                report.bad_event_id = event.id
                report.problems.insert(0, f"event #{event.id} ({event.action}, {event.created_at:%Y-%m-%d %H:%M:%S} "
                                          "UTC): " + ("its prev_hash does not match the hash of the event before it"
                                                      if event.prev_hash != prev_hash else
                                                      "its content does not match its hash (the row was changed)"))
                return report
            report.checked += 1
            if not _check_event(report, event, pending, state):
                return report
            prev_hash, state["last_id"] = event.hash, event.id
        db.session.expunge_all()
    report.last_event_id = state["last_id"] or None
    if pending:
        doc = pending[-1][1]
        report.bad_event_id = state["last_id"] + 1
        report.problems.append(
            f"the chain ends at event #{state['last_id']} but the {_label(doc)} signed event #{doc['event_id']}: "
            f"the newest events (#{state['last_id'] + 1} to #{doc['event_id']}) were deleted or the table truncated")
    return report
