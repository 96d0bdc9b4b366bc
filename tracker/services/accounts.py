"""Users, memberships, sign-in, lockout and server-side sessions."""
import ipaddress
import secrets
from datetime import timedelta

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from flask import current_app, has_request_context, request

from tracker.extensions import db
from tracker.models import AGENCY_ROLES, ROLES, Agency, LoginBlock, Membership, User, UserSession, utcnow
from tracker.passwords import hash_password, needs_rehash, password_problem, verify_password
from tracker.services import audit, notifications
from tracker.services.errors import ValidationFailed

# Verifying against a real hash for unknown users keeps their timing equal to known ones.
_DUMMY_HASH = None
ACTIVITY_STEP = timedelta(seconds=60)
# CJIS IA-5 l: the verifier limits consecutive failed attempts to at most 100, from wherever they come; then the
# whole account locks until an administrator releases it. Below that, a lock holds for the failing address only.
ACCOUNT_FAILURE_LIMIT = 100
TIMED_LOCK_MAX = timedelta(hours=24)


def normalise_email(raw):
    try:
        return validate_email((raw or "").strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        raise ValidationFailed({"email": str(exc)}) from exc


def create_user(email, password, *, name="", role="officer", agency=None, actor=None, temporary=False):
    """temporary: a password someone else chose (an administrator's new account), changed at the first sign-in."""
    email = normalise_email(email)
    errors = {}
    if role not in ROLES:
        errors["role"] = f"Unknown role {role!r}; choose one of {', '.join(ROLES)}."
    if role in AGENCY_ROLES and agency is None:
        errors["agency"] = f"The {role} role is held in an agency; give the agency."
    problem = password_problem(password, email)
    if problem:
        errors["password"] = problem
    if db.session.execute(sa.select(User.id).where(User.email == email)).first():
        errors["email"] = f"A user with email {email} already exists."
    if errors:
        raise ValidationFailed(errors)
    user = User(email=email, name=name, password_hash=hash_password(password), is_admin=(role == "admin"),
                must_change_password=temporary)
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", user, after={"email": email, "name": name, "role": role}, actor=actor)
    if agency is not None and role in AGENCY_ROLES:
        add_membership(user, agency, role, actor=actor)
    return user


def add_membership(user, agency, role, *, actor=None):
    if role not in AGENCY_ROLES:
        raise ValidationFailed({"role": f"Unknown agency role {role!r}; choose one of {', '.join(AGENCY_ROLES)}."})
    membership = db.session.execute(
        sa.select(Membership).where(Membership.user_id == user.id, Membership.agency_id == agency.id)
    ).scalar_one_or_none()
    before = None
    if membership is None:
        membership = Membership(user=user, agency_id=agency.id, role=role)
        db.session.add(membership)
    else:
        before = {"role": membership.role}
        membership.role = role
    db.session.flush()
    audit.record("membership.set", membership, before=before,
                 after={"user": user.email, "agency": agency.slug, "role": role}, actor=actor)
    return membership


def remove_membership(membership, *, actor=None):
    before = {"user_id": membership.user_id, "agency_id": membership.agency_id, "role": membership.role}
    audit.record("membership.remove", membership, before=before, actor=actor)
    db.session.delete(membership)
    db.session.flush()


class LoginRefused(Exception):
    """Sign-in refused. The message is the same whatever the reason, to reveal nothing."""

    message = "Email or password is incorrect, or the account is locked. Contact your administrator if this persists."


def _dummy_verify(password):
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(16))
    verify_password(_DUMMY_HASH, password)


def _release_expired_lock(user, now):
    """LOCKOUT_MODE=timed: a lock as old as the window lifts itself at the next attempt, done by the system."""
    if user.locked_at is None or current_app.config["LOCKOUT_MODE"] != "timed":
        return
    if now - user.locked_at < timedelta(minutes=current_app.config["LOCKOUT_WINDOW_MINUTES"]):
        return
    before = {"locked_at": user.locked_at, "failed_logins": user.failed_logins}
    user.locked_at = None
    user.failed_logins = 0
    user.first_failed_at = None
    audit.record("user.unlock", user, before=before, after={"locked_at": None, "reason": "lockout window passed"},
                 actor_label="system")


