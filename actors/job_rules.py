"""The job manager's rules, as pure functions: placement, back-off, statuses, job specs, errors.

No Ray calls and no DB (unit-tested in tests/integration/test_job_manager.py and tests/integration/test_job_core.py);
`actors/job_reconciler.py` applies them, `actors/job_manager.py` is the actor.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import ray
from ray.actor import ActorClass
from ray.exceptions import RayTaskError

from facewatch import backoff
from facewatch.names import JOB_ACTOR_PREFIX, job_actor_name
from facewatch.states import CameraStatus, JobHealth
from storage import orm

DEFAULT_JOB_FACTORY = "actors.camera_job:CameraJob"
GROUP_LABEL = "camera-group"
SLOT_RESOURCE = "camera_slots"
HEAD_RESOURCE = "node:__internal_head__"
JOB_PREFIX = JOB_ACTOR_PREFIX
ERROR_CHARS = 500
ANSI_CODES = re.compile(r"\x1b\[[0-9;]*m")
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*:")


def backoff_delay(failures: int, initial_s: float, factor: float, max_s: float) -> float:
    """Seconds to wait before the next attempt after `failures` failures in a row (0 → none)."""
    return backoff.backoff_delay(failures, initial_s, factor, max_s)


def camera_status(job_status: str, running_for_s: float, starting_window_s: float) -> CameraStatus:
    """The Camera row's status from a heartbeat (SPEC §2); `disabled` is set when the job stops."""
    # The job's own bad news outranks "starting": an operator should see a broken stream at once.
    if job_status in (JobHealth.FAILING, JobHealth.DEGRADED):
        return CameraStatus(job_status)
    return CameraStatus.STARTING if running_for_s < starting_window_s else CameraStatus.OK


def group_value(labels: Mapping[str, Any] | None) -> str | None:
    """The camera-group value of a group's (or node's) labels; None when unlabelled."""
    value = (labels or {}).get(GROUP_LABEL)
    return str(value) if value not in (None, "") else None


def node_may_run(node_group: str | None, job_group: str | None) -> bool:
    """The placement rule: the job's own group's nodes, or nodes without a camera-group label."""
    return node_group is None or (job_group is not None and node_group == job_group)


def placement_options(job_group: str | None, groups_in_use: Iterable[str]) -> dict[str, Any]:
    """Ray `label_selector` (+ `fallback_strategy`) options that implement `node_may_run`."""
    labelled = sorted({*groups_in_use, *([job_group] if job_group else [])})
    # No spaces after the commas: Ray 2.60 keeps them as part of the values, so "!in(a, b)" would
    # not exclude b.
    unlabelled = {GROUP_LABEL: f"!in({','.join(labelled)})"} if labelled else {}
    if job_group:
        return {"label_selector": {GROUP_LABEL: job_group}, "fallback_strategy": [{"label_selector": unlabelled}]}
    return {"label_selector": unlabelled} if unlabelled else {}


def pending_reason(job_group: str | None, nodes: Iterable[Mapping[str, Any]]) -> str:
    """Why Ray has not started a job actor yet, in words, from `ray.nodes()`."""
    where = f"{GROUP_LABEL}={job_group} or unlabelled" if job_group else f"without a {GROUP_LABEL} label"
    usable = [
        n for n in nodes
        if n.get("Alive") and n.get("Resources", {}).get(SLOT_RESOURCE, 0) >= 1
        and node_may_run(group_value(n.get("Labels")), job_group)
    ]
    if not usable:
        return f"no live node may run it: needs a node ({where}) with {SLOT_RESOURCE}"
    slots = int(sum(n["Resources"][SLOT_RESOURCE] for n in usable))
    return f"waiting for a free camera slot: all {slots} slot(s) on the {len(usable)} node(s) {where} are taken"


