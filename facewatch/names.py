"""Ray names, defined once: the namespace, the named actors and the Serve applications/deployments.

Every process of an installation (the API, the jobs, the CLI) finds the others by these names.
"""

from __future__ import annotations

NAMESPACE = "facewatch"  # the Ray namespace of every named actor of an installation

# Named actors (detached, in NAMESPACE)
JOB_MANAGER = "job-manager"
EVENT_PIPELINE = "event-pipeline"  # the first event pipeline; the others: event_pipeline_name(i)
WEBHOOK_DISPATCHER = "webhook-dispatcher"
MAINTENANCE = "maintenance"
JOB_ACTOR_PREFIX = "job-"  # a camera/video job's actor is `job-{job_id}`

# Ray Serve
API_APP = "facewatch"
API_DEPLOYMENT = "facewatch-api"
EXTRACTOR_APP = "facewatch-extractor"
EXTRACTOR_DEPLOYMENT = "facewatch-extractor"


def job_actor_name(job_id: int) -> str:
    return f"{JOB_ACTOR_PREFIX}{job_id}"


def event_pipeline_name(index: int, base: str = EVENT_PIPELINE) -> str:
    """The name of event-pipeline actor `index` of FACEWATCH_EVENT_PIPELINES (0 keeps the historic name)."""
    return base if index == 0 else f"{base}-{index}"
