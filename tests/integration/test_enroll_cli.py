"""`facewatch enroll` end to end: starts its own service, enrols a folder, resumes, retries failures."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _enroll(folder: Path, env: dict[str, str], *extra: str) -> dict:
    command = [sys.executable, "-m", "cluster.cli", "enroll", str(folder), "--watch-list", "staff", "--json", *extra]
    done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout)


def test_enroll_folder_resume_and_retry(tmp_path: Path, faces_dir: Path) -> None:
    folder = tmp_path / "people"
    shutil.copytree(faces_dir / "knn_examples" / "train", folder)  # one sub-folder per person
    shutil.copy(faces_dir / "obama.jpg", folder / "barack.jpg")  # a single photo file is a person too
    (folder / "broken.jpg").write_bytes(b"this is not a photo")
    env = {**os.environ, "FACEWATCH_HOME": str(tmp_path / "home"), "FACEWATCH_HTTP_PORT": str(_free_port()),
           "FACEWATCH_ADMIN_TOKEN": "fw_test_enroll_token", "FACEWATCH_URL": ""}

    first = _enroll(folder, env)
    by_dossier: dict[str, list[dict]] = {}
    for result in first["results"]:
        by_dossier.setdefault(result["dossier"], []).append(result)
    assert set(by_dossier) == {"alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie", "barack", "broken"}
    assert len(by_dossier["biden"]) == 2 and all(r["status"] == "ok" for r in by_dossier["biden"])
    assert by_dossier["broken"] == [{"file": str(folder / "broken.jpg"), "dossier": "broken", "dossier_id": None,
                                     "status": "failed", "error": "BAD_IMAGE"}]
    assert (first["enrolled"], first["failed"]) == (10, 1)

    again = _enroll(folder, env)  # resumable: everything done is skipped, the failure is not retried
    assert again == {"enrolled": 0, "failed": 0, "results": []}

    shutil.copy(faces_dir / "biden.jpg", folder / "broken.jpg")  # fixed by the user
    retried = _enroll(folder, env, "--failed")
    assert [(r["dossier"], r["status"]) for r in retried["results"]] == [("broken", "ok")]
