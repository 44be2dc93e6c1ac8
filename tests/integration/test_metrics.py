"""Metrics (SPEC §10): recorded through ray.util.metrics by the components, exported by the node's
metrics agent, and relayed at GET /metrics in Prometheus format with non-zero values after activity."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import ray

from facewatch import metrics
from facewatch.sightings import FaceSighting
from models.calibration import Calibration
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, store_dossier_face_vector
from storage.unit_of_work import UnitOfWork
from tests.conftest import build_api
from tests.helpers import local_ray

DIM = 16
MODEL = "metrics_model"
CAL = Calibration(strict_cosine=0.90, medium_cosine=0.80, low_cosine=0.70)


def test_merge_keeps_facewatch_families_once_with_every_nodes_samples() -> None:
    node_a = "\n".join([
        "# HELP ray_facewatch_events_created_total Events",
        "# TYPE ray_facewatch_events_created_total counter",
        'ray_facewatch_events_created_total{NodeAddress="a",matched="true"} 3.0',
        "# HELP ray_node_cpu_utilization CPU",
        "# TYPE ray_node_cpu_utilization gauge",
        'ray_node_cpu_utilization{NodeAddress="a"} 12.0',
        "# HELP ray_facewatch_lat_seconds Latency",
        "# TYPE ray_facewatch_lat_seconds histogram",
        'ray_facewatch_lat_seconds_bucket{le="0.1"} 1.0',
        "ray_facewatch_lat_seconds_count 1.0",
    ])
    node_b = "\n".join([
        "# HELP ray_facewatch_events_created_total Events",
        "# TYPE ray_facewatch_events_created_total counter",
        'ray_facewatch_events_created_total{NodeAddress="b",matched="false"} 2.0',
    ])
    merged = metrics.merge_expositions([node_a, node_b]).splitlines()
    assert merged == [
        "# HELP ray_facewatch_events_created_total Events",
        "# TYPE ray_facewatch_events_created_total counter",
        'ray_facewatch_events_created_total{NodeAddress="a",matched="true"} 3.0',
        'ray_facewatch_events_created_total{NodeAddress="b",matched="false"} 2.0',
        "# HELP ray_facewatch_lat_seconds Latency",
        "# TYPE ray_facewatch_lat_seconds histogram",
        'ray_facewatch_lat_seconds_bucket{le="0.1"} 1.0',
        "ray_facewatch_lat_seconds_count 1.0",
    ]
    assert metrics.merge_expositions(["", "garbage line"]) == ""


def test_helpers_are_silent_without_ray() -> None:
    assert not ray.is_initialized()
    metrics.events_created(1, matched=True)
    metrics.gallery_search("events", 0, 0.01)
    metrics.CameraMetrics(3).report({"frames_decoded": 10})
    assert metrics._metric("facewatch_events_created_total") is None


def test_every_spec_metric_is_defined_once() -> None:
    names = set(metrics.METRICS)
    for wanted in ("frames_decoded", "frames_processed", "frames_dropped", "faces_detected", "faces_posted",
                   "extraction_batch_size", "extraction_latency_seconds", "gallery_search_latency_seconds",
                   "gallery_size", "events_created", "webhook_deliveries", "webhook_failures", "job_restarts"):
        assert any(name.startswith(f"facewatch_{wanted}") for name in names), wanted
    assert all(re.fullmatch(r"facewatch_[a-z_]+", n) for n in names)


class _Receiver:
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@ray.remote(num_cpus=0)
def _camera_job_like_activity(camera_id: int) -> None:
    """What a camera job reports (through CameraMetrics) and what the extractor/JobManager record."""
    reporter = metrics.CameraMetrics(camera_id)
    reporter.report({"frames_decoded": 100, "frames_processed": 20, "frames_dropped": 3, "faces_detected": 5,
                     "faces_posted": 2})
    reporter.report({"frames_decoded": 150, "frames_processed": 30, "frames_dropped": 3, "faces_detected": 7,
                     "faces_posted": 3})
    metrics.extraction_batch("dlib_resnet_v1", 8, 0.05)
    metrics.job_restarted("camera")


def sample_total(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def test_metrics_endpoint_shows_activity(sqlite_url: str, tmp_path: Path) -> None:
    from actors.event_pipeline import EventPipeline
    from actors.galleries import Galleries
    from actors.webhook_dispatcher import WebhookDispatcherCore

    with local_ray(2, "test-metrics", _system_config={"metrics_report_interval_ms": 500}):
        receiver = _Receiver()
        try:
            api = build_api(tmp_path, sqlite_url)
            assert api.client.get("/metrics").status_code == 401
            assert api.get("/metrics", "viewer").status_code == 403
            # a dossier to match, two webhooks (one that works, one that cannot be reached)
            vector = np.random.default_rng(1).standard_normal(DIM).astype(np.float32)
            vector /= np.linalg.norm(vector)
            with UnitOfWork(sqlite_url) as uow:
                group = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
                camera = uow.cameras.add(orm.Camera(name="door", camera_group_id=group.id))
                vip = uow.watch_lists.add(orm.WatchList(name="vip"))
                dossier = uow.dossiers.add(orm.Dossier(name="ann", watch_lists=[vip]))
                face = uow.dossier_faces.add(orm.DossierFace(dossier_id=dossier.id))
                store_dossier_face_vector(uow, face, dossier, MODEL, vector)
                ok_hook = uow.webhooks.add(orm.Webhook(title="ok", url=receiver.url)).id
                bad_hook = uow.webhooks.add(orm.Webhook(title="down", url="http://127.0.0.1:9/none")).id
                uow.commit()
                group_id, camera_id = group.id, camera.id
            galleries = Galleries(db_url=sqlite_url, snapshot_dir=str(tmp_path / "snap"), model=MODEL, dim=DIM,
                                  shards=2)
            galleries.router(DOSSIERS_GALLERY)
            # events through the pipeline actor: one matched, one unmatched
            pipeline = EventPipeline.remote(sqlite_url, Galleries(db_url=sqlite_url,
                                                                  snapshot_dir=str(tmp_path / "snap"),
                                                                  model=MODEL, dim=DIM, shards=2), CAL)
            other = np.random.default_rng(2).standard_normal(DIM).astype(np.float32)
            sightings = [FaceSighting(event_id=f"e{i}", job_id=1, camera_group_id=group_id, camera_id=camera_id,
                                      timestamp=datetime.now(UTC), bbox=[0, 0, 9, 9], detection_score=0.99, quality=0.5,
                                      embedding=v / np.linalg.norm(v), model=MODEL, track_id=i)
                         for i, v in enumerate([vector, other])]
            assert ray.get(pipeline.post.remote(sightings)) == ["e0", "e1"]
            # webhook deliveries: the outbox holds both events for both hooks
            core = WebhookDispatcherCore(sqlite_url, "http://facewatch.example", timeout_s=1.0)

            async def deliver() -> None:
                async with httpx.AsyncClient(timeout=1.0) as client:
                    for hook in (ok_hook, bad_hook):
                        assert await core.deliver_once(client, hook) is True

            asyncio.run(deliver())
            assert core.delivered >= 1 and core.failed_attempts == 1
            ray.get(_camera_job_like_activity.remote(camera_id))

            wanted = {
                "ray_facewatch_events_created_total": {"matched": "true"},
                "ray_facewatch_gallery_search_latency_seconds_count": {"gallery": "dossiers"},
                "ray_facewatch_gallery_size": {"gallery": "dossiers"},
                "ray_facewatch_webhook_deliveries_total": {"webhook_id": str(ok_hook)},
                "ray_facewatch_webhook_failures_total": {"webhook_id": str(bad_hook)},
                "ray_facewatch_frames_decoded_total": {"camera_id": str(camera_id)},
                "ray_facewatch_frames_dropped_total": {"camera_id": str(camera_id)},
                "ray_facewatch_faces_posted_total": {"camera_id": str(camera_id)},
                "ray_facewatch_extraction_batch_size_count": {"model": "dlib_resnet_v1"},
                "ray_facewatch_extraction_latency_seconds_sum": {"model": "dlib_resnet_v1"},
                "ray_facewatch_job_restarts_total": {"kind": "camera"},
            }
            deadline = time.monotonic() + 60
            while True:
                response = api.get("/metrics", "operator")
                assert response.status_code == 200
                text = response.text
                missing = [n for n, labels in wanted.items() if sample_total(text, n, **labels) <= 0]
                if not missing:
                    break
                assert time.monotonic() < deadline, f"still missing {missing}:\n{text[:3000]}"
                time.sleep(0.5)
            assert response.headers["content-type"].startswith("text/plain")
            assert sample_total(text, "ray_facewatch_frames_decoded_total", camera_id=str(camera_id)) == 150
            assert sample_total(text, "ray_facewatch_events_created_total") == 2
            assert sample_total(text, "ray_facewatch_gallery_size", gallery="dossiers") == 1
            assert all(line.startswith(("# HELP ray_facewatch_", "# TYPE ray_facewatch_", "ray_facewatch_"))
                       for line in text.splitlines())  # only facewatch's families
            assert api.get("/metrics").status_code == 200  # admins too
            for router in galleries._routers.values():
                router.kill()
        finally:
            receiver.server.shutdown()
