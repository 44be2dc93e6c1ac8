"""Operators teach it: POST /v1/events/{id}/reject-match, GET/DELETE /v1/dossiers/{id}/negatives.

On SQLite and PostgreSQL: the negative's row, the event unmatched (episode, video counters), roles,
audit, errors, visibility, and erasure (deleting or erasing the dossier removes its negatives with their
vectors and files). The matching rule itself runs on real gallery actors in tests/integration/test_event_pipeline.py
and on the real clip in tests/integration/test_clip_proof.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from storage import orm
from storage.dossier_vectors import EVENTS_GALLERY, store_dossier_face_vector
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient
from tests.vectors import unit_vector

MODEL = "dlib_resnet_v1"  # the installation's embedder (runtime setting default)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def db_url_of(api: ApiClient) -> str:
    return api.client.app.state.config.database_url


def media_of(api: ApiClient) -> LocalMediaStore:
    return api.client.app.state.media


def add_event(uow: UnitOfWork, media: LocalMediaStore, event_id: str, group: orm.CameraGroup,
              dossier: orm.Dossier | None, watch_list: orm.WatchList | None, episode: orm.Episode,
              video: orm.Video | None = None, seconds: int = 0) -> orm.Event:
    thumb = media.put(f"thumb {event_id}".encode(), "jpg")
    crop = media.put(f"crop {event_id}".encode(), "jpg")
    event = orm.Event(id=event_id, job_id=1, track_id=1, camera_group_id=group.id, timestamp=T0.replace(second=seconds),
                      bbox=[0, 0, 10, 10], quality=0.6, matched=dossier is not None,
                      dossier_id=dossier.id if dossier else None,
                      watch_list_id=watch_list.id if watch_list else orm.UNMATCHED_WATCH_LIST_ID,
                      matched_face_id=dossier.faces[0].id if dossier else None, confidence=0.8 if dossier else None,
                      episode_id=episode.id, thumbnail_key=thumb, crop_key=crop, video_id=video.id if video else None)
    uow.session.add(event)
    vector = unit_vector(len(event_id), 16)
    uow.vectors.upsert(EVENTS_GALLERY, event_id, MODEL, vector.tobytes(), 16, {})
    return event


@pytest.fixture
def world(api_any_db: ApiClient) -> dict[str, Any]:
    api = api_any_db
    media = media_of(api)
    with UnitOfWork(db_url_of(api)) as uow:
        lobby = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        vault = uow.camera_groups.add(orm.CameraGroup(name="vault", hidden_from_roles=["viewer"]))
        vip = uow.watch_lists.add(orm.WatchList(name="vip"))
        dossier = uow.dossiers.add(orm.Dossier(name="Alex", watch_lists=[vip]))
        uow.flush()
        face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id))
        store_dossier_face_vector(uow, face, dossier, MODEL, unit_vector(1, 16))
        video = uow.videos.add(orm.Video(name="clip.mp4", camera_group_id=lobby.id, events_count=2, matched_count=2))
        episode = uow.episodes.add(orm.Episode(camera_group_id=lobby.id, matched=True, dossier_id=dossier.id,
                                               watch_list_id=vip.id, event_count=2, started_at=T0, last_at=T0))
        hidden_episode = uow.episodes.add(orm.Episode(camera_group_id=vault.id, started_at=T0, last_at=T0))
        uow.flush()
        uow.session.refresh(dossier)
        add_event(uow, media, "j1-r0-t1-s0", lobby, dossier, vip, episode, video, seconds=1)
        add_event(uow, media, "j1-r0-t2-s0", lobby, dossier, vip, episode, video, seconds=2)
        add_event(uow, media, "j1-r0-t3-s0", vault, dossier, vip, hidden_episode, seconds=3)
        add_event(uow, media, "j1-r0-t4-s0", lobby, None, None, episode, seconds=4)
        uow.commit()
        return {"api": api, "dossier": dossier.id, "vip": vip.id, "episode": episode.id, "video": video.id}


def test_reject_match_stores_a_negative_and_unmatches_the_event(world: dict[str, Any]) -> None:
    api, dossier = world["api"], world["dossier"]
    assert api.post("/v1/events/j1-r0-t1-s0/reject-match", role="viewer").status_code == 403
    r = api.post("/v1/events/j1-r0-t1-s0/reject-match", role="operator")
    assert r.status_code == 200, r.text
    body = r.json()
    event, negative = body["event"], body["negative"]
    assert (event["matched"], event["dossier_id"], event["watch_list_id"], event["confidence"]) == (
        False, None, orm.UNMATCHED_WATCH_LIST_ID, None)
    assert negative["dossier_id"] == dossier and negative["event_id"] == "j1-r0-t1-s0"
    assert negative["created_by"] == "operator1" and negative["model"] == MODEL
    assert negative["media"]["thumbnail"] == event["media"]["thumbnail"]
    assert api.get(negative["media"]["crop"].split("testserver")[-1], role="viewer").status_code == 200
    # The vector is the event's own, kept in the negative's row.
    with UnitOfWork(db_url_of(api)) as uow:
        row = uow.session.get(orm.DossierNegative, negative["id"])
        assert np.array_equal(np.frombuffer(row.vector, np.float32), unit_vector(len("j1-r0-t1-s0"), 16))
        # The episode keeps its match through the other event; the video's counters follow.
        episode = uow.episodes.find(world["episode"])
        assert episode.matched and episode.dossier_id == dossier
        video = uow.videos.find(world["video"])
        assert (video.matched_count, video.unmatched_count) == (1, 1)
    listed = api.get(f"/v1/dossiers/{dossier}/negatives", role="viewer")
    assert listed.status_code == 200 and [n["id"] for n in listed.json()] == [negative["id"]]
    # Rejecting the second event too: the episode has no matched event left.
    assert api.post("/v1/events/j1-r0-t2-s0/reject-match").status_code == 200
    with UnitOfWork(db_url_of(api)) as uow:
        episode = uow.episodes.find(world["episode"])
        assert (episode.matched, episode.dossier_id, episode.watch_list_id) == (False, None, None)
    # Audited like every change.
    paths = [a["path"] for a in api.get("/v1/audit", params={"limit": 100}).json()["results"]]
    assert "/v1/events/j1-r0-t1-s0/reject-match" in paths


def test_reject_match_errors(world: dict[str, Any]) -> None:
    api = world["api"]
    r = api.post("/v1/events/j1-r0-t4-s0/reject-match")  # unmatched
    assert r.status_code == 409 and r.json()["code"] == "CONFLICT"
    assert api.post("/v1/events/nope/reject-match").status_code == 404
    assert api.post("/v1/events/j1-r0-t3-s0/reject-match", role="operator").status_code == 200
    assert api.post("/v1/events/j1-r0-t3-s0/reject-match").status_code == 409  # already unmatched
    assert api.get("/v1/dossiers/999999/negatives").status_code == 404
    assert api.delete(f"/v1/dossiers/{world['dossier']}/negatives/999999").status_code == 404
    with UnitOfWork(db_url_of(api)) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.DossierNegative)) == 1


def test_negatives_respect_visibility(world: dict[str, Any]) -> None:
    api, dossier = world["api"], world["dossier"]
    assert api.post("/v1/events/j1-r0-t3-s0/reject-match", role="viewer").status_code in (403, 404)
    hidden = api.post("/v1/events/j1-r0-t3-s0/reject-match").json()["negative"]  # an event of the hidden group
    seen = api.post("/v1/events/j1-r0-t1-s0/reject-match").json()["negative"]
    assert [n["id"] for n in api.get(f"/v1/dossiers/{dossier}/negatives").json()] == [hidden["id"], seen["id"]]
    assert [n["id"] for n in api.get(f"/v1/dossiers/{dossier}/negatives", role="viewer").json()] == [seen["id"]]
    assert api.get(hidden["media"]["thumbnail"].split("testserver")[-1], role="viewer").status_code == 404
    assert api.delete(f"/v1/dossiers/{dossier}/negatives/{hidden['id']}", role="viewer").status_code == 403
    assert api.delete(f"/v1/dossiers/{dossier}/negatives/{seen['id']}", role="viewer").status_code == 403


def test_deleting_a_negative_and_the_dossier_remove_rows_and_files(world: dict[str, Any]) -> None:
    api, dossier = world["api"], world["dossier"]
    media = media_of(api)
    first = api.post("/v1/events/j1-r0-t1-s0/reject-match").json()["negative"]
    second = api.post("/v1/events/j1-r0-t2-s0/reject-match").json()["negative"]
    assert api.delete(f"/v1/dossiers/{dossier}/negatives/{first['id']}", role="operator").status_code == 204
    assert [n["id"] for n in api.get(f"/v1/dossiers/{dossier}/negatives").json()] == [second["id"]]
    with UnitOfWork(db_url_of(api)) as uow:
        keys = [uow.events.get("j1-r0-t1-s0").thumbnail_key, uow.events.get("j1-r0-t2-s0").crop_key]
    assert all(media.exists(k) for k in keys)  # the events still use their files
    # The event expires (retention deletes it); the negative alone keeps its files alive.
    with UnitOfWork(db_url_of(api)) as uow:
        uow.session.delete(uow.events.get("j1-r0-t2-s0"))
        uow.commit()
    assert api.delete(f"/v1/dossiers/{dossier}").status_code == 204
    with UnitOfWork(db_url_of(api)) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.DossierNegative)) == 0
    assert media.exists(keys[0]) and not media.exists(keys[1])  # the first is still an event's


def test_erasing_a_dossier_removes_its_negatives(world: dict[str, Any]) -> None:
    api, dossier = world["api"], world["dossier"]
    negative = api.post("/v1/events/j1-r0-t1-s0/reject-match").json()["negative"]
    assert api.post(f"/v1/dossiers/{dossier}/erase").status_code == 200
    with UnitOfWork(db_url_of(api)) as uow:
        assert uow.session.get(orm.DossierNegative, negative["id"]) is None
    key = negative["media"]["crop"].rsplit("/", 1)[-1]
    assert not media_of(api).exists(key)
