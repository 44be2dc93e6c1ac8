"""Periodic re-clustering of anonymous persons: merge persons that are one (docs/persons.md).

Online assignment sees one face at a time, so one stranger can end up as two persons (a first face
in profile, a later frontal one). Re-clustering looks again, density-based, over the persons gallery
(the idea of Immich's incremental DBSCAN): for each representative face of a candidate person, its
neighbours within `person_merge_threshold` are found; two persons are linked when at least
`min_links` distinct face pairs between them are neighbours (or every pair, for persons with fewer
faces), i.e. when they touch in a dense region, not through one stray look-alike. Linked persons
merge (union-find over the links), except where an operator said two persons are not one: a merge
that would put an excluded pair in one component is skipped. Re-clustering only ever merges, so it
never splits what an operator merged, and never re-joins what an operator split.

Candidates are the `dirty` persons (new or changed faces since they were last looked at), or every
anonymous person with `full=True`. The work runs as Ray tasks, one per chunk of candidates (the
neighbour searches), while the driver applies each chunk's merges in candidate order and records
the progress in a `PersonClusteringRun` row: a pass that stops (a crash, a restart) resumes after
the last chunk it committed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import ray

from actors.galleries import Galleries
from actors.gallery import GalleryRouter
from models.calibration import Calibration
from storage import orm
from storage import person_clustering_rows as clustering
from storage import persons as p
from storage.selections import persons_by_ids
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.persons")
DEFAULT_CHUNK = 256
NEIGHBOURS = 16


@dataclass(frozen=True)
class ClusterParams:
    merge_cosine: float
    max_faces: int
    min_links: int = 2
    k: int = NEIGHBOURS


# ---- pure parts ----------------------------------------------------------------------------------------
def person_links(pairs: Iterable[tuple[int, int]], owner: Mapping[int, int]) -> dict[tuple[int, int], int]:
    """Count the distinct neighbouring face pairs between two different persons."""
    seen: set[tuple[int, int]] = set()
    links: dict[tuple[int, int], int] = defaultdict(int)
    for a, b in pairs:
        pa, pb = owner.get(a), owner.get(b)
        if pa is None or pb is None or pa == pb:
            continue
        key = (min(a, b), max(a, b))
        if key in seen:
            continue
        seen.add(key)
        links[(min(pa, pb), max(pa, pb))] += 1
    return dict(links)


def plan_merges(links: Mapping[tuple[int, int], int], faces: Mapping[int, int], excluded: set[tuple[int, int]],
                min_links: int) -> list[tuple[int, int]]:
    """(keep, other) merges: dense enough links, joined by union-find, never across an excluded pair.

    `faces` is the number of representative faces per person: two single-face persons need one link.
    The lower person id of a component is kept; strongest links are joined first.
    """
    parent: dict[int, int] = {}
    members: dict[int, set[int]] = {}
    bans: dict[int, set[int]] = defaultdict(set)
    for a, b in excluded:
        bans[a].add(b)
        bans[b].add(a)

    def root(x: int) -> int:
        parent.setdefault(x, x)
        members.setdefault(x, {x})
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for (a, b), count in sorted(links.items(), key=lambda item: (-item[1], item[0])):
        needed = min(min_links, faces.get(a, 1) * faces.get(b, 1))
        if count < needed:
            continue
        ra, rb = root(a), root(b)
        if ra == rb:
            continue
        banned_a = set().union(*(bans[m] for m in members[ra]))
        if banned_a & members[rb]:
            continue  # an operator's "not the same person" between the two components
        keep, other = min(ra, rb), max(ra, rb)
        parent[other] = keep
        members[keep] |= members.pop(other)
    merges = []
    for person in sorted(parent):
        top = root(person)
        if top != person:
            merges.append((top, person))
    return merges


def _neighbour_pairs(router: GalleryRouter, face_ids: list[int], scopes: list[int], vectors: np.ndarray, k: int,
                     min_score: float) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    for scope in sorted(set(scopes)):
        rows = [i for i, s in enumerate(scopes) if s == scope]
        result = router.search(vectors[rows], k, min_score=min_score, filters={"scope": scope})
        for row, hits in zip(rows, result.hits, strict=True):
            pairs += [(face_ids[row], int(h.item_id)) for h in hits if int(h.item_id) != face_ids[row]]
    return pairs


@ray.remote(num_cpus=1, max_retries=3)
def neighbour_task(router: GalleryRouter, face_ids: list[int], scopes: list[int], vectors: np.ndarray, k: int,
                   min_score: float) -> list[tuple[int, int]]:
    """One chunk's neighbour searches, as a Ray task (retried by Ray if its worker dies)."""
    return _neighbour_pairs(router, face_ids, scopes, vectors, k, min_score)


