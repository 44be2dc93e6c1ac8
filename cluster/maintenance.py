"""Retention from the command line and the scheduled Maintenance actor of the service.

- `run_cleanup(config, older_than_days)`: `facewatch cleanup [--older-than DAYS]` — deletes expired
  events (rows, outbox rows, events-gallery vectors, unshared media; see `storage.retention`), then,
  when a service runs on FACEWATCH_RAY_ADDRESS, makes its events gallery replay the removals.
- `start_maintenance(config, embedder)`: the service's detached `maintenance` actor that does the
  same every FACEWATCH_CLEANUP_INTERVAL_S seconds (default 3600; 0 disables the schedule).
"""

from __future__ import annotations

import logging
from typing import Any

import ray
from ray.actor import ActorHandle

from actors.galleries import Galleries
from actors.maintenance import DEFAULT_INTERVAL_S, Maintenance, snapshot_positions
from facewatch.errors import FacewatchError
from facewatch.names import MAINTENANCE as MAINTENANCE_NAME
from facewatch.names import NAMESPACE
from facewatch.settings import Config
from models.embedders import embedder_spec
from storage.dossier_vectors import EVENTS_GALLERY
from storage.retention import DEFAULT_BATCH, cleanup, prune_logs
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.maintenance")
INTERVAL_ENV = "FACEWATCH_CLEANUP_INTERVAL_S"


def cleanup_interval_s(env: dict[str, str] | None = None) -> float:
    from facewatch.settings import load_config

    value = load_config(env).cleanup_interval_s
    return DEFAULT_INTERVAL_S if value is None else value


def _galleries(config: Config, embedder: str) -> Galleries:
    # No routers yet: the actor finds the running shard actors by name when it first syncs.
    return Galleries.from_config(config, embedder)


def start_maintenance(config: Config, embedder: str, interval_s: float | None = None,
                      first_run_s: float = 60.0) -> ActorHandle | None:
    """The installation's detached `maintenance` actor (or the running one), its schedule started.
    Returns None when the schedule is disabled (interval 0)."""
    interval = cleanup_interval_s() if interval_s is None else float(interval_s)
    if interval <= 0:
        log.info("scheduled retention cleanup is disabled (%s=0)", INTERVAL_ENV)
        return None
    handle = Maintenance.options(name=MAINTENANCE_NAME, namespace=NAMESPACE, get_if_exists=True,
                                 lifetime="detached").remote(config.database_url, str(config.media_root),
                                                             _galleries(config, embedder), interval, first_run_s)
    ray.get(handle.start.remote(), timeout=120)
    return handle


def sync_events_gallery(config: Config) -> str:
    """Make a running service's events-gallery shards replay the change log (best effort)."""
    if not config.ray_address:
        return "skipped (no FACEWATCH_RAY_ADDRESS): the shards replay the removals when they next sync or start"
    from actors.gallery import get_gallery

    try:
        if not ray.is_initialized():
            ray.init(address=config.ray_address, namespace=NAMESPACE, log_to_driver=False)
        with UnitOfWork(config.database_url) as uow:
            spec = embedder_spec(str(uow.settings.get("embedder")))
        router = get_gallery(EVENTS_GALLERY, spec.name, spec.dim, shards=config.gallery_shards,
                             replicas=config.gallery_replicas)
        missing = router.sync()
    except (FacewatchError, ConnectionError) as exc:
        return f"skipped ({exc}): the shards replay the removals when they next sync or start"
    return "synced" if not missing else f"synced; shards {missing} were down (they replay when back)"


def run_cleanup(config: Config, older_than_days: float | None = None, batch: int = DEFAULT_BATCH,
                sync: bool = True) -> dict[str, Any]:
    report = cleanup(config.database_url, config.media_root, older_than_days, batch=batch)
    report["logs_deleted"] = prune_logs(config.database_url, snapshot_positions(str(config.snapshot_dir)),
                                        batch=batch)
    if report["vectors_deleted"] and sync:
        report["events_gallery"] = sync_events_gallery(config)
    return report


def cli_sweep_media(args: Any) -> int:
    """`facewatch sweep-media [--grace-hours H] [--json]`: delete media files no row refers to."""
    from cluster.cli import print_json
    from cluster.service import prepare_database
    from facewatch.settings import load_config
    from storage.erasure import sweep_media

    config = load_config()
    prepare_database(config)
    report = sweep_media(config.database_url, config.media_root, grace_s=args.grace_hours * 3600.0)
    if args.json:
        print_json(report)
    else:
        print(f"deleted {report['files_deleted']} unreferenced media files ({report['bytes_deleted']} bytes) "
              f"and {report['temporary_deleted']} stale temporary files; kept {report['kept_referenced']} "
              f"referenced and {report['kept_young']} younger than {args.grace_hours:g} h")
    return 0


def cli_cleanup(args: Any) -> int:
    """`facewatch cleanup [--older-than DAYS] [--batch N] [--json]`."""
    from cluster.output import print_json
    from cluster.service import prepare_database
    from facewatch.settings import load_config

    config = load_config()
    prepare_database(config)
    report = run_cleanup(config, args.older_than, batch=args.batch)
    if args.json:
        print_json(report)
    else:
        print(f"deleted {report['events_deleted']} events ({report['matched_deleted']} matched, "
              f"{report['unmatched_deleted']} unmatched), {report['media_deleted']} media files, "
              f"{report['episodes_deleted']} empty episodes"
              + (f"; events gallery: {report['events_gallery']}" if report.get("events_gallery") else ""))
    return 0
