"""Erasure (storage/erasure.py): deleting photos and dossiers removes their files and vectors of every
model, erasing a person removes their events too, and the media sweep removes unreferenced files."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from cluster.cli import main as cli_main
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.erasure import sweep_media
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient

MODELS = ("model_a", "model_b")
T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


def _install(api: ApiClient) -> tuple[str, LocalMediaStore]:
    config = api.client.app.state.config
    return str(config.database_url), LocalMediaStore(config.media_root)


def _face(uow: UnitOfWork, media: LocalMediaStore, dossier: orm.Dossier, tag: str, shared: str = "") -> orm.DossierFace:
    """A dossier photo with its files and a vector for each of two models."""
    source = shared or media.put(f"photo {tag}".encode(), "jpg")
    crop = media.put(f"crop {tag}".encode(), "jpg")
    face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id, source_key=source, crop_key=crop))
    for model in MODELS:
        uow.vectors.upsert(DOSSIERS_GALLERY, str(face.id), model, b"\0" * 16, 4, {"dossier_id": dossier.id})
    return face


def _vectors(url: str, gallery: str, item_ids: list[str]) -> int:
    with UnitOfWork(url) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(orm.FaceVector).where(
            orm.FaceVector.gallery == gallery, orm.FaceVector.item_id.in_(item_ids))) or 0)


@pytest.mark.pg_capable
def test_deleting_a_photo_and_a_dossier_removes_files_and_vectors_of_every_model(api_any_db: ApiClient) -> None:
    api = api_any_db
    url, media = _install(api)
    with UnitOfWork(url) as uow:
        ann = uow.dossiers.add(orm.Dossier(name="ann"))
        other = uow.dossiers.add(orm.Dossier(name="other"))
        first, second = _face(uow, media, ann, "a1"), _face(uow, media, ann, "a2")
        kept = _face(uow, media, other, "o1", shared=second.source_key)  # the same photo in another dossier
        uow.commit()
        ann_id, first_id, second_id = ann.id, first.id, second.id
        first_keys, second_keys = (first.source_key, first.crop_key), (second.source_key, second.crop_key)
        kept_keys = (kept.source_key, kept.crop_key)
    assert api.delete(f"/v1/dossiers/{ann_id}/faces/{first_id}", role="operator").status_code == 204
    assert not any(media.exists(k) for k in first_keys)
    assert _vectors(url, DOSSIERS_GALLERY, [str(first_id)]) == 0 and _vectors(url, DOSSIERS_GALLERY,
                                                                                [str(second_id)]) == 2
    assert api.delete(f"/v1/dossiers/{ann_id}", role="operator").status_code == 204
    assert not media.exists(second_keys[1]) and _vectors(url, DOSSIERS_GALLERY, [str(second_id)]) == 0
    assert media.exists(second_keys[0])  # still the other dossier's photo
    assert all(media.exists(k) for k in kept_keys)


def _person_with_events(url: str, media: LocalMediaStore) -> dict:
    with UnitOfWork(url) as uow:
        lobby = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        vip = uow.watch_lists.add(orm.WatchList(name="vip"))
        bob = uow.dossiers.add(orm.Dossier(name="bob", watch_lists=[vip]))
        face = _face(uow, media, bob, "bob")
        episode = uow.episodes.add(orm.Episode(camera_group_id=lobby.id, dossier_id=bob.id, matched=True,
                                               watch_list_id=vip.id, started_at=T0, last_at=T0))
        other_episode = uow.episodes.add(orm.Episode(camera_group_id=lobby.id, started_at=T0, last_at=T0))
        frame = media.put(b"a frame with bob and a stranger", "jpg")
        specs = [("bob-1", bob.id, vip.id, episode.id), ("bob-2", bob.id, vip.id, episode.id),
                 ("bob-unmatched", None, orm.UNMATCHED_WATCH_LIST_ID, episode.id),  # in bob's episode
                 ("stranger", None, orm.UNMATCHED_WATCH_LIST_ID, other_episode.id)]
        keys = {}
        for n, (event_id, dossier, wl, episode_id) in enumerate(specs):
            thumb = media.put(f"thumb {event_id}".encode(), "jpg")
            keys[event_id] = thumb
            uow.session.add(orm.Event(id=event_id, camera_group_id=lobby.id, timestamp=T0 + timedelta(seconds=n),
                                      matched=dossier is not None, dossier_id=dossier, watch_list_id=wl,
                                      episode_id=episode_id, thumbnail_key=thumb, crop_key=thumb, frame_key=frame))
            for model in MODELS:
                uow.vectors.upsert(EVENTS_GALLERY, event_id, model, b"\0" * 16, 4, {"camera_group_id": lobby.id})
        uow.commit()
        return {"bob": bob.id, "face": face.id, "face_keys": (face.source_key, face.crop_key), "frame": frame,
                "episode": episode.id, "other_episode": other_episode.id, "keys": keys}


@pytest.mark.pg_capable
def test_erasing_a_person_removes_their_events_media_vectors_and_episodes(api_any_db: ApiClient) -> None:
    api = api_any_db
    url, media = _install(api)
    seed = _person_with_events(url, media)
    bob = seed["bob"]
    assert api.post(f"/v1/dossiers/{bob}/erase", role="operator").status_code == 403
    response = api.post(f"/v1/dossiers/{bob}/erase")
    assert response.status_code == 200, response.text
    report = response.json()
    assert report == {"dossier_id": bob, "faces_deleted": 1, "events_deleted": 3, "episodes_deleted": 1,
                      "vectors_deleted": 3 * 2 + 2, "media_deleted": 3 + 2}
    gone = ["bob-1", "bob-2", "bob-unmatched"]
    for event_id in gone:
        assert api.get(f"/v1/events/{event_id}").status_code == 404
        assert not media.exists(seed["keys"][event_id])
    assert _vectors(url, EVENTS_GALLERY, gone) == 0 and _vectors(url, DOSSIERS_GALLERY, [str(seed["face"])]) == 0
    assert not any(media.exists(k) for k in seed["face_keys"])
    assert api.get(f"/v1/dossiers/{bob}").status_code == 404
    assert api.get(f"/v1/episodes/{seed['episode']}").status_code == 404
    # the stranger's event, its vectors and the frame it shares stay
    assert api.get("/v1/events/stranger").status_code == 200 and media.exists(seed["frame"])
    assert media.exists(seed["keys"]["stranger"]) and _vectors(url, EVENTS_GALLERY, ["stranger"]) == 2
    audit = api.get("/v1/audit", params={"method": "POST", "limit": 100}).json()["results"]
    assert any(a["path"] == f"/v1/dossiers/{bob}/erase" and a["status"] == 200 for a in audit)
    assert api.post(f"/v1/dossiers/{bob}/erase").status_code == 404


def _age(media: LocalMediaStore, key: str, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(media.path(key), (past, past))


@pytest.mark.pg_capable
def test_media_sweep_removes_old_unreferenced_files_only(api_any_db: ApiClient) -> None:
    api = api_any_db
    url, media = _install(api)
    seed = _person_with_events(url, media)
    orphan_old = media.put(b"a dropped face", "jpg")
    orphan_young = media.put(b"a face being posted right now", "jpg")
    referenced = seed["keys"]["stranger"]
    for key in (orphan_old, referenced, seed["face_keys"][0]):
        _age(media, key, 7200)
    tmp = media.path(orphan_old).with_name(".tmp-abandoned")
    tmp.write_bytes(b"half")
    os.utime(tmp, (time.time() - 7200,) * 2)
    report = sweep_media(url, media.root)
    assert report["files_deleted"] == 1 and report["temporary_deleted"] == 1
    assert not media.exists(orphan_old) and not tmp.exists()
    assert media.exists(orphan_young) and media.exists(referenced) and media.exists(seed["face_keys"][0])
    assert report["kept_young"] >= 1 and report["kept_referenced"] == 2
    assert sweep_media(url, media.root)["files_deleted"] == 0  # nothing left to do
    # storing an orphan's content again makes it young again: the sweep never takes it from under a new row
    again = media.put(b"stored again", "jpg")
    _age(media, again, 7200)
    assert media.put(b"stored again", "jpg") == again
    assert sweep_media(url, media.root)["files_deleted"] == 0 and media.exists(again)


def test_sweep_media_cli(api: ApiClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    url, media = _install(api)
    config = api.client.app.state.config
    orphan = media.put(b"left behind", "jpg")
    _age(media, orphan, 3 * 3600)
    monkeypatch.setenv("FACEWATCH_HOME", str(config.home))
    monkeypatch.setenv("FACEWATCH_DATABASE_URL", url)
    monkeypatch.setenv("FACEWATCH_MEDIA_ROOT", str(config.media_root))
    assert cli_main(["sweep-media", "--grace-hours", "4"]) == 0
    assert media.exists(orphan) and "deleted 0 unreferenced" in capsys.readouterr().out
    assert cli_main(["sweep-media", "--grace-hours", "2", "--json"]) == 0
    assert not media.exists(orphan) and '"files_deleted": 1' in capsys.readouterr().out
