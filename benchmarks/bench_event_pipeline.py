"""Sustained events/s through 1 vs N event-pipeline actors, into SQLite and PostgreSQL, in one run.

Each configuration gets a fresh installation database (migrated), 50 enrolled dossiers on one watch
list, the real gallery actors (dossiers, events, persons: 2 shards) and N real `EventPipeline` actors
(FACEWATCH_EVENT_PIPELINES=N). One client thread per camera group posts batches of sightings through the
real `PipelineRouter` (the camera jobs' path) for `--seconds`, after a warm-up; a fifth of the faces
are near a dossier (matched events), the rest strangers (unmatched events, each assigned a person).
Figure: events committed per second of wall time; the ratio N vs 1 is measured in the same run.

    .venv/bin/python benchmarks/bench_event_pipeline.py [--db sqlite,postgresql] [--pipelines 1,4]
        [--groups 8] [--batch 4] [--seconds 30] [--pg-url postgresql://postgres@127.0.0.1:5432/postgres] [--json]

PostgreSQL runs need `--pg-url` (default: $FACEWATCH_TEST_PG_URL); the benchmark creates and drops its own
databases there. Ray starts here (4 logical CPUs; the actors ask for none).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.event_pipeline import EventPipeline
from actors.galleries import Galleries
from actors.pipeline_router import PipelineRouter
from facewatch.names import event_pipeline_name
from facewatch.sightings import FaceSighting, event_id_for
from models.calibration import Calibration
from storage import orm
from storage.db import migrate
from storage.dossier_vectors import store_dossier_face_vector
from storage.unit_of_work import UnitOfWork

DIM, MODEL, NAMESPACE = 128, "bench_model", "bench-event-pipeline"
CAL = Calibration(strict_cosine=0.90, medium_cosine=0.80, low_cosine=0.70)
DOSSIERS, MATCHED_SHARE, WARMUP_BATCHES = 50, 0.2, 2


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    rows = rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def prepare(url: str, groups: int) -> tuple[list[int], np.ndarray]:
    migrate(url)
    faces = unit(np.random.default_rng(0), DOSSIERS)
    with UnitOfWork(url) as uow:
        group_ids = [uow.camera_groups.add(orm.CameraGroup(name=f"g{i}")).id for i in range(groups)]
        watch_list = uow.watch_lists.add(orm.WatchList(name="bench"))
        for i, vector in enumerate(faces):
            dossier = uow.dossiers.add(orm.Dossier(name=f"d{i}", watch_lists=[watch_list]))
            face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id))
            store_dossier_face_vector(uow, face, dossier, MODEL, vector)
        uow.commit()
    return group_ids, faces


def client(router: PipelineRouter, group: int, faces: np.ndarray, batch: int, until: list[float],
           counted: list[int], started: threading.Barrier) -> None:
    """Posts batches of one camera group until `until[0]`; counts events committed after the warm-up."""
    rng = np.random.default_rng(group)
    track = 0
    for n in range(10**9):
        if n == WARMUP_BATCHES:
            started.wait()
        if n > WARMUP_BATCHES and time.monotonic() >= until[0]:
            return
        vectors = unit(rng, batch)
        near = rng.random(batch) < MATCHED_SHARE
        vectors[near] = 0.9 * faces[rng.integers(0, len(faces), int(near.sum()))] + 0.436 * vectors[near]
        sightings = []
        for vector in vectors:
            track += 1
            sightings.append(FaceSighting(
                event_id=event_id_for(group, 0, track, 0), job_id=None, camera_group_id=group, camera_id=None,
                timestamp=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=track), bbox=[0, 0, 10, 10],
                detection_score=0.99, quality=0.6, embedding=vector / np.linalg.norm(vector), model=MODEL))
        answers = router.post(sightings, timeout_s=300)
        if n >= WARMUP_BATCHES:
            counted[0] += sum(a is not None for a in answers)


def measure(url: str, pipelines: int, groups: int, batch: int, seconds: float, tmp: Path) -> dict[str, Any]:
    group_ids, faces = prepare(url, groups)
    galleries = Galleries(db_url=url, snapshot_dir=str(tmp / uuid.uuid4().hex), model=MODEL, dim=DIM)
    base = f"bench-pipeline-{uuid.uuid4().hex[:6]}"
    # Created before this process opens the routers, as the service does: small constructor arguments.
    actors = [EventPipeline.options(name=event_pipeline_name(i, base), namespace=NAMESPACE)
              .remote(url, galleries, CAL, None, i, pipelines) for i in range(pipelines)]
    galleries.open_all()
    try:
        ray.get([a.stats.remote() for a in actors], timeout=300)
        until, counts = [float("inf")], [[0] for _ in group_ids]
        started = threading.Barrier(len(group_ids) + 1)
        threads = [threading.Thread(target=client, args=(PipelineRouter(pipelines, NAMESPACE, base), g, faces,
                                                         batch, until, c, started))
                   for g, c in zip(group_ids, counts, strict=True)]
        for t in threads:
            t.start()
        started.wait()  # every client is past its warm-up
        t0 = time.monotonic()
        until[0] = t0 + seconds
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        events = sum(c[0] for c in counts)
        stats = ray.get([a.stats.remote() for a in actors])
        return {"pipelines": pipelines, "events": events, "wall_s": round(wall, 2),
                "events_per_s": round(events / wall, 1),
                "per_pipeline_events": [s["events_created"] for s in stats],
                "load_avg_1m": round(os.getloadavg()[0], 2)}
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        for router in galleries._routers.values():  # the next configuration's shards read another database
            router.kill()


def run(dbs: list[str], counts: list[int], groups: int, batch: int, seconds: float, pg_url: str | None) -> dict:
    results: dict[str, Any] = {"groups": groups, "batch": batch, "seconds": seconds, "cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        for db in dbs:
            rows = []
            for n in counts:
                if db == "sqlite":
                    rows.append(measure(f"sqlite:///{tmp}/{uuid.uuid4().hex}.db", n, groups, batch, seconds,
                                        Path(tmp)))
                    continue
                if not pg_url:
                    raise SystemExit("PostgreSQL needs --pg-url or FACEWATCH_TEST_PG_URL")
                from tests.conftest import _create_pg_database, _drop_pg_database

                url, name = _create_pg_database(pg_url)
                try:
                    rows.append(measure(url, n, groups, batch, seconds, Path(tmp)))
                finally:
                    _drop_pg_database(pg_url, name)
            reference = rows[0]["events_per_s"] or 1.0
            for row in rows:
                row["ratio_vs_first"] = round(row["events_per_s"] / reference, 2)
            results[db] = rows
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--pipelines", default="1,4")
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--pg-url", default=os.environ.get("FACEWATCH_TEST_PG_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    ray.init(address="local", num_cpus=4, namespace=NAMESPACE, include_dashboard=False, log_to_driver=False)
    try:
        result = run(args.db.split(","), [int(n) for n in args.pipelines.split(",")], args.groups, args.batch,
                     args.seconds, args.pg_url)
    finally:
        ray.shutdown()
    print(json.dumps(result, indent=None if args.json else 2))


if __name__ == "__main__":
    main()
