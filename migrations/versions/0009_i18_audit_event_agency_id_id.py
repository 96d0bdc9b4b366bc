"""audit_event index on (agency_id, id): the newest change of one agency in one index step

Revision ID: 0009_i18
Revises: 0008
Create Date: 2026-12-03 08:00:00

The page cache keys each agency's pages on that agency's newest audit event (and the newest one
that belongs to no agency), so a write in one agency leaves every other agency's pages cached.
The composite index also serves every lookup the single-column index did.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009_i18'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    # Plain (not batch) operations: a batch copy of audit_event on SQLite would drop its append-only triggers.
    op.create_index('ix_audit_event_agency_id_id', 'audit_event', ['agency_id', 'id'], unique=False)
    op.drop_index('ix_audit_event_agency_id', table_name='audit_event')


def downgrade():
    op.create_index('ix_audit_event_agency_id', 'audit_event', ['agency_id'], unique=False)
    op.drop_index('ix_audit_event_agency_id_id', table_name='audit_event')
