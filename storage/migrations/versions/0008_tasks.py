"""tasks, task parts, webhook notices; meta + external_id on cameras, dossiers, dossier faces, events

Tasks (`/v1/tasks`) keep their whole state here so a restarted supervisor resumes them. Webhooks gain
`event_types` (events, camera status, task status); non-event notices are `webhook_notices` rows.
Existing rows get `meta = {}` and webhooks `event_types = ["event"]` (server defaults, so the
columns can be NOT NULL on a populated database).

Revision ID: 0008
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

import storage.orm


revision = '0008'
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('tasks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=30), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('notify_url', sa.Text(), nullable=False),
    sa.Column('notify_pending', sa.JSON(), nullable=False),
    sa.Column('created_by', sa.String(length=150), nullable=False),
    sa.Column('parts_total', sa.Integer(), nullable=False),
    sa.Column('parts_done', sa.Integer(), nullable=False),
    sa.Column('parts_failed', sa.Integer(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('result_name', sa.String(length=200), nullable=False),
    sa.Column('result_size', sa.BigInteger(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('started_at', storage.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', storage.orm.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', storage.orm.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', storage.orm.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tasks'))
    )
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.create_index('ix_tasks_status_id', ['status', 'id'], unique=False)

    op.create_table('webhook_notices',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('created_at', storage.orm.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_webhook_notices'))
    )
    with op.batch_alter_table('webhook_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_notices_created_at'), ['created_at'], unique=False)

    op.create_table('task_parts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('task_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('result', sa.JSON(), nullable=False),
    sa.Column('error_code', sa.String(length=40), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.String(length=100), nullable=False),
    sa.Column('updated_at', storage.orm.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['task_id'], ['tasks.id'], name=op.f('fk_task_parts_task_id_tasks'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_task_parts')),
    sa.UniqueConstraint('task_id', 'seq', name='uq_task_parts_seq')
    )
    with op.batch_alter_table('task_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_task_parts_task_id'), ['task_id'], unique=False)

    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meta', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('external_id', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_cameras_external_id'), ['external_id'], unique=False)

    with op.batch_alter_table('dossier_faces', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meta', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('external_id', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_dossier_faces_external_id'), ['external_id'], unique=False)

    with op.batch_alter_table('dossiers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meta', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('meta', sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch_op.add_column(sa.Column('external_id', sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f('ix_events_external_id'), ['external_id'], unique=False)

    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('event_types', sa.JSON(), nullable=False, server_default=sa.text("'[\"event\"]'")))



def downgrade() -> None:
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.drop_column('event_types')

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_events_external_id'))
        batch_op.drop_column('external_id')
        batch_op.drop_column('meta')

    with op.batch_alter_table('dossiers', schema=None) as batch_op:
        batch_op.drop_column('meta')

    with op.batch_alter_table('dossier_faces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_dossier_faces_external_id'))
        batch_op.drop_column('external_id')
        batch_op.drop_column('meta')

    with op.batch_alter_table('cameras', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cameras_external_id'))
        batch_op.drop_column('external_id')
        batch_op.drop_column('meta')

    with op.batch_alter_table('task_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_task_parts_task_id'))

    op.drop_table('task_parts')
    with op.batch_alter_table('webhook_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_notices_created_at'))

    op.drop_table('webhook_notices')
    with op.batch_alter_table('tasks', schema=None) as batch_op:
        batch_op.drop_index('ix_tasks_status_id')

    op.drop_table('tasks')
