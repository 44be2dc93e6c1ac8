"""Filters on user metadata (`meta`, a JSON object) and `external_id`, for every list that has them.

Syntax (query parameters, or keys of a task's `filters` object):
- `meta.<key>=<value>`: the top-level key equals the value, compared as text (`meta.badge=42`
  matches `{"badge": 42}` and `{"badge": "42"}`);
- `meta.<key>__gte=<n>`, `__gt`, `__lte`, `__lt`: numeric ranges on a top-level key; objects whose
  value is not a number do not match;
- `external_id=<text>`: exact match.
Keys are 1–64 characters of letters, digits, `_` and `-`. Up to 10 meta filters per request.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Float, String, and_, case, cast, func
from sqlalchemy.sql.elements import ColumnElement

from facewatch.errors import BadParam
from facewatch.meta import KEY_PATTERN as _KEY
from facewatch.meta import META_MAX_BYTES, meta_params

_BOOL_TEXT = {"true": "1", "false": "0"}

def meta_clauses(column: Any, filters: Mapping[str, Any], dialect: str) -> list[ColumnElement[bool]]:
    """SQL conditions for `meta.*` filters on the JSON `column` (portable: SQLite and PostgreSQL)."""
    clauses = []
    for key, raw in meta_params(filters).items():
        match = _KEY.match(key)
        assert match is not None  # checked by meta_params
        name, op = match.group(1), match.group(2)
        element = column[name]
        if op is None:
            text = str(raw).lower() if isinstance(raw, bool) else str(raw)
            if dialect == "sqlite":  # json_extract gives 1/0 for true/false
                text = _BOOL_TEXT.get(text, text)
            clauses.append(cast(element.as_string(), String) == text)
            continue
        try:
            bound = float(raw)
        except (TypeError, ValueError):
            raise BadParam(f"{key} needs a number", param=key) from None
        if dialect == "postgresql":
            # ->> of a non-number would fail the cast: only numbers take part in ranges.
            number = case((func.json_typeof(column.op("->")(name)) == "number", cast(element.as_string(), Float)),
                          else_=None)
        else:
            number = case((func.json_type(column, f"$.{name}").in_(["integer", "real"]), element.as_float()),
                          else_=None)
        clauses.append({"gte": number >= bound, "gt": number > bound, "lte": number <= bound,
                        "lt": number < bound}[op])
    return clauses


def apply_meta(stmt: Any, model: Any, filters: Mapping[str, Any], dialect: str) -> Any:
    """`stmt` narrowed by the meta filters and `external_id` of `filters` on `model`."""
    clauses = meta_clauses(model.meta, filters, dialect)
    if filters.get("external_id") not in (None, "") and hasattr(model, "external_id"):
        clauses.append(model.external_id == str(filters["external_id"]))
    return stmt.where(and_(*clauses)) if clauses else stmt

__all__ = ["META_MAX_BYTES", "apply_meta", "meta_clauses", "meta_params"]
