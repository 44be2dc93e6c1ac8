"""persons: lasting identities for every event (docs/persons.md)

Tables for persons, their representative faces (vectors in the `persons` gallery), operators'
"not the same person" exclusions and re-clustering runs; events get `person_id` and `person_status`.

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('person_clustering_runs',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('full', sa.Boolean(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('done', sa.Integer(), nullable=False),
    sa.Column('cursor', sa.BigInteger(), nullable=False),
    sa.Column('merges', sa.Integer(), nullable=False),
    sa.Column('error', sa.Text(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_clustering_runs'))
    )
    op.create_table('persons',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('dossier_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('scope', sa.BigInteger(), nullable=False),
    sa.Column('first_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('event_count', sa.Integer(), nullable=False),
    sa.Column('camera_ids', sa.JSON(), nullable=False),
    sa.Column('camera_group_ids', sa.JSON(), nullable=False),
    sa.Column('seen_days', sa.JSON(), nullable=False),
    sa.Column('days_seen', sa.Integer(), nullable=False),
    sa.Column('best_event_id', sa.String(length=64), nullable=True),
    sa.Column('best_quality', sa.Float(), nullable=False),
    sa.Column('dirty', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['dossier_id'], ['dossiers.id'], name=op.f('fk_persons_dossier_id_dossiers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_persons')),
    sa.UniqueConstraint('dossier_id', name=op.f('uq_persons_dossier_id'))
    )
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_persons_dirty'), ['dirty'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_first_seen_at'), ['first_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_last_seen_at'), ['last_seen_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_persons_scope'), ['scope'], unique=False)

    op.create_table('person_exclusions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('other_person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['other_person_id'], ['persons.id'], name=op.f('fk_person_exclusions_other_person_id_persons'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_person_exclusions_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_exclusions')),
    sa.UniqueConstraint('person_id', 'other_person_id', name='uq_person_exclusions_pair')
    )
    with op.batch_alter_table('person_exclusions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_exclusions_other_person_id'), ['other_person_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_person_exclusions_person_id'), ['person_id'], unique=False)

    op.create_table('person_faces',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('event_id', sa.String(length=64), nullable=True),
    sa.Column('quality', sa.Float(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['person_id'], ['persons.id'], name=op.f('fk_person_faces_person_id_persons'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_person_faces'))
    )
    with op.batch_alter_table('person_faces', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_person_faces_person_id'), ['person_id'], unique=False)

    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('person_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('person_status', sa.String(length=10), nullable=True))
        batch_op.create_index(batch_op.f('ix_events_person_id'), ['person_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_events_person_id_persons'), 'persons', ['person_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_events_person_id_persons'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_events_person_id'))
        batch_op.drop_column('person_status')
        batch_op.drop_column('person_id')

    with op.batch_alter_table('person_faces', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_faces_person_id'))

    op.drop_table('person_faces')
    with op.batch_alter_table('person_exclusions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_person_exclusions_person_id'))
        batch_op.drop_index(batch_op.f('ix_person_exclusions_other_person_id'))

    op.drop_table('person_exclusions')
    with op.batch_alter_table('persons', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_persons_scope'))
        batch_op.drop_index(batch_op.f('ix_persons_last_seen_at'))
        batch_op.drop_index(batch_op.f('ix_persons_first_seen_at'))
        batch_op.drop_index(batch_op.f('ix_persons_dirty'))

    op.drop_table('persons')
    op.drop_table('person_clustering_runs')
