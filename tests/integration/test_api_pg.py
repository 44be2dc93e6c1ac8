"""The API smoke test on both databases (`api_any_db`): CRUD, filters, visibility, pagination and the
bad values a database driver would choke on. The full matrix runs on SQLite in test_api.py; this
module makes sure the same contracts hold on PostgreSQL (`make test-pg`)."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient

pytestmark = pytest.mark.pg_capable


def _url(api: ApiClient) -> str:
    return str(api.client.app.state.config.database_url)


def _count(api: ApiClient, model: type[orm.Base]) -> int:
    with UnitOfWork(_url(api)) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(model)) or 0)


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.text
    return [o["id"] for o in response.json()["results"]]


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code and body["reason"] and "Traceback" not in response.text


def test_crud_smoke(api_any_db: ApiClient) -> None:
    api = api_any_db
    group = api.post("/v1/camera-groups", json={"name": "lobby", "labels": {"zone": "a"}})
    assert group.status_code == 201, group.text
    group_id = group.json()["id"]
    camera = api.post("/v1/cameras", json={"name": "door", "camera_group_id": group_id, "url": "rtsp://h/1",
                                           "stream_settings": {"start_timestamp": "2024-05-01T12:00:00+02:00"}})
    assert camera.status_code == 201, camera.text
    assert camera.json()["stream_settings"]["start_timestamp"] == "2024-05-01T12:00:00+02:00"
    watch_list = api.post("/v1/watch-lists", role="operator", json={"name": "vip", "camera_group_ids": [group_id]})
    assert watch_list.status_code == 201 and watch_list.json()["id"] > 0
    wl_id = watch_list.json()["id"]
    dossier = api.post("/v1/dossiers", role="operator", json={"name": "Ada", "watch_list_ids": [wl_id]})
    assert dossier.status_code == 201 and dossier.json()["watch_list_ids"] == [wl_id]
    dossier_id = dossier.json()["id"]
    created_at = datetime.fromisoformat(dossier.json()["created_at"])
    assert created_at.utcoffset() == timedelta(0)

    patched = api.patch(f"/v1/dossiers/{dossier_id}", role="operator", json={"name": "Ada L.", "watch_list_ids": []})
    assert patched.status_code == 200 and patched.json()["name"] == "Ada L." and patched.json()["watch_list_ids"] == []
    assert api.get(f"/v1/dossiers/{dossier_id}", role="viewer").json() == patched.json()

    _error(api.post("/v1/camera-groups", json={"name": "lobby"}), 409, "CONFLICT")
    _error(api.post("/v1/dossiers", json={"name": "x", "watch_list_ids": [-1]}), 400, "BAD_PARAM")
    _error(api.delete("/v1/watch-lists/-1"), 409, "CONFLICT")
    _error(api.delete(f"/v1/camera-groups/{group_id}"), 409, "CONFLICT")  # it still has a camera

    assert api.delete(f"/v1/dossiers/{dossier_id}", role="operator").status_code == 204
    _error(api.get(f"/v1/dossiers/{dossier_id}"), 404, "NOT_FOUND")
    assert api.delete(f"/v1/cameras/{camera.json()['id']}").status_code == 204
    assert api.delete(f"/v1/camera-groups/{group_id}").status_code == 204

    assert api.patch("/v1/settings", json={"default_threshold": 0.5}).json()["default_threshold"] == 0.5
    assert api.get("/v1/settings", role="viewer").json()["default_threshold"] == 0.5


def test_filters_and_visibility(api_any_db: ApiClient) -> None:
    api = api_any_db
    shown = api.post("/v1/watch-lists", json={"name": "Public 100%"}).json()["id"]
    hidden = api.post("/v1/watch-lists", json={"name": "covert", "hidden_from_roles": ["viewer"]}).json()["id"]
    viewer_ids = _ids(api.get("/v1/watch-lists", role="viewer"))
    assert shown in viewer_ids and hidden not in viewer_ids
    assert hidden in _ids(api.get("/v1/watch-lists", role="operator"))
    _error(api.get(f"/v1/watch-lists/{hidden}", role="viewer"), 404, "NOT_FOUND")
    assert _ids(api.get("/v1/watch-lists", params={"name_contains": "100%"})) == [shown]
    # "contains" filters ignore case on both databases (SQLite LIKE does, PostgreSQL LIKE would not).
    assert _ids(api.get("/v1/watch-lists", params={"name_contains": "public"})) == [shown]
    api.post("/v1/dossiers", json={"name": "Grace Hopper", "watch_list_ids": [shown]})
    assert len(_ids(api.get("/v1/dossiers", params={"name_contains": "HOPPER", "watch_list_id": shown}))) == 1
    assert len(_ids(api.get("/v1/users", params={"username_contains": "VIEWER"}))) == 1


def test_pagination_walk(api_any_db: ApiClient) -> None:
    api = api_any_db
    with UnitOfWork(_url(api)) as uow:
        uow.session.add_all([orm.Dossier(name=f"p{i}") for i in range(250)])
        uow.commit()
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = api.get("/v1/dossiers", role="viewer", params=params).json()
        seen.extend(d["id"] for d in page["results"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 250 and seen == sorted(seen)
    _error(api.get("/v1/dossiers", params={"limit": 0}), 422, "BAD_PARAM")
    _error(api.get("/v1/dossiers", params={"limit": 1001}), 422, "BAD_PARAM")


def _cursor(values: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("method", "path", "body", "statuses"),
    [
        ("GET", "/v1/dossiers?cursor=" + _cursor(["abc"]), None, {400}),
        ("GET", "/v1/dossiers?cursor=" + _cursor([{"a": 1}]), None, {400}),
        ("GET", "/v1/dossiers?cursor=" + _cursor([2**64]), None, {400}),
        ("GET", "/v1/dossiers/99999999999999999999", None, {422}),
        ("GET", "/v1/dossiers?watch_list_id=99999999999999999999", None, {422}),
        ("POST", "/v1/dossiers", {"name": "d", "watch_list_ids": [2**63]}, {422}),
        ("POST", "/v1/tokens", {"user_id": -(2**63) - 1}, {422}),
        # PostgreSQL cannot store or compare NUL in text: bodies, query filters and path parameters
        # with one are refused on every database.
        ("POST", "/v1/dossiers", {"name": "nul\x00name"}, {422}),
        ("GET", "/v1/dossiers?name_contains=a%00b", None, {422}),
        ("GET", "/v1/media/a%00b", None, {422}),
        ("POST", "/v1/camera-groups", {"name": "g", "labels": {"k\x00": "v"}}, {422}),
        ("POST", "/v1/cameras", {"name": "c", "camera_group_id": 1, "url": "rtsp://cam/s",
                                 "stream_settings": {"ffmpeg_options": {"rtsp_flags": "a\x00"}}}, {422}),
    ],
    ids=["cursor-str", "cursor-dict", "cursor-huge", "path-huge", "filter-huge", "ref-huge", "ref-tiny",
         "nul-name", "nul-filter", "nul-path", "nul-label", "nul-nested"],
)
def test_values_the_database_cannot_take_are_refused_not_500(
    api_any_db: ApiClient, method: str, path: str, body: Any, statuses: set[int]
) -> None:
    api = api_any_db
    before = (_count(api, orm.Dossier), _count(api, orm.CameraGroup), _count(api, orm.Token))
    response = api.request(method, path, json=body) if body is not None else api.request(method, path)
    assert response.status_code in statuses, response.text
    assert "Traceback" not in response.text
    if response.status_code >= 400:
        assert response.json()["code"] == "BAD_PARAM"
        assert (_count(api, orm.Dossier), _count(api, orm.CameraGroup), _count(api, orm.Token)) == before
    assert api.get("/v1/settings").status_code == 200  # the installation still answers
