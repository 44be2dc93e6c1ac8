"""Offline batches: run video files (or URLs) through the same actors as the service (SPEC §7).

`process_videos(paths, camera_group=..., watch_lists=..., parallelism=...)` is the Python API for
driver scripts; `facewatch process PATH_OR_URL...` is its console form. Every video becomes a Video row
and a single-pass job of the JobManager, run by a CameraJob actor; faces go through the extractor pool
and the EventPipeline, so the events land in the installation's database like a camera's (searchable,
on webhooks, in episodes).

Where it runs:
- a driver already connected to Ray (`ray.init(...)` before the call) uses that cluster;
- FACEWATCH_RAY_ADDRESS set: joins that cluster and uses its running service (JobManager, extractor
  pool, event pipeline), starting what is missing; local files are copied into the shared media store
  first, since the job may run on another node;
- otherwise: starts Ray in this process with everything needed (no HTTP API), processes, and stops it
  all again. Do not run that while a `facewatch serve` without FACEWATCH_RAY_ADDRESS uses the same
  database: two JobManagers would share one job table. Join the service instead (set
  FACEWATCH_RAY_ADDRESS to its Ray address); `process_videos` refuses to start when it sees live leases.

Parallelism: at most `parallelism` videos are submitted at once (the cluster's `camera_slots` bound it
too). A video that fails is retried by the JobManager (back-off) before it is reported failed.

Per video the result is `{"path", "video_id", "status", "error", "frames", "seconds" (the video's
duration), "wall_s" (processing time, start-up excluded), "events", "matched", "unmatched", "matches":
[{"dossier", "watch_list", "confidence", "timestamp" (seconds into the video), "event_id"}]}`.
`watch_lists` (names) narrows `matches` to those lists; matching itself follows the usual rules
(watch lists whose camera groups include the batch's group, or that name none).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray
from ray import serve
from tqdm import tqdm

from actors.job_manager import MANAGER_NAME, NAMESPACE
from actors.video_source import SourceError, VideoSource
from cluster.service import (
    active_embedder,
    connect_ray,
    prepare_database,
    start_face_services,
    start_job_services,
    stop_service,
)
from facewatch.settings import Config, load_config
from serve_apps.api.schemas import StreamSettings
from serve_apps.extractor import EXTRACTOR_APP
from storage import orm
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

DONE = ("done", "failed", "cancelled")
POLL_S = 0.5
# Decision: batches look for faces in every second frame; callers may pass their own stream settings.
DEFAULT_BATCH_SETTINGS: dict[str, Any] = {"detect_every_n": 2}


@dataclass
class _Item:
    path: str
    video_id: int | None = None
    error: str = ""
    frames_total: int = 0
    submitted_at: float | None = None
    running_since: float | None = None
    ended_at: float | None = None
    frames_seen: int = 0


@dataclass
class _Session:
    config: Config
    owns_cluster: bool = False  # Ray was started here: stop everything at the end
    owns_connection: bool = False  # joined here: disconnect at the end
    remote: bool = False  # a cluster whose nodes may not see this machine's files
    manager: Any = None
    items: list[_Item] = field(default_factory=list)


def process_videos(
    paths: Sequence[str | os.PathLike[str]],
    camera_group: str = "batch",
    watch_lists: Iterable[str] | None = None,
    parallelism: int = 2,
    config: Config | None = None,
    *,
    stream_settings: dict[str, Any] | None = None,
    progress: bool = True,
    timeout_s: float | None = None,
) -> list[dict[str, Any]]:
    """Process video files or URLs with the installation's actors; one summary per path, in order."""
    if parallelism < 1:
        raise ValueError("parallelism must be >= 1")
    config = config or load_config()
    settings = StreamSettings.model_validate({**DEFAULT_BATCH_SETTINGS, **(stream_settings or {})}, strict=False)
    session = _open(config, parallelism)
    try:
        group_id = _camera_group(config, camera_group)
        lists = _watch_list_names(config, watch_lists)
        session.items = [_Item(str(p)) for p in paths]
        for item in session.items:
            _register(session, item, group_id, settings.model_dump(mode="json"))
        _run(session, parallelism, progress, timeout_s)
        return [_result(config, item, lists) for item in session.items]
    finally:
        _close(session)


# -- start and stop ------------------------------------------------------------------------------------


