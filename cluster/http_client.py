"""Small helpers for talking to a facewatch service over HTTP (CLI commands, the demo)."""

from __future__ import annotations

import time
from typing import Any

import httpx


def wait_healthy(client: httpx.Client, timeout_s: float = 180.0) -> dict[str, Any]:
    """Waits until GET /health answers 200 (every component up); returns its body."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while time.monotonic() < deadline:
        try:
            response = client.get("/health")
            if response.status_code == 200:
                return response.json()
            last = response.json()
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.5)
    raise RuntimeError(f"the API did not become healthy: {last}")
