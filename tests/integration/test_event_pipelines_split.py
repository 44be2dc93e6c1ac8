"""Several event pipelines (FACEWATCH_EVENT_PIPELINES): real cores, real gallery actors, a real DB.

Each camera group belongs to one pipeline (actors/pipeline_router.py); these tests put two real
`EventPipelineCore`s behind the router's Ray-free `post_routed_async` and check what the split must
keep: the callers' order, idempotent retries, per-group episode state that is loaded and closed only
by its owner. One of several pipeline ACTORS killed mid-stream: tests/integration/test_event_pipelines_fault.py.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from actors.event_pipeline import EventPipelineCore
from actors.pipeline_router import pipeline_index, post_routed_async
from facewatch.sightings import FaceSighting
from storage import orm
from storage.unit_of_work import UnitOfWork
from tests.integration.test_event_pipeline import CAL, World, near, unit

pytestmark = pytest.mark.usefixtures("ray_module")
RAY_OPTIONS = {"num_cpus": 4, "namespace": "test-event-pipelines"}
PIPELINES = 2


@pytest.fixture
def world(db_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    w = World(db_url, tmp_path, request.node.name)
    # Open the shard actors first, as the service does before any pipeline starts (here the two cores
    # share one Galleries, which their first concurrent searches would otherwise both create).
    w.galleries.open_all()
    with UnitOfWork(db_url) as uow:
        uow.settings.update({"episode_idle_timeout_s": 3600.0})  # a slow machine must not close them by the clock
        uow.commit()
    # The two groups of World land on different pipelines: that is what is under test.
    assert pipeline_index(w.lobby.id, PIPELINES) != pipeline_index(w.garage.id, PIPELINES)
    yield w
    w.close()


def cores(world: World) -> list[EventPipelineCore]:
    return [EventPipelineCore(world.url, world.galleries, CAL, pipeline=i, pipelines=PIPELINES)
            for i in range(PIPELINES)]


def post(pipelines: list[EventPipelineCore], *sightings: FaceSighting) -> list[str | None]:
    async def post_to(index: int, share: list[FaceSighting]) -> list[str | None]:
        return await pipelines[index].post(share)

    return asyncio.run(post_routed_async(list(sightings), len(pipelines), post_to))


def count(world: World, table: type[orm.Base]) -> int:
    with UnitOfWork(world.url) as uow:
        return int(uow.session.scalar(select(func.count()).select_from(table)))


def test_each_group_is_judged_by_its_own_pipeline_and_retries_add_nothing(world: World) -> None:
    face = unit(11)
    pipelines = cores(world)
    batch = [world.sighting(face, 0, group=world.lobby.id),
             world.sighting(near(face, 0.95, 12), 1, group=world.garage.id),
             world.sighting(near(face, 0.95, 13), 2, group=world.lobby.id)]
    ids = post(pipelines, *batch)
    assert ids == [s.event_id for s in batch]  # the callers' order, across both pipelines
    lobby, garage = (pipelines[pipeline_index(g, PIPELINES)] for g in (world.lobby.id, world.garage.id))
    assert set(lobby.episodes) == {world.lobby.id} and set(garage.episodes) == {world.garage.id}
    # Episodes are per group: the lobby's two sightings share one, the garage's is its own.
    episodes = {world.event(i).episode_id for i in ids}
    assert world.event(ids[0]).episode_id == world.event(ids[2]).episode_id and len(episodes) == 2
    assert post(pipelines, *batch) == ids  # a retried hand-off (e.g. after a pipeline restart)
    assert post(cores(world), *batch) == ids  # ... to restarted pipelines
    assert count(world, orm.Event) == 3
    assert sum(p.stats()["sightings_misrouted"] for p in pipelines) == 0


def test_a_restarted_pipeline_loads_and_closes_only_its_own_groups(world: World) -> None:
    first = post(cores(world), world.sighting(unit(21), 0, group=world.lobby.id),
                 world.sighting(unit(22), 0, group=world.garage.id))
    with UnitOfWork(world.url) as uow:  # both episodes look idle for 10 minutes by the wall clock
        uow.settings.update({"episode_idle_timeout_s": 60.0})
        uow.session.execute(update(orm.Episode).values(updated_at=datetime.now(UTC) - timedelta(minutes=10)))
        uow.commit()
    garage_owner = pipeline_index(world.garage.id, PIPELINES)
    restarted = EventPipelineCore(world.url, world.galleries, CAL, pipeline=garage_owner, pipelines=PIPELINES)
    assert restarted.episodes == {}  # its stale garage episode closed, the lobby's is none of its business
    lobby_episode, garage_episode = (world.event(i).episode_id for i in first)
    with UnitOfWork(world.url) as uow:
        assert uow.episodes.get(garage_episode).open is False
        assert uow.episodes.get(lobby_episode).open is True  # left to the lobby's pipeline and its clock
        uow.session.execute(update(orm.Episode).where(orm.Episode.id == lobby_episode)
                            .values(updated_at=datetime.now(UTC)))
        uow.settings.update({"episode_idle_timeout_s": 3600.0})
        uow.commit()
    lobby_owner = EventPipelineCore(world.url, world.galleries, CAL, pipeline=1 - garage_owner, pipelines=PIPELINES)
    assert [e.id for e in lobby_owner.episodes[world.lobby.id]] == [lobby_episode]
    assert set(lobby_owner.episodes) == {world.lobby.id}


def test_a_misrouted_sighting_is_kept_and_counted(world: World) -> None:
    wrong = cores(world)[1 - pipeline_index(world.lobby.id, PIPELINES)]
    sighting = world.sighting(unit(31), 0, group=world.lobby.id)
    assert world.post(wrong, sighting) == [sighting.event_id]
    assert wrong.stats()["sightings_misrouted"] == 1 and count(world, orm.Event) == 1


def test_a_pipeline_index_outside_the_count_is_refused(world: World) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        EventPipelineCore(world.url, world.galleries, CAL, pipeline=2, pipelines=2)
