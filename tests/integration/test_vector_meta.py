"""`VectorRepository.set_meta`: one bulk UPDATE by primary key that also leaves rows already loaded in
the session right (SQLAlchemy's bulk UPDATE by primary key does not touch them), on both databases."""

from __future__ import annotations

import numpy as np

from storage import orm
from storage import persons as p
from storage.unit_of_work import UnitOfWork

VEC = np.arange(4, dtype=np.float32).tobytes()


def test_rows_loaded_before_the_update_read_back_the_new_meta(db_url: str) -> None:
    with UnitOfWork(db_url) as uow:
        for item in ("a", "b", "c"):
            for model in ("m1", "m2"):
                uow.vectors.upsert("dossiers", item, model, VEC, 4, meta={"dossier_id": 1})
        uow.commit()
    with UnitOfWork(db_url) as uow:
        loaded = {(r.item_id, r.model): r for r in uow.vectors.by_items("dossiers", "m1", ["a", "b", "c"])}
        uow.vectors.set_meta("dossiers", {"a": {"dossier_id": 2}, "b": {"dossier_id": 3}})
        assert loaded["a", "m1"].meta == {"dossier_id": 2}  # the object read before the update
        assert loaded["b", "m1"].meta == {"dossier_id": 3}
        assert loaded["c", "m1"].meta == {"dossier_id": 1}
        assert uow.vectors.find("dossiers", "a", "m2").meta == {"dossier_id": 2}  # every model's row
        uow.session.flush()  # the refreshed objects are clean: a flush writes nothing back over the update
        uow.commit()
    with UnitOfWork(db_url) as uow:
        metas = {(r.item_id, r.model): r.meta for model in ("m1", "m2")
                 for batch in uow.vectors.iter_gallery("dossiers", model) for r in batch}
        assert metas == {("a", "m1"): {"dossier_id": 2}, ("a", "m2"): {"dossier_id": 2},
                         ("b", "m1"): {"dossier_id": 3}, ("b", "m2"): {"dossier_id": 3},
                         ("c", "m1"): {"dossier_id": 1}, ("c", "m2"): {"dossier_id": 1}}
        assert [(c.op, c.item_id) for c in uow.vectors.changes_since("dossiers", 0)][-2:] == [("meta", "a"),
                                                                                             ("meta", "b")]


def test_a_merge_moves_faces_whose_vectors_are_loaded_in_the_session(db_url: str) -> None:
    """The persons path: an operator's merge and a split-off re-point faces' gallery metadata while the
    same unit of work holds those vector rows; what it reads back is the new person."""
    rng = np.random.default_rng(0)
    with UnitOfWork(db_url) as uow:
        keep, other = p.new_person(uow, 0), p.new_person(uow, 0)
        faces = [p.add_face(uow, person, None, 0.9, "m", rng.standard_normal(4)) for person in (keep, other, other)]
        uow.commit()
        keep_id, other_id = keep.id, other.id
    with UnitOfWork(db_url) as uow:
        rows = uow.vectors.by_items(p.PERSONS_GALLERY, "m", [str(f) for f in faces])
        assert sorted(r.meta["person_id"] for r in rows) == sorted([keep_id, other_id, other_id])
        p.merge(uow, keep_id, other_id, max_faces=8, by_operator=True)
        assert [r.meta for r in rows] == [{"person_id": keep_id, "scope": 0}] * 3
        uow.commit()
    with UnitOfWork(db_url) as uow:
        assert {r.meta["person_id"] for r in uow.vectors.by_items(p.PERSONS_GALLERY, "m", [str(f) for f in faces])} \
            == {keep_id}
        assert uow.session.get(orm.Person, other_id) is None
