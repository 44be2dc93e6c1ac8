"""Persons benchmark: online assignment latency with N persons, and re-clustering time for M faces.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_persons.py --persons 1000000 --cluster-faces 100000 --json

Online assignment (what the event pipeline adds per unmatched face): `PersonAssigner.prepare` (a
search of the `persons` gallery: N random 128-d unit vectors, one representative face per person, in 2
shard actors) plus `attach` and the commit (SQLite: the face's owner, the person row, its faces, the
new face or person, the event row). Half the queries are noisy copies (cosine 0.95) of existing persons
(they join one), half are strangers (they make a person). The gallery is filled through the router
(`add`), not from the DB; the DB holds the N person and face rows (not their vectors: a join then
looks up the person's representative vectors and finds none, the same indexed query).

Re-clustering: M faces, one per person, in M/2 pairs that are one identity (cosine 0.95), all in the
DB and a DB-backed persons gallery; one full pass (`PersonClustering.run_async(full=True)`, Ray tasks
of `--chunk` candidates). Reported: seconds, faces per second, merges (M/2 expected), and whether each
merge joined a true pair (`merge_check`: wrong merges, missed pairs with their exact cosine).

The decision at 10^6 (`--decision N`, no Ray, nothing else started):

    OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_persons.py \
        --decision 1000000 --persons 0 --cluster-faces 0 --json

(one BLAS thread: the NumPy reference then uses one core, like each shard's search; `--cache DIR`
keeps the DB and shard indexes for later runs, which then take about a minute.)

N persons with one representative face each, with the structure real embeddings have: every face
shares a common direction (two different people at cosine ≈ 0.5, as dlib's are), and a returning
person's new face is at cosine ≈ 0.95 of their stored one. The persons gallery is the product's
index (`ShardIndex.build`, as each of the `gallery_shards` (2) shard actors builds it from the DB:
IVF-PQ fast scan + SQ8 re-rank at this size), searched in this process (both shards one after the
other: the actors search in parallel, so this over-states the search), and the DB is SQLite with the
N persons, faces and vectors. Half the queries are returning persons, half strangers. Timed per query:
- `decision`: `PersonAssigner.prepare` (the gallery search with its scope filter and threshold) plus
  `best_person` (the hits' owners and the person, read from the DB): what decides the person;
- `with_db_write`: the same plus `attach` (the new face or person, statistics) and the commit of
  the event with it, one event per transaction (the pipeline commits a batch of events in one);
- `reference`: an exact NumPy scan of the same N vectors (`X @ q`, the best hit's person), the
  brute-force baseline measured in the same run, and how often its decision equals ours.
Wall time and the thread's CPU time are both given: on a shared machine the wall time includes
waiting for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import ray
from sqlalchemy import insert, select

from actors.galleries import Galleries
from actors.gallery import SearchResult, create_gallery, merge_hits
from actors.gallery_config import ShardConfig, shard_of
from actors.gallery_index import ShardIndex
from actors.person_clustering import PersonClustering
from actors.persons import PersonAssigner
from facewatch.gallery_schema import PERSON_COLUMNS
from models.embedders import embedder_spec
from storage import orm
from storage.db import migrate
from storage.persons import PERSONS_GALLERY
from storage.unit_of_work import UnitOfWork

DIM = 128
MODEL = "bench_model"
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(rng: np.random.Generator, base: np.ndarray, cos: float | np.ndarray) -> np.ndarray:
    noise = unit_rows(rng, len(base))
    noise -= (noise * base).sum(axis=1, keepdims=True) * base
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    return (cos * base + np.sqrt(1 - cos**2) * noise).astype(np.float32)


def insert_persons(url: str, n: int, vectors: np.ndarray | None = None, chunk: int = 20_000) -> None:
    """Persons 1..n with face i = person i (and, given `vectors`, their rows in face_vectors)."""
    now = datetime.now(UTC)
    with UnitOfWork(url) as uow:
        for start in range(0, n, chunk):
            ids = range(start + 1, min(n, start + chunk) + 1)
            uow.session.execute(insert(orm.Person), [
                {"id": i, "scope": 0, "event_count": 1, "camera_ids": [], "camera_group_ids": [],
                 "seen_days": ["2026-03-01"], "days_seen": 1, "best_quality": 0.8, "dirty": True,
                 "created_at": now, "updated_at": now} for i in ids])
            uow.session.execute(insert(orm.PersonFace), [
                {"id": i, "person_id": i, "quality": 0.8, "created_at": now} for i in ids])
            if vectors is not None:
                uow.session.execute(insert(orm.FaceVector), [
                    {"gallery": PERSONS_GALLERY, "item_id": str(i), "model": MODEL, "dim": DIM,
                     "vector": vectors[i - 1].tobytes(), "meta": {"person_id": i, "scope": 0}, "created_at": now}
                    for i in ids])
                uow.session.execute(insert(orm.GalleryChange), [
                    {"gallery": PERSONS_GALLERY, "item_id": str(i), "op": "add", "created_at": now} for i in ids])
        uow.commit()


def percentiles(values: list[float]) -> dict[str, float]:
    a = np.asarray(values) * 1000
    return {"p50_ms": round(float(np.percentile(a, 50)), 2), "p95_ms": round(float(np.percentile(a, 95)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2)}


def commit_event(url: str, assigner: PersonAssigner, event_id: str, at: datetime, probe: np.ndarray,
                 settings: dict[str, Any]) -> None:
    """What the pipeline's commit does for an unmatched face: the person decided and the event written."""
    with UnitOfWork(url) as uow:
        event = orm.Event(id=event_id, timestamp=at, quality=0.8, bbox=[], watch_list_id=orm.UNMATCHED_WATCH_LIST_ID)
        assigner.attach(uow, event, probe, MODEL, settings)
        uow.session.add(event)
        uow.commit()


