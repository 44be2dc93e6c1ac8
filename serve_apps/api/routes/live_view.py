"""`GET /v1/cameras/{id}/snapshot` and `/live-faces`: what a running camera sees now (actors/live_view.py).

The camera's job writes the files about once a second into the media store; these routes only read
them. Who may read the camera (admins and operators, not for a group hidden from their role) may read
its live view; a camera without a fresh snapshot (not running) answers 404.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field

from actors.live_view import read_live_faces, read_snapshot
from serve_apps.api.deps import Caller, Media, Operator, Uow
from serve_apps.api.routes._common import ensure_visible
from serve_apps.api.schemas import DbId
from storage.unit_of_work import UnitOfWork

router = APIRouter(prefix="/cameras", tags=["cameras"])


class LiveFace(BaseModel):
    bbox: list[float] = Field(description="x1, y1, x2, y2 in pixels of the snapshot")
    track_id: int


class LiveFaces(BaseModel):
    width: int
    height: int
    at: datetime = Field(description="when the snapshot with these faces was taken")
    faces: list[LiveFace]


def _visible_camera(uow: UnitOfWork, camera_id: int, caller: Caller) -> None:
    camera = uow.cameras.get(camera_id)
    ensure_visible(camera.camera_group, caller, "camera", camera_id)


@router.get("/{camera_id}/snapshot", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}}, "description": "the latest frame (refreshed ~1/s)"}})
def get_snapshot(camera_id: DbId, uow: Uow, caller: Operator, media: Media) -> Response:
    _visible_camera(uow, camera_id, caller)
    return Response(read_snapshot(media.root, camera_id), media_type="image/jpeg",
                    headers={"Cache-Control": "no-store"})


@router.get("/{camera_id}/live-faces", response_model=LiveFaces)
def get_live_faces(camera_id: DbId, uow: Uow, caller: Operator, media: Media) -> LiveFaces:
    _visible_camera(uow, camera_id, caller)
    return LiveFaces.model_validate(read_live_faces(media.root, camera_id))
