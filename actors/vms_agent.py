"""The Ray actor around `VmsAgentCore`: VMS camera imports and the VMS event sender, started with the service."""

from __future__ import annotations

import ray

from actors.background_loop import LoopActor
from actors.vms_sender import VmsAgentCore

VMS_AGENT = "vms-agent"


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=4)
class VmsAgent(LoopActor):
    """Starts its loop in the constructor, so an agent that Ray rebuilds after a crash resumes by itself."""

    def __init__(self, database_url: str, public_url: str, poll_s: float = 1.0) -> None:
        core = VmsAgentCore(database_url, public_url, poll_s)
        self.run_core(core, core.run, "vms-agent")
