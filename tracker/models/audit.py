"""Append-only audit log. Each event carries the hash of the one before it."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base


class AuditEvent(Base):
    __tablename__ = "audit_event"
    # One agency's newest event in one index step: the page cache's version of that agency (tracker/cache.py).
    __table_args__ = (sa.Index("ix_audit_event_agency_id_id", "agency_id", "id"),)
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    created_at: so.Mapped[datetime]
    actor_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("user_account.id"))
    actor_label: so.Mapped[str] = so.mapped_column(sa.String(254), default="")
    action: so.Mapped[str] = so.mapped_column(sa.String(64), index=True)
    object_type: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    object_id: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    agency_id: so.Mapped[int | None] = so.mapped_column(sa.ForeignKey("agency.id"))
    before: so.Mapped[dict | None] = so.mapped_column(sa.JSON)
    after: so.Mapped[dict | None] = so.mapped_column(sa.JSON)
    ip: so.Mapped[str] = so.mapped_column(sa.String(64), default="")
    outcome: so.Mapped[str] = so.mapped_column(sa.String(16), default="success")
    prev_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    hash: so.Mapped[str] = so.mapped_column(sa.String(64), unique=True)

    actor = so.relationship("User")


# The database itself refuses to change or remove an audit row.
SQLITE_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_event "
    "BEGIN SELECT RAISE(ABORT, 'audit_event is append-only'); END",
]
POSTGRES_GUARDS = [
    "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION 'audit_event is append-only'; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_event_no_change BEFORE UPDATE OR DELETE ON audit_event "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
]


def install_guards(connection):
    statements = SQLITE_GUARDS if connection.dialect.name == "sqlite" else POSTGRES_GUARDS
    for statement in statements:
        connection.exec_driver_sql(statement)


@sa.event.listens_for(AuditEvent.__table__, "after_create")
def _guards_after_create(target, connection, **kw):
    install_guards(connection)
