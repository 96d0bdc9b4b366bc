"""An agency's requirements and their history (status, deadline changes, comments)."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so
from sqlalchemy.ext.hybrid import hybrid_property

from tracker.models.base import Base, Timestamped, utcnow

STATUSES = {
    "not_started": "Not started",
    "in_progress": "In progress",
    "implemented": "Implemented",
    "not_applicable": "Not applicable",
}
# The statuses whose due date still binds: only an open requirement can be overdue or due soon.
OPEN_STATUSES = ("not_started", "in_progress")


class Requirement(Timestamped, Base):
    __tablename__ = "requirement"
    __table_args__ = (
        # "¶ 47" and "47" are the same paragraph: uniqueness is on the normalised id.
        sa.UniqueConstraint("agency_id", "code_key"),
        sa.Index("ix_requirement_agency_sort", "agency_id", "sort_key"),
        sa.CheckConstraint("deadline_unit IN ('days', 'months')", name="deadline_unit"),
        sa.CheckConstraint(
            "status IN ('not_started', 'in_progress', 'implemented', 'not_applicable')", name="status"
        ),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    # Null for the agency's own decree paragraphs imported as custom requirements.
    recommendation_id: so.Mapped[int | None] = so.mapped_column(
        sa.ForeignKey("recommendation.id"), index=True
    )
    module_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("module.id"), index=True)
    # The decree, agreement or order this requirement comes from; relative deadlines count from its effective date.
    instrument_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("instrument.id"), index=True)
    section_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("decree_section.id"), index=True)
    entity_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("responsible_entity.id"), index=True)
    # The id as the decree writes it ("¶ 131(d)", "¶¶ 61–63", "CIT-004"); code_key and sort_key follow it.
    code: so.Mapped[str] = so.mapped_column(sa.String(64))
    code_key: so.Mapped[str] = so.mapped_column(sa.String(64))
    sort_key: so.Mapped[str] = so.mapped_column(sa.String(400))
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    summary: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    citation_text: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    status: so.Mapped[str] = so.mapped_column(sa.String(16), default="not_started")
    owner_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    due_date: so.Mapped[date | None]
    # True while the due date follows the effective date + typical deadline (recomputed when the
    # court moves the effective date); False once someone set it by hand.
    due_date_derived: so.Mapped[bool] = so.mapped_column(default=True)
    # The deadline as the decree words it, and its offset from the instrument's effective date when relative.
    deadline_text: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    deadline_amount: so.Mapped[int | None]
    deadline_unit: so.Mapped[str | None] = so.mapped_column(sa.String(8))
    # A recurring duty: months between occurrences, and the cadence as the decree words it.
    cadence_months: so.Mapped[int | None]
    cadence_text: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    notes: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)
    terminated_at: so.Mapped[date | None]
    termination_ref: so.Mapped[str | None] = so.mapped_column(sa.String(300))
    row_version: so.Mapped[int] = so.mapped_column(nullable=False)

    __mapper_args__ = {"version_id_col": row_version}

    agency = so.relationship("Agency")
    instrument = so.relationship("Instrument")
    section = so.relationship("DecreeSection")
    entity = so.relationship("ResponsibleEntity")
    recommendation = so.relationship("Recommendation")
    module = so.relationship("Module", lazy="joined")
    owner = so.relationship("User")

    @property
    def status_label(self):
        return STATUSES.get(self.status, self.status)

    @so.validates("code")
    def _derive_keys(self, _name, code):
        from tracker.services.paragraphs import id_key, sort_key

        self.code_key = id_key(code)[:64]
        self.sort_key = sort_key(code)
        return code

    @property
    def recurring(self):
        return self.cadence_months is not None

    @hybrid_property
    def is_open(self):
        """True while the due date binds: a test on a loaded requirement, a condition in a query. A recurring duty's
        open occurrence binds whatever its status, unless it is not applicable."""
        return self.status in OPEN_STATUSES or (self.cadence_months is not None and self.status != "not_applicable")

    @is_open.inplace.expression
    @classmethod
    def _is_open_condition(cls):
        return sa.or_(cls.status.in_(OPEN_STATUSES),
                      sa.and_(cls.cadence_months.is_not(None), cls.status != "not_applicable"))


class StatusChange(Base):
    __tablename__ = "status_change"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    old_status: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    new_status: so.Mapped[str] = so.mapped_column(sa.String(16))
    note: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    actor_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    actor = so.relationship("User")


class DeadlineChange(Base):
    __tablename__ = "deadline_change"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    old_date: so.Mapped[date | None]
    new_date: so.Mapped[date | None]
    reason: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    actor_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    actor = so.relationship("User")


class Comment(Base):
    __tablename__ = "comment"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    author_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    author = so.relationship("User")
