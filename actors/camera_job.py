"""CameraJob: the Ray actor that runs one camera or one video through the video pipeline (SPEC §1.2, §3).

One actor per camera or video, placed by the JobManager (`actors.job_manager`), whose JOB-ACTOR
CONTRACT this class follows: constructor `(job_spec, manager_name, namespace)`, an idempotent
`run()`, a heartbeat every `heartbeat_s` with statistics, status and last error, and `finished` /
`failed` at the end.

Inside its own process the job does, frame by frame::

    VideoSource (PyAV) → MotionGate → every `detect_every_n`-th frame, in small batches:
    FaceDetector.detect_batch → drop faces outside `rot` → IouTracker → face_quality →
    PostFilter (roi, min_quality, min/max face size) → best-shot policy → shots to post

and for every shot to post: the aligned chip in the active embedder's geometry (≤ 160×160), a
thumbnail (the face box with a margin), the normalised crop (the chip) and the full frame as JPEGs
are written to the shared media store BY THE JOB; the chips go to the extractor pool (Ray Serve,
batched) and the resulting `FaceSighting`s to the `EventPipeline` actor. Frames never leave the
process; a track keeps only the payload of its current best shot (chip, small crops, and the
JPEG bytes of that one frame, encoded at once).

Decisions:
- **Sources.** A video job (`single_pass`) reads its file once (the uploaded file in the media
  store, or its URL), never live: no drops, paced by `play_speed` (-1 = as fast as possible). At its
  end every track is flushed (best shots posted), the posts are awaited and `finished(summary)` is
  reported. A camera job's source is live (a `file://` camera is played in real time, like a
  camera). When it cannot be opened, breaks or ends, the job flushes its tracks, reports `failing`
  with the error and reopens it with back-off (1 s doubling to 30 s, with jitter; the first reopen
  after a break is immediate), and resumes by itself: a camera job never reports `finished`.
- **Camera changes.** A camera job re-reads its camera row with every heartbeat; a new URL or new
  stream settings are applied in place (tracks flushed, source reopened) without a restart.
- **Event ids** are `event_id_for(job_id, run, track_id, shot)`: run 0 for videos (a restarted
  video job re-derives the same ids, so nothing is duplicated), the attempt for cameras. Track ids
  stay unique across reopenings of a live source within one attempt.
- **Posting** runs in a background thread so extraction latency does not stall decoding. Extractor
  and pipeline calls are retried with back-off (`post_attempts`, 1 s doubling); the event ids make
  retries idempotent. Shots that still fail are counted in `faces_failed` (status `degraded` for
  30 s); for a video job a failed post fails the job (the manager re-runs it, without duplicates).
  A live camera whose post queue is full drops the batch (counted) rather than fall behind.
- **Status**: `failing` while the source is down; `degraded` when a post failed in the last 30 s
  or frames were dropped since the last heartbeat; `ok` otherwise (the manager shows `starting`
  during the first 30 s).
- **Stall watchdog**: when the pipeline makes no progress for `stall_timeout_s` (a hung decoder or
  model), heartbeats stop, the lease lapses, and the manager kills and re-places the job.

Statistics in every heartbeat: node_id, frames_decoded / processed / dropped / motion_skipped,
fps (frames handled per second since the last heartbeat) and detect_fps, faces_detected /
filtered (by reason) / posted / failed, events, tracks, source_opens, and for videos frames_done /
frames_total. The JobManager turns these counters (and the final ones of `finished`) into the cluster's
camera metrics: a job actor is killed as soon as it finishes, before its own metrics would be exported.

Settings come from `job_spec["stream_settings"]` (SPEC §2; defaults as in the API's
StreamSettings) and, for tuning, from top-level job_spec keys the manager's `spec_defaults` set:
db_url and media_root (required), pipeline_name / pipeline_namespace, extractor_app /
extractor_deployment, detect_batch, open_timeout_s, read_timeout_s, reopen_initial_s,
reopen_max_s, post_attempts, post_backoff_s, call_timeout_s, stall_timeout_s, torch_threads.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import cv2
import numpy as np
import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError, RayTaskError
from sqlalchemy import func, select

from actors.best_shot import EveryIntervalBest, PostFilter, ShotCandidate, best_shot_policy
from actors.live_view import LiveView
from actors.motion_gate import MotionGate
from actors.tracking import IouTracker, inside_region
from actors.video_source import (
    Frame,
    SourceError,
    SourceOpenError,
    SourceReadError,
    VideoSource,
    reopen_delays,
)
from facewatch.sightings import FaceSighting, event_id_for
from models.alignment import align_faces
from models.detector import FaceDetector
from models.embedders import EmbedderSpec, embedder_spec
from models.images import encode_jpeg
from models.quality import face_quality
from models.types import Detections
from storage import orm
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.camera_job")

PIPELINE_NAME = "event-pipeline"
EXTRACTOR_NAME = "facewatch-extractor"  # deployment and app name of serve_apps.extractor
DEGRADED_AFTER_FAILURE_S = 30.0
THUMBNAIL_MARGIN = 0.3  # of the face box, on every side
THUMBNAIL_MAX_SIDE = 320
MANAGER_CALL_TIMEOUT_S = 10.0
REPORT_DEADLINE_S = 120.0  # how long finished()/failed() is retried while the manager is away
LIVE_POST_QUEUE = 32
T = TypeVar("T")


# -- settings --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamConfig:
    """A camera's or video's stream settings (SPEC §2, §3); unknown keys are ignored."""

    min_quality: float = 0.0
    min_face_size: int = 30
    max_face_size: int | None = 2000
    roi: tuple[float, float, float, float] | None = None
    rot: tuple[float, float, float, float] | None = None
    overall_only: bool = True
    realtime_interval_s: float = 1.0
    realtime_every_interval: bool = False
    jpeg_quality: int = 95
    play_speed: float = -1.0
    use_stream_timestamp: bool = False
    start_timestamp: datetime | None = None
    ffmpeg_options: dict[str, str] = field(default_factory=dict)
    detect_every_n: int = 1
    motion_threshold: float = 0.0
    miss_interval_s: float = 1.0
    disable_drops: bool = False

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> StreamConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in (raw or {}).items() if k in names and v is not None}
        for box in ("roi", "rot"):
            if box in values:
                values[box] = tuple(float(v) for v in values[box])
        if isinstance(values.get("start_timestamp"), str):
            values["start_timestamp"] = datetime.fromisoformat(values["start_timestamp"])
        if "ffmpeg_options" in values:
            values["ffmpeg_options"] = {str(k): str(v) for k, v in values["ffmpeg_options"].items()}
        config = cls(**values)
        if config.detect_every_n < 1:
            raise ValueError("detect_every_n must be >= 1")
        return config


@dataclass(frozen=True)
class JobTuning:
    """Process-level knobs from the top-level job_spec keys (the manager's spec_defaults)."""

    db_url: str
    media_root: str
    pipeline_name: str = PIPELINE_NAME
    pipeline_namespace: str | None = None  # None: the manager's namespace
    extractor_app: str = EXTRACTOR_NAME
    extractor_deployment: str = EXTRACTOR_NAME
    detect_batch: int = 4
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    reopen_initial_s: float = 1.0
    reopen_max_s: float = 30.0
    post_attempts: int = 4
    post_backoff_s: float = 1.0
    call_timeout_s: float = 120.0
    stall_timeout_s: float = 180.0
    torch_threads: int | None = None

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> JobTuning:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("db_url", "media_root") if not spec.get(k)]
        if missing:
            raise ValueError(f"the job spec lacks {', '.join(missing)} (set them in the manager's spec_defaults)")
        return cls(**{k: v for k, v in spec.items() if k in names and v is not None})