def request_source():
    """The address failures are counted for: the client's IPv4 address, an IPv6 address's /64, or "cli"."""
    if not has_request_context():
        return "cli"
    address = request.remote_addr or "unknown"
    if ":" in address:
        try:
            return str(ipaddress.ip_network(f"{address}/64", strict=False))
        except ValueError:
            pass
    return address[:64]


def _block(user, source, *, create=False):
    block = db.session.execute(
        sa.select(LoginBlock).where(LoginBlock.user_id == user.id, LoginBlock.source == source)
    ).scalar_one_or_none()
    if block is None and create:
        try:
            with db.session.begin_nested():  # a concurrent first failure from the same address made it already
                block = LoginBlock(user_id=user.id, source=source, failures=0, locks=0)
                db.session.add(block)
        except sa.exc.IntegrityError:
            return _block(user, source)
    return block


def _source_locked(user, source, now):
    """True while the account is locked for this address; a timed lock past its end lifts here (the system)."""
    block = _block(user, source)
    if block is None or block.locked_at is None:
        return False
    if block.locked_until is None or now < block.locked_until:
        return True
    before = {"source": source, "locked_at": block.locked_at, "locked_until": block.locked_until}
    block.locked_at = block.locked_until = block.first_failed_at = None
    block.failures = 0
    audit.record("user.unlock", user, before=before, after={"source": source, "reason": "lock period passed"},
                 actor_label="system")
    return False


def _is_locked(user, now, source=None):
    _release_expired_lock(user, now)
    if user.locked_at is not None:
        return True
    return _source_locked(user, source or request_source(), now)


def check_password(email, password):
    """First factor. Returns the user, or raises LoginRefused (counting the failure, audited)."""
    try:
        email = normalise_email(email)
    except ValidationFailed:
        email = (email or "").strip().lower()[:254]
    user = db.session.execute(sa.select(User).where(User.email == email)).scalar_one_or_none()
    now = utcnow()
    if user is None:
        _dummy_verify(password)
        audit.record("auth.login", actor_label=email, outcome="failure", object_type="user_account",
                     after={"reason": "unknown user"})
        raise LoginRefused()
    ok = verify_password(user.password_hash, password)
    locked = _is_locked(user, now, request_source())
    if not ok or locked or not user.active:
        reason = "locked" if locked else ("disabled" if not user.active else "wrong password")
        if not ok and not locked:
            _count_failure(user, now)
        audit.record("auth.login", user, actor=user, outcome="failure",
                     after={"reason": reason, "failed_logins": user.failed_logins,
                            "locked": _is_locked(user, now, request_source())})
        raise LoginRefused()
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
        audit.record("user.password_rehash", user, actor=user, after={"reason": "hashing parameters changed"})
    return user


def record_factor_failure(user, reason):
    """A wrong second-factor code counts towards the same lockout as a wrong password."""
    now = utcnow()
    _count_failure(user, now)
    audit.record("auth.mfa", user, actor=user, outcome="failure",
                 after={"reason": reason, "failed_logins": user.failed_logins, "locked": _is_locked(user, now)})


def open_session(user, *, ip=None, user_agent=None, mfa=False):
    """Both factors passed: a new server-side session."""
    now = utcnow()
    if _is_locked(user, now) or not user.active:
        raise LoginRefused()
    user.failed_logins = 0
    user.first_failed_at = None
    user.last_login_at = now
    notice = sign_in_notice(user)
    db.session.execute(sa.update(LoginBlock).where(LoginBlock.user_id == user.id, LoginBlock.locked_at.is_(None))
                       .values(failures=0, first_failed_at=None))
    user_session = UserSession(
        id=secrets.token_urlsafe(32), user=user, created_at=now, last_seen_at=now,
        ip=(ip or "")[:64], user_agent=(user_agent or "")[:300],
    )
    db.session.add(user_session)
    db.session.flush()
    audit.record("auth.login", user, actor=user, after={"session": user_session.id[:8], "mfa": mfa})
    user_session.notice = notice  # shown once by the view
    return user_session


def authenticate(email, password, *, ip=None, user_agent=None):
    """Password-only sign-in (CLI, tests, and users without a second factor)."""
    user = check_password(email, password)
    return open_session(user, ip=ip, user_agent=user_agent)


