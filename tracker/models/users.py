"""Users, their per-agency memberships and their server-side sessions."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, Timestamped

AGENCY_ROLES = {
    "officer": "Compliance officer",
    "monitor": "Monitor",
    "committee": "Advisory-committee member",
}
ROLES = ("admin", *AGENCY_ROLES)


class User(Timestamped, Base):
    __tablename__ = "user_account"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    email: so.Mapped[str] = so.mapped_column(sa.String(254), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    password_hash: so.Mapped[str] = so.mapped_column(sa.String(255))
    is_admin: so.Mapped[bool] = so.mapped_column(default=False)
    active: so.Mapped[bool] = so.mapped_column(default=True)
    failed_logins: so.Mapped[int] = so.mapped_column(default=0)
    first_failed_at: so.Mapped[datetime | None]
    locked_at: so.Mapped[datetime | None]
    last_login_at: so.Mapped[datetime | None]
    # TOTP second factor. The pending secret waits for the first correct code during enrolment;
    # the last used time step makes each code single-use.
    totp_secret: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    totp_pending_secret: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    totp_last_step: so.Mapped[int | None] = so.mapped_column(sa.BigInteger)
    # Set by an administrator's new account or password reset: the first sign-in asks for a new password.
    must_change_password: so.Mapped[bool] = so.mapped_column(default=False)

    memberships: so.Mapped[list["Membership"]] = so.relationship(
        back_populates="user", cascade="all, delete-orphan"
    )

    @property
    def display_name(self):
        return self.name or self.email

    # Flask-Login protocol. The id kept in the cookie is the server-side session's id, not the
    # user's, so revoking the session row signs the browser out.
    is_authenticated = True
    is_anonymous = False
    session_token = None

    def get_id(self):
        return self.session_token

    @property
    def is_active(self):
        return self.active


class Membership(Timestamped, Base):
    __tablename__ = "membership"
    __table_args__ = (sa.UniqueConstraint("user_id", "agency_id"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), index=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    role: so.Mapped[str] = so.mapped_column(sa.String(16))
    # A committee member who chairs the committee (submits its recommendations).
    is_chair: so.Mapped[bool] = so.mapped_column(default=False)

    user: so.Mapped[User] = so.relationship(back_populates="memberships")
    agency = so.relationship("Agency", lazy="joined")

    @property
    def role_label(self):
        return AGENCY_ROLES.get(self.role, self.role)


class UserSession(Base):
    """One signed-in browser. The cookie holds only this random id, so logout really ends it."""

    __tablename__ = "user_session"
    id: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), index=True)
    created_at: so.Mapped[datetime]
    last_seen_at: so.Mapped[datetime]
    revoked_at: so.Mapped[datetime | None]
    ip: so.Mapped[str | None] = so.mapped_column(sa.String(64))
    user_agent: so.Mapped[str | None] = so.mapped_column(sa.String(300))

    user: so.Mapped[User] = so.relationship(lazy="joined")


class ApiToken(Base):
    """A personal secret for the read API or a calendar feed. Only its SHA-256 is stored."""

    __tablename__ = "api_token"
    __table_args__ = (sa.CheckConstraint("kind IN ('api', 'calendar')", name="kind"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), index=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    name: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    # Calendar feeds are per agency; API tokens see everything the user sees.
    agency_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("agency.id"))
    token_hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    prefix: so.Mapped[str] = so.mapped_column(sa.String(12))
    created_at: so.Mapped[datetime]
    # Every token ends: 90 days by default, 365 at most (issue 19).
    expires_at: so.Mapped[datetime]
    last_used_at: so.Mapped[datetime | None]
    revoked_at: so.Mapped[datetime | None]
    # Why it ended before its time, shown on the account page: "revoked", "rotated", "password change", ...
    revoked_reason: so.Mapped[str] = so.mapped_column(sa.String(64), default="")

    user: so.Mapped[User] = so.relationship(lazy="joined")
    agency = so.relationship("Agency")

    def state(self, now):
        """live, expired or revoked."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= now else "live"


class LoginBlock(Base):
    """Failed sign-ins (and wrong current passwords) of one account from one source address, and the lock they
    caused. Locking the account for that source only keeps an attacker from locking its holder out (issue 19)."""

    __tablename__ = "login_block"
    __table_args__ = (sa.UniqueConstraint("user_id", "source"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    source: so.Mapped[str] = so.mapped_column(sa.String(64))
    failures: so.Mapped[int] = so.mapped_column(default=0)
    first_failed_at: so.Mapped[datetime | None]
    locked_at: so.Mapped[datetime | None]
    # The lock lifts at this time; None while locked means until an administrator releases it (LOCKOUT_MODE=admin).
    locked_until: so.Mapped[datetime | None]
    # Locks this source caused on this account: each one lasts twice as long as the one before.
    locks: so.Mapped[int] = so.mapped_column(default=0)


class FormSubmission(Base):
    """A sent form that created something, by the one-time id the form carried.

    The same form sent again (double click, network retry, Back and resend) finds its row and is
    pointed at what the first sending made instead of making it twice. Rows are kept two days.
    """

    __tablename__ = "form_submission"
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), primary_key=True)
    id: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    result_url: so.Mapped[str] = so.mapped_column(sa.String(500))
    created_at: so.Mapped[datetime] = so.mapped_column(index=True)
