"""Many operators at once (issue 12, item 12): 100 live-feed clients and 8 clients paging events.

Starts facewatch on a fresh installation (Ray, the API on Ray Serve; `--full` adds the extractor pool,
galleries, event pipeline and JobManager, as `facewatch serve` does), fills the events table
(`--events`, inserted through storage as the event pipeline writes them), then for `--seconds`:

- `--feeds` clients hold `GET /v1/events/stream` open (Server-Sent Events, httpx async), as consoles do;
- `--pagers` clients walk `GET /v1/events?limit=50` page after page (cursor, from the newest; back to
  the first page at the end), as operators scrolling the event list;
- a producer commits `--rate` new events a second.

The clients run in this process, on the same cores as the API. Ray starts its workers (the Serve
replicas and proxy) at niceness 15 (`RAY_worker_niceness`) so that a driver keeps priority; left at 0,
this process's 108 clients would have about 28 times the API's CPU weight whenever both want a core
(a console's browser runs elsewhere and takes nothing from the API). With `--server serve` the load
therefore runs at the workers' niceness, so the clients and the API share the cores evenly.

Prints the page latency (p50, p99, max), pages/s and all requests/s, and for the new events the
delivery delay (commit → the SSE message read by a client) over every feed client: the worst, p99,
and how many deliveries were missing. Targets: every client gets every new event within 2 s, pages
p99 ≤ 250 ms.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_console_load.py [--seconds 60] [--server uvicorn] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

TOKEN = "fw_bench_console_load_token"
ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def seed_events(db_url: str, count: int) -> int:
    """`count` events over the last day in one camera group (half matched), as the pipeline writes them."""
    from storage import orm
    from storage.unit_of_work import UnitOfWork

    now = datetime.now(UTC)
    with UnitOfWork(db_url) as uow:
        group = uow.camera_groups.add(orm.CameraGroup(name="bench"))
        camera = uow.cameras.add(orm.Camera(name="bench camera", camera_group_id=group.id, url="", active=False))
        for n in range(count):
            at = now - timedelta(seconds=86_400 * (count - n) / count)
            uow.session.add(orm.Event(id=f"seed-{n:07d}", camera_id=camera.id, camera_group_id=group.id,
                                      timestamp=at, created_at=at, bbox=[10, 10, 90, 90], quality=0.8,
                                      detection_score=0.99, matched=n % 2 == 0,
                                      watch_list_id=orm.UNMATCHED_WATCH_LIST_ID, attributes={}))
            if n % 1000 == 999:
                uow.flush()
        uow.commit()
        return group.id


class Producer(threading.Thread):
    """Commits `rate` new events a second; remembers when each was committed."""

    def __init__(self, db_url: str, group_id: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.db_url, self.group_id, self.interval = db_url, group_id, 1.0 / rate
        self.committed: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        from storage import orm
        from storage.unit_of_work import UnitOfWork

        n = 0
        next_at = time.monotonic()
        while not self.stop.is_set():
            event_id = f"live-{n:06d}"
            with UnitOfWork(self.db_url) as uow:
                uow.session.add(orm.Event(id=event_id, camera_group_id=self.group_id, bbox=[1, 1, 50, 50],
                                          quality=0.7, matched=n % 3 == 0, attributes={},
                                          watch_list_id=orm.UNMATCHED_WATCH_LIST_ID))
                uow.commit()
            self.committed[event_id] = time.time()
            n += 1
            next_at += self.interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))


async def feed_client(client: httpx.AsyncClient, received: dict[str, float], order: list[str],
                      ready: asyncio.Event, done: asyncio.Event, errors: list[str]) -> None:
    """One console's live feed: records when each `live-*` event arrives."""
    try:
        async with client.stream("GET", "/v1/events/stream", timeout=None) as response:
            if response.status_code != 200:
                errors.append(f"feed answered {response.status_code}")
                return
            async for line in response.aiter_lines():
                if line.startswith(": connected"):
                    ready.set()
                elif line.startswith("id: "):
                    # The SSE id is resumable: "<feed position in µs>~<event id>".
                    event_id = line[4:].partition("~")[2] or line[4:]
                    order.append(event_id)
                    received.setdefault(event_id, time.time())
                if done.is_set():
                    return
    except (httpx.HTTPError, asyncio.CancelledError) as exc:
        if not done.is_set():
            errors.append(f"feed: {type(exc).__name__}: {exc}")


