"""The visibility matrix (SPEC §5.2, storage/visibility.py): an operator and a viewer whose roles hide
one camera group ("vault") and one watch list ("covert"), against every read path: lists, gets,
media, search, the low-level galleries, episodes, acknowledgement and the live feed. The admin sees
everything. Events and dossier faces are written straight into the DB with synthetic vectors, and
the real gallery actors search them (no extractor is needed: queries go by stored vector or id).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from actors.galleries import Galleries
from models.embedders import embedder_spec
from serve_apps.api.app import create_app
from serve_apps.api.services import Services
from storage import orm
from storage.db import migrate
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, store_dossier_face_vector
from storage.media import LocalMediaStore
from storage.tokens import ensure_admin, issue_token
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient, make_config
from tests.helpers import local_ray
from tests.vectors import unit_vector
from tests.vectors import vector_near as near

EMBEDDER = "dlib_resnet_v1"
DIM = embedder_spec(EMBEDDER).dim
HIDING = ["operator", "viewer"]
ROLES = ("operator", "viewer")
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


Q = unit_vector(0, DIM)  # every face below is placed relative to this query


class World:
    """One installation: what each role must and must not see is named in `visible` / `hidden`."""

    def __init__(self, tmp: Path) -> None:
        self.url = f"sqlite:///{tmp / 'fw.db'}"
        migrate(self.url)
        config = make_config(tmp, self.url)
        self.galleries = Galleries(db_url=self.url, snapshot_dir=str(tmp / "snap"), model=EMBEDDER, dim=DIM,
                                   shards=2, replicas=1)
        self.galleries.open_all()
        media = LocalMediaStore(config.media_root)
        self.before = datetime.now(UTC) - timedelta(seconds=1)
        with UnitOfWork(self.url) as uow:
            tokens = {"admin": ensure_admin(uow)}
            for role in ROLES:
                tokens[role] = issue_token(uow, uow.users.add(orm.User(username=f"{role}1", role=role)))[1]
            lobby = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
            vault = uow.camera_groups.add(orm.CameraGroup(name="vault", hidden_from_roles=HIDING))
            self.lobby_cam = uow.cameras.add(orm.Camera(name="door", camera_group_id=lobby.id)).id
            self.vault_cam = uow.cameras.add(orm.Camera(name="safe", camera_group_id=vault.id)).id
            vip = uow.watch_lists.add(orm.WatchList(name="vip", require_ack=True))
            covert = uow.watch_lists.add(orm.WatchList(name="covert", hidden_from_roles=HIDING, require_ack=True))
            self.lobby, self.vault, self.vip, self.covert = lobby.id, vault.id, vip.id, covert.id
            bob = uow.dossiers.add(orm.Dossier(name="bob", watch_lists=[vip]))
            spy = uow.dossiers.add(orm.Dossier(name="spy", watch_lists=[covert]))
            dual = uow.dossiers.add(orm.Dossier(name="dual", watch_lists=[vip, covert]))
            self.bob, self.spy, self.dual = bob.id, spy.id, dual.id
            self.faces: dict[str, int] = {}
            self.face_media: dict[str, str] = {}
            for name, dossier, vector in (("bob", bob, Q), ("spy", spy, near(Q, 0.99, 1)),
                                          ("dual", dual, near(Q, 0.95, 2))):
                key = media.put(f"photo of {name}".encode(), "jpg")
                face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id, source_key=key, crop_key=key))
                store_dossier_face_vector(uow, face, dossier, EMBEDDER, vector)
                self.faces[name], self.face_media[name] = face.id, key
            shared_frame = media.put(b"one frame, two faces", "jpg")
            episodes = {name: uow.episodes.add(orm.Episode(camera_group_id=group, watch_list_id=wl,
                                                            matched=True, started_at=T0, last_at=T0)).id
                        for name, group, wl in (("visible", lobby.id, vip.id), ("vault", vault.id, vip.id),
                                                ("covert", lobby.id, covert.id))}
            self.episodes = episodes
            self.visible_events: list[str] = []
            self.hidden_events: list[str] = []
            self.event_media: dict[str, str] = {}
            specs = []
            # the hidden events are the closest to the query: a search that filters after its top-k comes back empty
            for i in range(20):
                specs.append((f"h-vault-{i:02d}", vault.id, vip.id, bob.id, "vault", near(Q, 0.99, 100 + i)))
                specs.append((f"h-covert-{i:02d}", lobby.id, covert.id, spy.id, "covert", near(Q, 0.985, 200 + i)))
            for i in range(6):
                matched = i % 2 == 0
                specs.append((f"v-{i}", lobby.id, vip.id if matched else orm.UNMATCHED_WATCH_LIST_ID,
                              bob.id if matched else None, "visible", near(Q, 0.90 - i * 0.01, 300 + i)))
            for n, (event_id, group, wl, dossier, episode, vector) in enumerate(specs):
                thumb = media.put(f"thumb {event_id}".encode(), "jpg")
                camera = self.vault_cam if group == vault.id else self.lobby_cam
                uow.session.add(orm.Event(
                    id=event_id, camera_group_id=group, camera_id=camera,
                    timestamp=T0 + timedelta(seconds=n), matched=dossier is not None, dossier_id=dossier,
                    watch_list_id=wl, confidence=0.9 if dossier else None, episode_id=episodes[episode],
                    thumbnail_key=thumb, crop_key=thumb, frame_key=shared_frame))
                uow.vectors.upsert(EVENTS_GALLERY, event_id, EMBEDDER, vector.tobytes(), DIM, {
                    "camera_id": camera, "camera_group_id": group,
                    "timestamp": (T0 + timedelta(seconds=n)).timestamp()})
                (self.hidden_events if event_id.startswith("h-") else self.visible_events).append(event_id)
                self.event_media[event_id] = thumb
            self.shared_frame = shared_frame
            uow.commit()
        asyncio.run(self.galleries.sync_async(EVENTS_GALLERY))
        asyncio.run(self.galleries.sync_async(DOSSIERS_GALLERY))
        app = create_app(config, Services(EMBEDDER, self.galleries))
        self.api = ApiClient(TestClient(app, raise_server_exceptions=False), tokens)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory):
    with local_ray(2, "test-visibility"):
        yield World(tmp_path_factory.mktemp("visibility"))


def ids(response) -> list:
    assert response.status_code == 200, response.text
    return [r["id"] for r in response.json()["results"]]


def all_ids(api: ApiClient, path: str, role: str, **params) -> list:
    return ids(api.get(path, role=role, params={"limit": 1000, **params}))


def not_found(response) -> None:
    assert response.status_code == 404 and response.json()["code"] == "NOT_FOUND", response.text


@pytest.mark.parametrize("role", ROLES)
def test_camera_groups_cameras_and_watch_lists(world: World, role: str) -> None:
    api = world.api
    if role == "operator":  # viewers may not read cameras at all
        assert world.vault not in all_ids(api, "/v1/camera-groups", role)
        assert world.lobby in all_ids(api, "/v1/camera-groups", role)
        not_found(api.get(f"/v1/camera-groups/{world.vault}", role=role))
        assert all_ids(api, "/v1/cameras", role) == [world.lobby_cam]
        not_found(api.get(f"/v1/cameras/{world.vault_cam}", role=role))
        not_found(api.get(f"/v1/cameras/{world.vault_cam}/status", role=role))
    lists = all_ids(api, "/v1/watch-lists", role)
    assert world.covert not in lists and world.vip in lists
    not_found(api.get(f"/v1/watch-lists/{world.covert}", role=role))
    assert {world.vault, world.lobby} <= set(all_ids(api, "/v1/camera-groups", "admin"))
    assert world.covert in all_ids(api, "/v1/watch-lists", "admin")


@pytest.mark.parametrize("role", ROLES)
def test_dossiers_and_their_photos(world: World, role: str) -> None:
    api = world.api
    listed = {d["id"]: d for d in api.get("/v1/dossiers", role=role, params={"limit": 1000}).json()["results"]}
    assert set(listed) == {world.bob, world.dual}
    assert listed[world.dual]["watch_list_ids"] == [world.vip]  # the covert membership is not shown
    assert all_ids(api, "/v1/dossiers", role, watch_list_id=world.covert) == []
    assert set(all_ids(api, "/v1/dossiers", "admin", watch_list_id=world.covert)) == {world.spy, world.dual}
    not_found(api.get(f"/v1/dossiers/{world.spy}", role=role))
    not_found(api.get(f"/v1/dossiers/{world.spy}/faces", role=role))
    not_found(api.get(f"/v1/dossiers/{world.spy}/faces/{world.faces['spy']}", role=role))
    assert api.get(f"/v1/dossiers/{world.dual}", role=role).json()["watch_list_ids"] == [world.vip]
    admin = api.get(f"/v1/dossiers/{world.dual}").json()
    assert admin["watch_list_ids"] == sorted([world.vip, world.covert])
    assert world.spy in all_ids(api, "/v1/dossiers", "admin")


@pytest.mark.parametrize("role", ROLES)
def test_events_lists_gets_and_filters(world: World, role: str) -> None:
    api = world.api
    assert set(all_ids(api, "/v1/events", role)) == set(world.visible_events)
    assert all_ids(api, "/v1/events", role, camera_group_id=world.vault) == []
    assert all_ids(api, "/v1/events", role, watch_list_id=world.covert) == []
    for event_id in ("h-vault-00", "h-covert-00"):
        not_found(api.get(f"/v1/events/{event_id}", role=role))
    assert api.get("/v1/events/v-0", role=role).status_code == 200
    assert set(all_ids(api, "/v1/events", "admin")) == set(world.visible_events + world.hidden_events)


@pytest.mark.parametrize("role", ROLES)
def test_episodes(world: World, role: str) -> None:
    api = world.api
    assert all_ids(api, "/v1/episodes", role) == [world.episodes["visible"]]
    for name in ("vault", "covert"):
        not_found(api.get(f"/v1/episodes/{world.episodes[name]}", role=role))
    assert set(all_ids(api, "/v1/episodes", "admin")) == set(world.episodes.values())


@pytest.mark.parametrize("role", ROLES)
def test_media(world: World, role: str) -> None:
    api = world.api
    for event_id in ("h-vault-00", "h-covert-00"):
        not_found(api.get(f"/v1/media/{world.event_media[event_id]}", role=role))
        assert api.get(f"/v1/media/{world.event_media[event_id]}").status_code == 200
    not_found(api.get(f"/v1/media/{world.face_media['spy']}", role=role))
    assert api.get(f"/v1/media/{world.face_media['bob']}", role=role).status_code == 200
    assert api.get(f"/v1/media/{world.event_media['v-0']}", role=role).status_code == 200
    # a frame shared by a visible and a hidden event is visible through the visible one
    assert api.get(f"/v1/media/{world.shared_frame}", role=role).status_code == 200


@pytest.mark.parametrize("role", ROLES)
def test_search_pages_are_full_of_visible_hits_only(world: World, role: str) -> None:
    api = world.api
    query = {"dossier_face_id": world.faces["bob"], "target": "events", "threshold": "none", "limit": 5}
    body = api.post("/v1/search", role=role, json=query).json()
    found = [r["event"]["id"] for r in body["results"]]
    assert found == ["v-0", "v-1", "v-2", "v-3", "v-4"], body  # 40 closer hidden events took no place
    admin = [r["event"]["id"] for r in api.post("/v1/search", json=query).json()["results"]]
    assert all(i.startswith("h-vault") for i in admin)
    vault_only = api.post("/v1/search", role=role, json={**query, "camera_group_id": world.vault}).json()
    assert vault_only["results"] == []
    by_hidden = api.post("/v1/search", role=role, json={**query, "dossier_face_id": None, "event_id": "h-vault-00"})
    assert by_hidden.status_code == 400 and by_hidden.json()["param"] == "event_id"
    by_spy = api.post("/v1/search", role=role, json={**query, "dossier_face_id": world.faces["spy"]})
    assert by_spy.status_code == 400 and by_spy.json()["param"] == "dossier_face_id"
    # from v-0 the dossiers rank bob (0.90), spy (~0.89), dual (~0.86): spy is hidden, the page still has 2
    by_event = {"event_id": "v-0", "threshold": "none", "limit": 2}
    dossiers = api.post("/v1/search", role=role, json=by_event).json()["results"]
    assert [r["dossier"]["id"] for r in dossiers] == [world.bob, world.dual]
    admin_dossiers = api.post("/v1/search", json=by_event).json()["results"]
    assert [r["dossier"]["id"] for r in admin_dossiers] == [world.bob, world.spy]


@pytest.mark.parametrize("role", ROLES)
def test_low_level_gallery_search_and_its_filters(world: World, role: str) -> None:
    api = world.api
    body = {"vector": Q.tolist(), "limit": 5, "threshold": "none"}
    found = ids(api.post("/v1/galleries/events/search", role=role, json=body))
    assert found == ["v-0", "v-1", "v-2", "v-3", "v-4"]
    for filters in ({"camera_group_id": world.vault}, {"camera_group_id": [world.vault]},
                    {"camera_group_id": {"gte": world.vault, "lte": world.vault}}):
        assert ids(api.post("/v1/galleries/events/search", role=role, json={**body, "filters": filters})) == []
        assert len(ids(api.post("/v1/galleries/events/search", json={**body, "filters": filters}))) == 5
    spy_list = {**body, "filters": {"watch_list_ids": [world.covert]}}
    assert ids(api.post("/v1/galleries/dossiers/search", role=role, json=spy_list)) == [str(world.faces["dual"])]
    everyone = ids(api.post("/v1/galleries/dossiers/search", role=role, json=body))
    assert str(world.faces["spy"]) not in everyone and len(everyone) == 2
    assert str(world.faces["spy"]) in ids(api.post("/v1/galleries/dossiers/search", json=body))


@pytest.mark.parametrize("role", ROLES)
def test_verify_by_hidden_face_id_is_refused(world: World, role: str) -> None:
    response = world.api.post("/v1/verify", role=role, data={"face1": str(world.faces["spy"]),
                                                              "face2": str(world.faces["bob"])})
    assert response.status_code == 400 and response.json()["param"] == "face1"


@pytest.mark.parametrize("role", ROLES)
def test_live_feed(world: World, role: str) -> None:
    params = {"since": world.before.isoformat(), "timeout_s": 1.0, "max_events": 1000}
    response = world.api.get("/v1/events/stream", role=role, params=params)
    # An SSE id is "<feed position>~<event id>" (routes/event_stream.sse_id).
    sent = [line[4:].split("~", 1)[-1] for line in response.text.splitlines() if line.startswith("id: ")]
    assert sorted(sent) == sorted(world.visible_events)
    admin = world.api.get("/v1/events/stream", params=params).text
    assert "~h-vault-00\n" in admin and "~h-covert-00\n" in admin


def test_unacknowledged_counts_and_acknowledging_touch_only_visible_events(world: World) -> None:
    api = world.api
    counts = {w["id"]: w["unacknowledged_events"] for w in api.get("/v1/watch-lists", role="viewer").json()["results"]}
    assert counts[world.vip] == 3  # v-0, v-2, v-4; the 20 vault events are not the viewer's to count
    admin = {w["id"]: w["unacknowledged_events"] for w in api.get("/v1/watch-lists").json()["results"]}
    assert admin[world.vip] == 23 and admin[world.covert] == 20
    # bulk acknowledgement by filter skips hidden events
    done = api.post("/v1/events/ack", role="operator", json={"camera_id": world.vault_cam}).json()
    assert done["acknowledged"] == 0
    not_found(api.post("/v1/events/h-vault-00/ack", role="operator"))
    not_found(api.post(f"/v1/episodes/{world.episodes['vault']}/ack", role="operator"))
    acked = api.post(f"/v1/episodes/{world.episodes['visible']}/ack", role="operator")
    assert acked.status_code == 200, acked.text
    events = api.get("/v1/events", params={"episode_id": world.episodes["visible"], "limit": 100}).json()["results"]
    assert events and all(e["acknowledged"] for e in events)
    assert acked.json()["acknowledged"] is True  # all its events are acknowledged now
    hidden = api.get("/v1/events", params={"episode_id": world.episodes["vault"], "limit": 100}).json()["results"]
    assert hidden and not any(e["acknowledged"] for e in hidden)
    assert {w["id"]: w["unacknowledged_events"] for w in api.get("/v1/watch-lists").json()["results"]}[
        world.vip] == 20


def test_writes_cannot_name_or_drop_what_the_role_cannot_see(world: World) -> None:
    api = world.api
    refused = api.post("/v1/dossiers", role="operator", json={"name": "x", "watch_list_ids": [world.covert]})
    assert refused.status_code == 400 and refused.json()["param"] == "watch_list_ids"
    bulk = api.post("/v1/dossiers/bulk", role="operator", data={"watch_list_ids": str(world.covert)},
                    files={"files": ("x.jpg", b"not read", "image/jpeg")})
    assert bulk.status_code == 400 and bulk.json()["param"] == "watch_list_ids"
    grouped = api.post("/v1/watch-lists", role="operator", json={"name": "g", "camera_group_ids": [world.vault]})
    assert grouped.status_code == 400 and grouped.json()["param"] == "camera_group_ids"
    # the operator rewrites dual's lists: the covert membership they cannot see stays
    patched = api.patch(f"/v1/dossiers/{world.dual}", role="operator", json={"watch_list_ids": [world.vip]})
    assert patched.status_code == 200 and patched.json()["watch_list_ids"] == [world.vip]
    assert api.get(f"/v1/dossiers/{world.dual}").json()["watch_list_ids"] == sorted([world.vip, world.covert])
    not_found(api.patch(f"/v1/dossiers/{world.spy}", role="operator", json={"comment": "x"}))
    not_found(api.delete(f"/v1/dossiers/{world.spy}", role="operator"))
