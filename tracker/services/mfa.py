"""TOTP second factor (RFC 6238): enrolment, single-use verification, who must use it."""
import time

import pyotp
import segno
import sqlalchemy as sa
from flask import current_app

from tracker.extensions import db
from tracker.models import Membership
from tracker.services import audit, notifications

ISSUER = "Consent-decree tracker"


def required_for(user):
    """True when a role the user holds is listed in MFA_REQUIRED_ROLES (admins, monitors by default)."""
    roles = current_app.config["MFA_REQUIRED_ROLES"]
    if not roles:
        return False
    if user.is_admin and "admin" in roles:
        return True
    held = set(db.session.execute(sa.select(Membership.role).where(Membership.user_id == user.id)).scalars())
    return bool(held & set(roles))


def start_enrolment(user):
    """A new pending secret; it becomes active only after a correct code."""
    user.totp_pending_secret = pyotp.random_base32()
    db.session.flush()
    audit.record("user.mfa_enrol", user, actor=user, after={"pending": True})  # never the secret itself
    return user.totp_pending_secret


def provisioning_uri(user, secret):
    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri):
    """The otpauth URI as an inline SVG QR code (no script, no style attribute)."""
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#1b1b1b", light="#ffffff", title="QR code")


def _matching_step(secret, code, now=None):
    code = (code or "").replace(" ", "").strip()
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if now is None else now
    current = int(now // totp.interval)
    for step in (current, current - 1, current + 1):  # one step of clock drift either way
        if totp.at(step * totp.interval) == code:
            return step
    return None


def verify(user, code, *, secret=None):
    """True for a correct code not used before (each code works once)."""
    secret = secret or user.totp_secret
    if not secret:
        return False
    step = _matching_step(secret, code)
    if step is None or (user.totp_last_step is not None and step <= user.totp_last_step):
        return False
    user.totp_last_step = step
    return True


def confirm_enrolment(user, code):
    if not user.totp_pending_secret or not verify(user, code, secret=user.totp_pending_secret):
        return False
    user.totp_secret = user.totp_pending_secret
    user.totp_pending_secret = None
    audit.record("user.mfa_enable", user, actor=user)
    notifications.account_changed(user, "mfa_enable", actor=user)
    return True


def reset(user, *, actor):
    user.totp_secret = None
    user.totp_pending_secret = None
    user.totp_last_step = None
    audit.record("user.mfa_reset", user, actor=actor)
    notifications.account_changed(user, "mfa_reset", actor=actor)
