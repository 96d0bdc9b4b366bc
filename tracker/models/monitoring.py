"""Monitoring periods and the monitor's findings per requirement per period."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow


class MonitoringPeriod(Base):
    __tablename__ = "monitoring_period"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "name"),
        sa.CheckConstraint("state IN ('open', 'closed')", name="state"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    start_date: so.Mapped[date]
    end_date: so.Mapped[date]
    state: so.Mapped[str] = so.mapped_column(sa.String(8), default="open")
    closed_at: so.Mapped[datetime | None]
    closed_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))

    agency = so.relationship("Agency")


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
