"""Open and decode one video source with PyAV (SPEC §3 steps 1–2).

A `VideoSource` is used inside a camera job's own process: frames never leave it. It opens local
files (plain paths or `file://` URLs), RTSP (TCP by default), RTMP and HTTP(S)/HLS, decodes in a
background thread into a small bounded queue and hands out RGB `Frame`s through iteration::

    with VideoSource(url, play_speed=-1) as source:
        for frame in source:
            ...

Behaviour decided here:
- **Live or not.** A source is live when it is not a local file (override with `live=`, e.g. to read
  an HTTP video as a file, or to simulate a camera with a file).
- **Pacing.** `play_speed` > 0 releases frames at that multiple of real time; <= 0 (the default -1)
  means as fast as possible for files and real time for live sources. A stream its server sends in
  real time (RTSP, RTMP: `SERVER_PACED_SCHEMES`, also when the server declares an end, as one
  serving a recording does) and a live stream with no known end (live HLS) are never paced here:
  they arrive in real time by themselves. Pacing them again only adds latency, and it never gives
  it back: after a stall (a detection holding the GIL on a busy node) the pacer restarts its clock
  later, so the decoder stays that much behind the packets waiting in the socket for good, and a
  live pipeline, which does not detect while the decoder is behind, stops detecting.
- **Drops.** A live source never falls behind: when the consumer is slower than the source, the
  OLDEST queued frame is dropped and counted in `frames_dropped`, unless `disable_drops`; when the
  decoder itself falls more than four seconds behind the stream's clock, packets are dropped BEFORE
  decoding up to the next keyframe near the live edge (`actors.decode_lag`; counted in
  `frames_dropped` and `frames_dropped_undecoded`). Files are never dropped: the decoder waits for
  the consumer. Frames are converted to RGB only when their `image` is read.
- **Errors while reading.** A corrupt packet is skipped and counted (`errors`, `last_error`).
  A file whose reading breaks, or which ends well before the frame count its container declares
  (truncated), ends the iteration normally with `last_error` set: the caller gets every frame that
  decodes. A live stream that breaks raises `SourceReadError` from the iterator so the job can
  reopen it (with `reopen_delays()`); a live stream that simply ends finishes the iteration.
- **Timestamps.** `pts_s` counts seconds from the start of the stream. `wall_time` is
  `start_timestamp` (default: the moment the source was opened) + `pts_s` for files, and the
  decoding moment for live sources unless `use_stream_timestamp`.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import av
import av.error
import numpy as np

from actors import video_container
from actors.decode_lag import DecodeLag
from actors.video_container import SUPPORTED_SCHEMES, SourceError, SourceOpenError, SourceReadError
from facewatch.backoff import backoff_delay

# The errors are imported from here by callers (they belong to the source, not to opening it).
__all__ = ["SUPPORTED_SCHEMES", "Frame", "SourceError", "SourceOpenError", "SourceReadError", "VideoSource",
           "redact_url", "reopen_delays"]
DEFAULT_QUEUE_SIZE = 4
# A live source's queue holds this many seconds of decoded frames (not yet converted: ~1.4 MB a frame
# at 720p): one detection that takes long on a loaded node (the consumer detects synchronously, on the
# newest frame) is absorbed instead of dropping the frames that arrive meanwhile; after it the
# consumer catches up at once, since frames it does not detect on cost next to nothing.
LIVE_QUEUE_S = 1.0
# How far the decoder may run behind a live stream before frames say so in their `backlog`: an RTSP
# server sends its first ~0.4 s at once, which the lag measure counts as lag until its baseline moves.
DETECT_LAG_TOLERANCE_S = 0.5
# Protocols whose server sends the stream in real time: the reader must never hold them back.
SERVER_PACED_SCHEMES = frozenset({"rtsp", "rtsps", "rtmp", "rtmps"})

# A stream that yields nothing but undecodable packets is broken, not merely damaged.
_MAX_CONSECUTIVE_DECODE_ERRORS = 100
# Edit lists and frames the decoder discards make the decoded count differ slightly from the count
# an MP4 declares; only a clearly shorter file counts as truncated.
_COMPLETE_FRACTION = 0.98
# Pacing restarts its clock instead of sleeping through a timestamp jump or racing to catch up
# after the consumer held the decoder back.
_MAX_LEAD_S = 5.0
_MAX_LAG_S = 0.25
# Frame rate assumed for a stream whose frames carry no timestamps and which declares no rate.
_FALLBACK_FPS = 25.0


class Frame:
    """One decoded frame.

    index: position in decode order, counting dropped frames too (so drops show as gaps).
    pts_s: seconds from the start of the stream.
    wall_time: timezone-aware UTC time the frame stands for (see the module docstring).
    image: RGB uint8 array of shape (height, width, 3). A frame from a `VideoSource` converts to RGB
      only when `image` is first read: at 720p the conversion costs more than decoding, and a live
      camera detects on a few frames a second only (`detect_fps`), so most frames never need it.
    backlog: frames waiting behind this one when it was taken (0: the newest): queued by a live
      source's decoder, plus those it is behind the live edge (see `VideoSource._frames_behind`).
    """

    __slots__ = ("_convert", "_image", "backlog", "height", "index", "pts_s", "wall_time", "width")

    def __init__(self, index: int, pts_s: float, wall_time: datetime, image: np.ndarray | None = None, *,
                 convert: Callable[[], np.ndarray] | None = None, size: tuple[int, int] | None = None,
                 backlog: int = 0) -> None:
        if (image is None) == (convert is None):
            raise ValueError("a Frame needs either its image or a way to convert to it")
        self.index, self.pts_s, self.wall_time, self.backlog = index, pts_s, wall_time, backlog
        self._image, self._convert = image, convert
        if image is not None:
            self.height, self.width = int(image.shape[0]), int(image.shape[1])
        elif size is not None:
            self.width, self.height = size
        else:
            raise ValueError("a Frame converted later needs its size")

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            assert self._convert is not None
            self._image, self._convert = self._convert(), None  # the decoded frame is released
        return self._image

    @property
    def converted(self) -> bool:
        """Whether the RGB image exists already (for tests and statistics)."""
        return self._image is not None


def reopen_delays(
    initial_s: float = 1.0,
    max_s: float = 60.0,
    factor: float = 2.0,
    jitter: float = 0.0,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Endless back-off delays (seconds) between attempts to reopen a dropped live source.

    1, 2, 4, ... capped at `max_s`. `jitter` in [0, 1) spreads each delay by up to that fraction
    either way, so many cameras that dropped together do not reconnect in lock-step. Start a fresh
    generator after a successful open.
    """
    if initial_s <= 0 or max_s < initial_s or factor < 1 or not 0 <= jitter < 1:
        raise ValueError("need 0 < initial_s <= max_s, factor >= 1 and 0 <= jitter < 1")
    rng = rng or random.Random()
    for failures in itertools.count(1):
        yield backoff_delay(failures, initial_s, factor, max_s, jitter=jitter, rng=rng)


