"""audit trail anchored outside the database: signed checkpoints, a TRUNCATE guard, no write grants;
token expiry, first-sign-in password change, per-source sign-in locks

Revision ID: 0009_i19
Revises: 0009_i18
Create Date: 2026-12-03 09:00:00

audit_checkpoint holds the chain's head signed with an Ed25519 key that is not in the database; both
audit tables refuse UPDATE, DELETE and (on PostgreSQL) TRUNCATE, and roles other than the owner lose
every write privilege on them but INSERT. API tokens and calendar feeds get an expiry (existing ones: 90 days
after their creation) and the reason they ended; users a must-change-password flag; login_block counts failed
sign-ins per account and source address.
"""
from datetime import timedelta

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

    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('revoked_reason', sa.String(length=64), nullable=False, server_default=''))
    api_token = sa.table('api_token', sa.column('id', sa.Integer()), sa.column('created_at', sa.DateTime()),
                         sa.column('expires_at', sa.DateTime()))
    for token_id, created in op.get_bind().execute(sa.select(api_token.c.id, api_token.c.created_at)).all():
        op.execute(api_token.update().where(api_token.c.id == token_id)
                   .values(expires_at=created + timedelta(days=90)))
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.alter_column('expires_at', existing_type=sa.DateTime(), nullable=False)
        batch_op.alter_column('revoked_reason', existing_type=sa.String(length=64), server_default=None)
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('must_change_password', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.alter_column('must_change_password', existing_type=sa.Boolean(), server_default=None)
    op.create_table('login_block',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=64), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('first_failed_at', sa.DateTime(), nullable=True),
    sa.Column('locked_at', sa.DateTime(), nullable=True),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('locks', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_login_block_user_id_user_account')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_block')),
    sa.UniqueConstraint('user_id', 'source', name=op.f('uq_login_block_user_id_source'))
    )


def downgrade():
    op.drop_table('login_block')
    with op.batch_alter_table('user_account', schema=None) as batch_op:
        batch_op.drop_column('must_change_password')
    with op.batch_alter_table('api_token', schema=None) as batch_op:
        batch_op.drop_column('revoked_reason')
        batch_op.drop_column('expires_at')
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS audit_event_no_truncate ON audit_event")
        op.execute("CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger AS $$ "
                   "BEGIN RAISE EXCEPTION 'audit_event is append-only'; END; $$ LANGUAGE plpgsql")
    op.drop_index(op.f('ix_audit_checkpoint_event_id'), table_name='audit_checkpoint')
    op.drop_table('audit_checkpoint')  # its triggers go with it
