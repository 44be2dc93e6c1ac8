"""The states of jobs, cameras and videos, defined once.

`StrEnum`s: a member IS its string, so the DB columns, JSON bodies and comparisons with plain strings
are unchanged, and the OpenAPI schema lists the allowed values.
"""

from __future__ import annotations

from enum import StrEnum


class JobKind(StrEnum):
    CAMERA = "camera"
    VIDEO = "video"


class DesiredState(StrEnum):
    """What a job should be doing: a camera's follows its `active` flags, a video's its submission."""

    RUNNING = "running"
    STOPPED = "stopped"


class JobState(StrEnum):
    """pending: wants to run (back-off, no node yet, actor starting; `last_error` says why);
    running: its actor is up and holds the lease; finished: a single-pass job completed;
    failed: a single-pass job failed too often in a row; stopped: desired state `stopped`."""

    PENDING = "pending"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"


DONE_STATES: tuple[JobState, ...] = (JobState.FINISHED, JobState.FAILED)  # single-pass jobs that ended for good


class JobHealth(StrEnum):
    """A job actor's own view in its heartbeat."""

    OK = "ok"
    DEGRADED = "degraded"  # posting errors, dropped frames
    FAILING = "failing"  # cannot open the stream


class CameraStatus(StrEnum):
    DISABLED = "disabled"
    STARTING = "starting"
    OK = "ok"
    DEGRADED = "degraded"
    FAILING = "failing"


class VideoStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
