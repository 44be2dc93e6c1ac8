"""Tables that only grew (issue 11, item 10): the audit log, webhook deliveries and the gallery change
log each have a retention setting (days; 0 keeps forever), applied by the retention schedule; the
change log loses only rows every snapshot of the gallery already holds. Event retention 0 is accepted
and keeps events forever, as the README says."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from actors.gallery_shard import GalleryShard, ShardConfig
from actors.maintenance import snapshot_positions
from storage import orm
from storage.retention import LOG_RETENTION, cleanup, prune_logs
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient

NOW = datetime(2026, 6, 1, tzinfo=UTC)


def _count(url: str, model: type[orm.Base], *where) -> int:  # type: ignore[no-untyped-def]
    with UnitOfWork(url) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def _settings(url: str, **values: int) -> None:
    with UnitOfWork(url) as uow:
        uow.settings.update(values)
        uow.commit()


def test_retention_settings_accept_zero_for_forever(api: ApiClient) -> None:
    keys = ["retention_days_matched", "retention_days_unmatched", *LOG_RETENTION.values()]
    assert all(api.get("/v1/settings").json()[k] > 0 for k in keys)
    answer = api.patch("/v1/settings", json=dict.fromkeys(keys, 0))
    assert answer.status_code == 200, answer.text
    assert all(answer.json()[k] == 0 for k in keys)
    assert api.patch("/v1/settings", json={"retention_days_audit_log": -1}).status_code == 422


@pytest.mark.pg_capable
def test_event_retention_zero_keeps_events_forever(db_url: str, tmp_path: Path) -> None:
    with UnitOfWork(db_url) as uow:
        uow.session.add(orm.Event(id="old", created_at=NOW - timedelta(days=3650), matched=False))
        uow.commit()
    _settings(db_url, retention_days_matched=0, retention_days_unmatched=0)
    assert cleanup(db_url, tmp_path / "media", now=NOW)["events_deleted"] == 0
    assert _count(db_url, orm.Event) == 1


@pytest.mark.pg_capable
def test_audit_log_and_webhook_deliveries_are_pruned_by_age(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        hook = uow.webhooks.add(orm.Webhook(title="h", url="http://127.0.0.1:9/"))
        for age in (400, 40, 1):
            uow.session.add(orm.AuditRecord(method="GET", path="/v1/x", status=200,
                                            created_at=NOW - timedelta(days=age)))
            uow.session.add(orm.WebhookDelivery(webhook_id=hook.id, created_at=NOW - timedelta(days=age)))
        uow.commit()
    _settings(db_url, retention_days_audit_log=0, retention_days_webhook_deliveries=0)
    assert prune_logs(db_url, now=NOW) == dict.fromkeys(LOG_RETENTION, 0)  # 0: forever
    _settings(db_url, retention_days_audit_log=365, retention_days_webhook_deliveries=30)
    deleted = prune_logs(db_url, now=NOW, batch=1)  # batch 1: several transactions
    assert deleted == {"audit_log": 1, "webhook_deliveries": 2, "gallery_changes": 0}
    assert _count(db_url, orm.AuditRecord) == 2 and _count(db_url, orm.WebhookDelivery) == 1


def _vectors(url: str, gallery: str, ids: list[str]) -> None:
    with UnitOfWork(url) as uow:
        for item in ids:
            vector = np.random.default_rng(int(item)).standard_normal(4).astype(np.float32)
            uow.vectors.upsert(gallery, item, "m", (vector / np.linalg.norm(vector)).tobytes(), 4)
        uow.commit()


@pytest.mark.pg_capable
def test_change_log_keeps_what_a_snapshot_still_needs(db_url: str, tmp_path: Path) -> None:
    """Only rows at or before every snapshot's position go; a shard started afterwards from its snapshot
    still replays what came after it and holds every vector."""
    config = ShardConfig(gallery="g", model="m", dim=4, db_url=db_url, snapshot_dir=str(tmp_path / "snap"))
    _vectors(db_url, "g", ["1", "2", "3"])
    _vectors(db_url, "other", ["7"])  # a gallery without a snapshot: its log stays whole
    shard = GalleryShard(config)
    shard.snapshot()
    _vectors(db_url, "g", ["4", "5"])  # after the snapshot: the snapshot does not hold them
    with UnitOfWork(db_url) as uow:  # every change is old now
        uow.session.execute(update(orm.GalleryChange).values(created_at=NOW - timedelta(days=90)))
        uow.commit()
    positions = snapshot_positions(config.snapshot_dir)
    assert positions == {"g": shard.applied_seq}
    _settings(db_url, retention_days_gallery_changes=30)
    deleted = prune_logs(db_url, positions, now=NOW)
    assert deleted["gallery_changes"] == 3
    assert _count(db_url, orm.GalleryChange, orm.GalleryChange.gallery == "g") == 2
    assert _count(db_url, orm.GalleryChange, orm.GalleryChange.gallery == "other") == 1
    restarted = GalleryShard(config)
    assert restarted.source == "snapshot"
    hits = restarted.search(np.full((1, 4), 0.5, np.float32), 10, -1.0)[0]
    assert sorted(h[0] for h in hits) == ["1", "2", "3", "4", "5"]


def test_no_snapshot_no_positions(tmp_path: Path) -> None:
    assert snapshot_positions(None) == {} and snapshot_positions(str(tmp_path / "missing")) == {}
    (tmp_path / "torn.npz").write_bytes(b"not a snapshot")
    assert snapshot_positions(str(tmp_path)) == {}
