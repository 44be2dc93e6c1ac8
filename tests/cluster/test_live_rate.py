"""A live camera keeps up: detection at `detect_fps` on the newest frame, tracking between, RGB only when
used, and a decoder that falls behind drops packets before decoding (issue 14 item 6). Without Ray.

The frame pipeline runs the real detector on real frames of the shared clip, handed in as a live
source hands them: lazily converted frames that say how many wait behind them.
"""

from __future__ import annotations

import ctypes
import itertools
import time
from datetime import UTC, datetime
from pathlib import Path

import av
import numpy as np
import pytest

from actors.decode_lag import DecodeLag
from actors.frame_pipeline import Counters, DetectClock, FramePipeline, StreamConfig
from actors.job_status import DECODE_BEHIND_ERROR, DROPPING_ERROR, JobHealth
from actors.tracking import IouTracker
from actors.video_source import DETECT_LAG_TOLERANCE_S, Frame, VideoSource
from models.embedders import embedder_spec
from tests.rtsp_server import RtspCamera, gstreamer_missing, looped_copy

EMBEDDER = embedder_spec("dlib_resnet_v1")
FPS = 29.97


class LazyFrames:
    """Clip frames as a live source gives them: converted to RGB only when `image` is read (counted)."""

    def __init__(self, data_dir: Path, start: int, stop: int) -> None:
        with av.open(str(data_dir / "video" / "short_hamilton_clip.mp4")) as container:
            self.images = [f.to_ndarray(format="rgb24") for f in itertools.islice(container.decode(video=0), stop)]
        self.images = self.images[start:]
        self.start = start
        self.converted: list[int] = []

    def frame(self, i: int, backlog: int = 0) -> Frame:
        index = self.start + i

        def convert() -> np.ndarray:
            self.converted.append(index)
            return self.images[i]

        return Frame(index, index / FPS, datetime(2026, 1, 1, tzinfo=UTC), convert=convert, size=(640, 360),
                     backlog=backlog)


@pytest.fixture(scope="module")
def miranda(data_dir: Path) -> LazyFrames:
    return LazyFrames(data_dir, 150, 210)  # 2 s of Miranda's close-up (face ~100 px) at 29.97 fps


def test_live_pipeline_detects_at_detect_fps_and_converts_only_what_it_detects(miranda: LazyFrames) -> None:
    miranda.converted.clear()
    counters = Counters()
    pipe = FramePipeline(StreamConfig(min_face_size=60, detect_fps=5), EMBEDDER, counters, live=True)
    shots = []
    for i in range(len(miranda.images)):
        shots += pipe.push(miranda.frame(i))
    # 60 frames = 2.0 s of stream time at 5 detections a second, one at a time (no batch waiting).
    assert counters.frames_processed == 10
    assert len(miranda.converted) == 10  # the 50 frames between were never converted to RGB
    assert np.diff(miranda.converted).tolist() == [6] * 9  # evenly spaced: every 6th of 29.97 fps
    assert counters.tracks == 1 and shots == []  # one face, tracked across the frames between
    ended = pipe.end_tracks()
    assert len(ended) == 1 and ended[0].payload.frame_index in miranda.converted


def test_a_live_pipeline_detects_on_the_newest_frame_when_behind(miranda: LazyFrames) -> None:
    """A frame with others queued behind it is tracked, not detected: detection waits for the newest,
    so a slow detector makes detection rarer, not the decoder drop frames."""
    counters = Counters()
    pipe = FramePipeline(StreamConfig(min_face_size=60, detect_fps=5), EMBEDDER, counters, live=True)
    pipe.push(miranda.frame(0))
    assert counters.frames_processed == 1
    for i in range(1, 12):  # due again from frame 6, but these all had frames waiting behind them
        pipe.push(miranda.frame(i, backlog=2))
    assert counters.frames_processed == 1
    pipe.push(miranda.frame(12))
    assert counters.frames_processed == 2


