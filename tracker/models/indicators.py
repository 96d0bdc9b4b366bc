"""Outcome indicators: numbers with targets over time (share of crisis calls with a CIT officer on scene…)."""
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow

INDICATOR_UNITS = {"percent": "Percent", "count": "Count", "minutes": "Minutes", "rate": "Rate per 1,000"}
DIRECTIONS = {"up": "Higher is better", "down": "Lower is better"}
FREQUENCIES = {"month": "Monthly", "quarter": "Quarterly"}


class CatalogIndicator(Base):
    """An indicator suggested by the catalog (seed/catalog.yaml), which an agency may adopt."""

    __tablename__ = "catalog_indicator"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    module_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("module.id"))
    name: so.Mapped[str] = so.mapped_column(sa.String(300))
    definition: so.Mapped[str] = so.mapped_column(sa.Text)
    numerator: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    denominator: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    unit: so.Mapped[str] = so.mapped_column(sa.String(16))
    direction: so.Mapped[str] = so.mapped_column(sa.String(8))
    retired_at: so.Mapped[datetime | None]


indicator_requirement = sa.Table(
    "indicator_requirement", Base.metadata,
    sa.Column("indicator_id", sa.ForeignKey("indicator.id"), primary_key=True),
    sa.Column("requirement_id", sa.ForeignKey("requirement.id"), primary_key=True, index=True),
)


class Indicator(Base):
    __tablename__ = "indicator"
    __table_args__ = (
        sa.UniqueConstraint("agency_id", "key"),
        sa.CheckConstraint("direction IN ('up', 'down')", name="direction"),
        sa.CheckConstraint("frequency IN ('month', 'quarter')", name="frequency"),
    )
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    # Short key used in imports, e.g. cit-on-scene.
    key: so.Mapped[str] = so.mapped_column(sa.String(64))
    name: so.Mapped[str] = so.mapped_column(sa.String(300))
    definition: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    numerator: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    denominator: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    unit: so.Mapped[str] = so.mapped_column(sa.String(16), default="percent")
    direction: so.Mapped[str] = so.mapped_column(sa.String(8), default="up")
    frequency: so.Mapped[str] = so.mapped_column(sa.String(8), default="quarter")
    target_value: so.Mapped[float | None] = so.mapped_column(sa.Numeric(14, 4))
    target_date: so.Mapped[date | None]
    public: so.Mapped[bool] = so.mapped_column(default=False)
    catalog_indicator_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("catalog_indicator.id"))
    position: so.Mapped[int] = so.mapped_column(default=0)
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    requirements = so.relationship("Requirement", secondary=indicator_requirement, order_by="Requirement.sort_key")

    @property
    def unit_label(self):
        return INDICATOR_UNITS.get(self.unit, self.unit)


class IndicatorValue(Base):
    """The value for one period (first day of the month or quarter), overall ('' breakdown) or for one district,
    shift… When numerator and denominator are given the value is computed from them."""

    __tablename__ = "indicator_value"
    __table_args__ = (sa.UniqueConstraint("indicator_id", "period_start", "breakdown"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    indicator_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("indicator.id"), index=True)
    period_start: so.Mapped[date]
    breakdown: so.Mapped[str] = so.mapped_column(sa.String(100), default="")
    value: so.Mapped[float] = so.mapped_column(sa.Numeric(14, 4))
    numerator: so.Mapped[float | None] = so.mapped_column(sa.Numeric(14, 4))
    denominator: so.Mapped[float | None] = so.mapped_column(sa.Numeric(14, 4))
    note: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    created_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)
    updated_at: so.Mapped[datetime] = so.mapped_column(default=utcnow, onupdate=utcnow)
