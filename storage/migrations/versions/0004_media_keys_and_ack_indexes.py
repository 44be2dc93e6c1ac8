"""indexes on media keys and on unacknowledged events per watch list

Media visibility (`/v1/media/{key}` answers only callers who see a row referring to the key), the
media sweep and erasure look rows up by media key; the watch lists show how many of their events
are unacknowledged. Without these indexes each of those scans the events table.

Revision ID: 0004
Revises: 0002
"""
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None

INDEXES = {
    "events": [("ix_events_thumbnail_key", ["thumbnail_key"]), ("ix_events_crop_key", ["crop_key"]),
               ("ix_events_frame_key", ["frame_key"]),
               ("ix_events_watch_list_unack", ["watch_list_id", "acknowledged"])],
    "dossier_faces": [("ix_dossier_faces_source_key", ["source_key"]), ("ix_dossier_faces_crop_key", ["crop_key"])],
    "videos": [("ix_videos_media_key", ["media_key"])],
}


def upgrade() -> None:
    for table, indexes in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, columns in indexes:
                batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    for table, indexes in INDEXES.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name, _ in indexes:
                batch_op.drop_index(name)
