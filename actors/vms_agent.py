"""The Ray actor around `VmsAgentCore`: VMS camera imports and the VMS event sender, started with the service."""

from __future__ import annotations

from typing import Any

import ray

from actors.background_loop import BackgroundLoop
from actors.vms_sender import VmsAgentCore

VMS_AGENT = "vms-agent"


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=4)
class VmsAgent:
    """Starts its loop in the constructor, so an agent that Ray rebuilds after a crash resumes by itself."""

    def __init__(self, database_url: str, public_url: str, poll_s: float = 1.0) -> None:
        self.core = VmsAgentCore(database_url, public_url, poll_s)
        self.loop = BackgroundLoop(self.core.run, name="vms-agent")

    def start(self) -> bool:
        self.loop.ensure_running()
        return True

    def stats(self) -> dict[str, Any]:
        return self.loop.call(self.core.stats)

    def stop(self) -> None:
        self.loop.call(self.core.stop)
