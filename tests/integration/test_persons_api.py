"""`/v1/persons` on a real DB without Ray: filters, history, corrections, promotion, visibility, roles.

Rows are written directly (the pipeline that makes them is tested in tests/integration/test_persons.py); the
corrections run their real SQL, and the gallery sync they would do is skipped (no galleries here).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select

from storage import orm
from storage import persons as p
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient

MODEL = "dlib_resnet_v1"
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def _vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(128).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def rows(api: ApiClient, sqlite_url: str) -> dict[str, Any]:
    return make_rows(sqlite_url)


@pytest.fixture
def rows_any(api_any_db: ApiClient, db_url: str) -> dict[str, Any]:
    return make_rows(db_url)


def make_rows(url: str) -> dict[str, Any]:
    """Stranger A (4 events, 2 cameras, 3 days), stranger B (1 event), a hidden group's stranger C."""
    with UnitOfWork(url) as uow:
        lobby = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        vault = uow.camera_groups.add(orm.CameraGroup(name="vault", hidden_from_roles=["viewer"]))
        door = uow.cameras.add(orm.Camera(name="door", camera_group_id=lobby.id))
        hall = uow.cameras.add(orm.Camera(name="hall", camera_group_id=lobby.id))
        safe = uow.cameras.add(orm.Camera(name="safe", camera_group_id=vault.id))
        vip = uow.watch_lists.add(orm.WatchList(name="vip"))
        uow.flush()
        made: dict[str, list[str]] = {"a": [], "b": [], "c": []}
        plan = [("a", door, 0), ("a", door, 1), ("a", hall, 26), ("a", hall, 50), ("b", hall, 2), ("c", safe, 3)]
        ids = {}
        for who, camera, hours in plan:
            if who not in ids:
                ids[who] = p.new_person(uow, 0)
            person = ids[who]
            event = orm.Event(id=f"e-{who}{len(made[who])}", camera_id=camera.id,
                              camera_group_id=camera.camera_group_id,
                              timestamp=T0 + timedelta(hours=hours), bbox=[0, 0, 10, 10], quality=0.5 + hours / 100,
                              watch_list_id=orm.UNMATCHED_WATCH_LIST_ID, person_id=person.id, crop_key=f"c/{who}.jpg")
            uow.session.add(event)
            uow.flush()
            vector = _vector(len(ids) * 100 + len(made[who]))
            uow.vectors.upsert(EVENTS_GALLERY, event.id, MODEL, vector.tobytes(), 128, {})
            p.add_face(uow, person, event.id, event.quality, MODEL, vector)
            p.note_event(person, event)
            made[who].append(event.id)
        uow.commit()
        return {"a": ids["a"].id, "b": ids["b"].id, "c": ids["c"].id, "events": made, "door": door.id,
                "hall": hall.id, "lobby": lobby.id, "vault": vault.id, "vip": vip.id}


