"""Monitoring periods and the monitor's findings per requirement per period."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

PERIOD_STATES = {"open": "Open", "shared": "Draft shared with the parties", "filed": "Filed"}


class MonitoringPeriod(Base):
    __tablename__ = "monitoring_period"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "name"),
        sa.CheckConstraint("state IN ('open', 'shared', 'filed')", name="state"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    start_date: so.Mapped[date]
    end_date: so.Mapped[date]
    # open (monitoring team only) -> shared (draft shared with the parties) -> filed (public, counts everywhere).
    state: so.Mapped[str] = so.mapped_column(sa.String(8), default="open")
    shared_at: so.Mapped[datetime | None]
    shared_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    filed_on: so.Mapped[date | None]
    docket_ref: so.Mapped[str] = so.mapped_column(sa.String(300), default="")
    filed_at: so.Mapped[datetime | None]
    filed_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))

    agency = so.relationship("Agency")

    @property
    def state_label(self):
        return PERIOD_STATES.get(self.state, self.state)


class Finding(Base):
    """A rating; a correction after the period closed is a new row that supersedes the old one."""

    __tablename__ = "finding"
    __table_args__ = (
        # One current finding per requirement and period; replaced ones stay as history.
        sa.Index("uq_finding_current", "requirement_id", "period_id", unique=True,
                 sqlite_where=sa.text("is_current"), postgresql_where=sa.text("is_current")),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    period_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("monitoring_period.id"), index=True)
    level_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("compliance_level.id"))
    narrative: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    monitor_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    supersedes_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("finding.id"))
    is_current: so.Mapped[bool] = so.mapped_column(default=True)
    # Set when a finding of a closed period is corrected: why the frozen rating was replaced.
    correction_reason: so.Mapped[str | None] = so.mapped_column(sa.Text)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    requirement = so.relationship("Requirement")
    period = so.relationship("MonitoringPeriod")
    level = so.relationship("ComplianceLevel", lazy="joined")
    monitor = so.relationship("User")


# A monitor's status for one level of a per-level (Chicago-style) or percentage (Albuquerque-style) scale.
ASSESSMENT_STATUSES = {
    "in_compliance": "In compliance",
    "not_in_compliance": "Not in compliance",
    "under_assessment": "Under assessment",
    "not_yet_assessed": "Not yet assessed",
    "not_applicable": "Not applicable",
}


class FindingAssessment(Base):
    """One level of a finding on a per-level or percentage scale. The finding's overall level is derived from
    these: the highest ladder level in compliance with every lower one in compliance."""

    __tablename__ = "finding_assessment"
    __table_args__ = (
        sa.CheckConstraint("status IN ('in_compliance', 'not_in_compliance', 'under_assessment', "
                           "'not_yet_assessed', 'not_applicable')", name="status"),
    )
    finding_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("finding.id"), primary_key=True)
    level_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("compliance_level.id"), primary_key=True)
    status: so.Mapped[str] = so.mapped_column(sa.String(24))
    # Percentage scales: the measured share (0-100) that the level's threshold is compared with.
    measured: so.Mapped[float | None] = so.mapped_column(sa.Numeric(6, 2))

    level = so.relationship("ComplianceLevel", lazy="joined")


class FindingResponse(Base):
    """The agency's written answer to a draft finding, kept with the period. A new answer replaces the current one."""

    __tablename__ = "finding_response"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    period_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("monitoring_period.id"), index=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    finding_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("finding.id"))
    body: so.Mapped[str] = so.mapped_column(sa.Text)
    author_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("user_account.id"))
    is_current: so.Mapped[bool] = so.mapped_column(default=True)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    author = so.relationship("User")


class Methodology(Base):
    """How the monitor assesses a paragraph: what is measured, from which data or documents, the sample, and what
    each level needs. Versioned: an edit adds a version; the latest carries over to later periods."""

    __tablename__ = "methodology"
    __table_args__ = (sa.UniqueConstraint("requirement_id", "version"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), index=True)
    version: so.Mapped[int]
    measures: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    sources: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    sample: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    level_criteria: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    author_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    author = so.relationship("User")


class PlanItem(Base):
    """A paragraph in scope of a period's monitoring plan, with the methodology version in force."""

    __tablename__ = "plan_item"
    period_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("monitoring_period.id"), primary_key=True)
    requirement_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("requirement.id"), primary_key=True,
                                                      index=True)
    methodology_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("methodology.id"))
    added_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    methodology = so.relationship("Methodology")


sustainment_order_requirement = sa.Table(
    "sustainment_order_requirement", Base.metadata,
    sa.Column("order_id", sa.ForeignKey("sustainment_order.id"), primary_key=True),
    sa.Column("requirement_id", sa.ForeignKey("requirement.id"), primary_key=True),
)
sustainment_order_module = sa.Table(
    "sustainment_order_module", Base.metadata,
    sa.Column("order_id", sa.ForeignKey("sustainment_order.id"), primary_key=True),
    sa.Column("module_id", sa.ForeignKey("module.id"), primary_key=True),
)


class SustainmentOrder(Base):
    """A court order that starts the sustainment clock for the requirements or modules it covers."""

    __tablename__ = "sustainment_order"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    order_date: so.Mapped[date]
    docket_ref: so.Mapped[str] = so.mapped_column(sa.String(300))
    note: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    requirements = so.relationship("Requirement", secondary=sustainment_order_requirement)
    modules = so.relationship("Module", secondary=sustainment_order_module)
