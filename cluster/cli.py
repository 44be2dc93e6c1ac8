"""The `facewatch` console script."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from facewatch.settings import load_config


def cmd_serve(_: argparse.Namespace) -> int:
    from cluster.service import serve_forever

    serve_forever(load_config())
    return 0


def cmd_migrate(_: argparse.Namespace) -> int:
    from cluster.service import prepare_installation

    config = load_config()
    first = prepare_installation(config)
    print(f"database at {config.database_url} is up to date")
    if first.admin_token:
        print(f"First start: the admin token is {first.admin_token} (shown once; keep it)")
    if first.admin_password:
        print(f"First start: the admin's console password is {first.admin_password} (shown once; keep it)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from cluster.demo import run_demo

    return run_demo(keep_running=args.keep_running)


def cmd_enroll(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cluster.enroll import run_enroll

    summary = run_enroll(load_config(), Path(args.dir), args.watch_list, failed_only=args.failed,
                         token=args.token, url=args.url)
    if args.json:
        print_json({k: summary[k] for k in ("enrolled", "failed", "results")})
    else:
        for r in summary["results"]:
            print(f"{r['status']:>6}  {r['dossier']:<30} {r['file']}" + (f"  ({r['error']})" if r["error"] else ""))
        print(f"enrolled {summary['enrolled']}, failed {summary['failed']}, skipped (done before) {summary['skipped']}")
    return 0 if summary["failed"] == 0 else 1


def cmd_process(args: argparse.Namespace) -> int:
    from cluster.batch import format_summary, run_process_command

    results = run_process_command(args.paths, args.camera_group, args.parallelism, args.watch_list)
    if args.json:
        print_json({"videos": results})
    else:
        print(format_summary(results))
    return 0 if all(r["status"] == "done" for r in results) else 1


def cmd_rebuild_galleries(args: argparse.Namespace) -> int:
    """Rebuild every shard of the system galleries (and user galleries) from the DB, then snapshot."""
    from sqlalchemy import select

    from cluster.service import active_embedder, connect_ray, open_galleries, prepare_database
    from storage import orm
    from storage.unit_of_work import UnitOfWork

    config = load_config()
    prepare_database(config)
    connect_ray(config)
    galleries = open_galleries(config, active_embedder(config), detached=bool(config.ray_address))
    with UnitOfWork(config.database_url) as uow:
        names = ["dossiers", "events", *uow.session.scalars(select(orm.Gallery.name))]
    report = {}
    for name in names:
        router = galleries.router(name)
        stats = router.rebuild()
        router.snapshot()
        report[name] = {"shards": len(stats), "items": sum((s[0] or {}).get("count", 0) for s in stats)}
    print_json(report)
    return 0


def cmd_cleanup(args: argparse.Namespace) -> int:
    from cluster.maintenance import cli_cleanup

    return cli_cleanup(args)


def cmd_backup(args: argparse.Namespace) -> int:
    from cluster.backup import cli_backup

    return cli_backup(args)


def cmd_restore(args: argparse.Namespace) -> int:
    from cluster.backup import cli_restore

    return cli_restore(args)


def cmd_migrate_model(args: argparse.Namespace) -> int:
    from cluster.migrate_model import cli_migrate_model

    return cli_migrate_model(args)


BENCHMARKS = {"gallery": "cluster.bench_gallery"}


def cmd_bench(args: argparse.Namespace) -> int:
    import importlib

    importlib.import_module(BENCHMARKS[args.what]).main(args.args)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facewatch", description="Video face recognition on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
        "serve": (cmd_serve, "start (or join) Ray, migrate, deploy the API; stay in the foreground"),
        "migrate": (cmd_migrate, "apply database migrations and create the first admin"),
        "demo": (cmd_demo, "run the service and show what it does, end to end"),
        "enroll": (cmd_enroll, "enrol a folder of photos into a watch list (resumable)"),
        "bench": (cmd_bench, "run a benchmark (`facewatch bench gallery --help`)"),
        "rebuild-galleries": (cmd_rebuild_galleries, "rebuild every gallery shard from the database"),
        "process": (cmd_process, "process video files or URLs offline (progress bar, summary, events)"),
        "cleanup": (cmd_cleanup, "delete events older than the retention days (or --older-than DAYS)"),
        "backup": (cmd_backup, "back up database, media and gallery snapshots into a new folder"),
        "restore": (cmd_restore, "restore a backup folder into an empty installation"),
        "migrate-model": (cmd_migrate_model, "re-embed every stored face with another model, then switch"),
    }
    parsers = {}
    for name, (func, help_text) in commands.items():
        p = sub.add_parser(name, help=help_text)
        p.set_defaults(func=func)
        parsers[name] = p
    parsers["demo"].add_argument("--keep-running", action="store_true", help="leave the service up afterwards")
    parsers["bench"].add_argument("what", choices=sorted(BENCHMARKS), help="which benchmark")
    parsers["bench"].add_argument("args", nargs=argparse.REMAINDER, help="the benchmark's own options")
    enroll = parsers["enroll"]
    enroll.add_argument("dir", help="a folder: one dossier per photo file, or per sub-folder of photos")
    enroll.add_argument("--watch-list", required=True, help="watch list name (created if missing)")
    enroll.add_argument("--failed", action="store_true", help="retry only the items that failed before")
    enroll.add_argument("--json", action="store_true", help="print one JSON summary")
    enroll.add_argument("--token", help="API token (default FACEWATCH_ADMIN_TOKEN)")
    enroll.add_argument("--url", help="a running service (default FACEWATCH_URL or the local port)")
    cleanup = parsers["cleanup"]
    cleanup.add_argument("--older-than", type=float, metavar="DAYS",
                         help="delete every event older than DAYS (default: the retention_days_* settings)")
    cleanup.add_argument("--batch", type=int, default=500, help="events per transaction")
    cleanup.add_argument("--json", action="store_true", help="print the report as JSON")
    for name in ("backup", "restore"):
        parsers[name].add_argument("dir", help="the backup folder (backup: new or empty)")
        parsers[name].add_argument("--json", action="store_true", help="print the manifest/report as JSON")
    parsers["restore"].add_argument("--force", action="store_true",
                                    help="replace the contents of a non-empty installation")
    migrate_model = parsers["migrate-model"]
    migrate_model.add_argument("--to", required=True, help="the target embedder (dlib_resnet_v1, facenet_vggface2)")
    migrate_model.add_argument("--batch", type=int, default=32, help="faces per batch (one commit each)")
    migrate_model.add_argument("--no-switch", action="store_true", help="re-embed only; keep the current model")
    migrate_model.add_argument("--force-switch", action="store_true",
                               help="switch even if some faces could not be re-embedded")
    migrate_model.add_argument("--json", action="store_true", help="print the report as JSON")
    process = parsers["process"]
    process.add_argument("paths", nargs="+", metavar="PATH_OR_URL", help="video files or URLs")
    process.add_argument("--camera-group", default="batch", help="camera group of the events (created if missing)")
    process.add_argument("--parallelism", type=int, default=2, help="videos processed at once")
    process.add_argument("--watch-list", action="append", help="report matches on this list only (repeatable)")
    process.add_argument("--json", action="store_true", help='print {"videos": [...]} as JSON')
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
