"""Documents that are not evidence of a requirement (meeting papers, policy versions), kept in the same
content-addressed evidence store."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base, utcnow


class DocumentFile(Base):
    __tablename__ = "document_file"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    agency_id: so.Mapped[int] = so.mapped_column(sa.ForeignKey("agency.id"), index=True)
    sha256: so.Mapped[str] = so.mapped_column(sa.String(64), index=True)
    size_bytes: so.Mapped[int] = so.mapped_column(sa.BigInteger)
    # The user's filename is display metadata only.
    filename: so.Mapped[str] = so.mapped_column(sa.String(255))
    media_type: so.Mapped[str] = so.mapped_column(sa.String(100))
    uploaded_by_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    created_at: so.Mapped[datetime] = so.mapped_column(default=utcnow)

    uploaded_by = so.relationship("User")
