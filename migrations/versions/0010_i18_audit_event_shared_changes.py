"""audit_event partial index: the newest change that belongs to no agency, in one index step

Revision ID: 0010_i18
Revises: 0009_i19
Create Date: 2026-12-03 08:10:00

The page cache's shared version (tracker/cache.py) is the newest successful event with no agency that
is not a sign-in. Without this index SQLite walks the whole table backwards through every agency's
events to find it.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010_i18'
down_revision = '0009_i19'
branch_labels = None
depends_on = None

SHARED_CHANGES = "coalesce(agency_id, 0) = 0 AND outcome = 'success' AND action NOT LIKE 'auth.%'"


def upgrade():
    # Plain (not batch) operations: a batch copy of audit_event on SQLite would drop its guard triggers.
    op.create_index('ix_audit_event_shared_changes', 'audit_event', ['id'], unique=False,
                    sqlite_where=sa.text(SHARED_CHANGES), postgresql_where=sa.text(SHARED_CHANGES))


def downgrade():
    op.drop_index('ix_audit_event_shared_changes', table_name='audit_event')