async def pager(client: httpx.AsyncClient, latencies: list[float], done: asyncio.Event, errors: list[str]) -> None:
    cursor: str | None = None
    while not done.is_set():
        params: dict[str, Any] = {"limit": 50}
        if cursor:
            params["cursor"] = cursor
        started = time.perf_counter()
        response = await client.get("/v1/events", params=params)
        latencies.append(time.perf_counter() - started)
        if response.status_code != 200:
            errors.append(f"page answered {response.status_code}: {response.text[:200]}")
            cursor = None
            continue
        cursor = response.json()["next_cursor"]


async def load(url: str, feeds: int, pagers: int, seconds: float, producer: Producer) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=feeds + pagers + 10, max_keepalive_connections=feeds + pagers + 10)
    headers = {"Authorization": f"Token {TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=30) as client:
        done, feeds_done = asyncio.Event(), asyncio.Event()
        errors: list[str] = []
        received: list[dict[str, float]] = [{} for _ in range(feeds)]
        readiness = [asyncio.Event() for _ in range(feeds)]
        orders: list[list[str]] = [[] for _ in range(feeds)]
        feed_tasks = [asyncio.create_task(feed_client(client, received[i], orders[i], readiness[i], feeds_done, errors))
                      for i in range(feeds)]
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in readiness)), timeout=120)
        latencies: list[float] = []
        page_tasks = [asyncio.create_task(pager(client, latencies, done, errors)) for _ in range(pagers)]
        producer.start()
        started = time.monotonic()
        await asyncio.sleep(seconds)
        producer.stop.set()
        elapsed = time.monotonic() - started
        done.set()
        await asyncio.gather(*page_tasks, return_exceptions=True)
        # The feeds keep reading until the last committed event has had its 2 s to reach them (a feed that
        # stopped at the pagers' end would count the final event as missing).
        await asyncio.sleep(2.5)
        feeds_done.set()
        await asyncio.sleep(0.5)
        for task in feed_tasks:
            task.cancel()
        await asyncio.gather(*feed_tasks, return_exceptions=True)

    committed = dict(producer.committed)
    delays = [got[event_id] - at for got in received for event_id, at in committed.items() if event_id in got]
    missing = sum(1 for got in received for event_id in committed if event_id not in got)
    worst_per_event = [max(got.get(event_id, float("inf")) for got in received) - at
                       for event_id, at in committed.items()]
    return {
        "seconds": round(elapsed, 1), "feed_clients": feeds, "pagers": pagers,
        "pages": len(latencies), "pages_per_s": round(len(latencies) / elapsed, 1),
        "page_ms": {"p50": round(1000 * percentile(latencies, 50), 1),
                    "p99": round(1000 * percentile(latencies, 99), 1),
                    "max": round(1000 * max(latencies, default=float("nan")), 1),
                    "mean": round(1000 * statistics.fmean(latencies), 1) if latencies else None},
        "new_events": len(committed), "deliveries": len(delays), "missing_deliveries": missing,
        "delivery_s": {"p50": round(percentile(delays, 50), 3), "p99": round(percentile(delays, 99), 3),
                       "worst": round(max(worst_per_event, default=float("nan")), 3)},
        "events_all_clients_within_2s": sum(1 for d in worst_per_event if d <= 2.0),
        # the producer's ids grow with commit order: a feed must send them in that order, each once
        "duplicates": sum(len(o) - len(set(o)) for o in orders),
        "out_of_order_clients": sum(1 for o in orders if o != sorted(o)),
        "errors": errors[:10], "error_count": len(errors),
    }


def app_from_env() -> Any:
    """`--server uvicorn`: the API app exactly as a Serve replica builds it, from FACEWATCH_* variables."""
    from facewatch.settings import load_config
    from serve_apps.api.app import create_app

    return create_app(load_config())


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/auth/me", headers={"Authorization": f"Token {TOKEN}"},
                         timeout=10).status_code == 200
    except httpx.HTTPError:
        return False


