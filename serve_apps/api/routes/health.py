"""GET /health: is the database reachable, is Ray up (no auth)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from serve_apps.api.schemas import HealthOut
from storage.db import engine_for

router = APIRouter(tags=["health"])


def _database(url: str) -> dict[str, Any]:
    try:
        with engine_for(url).connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"ok": True, "backend": url.split(":", 1)[0]}
    except Exception as exc:  # noqa: BLE001 - health reports any failure instead of raising
        return {"ok": False, "error": type(exc).__name__}


def _ray() -> dict[str, Any]:
    try:
        import ray

        if not ray.is_initialized():
            return {"ok": False, "error": "not connected"}
        return {"ok": True, "nodes": sum(1 for n in ray.nodes() if n.get("Alive"))}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": type(exc).__name__}


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
def health(request: Request) -> JSONResponse:
    components = {"database": _database(request.app.state.config.database_url), "ray": _ray()}
    for name, probe in getattr(request.app.state, "health_probes", {}).items():
        components[name] = probe()
    ok = all(c["ok"] for c in components.values())
    body = HealthOut(status="ok" if ok else "degraded", components=components)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
