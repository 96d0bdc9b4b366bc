"""Policies and training curricula through review to approval, and the training that follows."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

DOCUMENT_KINDS = {
    "policy": "Policy",
    "general_order": "General order",
    "curriculum": "Training curriculum",
    "lesson_plan": "Lesson plan",
    "plan": "Plan",
    "protocol": "Protocol",
}
DOCUMENT_STATES = {
    "draft": "Draft",
    "in_review": "In review",
    "in_comment": "In community comment",
    "revised": "Revised",
    "approved": "Approved",
    "in_effect": "In effect",
    "superseded": "Superseded",
}
ROUND_OUTCOMES = {"no_objection": "No objection", "comments_to_address": "Comments to address",
                  "objection": "Objection"}
APPROVAL_KINDS = {"no_objection": "Monitor's no objection", "court_order": "Court order"}
COMMENT_STATES = {"published": "Published", "pending": "Awaiting moderation", "rejected": "Not published"}
COMMENT_RESPONSES = {"accepted": "Accepted", "not_accepted": "Not accepted"}

policy_document_requirement = sa.Table(
    "policy_document_requirement", Base.metadata,
    sa.Column("document_id", sa.ForeignKey("policy_document.id"), primary_key=True),
    sa.Column("requirement_id", sa.ForeignKey("requirement.id"), primary_key=True, index=True),
)


class PolicyDocument(Base):
    __tablename__ = "policy_document"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    kind: so.Mapped[str] = so.mapped_column(sa.String(24))
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="draft")
    approval_kind: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    approved_on: so.Mapped[date | None]
    approval_ref: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    effective_on: so.Mapped[date | None]
    superseded_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("policy_document.id"))
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    row_version: so.Mapped[int] = so.mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": row_version}

    requirements = so.relationship("Requirement", secondary=policy_document_requirement,
                                   order_by="Requirement.sort_key")
    versions = so.relationship("PolicyVersion", back_populates="document", order_by="PolicyVersion.number")

    @property
    def state_label(self):
        return DOCUMENT_STATES.get(self.state, self.state)


class PolicyVersion(Base):
    __tablename__ = "policy_version"
    __table_args__ = (sa.UniqueConstraint("document_id", "number"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    document_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("policy_document.id"))
    number: so.Mapped[int]
    file_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("document_file.id"))
    note: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    document = so.relationship("PolicyDocument", back_populates="versions")
    file = so.relationship("DocumentFile", lazy="joined")


class ReviewRound(Base):
    """The monitoring team (and named outside reviewers) comment on a version until the deadline, then record an
    outcome."""

    __tablename__ = "review_round"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    version_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("policy_version.id"), index=True)
    opened_on: so.Mapped[date]
    comment_due: so.Mapped[date]
    outside_reviewers: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    outcome: so.Mapped[str | None] = so.mapped_column(sa.String(24))
    closed_on: so.Mapped[date | None]
    opened_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    closed_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))


class CommentWindow(Base):
    """A community comment period on a version: committee members, and the public when allowed."""

    __tablename__ = "comment_window"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    version_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("policy_version.id"), index=True)
    opens_on: so.Mapped[date]
    closes_on: so.Mapped[date]
    allow_public: so.Mapped[bool] = so.mapped_column(default=False)
    summary: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    summary_published_at: so.Mapped[datetime | None]
    opened_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))


class PolicyComment(Base):
    __tablename__ = "policy_comment"
    __table_args__ = (sa.CheckConstraint("state IN ('published', 'pending', 'rejected')", name="state"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    version_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("policy_version.id"), index=True)
    round_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("review_round.id"))
    window_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("comment_window.id"))
    # Null for a member of the public, who gives a name (shown only after moderation).
    author_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    public_name: so.Mapped[str] = so.mapped_column(sa.String(100), default="")
    anchor: so.Mapped[str] = so.mapped_column(sa.String(200), default="")
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="published")
    moderated_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    moderated_at: so.Mapped[datetime | None]
    response: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    response_reason: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    answered_in_version_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("policy_version.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    author = so.relationship("User", foreign_keys=[author_id])


class TrainingPlan(Base):
    """Training a population must receive once a document is approved, with a target date."""

    __tablename__ = "training_plan"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    document_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("policy_document.id"), index=True)
    population: so.Mapped[str] = so.mapped_column(sa.String(200))
    population_size: so.Mapped[int]
    target_date: so.Mapped[date | None]
    target_pct: so.Mapped[int] = so.mapped_column(default=100)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)


class TrainingCount(Base):
    """Completions to date, as reported by the learning system on a date."""

    __tablename__ = "training_count"
    __table_args__ = (sa.UniqueConstraint("plan_id", "as_of"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    plan_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("training_plan.id"))
    as_of: so.Mapped[date]
    completed: so.Mapped[int]


class TrainingRosterEntry(Base):
    """One person's completion from a roster import; the person id is kept only as a keyed hash."""

    __tablename__ = "training_roster_entry"
    plan_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("training_plan.id"), primary_key=True)
    person_hash: so.Mapped[str] = so.mapped_column(sa.String(64), primary_key=True)
    completed_on: so.Mapped[date]
