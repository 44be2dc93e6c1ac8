"""ids are never reused: SQLite tables with integer ids get AUTOINCREMENT

Without AUTOINCREMENT SQLite gives a new row the largest id in the table plus one, so deleting the
newest video and uploading it again gave the new job the deleted job's id, and every event of the new
video (event id = job id + track id) was dropped as a retry of the old one's. SQLite cannot add
AUTOINCREMENT to an existing table: each one is rebuilt (Alembic batch mode, recreate="always"),
keeping its rows, indexes and constraints. `storage.db.migrate` turns SQLite's foreign keys off around
the migration (a DROP TABLE with foreign keys on would first delete the rows, cascading to their
children) and checks every reference afterwards. PostgreSQL sequences never go back: nothing to do.

Tables whose rows are referenced last are rebuilt last; the order does not matter for correctness
since foreign keys are off, only for readability.

Revision ID: 0003
Revises: 0008
"""
from storage.migrations.helpers import rebuild_sqlite_tables

revision = "0003"
down_revision = "0008"
branch_labels = None
depends_on = None

TABLES = (
    "camera_groups", "cameras", "dossiers", "dossier_faces", "galleries", "face_vectors", "gallery_changes",
    "episodes", "videos", "jobs", "webhooks", "webhook_outbox", "webhook_deliveries", "users", "tokens",
    "audit_log",
)
"""Every table with an integer id except watch_lists, which has had AUTOINCREMENT from 0001."""


def upgrade() -> None:
    rebuild_sqlite_tables(TABLES, autoincrement=True)


def downgrade() -> None:
    rebuild_sqlite_tables(TABLES, autoincrement=False)
