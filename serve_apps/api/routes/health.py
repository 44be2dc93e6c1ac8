"""GET /health: are the database, Ray, the extractor pool and the gallery shards up (no auth)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from serve_apps.api.schemas import HealthOut
from storage.db import ping

router = APIRouter(tags=["health"])


def _database(url: str) -> dict[str, Any]:
    try:
        ping(url)
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


PROBE_TIMEOUT_S = 5.0


async def _extractor(services: Any) -> dict[str, Any]:
    """One real call to the extractor pool: a pool that is gone, or whose replicas hang, is down."""
    try:
        info = await asyncio.wait_for(services.extractor().info.remote(), PROBE_TIMEOUT_S)
        return {"ok": True, "embedder": info.get("embedder")}
    except TimeoutError:
        return {"ok": False, "error": f"no answer within {PROBE_TIMEOUT_S:g} s"}
    except Exception as exc:  # noqa: BLE001 - health reports any failure instead of raising
        return {"ok": False, "error": getattr(exc, "reason", None) or type(exc).__name__}


async def _galleries(galleries: Any) -> dict[str, Any]:
    try:
        down = await galleries.shards_down_async(PROBE_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": type(exc).__name__}
    if down:
        names = ", ".join(f"{name} (shards {shards})" for name, shards in down.items())
        return {"ok": False, "error": f"no live replica: {names}", "down": down}
    return {"ok": True}


@router.get("/health", response_model=HealthOut, responses={503: {"model": HealthOut}})
async def health(request: Request) -> JSONResponse:
    """200 when every part answers; 503 naming the parts that do not: the database, Ray, and where this
    process serves faces, the extractor pool and every gallery shard (one live replica each)."""
    components = {"database": await run_in_threadpool(_database, request.app.state.config.database_url),
                  "ray": await run_in_threadpool(_ray)}
    services = getattr(request.app.state, "services", None)
    if services is not None:
        components["extractor"] = await _extractor(services)
        if services.galleries is not None:
            components["galleries"] = await _galleries(services.galleries)
    for name, probe in getattr(request.app.state, "health_probes", {}).items():
        components[name] = await run_in_threadpool(probe)
    ok = all(c["ok"] for c in components.values())
    body = HealthOut(status="ok" if ok else "degraded", components=components,
                     down=[name for name, c in components.items() if not c["ok"]])
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
