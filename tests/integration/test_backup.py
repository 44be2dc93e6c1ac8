"""Backup and restore: a restore into an empty installation answers the API and searches exactly like
the original, across SQLite and PostgreSQL in both directions; non-empty targets are refused."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import ray
from fastapi.testclient import TestClient

from actors.galleries import SYSTEM_GALLERY_COLUMNS, Galleries
from actors.gallery import actor_name
from facewatch.settings import Config
from models.images import encode_png
from serve_apps.api.app import create_app
from serve_apps.api.services import Services
from storage import orm
from storage.backup import BackupError, backup, installation_contents, read_manifest, restore
from storage.db import migrate
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, store_dossier_face_vector
from storage.media import LocalMediaStore
from storage.outbox import enqueue_event
from storage.tokens import ensure_admin
from storage.unit_of_work import UnitOfWork
from tests.conftest import fresh_database, make_config

pytestmark = [pytest.mark.pg_capable, pytest.mark.usefixtures("ray_module")]
RAY_OPTIONS = {"num_cpus": 2, "namespace": "test-backup"}

MODEL, DIM = "dlib_resnet_v1", 128
TOKEN = "fw_backup-test-admin-token-0123456789"
AUTH = {"Authorization": f"Token {TOKEN}"}
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
USER_GALLERY = "visitors"


def unit(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def galleries_for(config: Config) -> Galleries:
    return Galleries(db_url=config.database_url, snapshot_dir=str(config.snapshot_dir), model=MODEL, dim=DIM,
                     shards=2)


def client_for(config: Config, galleries: Galleries) -> TestClient:
    return TestClient(create_app(config, Services(embedder=MODEL, galleries=galleries)),
                      raise_server_exceptions=False)


def build(config: Config, api: TestClient) -> dict[str, Any]:
    """Rows of every kind, media (one file shared by two rows), vectors in three galleries."""
    migrate(config.database_url)
    media = LocalMediaStore(config.media_root)
    with UnitOfWork(config.database_url) as uow:
        ensure_admin(uow, TOKEN)
    # through the API: audit records, a user gallery with vectors
    group = api.post("/v1/camera-groups", json={"name": "lobby", "labels": {"camera-group": "lobby"}},
                     headers=AUTH).json()
    camera = api.post("/v1/cameras", json={"name": "door", "camera_group_id": group["id"], "url": "rtsp://x/1"},
                      headers=AUTH).json()
    vip = api.post("/v1/watch-lists", json={"name": "vip", "camera_group_ids": [group["id"]]}, headers=AUTH).json()
    api.post("/v1/users", json={"username": "olga", "role": "operator"}, headers=AUTH)
    api.patch("/v1/settings", json={"default_threshold": 0.8}, headers=AUTH)
    api.post("/v1/webhooks", json={"title": "siem", "url": "http://127.0.0.1:9/hook", "secret": "s"}, headers=AUTH)
    assert api.post("/v1/galleries", json={"name": USER_GALLERY}, headers=AUTH).status_code == 201
    for i in range(5):
        r = api.post(f"/v1/galleries/{USER_GALLERY}/faces", json={"id": f"v{i}", "vector": unit(500 + i).tolist()},
                     headers=AUTH)
        assert r.status_code == 201, r.text
    # directly: dossiers with faces and vectors, events with media, episodes and outbox rows
    shared = media.put(encode_png(np.full((20, 20, 3), 7, np.uint8)), "png")
    face_ids, event_ids = [], []
    with UnitOfWork(config.database_url) as uow:
        wl = uow.watch_lists.get(vip["id"])
        for d in range(4):
            dossier = uow.dossiers.add(orm.Dossier(name=f"person {d}", watch_lists=[wl] if d < 3 else [],
                                                   external_id=f"x{d}", active=d != 2))
            for f in range(2):
                photo = media.put(f"photo {d} {f}".encode(), "jpg")
                crop = shared if (d, f) == (0, 0) else media.put(encode_png(
                    np.full((10, 10, 3), d * 10 + f, np.uint8)), "png")
                face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id, source_key=photo, crop_key=crop,
                                                             bbox=[1.0, 2.0, 30.0, 40.0], quality=0.5 + f / 10))
                store_dossier_face_vector(uow, face, dossier, MODEL, unit(10 * d + f))
                face_ids.append(face.id)
        episode = uow.episodes.add(orm.Episode(camera_group_id=group["id"], camera_id=camera["id"],
                                               started_at=T0, last_at=T0))
        for e in range(6):
            event_id = f"j1-r0-t{e}-s0"
            event = orm.Event(
                id=event_id, job_id=1, track_id=e, camera_id=camera["id"], camera_group_id=group["id"],
                timestamp=T0 + timedelta(seconds=e), bbox=[1.5, 2.5, 50.0, 60.0], detection_score=0.99,
                quality=0.4 + e / 20, attributes={"age": 30 + e}, age=30.0 + e, matched=e % 2 == 0,
                dossier_id=None, watch_list_id=vip["id"] if e % 2 == 0 else orm.UNMATCHED_WATCH_LIST_ID,
                confidence=0.9 if e % 2 == 0 else None, episode_id=episode.id,
                thumbnail_key=shared if e == 0 else media.put(f"thumb {e}".encode(), "jpg"),
                crop_key=media.put(f"crop {e}".encode(), "jpg"), frame_key=media.put(f"frame {e}".encode(), "jpg"))
            uow.session.add(event)
            enqueue_event(uow, event)
            vector = unit(10 * (e % 4)) * 0.8 + unit(900 + e) * 0.2  # near dossier faces
            uow.vectors.upsert(EVENTS_GALLERY, event_id, MODEL, (vector / np.linalg.norm(vector)).tobytes(), DIM,
                               {"camera_id": camera["id"], "camera_group_id": group["id"],
                                "timestamp": (T0 + timedelta(seconds=e)).timestamp()})
            event_ids.append(event_id)
        episode.event_count, episode.first_event_id, episode.last_event_id = 6, event_ids[0], event_ids[-1]
        uow.commit()
    return {"faces": face_ids, "events": event_ids, "shared": shared}


def later_changes(config: Config, info: dict[str, Any]) -> None:
    """Changes after the gallery snapshots: a restored shard must replay them from the DB."""
    with UnitOfWork(config.database_url) as uow:
        uow.vectors.remove(DOSSIERS_GALLERY, [str(info["faces"][-1])])
        uow.session.delete(uow.dossier_faces.get(info["faces"][-1]))
        uow.vectors.upsert(EVENTS_GALLERY, "late-event-vector", MODEL, unit(4242).tobytes(), DIM,
                           {"camera_id": 1, "camera_group_id": 1, "timestamp": T0.timestamp()})
        uow.commit()


def answers(config: Config, galleries: Galleries, info: dict[str, Any]) -> dict[str, Any]:
    """What clients see: API reads, media bytes, API searches, raw gallery searches."""
    api = client_for(config, galleries)
    out: dict[str, Any] = {}
    gets = ["/v1/camera-groups", "/v1/cameras", "/v1/watch-lists", "/v1/dossiers?limit=100", "/v1/events?limit=100",
            "/v1/episodes", "/v1/webhooks", "/v1/users", "/v1/settings", "/v1/galleries",
            "/v1/audit?limit=1000", "/v1/events?limit=2"]
    for dossier in api.get("/v1/dossiers?limit=100", headers=AUTH).json()["results"]:
        gets.append(f"/v1/dossiers/{dossier['id']}/faces")
    gets += [f"/v1/events/{e}" for e in info["events"]]
    for path in gets:
        r = api.get(path, headers=AUTH)
        assert r.status_code == 200, (path, r.text)
        out[path] = r.json()
    cursor = out["/v1/events?limit=2"]["next_cursor"]
    out["page 2"] = api.get(f"/v1/events?limit=2&cursor={cursor}", headers=AUTH).json()
    media = sorted({u.rsplit("/", 1)[1] for e in out["/v1/events?limit=100"]["results"]
                    for u in e["media"].values() if u})
    out["media"] = {k: api.get(f"/v1/media/{k}", headers=AUTH).content for k in media}
    searches = [{"dossier_face_id": f, "target": "dossiers", "threshold": 0.0, "include_inactive": True}
                for f in info["faces"][:-1]]
    searches += [{"event_id": e, "target": "events", "threshold": 0.0, "limit": 10} for e in info["events"]]
    for number, body in enumerate(searches):
        r = api.post("/v1/search", json=body, headers=AUTH)
        assert r.status_code == 200, r.text
        out[f"search {number}"] = r.json()
    r = api.post(f"/v1/galleries/{USER_GALLERY}/search", json={"vector": unit(502).tolist(), "limit": 3},
                 headers=AUTH)
    assert r.status_code == 200, r.text
    out["user gallery search"] = r.json()
    queries = np.stack([unit(s) for s in range(0, 40, 3)])
    for name in (DOSSIERS_GALLERY, EVENTS_GALLERY, USER_GALLERY):
        hits = galleries.router(name).search(queries, 8).hits
        out[f"raw {name}"] = [[(h.item_id, round(h.score, 5)) for h in row] for row in hits]
    return out


def stop_galleries(galleries: Galleries) -> None:
    """Kill this installation's shard actors and wait until their names are free again."""
    for router in list(galleries._routers.values()):
        router.kill()
    names = [actor_name(g, MODEL, s, 2, 0) for g in (*SYSTEM_GALLERY_COLUMNS, USER_GALLERY) for s in range(2)]
    deadline = time.monotonic() + 30
    for name in names:
        while True:
            try:
                ray.get_actor(name, namespace="facewatch")
            except ValueError:
                break
            assert time.monotonic() < deadline, name
            time.sleep(0.1)


