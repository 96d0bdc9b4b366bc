"""Append-only audit log. Each event carries the hash of the one before it."""
from datetime import datetime

import sqlalchemy as sa
import sqlalchemy.orm as so

from tracker.models.base import Base

# Events that belong to no agency and change what pages show (sign-ins and failures change nothing).
# coalesce(agency_id, 0) = 0 rather than IS NULL, so ix_audit_event_agency_id_id cannot serve it and the
# planners take this index (agency ids start at 1).
SHARED_CHANGES = "coalesce(agency_id, 0) = 0 AND outcome = 'success' AND action NOT LIKE 'auth.%'"


class AuditEvent(Base):
    __tablename__ = "audit_event"
    __table_args__ = (
        # One agency's newest event in one index step: the page cache's version of that agency (tracker/cache.py).
        sa.Index("ix_audit_event_agency_id_id", "agency_id", "id"),
        # The newest change that belongs to no agency, sign-ins aside, in one step: the version shared by all.
        sa.Index("ix_audit_event_shared_changes", "id", sqlite_where=sa.text(SHARED_CHANGES),
                 postgresql_where=sa.text(SHARED_CHANGES)),
    )
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


class AuditCheckpoint(Base):
    """The chain's head (event id, hash, count) signed with an Ed25519 key kept outside the database.

    A copy of each goes to a folder outside the database (AUDIT_CHECKPOINT_DIR) and into reports,
    evidence packages and backups, so deleting the newest events or recomputing every hash no longer
    verifies: the chain must still reach each checkpoint's event with the same hash.
    """

    __tablename__ = "audit_checkpoint"
    id: so.Mapped[int] = so.mapped_column(primary_key=True)
    created_at: so.Mapped[datetime]
    event_id: so.Mapped[int] = so.mapped_column(index=True)
    event_hash: so.Mapped[str] = so.mapped_column(sa.String(64))
    event_count: so.Mapped[int]
    reason: so.Mapped[str] = so.mapped_column(sa.String(32))
    database: so.Mapped[str] = so.mapped_column(sa.String(300))
    key_id: so.Mapped[str] = so.mapped_column(sa.String(16))
    signature: so.Mapped[str] = so.mapped_column(sa.String(128), unique=True)


# The database itself refuses to change or remove an audit row. These are the guards migration 0001
# installed; APPEND_ONLY_GUARDS (migration 0009_i19) adds TRUNCATE and the checkpoint table.
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
APPEND_ONLY_TABLES = ("audit_event", "audit_checkpoint")
SQLITE_CHECKPOINT_GUARDS = [
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_update BEFORE UPDATE ON audit_checkpoint "
    "BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_checkpoint_no_delete BEFORE DELETE ON audit_checkpoint "
    "BEGIN SELECT RAISE(ABORT, 'audit_checkpoint is append-only'); END",
]
# (psycopg takes '%' for a placeholder in exec_driver_sql: written '%%'.)
# TRUNCATE fires no row trigger: a statement-level one refuses it, for the owner too. Any role other than
# the owner loses UPDATE, DELETE, TRUNCATE, REFERENCES and TRIGGER on both tables, whatever default
# privileges granted it (the app's role keeps SELECT and INSERT; see scripts/db_roles.py).
POSTGRES_CHECKPOINT_GUARDS = [
    "CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION '%% is append-only', TG_TABLE_NAME; END; $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
    "CREATE TRIGGER audit_checkpoint_no_change BEFORE UPDATE OR DELETE ON audit_checkpoint "
    "FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()",
    "CREATE TRIGGER audit_checkpoint_no_truncate BEFORE TRUNCATE ON audit_checkpoint "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_event_append_only()",
    "DO $$ DECLARE r record; BEGIN "
    "FOR r IN SELECT DISTINCT c.relname, a.grantee FROM pg_class c, aclexplode(c.relacl) a "
    "WHERE c.relnamespace = current_schema()::regnamespace "
    "AND c.relname IN ('audit_event', 'audit_checkpoint') AND a.grantee <> c.relowner "
    "AND a.privilege_type IN ('UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER') LOOP "
    "EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON %%I FROM %%s', r.relname, "
    "CASE WHEN r.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(r.grantee)) END); "
    "END LOOP; END $$",
]


def install_guards(connection):
    """Migration 0001's guards on audit_event (UPDATE and DELETE)."""
    statements = SQLITE_GUARDS if connection.dialect.name == "sqlite" else POSTGRES_GUARDS
    for statement in statements:
        connection.exec_driver_sql(statement)


def install_checkpoint_guards(connection):
    """Migration 0009_i19's guards: TRUNCATE, the checkpoint table, and no write grants to other roles."""
    statements = SQLITE_CHECKPOINT_GUARDS if connection.dialect.name == "sqlite" else POSTGRES_CHECKPOINT_GUARDS
    for statement in statements:
        connection.exec_driver_sql(statement)


@sa.event.listens_for(Base.metadata, "after_create")
def _guards_after_create(target, connection, tables=(), **kw):
    """create_all (tests, a new database): the guards once both tables exist."""
    created = {table.name for table in tables}
    if set(APPEND_ONLY_TABLES) <= created:
        install_guards(connection)
        install_checkpoint_guards(connection)
