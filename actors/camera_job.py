"""CameraJob: the Ray actor that runs one camera or one video through the video pipeline (SPEC §1.2, §3).

The actor only wires Ray-free parts together: `actors.frame_pipeline` (motion → detect → track →
best shot), `actors.face_posting` (media, extraction and hand-over with retries, in a thread),
`actors.job_lease` (heartbeats, stall watchdog, final reports) and `actors.job_status` (status,
statistics, summary). It owns the source (open, reopen with back-off, camera changes).

One actor per camera or video, placed by the JobManager (`actors.job_manager`), whose JOB-ACTOR
CONTRACT this class follows: constructor `(job_spec, manager_name, namespace)`, an idempotent
`run()`, a heartbeat every `heartbeat_s` with statistics, status and last error, and `finished` /
`failed` at the end.

Size: `CameraJob` is ~340 lines, over the ~300 a class should have, because the Ray actor must keep the
whole JOB-ACTOR CONTRACT and the source's life cycle (open, reopen with back-off, camera changes)
in one place; the frame work, posting and leasing are already the Ray-free parts named above. The
next cut is the source's life cycle into its own part, once this round's camera-detection work lands.

Inside its own process the job does, frame by frame::

    VideoSource (PyAV) → MotionGate → a camera: `detect_fps` detections a second on the newest
    frame; a video: every `detect_every_n`-th frame, in small batches → FaceDetector.detect_batch →
    drop faces outside `rot` → IouTracker (predicting between detections) → face_quality →
    PostFilter (roi, min_quality, min/max face size) → best-shot policy → shots to post

and for every shot to post: the aligned chip in the active embedder's geometry (≤ 160×160), a
thumbnail (the face box with a margin), the normalised crop (the chip) and the full frame as JPEGs
are written to the shared media store BY THE JOB; the chips go to the extractor pool (Ray Serve,
batched) and the resulting `FaceSighting`s to the `EventPipeline` actor of the camera's group
(actors/pipeline_router.py). Frames never leave the process; a track keeps only the payload of its
current best shot (chip, small crops, and the JPEG bytes of that one frame, encoded at once).

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
  or frames were dropped since the last heartbeat (after decoding, or before it when the decoder fell
  behind: `frames_dropped_undecoded`), with the reason; `ok` otherwise (the manager shows `starting`
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
db_url and media_root (required), pipeline_name / pipelines / pipeline_namespace, extractor_app /
extractor_deployment, detect_batch, open_timeout_s, read_timeout_s, reopen_initial_s,
reopen_max_s, post_attempts, post_backoff_s, call_timeout_s, stall_timeout_s, torch_threads.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import ray

from actors.face_posting import FacePoster, SightingSource
from actors.frame_pipeline import Counters, FramePipeline, ShotPayload, StreamConfig
from actors.job_lease import JobLease, ray_manager_call
from actors.job_status import Beat, JobHealth, job_stats, short_error, video_summary
from actors.live_view import LiveView
from actors.pipeline_router import PipelineRouter
from actors.video_source import SourceError, SourceOpenError, SourceReadError, VideoSource, reopen_delays
from actors.vms_cameras import resolve_source_url
from facewatch.chips import ChipBatch
from facewatch.gc_pauses import freeze_start_up_objects
from facewatch.names import EVENT_PIPELINE
from facewatch.sightings import FaceSighting
from models.detector import make_detector
from models.embedders import embedder_spec
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork

# Re-exported: the names other modules and tests import from here.
__all__ = ["CameraJob", "Counters", "JobTuning", "PostFailed", "ShotPayload", "StreamConfig"]

log = logging.getLogger("facewatch.camera_job")

PIPELINE_NAME = EVENT_PIPELINE
EXTRACTOR_NAME = "facewatch-extractor"  # deployment and app name of serve_apps.extractor


@dataclass(frozen=True)
class JobTuning:
    """Process-level knobs from the top-level job_spec keys (the manager's spec_defaults)."""

    db_url: str
    media_root: str
    pipeline_name: str = PIPELINE_NAME  # the first event pipeline's name (actors/pipeline_router.py)
    pipelines: int = 1  # FACEWATCH_EVENT_PIPELINES
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
    detector: str = "auto"  # FACEWATCH_FACE_DETECTOR: auto (yuface on a CPU, MTCNN on a GPU), yuface, mtcnn

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> JobTuning:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("db_url", "media_root") if not spec.get(k)]
        if missing:
            raise ValueError(f"the job spec lacks {', '.join(missing)} (set them in the manager's spec_defaults)")
        return cls(**{k: v for k, v in spec.items() if k in names and v is not None})