def redact_url(url: str) -> str:
    """The URL with any password replaced by `***`, fit for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True, eq=False)
class _Decoded:
    """A decoded frame waiting in the queue; RGB conversion waits until it is consumed, so dropped
    frames cost no conversion."""

    index: int
    pts_s: float
    wall_time: datetime
    av_frame: av.VideoFrame

    def to_frame(self, backlog: int) -> Frame:
        av_frame = self.av_frame
        return Frame(self.index, self.pts_s, self.wall_time, convert=lambda: av_frame.to_ndarray(format="rgb24"),
                     size=(av_frame.width, av_frame.height), backlog=backlog)


class _FrameQueue:
    """The small bounded hand-over from the decoding thread to the consumer."""

    def __init__(self, size: int) -> None:
        self._items: deque[_Decoded] = deque()
        self._size = size
        self._cond = threading.Condition()
        self._finished = False  # the producer will put nothing more
        self._closed = False  # the consumer is gone

    def put(self, item: _Decoded, drop_oldest: bool) -> bool:
        """Queue an item; True when the oldest queued item was dropped to make room."""
        with self._cond:
            while len(self._items) >= self._size and not drop_oldest and not self._closed:
                self._cond.wait()
            if self._closed:
                return False
            dropped = len(self._items) >= self._size
            if dropped:
                self._items.popleft()
            self._items.append(item)
            self._cond.notify_all()
            return dropped

    def get(self) -> tuple[_Decoded, int] | None:
        """The next item and how many wait behind it, or None once the producer finished and the
        queue is empty."""
        with self._cond:
            while not self._items and not self._finished and not self._closed:
                self._cond.wait()
            if self._closed or not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item, len(self._items)

    def finish(self) -> None:
        with self._cond:
            self._finished = True
            self._cond.notify_all()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._items.clear()
            self._cond.notify_all()


class _Pacer:
    """Holds frames back so they come out no faster than `speed` times their stream clock."""

    def __init__(self, speed: float | None, stop: threading.Event) -> None:
        self._speed = speed
        self._stop = stop
        self._anchor: tuple[float, float] | None = None  # (monotonic time, pts_s) of the clock start

    def wait(self, pts_s: float) -> None:
        if self._speed is None:
            return
        now = time.monotonic()
        if self._anchor is None:
            self._anchor = (now, pts_s)
            return
        lead = self._anchor[0] + (pts_s - self._anchor[1]) / self._speed - now
        if lead > _MAX_LEAD_S or lead < -_MAX_LAG_S:
            self._anchor = (now, pts_s)
        elif lead > 0:
            self._stop.wait(lead)


# How PyAV's decoder uses threads. A live source arrives at its own frame rate, so what counts is the
# CPU each frame costs, and frame threading costs about a quarter more per frame than one thread
# (720p H.264: 2.1-2.3 against 1.7 ms of CPU a frame, `benchmarks/bench_density.py`'s reference) for
# a speed a live stream cannot use; slice threading is free where the encoder cut slices. A file is
# read as fast as possible, where frame threading's speed is worth its CPU.
LIVE_DECODER_THREADS = "SLICE"
FILE_DECODER_THREADS = "AUTO"


def decoder_threads(live: bool) -> str:
    """PyAV's `thread_type` for a live source or for a file read as fast as it can."""
    return LIVE_DECODER_THREADS if live else FILE_DECODER_THREADS


