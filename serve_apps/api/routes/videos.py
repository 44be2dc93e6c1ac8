"""Videos: offline, single-pass jobs (`POST/GET/DELETE /v1/videos`).

`POST /v1/videos` takes either a multipart upload (`file`, plus form fields `camera_group_id`, optional
`camera_id`, `name` and `stream_settings` as a JSON text) or a JSON / form body with a `url` (http(s),
rtsp, rtmp; `file://` for admins only: it reads the server's disk). An upload is checked to be a
readable video, stored in the media store (the job reads it from the shared media root) and the
video is handed to the JobManager, which runs one CameraJob over it once. Progress (frames done /
total) and event counts are on the video; `DELETE` cancels a running job and removes the video and
its uploaded file. Its events stay (their `video_id` becomes null): events are immutable records.

Creating and deleting need the JobManager: 503 SERVICE_UNAVAILABLE when it is not running.
"""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from actors.job_manager import DONE_STATES, job_dict
from actors.video_source import SourceError, VideoSource
from facewatch.errors import BadParam, FacewatchError, Forbidden, NotFound
from facewatch.states import VideoStatus
from serve_apps.api.deps import Caller, Operator, Pages, Scope, Uow, scope_of
from serve_apps.api.jobs_client import call_manager, require_job_manager
from serve_apps.api.routes._common import ensure_visible
from serve_apps.api.schemas import DbId, Page, StreamSettings, VideoIn, VideoOut
from serve_apps.api.services import read_file_query
from storage import orm
from storage.event_views import media_url
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.api.videos")
router = APIRouter(prefix="/videos", tags=["videos"])
UPLOAD_CHUNK = 1 << 20
_EXTENSION = re.compile(r"^[a-z0-9]{1,5}$")


class Unprocessable(BadParam):
    """BAD_PARAM with 422: wrong types, unknown or missing fields, an upload that is not a video."""

    status = 422


def video_out(uow: UnitOfWork, video: orm.Video, base_url: str) -> dict[str, Any]:
    job = uow.jobs.for_video(video.id)
    total = int(video.frames_total or 0)
    done = int(video.frames_done or 0)
    return {
        "id": video.id, "name": video.name, "source_url": video.source_url,
        "media": media_url(base_url, video.media_key) if video.media_key else None,
        "camera_group_id": video.camera_group_id, "camera_id": video.camera_id,
        "stream_settings": dict(video.stream_settings or {}), "status": video.status,
        "progress": {"frames_done": done, "frames_total": total,
                     "fraction": round(min(1.0, done / total), 4) if total else None},
        "duration_s": float(video.duration_s or 0.0), "events_count": video.events_count,
        "matched_count": video.matched_count, "unmatched_count": video.unmatched_count, "error": video.error,
        "job": job_dict(job) if job is not None else None,
        "created_at": video.created_at, "updated_at": video.updated_at,
    }


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _visible_video(uow: UnitOfWork, video_id: int, caller: Caller) -> orm.Video:
    video = uow.videos.get(video_id)
    return ensure_visible(video, scope_of(uow, caller).sees_group(video.camera_group_id), "video", video_id)


def _extension(filename: str | None) -> str:
    suffix = PurePosixPath(filename or "").suffix.lower().lstrip(".")
    return suffix if _EXTENSION.match(suffix) else "mp4"


# FFmpeg's demuxer names → the extensions of that family, the usual one first.
_CONTAINER_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "mov,mp4,m4a,3gp,3g2,mj2": ("mp4", "mov", "m4v", "3gp", "3g2"),
    "matroska,webm": ("mkv", "webm"),
    "avi": ("avi",), "flv": ("flv",), "mpegts": ("ts",), "mpeg": ("mpg", "mpeg"), "asf": ("wmv", "asf"),
    "mjpeg": ("mjpeg",), "h264": ("h264",), "hevc": ("hevc",), "ogg": ("ogv",),
}


def _content_extension(container_format: str, filename: str | None) -> str:
    """The stored video's extension from what FFmpeg found inside, not from the client's file name (the
    name's extension is kept when it belongs to that family, e.g. `.mov` for a QuickTime file)."""
    family = _CONTAINER_EXTENSIONS.get(container_format)
    if family is None:  # a rarer demuxer: its own name, when that makes an extension
        first = container_format.split(",")[0]
        return first if _EXTENSION.match(first) else "bin"
    named = _extension(filename)
    return named if named in family else family[0]


def _store_upload(media: LocalMediaStore, spooled: Any, filename: str | None) -> tuple[str, int, float]:
    """Copies the upload to disk, checks it is a readable video, stores it; (key, frames, seconds)."""
    incoming = media.root / ".incoming"
    incoming.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=incoming, suffix="." + _extension(filename), delete=False) as tmp:
        path = Path(tmp.name)
        spooled.seek(0)
        size = 0
        while chunk := spooled.read(UPLOAD_CHUNK):
            tmp.write(chunk)
            size += len(chunk)
    try:
        if size == 0:
            raise Unprocessable("the uploaded file is empty", param="file")
        try:
            with VideoSource(str(path), live=False, name="the uploaded file") as probe:
                frames = int(probe.frames_total or 0)
                extension = _content_extension(probe.container_format, filename)
                duration = float(probe.duration_s or 0.0)
                if not frames and duration and probe.fps:
                    frames = round(duration * probe.fps)
        except SourceError as exc:
            raise Unprocessable(f"the upload is not a readable video: {exc.reason}", param="file") from None
        return media.put_file(path, extension), frames, duration
    finally:
        path.unlink(missing_ok=True)


