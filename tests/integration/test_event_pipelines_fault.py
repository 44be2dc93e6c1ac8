"""One of several event-pipeline actors killed mid-stream: nothing lost, nothing duplicated.

Three real `EventPipeline` actors (FACEWATCH_EVENT_PIPELINES=3) behind the real `PipelineRouter`, real
gallery actors, a real DB (SQLite, and PostgreSQL when FACEWATCH_TEST_PG_URL is set). Six camera groups
post batches of sightings the way camera jobs do (the router, retried with back-off by
`actors.face_posting.retry`); when about a third is committed the actor holding two of the groups is
killed. Ray restarts it and re-runs its unanswered post (max_task_retries=-1); a call that fails anyway
is retried by the caller. Event ids are keyed (job, run, track, shot), so a post that had committed
before the kill finds its events: afterwards every sighting is exactly one event with exactly one
webhook outbox row, and the killed actor did restart (its fresh core counted fewer events than its
groups hold, while the others counted exactly theirs: a retry that finds its event counts nothing).
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import ray
from sqlalchemy import func, select

from actors.event_pipeline import EventPipeline
from actors.face_posting import retry
from actors.galleries import Galleries
from actors.pipeline_router import PipelineRouter, pipeline_index
from facewatch.names import event_pipeline_name
from facewatch.sightings import FaceSighting, event_id_for
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.helpers import wait_for
from tests.integration.test_event_pipeline import CAL, DIM, MODEL

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_module"), pytest.mark.timeout(900)]
RAY_OPTIONS = {"num_cpus": 4, "namespace": "test-pipeline-fault"}
NAMESPACE = "test-pipeline-fault"
PIPELINES, GROUPS, PER_GROUP, BATCH = 3, 6, 30, 3
T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def sightings_of(group: int, tracks: range) -> list[FaceSighting]:
    rng = np.random.default_rng(group)
    out = []
    for track in tracks:
        vector = rng.standard_normal(DIM).astype(np.float32)
        out.append(FaceSighting(
            event_id=event_id_for(group, 0, track, 0), job_id=None, camera_group_id=group, camera_id=None,
            timestamp=T0 + timedelta(seconds=track), bbox=[0, 0, 10, 10], detection_score=0.99, quality=0.6,
            embedding=vector / np.linalg.norm(vector), model=MODEL, track_id=track))
    return out


def count(url: str, table: type[orm.Base]) -> int:
    with UnitOfWork(url) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)))


def test_killing_one_of_three_pipelines_mid_stream_loses_and_duplicates_nothing(db_url: str, tmp_path: Path) -> None:
    with UnitOfWork(db_url) as uow:
        groups = [uow.camera_groups.add(orm.CameraGroup(name=f"g{i}", deduplicate=False)).id for i in range(GROUPS)]
        uow.webhooks.add(orm.Webhook(title="all", url="http://127.0.0.1:9/x"))
        uow.commit()
    galleries = Galleries(db_url=db_url, snapshot_dir=str(tmp_path / "snap"), model=MODEL, dim=DIM)
    base = f"fault-pipeline-{uuid.uuid4().hex[:6]}"
    actors = [EventPipeline.options(name=event_pipeline_name(i, base), namespace=NAMESPACE)
              .remote(db_url, galleries, CAL, None, i, PIPELINES) for i in range(PIPELINES)]
    try:
        galleries.open_all()
        ray.get([a.stats.remote() for a in actors], timeout=300)
        stream_and_kill(db_url, groups, actors, base)
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        for router in galleries._routers.values():
            router.kill()


def stream_and_kill(db_url: str, groups: list[int], actors: list[ray.actor.ActorHandle], base: str) -> None:
    victim = pipeline_index(groups[0], PIPELINES)
    assert sum(pipeline_index(g, PIPELINES) == victim for g in groups) == 2  # the victim holds two groups

    router = PipelineRouter(PIPELINES, NAMESPACE, base)
    per_group = {g: sightings_of(g, range(1, PER_GROUP + 1)) for g in groups}
    # Batches mix groups, as the still-photo API's and many cameras' posts do: each call spans pipelines.
    batches = [[s for g in groups for s in per_group[g][i:i + BATCH]] for i in range(0, PER_GROUP, BATCH)]
    total = GROUPS * PER_GROUP
    stop, answers, errors = threading.Event(), [], []

    def produce() -> None:
        try:
            for batch in batches:
                answers.append(retry("the event pipelines", lambda b=batch: router.post(b, timeout_s=120),
                                     8, 0.5, stop))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    producer = threading.Thread(target=produce, name="producer")
    producer.start()
    wait_for(lambda: count(db_url, orm.Event) >= total // 3, 300, "a third of the events", every_s=0.05)
    ray.kill(actors[victim], no_restart=False)  # Ray restarts it (max_restarts=-1)
    committed_at_kill = count(db_url, orm.Event)
    producer.join(600)
    assert not producer.is_alive() and not errors, errors
    assert committed_at_kill < total, "the stream ended before the kill: nothing was tested"

    expected = {s.event_id for batch in batches for s in batch}
    assert [i for answer in answers for i in answer] == [s.event_id for batch in batches for s in batch]
    with UnitOfWork(db_url) as uow:
        ids = list(uow.session.scalars(select(orm.Event.id)))
        outbox = list(uow.session.scalars(select(orm.WebhookOutbox.event_id)))
    assert len(ids) == total and set(ids) == expected  # none lost, none twice (ids are the primary key)
    assert sorted(outbox) == sorted(ids)  # one webhook delivery each, none queued twice
    created = [s["events_created"] for s in ray.get([a.stats.remote() for a in actors], timeout=120)]
    held = [sum(pipeline_index(g, PIPELINES) == i for g in groups) * PER_GROUP for i in range(PIPELINES)]
    assert created[victim] < held[victim]  # a fresh core: the victim restarted
    assert all(c == h for i, (c, h) in enumerate(zip(created, held, strict=True)) if i != victim)
