"""The "regular" filter of `GET /v1/persons` (docs/persons.md; the other filters are declared in
`storage.person_reads.PersonRepository`).

"regular" is decided in the database from the same `seen_days` that `storage.persons.status_at`
reads, so the list filter and the `regular` flag each person shows can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, select

from storage import orm


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