_SETTINGS_DOC = "stream settings (see the cameras' `stream_settings`), e.g. {\"detect_every_n\": 2}"
VIDEO_BODY: dict[str, Any] = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "camera_group_id"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "the video file"},
            "camera_group_id": {"type": "integer"},
            "camera_id": {"type": "integer"},
            # A form's empty field counts as absent (read_file_query): an empty name is the file's name.
            "name": {"type": "string", "maxLength": 300, "description": "empty or absent: the file's name"},
            "stream_settings": {"type": "string", "description": "a JSON object: " + _SETTINGS_DOC},
        }}},
    "application/json": {"schema": {
        "type": "object", "required": ["url", "camera_group_id"], "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "maxLength": 4000,
                    "description": "http(s)://, rtsp://, rtmp:// (file:// for admins)"},
            "camera_group_id": {"type": "integer"},
            "camera_id": {"type": ["integer", "null"]},
            "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 300},
            "stream_settings": {"type": ["object", "null"], "description": _SETTINGS_DOC},
        }}},
}}}


@router.post("", status_code=201, response_model=VideoOut, openapi_extra=VIDEO_BODY)
async def create_video(request: Request, caller: Operator) -> dict[str, Any]:
    """A single-pass job over an uploaded file or a URL; progress at `GET /v1/videos/{id}`."""
    body, upload = await read_file_query(request, VideoIn, file_field="file", json_fields=("stream_settings",),
                                         error=Unprocessable)
    require_job_manager()  # before anything is stored
    if (upload is None) == (not body.url):
        raise BadParam("give exactly one of `file` (an upload) and `url`", param="file" if upload is None else "url")
    if body.url and body.url.lower().startswith("file://") and caller.role != "admin":
        raise Forbidden("only admins may process files on the server's disk", param="url")
    settings = body.stream_settings or StreamSettings()
    with UnitOfWork(request.app.state.config.database_url) as uow:
        group = uow.camera_groups.get_many([body.camera_group_id], param="camera_group_id")[0]
        ensure_visible(group, scope_of(uow, caller).sees_group(group.id), "camera group", body.camera_group_id)
        if body.camera_id is not None:
            uow.cameras.get_many([body.camera_id], param="camera_id")
    key, frames, duration = "", 0, 0.0
    if upload is not None:
        key, frames, duration = await run_in_threadpool(_store_upload, request.app.state.media, upload.file,
                                                        upload.filename)
    name = body.name or (upload.filename if upload is not None and upload.filename else None) or (
        PurePosixPath(body.url or "").name or body.url or "video")
    with UnitOfWork(request.app.state.config.database_url) as uow:
        video = uow.videos.add(orm.Video(
            name=name[:300], source_url=body.url or "", media_key=key, camera_group_id=body.camera_group_id,
            camera_id=body.camera_id, stream_settings=settings.model_dump(mode="json"), status="queued",
            frames_total=frames, duration_s=duration))
        uow.commit()
        video_id = video.id
    try:
        await call_manager("submit_video", video_id)
    except FacewatchError as exc:  # the row is queued: the manager's next pass starts it anyway
        log.warning("video %s queued, but the job manager was not told: %s", video_id, exc.reason)
    with UnitOfWork(request.app.state.config.database_url) as uow:
        return video_out(uow, uow.videos.get(video_id), _base_url(request))


@router.get("", response_model=Page[VideoOut])
def list_videos(request: Request, uow: Uow, _: Operator, scope: Scope, paging: Pages,
                status: VideoStatus | None = None, camera_group_id: DbId | None = None) -> dict[str, Any]:
    page = uow.videos.list_page({"status": status, "camera_group_id": camera_group_id}, paging.limit, paging.cursor,
                                scope)
    base = _base_url(request)
    return {"results": [video_out(uow, v, base) for v in page.items], "next_cursor": page.next_cursor}


@router.get("/{video_id}", response_model=VideoOut)
def get_video(video_id: DbId, request: Request, uow: Uow, caller: Operator) -> dict[str, Any]:
    return video_out(uow, _visible_video(uow, video_id, caller), _base_url(request))


@router.delete("/{video_id}", status_code=204)
async def delete_video(video_id: DbId, request: Request, caller: Operator) -> Response:
    """Cancels the video's job when it still runs, then removes the video and its uploaded file."""
    url = request.app.state.config.database_url
    with UnitOfWork(url) as uow:
        _visible_video(uow, video_id, caller)
        job = uow.jobs.for_video(video_id)
        active = job is not None and job.state not in (*DONE_STATES, "stopped")
    if active:
        try:
            await call_manager("cancel_video", video_id)
        except NotFound:
            pass  # the job row went meanwhile
    with UnitOfWork(url) as uow:
        video = uow.videos.find(video_id)
        if video is None:
            return Response(status_code=204)
        key = video.media_key
        job = uow.jobs.for_video(video_id)
        if job is not None:
            uow.jobs.delete(job)
        uow.videos.delete(video)
        uow.commit()
        shared = bool(key) and uow.videos.media_in_use(key)
    if key and not shared:
        request.app.state.media.delete(key)
    return Response(status_code=204)
