"""Events, episodes and media through the API (events written straight into the DB here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storage import orm
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def seeded(api, tmp_path):
    url = str(api.client.app.state.config.database_url)
    media = LocalMediaStore(api.client.app.state.config.media_root)
    thumb = media.put(b"\xff\xd8fake-jpeg", "jpg")
    with UnitOfWork(url) as uow:
        lobby = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
        secret = uow.camera_groups.add(orm.CameraGroup(name="vault", hidden_from_roles=["viewer"]))
        vip = uow.watch_lists.add(orm.WatchList(name="vip"))
        bob = uow.dossiers.add(orm.Dossier(name="bob", watch_lists=[vip]))
        episode = uow.episodes.add(orm.Episode(camera_group_id=lobby.id, dossier_id=bob.id, matched=True,
                                               started_at=T0, last_at=T0))
        for i in range(30):
            matched = i % 3 == 0
            uow.session.add(orm.Event(
                id=f"ev{i:02d}", camera_group_id=secret.id if i == 29 else lobby.id,
                timestamp=T0 + timedelta(seconds=i), matched=matched,
                dossier_id=bob.id if matched else None,
                watch_list_id=vip.id if matched else orm.UNMATCHED_WATCH_LIST_ID,
                confidence=0.8 if matched else None, age=20 + i, gender="male" if i % 2 else "female",
                attributes={"gender": {"value": "male" if i % 2 else "female", "confidence": 0.9}},
                episode_id=episode.id if matched else None, thumbnail_key=thumb,
            ))
        uow.commit()
        return {"lobby": lobby.id, "vault": secret.id, "vip": vip.id, "bob": bob.id, "episode": episode.id,
                "thumb": thumb}


def _ids(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["results"]]


def test_events_newest_first_with_paging(api, seeded) -> None:
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        body = api.get("/v1/events", params=params).json()
        seen += [e["id"] for e in body["results"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"ev{i:02d}" for i in range(29, -1, -1)]


def test_event_filters(api, seeded) -> None:
    assert _ids(api.get("/v1/events", params={"matched": True, "limit": 100})) == [
        f"ev{i:02d}" for i in range(27, -1, -3)]
    assert len(_ids(api.get("/v1/events", params={"dossier_id": seeded["bob"], "limit": 100}))) == 10
    window = {"timestamp_gte": (T0 + timedelta(seconds=5)).isoformat(),
              "timestamp_lte": (T0 + timedelta(seconds=7)).isoformat()}
    assert _ids(api.get("/v1/events", params=window)) == ["ev07", "ev06", "ev05"]
    assert _ids(api.get("/v1/events", params={"age_gte": 45, "age_lte": 47})) == ["ev27", "ev26", "ev25"]
    assert all(int(i[2:]) % 2 for i in _ids(api.get("/v1/events", params={"gender": "male", "limit": 100})))
    assert len(_ids(api.get("/v1/events", params={"confidence_gte": 0.9}))) == 0
    assert _ids(api.get("/v1/events", params={"camera_group_id": seeded["vault"]})) == ["ev29"]
    bad = api.get("/v1/events", params={"confidence_gte": 2})
    assert bad.status_code == 422 and bad.json()["code"] == "BAD_PARAM"


def test_hidden_camera_group_hides_its_events_from_viewer(api, seeded) -> None:
    assert "ev29" not in _ids(api.get("/v1/events", role="viewer", params={"limit": 100}))
    assert api.get("/v1/events/ev29", role="viewer").status_code == 404
    assert api.get("/v1/events/ev29", role="admin").status_code == 200


def test_get_event_and_media(api, seeded) -> None:
    event = api.get("/v1/events/ev03").json()
    assert event["matched"] and event["dossier_id"] == seeded["bob"] and event["gender"]["value"] == "male"
    thumbnail_url = event["media"]["thumbnail"]
    assert thumbnail_url.endswith(f"/v1/media/{seeded['thumb']}")
    media = api.get(f"/v1/media/{seeded['thumb']}", role="viewer")
    assert media.status_code == 200 and media.content == b"\xff\xd8fake-jpeg"
    assert media.headers["content-type"] == "image/jpeg"
    assert api.client.get(f"/v1/media/{seeded['thumb']}").status_code == 401
    assert api.get("/v1/media/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert api.get("/v1/media/" + "0" * 64 + ".jpg").status_code == 404
    assert api.get("/v1/events/nope").json()["code"] == "NOT_FOUND"


def test_acknowledge_by_id_and_by_filter(api, seeded) -> None:
    assert api.post("/v1/events/ev01/ack", role="viewer").status_code == 403
    acked = api.post("/v1/events/ev01/ack", role="operator").json()
    assert acked["acknowledged"] and acked["acknowledged_by"] == "operator1"
    count = api.post("/v1/events/ack", role="operator", json={"matched": False}).json()["acknowledged"]
    assert count == 19  # 20 unmatched, one already acknowledged
    assert api.post("/v1/events/ack", json={}).status_code == 422
    remaining = _ids(api.get("/v1/events", params={"acknowledged": False, "limit": 100}))
    assert len(remaining) == 10 and all(int(i[2:]) % 3 == 0 for i in remaining)


def test_episode_ack_cascades_to_its_events(api, seeded) -> None:
    episodes = api.get("/v1/episodes", role="viewer").json()["results"]
    assert [e["id"] for e in episodes] == [seeded["episode"]]
    body = api.post(f"/v1/episodes/{seeded['episode']}/ack", role="operator").json()
    assert body["acknowledged"] is True
    events = api.get("/v1/events", params={"episode_id": seeded["episode"], "limit": 100}).json()["results"]
    assert len(events) == 10 and all(e["acknowledged"] for e in events)
    assert api.get("/v1/episodes/999").status_code == 404


def test_acknowledging_all_events_of_an_episode_acknowledges_it(api, seeded) -> None:
    episode = seeded["episode"]
    events = [f"ev{i:02d}" for i in range(0, 30, 3)]  # the episode's ten events
    assert api.post("/v1/events/ack", role="operator", json={"episode_id": episode,
                                                              "timestamp_lte": "2026-01-01T12:00:20+00:00"}
                    ).json()["acknowledged"] == 7
    assert api.get(f"/v1/episodes/{episode}").json()["acknowledged"] is False  # ev21, ev24, ev27 are open
    api.post("/v1/events/ack", role="operator", json={"episode_id": episode, "camera_group_id": seeded["lobby"]})
    assert api.get(f"/v1/episodes/{episode}").json()["acknowledged"] is True
    assert all(api.get(f"/v1/events/{e}").json()["acknowledged"] for e in events)
    lists = {w["id"]: w["unacknowledged_events"] for w in api.get("/v1/watch-lists").json()["results"]}
    assert lists[seeded["vip"]] == 0 and lists[-1] == 20  # the unmatched events were never acknowledged


def test_acknowledging_the_last_open_event_by_id_acknowledges_its_episode(api, seeded) -> None:
    episode = seeded["episode"]
    api.post("/v1/events/ack", role="operator", json={"episode_id": episode,
                                                      "timestamp_lte": "2026-01-01T12:00:26+00:00"})
    assert api.get(f"/v1/episodes/{episode}").json()["acknowledged"] is False
    assert api.post("/v1/events/ev27/ack", role="operator").json()["acknowledged"] is True
    body = api.get(f"/v1/episodes/{episode}").json()
    assert body["acknowledged"] is True and body["acknowledged_by"] == "operator1"
