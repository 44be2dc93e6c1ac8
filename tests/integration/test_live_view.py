"""The camera live view: the writer a camera job uses (actors/live_view.py) and the API that serves it,
`GET /v1/cameras/{id}/snapshot` and `/live-faces` (roles, hidden camera groups, not running = 404).
A real camera job writing it is checked in tests/cluster/test_camera_job.py (the live-source test)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from actors.live_view import FACES_MAX_AGE_S, STALE_AFTER_S, LiveView, live_paths, read_live_faces, read_snapshot
from facewatch.errors import NotFound
from models.images import decode_image
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.conftest import ApiClient


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def frame(width: int = 64, height: int = 48, value: int = 0) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = value
    return image


def test_writes_about_once_per_interval_atomically_with_the_current_faces(tmp_path: Path) -> None:
    clock = Clock()
    view = LiveView(tmp_path, 7, interval_s=1.0, clock=clock)
    image_path, meta_path = live_paths(tmp_path, 7)
    assert image_path == tmp_path / "live" / "camera-7.jpg" and meta_path == tmp_path / "live" / "camera-7.json"

    view.faces([np.array([10.0, 5.0, 30.5, 25.25, 0.99])], [42])
    assert view.frame(frame(value=200)) is True
    assert view.frame(frame()) is False  # within the interval: nothing written
    clock.now += 0.5
    assert view.frame(frame()) is False
    assert view.writes == 1
    decoded = decode_image(image_path.read_bytes())
    assert decoded.shape == (48, 64, 3) and decoded[:, :32].mean() > 150  # the first frame, not a later one
    meta = json.loads(meta_path.read_bytes())
    assert meta["width"] == 64 and meta["height"] == 48
    assert meta["faces"] == [{"bbox": [10.0, 5.0, 30.5, 25.2], "track_id": 42}]
    assert sorted(p.name for p in image_path.parent.iterdir()) == ["camera-7.jpg", "camera-7.json"]  # no temp files

    # Faces not refreshed for a while are no longer current.
    clock.now += FACES_MAX_AGE_S + 0.1
    assert view.frame(frame(width=80, height=60)) is True
    meta = json.loads(meta_path.read_bytes())
    assert meta["faces"] == [] and meta["width"] == 80
    view.faces([], [])
    clock.now += 1.0
    assert view.frame(frame()) is True and json.loads(meta_path.read_bytes())["faces"] == []

    assert read_live_faces(tmp_path, 7)["height"] == 48
    assert read_snapshot(tmp_path, 7)[:2] == b"\xff\xd8"  # JPEG
    # Stale files (the job was killed or hangs) read as "not running"; so does a stopped camera.
    with pytest.raises(NotFound, match="not running"):
        read_snapshot(tmp_path, 7, now=time.time() + STALE_AFTER_S + 1)
    with pytest.raises(NotFound, match="not running"):
        read_live_faces(tmp_path, 7, now=time.time() + STALE_AFTER_S + 1)
    view.close()
    assert not image_path.exists() and not meta_path.exists()
    with pytest.raises(NotFound):
        read_snapshot(tmp_path, 7)


def test_an_unwritable_media_root_does_not_stop_the_camera(tmp_path: Path) -> None:
    blocker = tmp_path / "live"
    blocker.write_text("a file where the folder should be")
    view = LiveView(tmp_path, 1)
    assert view.frame(frame()) is False and view.writes == 0


def _camera(api: ApiClient, hidden_from: list[str]) -> int:
    with UnitOfWork(str(api.client.app.state.config.database_url)) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name=f"group {hidden_from}", hidden_from_roles=hidden_from))
        camera = uow.cameras.add(orm.Camera(name="door", camera_group_id=group.id, url="rtsp://10.0.0.1/s"))
        uow.commit()
        return camera.id


def test_snapshot_and_live_faces_endpoints(api: ApiClient) -> None:
    media_root = api.client.app.state.media.root
    camera = _camera(api, [])
    hidden = _camera(api, ["operator"])

    for path in (f"/v1/cameras/{camera}/snapshot", f"/v1/cameras/{camera}/live-faces"):
        response = api.get(path)
        assert response.status_code == 404 and response.json() == {
            "code": "NOT_FOUND", "reason": "no snapshot: the camera is not running", "param": "id"}

    for camera_id in (camera, hidden):
        view = LiveView(media_root, camera_id)
        view.faces([np.array([1.0, 2.0, 11.0, 12.0])], [5])
        assert view.frame(frame(value=255))

    snapshot = api.get(f"/v1/cameras/{camera}/snapshot", role="operator")
    assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
    assert snapshot.headers["cache-control"] == "no-store"
    assert snapshot.content == live_paths(media_root, camera)[0].read_bytes()
    faces = api.get(f"/v1/cameras/{camera}/live-faces", role="operator").json()
    assert faces["width"] == 64 and faces["height"] == 48 and faces["at"]
    assert faces["faces"] == [{"bbox": [1.0, 2.0, 11.0, 12.0], "track_id": 5}]

    # Who may not read the camera may not see what it sees.
    assert api.get(f"/v1/cameras/{camera}/snapshot", role="viewer").status_code == 403
    for path in (f"/v1/cameras/{hidden}/snapshot", f"/v1/cameras/{hidden}/live-faces"):
        assert api.get(path, role="operator").json()["code"] == "NOT_FOUND"
        assert api.get(path, role="admin").status_code == 200
    assert api.get("/v1/cameras/999999/snapshot").json()["reason"] == "camera 999999 does not exist"

    # A snapshot the job stopped refreshing is "not running".
    old = time.time() - STALE_AFTER_S - 1
    for path in live_paths(media_root, camera):
        os.utime(path, (old, old))
    assert api.get(f"/v1/cameras/{camera}/snapshot").status_code == 404
    assert api.get(f"/v1/cameras/{camera}/live-faces").status_code == 404
