"""What a task's worker needs to reach the installation: the DB, the media store, results, models."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facewatch.settings import Config
from storage.media import LocalMediaStore

EXTRACTOR_APP = "facewatch-extractor"  # serve_apps.extractor's names (that layer is above this one)
EXTRACTOR_DEPLOYMENT = "facewatch-extractor"
CALL_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Finished:
    """A task's merged outcome: a summary (JSON) and the main result file (under the task's folder)."""

    summary: dict[str, Any]
    result_name: str = ""
    files: list[str] = field(default_factory=list)


@dataclass
class TaskContext:
    config: Config
    embedder: str

    @property
    def db_url(self) -> str:
        return self.config.database_url

    @property
    def media(self) -> LocalMediaStore:
        return LocalMediaStore(self.config.media_root)

    @property
    def results_root(self) -> Path:
        # FACEWATCH_HOME is on the shared filesystem of a cluster, so any node can write a part's file.
        return self.config.home / "task_results"

    def task_dir(self, task_id: int) -> Path:
        path = self.results_root / str(int(task_id))
        path.mkdir(parents=True, exist_ok=True)
        return path

    def remove_task_dir(self, task_id: int) -> None:
        shutil.rmtree(self.results_root / str(int(task_id)), ignore_errors=True)

    def galleries(self) -> Any:
        from actors.galleries import Galleries

        return Galleries.from_config(self.config, self.embedder)

    def extractor(self) -> Any:
        from ray import serve

        return serve.get_deployment_handle(EXTRACTOR_DEPLOYMENT, app_name=EXTRACTOR_APP)


def atomic_write(target: Path, write: Any) -> int:
    """Runs `write(handle)` into a temporary file next to `target`, then renames it; returns the size."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target.stat().st_size
