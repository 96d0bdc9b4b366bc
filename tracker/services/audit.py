"""Append audit events to the hash chain, and verify the chain."""
import hashlib
import json
import logging
from datetime import date, datetime

import sqlalchemy as sa
from flask import has_request_context, request
from flask_login import current_user

from tracker.extensions import db
from tracker.models import AuditEvent, utcnow

GENESIS = "0" * 64
# Security events also go, as JSON lines, to a log that can be shipped to a separate system (ASVS 16.4.3).
security_log = logging.getLogger("tracker.security")
# Arbitrary constant key for pg_advisory_xact_lock: one chain, one writer at a time.
_PG_LOCK_KEY = 727_001
# Events that are followed, in the same transaction, by a signed checkpoint of the chain (issue 19).
CHECKPOINT_AFTER = {"period.file": "period_filed", "period.close": "period_filed"}


def _jsonable(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    return value


def event_payload(event):
    """The fields covered by the hash, in a canonical form."""
    return {
        "created_at": event.created_at.isoformat(timespec="microseconds"),
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "agency_id": event.agency_id,
        "before": event.before,
        "after": event.after,
        "ip": event.ip,
        "outcome": event.outcome,
    }


def compute_hash(prev_hash, payload):
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _current_actor():
    if has_request_context() and current_user and current_user.is_authenticated:
        return current_user
    return None


def record(action, obj=None, *, before=None, after=None, agency_id=None, actor=None, actor_label=None,
           outcome="success", object_type=None, object_id=None):
    """Append one event. Runs inside the caller's transaction, so it commits or rolls back with it."""
    session = db.session
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK_KEY})
    actor = actor or _current_actor()
    if obj is not None:
        object_type = object_type or obj.__tablename__
        object_id = object_id if object_id is not None else getattr(obj, "id", None)
        if agency_id is None:
            agency_id = getattr(obj, "agency_id", None)
            if agency_id is None and object_type == "agency":
                agency_id = obj.id
    ip = request.remote_addr if has_request_context() else "cli"
    prev = session.execute(
        sa.select(AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)
    ).scalar_one_or_none()
    event = AuditEvent(
        created_at=utcnow(),
        actor_id=actor.id if actor is not None else None,
        actor_label=actor_label or (actor.email if actor is not None else "system"),
        action=action,
        object_type=object_type or "",
        object_id="" if object_id is None else str(object_id),
        agency_id=agency_id,
        before=_jsonable(before) if before is not None else None,
        after=_jsonable(after) if after is not None else None,
        ip=ip or "",
        outcome=outcome,
        prev_hash=prev or GENESIS,
    )
    event.hash = compute_hash(event.prev_hash, event_payload(event))
    session.add(event)
    session.flush()
    if action.startswith(("auth.", "user.", "token.", "membership.")):
        log_security(action, outcome=outcome, actor=event.actor_label, object_type=event.object_type,
                     object_id=event.object_id, ip=event.ip, audit_id=event.id)
    if action in CHECKPOINT_AFTER:
        from tracker.services import checkpoints

        checkpoints.make(CHECKPOINT_AFTER[action])
    return event


def log_security(action, **fields):
    """One JSON line per security event; newlines and control characters cannot forge entries."""
    security_log.info(json.dumps({"time": utcnow().isoformat() + "Z", "event": action, **fields},
                                 ensure_ascii=True, sort_keys=True, default=str))


def snapshot(obj, fields):
    return {f: _jsonable(getattr(obj, f)) for f in fields}


def verify_chain(batch_size=1000):
    """Walk the chain in id order. Returns (checked_count, first_bad_event_or_None, reason)."""
    prev_hash = GENESIS
    checked = 0
    last_id = 0
    while True:
        events = db.session.execute(
            sa.select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch_size)
        ).scalars().all()
        if not events:
            return checked, None, None
        for event in events:
            if event.prev_hash != prev_hash:
                return checked, event, "its prev_hash does not match the hash of the event before it"
            if compute_hash(prev_hash, event_payload(event)) != event.hash:
                return checked, event, "its content does not match its hash (the row was changed)"
            prev_hash = event.hash
            checked += 1
            last_id = event.id
        db.session.expunge_all()
