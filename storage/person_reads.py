"""Reading persons for the API (`GET /v1/persons…`): pages, filters and what a person's public form
needs, each read in one query for a whole page. Visibility comes from the caller's `VisibilityScope`
(storage/visibility.py: a person is visible when one of its events is)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, func, select

from storage import orm
from storage.list_filters import ListFilters
from storage.pagination import SortKey
from storage.person_queries import regular_clause
from storage.repositories import Repository
from storage.runtime_settings import SettingsRepository
from storage.visibility import VisibilityScope

_SEEN_AT = (("camera_group_id", orm.Event.camera_group_id), ("camera_id", orm.Event.camera_id))


class PersonRepository(Repository[orm.Person]):
    """The list (`GET /v1/persons`) is most recently seen first, filtered by `list_filters` and `narrow`."""

    model, label = orm.Person, "person"
    list_order = [SortKey(orm.Person.last_seen_at, descending=True), SortKey(orm.Person.id, descending=True)]
    list_filters = ListFilters(
        at_least={"first_seen_gte": "first_seen_at", "last_seen_gte": "last_seen_at", "min_events": "event_count",
                  "min_days": "days_seen"},
        at_most={"first_seen_lte": "first_seen_at", "last_seen_lte": "last_seen_at"})

    def visible_clause(self, scope: VisibilityScope) -> ColumnElement[bool]:
        return scope.persons()

    def narrow(self, stmt: Select[Any], filters: dict[str, Any], scope: VisibilityScope | None) -> Select[Any]:
        """Seen in a camera group or by a camera; anonymous (no dossier) or a dossier's; regular or not."""
        for name, column in _SEEN_AT:
            if filters.get(name) is not None:
                stmt = stmt.where(exists().where(orm.Event.person_id == orm.Person.id, column == filters[name]))
        if filters.get("anonymous") is not None:
            anonymous = orm.Person.dossier_id.is_(None)
            stmt = stmt.where(anonymous if filters["anonymous"] else ~anonymous)
        if filters.get("regular") is not None:
            settings = SettingsRepository(self.session).all()
            regular = regular_clause(datetime.now(UTC), settings, self.session.get_bind().dialect.name)
            stmt = stmt.where(regular if filters["regular"] else ~regular)
        return stmt

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
