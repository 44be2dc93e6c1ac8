"""`facewatch backup DIR` / `facewatch restore DIR`: the command line over storage/backup.py."""

from __future__ import annotations

from typing import Any

from storage.backup import BackupError, backup, restore


def cli_backup(args: Any) -> int:
    """`facewatch backup DIR [--json]`."""
    from cluster.output import print_outcome
    from facewatch.settings import load_config

    return print_outcome("backup", lambda: backup(load_config(), args.dir), BackupError, args.json, lambda m: (
        f"backed up {sum(m['tables'].values())} rows, {m['media']['files']} media files and "
        f"{len(m['gallery_snapshots'])} gallery snapshots to {args.dir}"))


def cli_restore(args: Any) -> int:
    """`facewatch restore DIR [--force] [--json]`."""
    from cluster.output import print_outcome
    from facewatch.settings import load_config

    return print_outcome("restore", lambda: restore(load_config(), args.dir, force=args.force), BackupError,
                         args.json, lambda r: (
                             f"restored {sum(r['tables'].values())} rows, {r['media_files']} media files and "
                             f"{len(r['gallery_snapshots'])} gallery snapshots from {args.dir}"))
