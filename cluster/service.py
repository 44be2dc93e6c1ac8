"""Starting facewatch: Ray (local or joined), migrations, the first admin, the extractor pool, the galleries,
the event pipeline and the JobManager (which runs the camera and video jobs), the API on Ray Serve."""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass

import ray
from ray import serve
from ray.actor import ActorHandle

from actors.event_pipeline import EventPipeline
from actors.galleries import Galleries
from actors.job_manager import MANAGER_NAME, NAMESPACE, start_job_manager
from actors.task_supervisor import start_task_supervisor
from actors.vms_agent import VMS_AGENT, VmsAgent
from actors.webhook_dispatcher import WebhookDispatcher
from cluster.ingress import ingress_env
from cluster.maintenance import start_maintenance
from facewatch.names import WEBHOOK_DISPATCHER, event_pipeline_name
from facewatch.settings import Config
from models.embedders import embedder_spec
from serve_apps.api.services import Services
from serve_apps.api_deployment import API_APP, build_api_application
from serve_apps.extractor import EXTRACTOR_APP, build_extractor_application
from storage.db import migrate
from storage.sign_in import ensure_admin_password
from storage.tokens import ensure_admin
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch")



@dataclass
class Started:
    url: str
    admin_token: str | None  # set only at first start, when no FACEWATCH_ADMIN_TOKEN was given
    dashboard_url: str | None = None  # the local Ray dashboard, when this process started one
    admin_password: str | None = None  # set only at first start, when no FACEWATCH_ADMIN_PASSWORD was given


@dataclass(frozen=True)
class FirstStart:
    """What to show once: the generated admin token and console password (None when chosen or not new)."""

    admin_token: str | None
    admin_password: str | None


def connect_ray(config: Config, num_cpus: int | None = None, dashboard: bool = False) -> str | None:
    """Joins FACEWATCH_RAY_ADDRESS, or starts a local Ray instance when it is empty; with `dashboard`,
    a local Ray also starts Ray's dashboard (FACEWATCH_DASHBOARD_PORT). Returns the dashboard's URL
    when this call started one."""
    if ray.is_initialized():
        return None
    if config.ray_address:
        ray.init(address=config.ray_address, namespace=NAMESPACE, log_to_driver=False)
        return None
    cpus = num_cpus or max(4, os.cpu_count() or 1)
    # camera_slots: how many camera/video jobs this node may run at once (the JobManager's placement).
    # The dashboard costs a few processes and ~1 s of start-up; scripts and tests leave it off.
    context = ray.init(address="local", num_cpus=cpus, namespace=NAMESPACE, include_dashboard=dashboard,
                       dashboard_port=config.dashboard_port, log_to_driver=False,
                       resources={"camera_slots": config.camera_slots})
    url = getattr(context, "dashboard_url", None) if dashboard else None
    return f"http://{url}" if url and not str(url).startswith("http") else url


def prepare_database(config: Config) -> str | None:
    """Applies migrations and creates the first admin; returns a generated admin token once."""
    return prepare_installation(config).admin_token


def prepare_installation(config: Config) -> FirstStart:
    """Applies migrations, creates the first admin and gives it a console password: FACEWATCH_ADMIN_PASSWORD
    (also for an existing admin without one), else at first start a generated one, returned to print once."""
    config.home.mkdir(parents=True, exist_ok=True)
    config.media_root.mkdir(parents=True, exist_ok=True)
    migrate(config.database_url)
    with UnitOfWork(config.database_url) as uow:
        token = ensure_admin(uow, config.admin_token)
        password = ensure_admin_password(uow, config.admin_password, generate=token is not None)
    return FirstStart(admin_token=token if token and token != config.admin_token else None, admin_password=password)


def active_embedder(config: Config) -> str:
    with UnitOfWork(config.database_url) as uow:
        return str(uow.settings.get("embedder"))


def open_galleries(config: Config, embedder: str, detached: bool = True) -> Galleries:
    galleries = Galleries.from_config(config, embedder, detached)
    galleries.open_all()
    return galleries


def start_face_services(config: Config) -> Services:
    """The extractor pool and the system galleries (created, or found when already running)."""
    embedder = active_embedder(config)
    serve.run(build_extractor_application(config, embedder), name=EXTRACTOR_APP, route_prefix=None, blocking=False)
    return Services(embedder=embedder, galleries=open_galleries(config, embedder))


def job_spec_defaults(config: Config) -> dict[str, object]:
    """What every camera/video job needs to know beyond its own row (see actors.camera_job.JobTuning)."""
    return {"db_url": config.database_url, "media_root": str(config.media_root),
            "pipelines": config.event_pipelines, "pipeline_namespace": NAMESPACE,
            "detector": config.face_detector, "gpu_fraction": config.camera_gpu_fraction}


