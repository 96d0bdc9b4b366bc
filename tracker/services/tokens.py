"""Personal API tokens and calendar-feed tokens: shown once, stored as SHA-256, and every one ends.

Lifecycle (issue 19): created only after the current password (and the authenticator code when enrolled) is
entered again; expires after DEFAULT_DAYS (the user may choose 1 to MAX_DAYS); can be rotated (a new secret
with the same name, kind and lifetime, the old one revoked) or revoked; revoked all at once by a password
change or reset, disabling the user, "end all sessions" and a second-factor reset. An API token reads only
(GET /api/v1); a calendar feed reads one agency's deadlines. Last use is stamped at most hourly.
"""
import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import has_request_context, request

from tracker.extensions import db
from tracker.models import ApiToken, utcnow
from tracker.services import audit, notifications
from tracker.services.errors import ValidationFailed

PREFIXES = {"api": "dt_api_", "calendar": "dt_cal_"}
USE_STAMP_STEP = timedelta(hours=1)
DEFAULT_DAYS = 90
MAX_DAYS = 365
KIND_LABELS = {"api": "API token", "calendar": "Calendar feed"}


def _hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def lifetime_days(raw):
    """The lifetime a form asked for, in days (DEFAULT_DAYS when empty); ValidationFailed outside 1..MAX_DAYS."""
    raw = "" if raw is None else str(raw).strip()
    if not raw:
        return DEFAULT_DAYS
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_DAYS:
        raise ValidationFailed({"days": f"Choose how many days the token lasts: a whole number from 1 to {MAX_DAYS} "
                                        f"(default {DEFAULT_DAYS})."})
    return int(raw)


def create(user, kind, name="", agency=None, days=DEFAULT_DAYS):
    """Returns (ApiToken, secret). The secret is not stored and cannot be shown again."""
    if kind not in PREFIXES:
        raise ValidationFailed({"kind": "Unknown token kind."})
    days = lifetime_days(days)
    name = (name or "").strip()[:200]
    if kind == "api" and not name:
        raise ValidationFailed({"name": "Name the token after what will use it, e.g. “monthly report script”."})
    if kind == "calendar" and agency is None:
        raise ValidationFailed({"agency": "Choose the agency whose deadlines the calendar shows."})
    secret = PREFIXES[kind] + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(user_id=user.id, kind=kind, name=name or (agency.name if agency else ""),
                     agency_id=agency.id if agency else None, token_hash=_hash(secret), prefix=secret[:11],
                     created_at=now, expires_at=now + timedelta(days=days), revoked_reason="")
    db.session.add(token)
    db.session.flush()
    audit.record(f"token.create_{kind}", token, actor=user, agency_id=token.agency_id,
                 after={"name": token.name, "prefix": token.prefix, "expires_at": token.expires_at})
    notifications.account_changed(user, f"token_{kind}", actor=user, name=token.name)
    return token, secret


def revoke(token, *, actor, reason="revoked"):
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        token.revoked_reason = reason[:64]
        audit.record(f"token.revoke_{token.kind}", token, actor=actor, agency_id=token.agency_id,
                     after={"prefix": token.prefix, "reason": token.revoked_reason})


def revoke_all(user, *, actor, reason):
    """End every live token of the user (a password change, disabling, "end all sessions"); one audit event."""
    now = utcnow()
    live = db.session.execute(sa.select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None),
                                                        ApiToken.expires_at > now)).scalars().all()
    for token in live:
        token.revoked_at, token.revoked_reason = now, reason[:64]
    if live:
        audit.record("token.revoke_all", user, actor=actor,
                     after={"count": len(live), "prefixes": [t.prefix for t in live], "reason": reason})
    return len(live)


def rotate(token, *, actor):
    """A new secret in place of a live token: same kind, name, agency and lifetime; the old one is revoked."""
    now = utcnow()
    if token.revoked_at is not None or token.expires_at <= now:
        raise ValidationFailed({"token": f"{KIND_LABELS[token.kind]} {token.prefix}… has ended; create a new one."})
    days = max(1, min(MAX_DAYS, round((token.expires_at - token.created_at) / timedelta(days=1))))
    revoke(token, actor=actor, reason="rotated")
    new, secret = create(token.user, token.kind, token.name, token.agency, days)
    audit.record(f"token.rotate_{token.kind}", new, actor=actor, agency_id=new.agency_id,
                 before={"prefix": token.prefix}, after={"prefix": new.prefix, "expires_at": new.expires_at})
    return new, secret


def resolve(secret, kind):
    """The live token for a presented secret, or None (unknown, revoked, expired, or its user disabled). Writes nothing:
    each use goes to the security log, and `use_stamp` gives the hourly last-use update."""
    if not secret or not secret.startswith(PREFIXES.get(kind, "\0")) or len(secret) > 100:
        return None
    token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.token_hash == _hash(secret), ApiToken.kind == kind)
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None or token.expires_at <= utcnow() or not token.user.active:
        return None
    # The endpoint, never the path: a calendar feed's path is its secret.
    in_request = has_request_context()
    audit.log_security(f"token.use_{kind}", actor=token.user.email, object_type="api_token", object_id=token.id,
                       prefix=token.prefix, ip=request.remote_addr if in_request else "cli",
                       endpoint=request.endpoint if in_request else "")
    return token


def use_stamp(token):
    """The UPDATE recording a use as the token's last_used_at (shown on the account page), or None when the
    stored time is under USE_STAMP_STEP old. Hourly is enough to tell a forgotten token from a live one."""
    now = utcnow()
    if token.last_used_at is not None and now - token.last_used_at <= USE_STAMP_STEP:
        return None
    return sa.update(ApiToken).where(
        ApiToken.id == token.id,
        sa.or_(ApiToken.last_used_at.is_(None), ApiToken.last_used_at < now - USE_STAMP_STEP),
    ).values(last_used_at=now)


def for_user(user):
    return db.session.execute(
        sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
    ).scalars().all()
