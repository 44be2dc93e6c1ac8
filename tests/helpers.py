"""Helpers shared by the test modules: one way to start a local Ray, one way to wait for a condition."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import ray

T = TypeVar("T")


START_ATTEMPTS = 3
"""On a crowded machine the raylet may miss Ray's fixed 30 s start-up window: try again."""


@contextmanager
def local_ray(num_cpus: int = 2, namespace: str | None = None, resources: dict[str, float] | None = None,
              address: str | None = None, **options: Any) -> Iterator[None]:
    """A fresh single-node Ray for the block: no dashboard (it costs CPU the tests need), worker logs
    kept out of the test output, shut down afterwards. Module fixtures wrap it: `with local_ray(4): yield`.
    With `address` it joins that running cluster instead (num_cpus and resources are the cluster's)."""
    log_to_driver = options.pop("log_to_driver", False)
    for attempt in range(START_ATTEMPTS):
        try:
            if address:
                ray.init(address=address, namespace=namespace, log_to_driver=log_to_driver, **options)
            else:
                ray.init(address="local", num_cpus=num_cpus, namespace=namespace, resources=resources,
                         include_dashboard=False, log_to_driver=log_to_driver, **options)
            break
        except Exception:
            ray.shutdown()
            if attempt == START_ATTEMPTS - 1:
                raise
    try:
        yield
    finally:
        ray.shutdown()


def wait_for(probe: Callable[[], T], timeout_s: float = 10.0, what: str = "condition", every_s: float = 0.1,
             ignoring: tuple[type[BaseException], ...] = ()) -> T:
    """The first truthy value of `probe()`, polled every `every_s`; AssertionError after `timeout_s`.
    Exceptions of the `ignoring` types count as "not yet" (e.g. an API replica that is restarting)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            value = probe()
        except ignoring:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def kill_for_good(handle: Any, timeout_s: float = 60.0) -> None:
    """`ray.kill(handle, no_restart=True)`, returning once the actor's process is gone: the kill is
    asynchronous, and until it lands the actor may still answer a call."""
    ray.kill(handle, no_restart=True)

    def gone() -> bool:
        try:
            ray.get(handle.__ray_ready__.remote(), timeout=10)
        except ray.exceptions.RayActorError:
            return True
        return False

    wait_for(gone, timeout_s, "the killed actor to stop answering", ignoring=(ray.exceptions.GetTimeoutError,))
