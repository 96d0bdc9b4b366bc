"""Agencies and the compliance scales their monitors rate them on."""

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, Timestamped

# A level's kind keeps "not yet assessed" and "evaluation deferred" apart from non-compliance.
LEVEL_KINDS = ("unassessed", "deferred", "rating")
# How a monitor rates on the scale: one level per finding; a status per ladder level (Chicago-style); or a
# measured percentage per ladder level against its threshold (Albuquerque-style).
ASSESSMENT_KINDS = {"single": "One rating per finding", "per_level": "A status per level",
                    "percentage": "A measured percentage per level"}


class ComplianceScale(Base):
    __tablename__ = "compliance_scale"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    assessment: so.Mapped[str] = so.mapped_column(sa.String(16), default="single")

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
    # A step of the ladder that per-level and percentage scales assess separately (preliminary, secondary, full).
    ladder: so.Mapped[bool] = so.mapped_column(default=False)
    # Percentage scales: the measured share (0-100) at which this ladder level is met.
    threshold: so.Mapped[float | None] = so.mapped_column(sa.Numeric(6, 2))

    scale: so.Mapped[ComplianceScale] = so.relationship(back_populates="levels")


class Agency(Timestamped, Base):
    __tablename__ = "agency"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    slug: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    state: so.Mapped[str] = so.mapped_column(sa.String(2))
    public_enabled: so.Mapped[bool] = so.mapped_column(default=False)
    # Days the agency has to answer a committee recommendation in writing, and reviewers to comment on a policy.
    committee_response_days: so.Mapped[int] = so.mapped_column(default=60)
    review_comment_days: so.Mapped[int] = so.mapped_column(default=30)

    # The decree, agreements and orders binding the agency; the first is the primary one.
    instruments: so.Mapped[list["Instrument"]] = so.relationship(  # noqa: F821
        back_populates="agency", order_by="Instrument.position", lazy="selectin")

    # The primary instrument's terms, read through the agency where a page speaks of "the decree".
    @property
    def primary_instrument(self):
        return self.instruments[0] if self.instruments else None

    @property
    def effective_date(self):
        return self.primary_instrument.effective_date if self.instruments else None

    @property
    def scale(self):
        return self.primary_instrument.scale if self.instruments else None

    @property
    def scale_id(self):
        return self.primary_instrument.scale_id if self.instruments else None

    @property
    def sustainment_months(self):
        return self.primary_instrument.sustainment_months if self.instruments else None

    @property
    def source(self):
        return self.primary_instrument.source if self.instruments else None

    @property
    def source_id(self):
        return self.primary_instrument.source_id if self.instruments else None
