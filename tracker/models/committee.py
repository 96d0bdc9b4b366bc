"""The advisory committee's own work: meetings, and written recommendations with the agency's responses."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

meeting_attendee = sa.Table(
    "meeting_attendee", Base.metadata,
    sa.Column("meeting_id", sa.ForeignKey("meeting.id"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("user_account.id"), primary_key=True),
)
meeting_document = sa.Table(
    "meeting_document", Base.metadata,
    sa.Column("meeting_id", sa.ForeignKey("meeting.id"), primary_key=True),
    sa.Column("file_id", sa.ForeignKey("document_file.id"), primary_key=True),
)


class Meeting(Base):
    __tablename__ = "meeting"
    __table_args__ = (sa.Index("ix_meeting_agency_starts", "agency_id", "starts_at"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"))
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    starts_at: so.Mapped[datetime]
    location: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    link: so.Mapped[str] = so.mapped_column(sa.String(2000), default="")
    # Markdown, rendered safely (no raw HTML, no live links from untrusted schemes).
    agenda: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    minutes: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    # People present who have no account (names only).
    guests: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    agenda_public: so.Mapped[bool] = so.mapped_column(default=False)
    minutes_public: so.Mapped[bool] = so.mapped_column(default=False)
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)

    attendees = so.relationship("User", secondary=meeting_attendee, order_by="User.name")
    documents = so.relationship("DocumentFile", secondary=meeting_document, order_by="DocumentFile.id")


RECOMMENDATION_STATES = {"draft": "Draft", "submitted": "Submitted", "responded": "Answered",
                         "withdrawn": "Withdrawn"}
RESPONSE_DECISIONS = {
    "accepted": "Accepted",
    "accepted_in_part": "Accepted in part",
    "under_consideration": "Under consideration",
    "declined": "Declined",
}

committee_recommendation_requirement = sa.Table(
    "committee_recommendation_requirement", Base.metadata,
    sa.Column("recommendation_id", sa.ForeignKey("committee_recommendation.id"), primary_key=True),
    sa.Column("requirement_id", sa.ForeignKey("requirement.id"), primary_key=True, index=True),
)
committee_recommendation_module = sa.Table(
    "committee_recommendation_module", Base.metadata,
    sa.Column("recommendation_id", sa.ForeignKey("committee_recommendation.id"), primary_key=True),
    sa.Column("module_id", sa.ForeignKey("module.id"), primary_key=True),
)
committee_response_requirement = sa.Table(
    "committee_response_requirement", Base.metadata,
    sa.Column("response_id", sa.ForeignKey("committee_response.id"), primary_key=True),
    sa.Column("requirement_id", sa.ForeignKey("requirement.id"), primary_key=True),
)


class CommitteeRecommendation(Base):
    """A written recommendation of the advisory committee to the agency (not a catalog Recommendation)."""

    __tablename__ = "committee_recommendation"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "number"),
        sa.CheckConstraint("state IN ('draft', 'submitted', 'responded', 'withdrawn')", name="state"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    number: so.Mapped[int]
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    rationale: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    meeting_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("meeting.id"))
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="draft")
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)
    submitted_at: so.Mapped[datetime | None]
    submitted_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    # Submitted date + the agency's response period (Agency.committee_response_days).
    response_due: so.Mapped[date | None]
    public: so.Mapped[bool] = so.mapped_column(default=False)
    row_version: so.Mapped[int] = so.mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": row_version}

    meeting = so.relationship("Meeting")
    created_by = so.relationship("User", foreign_keys=[created_by_id])
    requirements = so.relationship("Requirement", secondary=committee_recommendation_requirement,
                                   order_by="Requirement.sort_key")
    modules = so.relationship("Module", secondary=committee_recommendation_module, order_by="Module.position")

    @property
    def state_label(self):
        return RECOMMENDATION_STATES.get(self.state, self.state)


class CommitteeResponse(Base):
    """The agency's written response. A revised response replaces the current one; earlier ones stay."""

    __tablename__ = "committee_response"
    __table_args__ = (
        sa.CheckConstraint("decision IN ('accepted', 'accepted_in_part', 'under_consideration', 'declined')",
                           name="decision"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    recommendation_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("committee_recommendation.id"), index=True)
    decision: so.Mapped[str] = so.mapped_column(sa.String(24))
    reasons: so.Mapped[str] = so.mapped_column(sa.Text)
    steps: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    author_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    is_current: so.Mapped[bool] = so.mapped_column(default=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    author = so.relationship("User")
    requirements = so.relationship("Requirement", secondary=committee_response_requirement,
                                   order_by="Requirement.sort_key")

    @property
    def decision_label(self):
        return RESPONSE_DECISIONS.get(self.decision, self.decision)