def start_event_pipelines(config: Config, embedder: str, ready_timeout_s: float = 300.0) -> list[ActorHandle]:
    """The installation's FACEWATCH_EVENT_PIPELINES event pipelines (detached, named
    `event_pipeline_name(i)`), or the running ones; camera groups are split among them
    (actors/pipeline_router.py). Changing the count takes a full restart (`facewatch stop`)."""
    spec = embedder_spec(embedder)
    # A fresh Galleries (no routers yet): each actor finds the running shard actors by name.
    galleries = Galleries.from_config(config, embedder)
    handles = [EventPipeline.options(name=event_pipeline_name(i), namespace=NAMESPACE, get_if_exists=True,
                                     lifetime="detached").remote(config.database_url, galleries, spec.calibration,
                                                                 str(config.media_root), i, config.event_pipelines)
               for i in range(config.event_pipelines)]
    ray.get([h.stats.remote() for h in handles], timeout=ready_timeout_s)
    return handles


def start_webhook_dispatcher(config: Config) -> ActorHandle:
    """The installation's webhook dispatcher (detached, named), delivering the durable outbox."""
    handle = WebhookDispatcher.options(name=WEBHOOK_DISPATCHER, namespace=NAMESPACE, get_if_exists=True,
                                       lifetime="detached").remote(config.database_url, config.public_url)
    ray.get(handle.start.remote(), timeout=120)
    return handle


def start_vms_agent(config: Config) -> ActorHandle:
    """The installation's VMS agent (detached, named): camera imports and the VMS event sender."""
    handle = VmsAgent.options(name=VMS_AGENT, namespace=NAMESPACE, get_if_exists=True,
                              lifetime="detached").remote(config.database_url, config.public_url)
    ray.get(handle.start.remote(), timeout=120)
    return handle


def start_job_services(config: Config, embedder: str, **manager_settings: object) -> ActorHandle:
    """The event pipeline, the webhook dispatcher, scheduled retention, then the JobManager (which
    starts placing camera and video jobs at once)."""
    start_event_pipelines(config, embedder)
    start_webhook_dispatcher(config)
    start_vms_agent(config)
    start_maintenance(config, embedder)  # every FACEWATCH_CLEANUP_INTERVAL_S (default 3600 s; 0 = off)
    start_task_supervisor(config, embedder)  # /v1/tasks: resumes the tasks the DB says are pending/running
    return start_job_manager(config.database_url, namespace=NAMESPACE, spec_defaults=job_spec_defaults(config),
                             **manager_settings)


def start_service(config: Config, num_cpus: int | None = None, faces: bool = True, dashboard: bool = False) -> Started:
    """Everything `facewatch serve` starts; returns once the API answers.

    `faces=False` leaves out the extractor pool, galleries, event pipeline and JobManager (the API then
    answers 503 on face and job endpoints); used where only the CRUD API is needed.
    """
    first = prepare_installation(config)
    dashboard_url = connect_ray(config, num_cpus, dashboard=dashboard)
    env = ingress_env(config, local_ray=not config.ray_address)
    serve.start(http_options={"host": config.http_host, "port": config.http_port},
                controller_options={"runtime_env": {"env_vars": env}} if env else None)
    services = start_face_services(config) if faces else None
    if services is not None:
        start_job_services(config, services.embedder)
    serve.run(build_api_application(config, services, num_replicas=config.api_replicas, env=env), name=API_APP,
              route_prefix="/", blocking=False)
    return Started(url=f"http://{config.http_host}:{config.http_port}", admin_token=first.admin_token,
                   admin_password=first.admin_password, dashboard_url=dashboard_url)


def stop_named_actors(namespace: str = NAMESPACE) -> int:
    """Kills every named actor of the facewatch namespace: the JobManager first (so it places nothing
    more), then the camera/video jobs, the event pipeline, gallery shards and the rest."""
    entries = [e for e in ray.util.list_named_actors(all_namespaces=True) if e.get("namespace") == namespace]
    entries.sort(key=lambda e: (e.get("name") != MANAGER_NAME, not str(e.get("name", "")).startswith("job-")))
    killed = 0
    for entry in entries:
        try:
            ray.kill(ray.get_actor(entry["name"], namespace=namespace), no_restart=True)
            killed += 1
        except Exception:  # noqa: BLE001 - already gone
            log.debug("could not kill %s", entry.get("name"), exc_info=True)
    return killed


def stop_service() -> None:
    """Stops everything start_service started (on a joined cluster too), then disconnects from Ray."""
    try:
        if ray.is_initialized():
            stop_named_actors()
            serve.shutdown()
    finally:
        ray.shutdown()


def serve_forever(config: Config) -> None:
    """`facewatch serve`: start, stay in the foreground until SIGINT/SIGTERM, then shut down cleanly."""
    started = start_service(config, dashboard=config.dashboard)
    print(f"facewatch API at {started.url} (docs at {started.url}/docs)", flush=True)
    if started.dashboard_url:
        print(f"Ray dashboard at {started.dashboard_url} (FACEWATCH_DASHBOARD=0 turns it off)", flush=True)
    if started.admin_token:
        print(f"First start: the admin token is {started.admin_token} (shown once; keep it)", flush=True)
    if started.admin_password:
        print(f"First start: sign in to the console at {started.url}/ as admin with password "
              f"{started.admin_password} (shown once; change it under Administration)", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    print("facewatch: shutting down", flush=True)
    stop_service()
