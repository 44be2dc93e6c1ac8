"""dossier negatives: operators' "not this person" examples (issue 14, item 3)

Revision ID: 0014
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0010"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
COLUMNS = ("dossier_id", "event_id", "camera_group_id", "thumbnail_key", "crop_key")  # indexed


def upgrade() -> None:
    op.create_table(
        "dossier_negatives",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("dossier_id", BIG_ID, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=True),
        sa.Column("camera_group_id", BIG_ID, nullable=True),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.Column("thumbnail_key", sa.String(length=200), nullable=False),
        sa.Column("crop_key", sa.String(length=200), nullable=False),
        sa.Column("created_by", sa.String(length=150), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["dossier_id"], ["dossiers.id"],
                                name=op.f("fk_dossier_negatives_dossier_id_dossiers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["camera_group_id"], ["camera_groups.id"],
                                name=op.f("fk_dossier_negatives_camera_group_id_camera_groups"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dossier_negatives")),
        sqlite_autoincrement=True,
    )
    for column in COLUMNS:
        op.create_index(op.f(f"ix_dossier_negatives_{column}"), "dossier_negatives", [column], unique=False)


def downgrade() -> None:
    for column in COLUMNS:
        op.drop_index(op.f(f"ix_dossier_negatives_{column}"), table_name="dossier_negatives")
    op.drop_table("dossier_negatives")
