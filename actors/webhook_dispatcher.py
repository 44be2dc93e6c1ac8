"""The webhook dispatcher: delivers the durable outbox, at least once, in order per webhook.

Each active webhook gets its own delivery loop, so a receiver that hangs or fails only delays its
own queue. A batch (the webhook's `batch_size` oldest pending events) is POSTed as a JSON array
with an `X-Facewatch-Signature: sha256=<hex>` HMAC of the body (when the webhook has a secret).
A failed batch is retried with exponential back-off capped at 100 s, up to `max_attempts`; every
attempt is recorded. State lives in the DB only, so a restarted dispatcher resumes where it was.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx
import ray

from actors.background_loop import LoopActor
from facewatch import metrics
from storage.event_views import event_to_dict
from storage.notices import notice_payloads
from storage.outbox import outbox_rows, pending_batch, record_attempt
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.webhooks")
SIGNATURE_HEADER = "X-Facewatch-Signature"


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookDispatcherCore:
    """The dispatcher's logic, runnable in any asyncio loop (the Ray actor wraps it)."""

    def __init__(self, database_url: str, public_url: str, poll_s: float = 0.5, timeout_s: float = 10.0) -> None:
        self.database_url = database_url
        self.public_url = public_url
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.delivered = 0
        self.failed_attempts = 0
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                try:
                    hook_ids = await asyncio.to_thread(self._active_webhook_ids)
                except Exception:  # noqa: BLE001 - the DB is away (e.g. restarting); the next tick asks again
                    log.exception("listing the active webhooks failed")
                    hook_ids = []
                for hook_id in hook_ids:
                    task = self._tasks.get(hook_id)
                    if task is None or task.done():
                        self._tasks[hook_id] = asyncio.create_task(self._deliver_loop(client, hook_id))
                await self._sleep(self.poll_s * 4)
            for task in self._tasks.values():
                task.cancel()

    def stop(self) -> None:
        self._stop.set()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def _active_webhook_ids(self) -> list[int]:
        with UnitOfWork(self.database_url) as uow:
            return uow.webhooks.active_ids()

    async def _deliver_loop(self, client: httpx.AsyncClient, hook_id: int) -> None:
        while not self._stop.is_set():
            try:
                worked = await self.deliver_once(client, hook_id)
            except Exception:  # noqa: BLE001 - a DB hiccup must not end the loop; the outbox keeps the work
                log.exception("webhook %s: delivery round failed", hook_id)
                worked = False
            if worked is None:
                return  # the webhook was deleted or deactivated
            if not worked:
                await self._sleep(self.poll_s)

    async def deliver_once(self, client: httpx.AsyncClient, hook_id: int) -> bool | None:
        """Delivers one batch if one is due; False when there was nothing to do, None when the hook is gone."""
        prepared = await asyncio.to_thread(self._prepare, hook_id)
        if prepared is None:
            return None
        if not prepared:
            return False
        url, secret, body, outbox_ids = prepared
        headers = {"Content-Type": "application/json", "User-Agent": "facewatch-webhooks"}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        started = time.perf_counter()
        status_code: int | None = None
        try:
            response = await client.post(url, content=body, headers=headers)
            status_code = response.status_code
            ok, error = response.is_success, "" if response.is_success else f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            ok, error = False, f"{type(exc).__name__}: {exc}"
        duration_ms = (time.perf_counter() - started) * 1000
        await asyncio.to_thread(self._record, hook_id, outbox_ids, ok, status_code, error, duration_ms)
        if ok:
            self.delivered += len(outbox_ids)
            metrics.webhook_delivered(hook_id, len(outbox_ids))
        else:
            self.failed_attempts += 1
            metrics.webhook_failed(hook_id)
        return True

    def _prepare(self, hook_id: int) -> tuple[str, str, bytes, list[int]] | tuple[()] | None:
        with UnitOfWork(self.database_url) as uow:
            hook = uow.webhooks.find(hook_id)
            if hook is None or not hook.active:
                return None
            rows = pending_batch(uow, hook_id, hook.batch_size)
            if not rows:
                return ()
            events = uow.events.by_ids(r.event_id for r in rows)
            notices = notice_payloads(uow.session, [r.event_id for r in rows])
            payload = [event_to_dict(events[r.event_id], self.public_url) if r.event_id in events
                       else notices[r.event_id] for r in rows if r.event_id in events or r.event_id in notices]
            body = json.dumps(payload, separators=(",", ":")).encode()
            return hook.url, hook.secret, body, [r.id for r in rows]

    def _record(self, hook_id: int, outbox_ids: list[int], ok: bool, status_code: int | None, error: str,
                duration_ms: float) -> None:
        with UnitOfWork(self.database_url) as uow:
            hook = uow.webhooks.find(hook_id)
            rows = outbox_rows(uow, outbox_ids)
            if hook is None or not rows:
                return
            record_attempt(uow, hook, rows, ok, status_code, error, duration_ms)
            uow.commit()

    def stats(self) -> dict[str, Any]:
        return {"delivered": self.delivered, "failed_attempts": self.failed_attempts,
                "webhooks": sorted(h for h, t in self._tasks.items() if not t.done())}


@ray.remote(max_restarts=-1, max_task_retries=-1, num_cpus=0, max_concurrency=4)
class WebhookDispatcher(LoopActor):
    """The Ray actor around `WebhookDispatcherCore`. Delivery starts in the constructor, so a dispatcher
    that Ray restarts (its process or node died) resumes by itself."""

    def __init__(self, database_url: str, public_url: str, poll_s: float = 0.5, timeout_s: float = 10.0) -> None:
        core = WebhookDispatcherCore(database_url, public_url, poll_s, timeout_s)
        self.run_core(core, core.run, "webhook-dispatcher")
