"""Personal API tokens and calendar-feed tokens: shown once, stored as SHA-256, revocable."""
import hashlib
import secrets
from datetime import timedelta

import sqlalchemy as sa
from flask import has_request_context, request

from tracker.extensions import db
from tracker.models import ApiToken, utcnow
from tracker.services import audit
from tracker.services.errors import ValidationFailed

PREFIXES = {"api": "dt_api_", "calendar": "dt_cal_"}
USE_STAMP_STEP = timedelta(hours=1)


def _hash(token):
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def create(user, kind, name="", agency=None):
    """Returns (ApiToken, secret). The secret is not stored and cannot be shown again."""
    if kind not in PREFIXES:
        raise ValidationFailed({"kind": "Unknown token kind."})
    name = (name or "").strip()[:200]
    if kind == "api" and not name:
        raise ValidationFailed({"name": "Name the token after what will use it, e.g. “monthly report script”."})
    if kind == "calendar" and agency is None:
        raise ValidationFailed({"agency": "Choose the agency whose deadlines the calendar shows."})
    secret = PREFIXES[kind] + secrets.token_urlsafe(32)
    token = ApiToken(user_id=user.id, kind=kind, name=name or (agency.name if agency else ""),
                     agency_id=agency.id if agency else None, token_hash=_hash(secret), prefix=secret[:11],
                     created_at=utcnow())
    db.session.add(token)
    db.session.flush()
    audit.record(f"token.create_{kind}", token, actor=user, agency_id=token.agency_id,
                 after={"name": token.name, "prefix": token.prefix})
    return token, secret


def revoke(token, *, actor):
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record(f"token.revoke_{token.kind}", token, actor=actor, agency_id=token.agency_id,
                     after={"prefix": token.prefix})


def resolve(secret, kind):
    """The live token for a presented secret, or None (unknown, revoked, or its user disabled). Writes nothing:
    each use goes to the security log, and `use_stamp` gives the hourly last-use update."""
    if not secret or not secret.startswith(PREFIXES.get(kind, "\0")) or len(secret) > 100:
        return None
    token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.token_hash == _hash(secret), ApiToken.kind == kind)
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None or not token.user.active:
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
