"""The outbox: claiming messages for delivery, marking them sent or failed, digests, and the admin's view.

Every function here flushes; tracker/mailer.py (the worker) commits between steps, so a claim is visible
to other workers before any mail goes out and each mark commits right after its message is sent.

Claiming: on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` picks due rows no other worker holds and stamps
them with this pass's claim; on SQLite, whose writers are serialised, one conditional UPDATE does both.
A claim lasts LEASE; a worker that dies mid-pass leaves its messages to be claimed again after it. A mark
only lands while the row is still queued and carries this pass's claim, so a message is marked sent once.
"""
import uuid
from collections import defaultdict
from datetime import timedelta

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import OUTBOX_STATES, Agency, Membership, Notification, OutboxMessage, User, utcnow
from tracker.services import audit
from tracker.services import notifications as notes
from tracker.services.errors import ValidationFailed

LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=6)
PAGE_SIZE = 50


def new_claim(worker=""):
    return f"{worker[:60]}:{uuid.uuid4().hex[:16]}"


def _due(now):
    return sa.and_(OutboxMessage.state == "queued", OutboxMessage.next_attempt_at <= now,
                   sa.or_(OutboxMessage.claimed_until.is_(None), OutboxMessage.claimed_until < now))


def claim(claim_id, now, limit=20):
    """Claim up to `limit` due messages for this pass; returns them (oldest first)."""
    until = now + LEASE
    if db.session.get_bind().dialect.name == "postgresql":
        ids = db.session.execute(sa.select(OutboxMessage.id).where(_due(now)).order_by(OutboxMessage.id)
                                 .limit(limit).with_for_update(skip_locked=True)).scalars().all()
        if not ids:
            return []
        target = OutboxMessage.id.in_(ids)
    else:
        # One statement, the first of its transaction: SQLite runs one writer at a time, so two workers'
        # claims cannot interleave, and the re-checked condition leaves nothing claimed twice.
        target = sa.and_(OutboxMessage.id.in_(sa.select(OutboxMessage.id).where(_due(now))
                                              .order_by(OutboxMessage.id).limit(limit).scalar_subquery()), _due(now))
    db.session.execute(sa.update(OutboxMessage).where(target).values(claimed_by=claim_id, claimed_until=until)
                       .execution_options(synchronize_session=False))
    return db.session.execute(sa.select(OutboxMessage).where(OutboxMessage.claimed_by == claim_id,
                                                             OutboxMessage.state == "queued")
                              .order_by(OutboxMessage.id)).scalars().all()


def _mark(message, claim_id, **values):
    changed = db.session.execute(
        sa.update(OutboxMessage).where(OutboxMessage.id == message.id, OutboxMessage.claimed_by == claim_id,
                                       OutboxMessage.state == "queued")
        .values(claimed_until=None, **values).execution_options(synchronize_session=False)).rowcount
    return changed == 1


def mark_sent(message, claim_id, now):
    return _mark(message, claim_id, state="sent", sent_at=now, attempts=message.attempts + 1, last_error="")


