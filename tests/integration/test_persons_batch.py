"""Re-clustering's set-based merges (`storage.persons.merge_many`) give what one `merge` at a time gave."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select

from actors.person_clustering import plan_merges
from facewatch.errors import Conflict
from storage import orm
from storage import persons as p
from storage.db import migrate
from storage.persons import PERSONS_GALLERY
from storage.unit_of_work import UnitOfWork

T0 = datetime(2026, 3, 1, 12, tzinfo=UTC)
MODEL = "test_model"
# links between persons 1..9 (counts), and an operator's exclusion between 4 and 7
LINKS = {(1, 2): 5, (2, 3): 4, (4, 5): 3, (5, 6): 3, (6, 7): 2, (7, 8): 6, (8, 9): 1}
EXCLUDED = {(4, 7)}


def world(url: str) -> None:
    migrate(url)
    rng = np.random.default_rng(3)
    with UnitOfWork(url) as uow:
        for n in range(1, 10):
            person = p.new_person(uow, 0)
            assert person.id == n
            for j in range(n % 3 + 1):  # 1-3 faces, qualities that interleave across persons
                p.add_face(uow, person, None, 0.1 * ((n * 7 + j * 3) % 10), MODEL, rng.standard_normal(8))
            for j in range(2):
                uow.session.add(orm.Event(id=f"e{n}-{j}", timestamp=T0 + timedelta(days=n + j, hours=j),
                                          quality=0.05 * n + 0.1 * j, bbox=[], camera_id=None,
                                          watch_list_id=orm.UNMATCHED_WATCH_LIST_ID, person_id=n))
            uow.flush()
            p.recompute(uow, person)
        p.exclude(uow, 7, 4)
        p.exclude(uow, 9, 2)
        uow.commit()


def snapshot(url: str) -> dict:
    with UnitOfWork(url) as uow:
        persons = {x.id: (x.event_count, x.first_seen_at, x.last_seen_at, x.seen_days, x.days_seen, x.best_event_id,
                          x.dirty) for x in uow.session.scalars(select(orm.Person))}
        faces = {f.id: f.person_id for f in uow.session.scalars(select(orm.PersonFace))}
        events = {e.id: e.person_id for e in uow.session.scalars(select(orm.Event))}
        metas = {int(v.item_id): v.meta["person_id"] for v in uow.vectors.by_items(PERSONS_GALLERY, MODEL,
                                                                                  [str(f) for f in faces])}
        vectors = len(uow.vectors.item_ids(PERSONS_GALLERY))
        return {"persons": persons, "faces": faces, "events": events, "metas": metas, "vectors": vectors,
                "excluded": p.excluded_pairs(uow)}


def test_batched_merges_equal_one_at_a_time(tmp_path: Path) -> None:
    merges = plan_merges(LINKS, {n: n % 3 + 1 for n in range(1, 10)}, EXCLUDED, 2)
    components: dict[int, set[int]] = {}
    for keep, other in merges:
        components.setdefault(keep, {keep}).add(other)
    # 1-2-3 joined; 4-5-6 joined, 7 kept apart (excluded from 4), 7-8 joined, 8-9 too weak (1 of 2 links)
    assert sorted(map(sorted, components.values())) == [[1, 2, 3], [4, 5, 6], [7, 8]]
    one, many = f"sqlite:///{tmp_path / 'one.db'}", f"sqlite:///{tmp_path / 'many.db'}"
    world(one)
    world(many)
    with UnitOfWork(one) as uow:
        for keep, other in merges:
            p.merge(uow, keep, other, 2, by_operator=False)
        uow.commit()
    with UnitOfWork(many) as uow:
        assert p.merge_many(uow, merges, 2) == len(merges)
        uow.commit()
    expected, got = snapshot(one), snapshot(many)
    assert got == expected
    assert sorted(got["persons"]) == [1, 4, 7, 9]
    assert got["excluded"] == {(4, 7), (1, 9)}  # 2's exclusion followed it into 1
    assert all(got["metas"][face] == person for face, person in got["faces"].items())
    assert sum(1 for person in got["faces"].values() if person == 1) == 2  # the best max_faces kept


def test_batched_merge_refuses_an_excluded_pair_in_one_component(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'x.db'}"
    world(url)
    with UnitOfWork(url) as uow, pytest.raises(Conflict):
        p.merge_many(uow, [(4, 5), (4, 7)], 2)
