"""The `facewatch` command line: `parser.py` (arguments, `main`), `commands.py` (what each does).

The commands' modules (backup, maintenance, migrate_model, ...) print through `cluster/output.py`,
so they never import this package back.
"""

from __future__ import annotations

from cluster.cli.parser import build_parser, main
from cluster.output import print_json

__all__ = ["build_parser", "main", "print_json"]
