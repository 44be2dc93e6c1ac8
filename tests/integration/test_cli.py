"""Console commands that need no photos: bench gallery, rebuild-galleries, migrate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from storage.db import migrate
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.unit_of_work import UnitOfWork

ROOT = Path(__file__).resolve().parents[2]


def _facewatch(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cluster.cli", *args], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_bench_gallery_prints_the_contract_fields() -> None:
    done = _facewatch("bench", "gallery", "--vectors", "3000", "--shards", "2", "--queries", "50", "--batch", "25",
                      "--json", env={})
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("vectors", "shards", "p50_ms", "p99_ms", "qps", "recall_at_1", "bytes_per_vector", "build_s",
                "numpy_p50_ms"):
        assert key in result, key
    assert result["vectors"] >= 3000 and result["shards"] == 2 and result["recall_at_1"] == 1.0


def test_rebuild_galleries_from_the_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'facewatch.db'}"
    home.mkdir()
    migrate(url)
    rng = np.random.default_rng(0)
    with UnitOfWork(url) as uow:
        for i in range(40):
            vector = rng.standard_normal(128).astype(np.float32)
            gallery = DOSSIERS_GALLERY if i < 25 else EVENTS_GALLERY
            uow.vectors.upsert(gallery, str(i), "dlib_resnet_v1", vector.tobytes(), 128, {"active": True})
        uow.commit()
    done = _facewatch("rebuild-galleries", env={"FACEWATCH_HOME": str(home), "FACEWATCH_RAY_ADDRESS": ""})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout[done.stdout.index("{"):])
    assert report[DOSSIERS_GALLERY]["items"] == 25 and report[EVENTS_GALLERY]["items"] == 15
    assert list((home / "galleries").glob("*.npz")), "each shard writes a snapshot"
