"""GET /metrics: the `ray_facewatch_*` metrics of every node, in Prometheus text format.

facewatch records its metrics through `ray.util.metrics` (see `facewatch.metrics`); each Ray node's
metrics agent exports them at `http://<node>:<MetricsExportPort>/metrics` (the port `ray.nodes()`
reports). This route fetches that endpoint on every live node, keeps the facewatch families and
merges them into one exposition. It needs a token like every other route (admins and operators), so
a Prometheus job scraping it sets `authorization: {type: Token, credentials: <token>}`; Prometheus
can also scrape the nodes' export ports directly (Ray's own service discovery file), which carries
Ray's system metrics as well.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from facewatch.errors import ServiceUnavailable
from facewatch.metrics import merge_expositions
from serve_apps.api.deps import Operator

log = logging.getLogger("facewatch.api.metrics")
router = APIRouter(tags=["metrics"])
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
NODE_TIMEOUT_S = 5.0


def metrics_endpoints() -> list[str]:
    """The metrics export URL of every live Ray node."""
    import ray

    if not ray.is_initialized():
        raise ServiceUnavailable("not connected to Ray: no metrics to export")
    urls = []
    for node in ray.nodes():
        port = node.get("MetricsExportPort")
        if node.get("Alive") and port:
            urls.append(f"http://{node['NodeManagerAddress']}:{port}/metrics")
    return urls


async def _fetch(client: httpx.AsyncClient, url: str) -> str:
    try:
        response = await client.get(url)
        response.raise_for_status()
        return response.text
    except httpx.HTTPError as exc:
        log.warning("metrics of %s not available: %s", url, exc)
        return ""


async def collect_metrics() -> str:
    urls = await asyncio.to_thread(metrics_endpoints)
    async with httpx.AsyncClient(timeout=NODE_TIMEOUT_S) as client:
        texts = await asyncio.gather(*(_fetch(client, url) for url in urls))
    return merge_expositions(list(texts))


# No response_class: the errors (401, 403, 503) stay documented as JSON; 200 is documented as text.
@router.get("/metrics", response_model=None, responses={200: {
    "description": "Prometheus text exposition of the ray_facewatch_* metrics of every node",
    "content": {"text/plain": {"schema": {"type": "string"}}}}})
async def metrics(_: Operator) -> Any:
    return PlainTextResponse(await collect_metrics(), media_type=CONTENT_TYPE)
