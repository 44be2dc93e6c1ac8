"""How the API reaches the JobManager (the detached Ray actor `job-manager` in namespace `facewatch`).

The manager is found by name on every use, so an API replica keeps working across manager restarts.
Without Ray (tests of the plain API) or without a running manager, the endpoints that need it answer
503 SERVICE_UNAVAILABLE; camera changes are then picked up by the manager's own reconcile pass once it
runs (it rereads the camera table every second), so `notify_camera_changed` never fails a request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.job_manager import MANAGER_NAME, NAMESPACE
from facewatch.errors import FacewatchError, ServiceUnavailable

log = logging.getLogger("facewatch.api.jobs")

CALL_TIMEOUT_S = 30.0
NOTIFY_TIMEOUT_S = 5.0


def find_job_manager() -> Any | None:
    """The manager's actor handle, or None (no Ray in this process, or no manager running)."""
    import ray

    if not ray.is_initialized():
        return None
    try:
        return ray.get_actor(MANAGER_NAME, namespace=NAMESPACE)
    except Exception:  # noqa: BLE001 - ValueError when absent; anything else means unreachable
        return None


def require_job_manager() -> Any:
    handle = find_job_manager()
    if handle is None:
        raise ServiceUnavailable("the job manager is not running (start the service with `facewatch serve`)")
    return handle


def _unwrap(exc: BaseException) -> FacewatchError:
    """The manager's typed error (NOT_FOUND, CONFLICT) as raised there; anything else is a 503."""
    from ray.exceptions import RayTaskError

    cause = exc.cause if isinstance(exc, RayTaskError) else exc
    if isinstance(cause, FacewatchError):
        return type(cause)(cause.reason, param=cause.param, **cause.extra)
    return ServiceUnavailable(f"the job manager did not answer: {type(cause).__name__}")


async def call_manager(method: str, *args: Any, timeout_s: float = CALL_TIMEOUT_S) -> Any:
    """`await` one manager method; typed errors come back as they were raised."""
    handle = require_job_manager()
    try:
        return await asyncio.wait_for(getattr(handle, method).remote(*args), timeout_s)
    except Exception as exc:  # noqa: BLE001 - mapped to the API's error codes
        raise _unwrap(exc) from None


def _notify(method: str, *args: Any) -> None:
    """Call a manager method and wait briefly (best effort: its next pass, ≤ 1 s, catches up anyway)."""
    handle = find_job_manager()
    if handle is None:
        return
    import ray

    try:
        ray.get(getattr(handle, method).remote(*args), timeout=NOTIFY_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - see above
        log.warning("job manager: %s%s not delivered: %s", method, args, type(exc).__name__)


def notify_camera_changed(camera_id: int) -> None:
    """Tell the manager at once that a camera was created, changed or deleted."""
    _notify("ensure_camera", int(camera_id))


def notify_cameras_changed() -> None:
    """Tell the manager at once that camera groups changed (activation, labels): it reconciles every job."""
    _notify("sync_jobs")
