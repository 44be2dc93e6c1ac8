"""The HTTP API as a Ray Serve deployment (FastAPI via `serve.ingress`)."""

from __future__ import annotations

from typing import Any

import ray
from ray import serve
from ray.serve import Application
from ray.serve.config import RequestRouterConfig

from facewatch.names import API_APP as API_APP  # re-exported: cluster/service.py imports it from here
from facewatch.names import API_DEPLOYMENT
from facewatch.settings import Config
from serve_apps.api.app import create_app
from serve_apps.api.services import Services

# Open live feeds (SSE) count as ongoing requests for as long as they are open, and a console keeps one
# open per tab: Serve's default (5 per replica) would queue every request behind five feeds.
API_MAX_ONGOING_REQUESTS = 1000
# Serve's default router sends each request to the replica with fewer ongoing requests, and open feeds,
# idle nearly all the time, dominate that count: with 2 replicas and 100 feeds split 45/55, every page
# went to the one with 45 (measured: one replica at ~80 % of a core, the other at ~20 %). Round-robin
# spreads the feeds and the pages evenly (Ray Serve's own RoundRobinRouter).
API_REQUEST_ROUTER = "ray.serve.experimental.round_robin_router:RoundRobinRouter"


def replica_probe() -> dict[str, Any]:
    """The API replica answering (GET /health): shows which replicas take the requests."""
    return {"ok": True, "replica": serve.get_replica_context().replica_id.unique_id}


def build_api_application(config: Config, services: Services | None = None,
                          num_replicas: int | None = None, env: dict[str, str] | None = None) -> Application:
    """A Serve application serving the facewatch API at `/` with `config` (and face `services`), in
    `num_replicas` replicas (default FACEWATCH_API_REPLICAS). Each replica runs its own live-feed poller
    (serve_apps/api/feed_hub.py); what must run once (the linked-list scheduler) claims its work in the DB.
    `env` is the ingress environment (cluster/ingress.py): with HAProxy, each replica serves HTTP itself."""
    app = create_app(config, services)
    # GET /health names the replica that answered (set before serve.ingress copies the app).
    app.state.health_probes = {**getattr(app.state, "health_probes", {}), "api_replica": replica_probe}

    @serve.deployment(
        name=API_DEPLOYMENT,
        num_replicas=num_replicas or config.api_replicas,
        max_ongoing_requests=API_MAX_ONGOING_REQUESTS,
        request_router_config=RequestRouterConfig(request_router_class=API_REQUEST_ROUTER),
        ray_actor_options={"num_cpus": 0.25, **({"runtime_env": {"env_vars": env}} if env else {})},
        health_check_period_s=5,
    )
    @serve.ingress(app)
    class ApiIngress:
        def __init__(self) -> None:
            # The replica reports Ray's health from inside the cluster it runs in.
            self.node_id = ray.get_runtime_context().get_node_id()

    return ApiIngress.bind()
