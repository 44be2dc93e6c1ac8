"""Tasks on a multi-node Ray cluster: a task survives its API replica being killed, and a part whose worker
node is removed is run again elsewhere, each part counted once in the result.

Head node: the API on Ray Serve and the task supervisor. Two worker nodes carry the only `task_slots`, so
every part runs on a worker; the first worker is removed while the export's parts run, and the API replica
is killed meanwhile. Events are real rows with real media files (the export does not need the models).
"""

from __future__ import annotations

import csv
import io
import socket
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import ray
from ray.cluster_utils import Cluster
from sqlalchemy import select

from actors.task_supervisor import SUPERVISOR_NAME, SupervisorTuning, start_task_supervisor
from storage import orm
from storage.media import LocalMediaStore
from storage.unit_of_work import UnitOfWork
from tests import helpers
from tests.conftest import local_cluster, make_config

pytestmark = [pytest.mark.slow, pytest.mark.multinode, pytest.mark.timeout(900)]
EVENTS = 120


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe: Any, timeout_s: float, what: str) -> Any:
    """`tests.helpers.wait_for`, where an HTTP error means the API replica is restarting: not yet."""
    return helpers.wait_for(probe, timeout_s, what, every_s=0.3, ignoring=(httpx.HTTPError,))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    yield from local_cluster(head_cpus=2)


@pytest.fixture(scope="module")
def service(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from cluster.service import start_service, stop_service

    workers = [cluster.add_node(num_cpus=1, resources={"task_slots": 2}) for _ in range(2)]
    tmp = tmp_path_factory.mktemp("task-faults")
    url = f"sqlite:///{tmp / 'fw.db'}"
    config = make_config(tmp, url, FACEWATCH_RAY_ADDRESS=cluster.address, FACEWATCH_HTTP_PORT=str(_free_port()),
                         FACEWATCH_ADMIN_TOKEN="fw_task_faults_token")
    started = start_service(config, faces=False)
    start_task_supervisor(config, "dlib_resnet_v1", SupervisorTuning(
        poll_s=0.2, max_parallel=2, part_cpus=0.5, part_resources={"task_slots": 1}))
    media = LocalMediaStore(config.media_root)
    with UnitOfWork(url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="g"))
        start = datetime(2026, 1, 1, tzinfo=UTC)
        for n in range(EVENTS):
            key = media.put(f"crop {n}".encode() * 50, "jpg")
            uow.session.add(orm.Event(id=f"e{n:04d}", camera_group_id=group.id, crop_key=key,
                                      timestamp=start + timedelta(seconds=n)))
        uow.commit()
    client = httpx.Client(base_url=started.url, headers={"Authorization": f"Token {config.admin_token}"}, timeout=30)
    wait_for(lambda: client.get("/health").status_code == 200, 120, "the API")
    try:
        yield {"client": client, "url": url, "workers": workers, "config": config}
    finally:
        client.close()
        stop_service()


def _parts_by_node(url: str, task_id: int) -> dict[str, int]:
    with UnitOfWork(url) as uow:
        rows = uow.session.scalars(select(orm.TaskPart.node_id).where(orm.TaskPart.task_id == task_id,
                                                                      orm.TaskPart.status == "done"))
        counts: dict[str, int] = {}
        for node in rows:
            counts[node] = counts.get(node, 0) + 1
        return counts


def test_a_task_finishes_after_its_worker_node_is_removed_and_its_api_replica_killed(
        service: dict[str, Any], cluster: Cluster) -> None:
    client: httpx.Client = service["client"]
    created = client.post("/v1/tasks", json={"kind": "export", "params": {"part_size": 1}})
    assert created.status_code == 201, created.text
    task_id = created.json()["id"]
    first, second = service["workers"]
    wait_for(lambda: _parts_by_node(service["url"], task_id).get(first.node_id, 0) >= 3, 300,
             "parts to run on the first worker")
    # The API replica is looked up before the node goes: it may live on that node (it needs only a quarter
    # of a CPU), and then it dies with it, which is the same fault; otherwise it is killed right after.
    names = [e["name"] for e in ray.util.list_named_actors(all_namespaces=True)
             if e["namespace"] == "serve" and e["name"].startswith("SERVE_REPLICA::facewatch#facewatch-api#")]
    assert names, "no API replica is running"
    cluster.remove_node(first)  # the parts running there are lost with it; Ray runs them again elsewhere
    try:
        ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=False)
    except ValueError:
        pass  # it ran on the removed node and is gone already; Serve starts another

    def finished() -> dict[str, Any] | None:
        body = client.get(f"/v1/tasks/{task_id}").json()
        return body if body["status"] in ("done", "failed") else None

    task = wait_for(finished, 600, "the task to finish")
    assert task["status"] == "done", task
    assert task["parts_done"] == task["parts_total"] == EVENTS and task["parts_failed"] == 0
    by_node = _parts_by_node(service["url"], task_id)
    assert by_node.get(second.node_id, 0) > 0 and set(by_node) <= {first.node_id, second.node_id}
    archive = zipfile.ZipFile(io.BytesIO(client.get(f"/v1/tasks/{task_id}/result").content))
    ids = [r["id"] for r in csv.DictReader(io.StringIO(archive.read("events.csv").decode()))]
    assert len(ids) == len(set(ids)) == EVENTS  # every event once: no part counted twice
    assert len([n for n in archive.namelist() if n.startswith("media/")]) == EVENTS
    assert ray.get_actor(SUPERVISOR_NAME, namespace="facewatch") is not None


