"""Routing sightings to the event-pipeline actors: one camera group, one actor (docs/event_pipeline.md).

FACEWATCH_EVENT_PIPELINES actors (`event-pipeline`, `event-pipeline-1`, … in the facewatch namespace,
facewatch/names.py) share the cluster's sightings. Every caller — a camera or video job's hand-over, the
still-photo `POST /v1/events` — goes through `PipelineRouter`, which sends each sighting to
`pipeline_index(camera_group_id, pipelines)`. Why by camera group: dedup windows and episodes are
per group and kept in the actor's memory, so one group's sightings must always meet the same state;
a retried hand-off of a sighting lands on the same actor and finds its committed event (ids are keyed
by job, run, track and shot).

The split and merge are Ray-free (`route`, `post_routed_async`); `PipelineRouter` adds the Ray lookups.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import ray

from facewatch.names import EVENT_PIPELINE, NAMESPACE, event_pipeline_name
from facewatch.sightings import FaceSighting

Answer = list[str | None]  # per sighting: its event id, or None when the pipeline dropped it


def pipeline_index(camera_group_id: int | None, pipelines: int) -> int:
    """The actor of a camera group. Modulo, not a hash: group ids are dense integers, so groups spread
    evenly, and anyone can tell which actor holds a group. No group (never in practice) → actor 0."""
    if pipelines < 1:
        raise ValueError("there is at least one event pipeline")
    return int(camera_group_id or 0) % pipelines


def route(sightings: Sequence[FaceSighting], pipelines: int) -> dict[int, list[int]]:
    """Per actor index, the positions of its sightings in `sightings` (their order kept)."""
    parts: dict[int, list[int]] = {}
    for position, sighting in enumerate(sightings):
        parts.setdefault(pipeline_index(sighting.camera_group_id, pipelines), []).append(position)
    return parts


async def post_routed_async(sightings: Sequence[FaceSighting], pipelines: int,
                            post_to: Callable[[int, list[FaceSighting]], Awaitable[Answer]]) -> Answer:
    """Post each actor's share at once (concurrently), and answer in the order of `sightings`.
    A failed share fails the whole call: the caller retries all, which the event ids make harmless."""
    parts = route(sightings, pipelines)
    answers = await asyncio.gather(*(post_to(index, [sightings[p] for p in positions])
                                     for index, positions in parts.items()))
    return merge(len(sightings), parts, dict(zip(parts, answers, strict=True)))


def merge(count: int, parts: dict[int, list[int]], answers: dict[int, Answer]) -> Answer:
    """The actors' answers put back in the order of the `count` sightings that `route` split."""
    result: Answer = [None] * count
    for index, positions in parts.items():
        answer = answers[index]
        if len(answer) != len(positions):
            raise RuntimeError(f"event pipeline {index} answered {len(answer)} ids for {len(positions)} sightings")
        for position, event_id in zip(positions, answer, strict=True):
            result[position] = event_id
    return result


class PipelineRouter:
    """The Ray side: finds the actors by name (cached; a failed call forgets the handle so the next one
    looks it up again, e.g. after Ray restarted the actor)."""

    def __init__(self, pipelines: int = 1, namespace: str = NAMESPACE, name: str = EVENT_PIPELINE) -> None:
        self.pipelines = max(1, int(pipelines))
        self.namespace = namespace
        self.name = name  # the first actor's name; the others are `{name}-{i}`
        self._handles: dict[int, Any] = {}

    def handle(self, index: int) -> Any:
        """The actor handle of pipeline `index`; ValueError when it is not running."""
        if index not in self._handles:
            self._handles[index] = ray.get_actor(event_pipeline_name(index, self.name), namespace=self.namespace)
        return self._handles[index]

    async def _post_to(self, index: int, batch: list[FaceSighting], timeout_s: float | None) -> Answer:
        try:
            return list(await asyncio.wait_for(self.handle(index).post.remote(batch), timeout_s))
        except Exception:
            self._handles.pop(index, None)
            raise

    async def post_async(self, sightings: Sequence[FaceSighting], timeout_s: float | None = None) -> Answer:
        """From an event loop (the API)."""
        return await post_routed_async(sightings, self.pipelines,
                                       lambda index, batch: self._post_to(index, batch, timeout_s))

    def post(self, sightings: Sequence[FaceSighting], timeout_s: float | None = None) -> Answer:
        """Blocking, from a thread without an event loop (a camera job's posting thread)."""
        parts = route(sightings, self.pipelines)
        refs = {}
        try:
            for index, positions in parts.items():
                refs[index] = self.handle(index).post.remote([sightings[p] for p in positions])
            answers = dict(zip(refs, ray.get(list(refs.values()), timeout=timeout_s), strict=True))
        except Exception:
            self._handles.clear()
            raise
        return merge(len(sightings), parts, answers)


__all__ = ["Answer", "PipelineRouter", "merge", "pipeline_index", "post_routed_async", "route"]
