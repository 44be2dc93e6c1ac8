"""Jobs (`GET /v1/jobs`, `GET /v1/jobs/{id}`) and camera control (`POST /v1/cameras/{id}/restart`,
`GET /v1/cameras/{id}/status`).

Reads come from the job table in the database, which the JobManager keeps (leases, attempts, the last
heartbeat's statistics), so they answer even while the manager restarts. Restarting a camera needs the
manager itself: 503 SERVICE_UNAVAILABLE when it is not running.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from actors.job_manager import job_dict
from facewatch.errors import NotFound
from facewatch.states import JobKind, JobState
from serve_apps.api.deps import Admin, Operator, Pages, Scope, Uow
from serve_apps.api.jobs_client import call_manager
from serve_apps.api.routes._common import ensure_visible
from serve_apps.api.schemas import CameraStatusOut, DbId, JobOut, Page
from storage import orm
from storage.unit_of_work import UnitOfWork
from storage.visibility import VisibilityScope

router = APIRouter(tags=["jobs"])


def _job_visible(uow: UnitOfWork, job: orm.Job, scope: VisibilityScope) -> bool:
    """A job is hidden with the camera group of its camera or video."""
    if scope.sees_everything:
        return True
    source = uow.cameras.find(job.camera_id) if job.camera_id is not None else (
        uow.videos.find(job.video_id) if job.video_id is not None else None)
    return source is None or scope.sees_group(source.camera_group_id)


@router.get("/jobs", response_model=Page[JobOut])
def list_jobs(
    uow: Uow, _: Operator, scope: Scope, paging: Pages, kind: JobKind | None = None, state: JobState | None = None,
    camera_id: DbId | None = None, video_id: DbId | None = None,
) -> dict[str, Any]:
    filters = {"kind": kind, "state": state, "camera_id": camera_id, "video_id": video_id}
    page = uow.jobs.list_page(filters, paging.limit, paging.cursor, scope)
    return {"results": [job_dict(j) for j in page.items], "next_cursor": page.next_cursor}


@router.get("/jobs/{job_id}", response_model=JobOut)
def get_job(job_id: DbId, uow: Uow, _: Operator, scope: Scope) -> dict[str, Any]:
    job = uow.jobs.find(job_id)
    if job is None or not _job_visible(uow, job, scope):
        raise NotFound(f"job {job_id} does not exist", param="job_id")
    return job_dict(job)


@router.get("/cameras/{camera_id}/status", response_model=CameraStatusOut, tags=["cameras"])
def camera_status(camera_id: DbId, uow: Uow, _: Operator, scope: Scope) -> dict[str, Any]:
    """The camera's status (disabled | starting | ok | degraded | failing), last error, statistics, and its
    job: the node it runs on, attempts, lease."""
    camera = uow.cameras.get(camera_id)
    ensure_visible(camera, scope.sees_group(camera.camera_group_id), "camera", camera_id)
    job = uow.jobs.for_camera(camera_id)
    return {"camera_id": camera.id, "name": camera.name, "active": camera.active, "status": camera.status,
            "status_error": camera.status_error, "stats": dict(camera.stats or {}),
            "job": job_dict(job) if job is not None else None}


@router.post("/cameras/{camera_id}/restart", response_model=JobOut, tags=["cameras"])
async def restart_camera(camera_id: DbId, uow: Uow, _: Admin) -> dict[str, Any]:
    """Stops the camera's job actor and places a new one now (a new attempt; any back-off is cleared).
    409 CONFLICT when the camera (or its group) is disabled."""
    uow.cameras.get(camera_id)  # NOT_FOUND before anything else
    return await call_manager("restart_camera", camera_id)
