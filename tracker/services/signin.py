"""Sign-in, step by step: the password, then (when the account has or needs one) a TOTP code, then a session.

    password ──ok, no second factor──────────────────────────────> signed in (new server-side session)
       │ ok, second factor (enrolment started here if needed)
       v
    code pending ──right code──> signed in
       │ wrong code: counted here (MFA_MAX_ATTEMPTS) and towards the account lockout
       v
    refused, or expired after MFA_WINDOW_SECONDS: back to the password

Each step only flushes and audits; the view commits once and keeps `Pending` in the signed cookie
(only the user id, where to go next, since when and how many wrong codes: nothing is signed in yet).
"""
import time
from dataclasses import asdict, dataclass

from tracker.extensions import db
from tracker.models import User, UserSession
from tracker.services import accounts, mfa

MFA_WINDOW_SECONDS = 300
MFA_MAX_ATTEMPTS = 5
WRONG_CODE = "That code is not right, or was already used. Enter the current 6-digit code from your app."
EXPIRED = "Sign in again: the second step expired or was not started."
ENROL_AGAIN = "Sign in again to set up two-step sign-in."


@dataclass
class Pending:
    """A password accepted, waiting for its second factor."""

    user_id: int
    next: str | None
    started: float
    attempts: int = 0

    @classmethod
    def from_cookie(cls, data):
        """The pending step kept in the session cookie, or None when there is none or it has expired."""
        if not isinstance(data, dict) or not isinstance(data.get("user_id"), int):
            return None
        pending = cls(data["user_id"], data.get("next"), float(data.get("started", 0)), int(data.get("attempts", 0)))
        return None if time.time() - pending.started > MFA_WINDOW_SECONDS else pending

    def to_cookie(self):
        return asdict(self)


@dataclass
class Outcome:
    """Where a step led: `session` is set when signed in, `pending` while a code is awaited; otherwise
    `error` says why not, and `restart` whether the user must begin again with the password."""

    user: User | None = None
    session: UserSession | None = None
    pending: Pending | None = None
    error: str | None = None
    restart: bool = False


class Restart(Exception):
    """The second step cannot go on; the user signs in again (the message, if any, says why)."""


def password_step(email, password, *, next_url, ip, user_agent):
    try:
        user = accounts.check_password(email, password)
    except accounts.LoginRefused as exc:
        return Outcome(error=exc.message)  # the failure is counted and audited: the view commits it too
    if user.totp_secret or mfa.required_for(user):
        if not user.totp_secret and not user.totp_pending_secret:
            mfa.start_enrolment(user)  # in this POST: opening the code page must never change data
        return Outcome(user=user, pending=Pending(user.id, next_url, time.time()))
    return _open_session(user, ip, user_agent, mfa_used=False)


def pending_user(pending):
    """The user waiting at the second step; raises Restart when the step expired or cannot go on."""
    if pending is None:
        raise Restart(EXPIRED)
    user = db.session.get(User, pending.user_id)
    if user is None or not user.active:
        raise Restart(None)
    if not user.totp_secret and not user.totp_pending_secret:
        raise Restart(ENROL_AGAIN)
    return user


def code_step(pending, code, *, ip, user_agent):
    """Check a code (confirming the enrolment when the user is setting it up); count a wrong one."""
    user = pending_user(pending)
    ok = mfa.verify(user, code) if user.totp_secret else mfa.confirm_enrolment(user, code)
    if ok:
        return _open_session(user, ip, user_agent, mfa_used=True)
    accounts.record_factor_failure(user, "wrong or reused code")
    pending.attempts += 1
    if pending.attempts >= MFA_MAX_ATTEMPTS or user.locked_at is not None:
        return Outcome(user=user, error=accounts.LoginRefused.message, restart=True)
    return Outcome(user=user, pending=pending, error=WRONG_CODE)


def enrolment(user):
    """What the set-up page shows for the pending secret: the key, its otpauth URI and the QR code."""
    secret = user.totp_pending_secret
    uri = mfa.provisioning_uri(user, secret)
    return {"secret": secret, "uri": uri, "qr": mfa.qr_svg(uri)}


def _open_session(user, ip, user_agent, mfa_used):
    try:
        user_session = accounts.open_session(user, ip=ip, user_agent=user_agent, mfa=mfa_used)
    except accounts.LoginRefused as exc:
        return Outcome(user=user, error=exc.message, restart=True)
    return Outcome(user=user, session=user_session)