# ---- the driver ----------------------------------------------------------------------------------------
class PersonClustering:
    """One installation's re-clustering passes; `run_async` starts or resumes one."""

    def __init__(self, db_url: str, galleries: Galleries, calibration: Calibration, chunk: int = DEFAULT_CHUNK,
                 parallel: int = 2) -> None:
        self.db_url, self.galleries, self.calibration = db_url, galleries, calibration
        self.chunk, self.parallel = int(chunk), int(parallel)

    def params(self, settings: dict[str, Any]) -> ClusterParams:
        return ClusterParams(merge_cosine=float(self.calibration.cosine(float(settings["person_merge_threshold"]))),
                             max_faces=int(settings["person_max_faces"]))

    def _open_run(self, full: bool) -> int:
        with UnitOfWork(self.db_url) as uow:
            run = clustering.running_run(uow)
            if run is None:
                run = orm.PersonClusteringRun(full=full, total=clustering.count_candidates(uow, full))
                uow.session.add(run)
                uow.commit()
            return run.id

    def _next_chunks(self, run: orm.PersonClusteringRun, after: int) -> list[list[int]]:
        with UnitOfWork(self.db_url) as uow:
            ids = clustering.candidate_ids(uow, run.full, after, self.chunk * self.parallel)
        return [ids[i:i + self.chunk] for i in range(0, len(ids), self.chunk)]

    def _chunk_input(self, person_ids: list[int], model: str) -> tuple[list[int], list[int], np.ndarray]:
        with UnitOfWork(self.db_url) as uow:
            faces = p.faces_of(uow, person_ids)
            vectors = p.face_vectors(uow, model, faces)
            scopes = {i: person.scope for i, person in persons_by_ids(uow.session, set(person_ids)).items()}
        faces = [f for f in faces if f.id in vectors]
        matrix = np.stack([vectors[f.id] for f in faces]) if faces else np.zeros((0, self.galleries.dim), np.float32)
        return [f.id for f in faces], [scopes[f.person_id] for f in faces], matrix

    def _apply(self, run_id: int, person_ids: list[int], pairs: list[tuple[int, int]], params: ClusterParams) -> int:
        with UnitOfWork(self.db_url) as uow:
            owner = p.owners(uow, sorted({f for pair in pairs for f in pair}))
            links = person_links(pairs, owner)
            involved = {x for pair in links for x in pair}
            counts = uow.persons.face_counts(sorted(involved))
            dossiers = clustering.with_dossier(uow, involved)
            links = {pair: n for pair, n in links.items() if not (set(pair) & dossiers)}
            merges = plan_merges(links, counts, p.excluded_pairs(uow, involved), params.min_links)
            p.merge_many(uow, merges, params.max_faces)  # set-based: a few statements per chunk
            clustering.mark_clean(uow, person_ids)
            run = uow.session.get(orm.PersonClusteringRun, run_id)
            assert run is not None
            run.cursor, run.done, run.merges = max(person_ids), run.done + len(person_ids), run.merges + len(merges)
            uow.commit()
        return len(merges)

    async def run_async(self, full: bool = False, max_chunks: int | None = None,
                        on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
        """Start (or resume) a pass; `max_chunks` stops early, leaving the run resumable (tests, budgets)."""
        run_id = await asyncio.to_thread(self._open_run, full)
        router = await self.galleries.router_async(p.PERSONS_GALLERY)
        await self.galleries.sync_async(p.PERSONS_GALLERY)
        with UnitOfWork(self.db_url) as uow:
            settings = uow.settings.all()
            run = uow.session.get(orm.PersonClusteringRun, run_id)
            assert run is not None
        params = self.params(settings)
        chunks_done = 0
        try:
            while max_chunks is None or chunks_done < max_chunks:
                chunks = await asyncio.to_thread(self._next_chunks, run, run.cursor)
                if max_chunks is not None:
                    chunks = chunks[:max_chunks - chunks_done]
                if not chunks:
                    break
                inputs = [await asyncio.to_thread(self._chunk_input, chunk, self.galleries.model) for chunk in chunks]
                refs = [neighbour_task.remote(router, ids, scopes, vectors, params.k, params.merge_cosine)
                        if ids else None for ids, scopes, vectors in inputs]
                for chunk, ref in zip(chunks, refs, strict=True):
                    pairs = await ref if ref is not None else []
                    await asyncio.to_thread(self._apply, run_id, chunk, pairs, params)
                    run.cursor, run.done = max(chunk), run.done + len(chunk)
                    chunks_done += 1
                    if on_progress is not None:
                        on_progress(run.done, run.total)
            finished = max_chunks is None or chunks_done < max_chunks or not self._next_chunks(run, run.cursor)
        except Exception as exc:
            await asyncio.to_thread(self._finish, run_id, "running", f"{type(exc).__name__}: {exc}")
            raise
        if finished:
            await asyncio.to_thread(self._finish, run_id, "done", "")
        await self.galleries.sync_async(p.PERSONS_GALLERY)
        return self.report(run_id)

    def _finish(self, run_id: int, status: str, error: str) -> None:
        with UnitOfWork(self.db_url) as uow:
            run = uow.session.get(orm.PersonClusteringRun, run_id)
            if run is not None:
                run.status, run.error = status, error
                if status == "done":
                    run.finished_at = datetime.now(UTC)
                uow.commit()

    def report(self, run_id: int) -> dict[str, Any]:
        with UnitOfWork(self.db_url) as uow:
            return run_report(uow.session.get(orm.PersonClusteringRun, run_id))


def run_report(run: orm.PersonClusteringRun | None) -> dict[str, Any]:
    if run is None:
        return {}
    return {"id": run.id, "status": run.status, "full": run.full, "total": run.total, "done": run.done,
            "merges": run.merges, "error": run.error, "started_at": run.started_at.isoformat(),
            "finished_at": run.finished_at.isoformat() if run.finished_at else None}
