"""Signed audit checkpoints made in transactions of their own (issue 19): a report or evidence package (a read,
whose request writes nothing) and the hourly checkpoint after write requests. Services never commit, so this
lives beside security.record_activity rather than in tracker/services/checkpoints.py.
"""
from datetime import timedelta

import sqlalchemy as sa
import sqlalchemy.orm as so
from flask import current_app, request

from tracker.extensions import db
from tracker.models import utcnow
from tracker.services.checkpoints import due, enabled, head_of, latest, sign_head

CHECK_EVERY = timedelta(minutes=5)  # how often a worker looks whether the hourly checkpoint is due


def current(reason):
    """The newest checkpoint if it still signs the head, else a new one made in a transaction of its own (never
    the request's, which a read keeps free of writes). None when checkpoints are off or there is no event. A busy
    database does not fail the page: the newest checkpoint there is is shown (and logged as not refreshed)."""
    if not enabled():
        return None
    with so.Session(db.engine, expire_on_commit=False) as session:
        newest = latest(session)
        head = head_of(session)
        if head is None or (newest is not None and (newest.event_id, newest.event_hash) == tuple(head)):
            if newest is not None:
                session.expunge(newest)  # kept loaded: the rollback would expire it
            session.rollback()
            return newest
        try:
            checkpoint = sign_head(session, reason)
            session.commit()
        except sa.exc.OperationalError as exc:
            session.rollback()
            current_app.logger.warning("audit checkpoint for a %s not made: %s", reason, exc.__class__.__name__)
            return latest(session)
        return checkpoint


def make_if_due():
    """The hourly checkpoint, committed in a transaction of its own; returns it, or None when none was due."""
    if not enabled():
        return None
    db.session.rollback()
    if not due():
        db.session.rollback()
        return None
    checkpoint = sign_head(db.session, "hourly")
    db.session.commit()
    return checkpoint


def _after_write_request(response):
    """At most every CHECK_EVERY per worker, after a write: the hourly checkpoint when it is due. The view has
    committed its one transaction by now; whatever is left open would be rolled back at teardown anyway (and on
    SQLite may hold the write lock a second connection would wait for), so the check runs on the request's own
    session after a rollback."""
    if request.method in ("GET", "HEAD", "OPTIONS") or response.status_code >= 500 or not enabled():
        return response
    state = current_app.extensions.setdefault("audit_checkpoints", {})
    now = utcnow()
    if state.get("next_check", now) > now:
        return response
    state["next_check"] = now + CHECK_EVERY
    try:
        make_if_due()
    except sa.exc.SQLAlchemyError as exc:
        db.session.rollback()
        current_app.logger.warning("hourly audit checkpoint skipped: %s", exc.__class__.__name__)
    return response


def init_app(app):
    app.after_request(_after_write_request)