def _count_failure(user, now, source=None):
    """One more failure for this account from this address. At LOCKOUT_THRESHOLD within the window the account
    locks for that address only: until an administrator releases it (LOCKOUT_MODE=admin, CJIS AC-7), or for the
    window, doubled at each new lock up to a day (timed). Other addresses still sign in, so nobody can lock a
    known account out by guessing. ACCOUNT_FAILURE_LIMIT consecutive failures from anywhere lock it whole."""
    cfg = current_app.config
    source = source or request_source()
    window = timedelta(minutes=cfg["LOCKOUT_WINDOW_MINUTES"])
    block = _block(user, source, create=True)
    if block.first_failed_at is None or now - block.first_failed_at > window:
        block.first_failed_at = now
        block.failures = 0
    block.failures += 1
    user.failed_logins = (user.failed_logins or 0) + 1
    user.first_failed_at = user.first_failed_at or now
    if block.failures >= cfg["LOCKOUT_THRESHOLD"] and block.locked_at is None:
        block.locks += 1
        block.locked_at = now
        block.locked_until = (None if cfg["LOCKOUT_MODE"] == "admin"
                              else now + min(window * 2 ** (block.locks - 1), TIMED_LOCK_MAX))
        audit.record("auth.lockout", user, actor=user,
                     after={"source": source, "failed_logins": block.failures, "until": block.locked_until,
                            "lock": block.locks})
        notifications.account_changed(user, "lockout", actor=user)
    if user.failed_logins >= ACCOUNT_FAILURE_LIMIT and user.locked_at is None:
        user.locked_at = now
        audit.record("auth.lockout", user, actor=user, after={"scope": "account", "failed_logins": user.failed_logins})


def locked_sources(user):
    return db.session.execute(
        sa.select(LoginBlock).where(LoginBlock.user_id == user.id, LoginBlock.locked_at.is_not(None))
        .order_by(LoginBlock.locked_at)).scalars().all()


def unlock_user(user, *, actor=None):
    """Release the account: its whole-account lock and the lock of every address (`flask users unlock` too)."""
    sources = locked_sources(user)
    before = {"locked_at": user.locked_at, "failed_logins": user.failed_logins,
              "sources": [b.source for b in sources]}
    user.locked_at = None
    user.failed_logins = 0
    user.first_failed_at = None
    for block in sources:
        block.locked_at = block.locked_until = block.first_failed_at = None
        block.failures = 0
    audit.record("user.unlock", user, before=before, after={"locked_at": None}, actor=actor)


def sign_in_notice(user):
    """What the holder is told at a successful sign-in: failures and locks since the last one, by address."""
    blocks = db.session.execute(
        sa.select(LoginBlock).where(LoginBlock.user_id == user.id,
                                    sa.or_(LoginBlock.failures > 0, LoginBlock.locked_at.is_not(None)))
        .order_by(LoginBlock.source)).scalars().all()
    if not blocks:
        return None
    parts = []
    for block in blocks:
        text = f"{block.failures} from {block.source}"
        if block.locked_at is not None:
            text += (" (locked until an administrator releases it)" if block.locked_until is None
                     else f" (locked until {block.locked_until:%Y-%m-%d %H:%M} UTC)")
        parts.append(text)
    return ("Failed sign-ins to your account since you last signed in: " + "; ".join(parts)
            + ". If these were not you, change your password and tell your administrator.")


def load_session(session_id):
    """Return the live UserSession for a cookie's id, or None when revoked, idle or too old. Writes nothing."""
    if not session_id:
        return None
    cfg = current_app.config
    now = utcnow()
    user_session = db.session.get(UserSession, session_id)
    if user_session is None or user_session.revoked_at is not None or not user_session.user.active:
        return None
    if (now - user_session.last_seen_at > timedelta(minutes=cfg["SESSION_IDLE_MINUTES"])
            or now - user_session.created_at > timedelta(hours=cfg["SESSION_MAX_HOURS"])):
        return None
    return user_session


