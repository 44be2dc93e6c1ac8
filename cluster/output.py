"""How the command-line tools print results (shared by `cluster/cli/` and the commands it runs)."""

from __future__ import annotations

import json
import sys


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
