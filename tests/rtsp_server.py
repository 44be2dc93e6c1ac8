"""A live RTSP camera for tests: GStreamer's RTSP server serving a video file, looped.

Runs under the system Python (where Debian's `python3-gi` and `gir1.2-gst-rtsp-server-1.0` live), not the
project's virtualenv: `RtspCamera` starts it as a subprocess and stops it. As a script:
`/usr/bin/python3 tests/rtsp_server.py CLIP PORT [copy]` serves `rtsp://127.0.0.1:PORT/live` until killed.
The file is re-encoded on the fly (x264, zero latency) so the loop is seamless for the reader, and one
encoder serves every reader. With `copy=True` (the density benchmark: many 720p cameras on two cores,
where an encoder per camera would take the CPUs the cameras are measured on) the file's H.264 is sent
as it is, paced by the server's clock, and every reader gets its own stream from the start of the file;
it does not loop, so make the file as long as the run (`ffmpeg -stream_loop`).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

SYSTEM_PYTHON = "/usr/bin/python3"


def gstreamer_missing() -> str | None:
    """Why an RTSP camera cannot run here, or None when it can."""
    if not Path(SYSTEM_PYTHON).exists():
        return "no system python3"
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0'); "
                            "from gi.repository import GstRtspServer"], capture_output=True)
    if probe.returncode != 0:
        return "GStreamer's RTSP server is not installed (apt-get install gir1.2-gst-rtsp-server-1.0 " \
               "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav " \
               "python3-gi)"
    if shutil.which("gst-inspect-1.0") and subprocess.run(["gst-inspect-1.0", "x264enc"],
                                                          capture_output=True).returncode != 0:
        return "GStreamer's x264enc is missing (gstreamer1.0-plugins-ugly)"
    return None


def looped_copy(clip: Path, folder: Path, loops: int) -> Path:
    """`clip` repeated `loops` more times without re-encoding, for a copy-mode server: video only, since
    with the clip's audio (0.8 s longer than its video) every join left a 0.8 s gap in the video's
    timestamps, which the server sends as a pause (27.5 instead of 29.97 fps on average)."""
    looped = folder / "looped.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-stream_loop", str(loops), "-i", str(clip), "-an",
                    "-c", "copy", str(looped)], check=True)
    return looped


class RtspCamera:
    """`with RtspCamera(clip) as cam: cam.url` — a live RTSP stream of `clip` on a free loopback port."""

    def __init__(self, clip: Path, port: int | None = None, copy: bool = False) -> None:
        self.clip = clip
        self.copy = copy
        if port is None:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
        self.port = port
        self.url = f"rtsp://127.0.0.1:{port}/live"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RtspCamera:
        mode = ["copy"] if self.copy else []
        self.process = subprocess.Popen([SYSTEM_PYTHON, __file__, str(self.clip), str(self.port), *mode],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the RTSP server ended: {self.process.stderr.read().decode()[-500:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("the RTSP server did not start")

    def __exit__(self, *_: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _serve(clip: str, port: int, copy: bool = False) -> None:  # pragma: no cover - runs under the system Python
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    if copy:
        factory.set_launch(f"( filesrc location={clip} ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 "
                           "config-interval=1 )")
    else:
        factory.set_launch(
            f"( multifilesrc location={clip} loop=true ! qtdemux ! avdec_h264 ! videoconvert ! "
            "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=30 ! rtph264pay name=pay0 pt=96 "
            "config-interval=1 )")
    factory.set_shared(not copy)
    server.get_mount_points().add_factory("/live", factory)
    server.attach(None)
    GLib.MainLoop().run()


if __name__ == "__main__":
    _serve(sys.argv[1], int(sys.argv[2]), copy=sys.argv[3:] == ["copy"])
