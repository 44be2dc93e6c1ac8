"""BackgroundLoop: the long-running actors' work starts in their constructor and can be started again."""

from __future__ import annotations

import asyncio
import threading

from actors.background_loop import BackgroundLoop


def test_main_starts_at_once_and_again_after_it_failed() -> None:
    runs: list[int] = []
    started = threading.Event()

    async def main() -> None:
        runs.append(threading.get_ident())
        started.set()
        if len(runs) == 1:
            raise RuntimeError("the first run dies")
        await asyncio.sleep(3600)

    loop = BackgroundLoop(main, name="test-loop")
    assert started.wait(5)  # nobody asked it to start
    loop.run(asyncio.sleep(0.05))
    loop.ensure_running()
    loop.ensure_running()  # idempotent while it runs
    loop.run(asyncio.sleep(0.05))
    assert len(runs) == 2 and runs[0] != threading.get_ident()
    assert loop.call(threading.get_ident) == runs[0]  # call() runs on the loop's own thread
