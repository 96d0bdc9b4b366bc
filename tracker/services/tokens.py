"""Personal API tokens and calendar-feed tokens: shown once, stored as SHA-256, revocable."""
import hashlib
import secrets

import sqlalchemy as sa

from tracker.extensions import db
from tracker.models import ApiToken, utcnow
from tracker.services import audit
from tracker.services.errors import ValidationFailed

PREFIXES = {"api": "dt_api_", "calendar": "dt_cal_"}


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
    """The live token for a presented secret, or None (unknown, revoked, or its user disabled)."""
    if not secret or not secret.startswith(PREFIXES.get(kind, "\0")) or len(secret) > 100:
        return None
    token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.token_hash == _hash(secret), ApiToken.kind == kind)
    ).scalar_one_or_none()
    if token is None or token.revoked_at is not None or not token.user.active:
        return None
    now = utcnow()
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 3600:
        token.last_used_at = now
    return token


def for_user(user):
    return db.session.execute(
        sa.select(ApiToken).where(ApiToken.user_id == user.id).order_by(ApiToken.created_at.desc())
    ).scalars().all()