def backoff(attempts, base_seconds):
    """Wait before attempt n+1: base, 2 x base, 4 x base, ... at most MAX_BACKOFF."""
    return min(timedelta(seconds=base_seconds * 2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def mark_failed(message, claim_id, error, now, *, max_attempts, base_seconds):
    """Count a failed attempt: retry later with exponential back-off, or give up after max_attempts.
    Returns "retry", "failed", or None when the message was no longer this pass's to mark."""
    attempts = message.attempts + 1
    error = notes.one_line(error, 1000)
    if attempts >= max_attempts:
        marked = _mark(message, claim_id, state="failed", attempts=attempts,
                       last_error=f"Gave up after {attempts} attempts: {error}")
        return "failed" if marked else None
    marked = _mark(message, claim_id, attempts=attempts, last_error=error,
                   next_attempt_at=now + backoff(attempts, base_seconds))
    return "retry" if marked else None


def withdraw(message, claim_id, reason):
    """Not sent, and never will be: the recipient may no longer see what it is about."""
    return _mark(message, claim_id, state="failed", last_error=f"Not sent: {reason}")


def _allowed_agencies(user_ids):
    """{user_id: {(agency_id, role), ...}} for the users' current memberships."""
    allowed = defaultdict(set)
    if user_ids:
        for user_id, agency_id, role in db.session.execute(
                sa.select(Membership.user_id, Membership.agency_id, Membership.role)
                .where(Membership.user_id.in_(list(user_ids)))):
            allowed[user_id].add((agency_id, role))
    return allowed


def may_receive(user, allowed, agency_id, category):
    if not user.active:
        return False
    if agency_id is None or user.is_admin:
        return category == notes.ALWAYS_ON or user.is_admin
    return any((agency_id, role) in allowed for role in notes.CATEGORY_ROLES.get(category, ()))


def undeliverable(messages):
    """{message_id: reason} for messages whose recipient may no longer receive them (3 queries)."""
    if not messages:
        return {}
    users = {u.id: u for u in db.session.execute(
        sa.select(User).where(User.id.in_({m.user_id for m in messages if m.user_id}))).scalars()}
    allowed = _allowed_agencies(users)
    about = db.session.execute(sa.select(Notification.message_id, Notification.agency_id, Notification.category)
                               .where(Notification.message_id.in_([m.id for m in messages]))).all()
    reasons = {}
    for message in messages:
        user = users.get(message.user_id)
        if user is None or not user.active:
            reasons[message.id] = "the account is disabled"
    recipient = {m.id: m.user_id for m in messages}
    for message_id, agency_id, category in about:
        user = users.get(recipient[message_id])
        if message_id not in reasons and user is not None and not may_receive(user, allowed[user.id], agency_id,
                                                                                category):
            reasons[message_id] = "the recipient no longer holds a role in the agency that sees this"
    return reasons


# --- digests -----------------------------------------------------------------------------------------

def digest_key(mode, now, hour):
    """The day or ISO week a digest assembled at `now` belongs to, or None before it is due."""
    if mode == "daily":
        return now.date().isoformat() if now.hour >= hour else None
    year, week, weekday = now.isocalendar()
    if weekday == 1 and now.hour < hour:
        return None
    return f"{year}-W{week:02d}"


def digest_candidates(mode, period_key):
    """Ids of users with pending `mode` notifications and no digest for this period yet."""
    pending = sa.select(Notification.user_id).where(Notification.delivery == mode,
                                                    Notification.message_id.is_(None)).distinct()
    user_ids = set(db.session.execute(pending).scalars())
    keys = {f"digest:{mode}:{period_key}:{u}": u for u in user_ids}
    done = set(db.session.execute(sa.select(OutboxMessage.dedupe_key)
                                  .where(OutboxMessage.dedupe_key.in_(list(keys)))).scalars()) if keys else set()
    return sorted(u for key, u in keys.items() if key not in done)


def assemble_digest(user_id, mode, period_key):
    """One digest message for the user's pending notifications of this mode; None if nothing is left.

    Notifications about agencies the user no longer sees are dropped. The dedupe key (unique) makes a
    second assembly of the same period fail at the flush, so it happens once however often it runs."""
    user = db.session.get(User, user_id)
    pending = db.session.execute(sa.select(Notification).where(
        Notification.user_id == user_id, Notification.delivery == mode, Notification.message_id.is_(None))
        .order_by(Notification.agency_id, Notification.category, Notification.id)).scalars().all()
    allowed = _allowed_agencies([user_id])[user_id]
    keep = [n for n in pending if may_receive(user, allowed, n.agency_id, n.category)]
    for dropped in set(pending) - set(keep):
        db.session.delete(dropped)
    if not keep:
        db.session.flush()
        return None
    text, html, unsubscribe, agency_names = _render_digest(user, mode, keep)
    label = "Daily" if mode == "daily" else "Weekly"
    subject = f"{label} digest: {len(keep)} update{'s' if len(keep) != 1 else ''}"
    if len(agency_names) == 1:
        subject = f"[{agency_names[0]}] {subject}"
    message = notes.outbox_message(user, "digest", subject, text, html, unsubscribe,
                                   dedupe_key=f"digest:{mode}:{period_key}:{user_id}")
    db.session.flush()
    for n in keep:
        n.message_id = message.id
    db.session.flush()
    return message


def _render_digest(user, mode, items):
    agencies = {a.id: a.name for a in db.session.execute(
        sa.select(Agency).where(Agency.id.in_({n.agency_id for n in items if n.agency_id}))).scalars()}
    groups = defaultdict(list)
    for n in items:
        groups[agencies.get(n.agency_id, "Your account")].append(
            {"subject": n.subject, "body": n.body, "link": notes.absolute(n.link) if n.link else "",
             "category": n.category})
    categories = sorted({n.category for n in items} - {notes.ALWAYS_ON})
    unsubscribe = notes.unsubscribe_url(user.id, categories) if categories else ""
    context = {"name": notes.one_line(user.display_name, 200), "mode": mode, "groups": sorted(groups.items()),
               "count": len(items),
               "unsubscribe": unsubscribe, "labels": notes.CATEGORIES,
               "category_links": {c: notes.unsubscribe_url(user.id, [c]) for c in categories},
               "preferences": notes.absolute(notes.path_for("auth.account")) + "#notifications"}
    return (notes.render_mail("mail/digest.txt", context), notes.render_mail("mail/digest.html", context), unsubscribe,
            sorted(agencies.values()))


# --- the admin's view --------------------------------------------------------------------------------

def counts():
    found = dict(db.session.execute(sa.select(OutboxMessage.state, sa.func.count()).group_by(OutboxMessage.state))
                 .all())
    return {state: found.get(state, 0) for state in OUTBOX_STATES}


def page(state, page_number=1):
    """(messages of the page, total) in one state, newest first."""
    query = sa.select(OutboxMessage).where(OutboxMessage.state == state)
    total = db.session.execute(sa.select(sa.func.count()).select_from(query.subquery())).scalar()
    rows = db.session.execute(query.order_by(OutboxMessage.id.desc()).limit(PAGE_SIZE)
                              .offset((max(page_number, 1) - 1) * PAGE_SIZE)).scalars().all()
    return rows, total


def retry(message_id, *, actor):
    """Queue a failed message again, from a fresh count of attempts."""
    try:
        message = db.session.get(OutboxMessage, int(message_id))
    except (TypeError, ValueError):
        message = None
    if message is None:
        raise ValidationFailed({"message_id": "No such message."})
    if message.state != "failed":
        raise ValidationFailed({"message_id": f"Message {message.id} is {message.state}; "
                                              "only failed ones are retried."})
    before = {"state": message.state, "attempts": message.attempts, "last_error": message.last_error}
    message.state, message.attempts, message.next_attempt_at = "queued", 0, utcnow()
    message.claimed_until, message.claimed_by = None, ""
    db.session.flush()
    audit.record("outbox.retry", message, actor=actor, before=before,
                 after={"state": "queued", "to": message.to_addr, "subject": message.subject})
    return message
