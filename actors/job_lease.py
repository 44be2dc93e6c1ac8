"""A job's side of its lease with the JobManager: heartbeats, the stall watchdog, final reports.

The manager keeps a job's lease while heartbeats arrive (`heartbeat(job_id, holder, stats, status,
error)` answers False when the lease went to another holder: the job then stops). When the pipeline
makes no progress for `stall_timeout_s` (a hung decoder or model) the heartbeats stop, the lease
lapses and the manager kills and re-places the job. `finished` / `failed` are retried for
`REPORT_DEADLINE_S` while the manager is away (it may be restarting).

The manager is reached through a `call(method, *args)` function (None when no manager answered), so
the loop's rules are tested without Ray; `ray_manager_call` is the production one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

log = logging.getLogger("facewatch.camera_job")

MANAGER_CALL_TIMEOUT_S = 10.0
REPORT_DEADLINE_S = 120.0  # how long finished()/failed() is retried while the manager is away

ManagerCall = Callable[..., Any]


def ray_manager_call(manager_name: str, namespace: str) -> ManagerCall:
    """A call on the named manager actor; None when no manager answered (looked up again next time)."""
    handle: list[ActorHandle | None] = [None]

    def call(method: str, *args: Any) -> Any:
        try:
            if handle[0] is None:
                handle[0] = ray.get_actor(manager_name, namespace=namespace)
            return ray.get(getattr(handle[0], method).remote(*args), timeout=MANAGER_CALL_TIMEOUT_S)
        except (ValueError, RayError):
            handle[0] = None
            return None

    return call


class JobLease:
    """Heartbeats while `done` is not set; `lost` once the manager gave the lease to someone else."""

    def __init__(self, job_id: int, holder: str, call: ManagerCall, heartbeat_s: float, stall_timeout_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.job_id, self.holder = job_id, holder
        self.call = call
        self.heartbeat_s, self.stall_timeout_s = heartbeat_s, stall_timeout_s
        self.clock = clock
        self.lost = False
        self.progress_at = clock()

    def touch(self) -> None:
        """The pipeline made progress (the stall watchdog's clock)."""
        self.progress_at = self.clock()

    def stalled(self) -> bool:
        return self.clock() - self.progress_at > self.stall_timeout_s

    def beat(self, stats: dict[str, Any], status: str, error: str) -> bool:
        """One heartbeat; False when the lease is lost (a manager that did not answer keeps it)."""
        if self.call("heartbeat", self.job_id, self.holder, stats, status, error) is False:
            log.warning("job %s: lease lost (holder %s); stopping", self.job_id, self.holder)
            self.lost = True
        return not self.lost

    def run(self, done: threading.Event, snapshot: Callable[[], tuple[dict[str, Any], str, str]],
            after_beat: Callable[[], None] = lambda: None) -> None:
        """Beat every `heartbeat_s` until `done` or the lease is lost; `snapshot()` gives (stats,
        status, error); `after_beat()` runs after every beat, or every skipped one."""
        while not done.is_set():
            if self.stalled():
                # No heartbeat: the lease lapses and the manager re-places the job.
                log.error("job %s: no progress for %.0f s; letting the lease lapse", self.job_id,
                          self.stall_timeout_s)
            elif not self.beat(*snapshot()):
                return
            after_beat()
            done.wait(self.heartbeat_s)

    def report(self, method: str, payload: Any, deadline_s: float = REPORT_DEADLINE_S) -> bool:
        """`finished`/`failed`, retried while no manager answers; whether one took it."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if self.call(method, self.job_id, self.holder, payload) is not None:
                return True
            time.sleep(0.5)
        log.error("job %s: the manager did not take %s()", self.job_id, method)
        return False
