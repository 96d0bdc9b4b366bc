"""Agencies and the compliance scales their monitors rate them on."""
from datetime import date

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, Timestamped

# A level's kind keeps "not yet assessed" and "evaluation deferred" apart from non-compliance.
LEVEL_KINDS = ("unassessed", "deferred", "rating")


class ComplianceScale(Base):
    __tablename__ = "compliance_scale"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")

    levels: so.Mapped[list["ComplianceLevel"]] = so.relationship(
        back_populates="scale", order_by="ComplianceLevel.position", cascade="all, delete-orphan"
    )

    @property
    def top_level(self):
        rated = [lvl for lvl in self.levels if lvl.kind == "rating"]
        return max(rated, key=lambda lvl: lvl.rank) if rated else None


class ComplianceLevel(Base):
    __tablename__ = "compliance_level"
    __table_args__ = (sa.UniqueConstraint("scale_id", "key"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    scale_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("compliance_scale.id"))
    key: so.Mapped[str] = so.mapped_column(sa.String(64))
    label: so.Mapped[str] = so.mapped_column(sa.String(200))
    kind: so.Mapped[str] = so.mapped_column(sa.String(16))
    # Order of compliance among "rating" levels: 0 = not in compliance, higher is better.
    rank: so.Mapped[int] = so.mapped_column(default=0)
    position: so.Mapped[int] = so.mapped_column(default=0)
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")

    scale: so.Mapped[ComplianceScale] = so.relationship(back_populates="levels")


class Agency(Timestamped, Base):
    __tablename__ = "agency"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    slug: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    state: so.Mapped[str] = so.mapped_column(sa.String(2))
    source_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("source.id"))
    effective_date: so.Mapped[date | None]
    scale_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("compliance_scale.id"))
    # Months a requirement must stay at the top level before it may be terminated.
    sustainment_months: so.Mapped[int | None]
    public_enabled: so.Mapped[bool] = so.mapped_column(default=False)

    source = so.relationship("Source", lazy="joined")
    scale: so.Mapped[ComplianceScale] = so.relationship(lazy="joined")