@pytest.mark.pg_capable
def test_list_filters_and_details(api_any_db: ApiClient, rows_any: dict[str, Any]) -> None:
    api, rows = api_any_db, rows_any

    def ids(role: str = "admin", **params: Any) -> list[int]:
        response = api.get("/v1/persons", role=role, params=params)
        assert response.status_code == 200, response.text
        return [x["id"] for x in response.json()["results"]]

    a, b, c = rows["a"], rows["b"], rows["c"]
    assert ids() == [a, c, b]  # most recently seen first
    assert ids(role="viewer") == [a, b]  # C's only event is in a group hidden from viewers
    assert ids(camera_id=rows["door"]) == [a] and ids(camera_group_id=rows["vault"]) == [c]
    assert ids(min_events=2) == [a] and ids(min_days=3) == [a] and ids(min_days=4) == []
    assert ids(first_seen_gte=(T0 + timedelta(hours=1, minutes=30)).isoformat()) == [c, b]
    assert ids(last_seen_lte=(T0 + timedelta(hours=2)).isoformat()) == [b]
    assert ids(anonymous="false") == [] and ids(anonymous="true") == [a, c, b]
    first = api.get("/v1/persons", params={"limit": 1}).json()
    assert ids(limit=2, cursor=first["next_cursor"]) == [c, b]

    detail = api.get(f"/v1/persons/{a}", role="viewer").json()
    assert (detail["event_count"], detail["camera_ids"], detail["days_seen"], detail["anonymous"]) == (
        4, sorted([rows["door"], rows["hall"]]), 3, True)
    assert detail["best_event"]["id"] == rows["events"]["a"][3]  # the best quality one
    assert detail["first_seen_at"].startswith("2026-03-01T09:00") and detail["face_count"] == 4
    assert api.get(f"/v1/persons/{c}", role="viewer").status_code == 404
    assert api.get("/v1/persons/999").json()["code"] == "NOT_FOUND"
    assert api.get("/v1/persons", params={"min_events": -1}).status_code == 422
    assert api.get("/v1/persons/x").status_code == 422


@pytest.mark.pg_capable
def test_history_across_cameras_and_events_filter(api_any_db: ApiClient, rows_any: dict[str, Any]) -> None:
    api, rows = api_any_db, rows_any
    a = rows["a"]
    history = api.get(f"/v1/persons/{a}/events", role="viewer").json()["results"]
    assert [e["id"] for e in history] == rows["events"]["a"][::-1]
    assert {e["camera_id"] for e in history} == {rows["door"], rows["hall"]}
    assert all(e["person_id"] == a for e in history)
    window = api.get(f"/v1/persons/{a}/events", params={
        "timestamp_gte": (T0 + timedelta(hours=1)).isoformat(), "timestamp_lte": (T0 + timedelta(hours=30)).isoformat(),
        "limit": 1}).json()
    assert [e["id"] for e in window["results"]] == [rows["events"]["a"][2]] and window["next_cursor"]
    listed = api.get("/v1/events", params={"person_id": a}).json()["results"]
    assert sorted(e["id"] for e in listed) == sorted(rows["events"]["a"])
    assert api.get(f"/v1/persons/{rows['c']}/events", role="viewer").status_code == 404


def test_merge_remove_and_never_join_again(api: ApiClient, rows: dict[str, Any], sqlite_url: str) -> None:
    a, b = rows["a"], rows["b"]
    assert api.post(f"/v1/persons/{a}/merge", role="viewer", json={"other_id": b}).status_code == 403
    assert api.post(f"/v1/persons/{a}/merge", role="operator", json={"other_id": a}).json()["code"] == "BAD_PARAM"
    assert api.post(f"/v1/persons/{a}/merge", role="operator", json={"other_id": 999}).status_code == 404
    assert api.post(f"/v1/persons/{a}/merge", role="operator", json={"other_id": "x"}).status_code == 422
    merged = api.post(f"/v1/persons/{a}/merge", role="operator", json={"other_id": b})
    assert merged.status_code == 200, merged.text
    assert (merged.json()["id"], merged.json()["event_count"], merged.json()["face_count"]) == (a, 5, 5)
    assert api.get(f"/v1/persons/{b}").status_code == 404

    moved = rows["events"]["b"][0]
    assert api.delete(f"/v1/persons/{rows['c']}/events/{moved}", role="operator").status_code == 404
    split = api.delete(f"/v1/persons/{a}/events/{moved}", role="operator")
    assert split.status_code == 200, split.text
    new_id = split.json()["id"]
    assert new_id not in (a, b) and split.json()["event_count"] == 1
    assert api.get(f"/v1/events/{moved}").json()["person_id"] == new_id
    assert api.get(f"/v1/persons/{a}").json()["event_count"] == 4
    with UnitOfWork(sqlite_url) as uow:
        assert p.excluded_pairs(uow, [a]) == {(min(a, new_id), max(a, new_id))}
        with pytest.raises(Exception, match="not one"):  # re-clustering's merge is refused
            p.merge(uow, a, new_id, 8, by_operator=False)
    # the only event of a person cannot leave it
    assert api.delete(f"/v1/persons/{new_id}/events/{moved}", role="operator").json()["code"] == "CONFLICT"
    # an operator may still merge them on purpose (the exclusion goes)
    assert api.post(f"/v1/persons/{new_id}/merge", role="operator", json={"other_id": a}).status_code == 200


