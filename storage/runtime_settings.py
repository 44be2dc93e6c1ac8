"""Runtime settings (`GET/PATCH /v1/settings`): stored values over the documented defaults."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from facewatch.errors import BadParam
from storage import orm

RUNTIME_SETTING_DEFAULTS: dict[str, Any] = {
    "default_threshold": 0.75,
    "episode_threshold": 0.70,
    # A track whose best frame is below this quality is never matched (actors/track_identity.py).
    "match_min_quality": 0.3,
    "episode_lookback_s": 60.0,
    "episode_idle_timeout_s": 30.0,
    "episode_max_duration_s": 300.0,
    "ignore_unmatched": False,
    "retention_days_matched": 30,
    "retention_days_unmatched": 30,
    # Tables that would otherwise only grow (storage.retention.prune_logs); 0 keeps every row.
    "retention_days_audit_log": 365,
    "retention_days_webhook_deliveries": 30,
    "retention_days_gallery_changes": 30,
    "min_dossier_photo_quality": 0.3,
    "embedder": "dlib_resnet_v1",
    # Persons (docs/persons.md).
    "person_threshold": 0.78,
    "person_min_quality": 0.5,
    "person_max_faces": 8,
    "person_scope": "installation",
    "person_merge_threshold": 0.80,
    "friend_days": 3,
    "friend_window_days": 30,
}


class SettingsRepository:
    """Runtime settings: stored values over the documented defaults."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def all(self) -> dict[str, Any]:
        values = dict(RUNTIME_SETTING_DEFAULTS)
        for row in self.session.scalars(select(orm.RuntimeSetting)):
            if row.key in values:
                values[row.key] = row.value
        return values

    def get(self, key: str) -> Any:
        return self.all()[key]

    def update(self, changes: dict[str, Any]) -> dict[str, Any]:
        for key, value in changes.items():
            if key not in RUNTIME_SETTING_DEFAULTS:
                raise BadParam(f"unknown setting {key!r}", param=key)
            row = self.session.get(orm.RuntimeSetting, key)
            if row is None:
                self.session.add(orm.RuntimeSetting(key=key, value=value))
            else:
                row.value = value
        self.session.flush()
        return self.all()
