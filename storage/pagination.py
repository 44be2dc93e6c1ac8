"""Keyset (cursor) pagination: stable under inserts, no duplicates or gaps, O(limit) per page.

A cursor is opaque to clients: URL-safe base64 of the sort-key values of the last row returned.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute, Session

from facewatch.errors import BadParam

T = TypeVar("T")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class SortKey:
    column: InstrumentedAttribute[Any]
    descending: bool = False


@dataclass
class Page(Generic[T]):
    items: list[T]
    next_cursor: str | None


def _encode(values: list[Any]) -> str:
    plain = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(plain).encode()).decode().rstrip("=")


def _decode(cursor: str, keys: list[SortKey]) -> list[Any]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = json.loads(raw)
        if not isinstance(values, list) or len(values) != len(keys):
            raise ValueError("wrong shape")
        return [_typed(v, k) for v, k in zip(values, keys, strict=True)]
    except (ValueError, TypeError) as exc:
        raise BadParam("cursor is not valid for this list", param="cursor") from exc


_INT64 = range(-(2**63), 2**63)


def _typed(value: Any, key: SortKey) -> Any:
    """A decoded cursor value checked against its column's type, so a forged cursor is a BAD_PARAM
    rather than a driver error (a string compared with a bigint, an int beyond 64 bits, a dict)."""
    kind = _python_type(key)
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError("expected a timestamp")
        return datetime.fromisoformat(value)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int) or value not in _INT64:
            raise TypeError("expected a 64-bit integer")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError("expected a number")
        return value
    if kind is str:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value
    if not isinstance(value, str | int | float | bool):
        raise TypeError("expected a scalar")
    return value


def _python_type(key: SortKey) -> type | None:
    try:
        return key.column.type.python_type  # UTCDateTime declares datetime
    except NotImplementedError:
        return None


def _after(keys: list[SortKey], values: list[Any]) -> Any:
    # (a, b) > (x, y) expanded as a > x OR (a = x AND b > y), honouring each key's direction. The
    # redundant a >= x in front is what lets SQLite range-scan a's index: under the OR alone it scanned
    # from the first row, so a page 400 pages deep cost four times the first.
    clauses = []
    for i, key in enumerate(keys):
        equal = [keys[j].column == values[j] for j in range(i)]
        beyond = key.column < values[i] if key.descending else key.column > values[i]
        clauses.append(and_(*equal, beyond))
    first = keys[0]
    if values[0] is None:
        return or_(*clauses)
    bound = first.column <= values[0] if first.descending else first.column >= values[0]
    return and_(bound, or_(*clauses))


def paginate(
    session: Session, stmt: Select[Any], keys: list[SortKey], limit: int, cursor: str | None, rows: bool = False
) -> Page[Any]:
    """Run `stmt` (which selects one entity; with `rows`, columns: the page holds the Row tuples, which
    read like the entity for those columns) one page at a time in the order of `keys`."""
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParam(f"limit must be between 1 and {MAX_LIMIT}", param="limit")
    if cursor:
        stmt = stmt.where(_after(keys, _decode(cursor, keys)))
    stmt = stmt.order_by(*(k.column.desc() if k.descending else k.column.asc() for k in keys))
    stmt = stmt.limit(limit + 1)
    items = list(session.execute(stmt).all() if rows else session.scalars(stmt).unique())
    more = len(items) > limit
    items = items[:limit]
    next_cursor = None
    if more and items:
        next_cursor = _encode([getattr(items[-1], k.column.key) for k in keys])
    return Page(items=items, next_cursor=next_cursor)