def test_promote_to_a_dossier_from_chosen_events(api: ApiClient, rows: dict[str, Any], sqlite_url: str) -> None:
    a, chosen = rows["a"], rows["events"]["a"][2:]
    body = {"name": "Stranger A", "watch_list_ids": [rows["vip"]], "event_ids": chosen}
    assert api.post(f"/v1/persons/{a}/promote", role="viewer", json=body).status_code == 403
    wrong = api.post(f"/v1/persons/{a}/promote", role="operator", json={**body, "event_ids": rows["events"]["b"]})
    assert (wrong.status_code, wrong.json()["param"]) == (400, "event_ids")
    assert api.post(f"/v1/persons/{a}/promote", json={**body, "watch_list_ids": [-1]}).status_code == 400
    assert api.post(f"/v1/persons/{a}/promote", json={**body, "event_ids": []}).status_code == 422
    promoted = api.post(f"/v1/persons/{a}/promote", role="operator", json=body)
    assert promoted.status_code == 201, promoted.text
    dossier_id = promoted.json()["dossier_id"]
    assert (promoted.json()["person"]["anonymous"], promoted.json()["person"]["dossier_name"]) == (False, "Stranger A")
    with UnitOfWork(sqlite_url) as uow:
        faces = uow.dossier_faces.for_dossier(dossier_id)
        assert sorted(f.crop_key for f in faces) == ["c/a.jpg", "c/a.jpg"]
        assert len(uow.vectors.by_items(DOSSIERS_GALLERY, MODEL, [str(f.id) for f in faces])) == 2
        assert p.faces_of(uow, [a]) == []  # the dossier's faces represent it now
    assert api.post(f"/v1/persons/{a}/promote", json=body).json()["code"] == "CONFLICT"
    assert [x["id"] for x in api.get("/v1/persons", params={"anonymous": "false"}).json()["results"]] == [a]
    # erasing the dossier erases its person; its events stay, person-less
    assert api.delete(f"/v1/dossiers/{dossier_id}").status_code == 204
    assert api.get(f"/v1/persons/{a}").status_code == 404
    assert api.get(f"/v1/events/{chosen[0]}").json()["person_id"] is None


def test_persons_without_events_disappear(api: ApiClient, rows: dict[str, Any], sqlite_url: str) -> None:
    with UnitOfWork(sqlite_url) as uow:
        for event in uow.session.scalars(select(orm.Event).where(orm.Event.person_id == rows["b"])):
            uow.session.delete(event)
        uow.commit()
    assert api.get(f"/v1/persons/{rows['b']}").status_code == 404  # invisible at once
    with UnitOfWork(sqlite_url) as uow:
        assert p.prune_empty(uow) == 1  # and gone, with its gallery vectors, on the next clean-up
        uow.commit()
        assert uow.session.get(orm.Person, rows["b"]) is None
        assert p.faces_of(uow, [rows["b"]]) == []


def test_search_and_clustering_need_the_services(api: ApiClient, rows: dict[str, Any]) -> None:
    assert api.post("/v1/persons/search", json={"event_id": rows["events"]["a"][0]}).json()["code"] == (
        "SERVICE_UNAVAILABLE")
    assert api.post("/v1/persons/clustering").status_code == 503
    assert api.post("/v1/persons/clustering", role="operator").status_code == 403
    assert api.get("/v1/persons/clustering", role="operator").json()["status"] == "none"


