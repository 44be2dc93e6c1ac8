"""Opening a video container with PyAV and reading its stream's facts (rate, start, duration); the
errors a source reports. `actors.video_source.VideoSource` decodes what these open."""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

import av
import av.error

from facewatch.errors import FacewatchError

SUPPORTED_SCHEMES = frozenset({"file", "rtsp", "rtsps", "rtmp", "rtmps", "http", "https"})


class SourceError(FacewatchError):
    code, status = "SOURCE_ERROR", 502


class SourceOpenError(SourceError):
    """The source cannot be opened: bad URL, refused connection, timeout, missing file, not a video."""

    code, status = "SOURCE_OPEN_FAILED", 422


class SourceReadError(SourceError):
    """A live stream broke while it was being read."""

    code, status = "SOURCE_READ_FAILED", 502


def resolve(url: str, display: str) -> tuple[str, str]:
    """What to hand to FFmpeg, and the scheme (`file` for local files)."""
    if not url or not url.strip():
        raise SourceOpenError("empty source URL", param="url")
    if "://" not in url:
        target, scheme = url, "file"
    else:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SUPPORTED_SCHEMES:
            supported = ", ".join(sorted(SUPPORTED_SCHEMES))
            raise SourceOpenError(f"unsupported URL scheme {scheme!r} (supported: {supported})", param="url")
        target = url2pathname(parts.path) if scheme == "file" else url
    if scheme == "file" and not Path(target).is_file():
        raise SourceOpenError(f"video file not found: {display}", param="url")
    return target, scheme


def container_options(scheme: str, user_options: Mapping[str, str]) -> dict[str, str]:
    # RTSP over UDP loses packets on busy networks and smears the picture; the user may still
    # choose UDP explicitly.
    options = {"rtsp_transport": "tcp"} if scheme in ("rtsp", "rtsps") else {}
    options.update({str(key): str(value) for key, value in user_options.items()})
    return options


def open_container(
    target: str, display: str, options: dict[str, str], timeouts: tuple[float, float]
) -> av.container.InputContainer:
    started = time.monotonic()
    try:
        container = av.open(target, options=options, timeout=timeouts)
    except (av.error.FFmpegError, OSError) as exc:
        timed_out = isinstance(exc, av.error.ExitError) or time.monotonic() - started >= timeouts[0]
        reason = f"no answer within {timeouts[0]:g} s" if timed_out else describe(exc)
        raise SourceOpenError(f"cannot open {display}: {reason}", param="url") from exc
    if not container.streams.video:
        container.close()
        raise SourceOpenError(f"{display} has no video stream", param="url")
    return container


def describe(exc: BaseException) -> str:
    """The error without the file name FFmpeg appends (it may hold a password)."""
    if isinstance(exc, SourceError):
        return exc.reason
    if isinstance(exc, av.error.ExitError):  # what FFmpeg's interrupt reports when a read times out
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def fps(stream: av.VideoStream) -> float | None:
    rate = stream.average_rate or stream.guessed_rate
    return float(rate) if rate else None


def start_time_s(stream: av.VideoStream) -> float | None:
    if stream.start_time is None or stream.time_base is None:
        return None
    return float(stream.start_time * stream.time_base)


def duration_s(container: av.container.InputContainer, stream: av.VideoStream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def as_utc(moment: datetime) -> datetime:
    """Naive datetimes are taken to be UTC."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
