"""Routing sightings to the event pipelines (actors/pipeline_router.py): pure parts, no Ray.

The real pipelines behind the router are in tests/integration/test_event_pipelines_split.py (fast, Ray) and
tests/integration/test_event_pipelines_fault.py (slow: one of several actors killed mid-stream)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import numpy as np
import pytest

from actors.pipeline_router import merge, pipeline_index, post_routed_async, route
from facewatch.names import EVENT_PIPELINE, event_pipeline_name
from facewatch.sightings import FaceSighting


def sighting(event_id: str, group: int) -> FaceSighting:
    return FaceSighting(event_id=event_id, job_id=None, camera_group_id=group, camera_id=None,
                        timestamp=datetime(2026, 1, 1, tzinfo=UTC), bbox=[0, 0, 1, 1], detection_score=1.0,
                        quality=0.5, embedding=np.zeros(4, np.float32), model="m")


def test_one_camera_group_always_goes_to_one_pipeline() -> None:
    assert [pipeline_index(g, 4) for g in range(1, 9)] == [1, 2, 3, 0, 1, 2, 3, 0]
    assert {pipeline_index(g, 1) for g in range(50)} == {0}
    assert pipeline_index(None, 3) == 0
    with pytest.raises(ValueError):
        pipeline_index(1, 0)


def test_names_keep_the_first_pipelines_historic_name() -> None:
    assert [event_pipeline_name(i) for i in range(3)] == [EVENT_PIPELINE, f"{EVENT_PIPELINE}-1",
                                                         f"{EVENT_PIPELINE}-2"]
    assert event_pipeline_name(2, "p") == "p-2"


def test_route_and_merge_keep_the_callers_order() -> None:
    batch = [sighting(f"e{i}", g) for i, g in enumerate([1, 2, 3, 1, 2])]
    parts = route(batch, 2)
    assert parts == {1: [0, 2, 3], 0: [1, 4]}
    answers = {1: ["e0", None, "e3"], 0: ["e1", "e4"]}
    assert merge(len(batch), parts, answers) == ["e0", "e1", None, "e3", "e4"]
    with pytest.raises(RuntimeError, match="answered 1 ids for 2"):
        merge(len(batch), parts, {1: ["e0", None, "e3"], 0: ["e1"]})


def test_each_pipelines_share_is_posted_once_and_concurrently() -> None:
    batch = [sighting(f"e{i}", g) for i, g in enumerate([5, 6, 7, 8, 5, 6])]
    calls: list[tuple[int, list[str]]] = []
    running: set[int] = set()
    overlapped: list[bool] = []

    async def post_to(index: int, share: list[FaceSighting]) -> list[str | None]:
        calls.append((index, [s.event_id for s in share]))
        running.add(index)
        await asyncio.sleep(0.01)
        overlapped.append(len(running) > 1)
        running.discard(index)
        return [None if s.event_id == "e2" else s.event_id for s in share]

    assert asyncio.run(post_routed_async(batch, 4, post_to)) == ["e0", "e1", None, "e3", "e4", "e5"]
    assert sorted(calls) == [(0, ["e3"]), (1, ["e0", "e4"]), (2, ["e1", "e5"]), (3, ["e2"])]
    assert any(overlapped)


def test_a_failed_share_fails_the_call_so_the_caller_retries_all() -> None:
    async def post_to(index: int, share: list[FaceSighting]) -> list[str | None]:
        if index == 1:
            raise ConnectionError("pipeline 1 is restarting")
        return [s.event_id for s in share]

    with pytest.raises(ConnectionError):
        asyncio.run(post_routed_async([sighting("a", 1), sighting("b", 2)], 2, post_to))


def test_jobs_learn_the_pipeline_count_from_the_settings(tmp_path) -> None:
    from actors.camera_job import JobTuning
    from cluster.service import job_spec_defaults
    from facewatch.settings import load_config

    config = load_config({"FACEWATCH_HOME": str(tmp_path), "FACEWATCH_EVENT_PIPELINES": "4"})
    tuning = JobTuning.from_spec(job_spec_defaults(config))
    assert (tuning.pipelines, tuning.pipeline_name) == (4, EVENT_PIPELINE)
    assert load_config({"FACEWATCH_HOME": str(tmp_path)}).event_pipelines == 1