class VideoSource:
    """One opened video source; iterate it once for its `Frame`s. Opening happens in the
    constructor, which raises `SourceOpenError` when the source cannot be opened."""

    def __init__(
        self,
        url: str,
        *,
        ffmpeg_options: Mapping[str, str] | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 10.0,
        play_speed: float = -1.0,
        live: bool | None = None,
        disable_drops: bool = False,
        use_stream_timestamp: bool = False,
        start_timestamp: datetime | None = None,
        queue_size: int | None = None,
        name: str | None = None,
    ) -> None:
        if queue_size is not None and queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        # What messages call the source: `name` for files the server keeps (an uploaded video), whose
        # paths are the server's business and must not reach a client; else the URL without password.
        self.url = name or redact_url(url)
        target, scheme = video_container.resolve(url, self.url)
        self.is_local = scheme == "file"
        self.server_paced = scheme in SERVER_PACED_SCHEMES
        self.is_live = (not self.is_local) if live is None else live
        self.play_speed = play_speed
        self.disable_drops = disable_drops
        self.use_stream_timestamp = use_stream_timestamp
        self.opened_at = datetime.now(UTC)
        self._time_origin = video_container.as_utc(start_timestamp) if start_timestamp else self.opened_at
        self._read_timeout_s = read_timeout_s

        options = video_container.container_options(scheme, ffmpeg_options or {})
        self._container = video_container.open_container(target, self.url, options, (open_timeout_s, read_timeout_s))
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = decoder_threads(self.is_live)
        self.width: int = self._stream.codec_context.width
        self.height: int = self._stream.codec_context.height
        self.container_format: str = self._container.format.name or ""  # e.g. "mov,mp4,m4a,3gp,3g2,mj2"
        self.fps: float | None = video_container.fps(self._stream)
        self.frames_total: int | None = self._stream.frames or None
        self.duration_s: float | None = video_container.duration_s(self._container, self._stream)
        self._pts_origin: float | None = video_container.start_time_s(self._stream)  # else the first frame's time

        self.frames_decoded = 0
        self.frames_dropped = 0
        self.frames_dropped_undecoded = 0
        # Frames given an index (decoded or dropped before decoding): drops before decoding leave gaps too.
        self._frames_seen = 0
        self.decode_lag: DecodeLag | None = DecodeLag() if self.is_live and not disable_drops else None
        self.errors = 0
        self.last_error: str | None = None
        self._consecutive_decode_errors = 0
        if queue_size is None:  # a live source queues a second of frames: see LIVE_QUEUE_S
            queue_size = max(DEFAULT_QUEUE_SIZE, round((self.fps or _FALLBACK_FPS) * LIVE_QUEUE_S)) \
                if self.is_live and not disable_drops else DEFAULT_QUEUE_SIZE
        self.queue_size = queue_size
        self._queue = _FrameQueue(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failure: Exception | None = None
        self._iterated = False
        self._closed = False

    # -- consumer side ---------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        if self._iterated or self._closed:
            raise RuntimeError("a VideoSource can be iterated only once; open a new one to read again")
        self._iterated = True
        self._thread = threading.Thread(target=self._produce, name=f"decode {self.url}", daemon=True)
        self._thread.start()
        try:
            while (got := self._queue.get()) is not None:
                yield got[0].to_frame(backlog=got[1] + self._frames_behind())
            if self._failure is not None:
                raise self._failure
        finally:
            self.close()

    def _frames_behind(self) -> int:
        """Frames the decoder is behind the live edge (still in the socket), beyond a tolerance: while
        it is, the consumer should not start a detection (it holds the GIL, so decoding would fall
        further behind) but let decoding catch up first."""
        lag = self.decode_lag
        if lag is None or lag.lag_s <= DETECT_LAG_TOLERANCE_S:
            return 0
        return max(1, round((lag.lag_s - DETECT_LAG_TOLERANCE_S) * (self.fps or _FALLBACK_FPS)))

    def close(self) -> None:
        """Stop decoding and release the source (safe to call more than once)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._queue.close()
        if self._thread is None:
            self._container.close()
        else:
            # The decoding thread owns the container and closes it; a blocked network read ends
            # within the read timeout.
            self._thread.join(timeout=self._read_timeout_s + 1.0)

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def pace_speed(self) -> float | None:
        """The multiple of real time frames are released at, or None when not paced here."""
        endless = self.is_live and not self.is_local and self.duration_s is None
        if endless or self.server_paced:
            return None
        if self.play_speed > 0:
            return self.play_speed
        return 1.0 if self.is_live else None

    # -- decoding thread -------------------------------------------------------------------------

    def _produce(self) -> None:
        pacer = _Pacer(self.pace_speed, self._stop)
        try:
            for packet in self._container.demux(self._stream):
                if self._stop.is_set():
                    return
                if not self._keeps_up(packet):
                    continue
                for av_frame in self._decode(packet):
                    self._publish(av_frame, pacer)
            self._check_complete()
        except (av.error.FFmpegError, OSError, SourceReadError) as exc:
            self._on_read_failure(exc)
        except Exception as exc:  # a bug: hand it to the consumer rather than let the thread swallow it
            self._failure = exc
        finally:
            self._queue.finish()
            self._container.close()

    def _keeps_up(self, packet: av.Packet) -> bool:
        """False: the decoder is behind the live stream and drops this packet undecoded."""
        if self.decode_lag is None or not packet.size:  # (an empty packet flushes the decoder)
            return True
        pts = packet.pts if packet.pts is not None else packet.dts
        pts_s = float(pts * packet.time_base) if pts is not None and packet.time_base is not None else None
        if self.decode_lag.decode(pts_s, packet.is_keyframe):
            return True
        self._frames_seen += 1
        self.frames_dropped += 1
        self.frames_dropped_undecoded += 1
        return False

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            frames = packet.decode()
        except av.error.FFmpegError as exc:
            self._record_error(f"undecodable packet after frame {self.frames_decoded}: {video_container.describe(exc)}")
            self._consecutive_decode_errors += 1
            if self._consecutive_decode_errors >= _MAX_CONSECUTIVE_DECODE_ERRORS:
                raise SourceReadError(f"{self._consecutive_decode_errors} undecodable packets in a row") from exc
            return []
        self._consecutive_decode_errors = 0
        return frames

    def _publish(self, av_frame: av.VideoFrame, pacer: _Pacer) -> None:
        index = self._frames_seen
        self._frames_seen += 1
        self.frames_decoded += 1
        pts_s = self._pts_seconds(av_frame, index)
        pacer.wait(pts_s)
        item = _Decoded(index, pts_s, self._wall_time(pts_s), av_frame)
        if self._queue.put(item, drop_oldest=self.is_live and not self.disable_drops):
            self.frames_dropped += 1

    def _pts_seconds(self, av_frame: av.VideoFrame, index: int) -> float:
        if av_frame.time is None:  # no timestamps: assume a steady frame rate
            return index / (self.fps or _FALLBACK_FPS)
        if self._pts_origin is None:
            self._pts_origin = av_frame.time
        return av_frame.time - self._pts_origin

    def _wall_time(self, pts_s: float) -> datetime:
        if self.is_live and not self.use_stream_timestamp:
            return datetime.now(UTC)
        return self._time_origin + timedelta(seconds=pts_s)

    def _check_complete(self) -> None:
        """A file that ends well short of the frames its container declares was truncated."""
        declared = self.frames_total
        if self.is_live or self._stop.is_set() or not declared:
            return
        if self.frames_decoded < declared * _COMPLETE_FRACTION:
            self._record_error(
                f"{self.url} ended after {self.frames_decoded} of the {declared} frames it declares "
                "(truncated or corrupt file)"
            )

    def _on_read_failure(self, exc: Exception) -> None:
        message = f"reading {self.url} failed after {self.frames_decoded} frames: {video_container.describe(exc)}"
        self._record_error(message)
        if self.is_live:
            self._failure = SourceReadError(message, param="url")

    def _record_error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message