@pytest.fixture
def target_url(request: pytest.FixtureRequest, tmp_path: Path):
    """Where the restore goes: a fresh SQLite file, or a fresh PostgreSQL database (not migrated)."""
    yield from fresh_database(request.param, tmp_path / "restored" / "facewatch.db", migrated=False)


@pytest.mark.parametrize("target_url", ["sqlite", "postgresql"], indirect=True)
def test_restore_answers_like_the_original(db_url: str, target_url: str, tmp_path: Path) -> None:
    if db_url.startswith("postgresql") and target_url.startswith("postgresql"):
        pytest.skip("PostgreSQL → PostgreSQL is covered by the two cross-backend runs")
    source = make_config(tmp_path / "a", db_url)
    galleries_a = galleries_for(source)
    info = build(source, client_for(source, galleries_a))
    galleries_a.open_all()
    galleries_a.router(USER_GALLERY)
    for router in galleries_a._routers.values():
        router.snapshot()
    later_changes(source, info)
    for name in list(galleries_a._routers):
        galleries_a.router(name).sync()
    manifest = backup(source, tmp_path / "backup")
    expected = answers(source, galleries_a, info)  # its reads come first: the audit log is the backed-up one
    stop_galleries(galleries_a)

    assert manifest["tables"]["events"] == 6 and manifest["tables"]["dossier_faces"] == 7
    assert len(manifest["gallery_snapshots"]) == 8  # 4 galleries (dossiers, events, persons, a user one) × 2 shards
    assert manifest["media"]["missing"] == []
    assert (manifest["native_db"] is not None) == db_url.startswith("sqlite")

    restored = make_config(tmp_path / "b", target_url)
    report = restore(restored, tmp_path / "backup")
    assert report["tables"] == manifest["tables"] and report["media_corrupt"] == []
    galleries_b = galleries_for(restored)
    galleries_b.open_all()
    galleries_b.router(USER_GALLERY)
    sources = {s[0]["source"] for router in galleries_b._routers.values() for s in router.stats()}
    assert sources == {"snapshot"}  # the restored snapshots were used (and the later changes replayed)
    actual = answers(restored, galleries_b, info)
    stop_galleries(galleries_b)
    assert actual.keys() == expected.keys()
    for key in expected:
        assert actual[key] == expected[key], key
    # the restored installation keeps working: new rows get fresh ids (sequences moved on)
    api = client_for(restored, galleries_for(restored))
    r = api.post("/v1/camera-groups", json={"name": "garage"}, headers=AUTH)
    assert r.status_code == 201 and r.json()["id"] > max(g["id"] for g in expected["/v1/camera-groups"]["results"])
    assert api.post("/v1/watch-lists", json={"name": "new list"}, headers=AUTH).status_code == 201


