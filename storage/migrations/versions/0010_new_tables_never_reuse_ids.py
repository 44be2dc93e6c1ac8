"""ids are never reused in the tables added this round either (sessions, tasks, persons, notices)

The same rebuild as 0003 (see its docstring) for the integer-id tables that 0005, 0006 and 0008 created
without AUTOINCREMENT on SQLite. PostgreSQL sequences never go back: nothing to do there.

Revision ID: 0010
Revises: 0006
"""
from storage.migrations.helpers import rebuild_sqlite_tables

revision = "0010"
down_revision = "0006"
branch_labels = None
depends_on = None

TABLES = (
    "sessions", "login_failures", "tasks", "task_parts", "webhook_notices", "persons", "person_faces",
    "person_exclusions", "person_clustering_runs",
)


def upgrade() -> None:
    rebuild_sqlite_tables(TABLES, autoincrement=True)


def downgrade() -> None:
    rebuild_sqlite_tables(TABLES, autoincrement=False)