def _open(config: Config, parallelism: int) -> _Session:
    prepare_database(config)
    session = _Session(config)
    if ray.is_initialized():
        session.remote = not _is_local_cluster()
    elif config.ray_address:
        ray.init(address=config.ray_address, namespace=NAMESPACE, log_to_driver=False)
        session.owns_connection, session.remote = True, True
    else:
        _refuse_if_service_running(config)
        connect_ray(config.model_copy(update={"camera_slots": max(config.camera_slots, parallelism)}))
        session.owns_cluster = True
    if ray.cluster_resources().get("camera_slots", 0) < 1:
        _close(session)
        raise RuntimeError("no node of this Ray cluster offers the `camera_slots` resource, so no video job "
                           "could run: start Ray with resources={'camera_slots': N}")
    session.manager = _ensure_services(config)
    return session


def _is_local_cluster() -> bool:
    return len([n for n in ray.nodes() if n.get("Alive")]) <= 1


def _refuse_if_service_running(config: Config) -> None:
    """Live leases mean another JobManager (a running service) owns this database's jobs."""
    with UnitOfWork(config.database_url) as uow:
        live = uow.jobs.count_leased(datetime.now(UTC))
    if live:
        raise RuntimeError(
            "a facewatch service is running jobs on this database; join its Ray cluster with "
            "FACEWATCH_RAY_ADDRESS instead of starting a second JobManager")


def _ensure_services(config: Config) -> Any:
    """The JobManager, event pipeline and extractor pool: the running ones, or started now."""
    try:
        manager = ray.get_actor(MANAGER_NAME, namespace=NAMESPACE)
        ray.get(manager.ready.remote(), timeout=60)
        return manager
    except ValueError:
        pass
    embedder = active_embedder(config)
    if not _extractor_running():
        serve.start(proxy_location="Disabled")
        start_face_services(config)
    return start_job_services(config, embedder)


def _extractor_running() -> bool:
    try:
        status = serve.status()
    except Exception:  # noqa: BLE001 - Serve not started
        return False
    app = status.applications.get(EXTRACTOR_APP)
    return app is not None and str(app.status).endswith("RUNNING")


def _close(session: _Session) -> None:
    if session.owns_cluster:
        stop_service()
    elif session.owns_connection:
        ray.shutdown()


# -- rows ----------------------------------------------------------------------------------------------


def _camera_group(config: Config, name: str) -> int:
    with UnitOfWork(config.database_url) as uow:
        group = uow.camera_groups.by_name(name)
        if group is None:
            group = uow.camera_groups.add(orm.CameraGroup(name=name, comment="created by facewatch process"))
            uow.commit()
        return group.id


def _watch_list_names(config: Config, names: Iterable[str] | None) -> set[str] | None:
    if names is None:
        return None
    wanted = set(names)
    with UnitOfWork(config.database_url) as uow:
        known = uow.watch_lists.existing_names(wanted)
    if wanted - known:
        raise ValueError(f"unknown watch list(s): {', '.join(sorted(wanted - known))}")
    return wanted


def _register(session: _Session, item: _Item, group_id: int, settings: dict[str, Any]) -> None:
    """A Video row for the path (not submitted yet); a local file is checked to be a readable video."""
    url, key = item.path, ""
    if "://" not in item.path:
        path = Path(item.path).expanduser().resolve()
        try:
            with VideoSource(str(path), live=False) as probe:
                item.frames_total = int(probe.frames_total or 0) or (
                    round(probe.duration_s * probe.fps) if probe.duration_s and probe.fps else 0)
        except SourceError as exc:
            item.error = exc.reason
            return
        url = str(path)
        if session.remote:  # the job may run on another node: hand it the file through the media store
            key, url = LocalMediaStore(session.config.media_root).put_file(path, path.suffix or ".mp4"), ""
    with UnitOfWork(session.config.database_url) as uow:
        video = uow.videos.add(orm.Video(
            name=Path(item.path).name or item.path, source_url=url, media_key=key, camera_group_id=group_id,
            stream_settings=settings, status="cancelled", frames_total=item.frames_total))
        uow.commit()
        item.video_id = video.id  # status "cancelled" until submitted, so no manager picks it up early


# -- running -------------------------------------------------------------------------------------------


