"""Retention: expired events go with their outbox rows, events-gallery vectors, unshared media and
emptied episodes; shared media stay; reruns are no-ops; the Maintenance actor runs it on a schedule."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select

from storage import orm
from storage.dossier_vectors import EVENTS_GALLERY
from storage.media import LocalMediaStore
from storage.retention import cleanup, media_columns
from storage.unit_of_work import UnitOfWork
from tests.helpers import local_ray

NOW = datetime.now(UTC)
DIM = 8


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


class Install:
    """A small installation: one camera, one dossier with a face, events of various ages."""

    def __init__(self, url: str, media_root: Path) -> None:
        self.url, self.media = url, LocalMediaStore(media_root)
        self.media_root = media_root
        with UnitOfWork(url) as uow:
            self.group = uow.camera_groups.add(orm.CameraGroup(name="lobby")).id
            self.camera = uow.cameras.add(orm.Camera(name="door", camera_group_id=self.group)).id
            self.hook = uow.webhooks.add(orm.Webhook(title="all", url="http://127.0.0.1:9/x")).id
            dossier = uow.dossiers.add(orm.Dossier(name="ann"))
            self.face_key = self.media.put(b"dossier crop shared with an event", "png")
            uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id, crop_key=self.face_key))
            self.dossier = dossier.id
            uow.commit()

    def episode(self, age_days: float) -> int:
        with UnitOfWork(self.url) as uow:
            row = uow.episodes.add(orm.Episode(camera_group_id=self.group, started_at=days_ago(age_days),
                                               last_at=days_ago(age_days), created_at=days_ago(age_days)))
            uow.commit()
            return row.id

    def event(self, event_id: str, age_days: float, matched: bool, episode: int | None = None,
              keys: tuple[str, str, str] | None = None, quality: float = 0.5) -> None:
        keys = keys or (self.media.put(f"{event_id} thumb".encode(), "jpg"),
                        self.media.put(f"{event_id} crop".encode(), "jpg"),
                        self.media.put(f"{event_id} frame".encode(), "jpg"))
        with UnitOfWork(self.url) as uow:
            event = orm.Event(id=event_id, camera_id=self.camera, camera_group_id=self.group,
                              timestamp=days_ago(age_days), created_at=days_ago(age_days), matched=matched,
                              dossier_id=self.dossier if matched else None, quality=quality,
                              watch_list_id=None if matched else orm.UNMATCHED_WATCH_LIST_ID, episode_id=episode,
                              thumbnail_key=keys[0], crop_key=keys[1], frame_key=keys[2])
            uow.session.add(event)
            uow.session.add(orm.WebhookOutbox(webhook_id=self.hook, event_id=event_id))
            vector = np.random.default_rng(abs(hash(event_id)) % 2**32).standard_normal(DIM).astype(np.float32)
            uow.vectors.upsert(EVENTS_GALLERY, event_id, "m", vector.tobytes(), DIM,
                               {"camera_id": self.camera, "camera_group_id": self.group,
                                "timestamp": days_ago(age_days).timestamp()})
            if episode is not None:
                row = uow.episodes.get(episode)
                row.event_count += 1
                row.first_event_id = row.first_event_id or event_id
                row.last_event_id = event_id
                if quality >= row.best_quality:
                    row.best_event_id, row.best_quality = event_id, quality
            uow.commit()

    def ids(self) -> set[str]:
        with UnitOfWork(self.url) as uow:
            return set(uow.session.scalars(select(orm.Event.id)))

    def count(self, model: type[orm.Base], *where) -> int:
        with UnitOfWork(self.url) as uow:
            return int(uow.session.scalar(select(func.count()).select_from(model).where(*where)))

    def settings(self, **values) -> None:
        with UnitOfWork(self.url) as uow:
            uow.settings.update(values)
            uow.commit()


@pytest.fixture
def install(db_url: str, tmp_path: Path) -> Install:
    return Install(db_url, tmp_path / "media")


pytestmark = pytest.mark.pg_capable


def test_media_columns_cover_every_media_key() -> None:
    names = {f"{c.table.name}.{c.name}" for c in media_columns()}
    assert names == {"dossier_faces.source_key", "dossier_faces.crop_key", "events.thumbnail_key",
                     "events.crop_key", "events.frame_key", "videos.media_key",
                     "dossier_negatives.thumbnail_key", "dossier_negatives.crop_key"}


def test_expired_events_go_with_their_rows_vectors_and_unshared_media(install: Install) -> None:
    install.settings(retention_days_matched=30, retention_days_unmatched=10)
    shared = install.media.put(b"identical content seen twice", "jpg")
    old_episode, mixed_episode = install.episode(40), install.episode(20)
    install.event("old-matched", 40, True, old_episode)
    install.event("old-matched-2", 39, True, old_episode, keys=(shared, install.face_key, ""))
    install.event("old-unmatched", 15, False, mixed_episode, quality=0.9)  # > 10 days: expired
    install.event("young-unmatched", 5, False, mixed_episode, keys=(shared, "", ""), quality=0.4)
    install.event("young-matched", 20, True)  # < 30 days: kept
    unique_old = [install.media.put(f"old-matched {k}".encode(), "jpg") for k in ("thumb", "crop", "frame")]

    report = cleanup(install.url, install.media_root, now=NOW)

    assert install.ids() == {"young-unmatched", "young-matched"}
    assert (report["events_deleted"], report["matched_deleted"], report["unmatched_deleted"]) == (3, 2, 1)
    assert install.count(orm.WebhookOutbox) == 2 and report["outbox_deleted"] == 3
    assert install.count(orm.FaceVector, orm.FaceVector.gallery == EVENTS_GALLERY) == 2
    assert report["vectors_deleted"] == 3
    removed = install.count(orm.GalleryChange, orm.GalleryChange.gallery == EVENTS_GALLERY,
                            orm.GalleryChange.op == "remove")
    assert removed == 3  # the change log tells the shards
    assert not any(install.media.exists(k) for k in unique_old)
    assert install.media.exists(shared)  # still the thumbnail of young-unmatched
    assert install.media.exists(install.face_key)  # still a dossier face's crop
    assert report["media_kept_shared"] == 2
    with UnitOfWork(install.url) as uow:
        assert uow.episodes.find(old_episode) is None  # left empty
        mixed = uow.episodes.get(mixed_episode)
        assert (mixed.event_count, mixed.first_event_id, mixed.best_event_id) == (1, "young-unmatched",
                                                                                 "young-unmatched")
    assert report["episodes_deleted"] == 1 and report["episodes_updated"] == 1

    again = cleanup(install.url, install.media_root, now=NOW)
    assert again["events_deleted"] == 0 and again["media_deleted"] == 0 and again["batches"] == 0


def test_older_than_overrides_the_settings_and_batches(install: Install) -> None:
    for i in range(7):
        install.event(f"e{i}", 2 + i, bool(i % 2))
    install.event("today", 0.01, False)
    report = cleanup(install.url, install.media_root, older_than_days=1, batch=3, now=NOW)
    assert install.ids() == {"today"}
    assert report["events_deleted"] == 7 and report["batches"] == 3
    assert report["cutoff_matched"] == report["cutoff_unmatched"]


def test_zero_days_keeps_events_forever_and_bad_input_is_refused(install: Install) -> None:
    install.settings(retention_days_matched=0, retention_days_unmatched=None)
    install.event("ancient", 5000, True)
    report = cleanup(install.url, install.media_root, now=NOW)
    assert report["events_deleted"] == 0 and report["cutoff_matched"] is None
    assert install.ids() == {"ancient"}
    with pytest.raises(ValueError):
        cleanup(install.url, install.media_root, older_than_days=-1)
    with pytest.raises(ValueError):
        cleanup(install.url, install.media_root, batch=0)


def test_cli_cleanup_older_than(install: Install, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    install.event("week-old", 7, False)
    install.event("fresh", 0.1, True)
    monkeypatch.setenv("FACEWATCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FACEWATCH_DATABASE_URL", install.url)
    monkeypatch.setenv("FACEWATCH_MEDIA_ROOT", str(install.media_root))
    monkeypatch.delenv("FACEWATCH_RAY_ADDRESS", raising=False)
    assert main(["cleanup", "--older-than", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["events_deleted"] == 1 and "skipped" in report["events_gallery"]
    assert install.ids() == {"fresh"}


def test_maintenance_actor_runs_on_schedule_and_syncs_the_events_gallery(sqlite_url: str, tmp_path: Path) -> None:
    import ray

    from actors.galleries import Galleries
    from actors.maintenance import Maintenance

    install = Install(sqlite_url, tmp_path / "media")
    install.settings(retention_days_matched=30, retention_days_unmatched=30)
    install.event("expired", 31, False)
    install.event("kept", 1, False)
    with local_ray(2, "test-retention"):
        galleries = Galleries(db_url=sqlite_url, snapshot_dir=str(tmp_path / "snap"), model="m", dim=DIM, shards=2)
        router = galleries.router(EVENTS_GALLERY)
        with UnitOfWork(sqlite_url) as uow:
            query = np.frombuffer(uow.vectors.find(EVENTS_GALLERY, "expired", "m").vector, np.float32)
        assert router.search(query, 5).hits[0][0].item_id == "expired"
        actor = Maintenance.remote(sqlite_url, str(install.media_root),
                                   Galleries(db_url=sqlite_url, snapshot_dir=str(tmp_path / "snap"), model="m",
                                             dim=DIM, shards=2), 0.5, 0.2)
        assert ray.get(actor.start.remote())
        deadline = time.monotonic() + 60
        while (stats := ray.get(actor.stats.remote()))["events_deleted"] < 1:
            assert time.monotonic() < deadline, stats
            time.sleep(0.2)
        assert stats["last_error"] == "" and stats["runs"] >= 1
        assert install.ids() == {"kept"}
        hits = [h.item_id for h in asyncio.run(router.search_async(query, 5)).hits[0]]
        assert "expired" not in hits and hits == ["kept"]  # the shards replayed the removal
        ray.get(actor.stop.remote())
        router.kill()