def test_refuses_non_empty_targets_and_unfinished_backups(sqlite_url: str, tmp_path: Path) -> None:
    source = make_config(tmp_path / "a", sqlite_url)
    with UnitOfWork(sqlite_url) as uow:
        ensure_admin(uow, TOKEN)
        uow.dossiers.add(orm.Dossier(name="ann"))
        uow.commit()
    LocalMediaStore(source.media_root).put(b"x", "jpg")
    (tmp_path / "not-empty").mkdir()
    (tmp_path / "not-empty" / "file").write_text("x")
    with pytest.raises(BackupError, match="not empty"):
        backup(source, tmp_path / "not-empty")
    backup(source, tmp_path / "backup")
    with pytest.raises(BackupError, match="not empty"):
        restore(source, tmp_path / "backup")  # the installation it came from
    assert installation_contents(source).keys() >= {"dossiers", "users", "media_files"}

    # --force replaces the contents (here with the same backup), including stale snapshots
    source.snapshot_dir.mkdir(parents=True)
    (source.snapshot_dir / "dossiers.stale.npz").write_bytes(b"stale")
    with UnitOfWork(sqlite_url) as uow:
        uow.dossiers.add(orm.Dossier(name="added after the backup"))
        uow.commit()
    report = restore(source, tmp_path / "backup", force=True)
    assert report["replaced_existing"] and report["tables"]["dossiers"] == 1
    assert not (source.snapshot_dir / "dossiers.stale.npz").exists()
    with UnitOfWork(sqlite_url) as uow:
        assert [d.name for d in uow.session.query(orm.Dossier)] == ["ann"]

    (tmp_path / "backup" / "manifest.json").unlink()
    with pytest.raises(BackupError, match="manifest"):
        read_manifest(tmp_path / "backup")


def test_cli_backup_and_restore(sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    with UnitOfWork(sqlite_url) as uow:
        ensure_admin(uow, TOKEN)
    monkeypatch.setenv("FACEWATCH_HOME", str(tmp_path / "a"))
    monkeypatch.setenv("FACEWATCH_DATABASE_URL", sqlite_url)
    assert main(["backup", str(tmp_path / "b"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tables"]["users"] == 1
    assert main(["restore", str(tmp_path / "b")]) == 2  # not empty
    assert "not empty" in capsys.readouterr().err
    monkeypatch.setenv("FACEWATCH_HOME", str(tmp_path / "c"))
    monkeypatch.setenv("FACEWATCH_DATABASE_URL", f"sqlite:///{tmp_path / 'c' / 'facewatch.db'}")
    assert main(["restore", str(tmp_path / "b")]) == 0
    assert "restored" in capsys.readouterr().out