class PostFailed(RuntimeError):
    """Shots could not be handed over after every retry."""


def detector_device(granted_gpu_ids: Sequence[Any]) -> str:
    """"cuda" only when Ray granted this job a GPU (FACEWATCH_CAMERA_GPU_FRACTION), else "cpu": a job must
    not take whatever CUDA device it happens to see, which Ray may have given to someone else."""
    return "cuda" if len(granted_gpu_ids) > 0 else "cpu"


def job_detector(name: str, settings: StreamConfig, granted_gpu_ids: Sequence[Any]) -> Any:
    """The camera job's detector: the setting `name` ("auto": yuface on the CPU, MTCNN on a granted GPU)."""
    return make_detector(name, min_face_size=max(int(settings.min_face_size), 1),
                         device=detector_device(granted_gpu_ids), max_side=settings.detect_max_side)


# OpenCV's thread pool in a live camera's process: none. A camera's OpenCV calls (scaling its frame for
# detection, aligning chips, encoding JPEGs) are small, and splitting them over a pool of one thread per
# core cost about 3.5 ms of CPU more per detection (a 720p frame scaled to 480 px and detected: 33.7
# against 30.2 ms of process CPU, 2-core dev machine) for a speed a live stream cannot use, on a node
# whose other cameras want those cores. A video, read as fast as it can, keeps the pool.
LIVE_OPENCV_THREADS = 1


