"""Evidence (a stored file or a link) and the monitor's reviews of it."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

REVIEW_STATES = {"submitted": "Submitted", "accepted": "Accepted", "returned": "Returned"}
VISIBILITIES = {"restricted": "Restricted", "shareable": "Shareable"}


class Evidence(Base):
    __tablename__ = "evidence"
    __table_args__ = (
        sa.CheckConstraint("kind IN ('file', 'link')", name="kind"),
        sa.CheckConstraint("review_state IN ('submitted', 'accepted', 'returned')", name="review_state"),
        sa.CheckConstraint("visibility IN ('restricted', 'shareable')", name="visibility"),
        # The review queue and the waiting counts: current submitted evidence, oldest first.
        sa.Index("ix_evidence_review_queue", "review_state", "superseded", "created_at"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    # For a recurring duty: the occurrence this evidence shows was met.
    occurrence_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("occurrence.id"), index=True)
    kind: so.Mapped[str] = so.mapped_column(sa.String(8))
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    period_start: so.Mapped[date | None]
    period_end: so.Mapped[date | None]
    visibility: so.Mapped[str] = so.mapped_column(sa.String(16), default="restricted")
    # Files are stored content-addressed; the user's filename is display metadata only.
    sha256: so.Mapped[str | None] = so.mapped_column(sa.String(64), index=True)
    size_bytes: so.Mapped[int | None] = so.mapped_column(sa.BigInteger)
    filename: so.Mapped[str | None] = so.mapped_column(sa.String(255))
    media_type: so.Mapped[str | None] = so.mapped_column(sa.String(100))
    url: so.Mapped[str | None] = so.mapped_column(sa.String(2000))
    review_state: so.Mapped[str] = so.mapped_column(sa.String(16), default="submitted")
    # A new version points at the one it replaces; the old one stays.
    supersedes_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("evidence.id"))
    superseded: so.Mapped[bool] = so.mapped_column(default=False)
    uploaded_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    requirement = so.relationship("Requirement")
    uploaded_by = so.relationship("User")
    reviews: so.Mapped[list["EvidenceReview"]] = so.relationship(
        back_populates="evidence", order_by="EvidenceReview.created_at"
    )


class EvidenceReview(Base):
    __tablename__ = "evidence_review"
    __table_args__ = (sa.CheckConstraint("decision IN ('accepted', 'returned')", name="decision"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    evidence_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("evidence.id"), index=True)
    reviewer_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    decision: so.Mapped[str] = so.mapped_column(sa.String(16))
    comment: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    evidence: so.Mapped[Evidence] = so.relationship(back_populates="reviews")
    reviewer = so.relationship("User")