def _run(session: _Session, parallelism: int, progress: bool, timeout_s: float | None) -> None:
    waiting = [i for i in session.items if i.video_id is not None]
    active: list[_Item] = []
    total = sum(i.frames_total for i in waiting)
    deadline = time.monotonic() + timeout_s if timeout_s else None
    with tqdm(total=total or None, unit="frame", desc="processing", file=sys.stderr, disable=not progress,
              dynamic_ncols=True) as bar:
        while waiting or active:
            while waiting and len(active) < parallelism:
                item = waiting.pop(0)
                ray.get(session.manager.submit_video.remote(item.video_id), timeout=60)
                item.submitted_at = time.monotonic()
                active.append(item)
            time.sleep(POLL_S)
            for item in list(active):
                video = _video(session.config, item.video_id)
                if video is None:
                    item.error, item.ended_at = "the video was deleted", time.monotonic()
                    active.remove(item)
                    continue
                if video.status == "running" and item.running_since is None:
                    item.running_since = time.monotonic()
                done = int(video.frames_done or 0)
                if done > item.frames_seen:
                    bar.update(done - item.frames_seen)
                    item.frames_seen = done
                if video.status in DONE:
                    item.ended_at = time.monotonic()
                    item.error = video.error if video.status != "done" else ""
                    active.remove(item)
                    bar.set_postfix_str(f"{sum(1 for i in session.items if i.ended_at)}/{len(session.items)} done")
            if deadline is not None and time.monotonic() > deadline:
                for item in active:
                    ray.get(session.manager.cancel_video.remote(item.video_id), timeout=60)
                    item.error = f"timed out after {timeout_s:g} s"
                for item in waiting:
                    item.error = "not started: the batch timed out"
                return


def _video(config: Config, video_id: int | None) -> orm.Video | None:
    with UnitOfWork(config.database_url) as uow:
        return uow.videos.find(video_id)


# -- results -------------------------------------------------------------------------------------------


def _result(config: Config, item: _Item, watch_lists: set[str] | None) -> dict[str, Any]:
    result: dict[str, Any] = {"path": item.path, "video_id": item.video_id, "status": "failed",
                              "error": item.error, "frames": 0, "seconds": 0.0, "wall_s": None, "events": 0,
                              "matched": 0, "unmatched": 0, "matches": []}
    if item.video_id is None:
        return result
    with UnitOfWork(config.database_url) as uow:
        video = uow.videos.find(item.video_id)
        if video is None:
            return result
        job = uow.jobs.for_video(video.id)
        summary = (job.stats or {}).get("summary", {}) if job is not None else {}
        counts = uow.events.matched_counts(video_id=video.id)
        rows = uow.events.matches_of_video(video.id)
        status = video.status if video.status in DONE else "failed"
        wall = summary.get("processing_s")
        if wall is None and item.ended_at is not None:
            wall = item.ended_at - (item.running_since or item.submitted_at or item.ended_at)
        result.update({
            "status": status, "error": item.error or (video.error if status != "done" else ""),
            "frames": int(video.frames_done or 0), "seconds": round(float(video.duration_s or 0.0), 3),
            "wall_s": round(float(wall), 3) if wall is not None else None,
            "events": counts["events_count"], "matched": counts["matched_count"],
            "unmatched": counts["unmatched_count"],
            "matches": [{"dossier": dossier, "watch_list": watch_list,
                         "confidence": round(float(event.confidence or 0.0), 4),
                         "timestamp": round(float(event.video_offset_s or 0.0), 3), "event_id": event.id}
                        for event, dossier, watch_list in rows if watch_lists is None or watch_list in watch_lists],
        })
    return result


def format_summary(results: list[dict[str, Any]]) -> str:
    """A readable report of `process_videos` results (the CLI's output without --json)."""
    lines = []
    for r in results:
        head = f"{r['path']}: {r['status']}"
        if r["status"] == "done":
            speed = f", {r['seconds'] / r['wall_s']:.2f}x real time" if r["wall_s"] else ""
            head += (f" — {r['frames']} frames, {r['seconds']:.1f} s of video in {r['wall_s'] or 0:.1f} s{speed}; "
                     f"{r['events']} events ({r['matched']} matched, {r['unmatched']} unmatched)")
        elif r["error"]:
            head += f" — {r['error']}"
        lines.append(head)
        for m in r["matches"]:
            lines.append(f"    {m['timestamp']:8.2f} s  {m['dossier']} ({m['watch_list']}), "
                         f"confidence {m['confidence']:.3f}")
    return "\n".join(lines)


def run_process_command(paths: Sequence[str], camera_group: str, parallelism: int,
                        watch_lists: Sequence[str] | None) -> list[dict[str, Any]]:
    """`facewatch process`: Ray's own start-up messages go to stderr, stdout keeps the command's output."""
    with redirect_stdout(sys.stderr):
        return process_videos(paths, camera_group=camera_group, watch_lists=watch_lists or None,
                              parallelism=parallelism)
