"""BackgroundLoop: an actor's never-ending asyncio work, on its own event loop in a daemon thread.

The service's long-running actors (webhook dispatcher, retention schedule) are created with
`max_restarts=-1`: when their process or node dies, Ray builds them again by calling the constructor
and nothing else. Work started by a later method call would then never resume, so these actors start
their loop from the constructor through this class; the actor's methods talk to the loop thread-safely.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger("facewatch.actors")
T = TypeVar("T")


class BackgroundLoop:
    """Runs `main()` at once on a private event loop in a daemon thread; `ensure_running()` starts it again
    if it has ended (the actors' `start()`)."""

    def __init__(self, main: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self._main = main
        self._loop = asyncio.new_event_loop()
        self._task: asyncio.Future[None] | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.ensure_running()

    def ensure_running(self) -> None:
        """Starts `main()` unless it is running (idempotent)."""
        if self._task is None or self._task.done():
            if self._task is not None and not self._task.cancelled() and self._task.exception() is not None:
                log.error("background loop ended with an error; starting it again", exc_info=self._task.exception())
            self._task = asyncio.run_coroutine_threadsafe(self._main(), self._loop)

    def call(self, fn: Callable[[], T], timeout_s: float = 30.0) -> T:
        """Runs a plain function on the loop's thread (where the loop's state may be touched) and returns its result."""

        async def run() -> T:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_s)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Runs a coroutine on the loop and waits for its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout_s)


class LoopActor:
    """The shell every long-running actor shares: a Ray-free core whose `main` coroutine runs in a
    `BackgroundLoop` started from the constructor, and `start` / `stats` / `stop` passed to the core.
    The actor class (`@ray.remote class X(LoopActor)`) builds its core and calls `run_core` in `__init__`."""

    core: Any
    loop: BackgroundLoop

    def run_core(self, core: Any, main: Callable[[], Coroutine[Any, Any, None]], name: str) -> None:
        self.core = core
        self.loop = BackgroundLoop(main, name=name)

    def start(self) -> bool:
        """Idempotent: the loop runs from the constructor; this starts it again if it has ended."""
        self.loop.ensure_running()
        return True

    def stats(self) -> dict[str, Any]:
        return self.loop.call(self.core.stats)

    def stop(self) -> None:
        self.loop.call(self.core.stop)