def test_files_are_not_rate_limited(miranda: LazyFrames) -> None:
    """A video job (live=False) detects every `detect_every_n`-th frame whatever detect_fps says, and
    converts only those frames."""
    miranda.converted.clear()
    counters = Counters()
    pipe = FramePipeline(StreamConfig(min_face_size=60, detect_fps=5, detect_every_n=3), EMBEDDER, counters,
                         detect_batch=4)
    for i in range(24):
        pipe.push(miranda.frame(i))
    pipe.drain()
    assert counters.frames_processed == 8 and len(miranda.converted) == 8


def test_tracks_of_a_live_pipeline_end_on_time_between_detections(miranda: LazyFrames) -> None:
    """When no detection runs (always behind), a track still ends after miss_interval_s and posts.
    Its face is detected twice first: a track posts only once detected on MIN_TRACK_HITS frames."""
    pipe = FramePipeline(StreamConfig(min_face_size=60, detect_fps=5, miss_interval_s=0.5), EMBEDDER, live=True)
    shots = []
    for i in range(7):  # detected at frames 0 and 6 (every 6th frame at 5 of 29.97 fps)
        shots += pipe.push(miranda.frame(i))
    assert shots == []
    for i in range(7, 26):  # 0.63 s of frames, none of them detected
        shots += pipe.push(miranda.frame(i, backlog=1))
    assert len(shots) == 1 and shots[0].payload is not None


def test_detect_clock_keeps_its_rate_and_restarts_after_jumps() -> None:
    clock = DetectClock(5.0)
    ran = []
    for i in range(50):  # 2 s at 25 fps
        t = i / 25
        if clock.due(t):
            clock.ran(t)
            ran.append(i)
    assert ran == list(range(0, 50, 5))
    assert clock.due(0.0)  # the stream's clock went back (a reconnect): due at once
    clock.ran(0.0)
    assert not clock.due(0.1) and clock.due(0.2)
    clock.ran(0.2)
    assert clock.due(100.0)  # and forward


def test_detect_clock_half_makes_up_a_slot_a_late_detection_missed() -> None:
    """Due at 0.2, run at 0.45 (a slot missed): the next is due at 0.55, not at 0.65; then the period
    again. Later than three periods it starts afresh, one period on."""
    clock = DetectClock(5.0)
    clock.ran(0.0)
    assert clock.due(0.2)
    clock.ran(0.45)
    assert not clock.due(0.54) and clock.due(0.55)
    clock.ran(0.55)
    assert not clock.due(0.74) and clock.due(0.75)
    clock.ran(0.75)
    clock.ran(1.8)  # due at 0.95, 0.85 s late
    assert not clock.due(1.99) and clock.due(2.0)


def _box(x: float, size: float = 40) -> list[float]:
    return [x, 100, x + size, 100 + size]


def test_tracker_predicts_a_face_that_starts_walking_between_sparse_detections() -> None:
    """A 40 px face detected 5 times a second that speeds up from 10 to 60 px per detection: from 50 px
    on its box no longer overlaps the last one nor lies within a face width of it, so without the
    constant-velocity prediction it would start a second track (a second event for one person)."""
    tracker = IouTracker(iou_threshold=0.3)
    x, ids = 100.0, set()
    for step, shift in enumerate([0, 10, 20, 30, 40, 50, 60, 60, 60, 60]):
        x += shift
        update = tracker.update(step * 0.2, np.array([_box(x)]))
        assert update.ended == []
        ids.update(track_id for track_id, _ in update.assignments)
    assert ids == {1}
    (track,) = tracker.active
    assert track.hits == 10 and track.velocity[0] == pytest.approx(300, rel=0.05)
    ((_, predicted),) = tracker.predict(track.last_time_s + 0.1)
    assert predicted[0] == pytest.approx(track.box[0] + 0.1 * track.velocity[0])


def test_tracker_joins_a_fast_face_s_second_detection_by_distance() -> None:
    tracker = IouTracker(iou_threshold=0.3)
    tracker.update(0.0, np.array([_box(100)]))
    # 30 px on (IoU 0.14): the same face; a face twice the size there, or one 2 widths away, is not.
    update = tracker.update(0.2, np.array([_box(130), _box(100, size=80), _box(180)]))
    assert update.assignments == [(1, 0), (2, 1), (3, 2)]