async def online(tmp: Path, persons: int, queries: int, seed: int) -> dict[str, Any]:
    url = f"sqlite:///{tmp / 'online.db'}"
    migrate(url)
    rng = np.random.default_rng(seed)
    started = time.monotonic()
    vectors = unit_rows(rng, persons)
    insert_persons(url, persons)
    db_s = time.monotonic() - started
    router = create_gallery(PERSONS_GALLERY, MODEL, DIM, shards=2, columns=PERSON_COLUMNS,
                            actor_options={"num_cpus": 0}, ready_timeout_s=None)
    await router.wait_ready_async(600)
    for start in range(0, persons, 50_000):
        stop = min(persons, start + 50_000)
        await router.add_async([str(i + 1) for i in range(start, stop)], vectors[start:stop],
                               [{"person_id": i + 1, "scope": 0} for i in range(start, stop)])
    gallery_s = time.monotonic() - started - db_s
    galleries = Galleries(db_url=url, snapshot_dir=str(tmp / "snap"), model=MODEL, dim=DIM)
    galleries._routers[PERSONS_GALLERY] = router  # the filled, DB-less gallery stands in for the system one
    spec = embedder_spec("dlib_resnet_v1")
    assigner = PersonAssigner(galleries, spec.calibration)
    with UnitOfWork(url) as uow:
        settings = uow.settings.all()
    picks = rng.integers(0, persons, queries)
    probes = near(rng, vectors[picks], 0.95)
    probes[1::2] = unit_rows(rng, len(probes[1::2]))  # every other query is a stranger
    search_s, commit_s, total_s = [], [], []
    for i, probe in enumerate(probes):
        event_id = f"bench-{i}"
        t0 = time.perf_counter()
        await assigner.prepare(event_id, probe, None, False, settings)
        t1 = time.perf_counter()
        commit_event(url, assigner, event_id, T0 + timedelta(seconds=i), probe, settings)
        t2 = time.perf_counter()
        search_s.append(t1 - t0)
        commit_s.append(t2 - t1)
        total_s.append(t2 - t0)
    router.kill()
    joined = len(range(0, queries, 2))
    return {"persons": persons, "queries": queries, "setup_db_s": round(db_s, 1),
            "setup_gallery_s": round(gallery_s, 1),
            "total": percentiles(total_s[20:]), "search": percentiles(search_s[20:]),
            "attach_commit": percentiles(commit_s[20:]), "stats": assigner.stats(), "expected_joins": joined}