RAY_WORKER_NICENESS = 15  # Ray's default for its worker processes (ray_config_def.h `worker_niceness`)


def match_ray_worker_niceness() -> int:
    """Lowers this process's priority (the calling thread and the threads it starts after) to that of
    Ray's worker processes; returns the niceness now."""
    wanted = int(os.environ.get("RAY_worker_niceness", RAY_WORKER_NICENESS))
    current = os.nice(0)
    return os.nice(wanted - current) if wanted > current else current


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the load runs")
    parser.add_argument("--feeds", type=int, default=100, help="live-feed clients")
    parser.add_argument("--pagers", type=int, default=8, help="clients paging GET /v1/events?limit=50")
    parser.add_argument("--events", type=int, default=20_000, help="events in the table before the run")
    parser.add_argument("--rate", type=float, default=2.0, help="new events per second during the run")
    parser.add_argument("--cpus", type=int, default=4, help="Ray's CPUs")
    parser.add_argument("--full", action="store_true", help="start the face services and JobManager too")
    parser.add_argument("--server", choices=("serve", "uvicorn"), default="serve",
                        help="serve: the API on Ray Serve (as `facewatch serve`); uvicorn: the same app in one "
                             "uvicorn process, without Ray (where Ray cannot start, e.g. an overloaded machine)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)

    from cluster.service import prepare_installation, start_service, stop_service
    from facewatch.settings import load_config

    home = Path(tempfile.mkdtemp(prefix="facewatch-bench-console-"))
    port = _free_port()
    config = load_config({**os.environ, "FACEWATCH_HOME": str(home), "FACEWATCH_DATABASE_URL": "",
                          "FACEWATCH_MEDIA_ROOT": "", "FACEWATCH_RAY_ADDRESS": "", "FACEWATCH_HTTP_PORT": str(port),
                          "FACEWATCH_ADMIN_TOKEN": TOKEN, "FACEWATCH_GALLERY_SHARDS": "1"})
    t0 = time.monotonic()
    server: subprocess.Popen[bytes] | None = None
    if args.server == "serve":
        url = start_service(config, num_cpus=args.cpus, faces=args.full).url
    else:
        prepare_installation(config)
        env = {**os.environ, "FACEWATCH_HOME": str(home), "FACEWATCH_DATABASE_URL": config.database_url,
               "FACEWATCH_MEDIA_ROOT": str(config.media_root), "FACEWATCH_ADMIN_TOKEN": TOKEN,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "bench_console_load:app_from_env",
                                   "--app-dir", str(Path(__file__).parent), "--port", str(port), "--log-level",
                                   "warning"], env=env)
        url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not _answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError("the API did not answer")
            time.sleep(0.5)
        startup_s = time.monotonic() - t0
        niceness = match_ray_worker_niceness() if args.server == "serve" else os.nice(0)
        group_id = seed_events(config.database_url, args.events)
        producer = Producer(config.database_url, group_id, args.rate)
        result = asyncio.run(load(url, args.feeds, args.pagers, args.seconds, producer))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        else:
            stop_service()
    result.update({"startup_s": round(startup_s, 1), "seeded_events": args.events, "rate_per_s": args.rate,
                   "full_service": args.full, "server": args.server, "database": "sqlite",
                   "client_niceness": niceness,
                   "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
                              f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}"})
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        page, delivery = result["page_ms"], result["delivery_s"]
        print(f"{args.feeds} feed clients, {args.pagers} pagers, {result['seconds']} s, {args.events} seeded events, "
              f"{result['new_events']} new events")
        print(f"pages: {result['pages']} ({result['pages_per_s']}/s), p50 {page['p50']} ms, p99 {page['p99']} ms, "
              f"max {page['max']} ms")
        print(f"delivery to every client: worst {delivery['worst']} s, p99 {delivery['p99']} s, "
              f"p50 {delivery['p50']} s; {result['events_all_clients_within_2s']}/{result['new_events']} events "
              f"reached all within 2 s; {result['missing_deliveries']} deliveries missing")
        if result["error_count"]:
            print(f"errors ({result['error_count']}): {result['errors']}")
        print(f"machine: {result['machine']}")
    return result


if __name__ == "__main__":
    main()
