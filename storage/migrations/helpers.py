"""Steps several migrations share. A migration that ran must do the same forever, so what is here is
never changed, only added to (a new behaviour is a new function)."""

from __future__ import annotations

from collections.abc import Iterable

from alembic import op


def rebuild_sqlite_tables(tables: Iterable[str], autoincrement: bool) -> None:
    """Rebuilds each table on SQLite (Alembic batch mode, recreate="always": rows, indexes and constraints
    kept) with or without AUTOINCREMENT, which SQLite cannot add to an existing table. Elsewhere
    (PostgreSQL: sequences never go back) nothing is done."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in tables:
        with op.batch_alter_table(table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}):
            pass  # no column changes: leaving the block is what copies the table into its rebuilt form