def activity_stamp(user_session):
    """The UPDATE that records this request as the session's last activity (the idle timeout counts from
    it), or None when the stored time is under ACTIVITY_STEP old: a write on every page view would
    serialise all readers on SQLite. The caller decides which transaction runs it."""
    now = utcnow()
    if now - user_session.last_seen_at <= ACTIVITY_STEP:
        return None
    return sa.update(UserSession).where(
        UserSession.id == user_session.id, UserSession.last_seen_at < now - ACTIVITY_STEP
    ).values(last_seen_at=now)


def end_session(user_session, *, reason="logout"):
    if user_session.revoked_at is None:
        user_session.revoked_at = utcnow()
        audit.record("auth.logout", user_session.user, actor=user_session.user, after={"reason": reason})


def revoke_all_sessions(user, *, actor=None, reason="revoked", keep=None):
    """Sign the user out everywhere (except the session `keep`, e.g. the one changing the password), and end
    their API tokens and calendar feeds too: a secret must not outlive what ended the sessions."""
    from tracker.services import tokens

    tokens.revoke_all(user, actor=actor, reason=reason)
    now = utcnow()
    query = sa.select(UserSession).where(UserSession.user_id == user.id, UserSession.revoked_at.is_(None))
    if keep is not None:
        query = query.where(UserSession.id != keep.id)
    sessions = db.session.execute(query).scalars().all()
    for s in sessions:
        s.revoked_at = now
    audit.record("user.sessions_revoked", user, actor=actor, after={"count": len(sessions), "reason": reason})
    return len(sessions)


def set_active(user, active, *, actor=None):
    before = {"active": user.active}
    user.active = active
    audit.record("user.activate" if active else "user.deactivate", user, before=before,
                 after={"active": active}, actor=actor)
    if not active:
        revoke_all_sessions(user, actor=actor, reason="deactivated")


class ReauthLocked(Exception):
    """Too many wrong current passwords from this address: the account is now locked for it."""


def confirm_identity(user, password, code=None):
    """The current password, and the code from the authenticator app when the user has one, before a sensitive
    change (a new password, a new token). A wrong one counts towards the account's lockout for this address
    like a failed sign-in (and is audited): raises ValidationFailed naming the field, or ReauthLocked."""
    from tracker.services import mfa

    now = utcnow()
    source = request_source()
    if _is_locked(user, now, source):
        raise ReauthLocked()
    errors = {}
    if not verify_password(user.password_hash, password or ""):
        errors["current_password"] = "Current password is incorrect."  # noqa: S105 - a message, not a password
    elif user.totp_secret and not mfa.verify(user, code or ""):
        errors["code"] = "Enter the current 6-digit code from your authenticator app."
    if not errors:
        return
    _count_failure(user, now, source)
    locked = _is_locked(user, now, source)
    audit.record("auth.reauth", user, actor=user, outcome="failure",
                 after={"reason": "wrong code" if "code" in errors else "wrong password", "source": source,
                        "locked": locked})
    if locked:
        raise ReauthLocked()
    raise ValidationFailed(errors)


def change_password(user, current_password, new_password, *, actor=None, code=None):
    confirm_identity(user, current_password, code)
    problem = password_problem(new_password, user.email)
    if problem:
        raise ValidationFailed({"new_password": problem})
    user.password_hash = hash_password(new_password)
    user.must_change_password = False
    audit.record("user.password_change", user, actor=actor or user)
    notifications.account_changed(user, "password_change", actor=actor or user)


def random_password():
    """Long, random and typeable: four groups of URL-safe characters."""
    return "-".join(secrets.token_urlsafe(5) for _ in range(4))


def set_password(user, password, *, actor=None, temporary=True):
    """Administrative reset: new hash, lock released, every session and token ended; the user chooses a new
    password at the next sign-in (temporary)."""
    user.password_hash = hash_password(password)
    user.must_change_password = temporary
    user.locked_at = None
    user.failed_logins = 0
    user.first_failed_at = None
    db.session.execute(sa.update(LoginBlock).where(LoginBlock.user_id == user.id)
                       .values(failures=0, first_failed_at=None, locked_at=None, locked_until=None))
    audit.record("user.password_reset", user, actor=actor)
    revoke_all_sessions(user, actor=actor, reason="password reset")
    notifications.account_changed(user, "password_reset", actor=actor)


def agency_by_slug(slug):
    return db.session.execute(sa.select(Agency).where(Agency.slug == slug)).scalar_one_or_none()
