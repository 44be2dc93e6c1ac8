"""The Maintenance actor: retention cleanup on a schedule, then an events-gallery sync and an
incremental re-clustering of persons (`actors/person_clustering.py`).

Each run also prunes the audit log, webhook deliveries and the gallery change log by their retention
settings (`storage.retention.prune_logs`; change-log rows only once every snapshot holds them).

One detached actor per installation (named `maintenance` in the `facewatch` namespace, started by
`cluster.maintenance.start_maintenance`). Every `interval_s` (default hourly; the first run
`first_run_s` after start) it runs `storage.retention.cleanup` with the runtime settings'
retention days and the media sweep (`storage.erasure.sweep_media`), then makes the events gallery's
shards replay the removals so searches stop finding deleted events (the search route drops hits
whose event row is gone in the meantime). A failed run is logged and kept in `stats()["last_error"]`;
the next one tries again. Runs never overlap; `run_now()` runs one at once (e.g. `facewatch cleanup`
against a running cluster).
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import ray

from actors.background_loop import LoopActor
from actors.galleries import Galleries
from actors.person_clustering import PersonClustering
from facewatch import metrics
from models.embedders import EMBEDDERS, embedder_spec
from storage.dossier_vectors import EVENTS_GALLERY
from storage.erasure import sweep_media
from storage.persons import PERSONS_GALLERY
from storage.retention import DEFAULT_BATCH, cleanup, prune_logs

log = logging.getLogger("facewatch.maintenance")
DEFAULT_INTERVAL_S = 3600.0


def snapshot_positions(snapshot_dir: str | None) -> dict[str, int]:
    """Gallery → the lowest change-log position (`applied_seq`) among its snapshot files: the log rows
    at or before it are in every snapshot, so no shard replays them any more (see
    `GalleryShard.snapshot`, whose header arrays are `h:gallery` and `h:applied_seq`). Galleries without
    a snapshot are absent: their log is kept. Unreadable files are skipped: a shard rebuilds from the DB
    rather than load one."""
    positions: dict[str, int] = {}
    if not snapshot_dir or not Path(snapshot_dir).is_dir():
        return positions
    for path in sorted(Path(snapshot_dir).glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as npz:
                gallery, seq = str(npz["h:gallery"].item()), int(npz["h:applied_seq"].item())
        except Exception:  # noqa: BLE001 - torn or foreign file
            continue
        positions[gallery] = min(seq, positions.get(gallery, seq))
    return positions


class MaintenanceCore:
    def __init__(self, db_url: str, media_root: str, galleries: Galleries | None,
                 interval_s: float = DEFAULT_INTERVAL_S, first_run_s: float = 60.0, batch: int = DEFAULT_BATCH) -> None:
        self.db_url, self.media_root, self.galleries = db_url, media_root, galleries
        self.interval_s, self.first_run_s, self.batch = float(interval_s), float(first_run_s), int(batch)
        self.runs = 0
        self.events_deleted = 0
        self.last_report: dict[str, Any] | None = None
        self.last_run_at: str | None = None
        self.last_error = ""
        self._lock = asyncio.Lock()
        self._stop = asyncio.Event()

    async def run_once(self, older_than_days: float | None = None) -> dict[str, Any]:
        async with self._lock:
            started = time.monotonic()
            try:
                report = await asyncio.to_thread(cleanup, self.db_url, self.media_root, older_than_days,
                                                 batch=self.batch)
                # Files no row refers to (dropped faces, failed posts, interrupted erasures), after a grace period.
                report["media_sweep"] = await asyncio.to_thread(sweep_media, self.db_url, self.media_root)
                snapshots = getattr(self.galleries, "snapshot_dir", None)
                report["logs_deleted"] = await asyncio.to_thread(
                    prune_logs, self.db_url, snapshot_positions(snapshots), batch=self.batch)
                if report["vectors_deleted"] and self.galleries is not None:
                    await self.galleries.sync_async(EVENTS_GALLERY)
                    await self.galleries.sync_async(PERSONS_GALLERY)  # representative faces of deleted events
                report["persons_clustering"] = await self._recluster_persons()
                self.last_error = ""
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("retention cleanup failed")
                raise
            finally:
                self.runs += 1
                self.last_run_at = datetime.now(UTC).isoformat()
            report["seconds"] = round(time.monotonic() - started, 3)
            self.events_deleted += report["events_deleted"]
            metrics.events_deleted(report["events_deleted"])
            self.last_report = report
            if report["events_deleted"]:
                log.info("retention: deleted %d events, %d media files", report["events_deleted"],
                         report["media_deleted"])
            return report

    async def _recluster_persons(self) -> dict[str, Any] | None:
        """The periodic, incremental re-clustering of persons (docs/persons.md), after each clean-up."""
        if self.galleries is None or self.galleries.model not in EMBEDDERS:
            return None  # no galleries here, or a test model without a calibration
        calibration = embedder_spec(self.galleries.model).calibration
        return await PersonClustering(self.db_url, self.galleries, calibration).run_async()

    async def run_forever(self) -> None:
        delay = self.first_run_s
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=delay)
                return
            except TimeoutError:
                pass
            try:
                await self.run_once()
            except Exception:  # noqa: BLE001 - logged in run_once; the schedule goes on
                pass
            delay = self.interval_s

    def stop(self) -> None:
        self._stop.set()

    def stats(self) -> dict[str, Any]:
        return {"runs": self.runs, "events_deleted": self.events_deleted, "last_run_at": self.last_run_at,
                "last_error": self.last_error, "last_report": self.last_report, "interval_s": self.interval_s}


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1, max_concurrency=4)
class Maintenance(LoopActor):
    """The Ray actor around `MaintenanceCore`. The schedule starts in the constructor, so an actor that Ray
    restarts (its process or node died) keeps it by itself; `start()` is kept for callers (idempotent)."""

    def __init__(self, db_url: str, media_root: str, galleries: Galleries | None,
                 interval_s: float = DEFAULT_INTERVAL_S, first_run_s: float = 60.0, batch: int = DEFAULT_BATCH) -> None:
        core = MaintenanceCore(db_url, media_root, galleries, interval_s, first_run_s, batch)
        self.run_core(core, core.run_forever, "maintenance")

    def run_now(self, older_than_days: float | None = None) -> dict[str, Any]:
        return self.loop.run(self.core.run_once(older_than_days))
