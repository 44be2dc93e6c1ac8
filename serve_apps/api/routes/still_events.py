"""`POST /v1/events`: an event from a still photo (access-control terminals, external detectors).

The photo's face (the biggest, or every face with `face_select=all`) goes through the same path as a
camera's best shot: the extractor pool embeds it, its media (thumbnail, normalised crop, the photo as
the frame) are stored, and the sighting is handed to its camera group's event pipeline actor through
the router camera jobs use (actors/pipeline_router.py) — so matching, dedup, episodes, the events
gallery, webhooks and the live feed are exactly those of a camera. The camera (or camera group)
decides which watch lists and thresholds apply.

Multipart fields: `photo` (file), `camera_id` or `camera_group_id`, `timestamp` (ISO 8601; default
now), `meta` (JSON object ≤ 4 KB), `external_id`, `face_select` (`biggest` | `all`). Answer 201:
`{"events": [event…], "dropped": n}` — a face the pipeline drops (dedup, `ignore_unmatched`) is counted
in `dropped`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from PIL import Image

from actors.pipeline_router import PipelineRouter
from facewatch.errors import BadParam, FacewatchError, ServiceUnavailable
from facewatch.meta import check_meta
from facewatch.sightings import FaceSighting
from models.images import encode_jpeg
from serve_apps.api.deps import Media, Operator, Uow, scope_of
from serve_apps.api.enrolment import analyze_photo, choose, photo_extension
from serve_apps.api.routes._common import ensure_visible
from serve_apps.api.routes.events import base_url, visible_event
from serve_apps.api.services import Services, get_services, read_upload
from storage.event_views import event_to_dict

router = APIRouter(prefix="/events", tags=["events"])
Svc = Annotated[Services, Depends(get_services)]
THUMB_SIDE, THUMB_MARGIN = 160, 0.25
PIPELINE_TIMEOUT_S = 60.0


def thumbnail(image: np.ndarray, bbox: list[float]) -> bytes:
    """The face box with a margin, at most THUMB_SIDE pixels on its longer side, as JPEG."""
    x1, y1, x2, y2 = bbox
    mx, my = (x2 - x1) * THUMB_MARGIN, (y2 - y1) * THUMB_MARGIN
    height, width = image.shape[:2]
    box = (max(0, int(x1 - mx)), max(0, int(y1 - my)), min(width, int(x2 + mx) + 1), min(height, int(y2 + my) + 1))
    picture = Image.fromarray(image).crop(box)
    picture.thumbnail((THUMB_SIDE, THUMB_SIDE))
    return encode_jpeg(np.asarray(picture))


def _timestamp(value: str | None) -> datetime:
    if not value:
        return datetime.now(UTC)
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadParam("timestamp must be an ISO 8601 time", param="timestamp") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


async def _hand_over(request: Request, sightings: list[FaceSighting]) -> list[str | None]:
    """Through the one router every caller uses (by camera group, actors/pipeline_router.py)."""
    import ray

    if not ray.is_initialized():
        raise ServiceUnavailable("the event pipeline is not running")
    router = PipelineRouter(request.app.state.config.event_pipelines)
    try:
        return await router.post_async(sightings, timeout_s=PIPELINE_TIMEOUT_S)
    except ValueError:  # ray.get_actor: no such actor
        raise ServiceUnavailable("the event pipeline is not running") from None


@router.post("", status_code=201)
async def post_still_event(
    request: Request, services: Svc, uow: Uow, media: Media, caller: Operator,
    photo: Annotated[UploadFile, File()],
    camera_id: Annotated[int | None, Form()] = None,
    camera_group_id: Annotated[int | None, Form()] = None,
    timestamp: Annotated[str | None, Form(description="ISO 8601; default now")] = None,
    meta: Annotated[str | None, Form(description="JSON object, at most 4 KB")] = None,
    external_id: Annotated[str | None, Form(max_length=200)] = None,
    face_select: Annotated[str, Form(pattern="^(biggest|all)$")] = "biggest",
) -> dict[str, Any]:
    if (camera_id is None) == (camera_group_id is None):
        raise BadParam("give exactly one of camera_id and camera_group_id", param="camera_id")
    if camera_id is not None:
        camera = uow.cameras.get_many([camera_id], param="camera_id")[0]
        group = camera.camera_group
    else:
        group = uow.camera_groups.get_many([camera_group_id], param="camera_group_id")[0]
    scope = scope_of(uow, caller)
    ensure_visible(group, scope.sees_group(group.id), "camera group", group.id)
    try:
        metadata = check_meta(json.loads(meta) if meta else {})
    except ValueError:
        raise BadParam("meta must be a JSON object", param="meta") from None
    when = _timestamp(timestamp)
    limit = request.app.state.config.max_upload_bytes
    data = await read_upload(photo, limit)
    image, analyzed = await analyze_photo(services, data, limit)
    faces = choose(analyzed, face_select, None)  # type: ignore[arg-type]
    extracted = await services.extract(analyzed.chips[[f.index for f in faces]])
    frame_key = media.put(data, photo_extension(photo.filename))
    sightings = []
    for face, vector, attributes in zip(faces, extracted["embeddings"], extracted["attributes"], strict=True):
        chip = analyzed.chips[face.index]
        sightings.append(FaceSighting(
            event_id=f"p{uuid.uuid4().hex}", job_id=None, camera_group_id=group.id, camera_id=camera_id,
            timestamp=when, bbox=[round(float(v), 2) for v in face.bbox], detection_score=float(face.score),
            quality=float(face.quality), embedding=np.asarray(vector, np.float32), model=str(extracted["model"]),
            attributes=dict(attributes or {}), thumbnail_key=media.put(thumbnail(image, face.bbox), "jpg"),
            crop_key=media.put(encode_jpeg(np.ascontiguousarray(chip)), "jpg"), frame_key=frame_key,
            meta=metadata, external_id=external_id,
        ))
    try:
        ids = await _hand_over(request, sightings)
    except FacewatchError:
        raise
    except Exception as exc:  # noqa: BLE001 - a dead or restarting pipeline actor is a 503
        raise ServiceUnavailable(f"the event pipeline failed: {type(exc).__name__}") from exc
    uow.rollback()  # end this request's read transaction: the pipeline's commit is newer than its snapshot
    events = [event_to_dict(visible_event(uow, i, scope), base_url(request)) for i in ids if i is not None]
    return {"events": events, "dropped": sum(1 for i in ids if i is None)}


__all__ = ["router", "thumbnail"]
