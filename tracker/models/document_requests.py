"""The monitor's document and data requests, the agency's answers and extension requests."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

# "Overdue" is not stored: an open request past its due date is overdue.
REQUEST_STATES = {"open": "Open", "answered": "Answered", "withdrawn": "Withdrawn", "closed": "Closed"}
EXTENSION_STATES = {"pending": "Pending", "granted": "Granted", "refused": "Refused"}

document_request_requirement = sa.Table(
    "document_request_requirement", Base.metadata,
    sa.Column("request_id", sa.ForeignKey("document_request.id"), primary_key=True),
    sa.Column("requirement_id", sa.ForeignKey("requirement.id"), primary_key=True, index=True),
)


class DocumentRequest(Base):
    __tablename__ = "document_request"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "number"),
        sa.CheckConstraint("state IN ('open', 'answered', 'withdrawn', 'closed')", name="state"),
        sa.Index("ix_document_request_open", "agency_id", "state", "due_date"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"))
    period_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("monitoring_period.id"), index=True)
    # Numbered per agency, as monitors cite them ("Request 14").
    number: so.Mapped[int]
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    details: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    due_date: so.Mapped[date]
    # The date first asked for; extensions move due_date, lateness is judged against the granted date.
    original_due_date: so.Mapped[date]
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="open")
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    answered_at: so.Mapped[datetime | None]
    closed_at: so.Mapped[datetime | None]
    closed_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    close_note: so.Mapped[str] = so.mapped_column(sa.Text, default="")

    requirements = so.relationship("Requirement", secondary=document_request_requirement,
                                   order_by="Requirement.sort_key")
    created_by = so.relationship("User", foreign_keys=[created_by_id])

    @property
    def state_label(self):
        return REQUEST_STATES.get(self.state, self.state)


class DocumentRequestAnswer(Base):
    """What the agency produced: evidence (the usual upload, linked here) or a note."""

    __tablename__ = "document_request_answer"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    request_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("document_request.id"), index=True)
    evidence_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("evidence.id"), index=True)
    note: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    author_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    evidence = so.relationship("Evidence")
    author = so.relationship("User")


class DocumentRequestExtension(Base):
    __tablename__ = "document_request_extension"
    __table_args__ = (sa.CheckConstraint("state IN ('pending', 'granted', 'refused')", name="state"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    request_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("document_request.id"), index=True)
    requested_due: so.Mapped[date]
    reason: so.Mapped[str] = so.mapped_column(sa.Text)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="pending")
    requested_by_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    decided_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    decided_at: so.Mapped[datetime | None]
    decision_note: so.Mapped[str] = so.mapped_column(sa.Text, default="")

    requested_by = so.relationship("User", foreign_keys=[requested_by_id])