def test_settings_and_webhook_filters_validate(api: ApiClient) -> None:
    assert api.patch("/v1/settings", json={"person_scope": "camera_group", "friend_days": 2}).status_code == 200
    assert api.get("/v1/settings").json()["person_scope"] == "camera_group"
    assert api.patch("/v1/settings", json={"person_scope": "planet"}).status_code == 422
    hook = {"title": "strangers", "url": "http://127.0.0.1:9/x", "filters": {"person_status_in": ["new"]}}
    assert api.post("/v1/webhooks", json=hook).status_code == 201
    bad = {**hook, "filters": {"person_status_in": ["old"]}}
    assert api.post("/v1/webhooks", json=bad).status_code == 422


def test_retention_forgets_the_persons_of_deleted_events(rows: dict[str, Any], sqlite_url: str, tmp_path) -> None:
    from storage.media import LocalMediaStore
    from storage.retention import CleanupReport, delete_events

    report = CleanupReport()
    with UnitOfWork(sqlite_url) as uow:
        delete_events(uow, LocalMediaStore(tmp_path / "media"), rows["events"]["b"] + rows["events"]["a"][:1], report)
        uow.commit()
    with UnitOfWork(sqlite_url) as uow:
        assert report.persons_deleted == 1 and uow.session.get(orm.Person, rows["b"]) is None
        a = uow.session.get(orm.Person, rows["a"])
        assert a is not None and a.event_count == 3 and a.first_seen_at == T0 + timedelta(hours=1)
        # no representative face outlives its event
        assert sorted(f.event_id for f in p.faces_of(uow, [a.id])) == sorted(rows["events"]["a"][1:])
        assert uow.vectors.find(p.PERSONS_GALLERY, "1", MODEL) is None


@pytest.mark.pg_capable
def test_regular_filter_is_decided_in_the_database(api_any_db: ApiClient, db_url: str) -> None:
    """`regular=true|false` lists exactly the persons whose `regular` flag says so, at today's window."""
    now = datetime.now(UTC)
    plan = {"regular": [1, 5, 20], "lapsed": [1, 40, 50], "once": [0]}  # days ago of each person's events
    ids = {}
    with UnitOfWork(db_url) as uow:
        for who, days_ago in plan.items():
            person = p.new_person(uow, 0)
            ids[who] = person.id
            for n, days in enumerate(days_ago):
                event = orm.Event(id=f"r-{who}{n}", timestamp=now - timedelta(days=days), bbox=[0, 0, 10, 10],
                                  quality=0.6, watch_list_id=orm.UNMATCHED_WATCH_LIST_ID, person_id=person.id)
                uow.session.add(event)
                uow.flush()
                p.note_event(person, event)
        uow.commit()

    def listed(**params: Any) -> set[int]:
        response = api_any_db.get("/v1/persons", params=params)
        assert response.status_code == 200, response.text
        return {x["id"] for x in response.json()["results"]}

    flags = {x["id"]: x["regular"] for x in api_any_db.get("/v1/persons").json()["results"]}
    assert flags == {ids["regular"]: True, ids["lapsed"]: False, ids["once"]: False}
    assert listed(regular="true") == {ids["regular"]}
    assert listed(regular="false") == {ids["lapsed"], ids["once"]}
    assert listed(regular="true", min_events=3) == {ids["regular"]}
    # the window and the number of days are the runtime settings' (a wider window makes "lapsed" one too)
    assert api_any_db.patch("/v1/settings", json={"friend_window_days": 60}).status_code == 200
    assert listed(regular="true") == {ids["regular"], ids["lapsed"]}
    assert api_any_db.patch("/v1/settings", json={"friend_days": 1}).status_code == 200
    assert listed(regular="false") == set()
    assert api_any_db.get("/v1/persons", params={"regular": "maybe"}).status_code == 422
