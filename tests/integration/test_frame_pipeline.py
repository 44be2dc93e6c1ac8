"""The camera job's Ray-free parts: frame pipeline, posting with retries, health, lease.

The frame pipeline runs the real detector on real frames of the shared clip; posting runs with plain
functions in place of the extractor and the event pipeline; the lease with a recording function in
place of the manager actor.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from actors.best_shot import ShotCandidate
from actors.face_posting import FacePoster, SightingSource, retry
from actors.frame_pipeline import Counters, FramePipeline, ShotPayload, StreamConfig, thumbnail_jpeg
from actors.job_lease import JobLease
from actors.job_status import DROPPING_ERROR, JobHealth, job_stats, video_summary
from actors.track_identity import TRACK_SAMPLES
from actors.video_source import Frame
from facewatch.chips import ChipBatch
from facewatch.sightings import FaceSighting
from models.embedders import embedder_spec
from storage.media import LocalMediaStore

EMBEDDER = embedder_spec("dlib_resnet_v1")


def clip_frames(data_dir: Path, start: int, stop: int) -> list[Frame]:
    frames = []
    with av.open(str(data_dir / "video" / "short_hamilton_clip.mp4")) as container:
        for index, av_frame in enumerate(container.decode(video=0)):
            if index >= stop:
                break
            if index >= start:
                frames.append(Frame(image=av_frame.to_ndarray(format="rgb24"), index=index, pts_s=index / 29.97,
                                    wall_time=datetime(2026, 1, 1, tzinfo=UTC)))
    return frames


@pytest.fixture(scope="module")
def miranda_frames(data_dir: Path) -> list[Frame]:
    return clip_frames(data_dir, 150, 162)  # Miranda's close-up, face ~100 px


def test_pipeline_tracks_one_face_and_posts_its_best_shot_at_the_end(miranda_frames: list[Frame]) -> None:
    counters = Counters()
    pipe = FramePipeline(StreamConfig(min_face_size=80, detect_every_n=2), EMBEDDER, counters, detect_batch=3)
    shots: list[ShotCandidate] = []
    for frame in miranda_frames:
        shots += pipe.push(frame)
    shots += pipe.drain()
    assert shots == []  # overall mode: nothing before the track ends
    assert counters.frames_processed == 6  # every 2nd of 12 frames
    assert counters.tracks == 1
    ended = pipe.end_tracks()
    assert len(ended) == 1
    payload = ended[0].payload
    assert isinstance(payload, ShotPayload)
    assert payload.chip.shape == (EMBEDDER.chip_size, EMBEDDER.chip_size, 3)
    assert payload.frame_jpeg[:2] == b"\xff\xd8" and payload.thumbnail_jpeg[:2] == b"\xff\xd8"
    assert payload.frame_index % 2 == 0
    # The shot carries the track's best frames (track-level identity): 5 of its 6, best first, itself first.
    samples = payload.samples
    assert len(samples) == TRACK_SAMPLES and [s.quality for s in samples] == sorted((s.quality for s in samples),
                                                                                     reverse=True)
    assert samples[0].frame_index == payload.frame_index and samples[0].quality == ended[0].quality
    assert all(s.chip.shape == payload.chip.shape and s.frame_index % 2 == 0 for s in samples)
    # A new source continues the track ids, so event ids stay unique within a run.
    pipe.start_source()
    for frame in miranda_frames[:4]:
        pipe.push(frame)
    pipe.drain()
    again = pipe.end_tracks()
    assert [s.track_id for s in again] == [ended[0].track_id + 1]
    # A track detected on one frame only is never posted (a one-frame flicker is not taken for a face).
    pipe.start_source()
    for frame in miranda_frames[:2]:
        pipe.push(frame)
    pipe.drain()
    assert pipe.end_tracks() == [] and counters.tracks_unconfirmed == 1


def test_pipeline_filters_and_counts_reasons(miranda_frames: list[Frame]) -> None:
    counters = Counters()
    pipe = FramePipeline(StreamConfig(min_face_size=40, min_quality=0.99, overall_only=False), EMBEDDER, counters,
                         detect_batch=2)
    for frame in miranda_frames[:4]:
        assert pipe.push(frame) == []
    assert pipe.end_tracks() == []
    assert counters.faces_filtered.get("low_quality", 0) >= 4
    # A rot that excludes the whole frame drops faces before tracking.
    rot_counters = Counters()
    pipe = FramePipeline(StreamConfig(min_face_size=40, rot=(0, 0, 5, 5)), EMBEDDER, rot_counters)
    for frame in miranda_frames[:4]:
        pipe.push(frame)
    assert rot_counters.faces_outside_rot >= 4 and rot_counters.faces_detected == 0 and rot_counters.tracks == 0


def test_realtime_pipeline_posts_the_first_shot_once_the_track_is_confirmed(miranda_frames: list[Frame]) -> None:
    pipe = FramePipeline(StreamConfig(min_face_size=80, overall_only=False), EMBEDDER, detect_batch=1)
    assert pipe.push(miranda_frames[0]) == []  # one detection: not yet a track (MIN_TRACK_HITS)
    first = pipe.push(miranda_frames[1])
    assert len(first) >= 1 and first[0].payload is not None
    assert first[0].payload.frame_index == miranda_frames[0].index  # the held first shot, at its second detection
    assert {s.frame_index for s in first[0].payload.samples} == {f.index for f in miranda_frames[:2]}


def test_motion_gate_skips_repeated_frames(miranda_frames: list[Frame]) -> None:
    counters = Counters()
    pipe = FramePipeline(StreamConfig(motion_threshold=0.05), EMBEDDER, counters, detect_batch=1)
    frame = miranda_frames[0]
    pipe.push(frame)
    pipe.push(Frame(image=frame.image.copy(), index=frame.index + 1, pts_s=frame.pts_s + 0.03,
                    wall_time=frame.wall_time))
    assert counters.frames_motion_skipped == 1 and counters.frames_processed == 1


def test_configure_keeps_the_detector_unless_its_settings_change() -> None:
    made: list[int] = []

    def factory(settings: StreamConfig) -> Any:
        made.append(settings.min_face_size)
        return object()

    pipe = FramePipeline(StreamConfig(min_face_size=30), EMBEDDER, detector_factory=factory)
    pipe.configure(StreamConfig(min_face_size=30, min_quality=0.5))
    pipe.configure(StreamConfig(min_face_size=50))
    assert made == [30, 50]


def test_a_live_camera_detects_at_480_and_a_video_at_640_unless_set() -> None:
    """The detection size when the stream settings leave it unset: 480 for a live camera (it must keep
    up at detect_fps on few cores), 640 for a video (read without a clock); a set size is kept."""
    sizes: list[int | None] = []

    def factory(settings: StreamConfig) -> Any:
        sizes.append(settings.detect_max_side)
        return object()

    assert StreamConfig().detect_max_side is None
    FramePipeline(StreamConfig(), EMBEDDER, detector_factory=factory, live=True)
    FramePipeline(StreamConfig(), EMBEDDER, detector_factory=factory)
    FramePipeline(StreamConfig(detect_max_side=960), EMBEDDER, detector_factory=factory, live=True)
    assert sizes == [480, 640, 960]


def test_thumbnail_is_bounded_and_clipped_to_the_frame() -> None:
    image = np.full((900, 1600, 3), 128, np.uint8)
    jpeg = thumbnail_jpeg(image, np.array([-50, -50, 1500, 880]), 90)
    import cv2

    decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert max(decoded.shape[:2]) == 320


# -- posting -------------------------------------------------------------------------------------------


def shot(track_id: int, quality: float = 0.5) -> ShotCandidate:
    payload = ShotPayload(chip=np.full((150, 150, 3), track_id, np.uint8), thumbnail_jpeg=b"\xff\xd8thumb",
                          frame_jpeg=b"\xff\xd8frame", detection_score=0.99,
                          wall_time=datetime(2026, 1, 1, tzinfo=UTC), frame_index=7)
    return ShotCandidate(track_id, 1.25, quality, np.array([1.0, 2.0, 30.0, 40.0]), payload)


class Extractor:
    """A stand-in extractor that fails its first `failures` calls."""

    def __init__(self, failures: int = 0) -> None:
        self.failures, self.calls = failures, 0

    def __call__(self, batch: ChipBatch) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"extractor down (call {self.calls})")
        vectors = np.eye(len(batch), 4, dtype=np.float32)
        return {"embeddings": list(vectors), "attributes": [{"n": int(c[0, 0, 0])} for c in batch.chips],
                "model": "m"}


def make_poster(tmp_path: Path, extractor: Extractor, received: list[FaceSighting], single_pass: bool = True,
                attempts: int = 3) -> tuple[FacePoster, Counters, JobHealth]:
    counters, health = Counters(), JobHealth(7)

    def hand_over(sightings: list[FaceSighting]) -> list[str | None]:
        received.extend(sightings)
        return [s.event_id if s.track_id != 99 else None for s in sightings]

    poster = FacePoster(SightingSource(7, 0, 3, camera_id=None, video_id=11, single_pass=single_pass),
                        LocalMediaStore(str(tmp_path / "media")), counters, health, extractor, hand_over,
                        threading.Event(), attempts=attempts, backoff_s=0.01)
    return poster, counters, health


def test_post_stores_media_and_builds_idempotent_sightings(tmp_path: Path) -> None:
    received: list[FaceSighting] = []
    extractor = Extractor(failures=1)  # one retry
    poster, counters, health = make_poster(tmp_path, extractor, received)
    ids = poster.post([shot(1), shot(99)])
    assert extractor.calls == 2
    assert ids == ["j7-r0-t1-s0", None]
    assert (counters.faces_posted, counters.events, counters.sightings_dropped) == (2, 1, 1)
    first = received[0]
    assert first.video_offset_s == 1.25 and first.camera_group_id == 3 and first.video_id == 11
    assert first.attributes == {"n": 1} and first.model == "m" and first.bbox == [1.0, 2.0, 30.0, 40.0]
    media = LocalMediaStore(str(tmp_path / "media"))
    assert media.path(first.thumbnail_key).read_bytes() == b"\xff\xd8thumb"
    assert media.path(first.frame_key).read_bytes() == b"\xff\xd8frame"
    poster.post([shot(1)])
    assert received[-1].event_id == "j7-r0-t1-s1"  # the track's second shot


def test_a_video_poster_stops_at_the_first_failed_batch(tmp_path: Path) -> None:
    received: list[FaceSighting] = []
    poster, counters, health = make_poster(tmp_path, Extractor(failures=100), received, attempts=2)
    poster.start()
    poster.enqueue([shot(1), shot(2)])
    poster.enqueue([shot(3)])
    poster.finish()
    poster.join(timeout=10)
    assert not poster.is_alive()
    assert isinstance(poster.error, RuntimeError) and "the extractor pool" in str(poster.error)
    assert counters.faces_failed == 2 and received == []
    assert health.status(dropping=False)[0] == "degraded"


def test_a_live_poster_with_a_full_queue_drops_and_counts(tmp_path: Path) -> None:
    poster, counters, health = make_poster(tmp_path, Extractor(), [], single_pass=False)
    for _ in range(40):  # not started: nothing drains the 32-batch queue
        poster.enqueue([shot(1)])
    assert counters.faces_failed == 8
    assert "post queue is full" in health.last_error


def test_retry_gives_up_with_the_last_error_and_stops_early() -> None:
    calls: list[int] = []

    def failing() -> None:
        calls.append(1)
        raise ValueError("boom\nlast line")

    with pytest.raises(RuntimeError, match="the thing: last line"):
        retry("the thing", failing, 3, 0.001, threading.Event())
    assert len(calls) == 3
    stop = threading.Event()
    stop.set()
    calls.clear()
    with pytest.raises(RuntimeError):
        retry("the thing", failing, 5, 10.0, stop)
    assert len(calls) == 1


# -- health, statistics, lease ----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_status_rules() -> None:
    clock = Clock()
    health = JobHealth(1, clock=clock)
    assert health.status(dropping=False) == ("ok", "")
    assert health.status(dropping=True) == ("degraded", DROPPING_ERROR)
    health.record_failure(Counters(), 2, "extractor down")
    assert health.status(dropping=False) == ("degraded", "extractor down")
    clock.now += 31
    assert health.status(dropping=False) == ("ok", "")
    health.set_failing("cannot open")
    assert health.status(dropping=False) == ("failing", "cannot open")
    health.source_up()
    assert health.status(dropping=False) == ("ok", "")


def test_stats_rates_and_video_summary() -> None:
    from actors.job_status import Beat

    c = Counters(frames_handled=100, frames_processed=40)
    stats = job_stats(c, 110, 3, Beat(at=10.0, handled=50, processed=20, dropped=0), 12.0, {"node_id": "n"})
    assert (stats["fps"], stats["detect_fps"], stats["frames_dropped"], stats["node_id"]) == (25.0, 10.0, 3, "n")
    summary = video_summary(c, 110, 0, None, None, 25.0, 1.5, {"events_count": 2}, "")
    assert summary["frames_total"] == 100 and summary["duration_s"] == 4.0 and summary["events_count"] == 2


def test_lease_beats_until_lost_and_skips_beats_while_stalled() -> None:
    clock = Clock()
    calls: list[tuple[Any, ...]] = []
    answers = iter([True, None, False])  # None: no manager answered, which keeps the lease

    def call(method: str, *args: Any) -> Any:
        calls.append((method, *args))
        return next(answers)

    lease = JobLease(5, "h", call, heartbeat_s=0.0, stall_timeout_s=60, clock=clock)
    after: list[int] = []
    lease.run(threading.Event(), lambda: ({"x": 1}, "ok", ""), lambda: after.append(1))
    assert lease.lost and [c[0] for c in calls] == ["heartbeat"] * 3 and len(after) == 2
    assert calls[0] == ("heartbeat", 5, "h", {"x": 1}, "ok", "")

    stalled_calls: list[Any] = []
    lease = JobLease(5, "h", lambda *a: stalled_calls.append(a), heartbeat_s=0.0, stall_timeout_s=60, clock=clock)
    clock.now += 61
    done = threading.Event()
    beats = 0

    def after_beat() -> None:
        nonlocal beats
        beats += 1
        if beats == 3:
            done.set()

    lease.run(done, lambda: ({}, "ok", ""), after_beat)
    assert stalled_calls == [] and not lease.lost
    lease.touch()
    assert not lease.stalled()


def test_report_retries_until_a_manager_takes_it() -> None:
    answers = iter([None, None, True])
    lease = JobLease(5, "h", lambda *a: next(answers), heartbeat_s=1, stall_timeout_s=60)
    assert lease.report("finished", {"frames": 1}, deadline_s=10)
    lease = JobLease(5, "h", lambda *a: None, heartbeat_s=1, stall_timeout_s=60)
    assert not lease.report("failed", "x", deadline_s=0.6)
