"""How a list endpoint's query parameters narrow its table, declared once per repository instead of an
`if … is not None: stmt = stmt.where(…)` ladder in every route (`Repository.list_page`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select


def like_prefix(value: str) -> str:
    """A LIKE pattern (escape character `\\`) matching text that starts with `value` literally."""
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%"


@dataclass(frozen=True)
class ListFilters:
    """Parameter names are column names unless mapped. An absent or None parameter narrows nothing."""

    equal: tuple[str, ...] = ()
    """column == value"""
    flags: tuple[str, ...] = ()
    """boolean column IS value"""
    contains: Mapping[str, str] = field(default_factory=dict)
    """parameter -> text column holding it, case-insensitively (an empty string narrows nothing)"""
    prefix: Mapping[str, str] = field(default_factory=dict)
    """parameter -> text column starting with it (an empty string narrows nothing)"""
    at_least: Mapping[str, str] = field(default_factory=dict)
    """parameter -> column >= value"""
    at_most: Mapping[str, str] = field(default_factory=dict)
    """parameter -> column <= value"""

    def apply(self, stmt: Select[Any], model: Any, values: Mapping[str, Any]) -> Select[Any]:
        for name in self.equal:
            if values.get(name) is not None:
                stmt = stmt.where(getattr(model, name) == values[name])
        for name in self.flags:
            if values.get(name) is not None:
                stmt = stmt.where(getattr(model, name).is_(bool(values[name])))
        for name, column in self.contains.items():
            if values.get(name):
                stmt = stmt.where(getattr(model, column).icontains(values[name], autoescape=True))
        for name, column in self.prefix.items():
            if values.get(name):
                stmt = stmt.where(getattr(model, column).like(like_prefix(values[name]), escape="\\"))
        for name, column in self.at_least.items():
            if values.get(name) is not None:
                stmt = stmt.where(getattr(model, column) >= values[name])
        for name, column in self.at_most.items():
            if values.get(name) is not None:
                stmt = stmt.where(getattr(model, column) <= values[name])
        return stmt
