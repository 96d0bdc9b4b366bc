"""The recommendation catalog: modules, sources, recommendations, citations."""
import functools
from datetime import date, datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base

SOURCE_KINDS = {
    "consent_decree": "Consent decree",
    "settlement_agreement": "Settlement agreement",
    "findings_letter": "Findings letter or report",
    "technical_assistance": "Technical-assistance letter",
    "mou": "Memorandum of understanding",
    "guidance": "Guidance (not a court order)",
}

# How well a citation has been checked against the source document.
CITATION_BASIS = {
    "primary_text": "Primary text read",
    "secondary_description": "Secondary description",
    "unverified": "Unverified",
}

CADENCES = ("monthly", "quarterly", "semiannual", "annual")
# The catalog's cadences as months between occurrences of a recurring duty.
CADENCE_MONTHS = {"monthly": 1, "quarterly": 3, "semiannual": 6, "annual": 12}


class Module(Base):
    __tablename__ = "module"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(32), unique=True)
    name: so.Mapped[str] = so.mapped_column(sa.String(200))
    description: so.Mapped[str] = so.mapped_column(sa.Text, default="")
    position: so.Mapped[int] = so.mapped_column(default=0)

    recommendations: so.Mapped[list["Recommendation"]] = so.relationship(
        back_populates="module", order_by="Recommendation.code"
    )

    @classmethod
    @functools.cache
    def in_order(cls):
        """Every module in catalog order, the order pages, filters and reports list them in (built once: pages
        run it on every render, and statements are immutable)."""
        return sa.select(cls).order_by(cls.position)


class Source(Base):
    __tablename__ = "source"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    key: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)
    title: so.Mapped[str] = so.mapped_column(sa.Text)
    short_title: so.Mapped[str] = so.mapped_column(sa.String(200))
    jurisdiction: so.Mapped[str] = so.mapped_column(sa.String(300))
    kind: so.Mapped[str] = so.mapped_column(sa.String(32))
    year: so.Mapped[int | None]
    court: so.Mapped[str | None] = so.mapped_column(sa.String(300))
    effective_date: so.Mapped[date | None]
    effective_date_note: so.Mapped[str | None] = so.mapped_column(sa.Text)
    url: so.Mapped[str | None] = so.mapped_column(sa.String(1000))

    @property
    def kind_label(self):
        return SOURCE_KINDS.get(self.kind, self.kind)


class Recommendation(Base):
    __tablename__ = "recommendation"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    code: so.Mapped[str] = so.mapped_column(sa.String(32), unique=True)
    module_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("module.id"), index=True)
    title: so.Mapped[str] = so.mapped_column(sa.String(300))
    summary: so.Mapped[str] = so.mapped_column(sa.Text)
    # Typical deadline relative to the decree's effective date, e.g. 180 days or 12 months.
    deadline_amount: so.Mapped[int | None]
    deadline_unit: so.Mapped[str | None] = so.mapped_column(sa.String(8))
    cadence: so.Mapped[str | None] = so.mapped_column(sa.String(16))
    cadence_note: so.Mapped[str | None] = so.mapped_column(sa.Text)
    evidence_examples: so.Mapped[list] = so.mapped_column(sa.JSON, default=list)
    catalog_version: so.Mapped[int] = so.mapped_column(default=1)
    retired_at: so.Mapped[datetime | None]

    module: so.Mapped[Module] = so.relationship(back_populates="recommendations")
    citations: so.Mapped[list["Citation"]] = so.relationship(
        back_populates="recommendation", order_by="Citation.position", cascade="all, delete-orphan"
    )

    @property
    def typical_deadline(self):
        if self.deadline_amount is None:
            return None
        return f"{self.deadline_amount} {self.deadline_unit}"


class Citation(Base):
    __tablename__ = "citation"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    recommendation_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("recommendation.id"), index=True)
    source_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("source.id"), index=True)
    position: so.Mapped[int] = so.mapped_column(default=0)
    paragraphs: so.Mapped[str] = so.mapped_column(sa.String(300))
    basis: so.Mapped[str] = so.mapped_column(sa.String(32))
    note: so.Mapped[str | None] = so.mapped_column(sa.Text)
    seen_at: so.Mapped[str | None] = so.mapped_column(sa.String(1000))

    recommendation: so.Mapped[Recommendation] = so.relationship(back_populates="citations")
    source: so.Mapped[Source] = so.relationship(lazy="joined")

    @property
    def basis_label(self):
        return CITATION_BASIS.get(self.basis, self.basis)