@ray.remote(num_cpus=0, max_concurrency=4)  # run() blocks one thread; info()/stop() answer on others
class CameraJob:
    def __init__(self, job_spec: dict[str, Any], manager_name: str, namespace: str) -> None:
        self.spec = dict(job_spec)
        self.job_id = int(self.spec["job_id"])
        self.holder = str(self.spec["holder"])
        self.attempt = int(self.spec.get("attempt") or 1)
        self.single_pass = bool(self.spec.get("single_pass"))
        self.settings = StreamConfig.from_dict(self.spec.get("stream_settings"))
        self.tuning = JobTuning.from_spec(self.spec)
        self.namespace = namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self.counters = Counters()
        self.media = LocalMediaStore(self.tuning.media_root)
        self.run_id = 0 if self.single_pass else self.attempt
        self.health = JobHealth(self.job_id)
        camera_id = None if self.single_pass else self.spec.get("camera_id")  # the console's live view:
        self.live = LiveView(self.tuning.media_root, int(camera_id)) if camera_id is not None else None
        self.lease = JobLease(self.job_id, self.holder, ray_manager_call(manager_name, namespace),
                              float(self.spec.get("heartbeat_s") or 4.0), self.tuning.stall_timeout_s)

        self._stop = threading.Event()
        self._done = threading.Event()
        self._reconfigure = threading.Event()
        self._camera_source = (self.spec.get("url") or "", dict(self.spec.get("stream_settings") or {}))
        self._pending_source = self._camera_source
        self._started = False
        self._outcome = ""
        self._pipelines = PipelineRouter(self.tuning.pipelines, self.tuning.pipeline_namespace or namespace,
                                         self.tuning.pipeline_name)
        self._extractor: Any = None
        self._frames_total: int | None = None
        self._duration_s: float | None = None
        self._processing_started: float | None = None
        self._beat_prev: Beat | None = None
        self._decoded_before = 0
        self._dropped_before = 0
        self._undecoded_before = 0
        self._source: VideoSource | None = None
        self._gc_frozen = 0
        self.frames: FramePipeline | None = None
        self.poster = FacePoster(
            SightingSource(self.job_id, self.run_id, int(self.spec["camera_group_id"]), self.spec.get("camera_id"),
                           self.spec.get("video_id"), self.single_pass),
            self.media, self.counters, self.health, self._extract, self._hand_over, self._stop,
            attempts=self.tuning.post_attempts, backoff_s=self.tuning.post_backoff_s, touch=self.lease.touch)
        self.poster.jpeg_quality = self.settings.jpeg_quality

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
            error = short_error(exc)
            if isinstance(exc, SourceError | PostFailed):
                log.warning("job %s failed: %s", self.job_id, error)
            else:
                log.exception("job %s failed", self.job_id)
            self.health.last_error = error
            if not self.lease.lost:
                self.lease.report("failed", error)
            self._outcome = f"failed: {error}"
        finally:
            self._stop.set()
            self._done.set()
            if self.live is not None and not self.lease.lost:  # (a successor may be writing it already)
                self.live.close()
        return self._outcome

    def info(self) -> dict[str, Any]:
        """For tests and debugging: where the job runs and how far it got."""
        status, error = self._status()
        return {"job_id": self.job_id, "holder": self.holder, "attempt": self.attempt, "node_id": self.node_id,
                "status": status, "error": error, "outcome": self._outcome, "stats": self._stats(),
                "url": self.spec.get("url"), "settings": self.settings.model_dump(),
                "gc_frozen_objects": self._gc_frozen, "opencv_threads": cv2.getNumThreads()}

    def stop(self) -> None:
        """Stop the pipeline soon (without reporting an outcome); the manager normally kills instead."""
        self._stop.set()

    # -- the job ---------------------------------------------------------------------------------------

    def _run(self) -> str:
        self.lease.touch()
        if self.tuning.torch_threads:
            import torch

            torch.set_num_threads(int(self.tuning.torch_threads))
        if not self.single_pass:
            cv2.setNumThreads(LIVE_OPENCV_THREADS)
        with UnitOfWork(self.tuning.db_url) as uow:
            embedder = embedder_spec(str(uow.settings.get("embedder")))
        self.frames = FramePipeline(self.settings, embedder, self.counters, detect_batch=self.tuning.detect_batch,
                                    detector_factory=self._make_detector, live=not self.single_pass)
        if self.live is not None:
            self.frames.on_tracked = self.live.faces
        # Everything imported and built so far lives as long as the job: out of the collector's full
        # passes, which otherwise stall decoding and detection for ~0.2-0.6 s (facewatch/gc_pauses.py).
        self._gc_frozen = freeze_start_up_objects()
        self.poster.start()
        try:
            if self.single_pass:
                return self._run_video()
            self._run_live()
            return "stopped"
        finally:
            self.poster.abandon()  # the poster drops what is left without posting it

    def _run_video(self) -> str:
        try:
            source = self._open(live=False)
        except SourceOpenError as exc:
            self.health.failing_error = exc.reason
            raise
        self._processing_started = time.monotonic()
        self._consume(source)
        self._end_tracks()
        self.poster.finish()
        while self.poster.is_alive():  # the last posts; the heartbeat keeps the lease meanwhile
            self.poster.join(timeout=1.0)
            self.lease.touch()
            if self._stop.is_set():
                break
        if self._stop.is_set():
            return "lease lost" if self.lease.lost else "stopped"
        self._raise_if_video_post_failed()
        self.lease.report("finished", self._summary(source))
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
            delays = None
            self.health.source_up()
            if self._processing_started is None:
                self._processing_started = time.monotonic()
            try:
                self._consume(source)
                reason = "the stream ended"
            except SourceReadError as exc:
                reason = exc.reason
            self._end_tracks()
            if self._stop.is_set():
                return
            if self._reconfigure.is_set():
                continue  # the camera's URL or settings changed: reopen with the new ones at once
            self.counters.source_errors += 1
            self._set_failing(f"{reason}; reopening")
            reopen_at_once = True

    def _consume(self, source: VideoSource) -> None:
        """Reads the source to its end (or until stopped), feeding the frame pipeline."""
        frames = self._frame_pipeline()
        with source:
            for frame in source:
                self.counters.frames_handled += 1
                if self.live is not None:
                    self.live.frame(lambda f=frame: f.image)  # ~1/s: live/camera-<id>.jpg + .json (live_view)
                self.lease.touch()
                if self._stop.is_set() or self._reconfigure.is_set():
                    return
                self.poster.enqueue(frames.push(frame))
                self._raise_if_video_post_failed()
            if not self._stop.is_set():
                self.poster.enqueue(frames.drain())

    def _end_tracks(self) -> None:
        """The source ended or broke: every track ends and owes its best shot."""
        if self.frames is not None:
            self.poster.enqueue(self.frames.end_tracks())

    def _make_detector(self, settings: StreamConfig) -> Any:
        return job_detector(self.tuning.detector, settings, ray.get_gpu_ids())

    def _frame_pipeline(self) -> FramePipeline:
        if self.frames is None:
            raise RuntimeError("the frame pipeline is built in run()")
        return self.frames

    def _raise_if_video_post_failed(self) -> None:
        if self.single_pass and self.poster.error is not None:
            raise PostFailed(f"posting faces failed: {short_error(self.poster.error)}")

    def _sleep(self, seconds: float) -> None:
        """Waits, but wakes up at once when the job is stopped or its camera changed."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and not self._reconfigure.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(min(left, 0.2))

    # -- the source ------------------------------------------------------------------------------------

    def _open(self, live: bool) -> VideoSource:
        self.lease.touch()
        s = self.settings
        source = VideoSource(
            self._source_url(), ffmpeg_options=s.ffmpeg_options, open_timeout_s=self.tuning.open_timeout_s,
            read_timeout_s=self.tuning.read_timeout_s, play_speed=s.play_speed, live=live,
            disable_drops=s.disable_drops, use_stream_timestamp=s.use_stream_timestamp,
            start_timestamp=s.start_timestamp, name="the uploaded video" if self.spec.get("media_key") else None,
        )
        self.counters.source_opens += 1
        if self._source is not None:  # counters of the previous source of this attempt
            self._decoded_before += self._source.frames_decoded
            self._dropped_before += self._source.frames_dropped
            self._undecoded_before += self._source.frames_dropped_undecoded
        self._source = source
        if self.single_pass:
            fps = source.fps or 0.0
            self._frames_total = source.frames_total or (round(source.duration_s * fps) if source.duration_s else None)
            self._duration_s = source.duration_s
        self._frame_pipeline().start_source()
        return source

    def _source_url(self) -> str:
        key = self.spec.get("media_key") or ""
        if key:
            return str(self.media.path(key))
        url = str(self.spec.get("url") or "")
        if not url:
            raise SourceOpenError("the job has neither a URL nor an uploaded file", param="url")
        # A VMS camera's stream URL is asked of its plug-in at every open (such URLs expire).
        return resolve_source_url(url, self.tuning.db_url)

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
        self._frame_pipeline().configure(self.settings)
        self.poster.jpeg_quality = self.settings.jpeg_quality
        self._reconfigure.clear()

    # -- posting (the Ray side of FacePoster) ------------------------------------------------------------

    def _extract(self, chips: ChipBatch) -> dict[str, Any]:
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
        return self._pipelines.post(sightings, timeout_s=self.tuning.call_timeout_s)

    # -- reporting -------------------------------------------------------------------------------------

    def _set_failing(self, error: str) -> None:
        self.health.set_failing(error)
        self.lease.touch()

    def _status(self) -> tuple[str, str]:
        prev = self._beat_prev
        return self.health.status(prev is not None and self._dropped() > prev.dropped,
                                  prev is not None and self._undecoded() > prev.dropped_undecoded)

    def _decoded(self) -> int:
        return self._decoded_before + (self._source.frames_decoded if self._source else 0)

    def _dropped(self) -> int:
        return self._dropped_before + (self._source.frames_dropped if self._source else 0)

    def _undecoded(self) -> int:
        return self._undecoded_before + (self._source.frames_dropped_undecoded if self._source else 0)

    def _stats(self) -> dict[str, Any]:
        c = self.counters
        stats = job_stats(c, self._decoded(), self._dropped(), self._beat_prev, time.monotonic(),
                          {"node_id": self.node_id, "kind": self.spec.get("kind"), "attempt": self.attempt,
                           "frames_dropped_undecoded": self._undecoded()})
        stats["last_error"] = self.health.last_error
        if self._source is not None:
            stats["source"] = {"width": self._source.width, "height": self._source.height, "fps": self._source.fps}
        if self.single_pass:
            stats["frames_done"] = c.frames_handled
            stats["frames_total"] = max(self._frames_total or 0, c.frames_handled)
        return stats

    def _heartbeat_snapshot(self) -> tuple[dict[str, Any], str, str]:
        stats = self._stats()
        status, error = self._status()
        c = self.counters
        self._beat_prev = Beat(time.monotonic(), c.frames_handled, c.frames_processed, self._dropped(),
                               self._undecoded())
        return stats, status, error

    def _heartbeat_loop(self) -> None:
        self.lease.run(self._done, self._heartbeat_snapshot, self._check_camera_change)
        if self.lease.lost:
            self._stop.set()

    def _summary(self, source: VideoSource) -> dict[str, Any]:
        """Events of this video (or job) are counted in the DB: the truth after retries and restarts."""
        video_id = self.spec.get("video_id")
        with UnitOfWork(self.tuning.db_url) as uow:
            counts = uow.events.matched_counts(video_id=video_id, job_id=self.job_id)
        processing_s = time.monotonic() - (self._processing_started or time.monotonic())
        return video_summary(self.counters, self._decoded(), self._dropped(), self._frames_total, self._duration_s,
                             source.fps, processing_s, counts, source.last_error or "")