def test_decode_lag_keeps_up_with_a_real_time_stream_and_a_slow_camera_clock() -> None:
    now = [0.0]
    lag = DecodeLag(clock=lambda: now[0])
    for i in range(25 * 600):  # 10 minutes at 25 fps; the camera's clock runs 0.5 % slow
        now[0] = i / 25 * 1.005 + (0.05 if i % 7 == 0 else 0.0)  # and network jitter
        assert lag.decode(i / 25, i % 50 == 0)
    assert lag.catch_ups == 0


def test_decode_lag_skips_to_a_keyframe_near_the_live_edge_when_decoding_is_slow() -> None:
    """Decoding takes 1.5 frame times per frame: the lag grows until it passes 4 s; then packets are
    dropped undecoded (they are read from the socket at once) until a keyframe at the live edge."""
    now = [0.0]
    lag = DecodeLag(clock=lambda: now[0])
    arrival = [i / 25 for i in range(25 * 60)]  # when each packet reaches the socket
    decoded, dropped, t = [], [], 0.0
    for i, arrived in enumerate(arrival):
        t = max(t, arrived)
        now[0] = t
        if lag.decode(i / 25, i % 25 == 0):  # a keyframe every second
            decoded.append(i)
            t += 1.5 / 25
        else:
            dropped.append(i)
    assert lag.catch_ups >= 2 and dropped
    resumed = [i for i in decoded if i - 1 in dropped]
    assert resumed and all(i % 25 == 0 for i in resumed)  # decoding resumes at keyframes only
    assert len(decoded) / len(arrival) == pytest.approx(1 / 1.5, abs=0.1)  # all the decoder can do


def test_a_live_source_whose_decoder_falls_behind_drops_before_decoding(data_dir: Path) -> None:
    """The real decoder on the clip played live, with a clock for the lag that runs 8× faster than the
    stream is paced: the decoder looks hopelessly slow, so it skips ahead from keyframe to keyframe."""
    clip = data_dir / "video" / "short_hamilton_clip.mp4"
    source = VideoSource(str(clip), live=True, play_speed=3.0)
    assert source.decode_lag is not None
    started = time.monotonic()
    source.decode_lag = DecodeLag(clock=lambda: started + 8 * (time.monotonic() - started))
    frames = list(source)
    assert source.frames_dropped_undecoded > 0
    assert source.frames_dropped == source.frames_dropped_undecoded  # the consumer kept up
    indices = [f.index for f in frames]
    # Every frame of the clip was decoded or dropped (the tail after the last keyframe reached may be
    # dropped too), and the frames handed out keep their stream order.
    assert source.frames_decoded + source.frames_dropped == source.frames_total == 275
    assert indices == sorted(indices) and indices[-1] < source.frames_total
    assert not any(f.converted for f in frames)  # nobody read their images: none was converted
    # While the decoder was behind, its frames said so: a live pipeline does not detect on them.
    assert any(f.backlog > 0 for f in frames)
    # A file played live never drops before decoding when the clock runs true.
    with VideoSource(str(clip), live=True, play_speed=4.0) as again:
        assert len(list(again)) == again.frames_decoded and again.frames_dropped_undecoded == 0


def test_status_names_the_kind_of_drop() -> None:
    health = JobHealth(1)
    assert health.status(False) == ("ok", "")
    assert health.status(True) == ("degraded", DROPPING_ERROR)
    assert health.status(True, decode_behind=True) == ("degraded", DECODE_BEHIND_ERROR)


