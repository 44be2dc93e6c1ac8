"""The other parties of the VMS tests, all real HTTP on loopback: the reference plug-in (uvicorn in a thread)
and a generic VMS's alarm inbox that can be switched off (an outage) and on again."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import uvicorn

from tests.http_range_server import SwitchableServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedServer:
    """An ASGI app served by uvicorn on a free loopback port, in a daemon thread."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


class AlarmInbox(SwitchableServer):
    """The generic VMS's alarm interface: keeps every alarm it is sent. With `delay_s` it takes that long to
    answer (a slow VMS), and `max_in_flight` is the most alarm posts it held at once."""

    def __init__(self, delay_s: float = 0.0) -> None:
        super().__init__()
        self.alarms: list[dict[str, Any]] = []
        self.delay_s = delay_s
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.server_attributes = {"inbox": self}
        self.url = f"http://127.0.0.1:{self.port}/alarms"

    def enter(self) -> None:
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def leave(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def handler(self) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                inbox: AlarmInbox = self.server.inbox  # type: ignore[attr-defined]
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                inbox.enter()
                try:
                    time.sleep(inbox.delay_s)
                    inbox.alarms.extend(body["alarms"])
                finally:
                    inbox.leave()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        return Handler


def write_declaration(path: Path, cameras: list[dict[str, Any]], alarm_url: str = "",
                      archive_url: str = "http://vms.test/archive/{camera_id}?at={at}") -> Path:
    path.write_text(json.dumps({"name": "test VMS", "cameras": cameras, "alarm_url": alarm_url,
                                "archive_url": archive_url}))
    return path
