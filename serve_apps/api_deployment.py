"""The HTTP API as a Ray Serve deployment (FastAPI via `serve.ingress`)."""

from __future__ import annotations

import ray
from ray import serve
from ray.serve import Application

from facewatch.settings import Config
from serve_apps.api.app import create_app
from serve_apps.api.services import Services

API_DEPLOYMENT = "facewatch-api"
API_APP = "facewatch"
# Open live feeds (SSE) count as ongoing requests for as long as they are open, and a console keeps one
# open per tab: Serve's default (5 per replica) would queue every request behind five feeds.
API_MAX_ONGOING_REQUESTS = 1000


def build_api_application(config: Config, services: Services | None = None, num_replicas: int = 1) -> Application:
    """A Serve application serving the facewatch API at `/` with `config` (and face `services`)."""
    app = create_app(config, services)

    @serve.deployment(
        name=API_DEPLOYMENT,
        num_replicas=num_replicas,
        max_ongoing_requests=API_MAX_ONGOING_REQUESTS,
        ray_actor_options={"num_cpus": 0.25},
        health_check_period_s=5,
    )
    @serve.ingress(app)
    class ApiIngress:
        def __init__(self) -> None:
            # The replica reports Ray's health from inside the cluster it runs in.
            self.node_id = ray.get_runtime_context().get_node_id()

    return ApiIngress.bind()
