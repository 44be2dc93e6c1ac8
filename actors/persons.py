"""Online person assignment: every event gets a person, in the event pipeline (docs/persons.md).

`PersonAssigner` is plain Python (no Ray actor): the event pipeline core calls `prepare` (async: it
searches the `persons` gallery) before its commit and `attach` inside the commit's unit of work, so
the event, its person and the person's new representative face commit together, and `sync` after
the batch commits. Rules:
- a matched event's person is its dossier's person (made on the dossier's first event);
- an unmatched face joins the anonymous person (in its scope) with the most similar representative
  face at or above `person_threshold`, else it starts a new person — if its quality reaches
  `person_min_quality`; a poorer face that resembles nobody stays person-less (it is too poor to
  found an identity that later faces would be compared against);
- a joining face becomes one of the person's (at most `person_max_faces`) representatives only when
  it is good enough, agrees with the person as a whole (its MEAN similarity to the current
  representatives reaches the threshold, not just its best one: this is what stops chaining), and
  is not a near copy of one already kept; when the person is full it replaces the poorest one.
Faces added in this batch are not yet in the gallery shards (they are synced after the commit), so
the assigner also compares against them directly: two sightings of a newcomer in one batch make one
person, not two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from actors.galleries import Galleries
from facewatch.errors import FacewatchError
from models.calibration import Calibration
from storage import orm
from storage import persons as p
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.persons")
PERSON_CANDIDATES = 32
NEAR_COPY_COSINE = 0.985


@dataclass
class _Pending:
    face_id: int
    scope: int
    vector: np.ndarray


@dataclass
class PersonAssigner:
    galleries: Galleries
    calibration: Calibration
    k: int = PERSON_CANDIDATES
    _prepared: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    _pending: list[_Pending] = field(default_factory=list)
    assigned: int = 0
    created: int = 0
    personless: int = 0

    # ---- before the commit -----------------------------------------------------------------------------
    async def prepare(self, event_id: str, embedding: np.ndarray, camera_group_id: int | None, matched: bool,
                      settings: dict[str, Any]) -> None:
        """Find the candidate representative faces (face id, cosine) for the event about to commit."""
        if matched:
            self._prepared[event_id] = []
            return
        scope = p.scope_of(settings, camera_group_id)
        min_score = float(self.calibration.cosine(float(settings["person_threshold"])))
        try:
            router = await self.galleries.router_async(p.PERSONS_GALLERY)
            result = await router.search_async(embedding, self.k, min_score=min_score, filters={"scope": scope},
                                               partial=True)
            hits = [(int(h.item_id), float(h.score)) for h in result.hits[0]]
        except FacewatchError as exc:
            # Events matter more than persons: without the gallery the face starts a person, and the next
            # re-clustering merges it with the one it missed.
            log.warning("persons gallery unavailable (%s); the event's person may be a duplicate", exc.reason)
            hits = []
        hits += [(f.face_id, float(np.dot(embedding, f.vector))) for f in self._pending if f.scope == scope]
        self._prepared[event_id] = [(face, score) for face, score in hits if score >= min_score]

    def candidates(self, event_id: str) -> list[tuple[int, float]]:
        """What `prepare` found for an event, (face id, cosine), until `attach` takes it."""
        return list(self._prepared.get(event_id, []))

    # ---- inside the commit -----------------------------------------------------------------------------
    def attach(self, uow: UnitOfWork, event: orm.Event, embedding: np.ndarray, model: str,
               settings: dict[str, Any]) -> None:
        """Set the event's person and person status (creating or updating the person)."""
        hits = self._prepared.pop(event.id, [])
        created = False
        if event.dossier_id is not None:
            person, created = p.person_of_dossier(uow, event.dossier_id)
        else:
            person = self.best_person(uow, hits)
            if person is None:
                self._start(uow, event, embedding, model, settings)
                return
            self._maybe_represent(uow, person, event, embedding, model, settings)
        event.person_status = p.status_at(person, event.timestamp, created, settings)
        event.person_id = person.id
        p.note_event(person, event)
        self.assigned += 1

    def _start(self, uow: UnitOfWork, event: orm.Event, embedding: np.ndarray, model: str,
               settings: dict[str, Any]) -> None:
        """A newcomer: a new person represented by this face, if it is good enough to found one."""
        if event.quality < float(settings["person_min_quality"]):
            self.personless += 1
            return
        scope = p.scope_of(settings, event.camera_group_id)
        person_id, face_id = p.start_person(uow, scope, event, model, embedding)
        self._pending.append(_Pending(face_id, scope, np.asarray(embedding, dtype=np.float32)))
        event.person_status, event.person_id = "new", person_id
        self.created += 1
        self.assigned += 1

    def best_person(self, uow: UnitOfWork, hits: list[tuple[int, float]]) -> orm.Person | None:
        """The decision: the anonymous person owning the most similar hit (faces read from the DB, the
        truth: a face removed since the shard synced is ignored), or None (a new person, maybe)."""
        owners = p.anonymous_owners(uow, [face for face, _ in hits])
        best: dict[int, tuple[float, orm.Person]] = {}
        for face, score in hits:
            person = owners.get(face)
            if person is not None and score > best.get(person.id, (-2.0, person))[0]:
                best[person.id] = (score, person)
        ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
        return ranked[0][1][1] if ranked else None

    def _maybe_represent(self, uow: UnitOfWork, person: orm.Person, event: orm.Event, embedding: np.ndarray,
                         model: str, settings: dict[str, Any]) -> None:
        if event.quality < float(settings["person_min_quality"]):
            return
        faces = p.representatives(uow, person.id, model)  # (face id, quality, vector or None)
        vectors = [vector for _, _, vector in faces if vector is not None]
        if vectors:
            scores = np.stack(vectors) @ np.asarray(embedding, dtype=np.float32)
            threshold = float(self.calibration.cosine(float(settings["person_threshold"])))
            if scores.mean() < threshold or scores.max() >= NEAR_COPY_COSINE:
                return
        if len(faces) >= int(settings["person_max_faces"]):
            poorest, quality, _ = min(faces, key=lambda f: (f[1], -f[0]))
            if quality >= event.quality:
                return
            p.remove_face_ids(uow, [poorest])
            self._pending = [f for f in self._pending if f.face_id != poorest]
        face_id = p.add_face(uow, person, event.id, event.quality, model, embedding)
        self._pending.append(_Pending(face_id, int(person.scope), np.asarray(embedding, dtype=np.float32)))

    def forget(self, event_id: str) -> None:
        """Drop what `prepare` found for an event that was not committed after all."""
        self._prepared.pop(event_id, None)

    # ---- after the commit ------------------------------------------------------------------------------
    async def sync(self) -> None:
        """Make the gallery shards replay this batch's new faces; the batch's pending list is then empty."""
        if self._pending:
            await self.galleries.sync_async(p.PERSONS_GALLERY)
            self._pending.clear()

    def stats(self) -> dict[str, int]:
        return {"persons_assigned": self.assigned, "persons_created": self.created,
                "personless_events": self.personless}
