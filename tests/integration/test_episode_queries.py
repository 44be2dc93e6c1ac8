"""The statements moved into storage/ (issue 15) on SQLite and PostgreSQL: the episode clock's closes and
reads (storage/episode_queries.py) and the re-clustering pass's candidate reads
(storage/person_clustering_rows.py). No Ray: the actors that call them are covered by
test_event_pipeline.py and test_persons.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storage import episode_queries, orm
from storage import person_clustering_rows as clustering
from storage.unit_of_work import UnitOfWork

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def _episodes(uow: UnitOfWork, group: int, touched_minutes_ago: list[int]) -> list[int]:
    ids = []
    for minutes in touched_minutes_ago:
        at = NOW - timedelta(minutes=minutes)
        episode = uow.episodes.add(orm.Episode(camera_group_id=group, started_at=at - timedelta(minutes=1),
                                               last_at=at))
        episode.updated_at = at  # `touched` after a restart (actors/episode_clock.py)
        ids.append(episode.id)
    uow.session.flush()
    return ids


def test_idle_episodes_close_at_their_last_event_and_open_ones_read_most_recent_first(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="hall")).id
        old, older, fresh = _episodes(uow, group, [10, 20, 1])
        uow.commit()
    before = NOW - timedelta(minutes=5)
    with UnitOfWork(db_url) as uow:
        assert sorted(episode_queries.idle_open(uow, before)) == [(old, group), (older, group)]
        assert [e.id for e in episode_queries.open_most_recent_first(uow)] == [fresh, old, older]
        assert episode_queries.close_ids(uow, [older]) == 1
        assert episode_queries.close_idle_open(uow, before) == 1  # `older` is closed already
        uow.commit()
    with UnitOfWork(db_url) as uow:
        rows = {i: uow.episodes.get(i) for i in (old, older, fresh)}
        assert [rows[i].open for i in (old, older, fresh)] == [False, False, True]
        assert rows[old].closed_at == rows[old].last_at and rows[fresh].closed_at is None
        assert episode_queries.idle_open(uow, before) == [] and episode_queries.close_ids(uow, []) == 0


def test_latest_events_of_an_episode_newest_first_and_bounded(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="gate")).id
        episode, other = _episodes(uow, group, [1, 2])
        for n in range(5):
            uow.session.add(orm.Event(id=f"e{n}", camera_group_id=group, episode_id=episode,
                                      timestamp=NOW + timedelta(seconds=n)))
        uow.session.add(orm.Event(id="x", camera_group_id=group, episode_id=other, timestamp=NOW))
        uow.commit()
    with UnitOfWork(db_url) as uow:
        assert [e.id for e in episode_queries.latest_events(uow, episode, 3)] == ["e4", "e3", "e2"]


def test_clustering_candidates_are_anonymous_dirty_persons_in_id_order(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        dossier = uow.dossiers.add(orm.Dossier(name="Ann")).id
        persons = [orm.Person(), orm.Person(dirty=False), orm.Person(), orm.Person(dossier_id=dossier)]
        for person in persons:
            uow.session.add(person)
        uow.session.flush()
        dirty, clean, dirty2, known = (p.id for p in persons)
        uow.commit()
    with UnitOfWork(db_url) as uow:
        assert clustering.count_candidates(uow, full=False) == 2
        assert clustering.count_candidates(uow, full=True) == 3
        assert clustering.candidate_ids(uow, False, 0, 10) == [dirty, dirty2]
        assert clustering.candidate_ids(uow, True, dirty, 1) == [clean]
        assert clustering.with_dossier(uow, [dirty, known, clean]) == {known}
        assert clustering.running_run(uow) is None
        uow.session.add_all([orm.PersonClusteringRun(status="done"), orm.PersonClusteringRun(),
                             orm.PersonClusteringRun()])
        uow.commit()
    with UnitOfWork(db_url) as uow:
        run = clustering.running_run(uow)
        assert run is not None and run.status == "running"
        assert run.id == max(r.id for r in uow.session.query(orm.PersonClusteringRun))  # the newest running one
