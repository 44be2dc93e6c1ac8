"""Selecting persons by the filters of `GET /v1/persons` (docs/persons.md).

Every filter is SQL, so a page of persons is one query however many persons there are; in particular
"regular" is decided in the database from the same `seen_days` that `storage.persons.status_at`
reads, so the list filter and the `regular` flag each person shows can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select

from storage import orm

BOUNDS = {"first_seen_gte": (orm.Person.first_seen_at, True), "first_seen_lte": (orm.Person.first_seen_at, False),
          "last_seen_gte": (orm.Person.last_seen_at, True), "last_seen_lte": (orm.Person.last_seen_at, False)}
EVENT_COLUMNS = {"camera_group_id": orm.Event.camera_group_id, "camera_id": orm.Event.camera_id}


def days_seen_between(first: str, last: str, dialect: str) -> Any:
    """How many of a person's `seen_days` (ISO dates, a JSON list) lie in [first, last]: a correlated
    scalar subquery over the JSON array (SQLite `json_each`, PostgreSQL `json_array_elements_text`)."""
    elements = func.json_each if dialect == "sqlite" else func.json_array_elements_text
    days = elements(orm.Person.seen_days).table_valued("value")
    return select(func.count()).select_from(days).where(days.c.value >= first, days.c.value <= last).scalar_subquery()


def regular_clause(now: datetime, settings: Mapping[str, Any], dialect: str) -> ColumnElement[bool]:
    """Seen on at least `friend_days` distinct days within the `friend_window_days` before `now`, the
    day of `now` included: `status_at(person, now, False, settings, count_today=False) == "regular"`."""
    first = (now - timedelta(days=float(settings["friend_window_days"]))).date().isoformat()
    return days_seen_between(first, now.date().isoformat(), dialect) >= int(settings["friend_days"])


def filter_persons(stmt: Select[Any], f: Mapping[str, Any], dialect: str, settings: Mapping[str, Any],
                   now: datetime) -> Select[Any]:
    """`stmt` (a select of persons) narrowed by the filters in `f` (absent or None = any)."""
    for name, (column, lower) in BOUNDS.items():
        if f.get(name) is not None:
            stmt = stmt.where(column >= f[name] if lower else column <= f[name])
    for name, column in EVENT_COLUMNS.items():
        if f.get(name) is not None:
            stmt = stmt.where(exists().where(orm.Event.person_id == orm.Person.id, column == f[name]))
    if f.get("min_events") is not None:
        stmt = stmt.where(orm.Person.event_count >= f["min_events"])
    if f.get("min_days") is not None:
        stmt = stmt.where(orm.Person.days_seen >= f["min_days"])
    if f.get("anonymous") is not None:
        stmt = stmt.where(orm.Person.dossier_id.is_(None) if f["anonymous"] else orm.Person.dossier_id.is_not(None))
    if f.get("regular") is not None:
        regular = regular_clause(now, settings, dialect)
        stmt = stmt.where(regular if f["regular"] else ~regular)
    return stmt