def test_an_rtsp_stream_that_declares_its_end_catches_up_after_a_gil_stall(data_dir: Path, tmp_path: Path) -> None:
    """An RTSP server serving a recording declares its end, and VideoSource used to pace it as a file
    played live: after a stall of the decoding thread (a detection holding the GIL, here a C call that
    holds it) the pacer restarted its clock later, so the decoder stayed that far behind the packets
    waiting in the socket for good, and the live pipeline, which does not detect while the decoder is
    behind, stopped detecting (the density benchmark's cameras at N >= 2). The server paces RTSP: after
    the stall the decoder reads what waited and is back at the live edge at once."""
    missing = gstreamer_missing()
    if missing:
        pytest.skip(missing)
    hold_gil = ctypes.PyDLL(None).usleep  # (PyDLL: the call keeps the GIL, as yuface does)
    looped = looped_copy(data_dir / "video" / "short_hamilton_clip.mp4", tmp_path, 2)
    with RtspCamera(looped, copy=True) as camera, VideoSource(camera.url) as source:
        assert source.duration_s is not None and source.pace_speed is None  # an end declared, not paced
        frames = iter(source)
        for _ in range(30):  # past the server's opening burst
            next(frames)
        for _ in range(2):
            hold_gil(800_000)
            until = time.monotonic() + 1.0
            while time.monotonic() < until:
                next(frames)
        until, backlogs = time.monotonic() + 2.0, []
        while time.monotonic() < until:
            backlogs.append(next(frames).backlog)
        assert source.decode_lag is not None
        lag_s = source.decode_lag.lag_s
    assert lag_s < DETECT_LAG_TOLERANCE_S, lag_s
    assert backlogs.count(0) >= 0.9 * len(backlogs), backlogs  # a detection could start on them


@pytest.mark.slow
def test_a_live_rtsp_camera_at_30_fps_keeps_up_on_default_settings(data_dir: Path, tmp_path: Path) -> None:
    """Issue 14: a 640×360, 30 fps RTSP camera ran at 20.9 fps with 12 % dropped on default settings.
    The capture/detect side alone (the real decoder, yuface, tracker, best shot), 30 s of a real RTSP
    camera: every frame comes in, the decoder stays at the live edge, under 1 % is dropped, and detection
    runs at `detect_fps` (a quiet machine's figures: asserted as the issue asks, not loosened for load)."""
    missing = gstreamer_missing()
    if missing:
        pytest.skip(missing)
    looped = looped_copy(data_dir / "video" / "short_hamilton_clip.mp4", tmp_path, 8)  # 29.97 fps, sent as it is
    counters = Counters()
    pipe = FramePipeline(StreamConfig(), EMBEDDER, counters, live=True)
    with RtspCamera(looped, copy=True) as camera, VideoSource(camera.url) as source:
        assert source.is_live and source.decode_lag is not None
        frames = iter(source)
        for frame in itertools.islice(frames, 60):  # past the server's opening burst
            pipe.push(frame)
        start = (time.monotonic(), source.frames_decoded + source.frames_dropped_undecoded, source.frames_dropped,
                 counters.frames_processed)
        for frame in frames:
            pipe.push(frame)
            if time.monotonic() - start[0] >= 30:
                break
        seconds = time.monotonic() - start[0]
        received = source.frames_decoded + source.frames_dropped_undecoded - start[1]
        dropped = source.frames_dropped - start[2]
        detected = counters.frames_processed - start[3]
        lag_s = source.decode_lag.lag_s
    print(f"received {received / seconds:.1f} fps, dropped {dropped}, detections {detected / seconds:.2f}/s, "
          f"decoder {lag_s:.2f} s behind")
    # No falling behind: every frame of the stream came in, the decoder is at the live edge, next to
    # nothing was dropped, and detection kept its target rate.
    assert received >= 0.97 * 29.97 * seconds, (received, seconds, lag_s)
    assert lag_s < DETECT_LAG_TOLERANCE_S, lag_s
    assert dropped <= 0.01 * received, (dropped, received)
    assert 4.5 * seconds <= detected <= 5.2 * seconds, (detected, seconds)
    assert counters.faces_detected > 0 and counters.tracks > 0


def test_a_live_source_decodes_on_one_thread_and_a_file_with_frame_threads(data_dir: Path) -> None:
    """A live stream arrives at its own rate: one decoder thread (slice threading) costs about a quarter
    less CPU a frame than frame threading, whose speed only a file read as fast as possible can use."""
    clip = str(data_dir / "video" / "short_hamilton_clip.mp4")
    with VideoSource(clip, live=True, play_speed=4.0) as live, VideoSource(clip) as file:
        assert str(live._stream.thread_type).upper().endswith("SLICE")
        assert str(file._stream.thread_type).upper().endswith("AUTO")
        next(iter(live))
        assert live.frames_decoded >= 1
