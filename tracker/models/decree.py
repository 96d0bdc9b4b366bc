"""The structure of an agency's decree: instruments, sections, responsible entities, recurring duties and the
crosswalk from the agency's own paragraphs to the catalog."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

INSTRUMENT_KINDS = {
    "consent_decree": "Consent decree",
    "settlement_agreement": "Settlement agreement",
    "memorandum_of_agreement": "Memorandum of agreement",
    "state_agreement": "State-court agreement",
    "court_order": "Court order",
}


class Instrument(Base):
    """A court-enforced document binding the agency. Each has its own effective date, compliance scale and
    sustainment period; relative deadlines count from its effective date. Position 0 is the primary one."""

    __tablename__ = "instrument"
    __table_args__ = (sa.UniqueConstraint("agency_id", "short_name"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    short_name: so.Mapped[str] = so.mapped_column(sa.String(100))
    title: so.Mapped[str] = so.mapped_column(sa.String(500), default="")
    kind: so.Mapped[str] = so.mapped_column(sa.String(32), default="consent_decree")
    court: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    case_number: so.Mapped[str] = so.mapped_column(sa.String(100), default="")
    # The catalog's record of this decree, when it is one the catalog knows.
    source_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("source.id"))
    approved_date: so.Mapped[date | None]
    effective_date: so.Mapped[date | None]
    scale_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("compliance_scale.id"))
    # Months a requirement must stay at the top level before the court may release it.
    sustainment_months: so.Mapped[int | None]
    position: so.Mapped[int] = so.mapped_column(default=0)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    agency = so.relationship("Agency", back_populates="instruments")
    source = so.relationship("Source", lazy="joined")
    scale = so.relationship("ComplianceScale", lazy="joined")

    @property
    def kind_label(self):
        return INSTRUMENT_KINDS.get(self.kind, self.kind)


class DecreeSection(Base):
    """A heading of the decree that groups paragraphs, e.g. "III.C Crisis Intervention"."""

    __tablename__ = "decree_section"
    __table_args__ = (sa.UniqueConstraint("agency_id", "label"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    label: so.Mapped[str] = so.mapped_column(sa.String(300))
    # Natural order of the label ("III.C" after "III.B", "10" after "9").
    sort_key: so.Mapped[str] = so.mapped_column(sa.String(400), default="")


class ResponsibleEntity(Base):
    """Who a paragraph binds: the department, the emergency-communications office, the oversight agency…"""

    __tablename__ = "responsible_entity"
    __table_args__ = (sa.UniqueConstraint("agency_id", "name"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))


class RequirementLink(Base):
    """Crosswalk: an agency's own paragraph implements a catalog recommendation."""

    __tablename__ = "requirement_link"
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), primary_key=True)
    recommendation_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("recommendation.id"), primary_key=True,
                                                         index=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))

    recommendation = so.relationship("Recommendation", lazy="joined")


OCCURRENCE_STATES = {"open": "Open", "completed": "Completed"}


class Occurrence(Base):
    """One round of a recurring duty ("2025 annual report"). Exactly one is open at a time; completing it opens the
    next, and the requirement's due date follows the open one."""

    __tablename__ = "occurrence"
    __table_args__ = (
        sa.UniqueConstraint("requirement_id", "sequence"),
        sa.CheckConstraint("state IN ('open', 'completed')", name="state"),
        sa.Index("uq_occurrence_open", "requirement_id", unique=True,
                 sqlite_where=sa.text("state = 'open'"), postgresql_where=sa.text("state = 'open'")),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    sequence: so.Mapped[int]
    due_date: so.Mapped[date]
    label: so.Mapped[str] = so.mapped_column(sa.String(200))
    state: so.Mapped[str] = so.mapped_column(sa.String(16), default="open")
    completed_on: so.Mapped[date | None]
    completed_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    note: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    completed_by = so.relationship("User")

    @property
    def state_label(self):
        return OCCURRENCE_STATES.get(self.state, self.state)
