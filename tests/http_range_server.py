"""A tiny HTTP server for tests: in-memory files with byte ranges (FFmpeg seeks in MP4s).

A path listed in `server.cut_at` breaks its connection at that byte offset, as a dropped stream does.
"""

from __future__ import annotations

import abc
import http.server
import re
import socket
import threading


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        data = self.server.files.get(self.path)  # type: ignore[attr-defined]
        if data is None:
            self.send_error(404)
            return
        start, end = 0, len(data) - 1
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if ranged:
            start, end = int(ranged[1]), int(ranged[2] or end)
        self.send_response(206 if ranged else 200)
        if ranged:
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Content-Type", "video/mp4")
        self.end_headers()
        cut_at = getattr(self.server, "cut_at", {})
        stop = min(end + 1, cut_at.get(self.path, len(data)))
        try:
            self.wfile.write(data[start:stop])
        except OSError:  # the client hung up
            return
        self.close_connection = stop <= end

    def log_message(self, *args: object) -> None:  # keep test output quiet
        return


class SwitchableServer(abc.ABC):
    """A local HTTP server that can be switched off (its port then refuses connections) and on again on the
    same port; subclasses say which handler serves it, and `server_attributes` are set on every new server."""

    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.server: http.server.ThreadingHTTPServer | None = None
        self.server_attributes: dict[str, object] = {}

    @abc.abstractmethod
    def handler(self) -> type[http.server.BaseHTTPRequestHandler]:
        """The request handler class this server runs."""

    def start(self) -> None:
        http.server.ThreadingHTTPServer.allow_reuse_address = True
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler())
        self.server.daemon_threads = True
        for name, value in self.server_attributes.items():
            setattr(self.server, name, value)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
