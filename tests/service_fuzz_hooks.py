"""Schemathesis hooks for tests/cluster/test_api_fuzz_service.py (loaded by the CLI through SCHEMATHESIS_HOOKS).

The run is authenticated as a dedicated admin; the cases that would delete, deactivate or demote that
very user, or delete that very token, are left out (`filter_case`), so the run never locks itself out.
Everything else, other admins and their tokens included, is fuzzed. The ids come from the environment
(`SERVICE_FUZZ_USER_ID`, `SERVICE_FUZZ_TOKEN_ID`), set by the test that starts the run.
"""

from __future__ import annotations

import ast
import os
import threading
from typing import Any

import schemathesis

# The run has two workers (threads), and Hypothesis parses a lambda's source with `ast.parse` when it
# names a filter. On this project's Python 3.11.7 two such parses at once can fail with "SystemError:
# AST constructor recursion depth mismatch" (the AST constructor's recursion counter is shared between
# threads), a run error with nothing to do with the service (seen once in a local slow-suite run,
# 2026-12-04; the rerun passed). One parse at a time removes the race; nothing else in the CLI's process parses code.
_parse_lock = threading.Lock()
_ast_parse = ast.parse


def _one_parse_at_a_time(*args: Any, **kwargs: Any) -> ast.AST:
    with _parse_lock:
        return _ast_parse(*args, **kwargs)


ast.parse = _one_parse_at_a_time  # type: ignore[assignment]

KEPT_USER = int(os.environ.get("SERVICE_FUZZ_USER_ID", "0"))
KEPT_TOKEN = int(os.environ.get("SERVICE_FUZZ_TOKEN_ID", "0"))


def names_id(value: Any, kept: int) -> bool:
    """Whether a path parameter as sent (an int, "7", " 7", "7.0") would name the id `kept` on the server."""
    try:
        number = float(str(value).strip())
    except ValueError:
        return False
    return number == kept


def locks_out(method: str, path: str, path_parameters: dict[str, Any], body: Any) -> bool:
    """Whether a call would remove the run's own admin: delete, deactivate or demote it, or delete its token."""
    method = method.upper()
    if path == "/v1/tokens/{token_id}":
        return method == "DELETE" and names_id(path_parameters.get("token_id"), KEPT_TOKEN)
    if path != "/v1/users/{user_id}" or not names_id(path_parameters.get("user_id"), KEPT_USER):
        return False
    if method == "DELETE":
        return True
    if method == "PATCH" and isinstance(body, dict):
        return body.get("active", True) is not True or body.get("role", "admin") != "admin"
    return False


@schemathesis.hook
def filter_case(context: Any, case: schemathesis.Case) -> bool:
    return not locks_out(case.method, case.path, dict(case.path_parameters or {}), case.body)


@schemathesis.check
def no_traceback(ctx: Any, response: Any, case: schemathesis.Case) -> None:
    """An answer never shows the server's insides (a Python traceback)."""
    if b"Traceback (most recent call last)" in response.content:  # bytes: a task's result is a zip
        raise AssertionError(f"a traceback in the answer to {case.method} {case.path}")