async def recluster(tmp: Path, faces: int, chunk: int, seed: int) -> dict[str, Any]:
    url = f"sqlite:///{tmp / 'cluster.db'}"
    migrate(url)
    rng = np.random.default_rng(seed + 1)
    base = unit_rows(rng, faces // 2)
    vectors = np.empty((faces // 2 * 2, DIM), np.float32)
    vectors[0::2], vectors[1::2] = near(rng, base, 0.975), near(rng, base, 0.975)  # pairs at cosine ≈ 0.95
    insert_persons(url, len(vectors), vectors)
    galleries = Galleries(db_url=url, snapshot_dir=str(tmp / "snap-c"), model=MODEL, dim=DIM, shards=2)
    loaded = time.monotonic()
    await galleries.router_async(PERSONS_GALLERY)
    load_s = time.monotonic() - loaded
    spec = embedder_spec("dlib_resnet_v1")
    clustering = PersonClustering(url, galleries, spec.calibration, chunk=chunk, parallel=2)
    started = time.monotonic()
    report = await clustering.run_async(full=True)
    seconds = time.monotonic() - started
    (await galleries.router_async(PERSONS_GALLERY)).kill()
    return {"faces": len(vectors), "gallery_load_s": round(load_s, 1), "seconds": round(seconds, 1),
            "faces_per_s": round(len(vectors) / seconds, 1), "merges": report["merges"],
            "expected_merges": len(vectors) // 2, "chunk": chunk, **merge_check(url, vectors)}


def merge_check(url: str, vectors: np.ndarray) -> dict[str, Any]:
    """Which merges joined a true pair: faces 2j+1 and 2j+2 (rows 2j, 2j+1) are one identity, so every
    person must hold faces of one pair only. Reports the persons holding one whole pair, any holding
    faces of two pairs (a wrong merge), and the pairs left in two persons (a missed merge) with their
    exact cosine, to tell a search's miss from a rule's refusal."""
    with UnitOfWork(url) as uow:
        rows = uow.session.execute(select(orm.PersonFace.id, orm.PersonFace.person_id)).all()
    faces: dict[int, list[int]] = {}
    for face_id, person_id in rows:
        faces.setdefault(person_id, []).append(face_id)
    pair_persons: dict[int, set[int]] = {}
    whole = wrong = 0
    for person_id, members in faces.items():
        pairs = {(f - 1) // 2 for f in members}
        wrong += len(pairs) > 1
        whole += len(pairs) == 1 and len(members) == 2
        for pair in pairs:
            pair_persons.setdefault(pair, set()).add(person_id)
    missed = sorted(pair for pair, persons in pair_persons.items() if len(persons) > 1)
    return {"merged_true_pairs": whole, "wrong_merges": wrong, "missed_pairs": len(missed),
            "missed_examples": [{"faces": [2 * j + 1, 2 * j + 2],
                                 "cosine": round(float(vectors[2 * j] @ vectors[2 * j + 1]), 4)}
                                for j in missed[:10]]}


class LocalRouter:
    """The persons gallery's shard indexes in this process behind the router's search call (the same
    merge of the shards' answers): what is timed is the index and the assignment code, no Ray hop."""

    def __init__(self, shards: list[ShardIndex]) -> None:
        self.shards = shards

    async def search_async(self, queries: Any, k: int = 10, *, min_score: float | None = None,
                           filters: dict[str, Any] | None = None, partial: bool = False) -> SearchResult:
        answers = [shard.search(queries, k, min_score, filters) for shard in self.shards]
        return SearchResult(merge_hits(answers, len(np.atleast_2d(queries)), k))


class LocalGalleries:
    """Hands `PersonAssigner` the local router; new faces are not replayed into it (no query of this
    benchmark looks for a person made during it)."""

    def __init__(self, router: LocalRouter) -> None:
        self.router, self.dim = router, DIM

    async def router_async(self, name: str) -> LocalRouter:
        return self.router

    async def sync_async(self, name: str) -> None:
        return None


def people(rng: np.random.Generator, n: int, common: np.ndarray) -> np.ndarray:
    """Identities sharing a common direction: two of them at cosine ≈ 0.5 (dlib's different people)."""
    v = 0.7 * common + 0.714 * unit_rows(rng, n)
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def insert_bulk(url: str, vectors: np.ndarray, chunk: int = 50_000) -> None:
    """Persons, faces and face vectors 1..n (face i = person i = row i-1), in Core bulk inserts."""
    now = datetime.now(UTC)
    with UnitOfWork(url) as uow:
        connection = uow.session.connection()
        for start in range(0, len(vectors), chunk):
            ids = range(start + 1, min(len(vectors), start + chunk) + 1)
            connection.execute(orm.Person.__table__.insert(), [
                {"id": i, "scope": 0, "event_count": 1, "camera_ids": [], "camera_group_ids": [],
                 "seen_days": ["2026-03-01"], "days_seen": 1, "best_quality": 0.8, "dirty": False,
                 "created_at": now, "updated_at": now} for i in ids])
            connection.execute(orm.PersonFace.__table__.insert(), [
                {"id": i, "person_id": i, "quality": 0.8, "created_at": now} for i in ids])
            connection.execute(orm.FaceVector.__table__.insert(), [
                {"gallery": PERSONS_GALLERY, "item_id": str(i), "model": MODEL, "dim": DIM,
                 "vector": vectors[i - 1].tobytes(), "meta": {"person_id": i, "scope": 0}, "created_at": now}
                for i in ids])
        uow.commit()


def _timed(values: dict[str, list[float]], name: str, wall: float, cpu: float) -> None:
    values.setdefault(name, []).append(wall)
    values.setdefault(name + "_cpu", []).append(cpu)


def decision_world(tmp: Path, persons: int, shards: int, seed: int,
                   cache: Path | None) -> tuple[str, np.ndarray, list[ShardIndex], np.random.Generator,
                                                np.ndarray, dict[str, float]]:
    """The decision benchmark's world: the SQLite DB with `persons` persons, faces and vectors, the
    product's shard indexes over them, the vectors, and the random state the queries are drawn from.

    With `cache` the DB and the shard indexes are kept there (`decision-<persons>-<shards>-<seed>`)
    and later runs copy and load them instead of building them (5 + 3–8 minutes at 10^6 here), so a
    measuring run is short; the vectors are drawn again from the seed (the same ones)."""
    rng = np.random.default_rng(seed)
    common = unit_rows(rng, 1)[0]
    started = time.monotonic()
    vectors = people(rng, persons, common)
    config = ShardConfig(PERSONS_GALLERY, MODEL, DIM, shards=shards, columns=PERSON_COLUMNS)
    configs = [ShardConfig(**{**config.__dict__, "shard": shard}) for shard in range(shards)]
    url = f"sqlite:///{tmp / 'decision.db'}"
    saved = cache / f"decision-{persons}-{shards}-{seed}" if cache else None
    if saved is not None and (saved / "done").exists():
        shutil.copyfile(saved / "decision.db", tmp / "decision.db")
        migrate(url)  # a cache made before a new migration is brought up to date
        db_s = time.monotonic() - started
        indexes = []
        for shard, shard_config in enumerate(configs):
            with np.load(saved / f"shard-{shard}.npz", allow_pickle=False) as npz:
                indexes.append(ShardIndex.from_arrays(shard_config, {name: npz[name] for name in npz.files}))
        return url, vectors, indexes, rng, common, {"setup_db_s": round(db_s, 1), "load_index_s":
                                                    round(time.monotonic() - started - db_s, 1)}
    migrate(url)
    insert_bulk(url, vectors)
    db_s = time.monotonic() - started
    ids = [str(i + 1) for i in range(persons)]
    owner = np.array([shard_of(i, shards) for i in ids])
    indexes = []
    for shard, shard_config in enumerate(configs):
        rows = np.flatnonzero(owner == shard)
        indexes.append(ShardIndex.build(shard_config, [ids[r] for r in rows], vectors[rows],
                                        [{"person_id": int(r) + 1, "scope": 0} for r in rows]))
    build_s = time.monotonic() - started - db_s
    if saved is not None:
        saved.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / "decision.db", saved / "decision.db")
        for shard, index in enumerate(indexes):
            np.savez(saved / f"shard-{shard}.npz", **index.to_arrays())
        (saved / "done").touch()
    return url, vectors, indexes, rng, common, {"setup_db_s": round(db_s, 1), "build_index_s": round(build_s, 1)}


async def decision(tmp: Path, persons: int, queries: int, shards: int, seed: int,
                   cache: Path | None = None) -> dict[str, Any]:
    url, vectors, indexes, rng, common, setup = decision_world(tmp, persons, shards, seed, cache)
    assigner = PersonAssigner(LocalGalleries(LocalRouter(indexes)), embedder_spec("dlib_resnet_v1").calibration)  # type: ignore[arg-type]
    with UnitOfWork(url) as uow:
        settings = uow.settings.all()
    min_score = float(assigner.calibration.cosine(float(settings["person_threshold"])))
    picks = rng.integers(0, persons, queries)
    # Returning persons: every other one at cosine 0.95 of their stored face, the rest just above the
    # threshold (uniform in [threshold + 0.005, 0.95]), the neighbours an approximate search misses first.
    cosines = np.full(queries, 0.95, dtype=np.float32)
    hard = np.arange(queries) % 4 == 2
    cosines[hard] = rng.uniform(min_score + 0.005, 0.95, int(hard.sum()))
    probes = near(rng, vectors[picks], cosines[:, None])
    probes[1::2] = people(rng, len(probes[1::2]), common)  # every other query is a stranger
    times: dict[str, list[float]] = {}
    references = []
    # The exact scan runs as its own pass first: interleaved with the assignments, its sweep through
    # 512 MB of vectors would evict the shards' coarse centroids and the DB pages from the CPU caches
    # before every assignment, which the product (the shards are processes of their own) does not do.
    for probe in probes:
        w0, c0 = time.perf_counter(), time.thread_time()
        scores = vectors @ probe
        best = int(np.argmax(scores))
        references.append(best + 1 if scores[best] >= min_score else None)
        _timed(times, "reference", time.perf_counter() - w0, time.thread_time() - c0)
    agree = joined = joined_hard = 0
    for i, probe in enumerate(probes):
        event_id = f"bench-{i}"
        w1, c1 = time.perf_counter(), time.thread_time()
        await assigner.prepare(event_id, probe, None, False, settings)
        ws, cs = time.perf_counter(), time.thread_time()
        with UnitOfWork(url) as uow:
            chosen = assigner.best_person(uow, assigner.candidates(event_id))
        w2, c2 = time.perf_counter(), time.thread_time()
        commit_event(url, assigner, event_id, T0 + timedelta(seconds=i), probe, settings)
        w3, c3 = time.perf_counter(), time.thread_time()
        await assigner.sync()
        chosen_id = chosen.id if chosen is not None else None
        agree += chosen_id == references[i]
        joined += i % 2 == 0 and chosen_id == int(picks[i]) + 1
        joined_hard += bool(hard[i]) and chosen_id == int(picks[i]) + 1
        _timed(times, "decision", w2 - w1, c2 - c1)
        _timed(times, "search", ws - w1, cs - c1)
        _timed(times, "db_write", w3 - w2, c3 - c2)
    warm = slice(min(20, queries // 10), None)
    # What the pipeline does per face is prepare + attach (which makes the decision's read itself) +
    # commit: the search plus the write step, not the decision plus the write (that counted the read twice).
    total = [a + b for a, b in zip(times["search"], times["db_write"], strict=True)]
    total_cpu = [a + b for a, b in zip(times["search_cpu"], times["db_write_cpu"], strict=True)]
    return {
        "persons": persons, "queries": queries, "shards": shards, "index": indexes[0].stats()["index_type"],
        **setup,
        "decision": percentiles(times["decision"][warm]), "decision_cpu": percentiles(times["decision_cpu"][warm]),
        "of_which_search_cpu": percentiles(times["search_cpu"][warm]),
        "with_db_write": percentiles(total[warm]), "with_db_write_cpu": percentiles(total_cpu[warm]),
        "reference": percentiles(times["reference"][warm]), "reference_cpu": percentiles(times["reference_cpu"][warm]),
        "db_write": percentiles(times["db_write"][warm]), "db_write_cpu": percentiles(times["db_write_cpu"][warm]),
        "agrees_with_reference": f"{agree}/{queries}", "returning_joined": f"{joined}/{len(range(0, queries, 2))}",
        "near_threshold_joined": f"{joined_hard}/{int(hard.sum())}", "threshold_cosine": round(min_score, 4),
        "stats": assigner.stats(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--cluster-faces", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=1000)
    parser.add_argument("--decision", type=int, default=0, help="persons for the in-process decision benchmark")
    parser.add_argument("--shards", type=int, default=2, help="persons gallery shards (the decision benchmark)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=None,
                        help="keep the decision benchmark's DB and indexes here and reuse them (a short measuring run)")
    parser.add_argument("--ray-address", default=None, help="join a running cluster instead of starting one")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    uses_ray = bool(args.persons or args.cluster_faces)
    if uses_ray and args.ray_address:
        ray.init(address=args.ray_address, namespace=f"bench-persons-{os.getpid()}")
    elif uses_ray:
        ray.init(num_cpus=2, include_dashboard=False, namespace=f"bench-persons-{os.getpid()}")
    result: dict[str, Any] = {"load_avg_1m": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        if args.decision:
            result["decision"] = asyncio.run(decision(Path(tmp), args.decision, args.queries, args.shards, args.seed,
                                                          args.cache))
        if args.persons:
            result["online"] = asyncio.run(online(Path(tmp), args.persons, args.queries, args.seed))
        if args.cluster_faces:
            result["recluster"] = asyncio.run(recluster(Path(tmp), args.cluster_faces, args.chunk, args.seed))
    result["load_avg_1m_after"] = os.getloadavg()[0]
    if uses_ray:
        ray.shutdown()
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