def short_error(exc: BaseException) -> str:
    """One readable line for last_error / status_error (Ray errors carry whole tracebacks)."""
    cause = exc.cause if isinstance(exc, RayTaskError) and exc.cause is not None else exc
    lines = [line.strip() for line in ANSI_CODES.sub("", str(cause)).splitlines() if line.strip()]
    if not lines:
        return type(cause).__name__
    text = lines[0]
    if len(lines) > 1 and EXCEPTION_LINE.match(lines[-1]):
        # "The actor died because of an error raised in its creation task, <where>\n<traceback>\nX: why"
        text = f"{text.split(',')[0]}: {lines[-1]}"
    return text[:ERROR_CHARS]


def load_actor_class(path: str) -> ActorClass:
    """The Ray actor class named "module:Class" (imported lazily: the job module may be heavy)."""
    module_name, _, attr = path.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    return cls if isinstance(cls, ActorClass) else ray.remote(cls)


def utcnow() -> datetime:
    return datetime.now(UTC)


def seconds_since(iso: str | None, now: datetime) -> float:
    return (now - datetime.fromisoformat(iso)).total_seconds() if iso else 0.0



@dataclass(frozen=True)
class Timing:
    lease_ttl_s: float = 10.0
    heartbeat_s: float = 4.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 60.0
    backoff_factor: float = 2.0
    healthy_after_s: float = 60.0  # a job that ran this long is healthy again: its back-off resets
    supervisor_period_s: float = 1.0
    starting_window_s: float = 30.0
    placement_wait_s: float = 3.0  # after this, a job actor Ray has not started gets a pending reason



def actor_options(job_id: int, namespace: str, num_cpus: float, job_group: str | None,
                  groups_in_use: Iterable[str], num_gpus: float = 0.0) -> dict[str, Any]:
    """The Ray options of a job's actor (see the contract in actors/job_manager.py)."""
    return {
        "name": job_actor_name(job_id),
        "namespace": namespace,
        "lifetime": "detached",  # survives a manager restart, which re-adopts it by name
        "max_restarts": 0,  # the manager re-places jobs (new holder); a Ray restart would skip run()
        "num_cpus": num_cpus,
        # A camera job gets a GPU share only when configured (FACEWATCH_CAMERA_GPU_FRACTION).
        "num_gpus": num_gpus,
        "resources": {SLOT_RESOURCE: 1},
        **placement_options(job_group, groups_in_use),
    }


def job_spec(job: orm.Job, source: orm.Camera | orm.Video, holder: str, timing: Timing,
             defaults: Mapping[str, Any]) -> dict[str, Any]:
    """What a job actor is constructed with (see the contract in actors/job_manager.py)."""
    is_video = isinstance(source, orm.Video)
    return {
        **defaults,
        "job_id": job.id,
        "attempt": job.attempts + 1,
        "holder": holder,
        "kind": job.kind,
        "url": source.source_url if is_video else source.url,
        "media_key": source.media_key if is_video else "",
        "camera_id": source.camera_id if is_video else source.id,
        "camera_group_id": source.camera_group_id,
        "video_id": source.id if is_video else None,
        "stream_settings": dict(source.stream_settings or {}),
        "single_pass": job.single_pass,
        "heartbeat_s": timing.heartbeat_s,
        "lease_ttl_s": timing.lease_ttl_s,
    }


def job_dict(job: orm.Job) -> dict[str, Any]:
    """A job row as plain data for the API."""

    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "id": job.id, "kind": str(job.kind), "camera_id": job.camera_id, "video_id": job.video_id,
        "single_pass": job.single_pass, "desired_state": str(job.desired_state), "state": str(job.state),
        "actor_name": job_actor_name(job.id), "lease_holder": job.lease_holder, "lease_node": job.lease_node,
        "lease_expires_at": iso(job.lease_expires_at), "attempts": job.attempts,
        "consecutive_failures": job.consecutive_failures, "backoff_until": iso(job.backoff_until),
        "last_error": job.last_error, "stats": dict(job.stats or {}),
        "created_at": iso(job.created_at), "updated_at": iso(job.updated_at),
    }
