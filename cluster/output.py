"""How the command-line tools print results (shared by `cluster/cli/` and the commands it runs)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_outcome(command: str, produce: Callable[[], T], errors: type[Exception] | tuple[type[Exception], ...],
                  as_json: bool, summary: Callable[[T], str]) -> int:
    """Run a command's work: its report as JSON or one summary line (exit 0), or the expected error
    on stderr (exit 2)."""
    try:
        result = produce()
    except errors as exc:
        print(f"facewatch {command}: {exc}", file=sys.stderr)
        return 2
    if as_json:
        print_json(result)
    else:
        print(summary(result))
    return 0
