"""The camera job's building blocks: video source, motion gate, IoU tracker, best shot (SPEC §3)."""

from __future__ import annotations

import http.server
import itertools
import random
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import av
import numpy as np
import pytest

from actors.best_shot import (
    REASON_LOW_QUALITY,
    REASON_OUTSIDE_ROI,
    REASON_TOO_LARGE,
    REASON_TOO_SMALL,
    EveryIntervalBest,
    ImprovingBest,
    OverallBest,
    PostFilter,
    ShotCandidate,
    best_shot_policy,
)
from actors.motion_gate import MotionGate
from actors.tracking import IouTracker, inside_region, iou_matrix
from actors.video_source import SourceOpenError, SourceReadError, VideoSource, redact_url, reopen_delays
from tests.http_range_server import RangeHandler

CLIP_FRAMES, CLIP_WIDTH, CLIP_HEIGHT = 275, 640, 360

# -- fixtures ----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def clip(data_dir: Path) -> Path:
    return data_dir / "video" / "short_hamilton_clip.mp4"


@pytest.fixture(scope="session")
def faststart_clip(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The clip's video remuxed with its index (moov) first, as streamed MP4s are: a prefix of it is
    still playable, unlike a prefix of the original, whose index sits at the end."""
    target = tmp_path_factory.mktemp("remux") / "faststart.mp4"
    with (
        av.open(str(clip)) as source,
        av.open(str(target), "w", format="mp4", options={"movflags": "faststart"}) as out,
    ):
        video = source.streams.video[0]
        stream = out.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:  # the demuxer's final flush packet carries no data
                packet.stream = stream
                out.mux(packet)
    return target


@pytest.fixture(scope="module")
def http_base(clip: Path, faststart_clip: Path) -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    faststart = faststart_clip.read_bytes()
    server.files = {"/clip.mp4": clip.read_bytes(), "/broken.mp4": faststart}
    server.cut_at = {"/broken.mp4": len(faststart) // 2}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _read(source: VideoSource, limit: int | None = None, pause_s: float = 0.0) -> list:
    frames = []
    with source:
        for frame in itertools.islice(source, limit):
            frames.append(frame)
            time.sleep(pause_s)
    return frames


# -- VideoSource: files ------------------------------------------------------------------------------


def test_reads_the_whole_clip(clip: Path) -> None:
    source = VideoSource(str(clip))
    assert (source.width, source.height) == (CLIP_WIDTH, CLIP_HEIGHT)
    assert source.fps == pytest.approx(29.97, abs=0.01)
    assert source.frames_total == CLIP_FRAMES
    assert source.duration_s == pytest.approx(9.18, abs=0.1)
    assert not source.is_live and source.pace_speed is None

    frames = _read(source)

    assert len(frames) == CLIP_FRAMES
    assert [f.index for f in frames] == list(range(CLIP_FRAMES))
    assert frames[0].pts_s == 0.0
    assert all(b.pts_s > a.pts_s for a, b in itertools.pairwise(frames))
    assert frames[-1].pts_s == pytest.approx((CLIP_FRAMES - 1) / 29.97, abs=0.01)
    image = frames[100].image
    assert image.shape == (CLIP_HEIGHT, CLIP_WIDTH, 3) and image.dtype == np.uint8 and image.std() > 10
    assert source.last_error is None and source.errors == 0 and source.frames_dropped == 0
    assert source.frames_decoded == CLIP_FRAMES


def test_file_url_and_stream_wall_time(clip: Path) -> None:
    start = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
    frames = _read(VideoSource(clip.as_uri(), start_timestamp=start), limit=31)
    assert [f.wall_time for f in frames] == [start + timedelta(seconds=f.pts_s) for f in frames]
    live = VideoSource(str(clip), live=True, use_stream_timestamp=True, start_timestamp=start.replace(tzinfo=None))
    frames = _read(live, limit=3)  # a naive start is taken as UTC
    assert [f.wall_time for f in frames] == [start + timedelta(seconds=f.pts_s) for f in frames]


def test_play_speed_real_time_and_as_fast_as_possible(clip: Path) -> None:
    started = time.monotonic()
    frames = _read(VideoSource(str(clip), play_speed=1.0), limit=31)
    assert time.monotonic() - started >= 0.8  # 30 frame intervals at 29.97 fps are 1.0 s

    started = time.monotonic()
    frames = _read(VideoSource(str(clip), play_speed=-1))
    assert len(frames) == CLIP_FRAMES
    assert time.monotonic() - started < 9.2 / 2  # well over twice real time, even on a busy machine


def test_missing_file_and_bad_urls(tmp_path: Path) -> None:
    with pytest.raises(SourceOpenError, match="not found"):
        VideoSource(str(tmp_path / "nope.mp4"))
    with pytest.raises(SourceOpenError, match="not found"):
        VideoSource((tmp_path / "nope.mp4").as_uri())
    with pytest.raises(SourceOpenError, match="unsupported URL scheme 'gopher'"):
        VideoSource("gopher://example.org/x")
    with pytest.raises(SourceOpenError, match="empty"):
        VideoSource("")


def test_not_a_video(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 100)
    with pytest.raises(SourceOpenError, match="cannot open") as info:
        VideoSource(str(path))
    assert info.value.code == "SOURCE_OPEN_FAILED" and info.value.param == "url"


def test_prefix_of_clip_without_its_index_does_not_open(clip: Path, tmp_path: Path) -> None:
    """The clip keeps its MP4 index at the end, so its first 60% holds no decodable frame."""
    data = clip.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(SourceOpenError):
        VideoSource(str(path))


def test_truncated_file_yields_what_decodes_and_reports_it(faststart_clip: Path, tmp_path: Path) -> None:
    data = faststart_clip.read_bytes()
    path = tmp_path / "truncated.mp4"
    path.write_bytes(data[: int(len(data) * 0.6)])
    source = VideoSource(str(path))
    assert source.frames_total == CLIP_FRAMES  # the index still promises every frame

    frames = _read(source)  # finishes without raising

    assert 100 < len(frames) < CLIP_FRAMES
    assert source.errors >= 1
    assert f"ended after {len(frames)} of the {CLIP_FRAMES} frames" in source.last_error


def test_corrupt_bytes_midway_are_skipped_and_counted(clip: Path, tmp_path: Path) -> None:
    data = bytearray(clip.read_bytes())
    noise = random.Random(0)
    for offset in range(300_000, 330_000):  # inside the media data, about halfway
        data[offset] = noise.randrange(256)
    path = tmp_path / "corrupt.mp4"
    path.write_bytes(bytes(data))
    source = VideoSource(str(path))

    frames = _read(source)

    assert len(frames) > 200  # decoding goes on after the damage
    assert frames[-1].pts_s > 9.0
    assert source.errors >= 1 and source.last_error


# -- VideoSource: network and live -----------------------------------------------------------------


def test_http_source_is_live_and_real_time(http_base: str) -> None:
    source = VideoSource(f"{http_base}/clip.mp4", open_timeout_s=5)
    assert source.is_live and source.frames_total == CLIP_FRAMES
    assert source.pace_speed == 1.0  # a recorded video over HTTP plays like a camera

    before = datetime.now(UTC)
    started = time.monotonic()
    frames = _read(source, limit=31)

    assert time.monotonic() - started >= 0.8
    assert [f.index for f in frames] == list(range(31))
    assert frames[0].image.shape == (CLIP_HEIGHT, CLIP_WIDTH, 3)
    assert all(before <= f.wall_time <= datetime.now(UTC) for f in frames)  # live: decoding time


def test_http_source_read_as_a_file(http_base: str) -> None:
    frames = _read(VideoSource(f"{http_base}/clip.mp4", live=False))
    assert len(frames) == CLIP_FRAMES


def test_http_errors(http_base: str) -> None:
    with pytest.raises(SourceOpenError, match="404"):
        VideoSource(f"{http_base}/missing.mp4")
    with pytest.raises(SourceOpenError, match="refused"):
        VideoSource(f"http://127.0.0.1:{_closed_port()}/clip.mp4")


def test_open_timeout() -> None:
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        with pytest.raises(SourceOpenError, match="no answer within 1 s"):
            VideoSource(f"http://127.0.0.1:{silent.getsockname()[1]}/clip.mp4", open_timeout_s=1)
        assert time.monotonic() - started < 5


def test_rtsp_error_hides_the_password() -> None:
    with pytest.raises(SourceOpenError) as info:
        VideoSource(f"rtsp://admin:s3cret@127.0.0.1:{_closed_port()}/stream", open_timeout_s=2)
    assert "s3cret" not in str(info.value) and "admin:***@127.0.0.1" in str(info.value)
    assert redact_url("rtsp://u:p@cam:554/x?a=1") == "rtsp://u:***@cam:554/x?a=1"
    assert redact_url("rtsp://cam/x") == "rtsp://cam/x"


def test_live_stream_that_breaks_raises_read_error(http_base: str) -> None:
    source = VideoSource(f"{http_base}/broken.mp4", play_speed=10.0, read_timeout_s=3)
    frames = []
    with pytest.raises(SourceReadError, match="failed after"):
        for frame in source:
            frames.append(frame)
    assert frames and source.last_error and source.errors >= 1


def test_slow_consumer_of_live_source_drops_oldest_frames(clip: Path) -> None:
    source = VideoSource(str(clip), live=True, play_speed=1.0, queue_size=2)

    frames = _read(source, limit=12, pause_s=0.1)  # 10 fps against a 30 fps source

    assert source.frames_dropped > 0
    indices = [f.index for f in frames]
    assert indices == sorted(indices) and indices[-1] - indices[0] + 1 > len(indices)  # gaps
    assert source.frames_decoded > len(frames)


def test_disable_drops_keeps_every_frame(clip: Path) -> None:
    source = VideoSource(str(clip), live=True, play_speed=1.0, queue_size=2, disable_drops=True)

    frames = _read(source, limit=12, pause_s=0.1)

    assert source.frames_dropped == 0
    assert [f.index for f in frames] == list(range(12))


def test_reopen_delays() -> None:
    assert list(itertools.islice(reopen_delays(), 9)) == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    jittered = list(itertools.islice(reopen_delays(jitter=0.2, rng=random.Random(1)), 9))
    for delay, plain in zip(jittered, [1, 2, 4, 8, 16, 32, 60, 60, 60], strict=True):
        assert 0.8 * plain <= delay <= 1.2 * plain
    with pytest.raises(ValueError):
        next(reopen_delays(initial_s=0))


# -- MotionGate --------------------------------------------------------------------------------------


def _scene(brightness: int = 100, square_at: int | None = None) -> np.ndarray:
    image = np.full((360, 640, 3), brightness, np.uint8)
    if square_at is not None:
        image[100:260, square_at : square_at + 160] = 250
    return image


def test_motion_gate_skips_still_frames_and_passes_changes() -> None:
    gate = MotionGate(threshold=0.02)
    assert gate.check(_scene())  # the first frame always passes
    assert not gate.check(_scene())
    assert not gate.check(_scene())
    assert gate.check(_scene(square_at=200))
    assert not gate.check(_scene(square_at=200))
    assert gate.check(_scene(square_at=400))
    assert gate.frames_skipped == 3


def test_motion_gate_compares_with_the_last_frame_it_let_through() -> None:
    gate = MotionGate(threshold=0.5)
    assert gate.check(_scene(100))
    # Each step is below the pixel threshold against its predecessor, but they add up.
    passed = [gate.check(_scene(100 + 8 * step)) for step in range(1, 6)]
    assert passed == [False, False, True, False, False]


def test_motion_gate_threshold_zero_passes_everything() -> None:
    gate = MotionGate(threshold=0.0)
    assert all(gate.check(_scene()) for _ in range(5))
    assert gate.frames_skipped == 0
    with pytest.raises(ValueError):
        MotionGate(threshold=1.5)


# -- IouTracker --------------------------------------------------------------------------------------


def _box(x: float, y: float, size: float = 50) -> list[float]:
    return [x, y, x + size, y + size]


def test_two_moving_faces_keep_their_ids() -> None:
    tracker = IouTracker()
    ids_seen = []
    for step in range(10):
        t = step / 10
        # Listed in alternating order so the ids cannot follow the detection index by accident.
        boxes = [_box(100 + 5 * step, 100), _box(400 - 5 * step, 120)]
        if step % 2:
            boxes.reverse()
        update = tracker.update(t, np.array(boxes), payloads=[f"d{step}a", f"d{step}b"])
        assert update.ended == []
        ids_by_x = {track_id: boxes[index][0] < 250 for track_id, index in update.assignments}
        ids_seen.append(ids_by_x)
    assert all(seen == {1: True, 2: False} for seen in ids_seen)
    left = tracker.active[0]
    assert (left.track_id, left.first_time_s, left.last_time_s, left.hits) == (1, 0.0, 0.9, 10)
    assert left.first_box.tolist() == _box(100, 100) and left.box.tolist() == _box(145, 100)


def test_short_gap_keeps_the_id_long_gap_starts_a_new_track() -> None:
    tracker = IouTracker(miss_interval_s=1.0)
    assert tracker.update(0.0, np.array([_box(100, 100)])).assignments == [(1, 0)]
    assert tracker.update(0.5, np.zeros((0, 4))).ended == []
    update = tracker.update(0.9, np.array([_box(102, 100)]))  # 0.9 s unseen: same track
    assert update.assignments == [(1, 0)] and update.ended == []

    update = tracker.update(2.0, np.array([_box(104, 100)]))  # 1.1 s unseen: a new track
    assert update.assignments == [(2, 0)]
    assert [(t.track_id, t.first_time_s, t.last_time_s) for t in update.ended] == [(1, 0.0, 0.9)]


def test_tracks_end_when_unseen_and_at_finish() -> None:
    tracker = IouTracker()
    tracker.update(0.0, np.array([_box(0, 0), _box(300, 0)]))
    tracker.update(0.5, np.array([_box(300, 0)]))
    assert [t.track_id for t in tracker.update(1.2, np.zeros((0, 4))).ended] == [1]
    assert tracker.update(1.3, np.array([_box(600, 0)])).assignments == [(3, 0)]
    assert [t.track_id for t in tracker.finish()] == [2, 3]
    assert tracker.active == []


def test_tracker_matches_by_best_iou_and_ignores_low_overlap() -> None:
    tracker = IouTracker(iou_threshold=0.3)
    tracker.update(0.0, np.array([_box(100, 100)]))
    # The second detection overlaps track 1 more; the first barely overlaps and starts a track.
    update = tracker.update(0.1, np.array([_box(140, 100), _box(105, 100)]))
    assert update.assignments == [(2, 0), (1, 1)]
    assert iou_matrix(np.array([_box(0, 0)]), np.array([_box(0, 0), _box(25, 0), _box(100, 0)])) == pytest.approx(
        np.array([[1.0, 1 / 3, 0.0]])
    )


def test_rot_filter_before_tracking() -> None:
    boxes = np.array([_box(10, 10), _box(300, 300), _box(590, 10)])
    assert inside_region(boxes, [0, 0, 400, 400]).tolist() == [True, True, False]
    assert inside_region(boxes, None).tolist() == [True, True, True]


# -- best shot ---------------------------------------------------------------------------------------


def _shot(track_id: int, t: float, quality: float, x: float = 100, size: float = 80) -> ShotCandidate:
    return ShotCandidate(track_id, t, quality, _box(x, 100, size), payload=f"crop {track_id}@{t}")


def _feed(policy, shots: list[ShotCandidate]) -> list[ShotCandidate]:
    return [posted for shot in shots for posted in policy.offer(shot)]


def test_overall_mode_posts_the_best_shot_once_per_track() -> None:
    policy = best_shot_policy(overall_only=True)
    assert isinstance(policy, OverallBest)
    shots = [_shot(1, 0.0, 0.4), _shot(2, 0.0, 0.7), _shot(1, 0.1, 0.9), _shot(1, 0.2, 0.5), _shot(2, 0.1, 0.6)]
    assert _feed(policy, shots) == []
    assert policy.end_track(1) == [shots[2]]
    assert policy.end_track(1) == []
    assert policy.finish() == [shots[1]]
    assert policy.finish() == []


def test_every_interval_mode_posts_the_best_of_each_window() -> None:
    policy = best_shot_policy(overall_only=False, realtime_interval_s=1.0, realtime_every_interval=True)
    assert isinstance(policy, EveryIntervalBest)
    window0 = [_shot(1, 0.0, 0.5), _shot(1, 0.4, 0.8), _shot(1, 0.9, 0.6)]
    window1 = [_shot(1, 1.2, 0.3), _shot(1, 1.5, 0.35)]
    window3 = [_shot(1, 3.1, 0.2)]
    assert _feed(policy, window0) == []
    assert _feed(policy, window1) == [window0[1]]  # window 0 closes when window 1 starts
    assert _feed(policy, window3) == [window1[1]]
    assert policy.end_track(1) == [window3[0]]
    assert policy.finish() == []


def test_improving_mode_posts_only_clearly_better_shots_or_after_the_interval() -> None:
    policy = best_shot_policy(overall_only=False, realtime_interval_s=1.0)
    assert isinstance(policy, ImprovingBest)
    qualities = [0.5, 0.4, 0.55, 0.6, 0.9, 0.1, 0.95]
    shots = [_shot(1, i / 10, q) for i, q in enumerate(qualities)]
    posted = _feed(policy, shots)
    # 0.55 is not clearly better (held), 0.6 is (gain 0.1), 0.9 is; 0.95 comes too soon after 0.9.
    assert [p.quality for p in posted] == [0.5, 0.6, 0.9]
    assert _feed(policy, [_shot(1, 1.5, 0.2)]) == [shots[6]]  # the interval is up: the held 0.95
    assert _feed(policy, [_shot(1, 1.6, 0.97)]) == []
    assert _feed(policy, [_shot(2, 1.0, 0.1)])[0].track_id == 2  # each track starts afresh
    assert [p.quality for p in policy.end_track(1)] == [0.97]  # the track ends: the held shot
    assert policy.end_track(1) == [] and policy.finish() == []


def test_post_filter_reasons() -> None:
    rules = PostFilter(roi=[0, 0, 300, 300], min_quality=0.5, min_face_size=40, max_face_size=200)
    assert rules.reason(_shot(1, 0, 0.9, x=100, size=80)) is None
    assert rules.reason(_shot(1, 0, 0.9, x=400, size=80)) == REASON_OUTSIDE_ROI
    assert rules.reason(_shot(1, 0, 0.9, x=100, size=30)) == REASON_TOO_SMALL
    assert rules.reason(_shot(1, 0, 0.9, x=50, size=250)) == REASON_TOO_LARGE
    assert rules.reason(_shot(1, 0, 0.3, x=100, size=80)) == REASON_LOW_QUALITY
    tall = ShotCandidate(1, 0.0, 0.9, [100, 100, 130, 150])  # 30 wide, 50 tall: size is the longer side
    assert rules.reason(tall) is None
    assert PostFilter().reason(_shot(1, 0, 0.0, x=5000, size=5)) is None
