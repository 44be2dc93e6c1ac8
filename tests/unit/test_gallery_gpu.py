"""Gallery shards on GPU nodes: the device choice, the CPU fallback, and the GPU mirror's search logic.

No GPU here: the mirror is exercised with a CPU copy of the flat index as its "device" (the same FAISS
search call a GpuIndexFlat answers), so what is tested is what the shard does around the device: the
over-fetch for filters, the slot translation, the fallback to the CPU index and the rebuild after writes.
The GPU path itself (faiss-gpu-cu12 on a GPU) has not run in this project yet.
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from actors.galleries import shard_actor_options
from actors.gallery_config import ShardConfig
from actors.gallery_index import GPU_MAX_K, ShardIndex, choose_device, faiss_gpus
from actors.gallery_synthetic import random_index

DIM = 16


def unit(n: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


class CountingCopy:
    """A CPU copy standing in for the GPU: counts how often the mirror was (re)built."""

    def __init__(self) -> None:
        self.builds = 0

    def __call__(self, index: faiss.Index) -> faiss.Index:
        self.builds += 1
        return faiss.clone_index(index)


@pytest.mark.parametrize(("mode", "faiss_gpu_count", "granted", "device"), [
    ("off", 1, 1, "cpu"),   # not asked
    ("auto", 0, 1, "cpu"),  # faiss-cpu (or no GPU visible to faiss)
    ("auto", 1, 0, "cpu"),  # Ray did not grant this actor a GPU: do not take one
    ("auto", 2, 1, "gpu"),
])
def test_the_gpu_is_used_only_when_asked_available_and_granted(mode: str, faiss_gpu_count: int, granted: int,
                                                               device: str) -> None:
    assert choose_device(mode, faiss_gpu_count, granted) == device


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="auto or off"):
        choose_device("on", 1, 1)


def test_this_machine_falls_back_to_the_cpu() -> None:
    """faiss-cpu here: auto chooses the CPU whatever Ray says, and a shard reports where it searches."""
    assert faiss_gpus() == 0
    device = choose_device("auto", faiss_gpus(), 1)
    index = ShardIndex.build(ShardConfig("g", "m", DIM, gpu="auto"), ["a", "b"], unit(2, 0), [None, None])
    assert index.place(device) == "cpu" and index.stats()["device"] == "cpu"
    assert [m[0] for m in index.search(unit(2, 0)[1], 1)[0]] == ["b"]


def test_shards_ask_ray_for_a_gpu_share_only_when_configured() -> None:
    assert shard_actor_options("off", 0.5) == {"num_cpus": 0.0}
    assert shard_actor_options("auto", 0.0) == {"num_cpus": 0.0}
    assert shard_actor_options("auto", 0.25) == {"num_cpus": 0.0, "num_gpus": 0.25}


def _pair(n: int, metas: list[dict[str, int]]) -> tuple[ShardIndex, ShardIndex, CountingCopy]:
    config = ShardConfig("g", "m", DIM, gpu="auto")
    vectors = unit(n, 1)
    ids = [f"i{i}" for i in range(n)]
    cpu = ShardIndex.build(config, ids, vectors, metas)
    mirrored = ShardIndex.build(config, ids, vectors, metas)
    copy = CountingCopy()
    assert mirrored.place("gpu", copy) == "gpu"
    return cpu, mirrored, copy


@pytest.mark.parametrize("filters", [None, {"camera_id": 3}, {"camera_id": 7}, {"camera_id": [1, 2]}])
def test_the_mirror_answers_what_the_cpu_index_answers(filters: dict[str, object] | None) -> None:
    # camera 7 holds 2 of 300 items: the over-fetch cannot find k of them, so the CPU answers.
    metas = [{"camera_id": 7 if i in (5, 250) else i % 5} for i in range(300)]
    cpu, mirrored, copy = _pair(300, metas)
    queries = unit(6, 2)
    for k in (1, 5, 20):
        assert mirrored.search(queries, k, filters=filters) == cpu.search(queries, k, filters=filters)
        assert mirrored.search(queries, k, 0.1, filters) == cpu.search(queries, k, 0.1, filters)
    assert copy.builds == 1  # built once, on the first search


def test_writes_rebuild_the_mirror_and_removed_items_never_come_back() -> None:
    cpu, mirrored, copy = _pair(50, [{"camera_id": i % 2} for i in range(50)])
    queries = unit(3, 3)
    mirrored.search(queries, 3)
    extra = unit(5, 4)
    for index in (cpu, mirrored):
        index.add([f"n{i}" for i in range(5)], extra, [{"camera_id": 1}] * 5)
        index.remove(["i0", "i1", "i2"])
    assert mirrored.search(extra, 2) == cpu.search(extra, 2)
    assert mirrored.search(queries, 10, filters={"camera_id": 1}) == cpu.search(queries, 10, filters={"camera_id": 1})
    assert copy.builds == 2
    assert not {"i0", "i1", "i2"} & {m[0] for hits in mirrored.search(unit(20, 5), 50) for m in hits}


def test_beyond_the_gpu_k_limit_and_on_approximate_shards_the_cpu_searches() -> None:
    cpu, mirrored, copy = _pair(GPU_MAX_K + 100, [{"camera_id": 0}] * (GPU_MAX_K + 100))
    queries = unit(2, 6)
    assert mirrored.search(queries, GPU_MAX_K + 1) == cpu.search(queries, GPU_MAX_K + 1)
    assert copy.builds == 1  # the mirror was consulted, found k too large, and the CPU answered
    ivf = random_index(ShardConfig("g", "m", DIM, approximate_threshold=1000, gpu="auto"), 0, [0, 1], 1000, 2000)
    assert ivf.kind == "ivf_pq_sq8" and ivf.place("gpu", CountingCopy()) == "cpu"


def test_the_installations_galleries_take_the_gpu_settings(tmp_path) -> None:
    from actors.galleries import Galleries
    from facewatch.settings import load_config

    env = {"FACEWATCH_HOME": str(tmp_path), "FACEWATCH_GALLERY_GPU": "auto", "FACEWATCH_GALLERY_GPU_FRACTION": "0.25"}
    galleries = Galleries.from_config(load_config(env), "dlib_resnet_v1")
    assert (galleries.gpu, galleries.gpu_fraction, galleries.dim) == ("auto", 0.25, 128)
    default = Galleries.from_config(load_config({"FACEWATCH_HOME": str(tmp_path)}), "dlib_resnet_v1")
    assert shard_actor_options(default.gpu, default.gpu_fraction) == {"num_cpus": 0.0}
    with pytest.raises(ValueError):
        load_config({**env, "FACEWATCH_GALLERY_GPU": "always"})
