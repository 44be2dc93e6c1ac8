"""The event pipeline on real gallery actors and a real DB, with synthetic face vectors.

Vectors stand in for faces here so each rule (thresholds, candidates, dedup, episodes, idempotency)
can be placed exactly; the models and the whole video path are tested on real faces elsewhere.
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import func, select, update

from actors.event_pipeline import EventPipelineCore
from actors.galleries import Galleries
from facewatch.sightings import FaceSighting, event_id_for
from models.calibration import Calibration
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, store_dossier_face_vector
from storage.negatives import reject_match
from storage.unit_of_work import UnitOfWork
from tests.vectors import unit_vector, vector_near

DIM = 16
MODEL = "test_model"
# cosine 0.70 → 0.65 (low), 0.80 → 0.75 (medium), 0.90 → 0.85 (strict)
CAL = Calibration(strict_cosine=0.90, medium_cosine=0.80, low_cosine=0.70)
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
pytestmark = pytest.mark.usefixtures("ray_module")
RAY_OPTIONS = {"num_cpus": 4, "namespace": "test-events"}


def unit(seed: int) -> np.ndarray:
    return unit_vector(seed, DIM)


near = vector_near  # a unit vector at exactly `cosine` from `base`


class World:
    def __init__(self, url: str, tmp: Path, name: str) -> None:
        self.url = url
        self.galleries = Galleries(db_url=url, snapshot_dir=str(tmp / "snap"), model=MODEL, dim=DIM, shards=2,
                                   replicas=1)
        self.galleries.model = MODEL
        self.name = name
        self.track = 0
        with UnitOfWork(url) as uow:
            self.lobby = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
            self.garage = uow.camera_groups.add(orm.CameraGroup(name="garage"))
            self.cam = uow.cameras.add(orm.Camera(name="door", camera_group_id=self.lobby.id))
            self.vip = uow.watch_lists.add(orm.WatchList(name="vip"))
            self.garage_only = uow.watch_lists.add(orm.WatchList(name="garage-only", camera_groups=[self.garage]))
            uow.commit()

    def enrol(self, name: str, vector: np.ndarray, lists: list[int]) -> int:
        with UnitOfWork(self.url) as uow:
            dossier = uow.dossiers.add(orm.Dossier(name=name, watch_lists=uow.watch_lists.get_many(lists, "x")))
            face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id))
            store_dossier_face_vector(uow, face, dossier, MODEL, vector)
            uow.commit()
            dossier_id = dossier.id
        asyncio.run(self.galleries.sync_async(DOSSIERS_GALLERY))
        return dossier_id

    def sighting(self, vector: np.ndarray, at_s: float, group: int | None = None, quality: float = 0.5,
                 camera: int | None = None, track: int | None = None) -> FaceSighting:
        self.track += 1
        track_id = track if track is not None else self.track
        return FaceSighting(
            event_id=event_id_for(1, 0, track_id, 0), job_id=1, camera_group_id=group or self.lobby.id,
            camera_id=camera, timestamp=T0 + timedelta(seconds=at_s), bbox=[0, 0, 10, 10], detection_score=0.99,
            quality=quality, embedding=vector, model=MODEL, track_id=track_id,
        )

    def post(self, core: EventPipelineCore, *sightings: FaceSighting) -> list[str | None]:
        return asyncio.run(core.post(list(sightings)))

    def event(self, event_id: str) -> orm.Event:
        with UnitOfWork(self.url) as uow:
            return uow.events.get(event_id)

    def close(self) -> None:
        for router in self.galleries._routers.values():
            router.kill()


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    w = World(sqlite_url, tmp_path, request.node.name)
    yield w
    w.close()


def core(world: World) -> EventPipelineCore:
    return EventPipelineCore(world.url, world.galleries, CAL)


def test_match_unmatched_and_atomic_rows(world: World) -> None:
    bob_vec = unit(1)
    bob = world.enrol("bob", bob_vec, [world.vip.id])
    with UnitOfWork(world.url) as uow:
        uow.webhooks.add(orm.Webhook(title="all", url="http://127.0.0.1:9/x"))
        uow.commit()
    pipeline = core(world)
    matched_id, stranger_id = world.post(pipeline, world.sighting(near(bob_vec, 0.85, 2), 0),
                                         world.sighting(unit(99), 1))
    matched = world.event(matched_id)
    assert (matched.matched, matched.dossier_id, matched.watch_list_id) == (True, bob, world.vip.id)
    assert matched.confidence == pytest.approx(float(CAL.confidence(0.85)), abs=1e-4)
    stranger = world.event(stranger_id)
    assert (stranger.matched, stranger.watch_list_id, stranger.dossier_id) == (False, orm.UNMATCHED_WATCH_LIST_ID,
                                                                               None)
    with UnitOfWork(world.url) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.WebhookOutbox)) == 2
        assert uow.vectors.find(EVENTS_GALLERY, matched_id, MODEL) is not None
    # the events gallery was synced: the event is searchable at once
    hits = world.galleries.router(EVENTS_GALLERY).search(near(bob_vec, 0.85, 2), 1).hits[0]
    assert hits[0].item_id == matched_id


def test_threshold_precedence_camera_group_watch_list_default(world: World) -> None:
    vec = unit(3)
    world.enrol("ann", vec, [world.vip.id])
    probe = near(vec, 0.82, 4)  # confidence 0.76: passes the default 0.75
    pipeline = core(world)
    assert world.event(world.post(pipeline, world.sighting(probe, 0))[0]).matched
    with UnitOfWork(world.url) as uow:
        uow.watch_lists.get(world.vip.id).threshold = 0.8  # watch list override: now too strict
        uow.commit()
    assert not world.event(world.post(core(world), world.sighting(probe, 100))[0]).matched
    with UnitOfWork(world.url) as uow:
        uow.camera_groups.get(world.lobby.id).threshold = 0.7  # the group beats the watch list
        uow.commit()
    assert world.event(world.post(core(world), world.sighting(probe, 200))[0]).matched
    with UnitOfWork(world.url) as uow:
        uow.cameras.get(world.cam.id).threshold = 0.9  # the camera beats the group
        uow.commit()
    assert not world.event(world.post(core(world), world.sighting(probe, 300, camera=world.cam.id))[0]).matched


def test_candidates_respect_camera_groups_and_activity(world: World) -> None:
    vec = unit(5)
    world.enrol("carl", vec, [world.garage_only.id])
    pipeline = core(world)
    in_lobby = world.event(world.post(pipeline, world.sighting(near(vec, 0.95, 6), 0))[0])
    in_garage = world.event(world.post(pipeline, world.sighting(near(vec, 0.95, 7), 1, group=world.garage.id))[0])
    assert not in_lobby.matched and in_garage.matched
    with UnitOfWork(world.url) as uow:
        uow.watch_lists.get(world.garage_only.id).active = False
        uow.commit()
    later = world.event(world.post(core(world), world.sighting(near(vec, 0.95, 8), 500, group=world.garage.id))[0])
    assert not later.matched


def test_ignore_unmatched_and_inactive_unmatched_list_drop_strangers(world: World) -> None:
    with UnitOfWork(world.url) as uow:
        uow.settings.update({"ignore_unmatched": True})
        uow.commit()
    assert world.post(core(world), world.sighting(unit(10), 0)) == [None]
    with UnitOfWork(world.url) as uow:
        uow.settings.update({"ignore_unmatched": False})
        uow.watch_lists.unmatched().active = False
        uow.commit()
    assert world.post(core(world), world.sighting(unit(11), 1)) == [None]


def test_dedup_in_group(world: World) -> None:
    vec = unit(20)
    world.enrol("dan", vec, [world.vip.id])
    with UnitOfWork(world.url) as uow:
        group = uow.camera_groups.get(world.lobby.id)
        group.deduplicate, group.dedup_interval_s = True, 10
        uow.commit()
    pipeline = core(world)
    first, again, later = world.post(pipeline, world.sighting(near(vec, 0.9, 21), 0),
                                     world.sighting(near(vec, 0.9, 22), 5), world.sighting(near(vec, 0.9, 23), 16))
    assert first and again is None and later
    stranger = unit(30)
    a, same_worse, same_better = world.post(
        pipeline, world.sighting(stranger, 100, quality=0.5),
        world.sighting(near(stranger, 0.95, 31), 102, quality=0.4),
        world.sighting(near(stranger, 0.95, 32), 103, quality=0.9))
    assert a and same_worse is None and same_better


def test_episodes_group_by_similarity_and_close_on_idle(world: World) -> None:
    person, other = unit(40), unit(41)
    pipeline = core(world)
    ids = world.post(pipeline, world.sighting(person, 0), world.sighting(near(person, 0.9, 42), 10),
                     world.sighting(other, 12), world.sighting(near(person, 0.9, 43), 100))
    episodes = [world.event(i).episode_id for i in ids]
    assert episodes[0] == episodes[1] != episodes[2]
    assert episodes[3] not in episodes[:3]  # 90 s idle > 30 s timeout: a new episode
    with UnitOfWork(world.url) as uow:
        first = uow.episodes.get(episodes[0])
        assert (first.open, first.event_count, first.first_event_id, first.last_event_id) == (False, 2, ids[0], ids[1])


def test_acknowledged_episode_acknowledges_future_events(world: World) -> None:
    person = unit(50)
    pipeline = core(world)
    first = world.post(pipeline, world.sighting(person, 0))[0]
    episode_id = world.event(first).episode_id
    with UnitOfWork(world.url) as uow:
        episode = uow.episodes.get(episode_id)
        episode.acknowledged, episode.acknowledged_by, episode.acknowledged_at = True, "op", T0
        uow.commit()
    second = world.post(pipeline, world.sighting(near(person, 0.9, 51), 5))[0]
    event = world.event(second)
    assert event.episode_id == episode_id and event.acknowledged and event.acknowledged_by == "op"


def test_retried_hand_off_is_idempotent_across_restarts(world: World) -> None:
    sighting = world.sighting(unit(60), 0, track=77)
    assert world.post(core(world), sighting) == [sighting.event_id]
    assert world.post(core(world), sighting) == [sighting.event_id]  # a fresh pipeline, same sighting
    with UnitOfWork(world.url) as uow:
        assert uow.session.scalar(select(func.count()).select_from(orm.Event)) == 1
        assert uow.session.scalar(select(func.count()).select_from(orm.FaceVector).where(
            orm.FaceVector.gallery == EVENTS_GALLERY)) == 1


def test_restarted_pipeline_keeps_open_episodes(world: World) -> None:
    # A restart closes episodes idle by the wall clock (actors/episode_clock.py): give a slow machine time.
    _settings(world, episode_idle_timeout_s=3600.0)
    person = unit(70)
    first = world.post(core(world), world.sighting(person, 0))[0]
    second = world.post(core(world), world.sighting(near(person, 0.9, 71), 10))[0]  # new core: state from DB
    assert world.event(first).episode_id == world.event(second).episode_id


# -- episodes close by the clock (actors/episode_clock.py) --------------------------------------------


def _episode(world: World, event_id: str) -> orm.Episode:
    with UnitOfWork(world.url) as uow:
        return uow.episodes.get(world.event(event_id).episode_id)


def _settings(world: World, **values: float) -> None:
    with UnitOfWork(world.url) as uow:
        uow.settings.update(values)
        uow.commit()


def test_episode_of_a_quiet_group_closes_by_the_clock_and_leaves_memory(world: World) -> None:
    _settings(world, episode_idle_timeout_s=600.0)  # long enough for a slow machine to see it open first
    pipeline = core(world)
    first = world.post(pipeline, world.sighting(unit(80), 0))[0]
    assert pipeline.close_idle() == 0 and _episode(world, first).open  # not idle yet
    assert pipeline.stats()["open_episodes"] == 1
    # 601 s of silence (idle timeout 600 s) with no later event in the group: closed all the same
    later = datetime.now(UTC) + timedelta(seconds=601)
    assert pipeline.close_idle(later) == 1
    episode = _episode(world, first)
    assert not episode.open and episode.closed_at == episode.last_at
    assert pipeline.stats()["open_episodes"] == 0 and pipeline.episodes == {}
    # the same person again: a new episode, the closed one is never reopened
    again = world.post(pipeline, world.sighting(near(unit(80), 0.95, 81), 5))[0]
    assert world.event(again).episode_id != episode.id


def test_episode_closes_by_the_clock_at_its_max_duration(world: World) -> None:
    _settings(world, episode_max_duration_s=60.0, episode_idle_timeout_s=600.0)
    pipeline = core(world)
    person = unit(82)
    ids = world.post(pipeline, world.sighting(person, 0), world.sighting(near(person, 0.95, 83), 25),
                     world.sighting(near(person, 0.95, 86), 50))
    assert len({world.event(i).episode_id for i in ids}) == 1
    # 11 s (or more) after the last event the source's clock is past the 60 s max duration, not idle
    assert pipeline.close_idle(datetime.now(UTC) + timedelta(seconds=11)) == 1
    assert not _episode(world, ids[0]).open


def test_restart_closes_stale_episodes_and_loads_only_fresh_ones(world: World) -> None:
    _settings(world, episode_idle_timeout_s=300.0)
    stale = world.post(core(world), world.sighting(unit(84), 0))[0]
    fresh = world.post(core(world), world.sighting(unit(85), 1, group=world.garage.id))[0]
    with UnitOfWork(world.url) as uow:  # the stale one was last touched 10 minutes ago
        uow.session.execute(update(orm.Episode).where(orm.Episode.id == world.event(stale).episode_id)
                            .values(updated_at=datetime.now(UTC) - timedelta(minutes=10)))
        uow.commit()
    restarted = core(world)
    assert not _episode(world, stale).open and _episode(world, fresh).open
    assert [e.id for group in restarted.episodes.values() for e in group] == [world.event(fresh).episode_id]


# -- acknowledgement (storage/acknowledgement.py) ------------------------------------------------------


def test_require_ack_decides_whether_events_arrive_acknowledged(world: World) -> None:
    watched, casual = unit(90), unit(91)
    with UnitOfWork(world.url) as uow:
        alarm = uow.watch_lists.add(orm.WatchList(name="alarm", require_ack=True)).id
        uow.commit()
    world.enrol("watched", watched, [alarm])
    world.enrol("casual", casual, [world.vip.id])
    pipeline = core(world)
    on_alarm, on_vip, stranger = world.post(pipeline, world.sighting(near(watched, 0.95, 92), 0),
                                            world.sighting(near(casual, 0.95, 93), 1, group=world.garage.id),
                                            world.sighting(unit(94), 2, group=world.garage.id))
    alarm_event = world.event(on_alarm)
    assert alarm_event.watch_list_id == alarm and not alarm_event.acknowledged
    assert alarm_event.acknowledged_by is None and not _episode(world, on_alarm).acknowledged
    for event_id in (on_vip, stranger):  # lists without require_ack (Unmatched included)
        event = world.event(event_id)
        assert event.acknowledged and event.acknowledged_by == "system" and event.acknowledged_at is not None
        assert _episode(world, event_id).acknowledged


def test_event_needing_ack_unacknowledges_a_system_acknowledged_episode(world: World) -> None:
    person = unit(95)
    with UnitOfWork(world.url) as uow:
        alarm = uow.watch_lists.add(orm.WatchList(name="alarm2", require_ack=True)).id
        uow.commit()
    pipeline = core(world)
    stranger = world.post(pipeline, world.sighting(person, 0))[0]  # unmatched: acknowledged by the system
    assert _episode(world, stranger).acknowledged
    world.enrol("now known", person, [alarm])
    known = world.post(pipeline, world.sighting(near(person, 0.95, 96), 5))[0]
    assert world.event(known).episode_id == world.event(stranger).episode_id
    assert not world.event(known).acknowledged and not _episode(world, known).acknowledged


# -- track-level identity, negatives, realtime corrections (actors/track_identity.py, storage/negatives.py) ------


def with_track(s: FaceSighting, frames: list[np.ndarray], qualities: list[float], shot: int = 0) -> FaceSighting:
    """The sighting as a camera job posts it: with its track's best frames (and the track's shot number)."""
    return dataclasses.replace(s, event_id=event_id_for(1, 0, s.track_id, shot), track_embeddings=np.stack(frames),
                               track_qualities=qualities)


def test_a_tracks_match_is_decided_on_its_best_frames_not_one(world: World) -> None:
    photo = unit(200)
    alex = world.enrol("alex", photo, [world.vip.id])
    pipeline = core(world)
    odd = near(photo, 0.97, 201)  # the track's best frame: alone, a strict match
    others = [near(photo, 0.5, 210 + i) for i in range(4)]
    alone = world.sighting(odd, 0, quality=0.6)
    assert world.event(world.post(pipeline, alone)[0]).dossier_id == alex  # the one-frame rule matches
    track = with_track(world.sighting(odd, 10, quality=0.6), [odd, *others], [0.6, 0.5, 0.5, 0.45, 0.4])
    event = world.event(world.post(pipeline, track)[0])
    assert not event.matched and event.dossier_id is None  # one odd frame cannot make the match
    # A track that looks like him on most of its frames matches, with the weighted confidence.
    good = [near(photo, c, 220 + i) for i, c in enumerate([0.95, 0.93, 0.92])]
    seen = with_track(world.sighting(good[0], 20, quality=0.8), good, [0.8, 0.6, 0.6])
    event = world.event(world.post(pipeline, seen)[0])
    expected = float(CAL.confidence((0.8 * 0.95 + 0.6 * 0.93 + 0.6 * 0.92) / 2.0))
    assert event.dossier_id == alex and event.confidence == pytest.approx(expected, abs=1e-3)


def test_a_track_too_poor_to_recognise_never_matches(world: World) -> None:
    photo = unit(230)
    world.enrol("alex", photo, [world.vip.id])
    pipeline = core(world)
    blurred = world.sighting(near(photo, 0.95, 231), 0, quality=0.2)  # below match_min_quality (0.3)
    assert not world.event(world.post(pipeline, blurred)[0]).matched
    with UnitOfWork(world.url) as uow:
        uow.settings.update({"match_min_quality": 0.1})
        uow.commit()
    again = world.sighting(near(photo, 0.95, 231), 5, quality=0.2)
    assert world.event(world.post(pipeline, again)[0]).matched


def test_not_this_person_stops_faces_closer_to_the_negative_than_to_the_photo(world: World) -> None:
    photo = unit(240)
    alex = world.enrol("alex", photo, [world.vip.id])
    pipeline = core(world)
    lookalike = near(photo, 0.92, 241)
    first = world.post(pipeline, world.sighting(lookalike, 0))[0]
    assert world.event(first).dossier_id == alex  # a false match an operator rejects
    with UnitOfWork(world.url) as uow:
        reject_match(uow, uow.events.get(first), MODEL, "operator")
        uow.commit()
    assert not world.event(first).matched
    # The same person again (closer to the negative than to his photo): no longer a match.
    again = near(lookalike, 0.99, 242)
    assert float(again @ lookalike) > float(again @ photo)
    assert not world.event(world.post(pipeline, world.sighting(again, 100))[0]).matched
    # Someone else as close to his photo but not to the negative still matches him.
    other = near(photo, 0.92, 243)
    assert float(other @ lookalike) < float(other @ photo)
    assert world.event(world.post(pipeline, world.sighting(other, 200))[0]).dossier_id == alex


def test_a_realtime_tracks_later_shot_corrects_its_earlier_events(world: World) -> None:
    alex_photo, bob_photo = unit(250), unit(251)
    alex = world.enrol("alex", alex_photo, [world.vip.id])
    bob = world.enrol("bob", bob_photo, [world.vip.id])
    pipeline = core(world)
    # The track's early first post: one frame, close enough to Alex.
    early = near(alex_photo, 0.93, 252)
    first_shot = with_track(world.sighting(early, 0, track=77), [early], [0.4])
    first = world.post(pipeline, first_shot)[0]
    assert world.event(first).dossier_id == alex
    # Its later shot: three better frames, all Bob, and the early one.
    later = [near(bob_photo, c, 260 + i) for i, c in enumerate([0.96, 0.95, 0.95])]
    second_shot = with_track(world.sighting(later[0], 1, track=77), [*later, early], [0.9, 0.8, 0.8, 0.4], shot=1)
    second = world.post(pipeline, second_shot)[0]
    assert second == "j1-r0-t77-s1" and world.event(second).dossier_id == bob
    corrected = world.event(first)
    assert (corrected.matched, corrected.dossier_id, corrected.watch_list_id) == (True, bob, world.vip.id)
    assert _episode(world, first).dossier_id == bob
    assert pipeline.stats()["matches_corrected"] == 1
    # Another track is never touched.
    other = world.post(pipeline, world.sighting(near(alex_photo, 0.95, 270), 2, track=78))[0]
    assert world.event(other).dossier_id == alex
