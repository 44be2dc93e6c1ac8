"""The task state machine and part planning (pure: no Ray, no database).

A task moves `pending` → `running` → `done` | `failed`, or to `cancelled` from either of the first
two. `done`, `failed` and `cancelled` are final. A task's work is split into parts; each part is
`pending` → `running` → `done` | `failed`, and a `running` part whose worker vanished (node died,
supervisor restarted) goes back to `pending` and runs again — its result is committed once, keyed by
the part's id, so re-running a part never counts it twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

PENDING, RUNNING, DONE, FAILED, CANCELLED = "pending", "running", "done", "failed", "cancelled"
TASK_STATUSES = (PENDING, RUNNING, DONE, FAILED, CANCELLED)
FINAL = frozenset({DONE, FAILED, CANCELLED})
ACTIVE = (PENDING, RUNNING)
PART_STATUSES = (PENDING, RUNNING, DONE, FAILED)

_TASK_MOVES = {
    PENDING: {RUNNING, FAILED, CANCELLED},
    RUNNING: {DONE, FAILED, CANCELLED},
}
_PART_MOVES = {
    PENDING: {RUNNING, DONE, FAILED},
    RUNNING: {PENDING, DONE, FAILED},
}

KINDS = ("export", "cross_match", "cleanup", "reextract", "evaluate", "estimate")


class TransitionError(ValueError):
    """A move the state machine does not allow (e.g. cancelling a finished task)."""


def can_move(current: str, new: str) -> bool:
    return new in _TASK_MOVES.get(current, set())


def check_move(current: str, new: str) -> None:
    if not can_move(current, new):
        raise TransitionError(f"a {current} task cannot become {new}")


def can_move_part(current: str, new: str) -> bool:
    return new in _PART_MOVES.get(current, set())


@dataclass(frozen=True)
class Progress:
    total: int
    done: int
    failed: int
    open: int  # pending or running


def progress(part_statuses: Iterable[str]) -> Progress:
    statuses = list(part_statuses)
    done = sum(1 for s in statuses if s == DONE)
    failed = sum(1 for s in statuses if s == FAILED)
    return Progress(total=len(statuses), done=done, failed=failed, open=len(statuses) - done - failed)


def outcome(p: Progress) -> str | None:
    """The task's final status once no part is open: `done` unless every part failed; None while open.

    A task with some failed parts is `done`: its result holds what the other parts produced and the
    failed parts are listed, each with its error (as the reference platform reports subtask errors).
    """
    if p.open:
        return None
    if p.total and p.failed == p.total:
        return FAILED
    return DONE


def chunks(items: Sequence[T], size: int) -> list[list[T]]:
    """`items` in consecutive parts of at most `size` (at least one part, possibly empty)."""
    if size < 1:
        raise ValueError("size must be at least 1")
    if not items:
        return [[]]
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


def should_retry_part(attempts: int, max_attempts: int) -> bool:
    """A part whose worker was lost runs again until it has been tried `max_attempts` times."""
    return attempts < max_attempts


def task_view(fields: dict[str, Any]) -> dict[str, Any]:
    """What a notification carries: the task's public fields (the caller passes them)."""
    return {k: fields[k] for k in ("id", "kind", "status", "parts_total", "parts_done", "parts_failed",
                                   "error", "summary") if k in fields}
