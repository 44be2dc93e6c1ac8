"""Selecting events by the list filters (`GET /v1/events`, exports, clean-up, cross-matching)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Select, or_

from storage import orm
from storage.meta_filters import apply_meta

EQUAL = ("camera_id", "camera_group_id", "watch_list_id", "dossier_id", "episode_id", "video_id", "gender",
         "person_id", "person_status")
FLAGS = ("matched", "acknowledged")
BOUNDS = {"timestamp_gte": (orm.Event.timestamp, ">="), "timestamp_lte": (orm.Event.timestamp, "<="),
          "age_gte": (orm.Event.age, ">="), "age_lte": (orm.Event.age, "<="),
          "confidence_gte": (orm.Event.confidence, ">=")}


def filter_events(stmt: Select[Any], f: Mapping[str, Any], dialect: str = "sqlite") -> Select[Any]:
    """`stmt` narrowed by the event filters in `f` (absent or None = any), meta and external_id included."""
    for name in EQUAL:
        if f.get(name) is not None:
            stmt = stmt.where(getattr(orm.Event, name) == f[name])
    for name in FLAGS:
        if f.get(name) is not None:
            stmt = stmt.where(getattr(orm.Event, name).is_(f[name]))
    for name, (column, op) in BOUNDS.items():
        if f.get(name) is not None:
            stmt = stmt.where(column >= f[name] if op == ">=" else column <= f[name])
    return apply_meta(stmt, orm.Event, f, dialect)


def hide(stmt: Select[Any], watch_list_ids: list[int], camera_group_ids: list[int]) -> Select[Any]:
    """Leaves out events of hidden watch lists and camera groups (a role's visibility)."""
    if watch_list_ids:
        stmt = stmt.where(or_(orm.Event.watch_list_id.is_(None), orm.Event.watch_list_id.not_in(watch_list_ids)))
    if camera_group_ids:
        stmt = stmt.where(or_(orm.Event.camera_group_id.is_(None), orm.Event.camera_group_id.not_in(camera_group_ids)))
    return stmt
