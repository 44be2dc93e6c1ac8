"""Field types shared by the API schemas and the domain types: ISO timestamps, boxes."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any

from pydantic import BeforeValidator


def iso_datetime(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError as exc:
            raise ValueError("expected an ISO 8601 date-time such as 2024-05-01T12:00:00Z") from exc
    if isinstance(value, datetime):
        return value
    raise ValueError("expected an ISO 8601 date-time string")


Timestamp = Annotated[datetime, BeforeValidator(iso_datetime)]
"""A datetime in an input (body or query): an ISO 8601 string, as documented; not an epoch number."""


def check_box(value: Sequence[float] | None, name: str) -> Any:
    if value is None:
        return None
    if len(value) != 4 or value[2] <= value[0] or value[3] <= value[1] or min(value) < 0:
        raise ValueError(f"{name} must be [x1, y1, x2, y2] with x2 > x1 >= 0 and y2 > y1 >= 0")
    return value
