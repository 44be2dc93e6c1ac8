"""What each `facewatch` command does; the commands' own modules are imported when they run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cluster.output import print_json
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
    from cluster.service import active_embedder, connect_ray, open_galleries, prepare_database
    from storage.unit_of_work import UnitOfWork

    config = load_config()
    prepare_database(config)
    connect_ray(config)
    galleries = open_galleries(config, active_embedder(config), detached=bool(config.ray_address))
    with UnitOfWork(config.database_url) as uow:
        names = ["dossiers", "events", *uow.galleries.names()]
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


def cmd_vms_plugin(args: argparse.Namespace) -> int:
    from cluster.vms_plugin import run_plugin

    token = args.token or load_config().vms_plugin_token or ""
    if len(token) < 8:
        print("give the plug-in's secret with --token or FACEWATCH_VMS_PLUGIN_TOKEN (8 characters or more)",
              file=sys.stderr)
        return 2
    run_plugin(Path(args.config), token, args.host, args.port, args.facewatch_url or "", args.vms_id)
    return 0


def cmd_sweep_media(args: argparse.Namespace) -> int:
    from cluster.maintenance import cli_sweep_media

    return cli_sweep_media(args)


def cmd_admin_token(args: argparse.Namespace) -> int:
    """A new admin token made in this installation's own database: the way back in when no admin can
    authenticate (every admin token deleted or expired). Whoever can run this on the server can read
    the database anyway, so it needs no token itself."""
    from datetime import UTC, datetime, timedelta

    from cluster.service import prepare_database
    from storage.tokens import local_admin_token
    from storage.unit_of_work import UnitOfWork

    config = load_config()
    prepare_database(config)  # a new installation gets its schema (and its first admin) here
    expires = datetime.now(UTC) + timedelta(days=args.expires_in_days) if args.expires_in_days else None
    try:
        with UnitOfWork(config.database_url) as uow:
            user, _, token = local_admin_token(uow, args.user, name=args.name, expires_at=expires)
    except ValueError as exc:
        print(f"facewatch admin-token: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json({"username": user.username, "user_id": user.id, "token": token})
    else:
        print(f"admin token for {user.username} (shown once; keep it): {token}")
    return 0
