"""facewatch's operational metrics (SPEC §10), defined once, exported through `ray.util.metrics`.

Every process of the cluster (camera jobs, the extractor pool, gallery shards, the event pipeline,
the webhook dispatcher, the JobManager, the API) records into Ray's metrics; each node's metrics
agent exports them in Prometheus format (Ray prefixes the names with `ray_`), the Ray dashboard's
Metrics view shows them (with Prometheus/Grafana set up as Ray documents), and `GET /metrics` on the
API relays the `ray_facewatch_*` series of every node.

| metric (as exported) | kind | tags | recorded by |
|---|---|---|---|
| `ray_facewatch_frames_decoded_total` | counter | camera_id | job heartbeats via JobManager |
| `ray_facewatch_frames_processed_total` | counter | camera_id | job heartbeats via JobManager: the detector ran |
| `ray_facewatch_frames_dropped_total` | counter | camera_id | job heartbeats via JobManager: live source too slow |
| `ray_facewatch_frames_motion_skipped_total` | counter | camera_id | job heartbeats via JobManager |
| `ray_facewatch_faces_detected_total` | counter | camera_id | job heartbeats via JobManager |
| `ray_facewatch_faces_posted_total` | counter | camera_id | job heartbeats via JobManager: handed to the pipeline |
| `ray_facewatch_faces_failed_total` | counter | camera_id | job heartbeats via JobManager: could not be posted |
| `ray_facewatch_extraction_batch_size` | histogram | model | extractor pool (chips per model batch) |
| `ray_facewatch_extraction_latency_seconds` | histogram | model | extractor pool (one model batch) |
| `ray_facewatch_gallery_search_latency_seconds` | histogram | gallery, shard | gallery shard |
| `ray_facewatch_gallery_size` | gauge | gallery, model, shard | gallery shard (vectors held) |
| `ray_facewatch_events_created_total` | counter | matched | event pipeline |
| `ray_facewatch_events_deleted_total` | counter | – | retention (Maintenance actor, CLI) |
| `ray_facewatch_webhook_deliveries_total` | counter | webhook_id | webhook dispatcher (events delivered) |
| `ray_facewatch_webhook_failures_total` | counter | webhook_id | webhook dispatcher (failed attempts) |
| `ray_facewatch_job_restarts_total` | counter | kind | JobManager (a job placed again) |
| `ray_facewatch_job_failures_total` | counter | kind | JobManager (a job failed or its lease lapsed) |

Counters are per process (Ray adds `WorkerId`, `NodeAddress`, … labels): sum them in queries, e.g.
`sum by (camera_id) (rate(ray_facewatch_frames_decoded_total[1m]))`.

The helpers never raise (a metrics problem must not stop a pipeline) and do nothing in a process
where Ray is not initialised (unit tests of plain cores). Metric objects are made on first use in
each process.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("facewatch.metrics")

LATENCY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
BATCH_BOUNDARIES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
EXPORT_PREFIX = "ray_facewatch_"


@dataclass(frozen=True)
class MetricDef:
    kind: str  # counter | gauge | histogram
    name: str  # the name given to Ray (exported with Ray's `ray_` prefix)
    description: str
    tags: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()


METRICS: dict[str, MetricDef] = {d.name: d for d in (
    MetricDef("counter", "facewatch_frames_decoded_total", "Frames decoded per camera", ("camera_id",)),
    MetricDef("counter", "facewatch_frames_processed_total", "Frames the face detector ran on, per camera",
              ("camera_id",)),
    MetricDef("counter", "facewatch_frames_dropped_total", "Frames dropped because processing fell behind a live "
              "source, per camera", ("camera_id",)),
    MetricDef("counter", "facewatch_frames_motion_skipped_total", "Frames skipped by the motion gate, per camera",
              ("camera_id",)),
    MetricDef("counter", "facewatch_faces_detected_total", "Faces detected per camera", ("camera_id",)),
    MetricDef("counter", "facewatch_faces_posted_total", "Best shots handed to the event pipeline, per camera",
              ("camera_id",)),
    MetricDef("counter", "facewatch_faces_failed_total", "Best shots that could not be posted, per camera",
              ("camera_id",)),
    MetricDef("histogram", "facewatch_extraction_batch_size", "Face chips per extractor model batch", ("model",),
              tuple(BATCH_BOUNDARIES)),
    MetricDef("histogram", "facewatch_extraction_latency_seconds", "Seconds per extractor model batch", ("model",),
              tuple(LATENCY_BOUNDARIES)),
    MetricDef("histogram", "facewatch_gallery_search_latency_seconds", "Seconds per gallery shard search",
              ("gallery", "shard"), tuple(LATENCY_BOUNDARIES)),
    MetricDef("gauge", "facewatch_gallery_size", "Vectors held by a gallery shard replica",
              ("gallery", "model", "shard")),
    MetricDef("counter", "facewatch_events_created_total", "Events created by the event pipeline", ("matched",)),
    MetricDef("counter", "facewatch_events_deleted_total", "Events deleted by retention"),
    MetricDef("counter", "facewatch_webhook_deliveries_total", "Events delivered to webhook receivers",
              ("webhook_id",)),
    MetricDef("counter", "facewatch_webhook_failures_total", "Failed webhook delivery attempts", ("webhook_id",)),
    MetricDef("counter", "facewatch_job_restarts_total", "Camera/video jobs placed again after their first start",
              ("kind",)),
    MetricDef("counter", "facewatch_job_failures_total", "Camera/video job failures (lease lapsed, actor died, "
              "cannot open)", ("kind",)),
)}

_lock = threading.Lock()
_objects: dict[str, Any] = {}
_session: list[int | None] = [None]  # the core worker the objects in _objects were made for


def _core_worker_id() -> int | None:
    """Identifies this process's connection to Ray (None: not connected). A driver that shuts Ray
    down and starts it again gets a new core worker, and needs new metric objects."""
    try:
        import ray

        if not ray.is_initialized():
            return None
        return id(ray._private.worker.global_worker.core_worker)
    except Exception:  # noqa: BLE001 - no Ray: no metrics
        return None


def _metric(name: str) -> Any | None:
    session = _core_worker_id()
    if session is None:
        return None
    if session == _session[0]:
        metric = _objects.get(name)
        if metric is not None:
            return metric
    with _lock:
        if session != _session[0]:
            _objects.clear()
            _session[0] = session
        if name not in _objects:
            from ray.util import metrics as ray_metrics

            d = METRICS[name]
            if d.kind == "counter":
                _objects[name] = ray_metrics.Counter(d.name, description=d.description, tag_keys=d.tags)
            elif d.kind == "gauge":
                _objects[name] = ray_metrics.Gauge(d.name, description=d.description, tag_keys=d.tags)
            else:
                _objects[name] = ray_metrics.Histogram(d.name, description=d.description,
                                                       boundaries=list(d.boundaries), tag_keys=d.tags)
        return _objects[name]


def _tags(name: str, values: Mapping[str, Any]) -> dict[str, str]:
    return {key: "none" if values.get(key) is None else str(values[key]) for key in METRICS[name].tags}


def inc(name: str, value: float = 1.0, **tags: Any) -> None:
    """Add `value` to counter `name` (a key of METRICS); zero and negative values are ignored."""
    if value <= 0:
        return
    try:
        metric = _metric(name)
        if metric is not None:
            metric.inc(float(value), tags=_tags(name, tags))
    except Exception:  # noqa: BLE001 - metrics never break the caller
        log.debug("metric %s not recorded", name, exc_info=True)


def observe(name: str, value: float, **tags: Any) -> None:
    try:
        metric = _metric(name)
        if metric is not None:
            metric.observe(float(value), tags=_tags(name, tags))
    except Exception:  # noqa: BLE001
        log.debug("metric %s not recorded", name, exc_info=True)


def set_gauge(name: str, value: float, **tags: Any) -> None:
    try:
        metric = _metric(name)
        if metric is not None:
            metric.set(float(value), tags=_tags(name, tags))
    except Exception:  # noqa: BLE001
        log.debug("metric %s not recorded", name, exc_info=True)


# ---- the helpers the components call -----------------------------------------------------------------

def frames_decoded(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_frames_decoded_total", n, camera_id=camera_id)


def frames_processed(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_frames_processed_total", n, camera_id=camera_id)


def frames_dropped(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_frames_dropped_total", n, camera_id=camera_id)


def frames_motion_skipped(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_frames_motion_skipped_total", n, camera_id=camera_id)


def faces_detected(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_faces_detected_total", n, camera_id=camera_id)


def faces_posted(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_faces_posted_total", n, camera_id=camera_id)


def faces_failed(camera_id: Any, n: int = 1) -> None:
    inc("facewatch_faces_failed_total", n, camera_id=camera_id)


def extraction_batch(model: str, size: int, seconds: float) -> None:
    """One extractor model batch of `size` chips took `seconds`."""
    observe("facewatch_extraction_batch_size", size, model=model)
    observe("facewatch_extraction_latency_seconds", seconds, model=model)


def gallery_search(gallery: str, shard: int, seconds: float) -> None:
    observe("facewatch_gallery_search_latency_seconds", seconds, gallery=gallery, shard=shard)


def gallery_size(gallery: str, model: str, shard: int, count: int) -> None:
    set_gauge("facewatch_gallery_size", count, gallery=gallery, model=model, shard=shard)


def events_created(n: int = 1, matched: bool = False) -> None:
    inc("facewatch_events_created_total", n, matched="true" if matched else "false")


def events_deleted(n: int) -> None:
    inc("facewatch_events_deleted_total", n)


def webhook_delivered(webhook_id: int, events: int) -> None:
    inc("facewatch_webhook_deliveries_total", events, webhook_id=webhook_id)


def webhook_failed(webhook_id: int) -> None:
    inc("facewatch_webhook_failures_total", 1, webhook_id=webhook_id)


def job_restarted(kind: str) -> None:
    inc("facewatch_job_restarts_total", 1, kind=kind)


def job_failed(kind: str) -> None:
    inc("facewatch_job_failures_total", 1, kind=kind)


CAMERA_COUNTERS: dict[str, str] = {
    "frames_decoded": "facewatch_frames_decoded_total",
    "frames_processed": "facewatch_frames_processed_total",
    "frames_dropped": "facewatch_frames_dropped_total",
    "frames_motion_skipped": "facewatch_frames_motion_skipped_total",
    "faces_detected": "facewatch_faces_detected_total",
    "faces_posted": "facewatch_faces_posted_total",
    "faces_failed": "facewatch_faces_failed_total",
}


class CameraMetrics:
    """Turns a camera job's cumulative counters into metric increments.

    Call `report(counters)` with the job's running totals (an object with the attributes of
    CAMERA_COUNTERS, e.g. `actors.camera_job.Counters`, or a dict) every heartbeat and once at the
    end; it adds what grew since the previous call.
    """

    def __init__(self, camera_id: Any) -> None:
        self.camera_id = camera_id
        self._last: dict[str, float] = dict.fromkeys(CAMERA_COUNTERS, 0)

    def report(self, counters: Any) -> None:
        for field_name, metric in CAMERA_COUNTERS.items():
            value = counters.get(field_name, 0) if isinstance(counters, Mapping) else getattr(counters, field_name, 0)
            value = float(value or 0)
            delta = value - self._last[field_name]
            if delta > 0:
                inc(metric, delta, camera_id=self.camera_id)
            self._last[field_name] = value


def merge_expositions(texts: list[str], prefix: str = EXPORT_PREFIX) -> str:
    """One Prometheus text exposition of the `prefix*` metric families found in `texts` (one per
    node): each family's `# HELP` / `# TYPE` lines once, then its samples from every node (the
    samples of different nodes differ in their `NodeAddress` / `WorkerId` labels)."""
    families: dict[str, dict[str, Any]] = {}
    for text in texts:
        current: str | None = None
        for line in text.splitlines():
            if line.startswith("# HELP ") or line.startswith("# TYPE "):
                parts = line.split(maxsplit=3)
                current = parts[2] if len(parts) >= 3 and parts[2].startswith(prefix) else None
                if current is not None:
                    family = families.setdefault(current, {"help": None, "type": None, "samples": []})
                    kind = "help" if parts[1] == "HELP" else "type"
                    family[kind] = family[kind] or line
            elif line and not line.startswith("#"):
                if current is not None and line.startswith(current):
                    families[current]["samples"].append(line)
                elif line.startswith(prefix):  # a sample without headers: its own family
                    name = line.split("{", 1)[0].split(" ", 1)[0]
                    families.setdefault(name, {"help": None, "type": None, "samples": []})["samples"].append(line)
    out: list[str] = []
    for family in families.values():
        out.extend(h for h in (family["help"], family["type"]) if h)
        out.extend(family["samples"])
    return "\n".join(out) + ("\n" if out else "")