# -- what a track keeps -----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ShotPayload:
    """What the best shot of a track keeps: small crops and one frame's JPEG bytes, never a frame."""

    chip: np.ndarray  # aligned chip in the embedder's geometry (uint8, S×S×3)
    thumbnail_jpeg: bytes
    frame_jpeg: bytes
    detection_score: float
    wall_time: datetime
    frame_index: int


@dataclass
class Counters:
    frames_decoded: int = 0
    frames_handled: int = 0  # consumed by the pipeline loop (gated and sampled-out frames included)
    frames_processed: int = 0  # the detector ran on them
    frames_dropped: int = 0
    frames_motion_skipped: int = 0
    faces_detected: int = 0
    faces_outside_rot: int = 0
    faces_filtered: dict[str, int] = field(default_factory=dict)
    faces_posted: int = 0
    faces_failed: int = 0
    events: int = 0
    sightings_dropped: int = 0  # the pipeline dropped them (dedup, ignore_unmatched)
    tracks: int = 0
    source_opens: int = 0
    source_errors: int = 0


class PostFailed(RuntimeError):
    """Shots could not be handed over after every retry."""


# -- the actor ---------------------------------------------------------------------------------------------


@ray.remote(num_cpus=0, max_concurrency=4)  # run() blocks one thread; info()/stop() answer on others
class CameraJob:
    def __init__(self, job_spec: dict[str, Any], manager_name: str, namespace: str) -> None:
        self.spec = dict(job_spec)
        self.job_id = int(self.spec["job_id"])
        self.holder = str(self.spec["holder"])
        self.attempt = int(self.spec.get("attempt") or 1)
        self.single_pass = bool(self.spec.get("single_pass"))
        self.heartbeat_s = float(self.spec.get("heartbeat_s") or 4.0)
        self.settings = StreamConfig.from_dict(self.spec.get("stream_settings"))
        self.tuning = JobTuning.from_spec(self.spec)
        self.manager_name, self.namespace = manager_name, namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self.counters = Counters()
        self.media = LocalMediaStore(self.tuning.media_root)
        self.run_id = 0 if self.single_pass else self.attempt
        camera_id = None if self.single_pass else self.spec.get("camera_id")  # the console's live view:
        self.live = LiveView(self.tuning.media_root, int(camera_id)) if camera_id is not None else None

        self._stop = threading.Event()
        self._done = threading.Event()
        self._lease_lost = False
        self._draining = False
        self._reconfigure = threading.Event()
        self._camera_source = (self.spec.get("url") or "", dict(self.spec.get("stream_settings") or {}))
        self._pending_source = self._camera_source
        self._started = False
        self._outcome = ""
        self._manager: ActorHandle | None = None
        self._pipeline: ActorHandle | None = None
        self._extractor: Any = None
        self._lock = threading.Lock()
        self._failing_error = ""  # set while the source is down
        self._last_error = ""
        self._last_failure_at = 0.0
        self._progress_at = time.monotonic()
        self._frames_total: int | None = None
        self._duration_s: float | None = None
        self._processing_started: float | None = None
        self._beat_prev: tuple[float, int, int, int] | None = None  # time, handled, processed, dropped
        self._decoded_before = 0
        self._dropped_before = 0
        self._source: VideoSource | None = None
        self._post_queue: queue.Queue[list[ShotCandidate] | None] = queue.Queue(
            maxsize=0 if self.single_pass else LIVE_POST_QUEUE)
        self._post_error: BaseException | None = None
        self._shot_numbers: dict[int, int] = {}
        self._track_base = 0
        self._local_max_track = 0
        self._max_quality: dict[int, float] = {}

    # -- contract --------------------------------------------------------------------------------------

    def run(self) -> str:
        if self._started:
            return "already running"
        self._started = True
        beat = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat job {self.job_id}", daemon=True)
        beat.start()
        try:
            self._outcome = self._run()
        except Exception as exc:  # tell the manager, which re-places the job after its back-off
            error = _short(exc)
            if isinstance(exc, SourceError | PostFailed):
                log.warning("job %s failed: %s", self.job_id, error)
            else:
                log.exception("job %s failed", self.job_id)
            self._last_error = error
            if not self._lease_lost:
                self._report("failed", error)
            self._outcome = f"failed: {error}"
        finally:
            self._stop.set()
            self._done.set()
            if self.live is not None and not self._lease_lost:  # (a successor may be writing it already)
                self.live.close()
        return self._outcome

    def info(self) -> dict[str, Any]:
        """For tests and debugging: where the job runs and how far it got."""
        status, error = self._status()
        return {"job_id": self.job_id, "holder": self.holder, "attempt": self.attempt, "node_id": self.node_id,
                "status": status, "error": error, "outcome": self._outcome, "stats": self._stats(),
                "url": self.spec.get("url"), "settings": dataclasses.asdict(self.settings)}

    def stop(self) -> None:
        """Stop the pipeline soon (without reporting an outcome); the manager normally kills instead."""
        self._stop.set()

    # -- the pipeline ----------------------------------------------------------------------------------

    def _run(self) -> str:
        self._touch()
        if self.tuning.torch_threads:
            import torch

            torch.set_num_threads(int(self.tuning.torch_threads))
        with UnitOfWork(self.tuning.db_url) as uow:
            self.embedder: EmbedderSpec = embedder_spec(str(uow.settings.get("embedder")))
        self._build_filters()
        poster = threading.Thread(target=self._post_loop, name=f"poster job {self.job_id}", daemon=True)
        poster.start()
        try:
            if self.single_pass:
                return self._run_video(poster)
            self._run_live()
            return "stopped"
        finally:
            if poster.is_alive():
                self._draining = True  # the poster drains what is left without posting it
                try:
                    self._post_queue.put(None, timeout=5.0)
                except queue.Full:
                    pass
                poster.join(timeout=5.0)

    def _build_filters(self) -> None:
        """The detector and post filter for the current settings (the detector is kept when it can be)."""
        min_size = max(int(self.settings.min_face_size), 1)
        if getattr(self, "detector", None) is None or self.detector.min_face_size != min_size:
            self.detector = FaceDetector(min_face_size=min_size)
        self.post_filter = PostFilter(roi=self.settings.roi, min_quality=self.settings.min_quality,
                                      min_face_size=float(self.settings.min_face_size),
                                      max_face_size=self.settings.max_face_size)

    def _run_video(self, poster: threading.Thread) -> str:
        try:
            source = self._open(live=False)
        except SourceOpenError as exc:
            self._failing_error = exc.reason
            raise
        self._processing_started = time.monotonic()
        self._consume(source)
        self._flush_tracks()
        self._post_queue.put(None)
        while poster.is_alive():  # the last posts; the heartbeat keeps the lease meanwhile
            poster.join(timeout=1.0)
            self._touch()
            if self._stop.is_set():
                break
        if self._stop.is_set():
            return "lease lost" if self._lease_lost else "stopped"
        if self._post_error is not None:
            raise PostFailed(f"posting faces failed: {_short(self._post_error)}")
        summary = self._summary(source)
        self._report("finished", summary)
        return "finished"

    def _run_live(self) -> None:
        delays: Iterator[float] | None = None
        reopen_at_once = False
        while not self._stop.is_set():
            if self._reconfigure.is_set():
                self._apply_camera_change()
                delays, reopen_at_once = None, True
            try:
                source = self._open(live=True)
            except SourceOpenError as exc:
                self._set_failing(exc.reason)
                if reopen_at_once:
                    reopen_at_once = False
                    continue
                delays = delays or reopen_delays(self.tuning.reopen_initial_s, self.tuning.reopen_max_s, jitter=0.1)
                self._sleep(next(delays))
                continue
            delays, self._failing_error = None, ""
            if self._processing_started is None:
                self._processing_started = time.monotonic()
            try:
                self._consume(source)
                reason = "the stream ended"
            except SourceReadError as exc:
                reason = exc.reason
            self._flush_tracks()
            if self._stop.is_set():
                return
            if self._reconfigure.is_set():
                continue  # the camera's URL or settings changed: reopen with the new ones at once
            self.counters.source_errors += 1
            self._set_failing(f"{reason}; reopening")
            reopen_at_once = True

    def _sleep(self, seconds: float) -> None:
        """Waits, but wakes up at once when the job is stopped or its camera changed."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._reconfigure.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.2))

    def _check_camera_change(self) -> None:
        """Camera jobs re-read their camera row with every heartbeat: a new URL or new stream settings
        are applied in place (the source is reopened), without a restart by the manager."""
        camera_id = self.spec.get("camera_id")
        if self.single_pass or camera_id is None:
            return
        try:
            with UnitOfWork(self.tuning.db_url) as uow:
                camera = uow.cameras.find(int(camera_id))
                current = (camera.url, dict(camera.stream_settings or {})) if camera is not None else None
        except Exception:  # a DB hiccup: check again with the next heartbeat
            log.debug("job %s: camera re-read failed", self.job_id, exc_info=True)
            return
        if current is not None and current != self._camera_source:
            log.info("job %s: camera %s changed; reopening with its new URL/settings", self.job_id, camera_id)
            self._pending_source = current
            self._reconfigure.set()

    def _apply_camera_change(self) -> None:
        url, stream_settings = self._pending_source
        self.settings = StreamConfig.from_dict(stream_settings)
        self.spec["url"], self.spec["stream_settings"] = url, stream_settings
        self._camera_source = (url, stream_settings)
        self._build_filters()
        self._reconfigure.clear()

    def _open(self, live: bool) -> VideoSource:
        self._touch()
        s = self.settings
        source = VideoSource(
            self._source_url(), ffmpeg_options=s.ffmpeg_options, open_timeout_s=self.tuning.open_timeout_s,
            read_timeout_s=self.tuning.read_timeout_s, play_speed=s.play_speed, live=live,
            disable_drops=s.disable_drops, use_stream_timestamp=s.use_stream_timestamp,
            start_timestamp=s.start_timestamp,
        )
        self.counters.source_opens += 1
        if self._source is not None:  # counters of the previous source of this attempt
            self._decoded_before += self._source.frames_decoded
            self._dropped_before += self._source.frames_dropped
        self._source = source
        if self.single_pass:
            fps = source.fps or 0.0
            self._frames_total = source.frames_total or (round(source.duration_s * fps) if source.duration_s else None)
            self._duration_s = source.duration_s
        # Fresh state per opened source; track ids continue so event ids stay unique in this run.
        self.gate = MotionGate(self.settings.motion_threshold)
        self._track_base += self._local_max_track
        self._local_max_track = 0
        self.tracker = IouTracker(miss_interval_s=self.settings.miss_interval_s)
        self.policy = best_shot_policy(self.settings.overall_only, self.settings.realtime_interval_s,
                                       self.settings.realtime_every_interval)
        return source

    def _source_url(self) -> str:
        key = self.spec.get("media_key") or ""
        if key:
            return str(self.media.path(key))
        url = str(self.spec.get("url") or "")
        if not url:
            raise SourceOpenError("the job has neither a URL nor an uploaded file", param="url")
        return url

    def _consume(self, source: VideoSource) -> None:
        """Reads the source to its end (or until stopped), detecting and tracking in batches."""
        batch: list[Frame] = []
        every_n = self.settings.detect_every_n
        size = max(1, self.tuning.detect_batch)
        with source:
            for frame in source:
                self.counters.frames_handled += 1
                if self.live is not None:
                    self.live.frame(frame.image)  # ~1/s: live/camera-<id>.jpg + .json (actors/live_view.py)
                self._touch()
                if self._stop.is_set() or self._reconfigure.is_set():
                    return
                if not self.gate.check(frame.image):
                    self.counters.frames_motion_skipped += 1
                    continue
                if frame.index % every_n:
                    continue
                batch.append(frame)
                if len(batch) >= size:
                    self._detect(batch)
                    batch = []
                self._raise_if_video_post_failed()
            if batch and not self._stop.is_set():
                self._detect(batch)

    def _raise_if_video_post_failed(self) -> None:
        if self.single_pass and self._post_error is not None:
            raise PostFailed(f"posting faces failed: {_short(self._post_error)}")

    def _detect(self, frames: list[Frame]) -> None:
        detections = self.detector.detect_batch([f.image for f in frames])
        shots: list[ShotCandidate] = []
        for frame, found in zip(frames, detections, strict=True):
            self.counters.frames_processed += 1
            if self.settings.rot is not None and len(found):
                inside = inside_region(found.boxes, self.settings.rot)
                self.counters.faces_outside_rot += int((~inside).sum())
                found = found.select(inside)
            self.counters.faces_detected += len(found)
            shots.extend(self._track(frame, found))
        self._enqueue(shots)

    def _track(self, frame: Frame, found: Detections) -> list[ShotCandidate]:
        quality = face_quality(frame.image, found) if len(found) else np.zeros(0)
        update = self.tracker.update(frame.pts_s, found.boxes)
        if self.live is not None:
            self.live.faces([found.boxes[i] for _, i in update.assignments],
                            [self._track_base + t for t, _ in update.assignments])
        shots: list[ShotCandidate] = []
        for track in update.ended:
            shots.extend(self._end_track(self._track_base + track.track_id))
        frame_jpeg: bytes | None = None
        every_interval = isinstance(self.policy, EveryIntervalBest)
        for local_id, i in update.assignments:
            if local_id > self._local_max_track:
                self._local_max_track = local_id
                self.counters.tracks += 1
            track_id = self._track_base + local_id
            candidate = ShotCandidate(track_id, frame.pts_s, float(quality[i]), found.boxes[i])
            reason = self.post_filter.reason(candidate)
            if reason is not None:
                self.counters.faces_filtered[reason] = self.counters.faces_filtered.get(reason, 0) + 1
                continue
            # Overall and improving policies keep a candidate only when it beats every earlier one of
            # its track; only then is its payload (chip, crops, this frame's JPEG) worth making.
            if not every_interval and candidate.quality <= self._max_quality.get(track_id, -1.0):
                continue
            self._max_quality[track_id] = candidate.quality
            if frame_jpeg is None:
                frame_jpeg = encode_jpeg(frame.image, self.settings.jpeg_quality)
            payload = self._payload(frame, found, i, frame_jpeg)
            shots.extend(self.policy.offer(dataclasses.replace(candidate, payload=payload)))
        return shots

    def _payload(self, frame: Frame, found: Detections, i: int, frame_jpeg: bytes) -> ShotPayload:
        spec = self.embedder
        chip = align_faces(frame.image, found.landmarks[i:i + 1], size=spec.chip_size, template=spec.template,
                           padding=spec.padding)[0]
        return ShotPayload(chip=chip, thumbnail_jpeg=self._thumbnail(frame.image, found.boxes[i]),
                           frame_jpeg=frame_jpeg, detection_score=float(found.scores[i]),
                           wall_time=frame.wall_time, frame_index=frame.index)

    def _thumbnail(self, image: np.ndarray, box: np.ndarray) -> bytes:
        height, width = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        mx, my = (x2 - x1) * THUMBNAIL_MARGIN, (y2 - y1) * THUMBNAIL_MARGIN
        left, top = max(0, int(x1 - mx)), max(0, int(y1 - my))
        right, bottom = min(width, int(np.ceil(x2 + mx))), min(height, int(np.ceil(y2 + my)))
        crop = image[top:bottom, left:right] if right > left and bottom > top else image[:1, :1]
        side = max(crop.shape[:2])
        if side > THUMBNAIL_MAX_SIDE:
            scale = THUMBNAIL_MAX_SIDE / side
            crop = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))),
                              interpolation=cv2.INTER_AREA)
        return encode_jpeg(np.ascontiguousarray(crop), self.settings.jpeg_quality)

    def _end_track(self, track_id: int) -> list[ShotCandidate]:
        self._max_quality.pop(track_id, None)
        return self.policy.end_track(track_id)

    def _flush_tracks(self) -> None:
        """The source ended or broke: every track ends and owes its best shot."""
        if not hasattr(self, "tracker"):
            return
        shots: list[ShotCandidate] = []
        for track in self.tracker.finish():
            shots.extend(self._end_track(self._track_base + track.track_id))
        shots.extend(self.policy.finish())
        self._max_quality.clear()
        self._enqueue(shots)

    # -- posting ---------------------------------------------------------------------------------------

    def _enqueue(self, shots: list[ShotCandidate]) -> None:
        shots = [s for s in shots if s.payload is not None]
        if not shots:
            return
        if self.single_pass:
            self._post_queue.put(shots)
            return
        try:
            self._post_queue.put_nowait(shots)
        except queue.Full:  # the extractor or pipeline cannot keep up: a live camera must not fall behind
            self._count_failure(len(shots), "the post queue is full (extractor or event pipeline too slow)")

    def _post_loop(self) -> None:
        while True:
            shots = self._post_queue.get()
            if shots is None:
                return
            if self._stop.is_set() or self._draining:
                continue
            try:
                self._post(shots)
            except Exception as exc:
                self._count_failure(len(shots), f"posting {len(shots)} face(s) failed: {_short(exc)}")
                if self.single_pass:
                    self._post_error = exc
                    return

    def _post(self, shots: list[ShotCandidate]) -> None:
        quality = self.settings.jpeg_quality
        keys = []
        for shot in shots:
            p: ShotPayload = shot.payload
            keys.append((self.media.put(p.thumbnail_jpeg, "jpg"), self.media.put(encode_jpeg(p.chip, quality), "jpg"),
                         self.media.put(p.frame_jpeg, "jpg") if p.frame_jpeg else ""))
        chips = np.stack([shot.payload.chip for shot in shots])
        extracted = self._retry("the extractor pool", lambda: self._extract(chips))
        sightings = []
        for shot, (thumb, crop, frame), vector, attributes in zip(
                shots, keys, extracted["embeddings"], extracted["attributes"], strict=True):
            number = self._shot_numbers.get(shot.track_id, 0)
            self._shot_numbers[shot.track_id] = number + 1
            p = shot.payload
            sightings.append(FaceSighting(
                event_id=event_id_for(self.job_id, self.run_id, shot.track_id, number),
                job_id=self.job_id, camera_group_id=int(self.spec["camera_group_id"]), timestamp=p.wall_time,
                bbox=[round(float(v), 2) for v in shot.bbox], detection_score=p.detection_score,
                quality=float(shot.quality), embedding=np.asarray(vector, np.float32), model=str(extracted["model"]),
                camera_id=self.spec.get("camera_id"), video_id=self.spec.get("video_id"), track_id=shot.track_id,
                video_offset_s=round(float(shot.time_s), 3) if self.single_pass else None,
                attributes=dict(attributes or {}), thumbnail_key=thumb, crop_key=crop, frame_key=frame,
            ))
        ids = self._retry("the event pipeline", lambda: self._hand_over(sightings))
        self.counters.faces_posted += len(sightings)
        self.counters.events += sum(1 for i in ids if i is not None)
        self.counters.sightings_dropped += sum(1 for i in ids if i is None)

    def _extract(self, chips: np.ndarray) -> dict[str, Any]:
        if self._extractor is None:
            from ray import serve

            self._extractor = serve.get_deployment_handle(self.tuning.extractor_deployment,
                                                          app_name=self.tuning.extractor_app)
        try:
            return self._extractor.extract.remote(chips).result(timeout_s=self.tuning.call_timeout_s)
        except Exception:
            self._extractor = None  # look it up again on the next attempt
            raise

    def _hand_over(self, sightings: list[FaceSighting]) -> list[str | None]:
        if self._pipeline is None:
            self._pipeline = ray.get_actor(self.tuning.pipeline_name,
                                           namespace=self.tuning.pipeline_namespace or self.namespace)
        try:
            return ray.get(self._pipeline.post.remote(sightings), timeout=self.tuning.call_timeout_s)
        except Exception:
            self._pipeline = None
            raise

    def _retry(self, what: str, call: Callable[[], T]) -> T:
        delay = self.tuning.post_backoff_s
        for attempt in range(1, max(1, self.tuning.post_attempts) + 1):
            self._touch()
            try:
                return call()
            except Exception as exc:
                if attempt >= self.tuning.post_attempts or self._stop.is_set():
                    raise RuntimeError(f"{what}: {_short(exc)}") from exc
                log.warning("job %s: %s failed (attempt %d): %s", self.job_id, what, attempt, _short(exc))
                self._stop.wait(delay)
                delay *= 2
        raise AssertionError("unreachable")

    def _count_failure(self, faces: int, error: str) -> None:
        with self._lock:
            self.counters.faces_failed += faces
            self._last_error = error
            self._last_failure_at = time.monotonic()
        log.warning("job %s: %s", self.job_id, error)

    # -- reporting -------------------------------------------------------------------------------------

    def _touch(self) -> None:
        self._progress_at = time.monotonic()

    def _set_failing(self, error: str) -> None:
        self._failing_error = error
        self._last_error = error
        self._touch()
        log.warning("job %s: %s", self.job_id, error)

    def _status(self) -> tuple[str, str]:
        if self._failing_error:
            return "failing", self._failing_error
        recent_failure = time.monotonic() - self._last_failure_at < DEGRADED_AFTER_FAILURE_S
        dropped_now = self._beat_prev is not None and self._dropped() > self._beat_prev[3]
        if recent_failure:
            return "degraded", self._last_error
        if dropped_now:
            return "degraded", "frames are dropped: processing is slower than the stream"
        return "ok", ""

    def _decoded(self) -> int:
        return self._decoded_before + (self._source.frames_decoded if self._source else 0)

    def _dropped(self) -> int:
        return self._dropped_before + (self._source.frames_dropped if self._source else 0)

    def _stats(self) -> dict[str, Any]:
        c = self.counters
        now = time.monotonic()
        fps = detect_fps = 0.0
        if self._beat_prev is not None and now > self._beat_prev[0]:
            dt = now - self._beat_prev[0]
            fps = (c.frames_handled - self._beat_prev[1]) / dt
            detect_fps = (c.frames_processed - self._beat_prev[2]) / dt
        stats: dict[str, Any] = {
            "node_id": self.node_id, "kind": self.spec.get("kind"), "attempt": self.attempt,
            "frames_decoded": self._decoded(), "frames_processed": c.frames_processed,
            "frames_dropped": self._dropped(), "frames_motion_skipped": c.frames_motion_skipped,
            "fps": round(fps, 2), "detect_fps": round(detect_fps, 2),
            "faces_detected": c.faces_detected, "faces_outside_rot": c.faces_outside_rot,
            "faces_filtered": dict(c.faces_filtered), "faces_posted": c.faces_posted, "faces_failed": c.faces_failed,
            "events": c.events, "sightings_dropped": c.sightings_dropped, "tracks": c.tracks,
            "source_opens": c.source_opens, "source_errors": c.source_errors, "last_error": self._last_error,
        }
        if self._source is not None:
            stats["source"] = {"width": self._source.width, "height": self._source.height, "fps": self._source.fps}
        if self.single_pass:
            stats["frames_done"] = c.frames_handled
            stats["frames_total"] = max(self._frames_total or 0, c.frames_handled)
        return stats

    def _heartbeat_loop(self) -> None:
        while not self._done.is_set():
            stalled = time.monotonic() - self._progress_at > self.tuning.stall_timeout_s
            if stalled:
                # No heartbeat: the lease lapses and the manager re-places the job.
                log.error("job %s: no progress for %.0f s; letting the lease lapse", self.job_id,
                          self.tuning.stall_timeout_s)
            else:
                stats = self._stats()
                status, error = self._status()
                c = self.counters
                self._beat_prev = (time.monotonic(), c.frames_handled, c.frames_processed, self._dropped())
                answer = self._call("heartbeat", self.job_id, self.holder, stats, status, error)
                if answer is False:
                    log.warning("job %s: lease lost (holder %s); stopping", self.job_id, self.holder)
                    self._lease_lost = True
                    self._stop.set()
                    return
            self._check_camera_change()
            self._done.wait(self.heartbeat_s)

    def _summary(self, source: VideoSource) -> dict[str, Any]:
        c = self.counters
        counts = self._event_counts()
        frames_total = max(self._frames_total or 0, c.frames_handled)
        duration = self._duration_s if self._duration_s is not None else (
            c.frames_handled / source.fps if source.fps else 0.0)
        processing_s = time.monotonic() - (self._processing_started or time.monotonic())
        return {
            "frames_done": c.frames_handled, "frames_total": frames_total, "duration_s": round(float(duration), 3),
            "frames": c.frames_handled, "seconds": round(float(duration), 3), "processing_s": round(processing_s, 3),
            "frames_decoded": self._decoded(), "frames_dropped": self._dropped(),
            "frames_motion_skipped": c.frames_motion_skipped,
            "frames_processed": c.frames_processed, "faces_detected": c.faces_detected,
            "faces_posted": c.faces_posted, "faces_failed": c.faces_failed, "tracks": c.tracks,
            "sightings_dropped": c.sightings_dropped, **counts,
            "source_warning": source.last_error or "",
        }

    def _event_counts(self) -> dict[str, int]:
        """Events of this video (or job) in the DB: the truth after retries and restarts."""
        video_id = self.spec.get("video_id")
        column, value = (orm.Event.video_id, video_id) if video_id is not None else (orm.Event.job_id, self.job_id)
        with UnitOfWork(self.tuning.db_url) as uow:
            rows = uow.session.execute(
                select(orm.Event.matched, func.count()).where(column == value).group_by(orm.Event.matched)).all()
        by_matched = {bool(m): int(n) for m, n in rows}
        matched, unmatched = by_matched.get(True, 0), by_matched.get(False, 0)
        return {"events_count": matched + unmatched, "matched_count": matched, "unmatched_count": unmatched}

    def _report(self, method: str, payload: Any) -> None:
        deadline = time.monotonic() + REPORT_DEADLINE_S
        while time.monotonic() < deadline:
            if self._call(method, self.job_id, self.holder, payload) is not None:
                return
            time.sleep(0.5)
        log.error("job %s: the manager did not take %s()", self.job_id, method)

    def _call(self, method: str, *args: Any) -> Any:
        """A call on the manager; None when no manager answered (look it up again next time)."""
        try:
            if self._manager is None:
                self._manager = ray.get_actor(self.manager_name, namespace=self.namespace)
            return ray.get(getattr(self._manager, method).remote(*args), timeout=MANAGER_CALL_TIMEOUT_S)
        except (ValueError, RayError):
            self._manager = None
            return None


def _short(exc: BaseException) -> str:
    """One readable line of an error (Ray errors carry whole tracebacks)."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    if isinstance(cause, SourceError):
        return cause.reason
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[-1] if len(lines) > 1 else (lines[0] if lines else type(cause).__name__)
    return text[:500]
