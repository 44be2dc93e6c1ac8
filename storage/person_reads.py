"""Reading persons for the API (`GET /v1/persons…`): pages, filters and what a person's public form
needs, each read in one query for a whole page. Visibility comes from the caller's `VisibilityScope`
(storage/visibility.py: a person is visible when one of its events is)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, exists, func, select

from storage import orm
from storage.pagination import Page, SortKey
from storage.repositories import Repository
from storage.visibility import VisibilityScope

_BOUNDS = (("first_seen_gte", orm.Person.first_seen_at, True), ("first_seen_lte", orm.Person.first_seen_at, False),
           ("last_seen_gte", orm.Person.last_seen_at, True), ("last_seen_lte", orm.Person.last_seen_at, False))
_SEEN_AT = (("camera_group_id", orm.Event.camera_group_id), ("camera_id", orm.Event.camera_id))


def _filtered(stmt: Select[Any], f: Mapping[str, Any]) -> Select[Any]:
    """`stmt` narrowed by the filters of `GET /v1/persons` (absent or None = any)."""
    for name, column, lower in _BOUNDS:
        if f.get(name) is not None:
            stmt = stmt.where(column >= f[name] if lower else column <= f[name])
    for name, column in _SEEN_AT:
        if f.get(name) is not None:
            stmt = stmt.where(exists().where(orm.Event.person_id == orm.Person.id, column == f[name]))
    if f.get("min_events") is not None:
        stmt = stmt.where(orm.Person.event_count >= f["min_events"])
    if f.get("min_days") is not None:
        stmt = stmt.where(orm.Person.days_seen >= f["min_days"])
    if f.get("anonymous") is not None:
        stmt = stmt.where(orm.Person.dossier_id.is_(None) if f["anonymous"] else orm.Person.dossier_id.is_not(None))
    return stmt


class PersonRepository(Repository[orm.Person]):
    model, label = orm.Person, "person"
    newest_first = [SortKey(orm.Person.last_seen_at, descending=True), SortKey(orm.Person.id, descending=True)]

    def visible_page(self, scope: VisibilityScope, filters: Mapping[str, Any], limit: int,
                     cursor: str | None) -> Page[orm.Person]:
        """One page, most recently seen first, of the persons the scope sees that match the filters."""
        stmt = _filtered(select(orm.Person).where(scope.persons()), filters)
        return self.page(stmt, limit, cursor, keys=self.newest_first)

    def visible(self, person_id: int, scope: VisibilityScope) -> orm.Person | None:
        return self.session.scalar(select(orm.Person).where(orm.Person.id == person_id, scope.persons()))

    def visible_among(self, person_ids: Iterable[int], scope: VisibilityScope) -> dict[int, orm.Person]:
        """Those of `person_ids` the scope sees, by id."""
        stmt = select(orm.Person).where(orm.Person.id.in_(list(person_ids)), scope.persons())
        return {person.id: person for person in self.session.scalars(stmt)}

    def face_counts(self, person_ids: Iterable[int]) -> dict[int, int]:
        """Representative faces per person (persons without any are absent)."""
        stmt = (select(orm.PersonFace.person_id, func.count()).where(orm.PersonFace.person_id.in_(list(person_ids)))
                .group_by(orm.PersonFace.person_id))
        return {int(person_id): int(n) for person_id, n in self.session.execute(stmt)}

    def dossier_names(self, dossier_ids: Iterable[int]) -> dict[int, str]:
        wanted = list(dossier_ids)
        if not wanted:
            return {}
        stmt = select(orm.Dossier.id, orm.Dossier.name).where(orm.Dossier.id.in_(wanted))
        return {int(dossier_id): name for dossier_id, name in self.session.execute(stmt)}

    def latest_clustering_run(self) -> orm.PersonClusteringRun | None:
        return self.session.scalar(select(orm.PersonClusteringRun).order_by(orm.PersonClusteringRun.id.desc()))
