"""Storage owns the SQL (issue 15): outside `storage/` no module imports SQLAlchemy's query building
(`select`, `update`, `text`, `func`, `Select`, …) or runs statements itself (`.execute(`, `.scalar(`,
`.scalars(`, `Repository.query()`); it calls intent-named repository methods instead. Tests may build
rows and selects; benchmarks seed tables in bulk. This scans the source, so SQL cannot creep back in."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("actors", "serve_apps", "cluster", "facewatch", "models")
ALLOWED_MODULES = {"sqlalchemy.exc"}  # catching the database's errors is not writing SQL
STATEMENT_CALLS = {"execute", "scalar", "scalars", "query"}

NOT_YET_MOVED: dict[str, str] = {
    # A module whose SQL is still to move into storage/: path -> what it does (empty: every one has moved).
}


def sql_uses(source: str) -> list[str]:
    """Where `source` imports SQLAlchemy's SQL constructs or runs a statement: 'line: what'."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            if node.module not in ALLOWED_MODULES:
                found.append(f"{node.lineno}: from {node.module} import {', '.join(a.name for a in node.names)}")
        elif isinstance(node, ast.Import) and any(a.name.split(".")[0] == "sqlalchemy" for a in node.names):
            found.append(f"{node.lineno}: import sqlalchemy")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in STATEMENT_CALLS):
            found.append(f"{node.lineno}: .{node.func.attr}(…)")
    return sorted(found, key=lambda s: int(s.split(":")[0]))


def offenders() -> dict[str, list[str]]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            uses = sql_uses(path.read_text(encoding="utf-8"))
            if uses:
                out[path.relative_to(ROOT).as_posix()] = uses
    return out


def test_the_scan_finds_sql() -> None:
    source = ("from sqlalchemy import select\nfrom sqlalchemy.exc import IntegrityError\n"
              "rows = uow.session.execute(stmt)\nstmt = uow.events.query()\nx = session.scalar(s)\n")
    assert [u.split(":")[0] for u in sql_uses(source)] == ["1", "3", "4", "5"]
    assert sql_uses("from storage.unit_of_work import UnitOfWork\nuow.events.visible(event_id, scope)\n") == []


def test_no_sql_outside_storage() -> None:
    found = offenders()
    new = {path: uses for path, uses in found.items() if path not in NOT_YET_MOVED}
    assert not new, f"SQL outside storage/ (add an intent-named repository method instead): {new}"
    moved = sorted(set(NOT_YET_MOVED) - set(found))
    assert not moved, f"no SQL left in {moved}: remove them from NOT_YET_MOVED"
