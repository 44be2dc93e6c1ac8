"""ProbeJob: a test stand-in for a camera/video job — a real Ray actor, but no video pipeline.

It follows the job actor contract of `actors.job_manager` exactly (constructor, idempotent `run()`,
heartbeats, `finished`/`failed`), reports the node it runs on, and can be told to misbehave, so the
manager's leases, back-off, adoption and placement are tested against a real actor on real nodes.
Never used in production.

Behaviour comes from `job_spec["probe"]` (e.g. the manager's `spec_defaults`) updated by the job's
`stream_settings["probe"]` (per camera or video), all optional:
- heartbeat_s: heartbeat period (default: the spec's heartbeat_s);
- status / error: what every heartbeat reports (default "ok" / "");
- finish_after_s: report finished(summary) after this long (a single-pass video that ended);
- fail_after_s: report failed(error) after this long;
- hang_after_s: stop heartbeating (and do nothing) after this long, like a hung decoder;
- fail_in_init: raise in the constructor (the actor never starts);
- frames_total: for videos, the length of the pretend video (default 100); one frame per heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

CALL_TIMEOUT_S = 5.0
REPORT_DEADLINE_S = 60.0  # how long finished()/failed() is retried while the manager is away


@dataclass(frozen=True)
class ProbeBehaviour:
    heartbeat_s: float
    status: str = "ok"
    error: str = ""
    finish_after_s: float | None = None
    fail_after_s: float | None = None
    hang_after_s: float | None = None
    fail_in_init: bool = False
    frames_total: int = 100

    @classmethod
    def from_spec(cls, job_spec: dict[str, Any]) -> ProbeBehaviour:
        settings = {**job_spec.get("probe", {}), **(job_spec.get("stream_settings") or {}).get("probe", {})}
        settings.setdefault("heartbeat_s", float(job_spec.get("heartbeat_s", 4.0)))
        return cls(**settings)


@ray.remote(num_cpus=0, max_concurrency=2)  # run() blocks; the second thread answers info()
class ProbeJob:
    def __init__(self, job_spec: dict[str, Any], manager_name: str, namespace: str) -> None:
        self.spec = dict(job_spec)
        self.behaviour = ProbeBehaviour.from_spec(self.spec)
        if self.behaviour.fail_in_init:
            raise RuntimeError("probe told to fail in its constructor")
        self.manager_name, self.namespace = manager_name, namespace
        self.node_id = ray.get_runtime_context().get_node_id()
        self.beats = 0
        self.outcome = ""
        self._manager: ActorHandle | None = None
        self._started = False

    def info(self) -> dict[str, Any]:
        """For tests: who and where this actor is, and how far it got."""
        return {"holder": self.spec["holder"], "attempt": self.spec["attempt"], "node_id": self.node_id,
                "beats": self.beats, "outcome": self.outcome}

    def run(self) -> str:
        if self._started:
            return "already running"
        self._started = True
        self.outcome = self._run()
        return self.outcome

    def _run(self) -> str:
        b = self.behaviour
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            if b.finish_after_s is not None and elapsed >= b.finish_after_s:
                self._report("finished", self._summary())
                return "finished"
            if b.fail_after_s is not None and elapsed >= b.fail_after_s:
                self._report("failed", b.error or "probe told to fail")
                return "failed"
            if b.hang_after_s is not None and elapsed >= b.hang_after_s:
                while True:  # hung: alive, silent, never returns
                    time.sleep(3600)
            if self._heartbeat() is False:
                return "lease lost"
            time.sleep(b.heartbeat_s)

    def _stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = {"node_id": self.node_id, "beats": self.beats, "frames_decoded": self.beats}
        if self.spec.get("kind") == "video":
            stats["frames_total"] = self.behaviour.frames_total
            stats["frames_done"] = min(self.beats, self.behaviour.frames_total)
        return stats

    def _summary(self) -> dict[str, Any]:
        return {"frames_done": self.behaviour.frames_total, "frames_total": self.behaviour.frames_total,
                "events_count": 0}

    def _heartbeat(self) -> bool | None:
        """The manager's answer, or None when no manager answered (keep going, ask again later)."""
        self.beats += 1
        b = self.behaviour
        return self._call("heartbeat", self.spec["job_id"], self.spec["holder"], self._stats(), b.status, b.error)

    def _report(self, method: str, payload: Any) -> None:
        deadline = time.monotonic() + REPORT_DEADLINE_S
        while time.monotonic() < deadline:
            if self._call(method, self.spec["job_id"], self.spec["holder"], payload) is not None:
                return
            time.sleep(0.5)

    def _call(self, method: str, *args: Any) -> Any:
        try:
            if self._manager is None:
                self._manager = ray.get_actor(self.manager_name, namespace=self.namespace)
            return ray.get(getattr(self._manager, method).remote(*args), timeout=CALL_TIMEOUT_S)
        except (ValueError, RayError):  # restarting, gone, timed out, or its DB briefly down
            self._manager = None  # look it up again next time
            return None
