"""E-mail notifications: per-user preferences, followed requirements, and a transactional outbox.

A change that notifies writes Notification rows (one per recipient) in its own transaction; immediate ones also get
an OutboxMessage there. Digests gather a user's pending notifications into one message per day or week. The worker
delivers outbox messages over SMTP, claiming each so that two workers never send the same one.
"""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

DELIVERY_MODES = {"immediate": "Immediately", "daily": "Daily digest", "weekly": "Weekly digest", "off": "Off"}
OUTBOX_STATES = {"queued": "Queued", "sent": "Sent", "failed": "Failed"}


class NotificationPreference(Base):
    """A user's choice for one category; without a row the role's default applies."""

    __tablename__ = "notification_preference"
    __table_args__ = (sa.CheckConstraint("mode IN ('immediate', 'daily', 'weekly', 'off')", name="mode"),)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), primary_key=True)
    category: so.Mapped[str] = so.mapped_column(sa.String(32), primary_key=True)
    mode: so.Mapped[str] = so.mapped_column(sa.String(16))


class RequirementFollow(Base):
    __tablename__ = "requirement_follow"
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), primary_key=True,
                                                      index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class Notification(Base):
    __tablename__ = "notification"
    __table_args__ = (
        sa.CheckConstraint("delivery IN ('immediate', 'daily', 'weekly')", name="delivery"),
        # Pending digest items per user.
        sa.Index("ix_notification_pending", "delivery", "message_id", "user_id"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"), index=True)
    agency_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("agency.id"))
    category: so.Mapped[str] = so.mapped_column(sa.String(32))
    subject: so.Mapped[str] = so.mapped_column(sa.String(300))
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    link: so.Mapped[str] = so.mapped_column(sa.String(1000), default="")
    delivery: so.Mapped[str] = so.mapped_column(sa.String(16))
    # Makes computed events (deadline reminders) idempotent: one per requirement, threshold and day.
    dedupe_key: so.Mapped[str | None] = so.mapped_column(sa.String(200), unique=True)
    message_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("outbox_message.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class OutboxMessage(Base):
    __tablename__ = "outbox_message"
    __table_args__ = (
        sa.CheckConstraint("state IN ('queued', 'sent', 'failed')", name="state"),
        sa.Index("ix_outbox_message_due", "state", "next_attempt_at"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    user_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"), index=True)
    to_addr: so.Mapped[str] = so.mapped_column(sa.String(254))
    category: so.Mapped[str] = so.mapped_column(sa.String(32))
    subject: so.Mapped[str] = so.mapped_column(sa.String(300))
    body_text: so.Mapped[str] = so.mapped_column(sa.Text)
    body_html: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    unsubscribe_url: so.Mapped[str] = so.mapped_column(sa.String(1000), default="")
    # A digest is assembled once per user and day/week.
    dedupe_key: so.Mapped[str | None] = so.mapped_column(sa.String(200), unique=True)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="queued")
    attempts: so.Mapped[int] = so.mapped_column(default=0)
    next_attempt_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    # A worker claims a message until this time; another worker skips it meanwhile.
    claimed_until: so.Mapped[datetime | None]
    claimed_by: so.Mapped[str] = so.mapped_column(sa.String(100), default="")
    sent_at: so.Mapped[datetime | None]
    last_error: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
