"""audit trail anchored outside the database: signed checkpoints, a TRUNCATE guard, no write grants

Revision ID: 0009_i19
Revises: 0009_i18
Create Date: 2026-12-03 09:00:00

audit_checkpoint holds the chain's head signed with an Ed25519 key that is not in the database; both
audit tables refuse UPDATE, DELETE and (on PostgreSQL) TRUNCATE, and roles other than the owner lose
every write privilege on them but INSERT.
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0009_i19'
down_revision = '0009_i18'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('audit_checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('event_id', sa.Integer(), nullable=False),
    sa.Column('event_hash', sa.String(length=64), nullable=False),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('database', sa.String(length=300), nullable=False),
    sa.Column('key_id', sa.String(length=16), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_checkpoint')),
    sa.UniqueConstraint('signature', name=op.f('uq_audit_checkpoint_signature'))
    )
    op.create_index(op.f('ix_audit_checkpoint_event_id'), 'audit_checkpoint', ['event_id'], unique=False)
    from tracker.models.audit import install_checkpoint_guards

    install_checkpoint_guards(op.get_bind())


def downgrade():
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        op.execute("CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
                   "BEGIN RAISE EXCEPTION 'audit_event is append-only'; END; $$ LANGUAGE plpgsql")
    op.drop_index(op.f('ix_audit_checkpoint_event_id'), table_name='audit_checkpoint')
    op.drop_table('audit_checkpoint')  # its triggers go with it
