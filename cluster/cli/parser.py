"""The `facewatch` console script: the argument parser and `main` (entry point `cluster.cli:main`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from cluster.cli.commands import (
    BENCHMARKS,
    cmd_admin_token,
    cmd_backup,
    cmd_bench,
    cmd_cleanup,
    cmd_demo,
    cmd_enroll,
    cmd_migrate,
    cmd_migrate_model,
    cmd_process,
    cmd_rebuild_galleries,
    cmd_restore,
    cmd_serve,
    cmd_sweep_media,
    cmd_vms_plugin,
)


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
        "sweep-media": (cmd_sweep_media, "delete media files no row refers to (older than --grace-hours)"),
        "backup": (cmd_backup, "back up database, media and gallery snapshots into a new folder"),
        "restore": (cmd_restore, "restore a backup folder into an empty installation"),
        "migrate-model": (cmd_migrate_model, "re-embed every stored face with another model, then switch"),
        "vms-plugin": (cmd_vms_plugin, "run the reference VMS plug-in for a generic VMS declared in a file"),
        "admin-token": (cmd_admin_token, "create an admin token in this installation's database (lock-out)"),
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
    admin_token = parsers["admin-token"]
    admin_token.add_argument("--user", help="for this admin (created if missing); default: the first active admin")
    admin_token.add_argument("--name", default="facewatch admin-token", help="the token's name")
    admin_token.add_argument("--expires-in-days", type=float, help="let the token expire (default: never)")
    admin_token.add_argument("--json", action="store_true", help="print {username, user_id, token} as JSON")
    cleanup = parsers["cleanup"]
    cleanup.add_argument("--older-than", type=float, metavar="DAYS",
                         help="delete every event older than DAYS (default: the retention_days_* settings)")
    cleanup.add_argument("--batch", type=int, default=500, help="events per transaction")
    cleanup.add_argument("--json", action="store_true", help="print the report as JSON")
    parsers["sweep-media"].add_argument("--grace-hours", type=float, default=1.0,
                                        help="keep files younger than this (default 1)")
    parsers["sweep-media"].add_argument("--json", action="store_true", help="print the report as JSON")
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
    plugin = parsers["vms-plugin"]
    plugin.add_argument("--config", required=True, help="the generic VMS's declaration (JSON, see docs/vms.md)")
    plugin.add_argument("--token", help="the shared secret (default FACEWATCH_VMS_PLUGIN_TOKEN)")
    plugin.add_argument("--host", default="127.0.0.1", help="address to listen on")
    plugin.add_argument("--port", type=int, default=18333, help="port to listen on")
    plugin.add_argument("--facewatch-url", help="pass the VMS's own events on to this facewatch")
    plugin.add_argument("--vms-id", type=int, help="this plug-in's id in facewatch's /v1/vms")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
