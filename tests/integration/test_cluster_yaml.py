"""ray_cluster.yaml: valid for Ray's cluster launcher, and its `ray start` lines give every node type
the camera_slots and camera-group label the autoscaler plans with."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray._private.label_utils import parse_node_labels_string, validate_node_labels
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.scripts.scripts import start as ray_start_command

from actors.job_manager import GROUP_LABEL, SLOT_RESOURCE

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "ray_cluster.yaml"
NODE_FILE = re.compile(r"""^printf '%s' '(?P<value>[^']*)' > ~/facewatch-node/(?P<name>resources\.json|labels)$""")


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text())


@pytest.fixture(scope="module")
def prepared(raw: dict[str, Any]) -> dict[str, Any]:
    """The config as `ray up` sees it: merged with the provider's defaults, then validated."""
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    return config


def _ray_start_params(command: str, node_files: dict[str, str] | None = None) -> dict[str, Any]:
    """The options of the `ray start` in a shell line, parsed by Ray's own CLI (nothing runs)."""
    for name, value in (node_files or {}).items():
        command = command.replace(f'"$(cat ~/facewatch-node/{name})"', shlex.quote(value))
    tail = command[command.index("ray start") + len("ray start"):]
    args = shlex.split(tail.replace("$RAY_HEAD_IP", "10.0.0.1"))
    return ray_start_command.make_context("start", args).params


def _start_line(commands: list[str]) -> str:
    lines = [c for c in commands if "ray start" in c]
    assert len(lines) == 1, commands
    return lines[0]


def _node_files(setup_commands: list[str]) -> dict[str, str]:
    files = {}
    for command in setup_commands:
        match = NODE_FILE.match(command.strip())
        if match:
            files[match["name"]] = match["value"]
    return files


def test_valid_for_the_cluster_launcher(prepared: dict[str, Any]) -> None:
    assert prepared["cluster_name"] == "facewatch"
    assert prepared["head_node_type"] == "head"
    assert prepared["max_workers"] >= sum(t.get("min_workers", 0) for t in prepared["available_node_types"].values())


def test_head_cpu_and_gpu_groups(raw: dict[str, Any]) -> None:
    types = raw["available_node_types"]
    head = types[raw["head_node_type"]]
    assert head["resources"].get(SLOT_RESOURCE, 0) == 0 and GROUP_LABEL not in head.get("labels", {})
    workers = {name: t for name, t in types.items() if name != raw["head_node_type"]}
    gpu = [t for t in workers.values() if t["resources"].get("GPU", 0) >= 1]
    cpu = [t for t in workers.values() if t["resources"].get("GPU", 0) == 0]
    assert gpu and cpu
    for node_type in workers.values():
        assert node_type["resources"][SLOT_RESOURCE] >= 1
        assert node_type["max_workers"] > node_type.get("min_workers", 0)  # autoscaling
        validate_node_labels(node_type.get("labels", {}))
    assert any(t.get("labels", {}).get(GROUP_LABEL) for t in cpu), "a CPU group serves a labelled camera group"
    assert any(GROUP_LABEL not in t.get("labels", {}) for t in workers.values()), "unlabelled fallback nodes"


def test_ray_start_lines_match_the_node_types(prepared: dict[str, Any]) -> None:
    head = _ray_start_params(_start_line(prepared["head_start_ray_commands"]))
    assert head["head"] and head["metrics_export_port"]
    assert json.loads(head["resources"]).get(SLOT_RESOURCE, 0) == 0
    assert not head["labels"]
    worker_line = _start_line(prepared["worker_start_ray_commands"])
    for name, node_type in prepared["available_node_types"].items():
        if name == prepared["head_node_type"]:
            continue
        params = _ray_start_params(worker_line, _node_files(node_type["worker_setup_commands"]))
        assert params["address"] == "10.0.0.1:6379"
        assert params["metrics_export_port"] == head["metrics_export_port"]
        resources = json.loads(params["resources"])
        assert resources[SLOT_RESOURCE] == node_type["resources"][SLOT_RESOURCE], name
        assert parse_node_labels_string(params["labels"]) == node_type.get("labels", {}), name


def test_setup_installs_the_project_and_points_at_postgres_and_shared_media(prepared: dict[str, Any]) -> None:
    setups = {"head": prepared["head_setup_commands"]}
    setups.update({n: t["worker_setup_commands"] for n, t in prepared["available_node_types"].items()
                   if n != prepared["head_node_type"]})
    for name, commands in setups.items():
        text = "\n".join(commands)
        assert "pip install -q -e ." in text, name
        assert "torch==2.14.1" in text and "--no-deps facenet-pytorch" in text, name
        assert "FACEWATCH_DATABASE_URL=postgresql+psycopg://" in text, name
        assert "FACEWATCH_MEDIA_ROOT=/mnt/facewatch/" in text and "mount -t nfs4" in text, name
    gpu_setup = "\n".join(c for t in prepared["available_node_types"].values() if t["resources"].get("GPU")
                          for c in t["worker_setup_commands"])
    assert "download.pytorch.org/whl/cu" in gpu_setup
    assert any("facewatch serve" in c for c in prepared["head_start_ray_commands"])
