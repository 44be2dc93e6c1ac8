"""Persons: online assignment in the event pipeline, statuses, scope, durability and re-clustering.

Real gallery actors and a real DB, with synthetic face vectors placed exactly (as in
tests/integration/test_event_pipeline.py); the real faces are in tests/integration/test_persons_real.py.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import func, select

from actors.event_pipeline import EventPipelineCore
from actors.galleries import Galleries
from actors.person_clustering import PersonClustering, person_links, plan_merges
from storage import orm
from storage import persons as p
from storage.outbox import webhook_matches
from storage.unit_of_work import UnitOfWork
from tests.helpers import local_ray
from tests.integration.test_event_pipeline import CAL, T0, World, near, unit

# CAL: confidence 0.78 (the default person threshold) is cosine 0.83.


@pytest.fixture(scope="module")
def ray_cluster():
    address = os.environ.get("FACEWATCH_TEST_RAY_ADDRESS")  # a running cluster, when starting one is slow
    with local_ray(4, f"test-persons-{os.getpid()}", address=address):
        yield


@pytest.fixture
def world(ray_cluster: None, sqlite_url: str, tmp_path, request: pytest.FixtureRequest):
    w = World(sqlite_url, tmp_path, request.node.name)
    yield w
    w.close()


def core(world: World) -> EventPipelineCore:
    return EventPipelineCore(world.url, world.galleries, CAL)


def persons(world: World) -> list[orm.Person]:
    with UnitOfWork(world.url) as uow:
        return list(uow.session.scalars(select(orm.Person).order_by(orm.Person.id)))


def settings(world: World, **values: object) -> None:
    with UnitOfWork(world.url) as uow:
        uow.settings.update(values)
        uow.commit()


# ---- pure parts ------------------------------------------------------------------------------------------
def test_links_count_distinct_face_pairs_between_different_persons() -> None:
    owner = {1: 10, 2: 10, 3: 20, 4: 20, 5: 30}
    pairs = [(1, 3), (3, 1), (2, 4), (1, 2), (5, 9)]  # 3→1 repeats 1→3; 1-2 is within a person; 9 unknown
    assert person_links(pairs, owner) == {(10, 20): 2}


def test_merges_need_dense_links_and_never_cross_an_exclusion() -> None:
    faces = {1: 3, 2: 3, 3: 1, 4: 1, 5: 2, 6: 2}
    links = {(1, 2): 2, (3, 4): 1, (5, 6): 1}
    # 1-2: two links among 3x3 faces (enough); 3-4: single faces, one link suffices; 5-6: one link is sparse
    assert plan_merges(links, faces, set(), min_links=2) == [(1, 2), (3, 4)]
    # chaining 1-2-7 where an operator said 1 and 7 are not one: 7 stays apart
    links = {(1, 2): 3, (2, 7): 2}
    assert plan_merges(links, {1: 3, 2: 3, 7: 3}, {(1, 7)}, min_links=2) == [(1, 2)]


def test_status_new_known_and_regular_within_the_window() -> None:
    values = {"friend_days": 3, "friend_window_days": 30}
    person = orm.Person(seen_days=["2026-03-01", "2026-03-05"])
    assert p.status_at(person, T0, True, values) == "new"
    assert p.status_at(person, T0 + timedelta(days=10), False, values) == "regular"  # 3rd distinct day
    assert p.status_at(person, T0 + timedelta(days=4), False, values) == "known"  # a day seen already
    assert p.status_at(person, T0 + timedelta(days=60), False, values) == "known"  # the others are too old


def test_webhook_filters_on_person_status() -> None:
    event = orm.Event(person_id=7, person_status="new")
    assert webhook_matches({"person_status_in": ["new"]}, event)
    assert not webhook_matches({"person_status_in": ["regular"]}, event)
    assert webhook_matches({"person_in": [7]}, event) and not webhook_matches({"person_in": [8]}, event)


# ---- online, in the pipeline ---------------------------------------------------------------------------------
def test_strangers_get_lasting_persons_and_matched_events_their_dossiers(world: World) -> None:
    bob_vec, stranger, other = unit(1), unit(2), unit(3)
    bob = world.enrol("bob", bob_vec, [world.vip.id])
    pipeline = core(world)
    ids = world.post(pipeline, world.sighting(stranger, 0, quality=0.9),
                     world.sighting(near(stranger, 0.9, 4), 1000, quality=0.8),  # same batch: not yet synced
                     world.sighting(other, 2000, quality=0.9), world.sighting(near(bob_vec, 0.9, 5), 3000))
    events = [world.event(i) for i in ids]
    assert events[0].person_id == events[1].person_id != events[2].person_id
    assert [e.person_status for e in events[:3]] == ["new", "known", "new"]
    dossier_person = events[3].person_id
    rows = {x.id: x for x in persons(world)}
    assert rows[dossier_person].dossier_id == bob and events[3].person_status == "new"
    assert (rows[events[0].person_id].event_count, rows[events[0].person_id].dossier_id) == (2, None)
    # a later batch (gallery synced) and a fresh pipeline (a restart: nothing in memory) find the same person
    again = world.post(core(world), world.sighting(near(stranger, 0.88, 6), 4000, quality=0.7))[0]
    bob_again = world.post(pipeline, world.sighting(near(bob_vec, 0.9, 7), 5000))[0]
    assert world.event(again).person_id == events[0].person_id
    assert (world.event(bob_again).person_id, world.event(bob_again).person_status) == (dossier_person, "known")
    assert len(persons(world)) == 3


def test_poor_faces_never_start_a_person_but_may_join_one(world: World) -> None:
    settings(world, person_min_quality=0.6)
    face = unit(10)
    pipeline = core(world)
    poor_first, good = world.post(pipeline, world.sighting(face, 0, quality=0.3),
                                  world.sighting(near(face, 0.95, 11), 100, quality=0.9))
    poor_later = world.post(pipeline, world.sighting(near(face, 0.95, 12), 200, quality=0.3))[0]
    assert world.event(poor_first).person_id is None and world.event(poor_first).person_status is None
    assert world.event(poor_later).person_id == world.event(good).person_id is not None
    with UnitOfWork(world.url) as uow:  # only the good face represents the person
        assert [f.event_id for f in p.faces_of(uow, [world.event(good).person_id])] == [good]


def test_representatives_are_diverse_bounded_and_agree_with_the_person(world: World) -> None:
    settings(world, person_max_faces=3)
    base = unit(20)
    pipeline = core(world)
    first = world.post(pipeline, world.sighting(base, 0, quality=0.6))[0]
    person_id = world.event(first).person_id
    world.post(pipeline, world.sighting(near(base, 0.999, 21), 10, quality=0.9))  # a near copy: not kept
    reps = [near(base, 0.93, 22 + i) for i in range(3)]
    for i, quality in enumerate((0.7, 0.8, 0.95)):
        world.post(pipeline, world.sighting(reps[i], 100 + i * 100, quality=quality))
    with UnitOfWork(world.url) as uow:
        kept = sorted(f.quality for f in p.faces_of(uow, [person_id]))
    assert kept == [0.7, 0.8, 0.95]  # at most 3: the poorest (0.6) made room
    # a face that reaches one representative but not the person as a whole joins without representing it
    edge = near(reps[2], 0.84, 30)
    joined = world.post(pipeline, world.sighting(edge, 1000, quality=0.99))[0]
    assert world.event(joined).person_id == person_id
    with UnitOfWork(world.url) as uow:
        assert joined not in [f.event_id for f in p.faces_of(uow, [person_id])]


def test_scope_per_camera_group_keeps_groups_apart(world: World) -> None:
    face = unit(40)
    pipeline = core(world)
    lobby, garage = world.post(pipeline, world.sighting(face, 0), world.sighting(near(face, 0.95, 41), 100,
                                                                               group=world.garage.id))
    assert world.event(lobby).person_id == world.event(garage).person_id  # installation-wide by default
    settings(world, person_scope="camera_group")
    a, b = world.post(pipeline, world.sighting(near(face, 0.95, 42), 200),
                      world.sighting(near(face, 0.95, 43), 300, group=world.garage.id))
    assert world.event(a).person_id != world.event(b).person_id
    scopes = {x.id: x.scope for x in persons(world)}
    assert (scopes[world.event(a).person_id], scopes[world.event(b).person_id]) == (world.lobby.id, world.garage.id)


def test_regular_after_friend_days_and_webhook_on_new_strangers(world: World) -> None:
    settings(world, friend_days=3, friend_window_days=30)
    with UnitOfWork(world.url) as uow:
        uow.webhooks.add(orm.Webhook(title="new strangers", url="http://127.0.0.1:9/x",
                                     filters={"person_status_in": ["new"]}))
        uow.commit()
    face = unit(50)
    pipeline = core(world)
    day = 86_400
    ids = [world.post(pipeline, world.sighting(near(face, 0.95, 51 + i), i * day))[0] for i in range(3)]
    assert [world.event(i).person_status for i in ids] == ["new", "known", "regular"]
    with UnitOfWork(world.url) as uow:
        outbox = list(uow.session.scalars(select(orm.WebhookOutbox.event_id)))
    assert outbox == [ids[0]]


def test_restart_rebuilds_the_persons_gallery_from_the_database(world: World, tmp_path) -> None:
    face = unit(60)
    first = world.post(core(world), world.sighting(face, 0))[0]
    world.close()  # every gallery actor gone: only the DB is left
    world.galleries = Galleries(db_url=world.url, snapshot_dir=str(tmp_path / "snap2"), model=world.galleries.model,
                                dim=world.galleries.dim, shards=3, replicas=1)
    later = world.post(core(world), world.sighting(near(face, 0.9, 61), 1000))[0]
    assert world.event(later).person_id == world.event(first).person_id


# ---- re-clustering ---------------------------------------------------------------------------------------
def _split_stranger(world: World, faces: int = 3) -> tuple[int, int, np.ndarray]:
    """One stranger online as two persons: a strict threshold now, re-clustering later at the default."""
    settings(world, person_threshold=0.99)
    base = unit(70)
    pipeline = core(world)
    ids = world.post(pipeline, *[world.sighting(near(base, 0.97, 71 + i), i * 100, quality=0.8) for i in range(faces)])
    settings(world, person_threshold=0.78)
    person_ids = sorted({world.event(i).person_id for i in ids})
    assert len(person_ids) == faces
    return person_ids[0], person_ids[1], base


def test_reclustering_merges_persons_that_are_one_with_progress(world: World) -> None:
    _split_stranger(world)
    other = world.post(core(world), world.sighting(unit(80), 5000))[0]
    seen: list[tuple[int, int]] = []
    clustering = PersonClustering(world.url, world.galleries, CAL, chunk=1)
    report = asyncio.run(clustering.run_async(on_progress=lambda done, total: seen.append((done, total))))
    assert (report["status"], report["merges"], report["total"]) == ("done", 2, 4)
    assert seen[-1] == (report["done"], 4) and len(seen) >= 2
    rows = persons(world)
    assert len(rows) == 2 and world.event(other).person_id in {x.id for x in rows}
    merged = next(x for x in rows if x.id != world.event(other).person_id)
    assert merged.event_count == 3 and not merged.dirty
    # nothing dirty any more: the next incremental pass has nothing to do
    assert asyncio.run(clustering.run_async())["total"] == 0


def test_reclustering_never_undoes_an_operator_and_resumes(world: World) -> None:
    a, b, _ = _split_stranger(world, faces=3)
    with UnitOfWork(world.url) as uow:
        p.exclude(uow, a, b)
        uow.commit()
    clustering = PersonClustering(world.url, world.galleries, CAL, chunk=1, parallel=1)
    first = asyncio.run(clustering.run_async(max_chunks=1))  # stops after one chunk: resumable
    assert first["status"] == "running" and first["done"] == 1
    final = asyncio.run(clustering.run_async())
    # the resumed pass goes on after the first chunk; the third person had joined the first there
    assert final["id"] == first["id"] and final["status"] == "done" and final["done"] == 2
    ids = {x.id for x in persons(world)}
    assert a in ids and b in ids and len(ids) == 2  # the third joined one of them, never both
    with UnitOfWork(world.url) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.PersonClusteringRun)) == 1
