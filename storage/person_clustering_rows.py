"""The re-clustering pass's statements (actors/person_clustering.py decides the merges): its run row and
its candidates, the anonymous persons to look at again. Nothing here commits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select, update

from storage import orm
from storage.unit_of_work import UnitOfWork


def running_run(uow: UnitOfWork) -> orm.PersonClusteringRun | None:
    """The newest pass still `running` (one that stopped resumes), if any."""
    return uow.session.scalar(select(orm.PersonClusteringRun).where(orm.PersonClusteringRun.status == "running")
                              .order_by(orm.PersonClusteringRun.id.desc()))


def count_candidates(uow: UnitOfWork, full: bool) -> int:
    """How many persons a new pass looks at: every anonymous one with `full`, else the dirty ones."""
    return int(uow.session.scalar(select(func.count()).select_from(_candidates(full, 0).subquery())) or 0)


def candidate_ids(uow: UnitOfWork, full: bool, after: int, limit: int) -> list[int]:
    """The next `limit` candidate person ids above `after`, in id order (the run's cursor)."""
    return list(uow.session.scalars(_candidates(full, after).limit(limit)))


def with_dossier(uow: UnitOfWork, person_ids: Iterable[int]) -> set[int]:
    """Those of `person_ids` that are a dossier's person (never merged by re-clustering)."""
    return set(uow.session.scalars(select(orm.Person.id).where(
        orm.Person.id.in_(sorted(set(person_ids))), orm.Person.dossier_id.is_not(None))))


def mark_clean(uow: UnitOfWork, person_ids: Iterable[int]) -> None:
    """The chunk's candidates were looked at: not `dirty` any more (one UPDATE)."""
    ids = sorted(set(person_ids))
    if ids:
        uow.session.execute(update(orm.Person).where(orm.Person.id.in_(ids)).values(dirty=False),
                            execution_options={"synchronize_session": "fetch"})


def _candidates(full: bool, after: int) -> Any:
    stmt = select(orm.Person.id).where(orm.Person.dossier_id.is_(None), orm.Person.id > after)
    if not full:
        stmt = stmt.where(orm.Person.dirty.is_(True))
    return stmt.order_by(orm.Person.id)


__all__ = ["candidate_ids", "count_candidates", "mark_clean", "running_run", "with_dossier"]
