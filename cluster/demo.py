"""`facewatch demo` (`make demo`): the whole pipeline end to end, on real faces, with nothing prepared.

1. Real photos come from a package registry: the source distribution of `face_recognition==1.3.0`
   ships portraits under `tests/test_images` (obama.jpg, obama2.jpg, obama3.jpg, biden.jpg, ...). It is
   fetched with this environment's pip (`pip download --no-deps --no-binary :all:`), and the photos
   are read straight out of the tarball. When that fails (no network), the development photos in
   ../shared/data/faces are used instead, and the demo says so.
2. A short video is built from them with PyAV: each photo is shown for 1.5 s with a slow zoom, so
   the tracker follows each face across frames, with 1.2 s of black between photos (longer than the
   tracker's miss interval, so each photo's faces get tracks of their own).
3. A fresh installation (under ./var/demo) is started: Ray, the API, the extractor pool, galleries,
   the event pipeline and the JobManager.
4. Barack Obama is enrolled through the API from one photo; the video (other photos of him, and one
   of Joe Biden) is uploaded to `POST /v1/videos` and processed by a camera job; the live feed
   (`GET /v1/events/stream`) is read meanwhile.
5. The events (matched and unmatched, with confidences) and episodes are printed, with where to
   look next. `--keep-running` leaves the service up to explore and prints the console's address and
   how to sign in (user `admin` with a password generated for this run); Ctrl+C stops it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import cv2
import httpx
import numpy as np

from cluster.http_client import wait_healthy
from cluster.service import start_service, stop_service
from facewatch.settings import load_config
from models.images import decode_image

SDIST = "face_recognition==1.3.0"
ENROL_PHOTO = "obama.jpg"
ENROL_NAME = "Barack Obama"
VIDEO_PHOTOS = ("obama2.jpg", "biden.jpg", "obama3.jpg")  # who is who: the file names say it
WIDTH, HEIGHT, FPS = 640, 360, 15
SECONDS_PER_PHOTO = 1.5
# Black between photos, longer than the tracker's miss interval (1 s): each photo's faces get their own
# tracks (without it, faces at the same place in consecutive photos would continue one track).
GAP_SECONDS = 1.2
STREAM_SETTINGS = {"overall_only": True, "detect_every_n": 2, "min_face_size": 30}


def obtain_photos() -> tuple[dict[str, bytes], str]:
    """Photo file name → bytes, and where they came from."""
    try:
        return _photos_from_sdist(), f"the {SDIST} source distribution from PyPI (tests/test_images)"
    except Exception as exc:  # noqa: BLE001 - any failure falls back to the development photos
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:200]
    shared = Path(os.environ.get("FACEWATCH_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
    faces = shared / "faces"
    if not faces.is_dir():
        raise SystemExit(f"could not download {SDIST} ({reason}) and {faces} does not exist: no photos to use")
    print(f"NOTE: downloading {SDIST} failed ({reason}); using the development photos in {faces} instead.")
    photos = {p.name: p.read_bytes() for p in sorted(faces.iterdir()) if p.suffix.lower() in (".jpg", ".png")}
    return photos, str(faces)


def _photos_from_sdist() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory(prefix="facewatch-demo-") as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q",
                        "--disable-pip-version-check", SDIST, "-d", tmp],
                       check=True, capture_output=True, text=True, timeout=300)
        sdist = next(Path(tmp).glob("face_recognition-*.tar.gz"))
        photos = {}
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                path = Path(member.name)
                if member.isfile() and "test_images" in path.parts and path.suffix.lower() in (".jpg", ".png"):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        photos[path.name] = handle.read()
    missing = [name for name in (ENROL_PHOTO, *VIDEO_PHOTOS) if name not in photos]
    if missing:
        raise RuntimeError(f"the source distribution lacks {', '.join(missing)} (it has {sorted(photos)})")
    return photos


def build_video(photos: list[bytes], target: Path) -> float:
    """An H.264 MP4 (MPEG-4 part 2 without an H.264 encoder): each photo 1.5 s with a slow zoom, black
    in between; returns its length in seconds."""
    frames_per_photo, gap = round(SECONDS_PER_PHOTO * FPS), round(GAP_SECONDS * FPS)
    codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
    black = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    count = 0
    with av.open(str(target), "w") as out:
        stream = out.add_stream(codec, rate=Fraction(FPS, 1))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for index, data in enumerate(photos):
            image = decode_image(data, max_bytes=50 * 1024 * 1024)
            frames = [_ken_burns(image, i / max(1, frames_per_photo - 1)) for i in range(frames_per_photo)]
            if index < len(photos) - 1:
                frames += [black] * gap
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
                count += 1
        out.mux(stream.encode(None))
    return count / FPS


def photo_at(shown: list[str], offset_s: float) -> str:
    """Which photo the video shows at `offset_s`."""
    segment = (round(SECONDS_PER_PHOTO * FPS) + round(GAP_SECONDS * FPS)) / FPS
    return shown[min(len(shown) - 1, int(offset_s // segment))]


def _ken_burns(image: np.ndarray, t: float) -> np.ndarray:
    """The upper part of a portrait (where faces are), filling the frame's height, zooming in slowly."""
    height, width = image.shape[:2]
    window = 0.5 * height * (1.0 - 0.08 * t)  # photo rows shown
    top = 0.04 * height + 0.03 * height * t
    scale = HEIGHT / window
    matrix = np.array([[scale, 0.0, WIDTH / 2 - scale * width / 2], [0.0, scale, -scale * top]], np.float32)
    return cv2.warpAffine(image, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_AREA, borderValue=(0, 0, 0))


class LiveFeed:
    """Reads the live feed in the background, as a dashboard would."""

    def __init__(self, url: str, token: str, params: dict[str, Any]) -> None:
        self.events: list[dict[str, Any]] = []
        self._thread = threading.Thread(target=self._read, args=(url, token, params), daemon=True)
        self._thread.start()

    def _read(self, url: str, token: str, params: dict[str, Any]) -> None:
        try:
            with httpx.stream("GET", f"{url}/v1/events/stream", params=params, timeout=None,
                              headers={"Authorization": f"Token {token}"}) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass


def run_demo(keep_running: bool = False) -> int:
    # The demo is its own, fresh installation each run, so it never touches a real one's data.
    home = Path(os.environ.get("FACEWATCH_DEMO_HOME", "./var/demo")).resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = load_config({**os.environ, "FACEWATCH_HOME": str(home), "FACEWATCH_DATABASE_URL": "",
                          "FACEWATCH_MEDIA_ROOT": "", "FACEWATCH_RAY_ADDRESS": "",
                          "FACEWATCH_ADMIN_TOKEN": f"fw_demo_{secrets.token_urlsafe(16)}",
                          "FACEWATCH_ADMIN_PASSWORD": os.environ.get("FACEWATCH_ADMIN_PASSWORD")
                          or f"demo-{secrets.token_urlsafe(9)}"})
    t0 = time.monotonic()
    print(f"1. Fetching real photos ({SDIST} from the package registry) ...", flush=True)
    photos, origin = obtain_photos()
    print(f"   {len(photos)} photos from {origin}: {', '.join(sorted(photos))}")
    enrol = photos.get(ENROL_PHOTO) or next(iter(photos.values()))
    shown = [name for name in VIDEO_PHOTOS if name in photos] or [n for n in sorted(photos) if n != ENROL_PHOTO][:3]
    video_path = home / "demo.mp4"
    seconds = build_video([photos[n] for n in shown], video_path)
    print(f"2. Built a {seconds:.1f} s video ({WIDTH}x{HEIGHT}, {FPS} fps) from {', '.join(shown)}: {video_path}")
    print(f"3. Starting facewatch (home {home}) ...", flush=True)
    started = start_service(config)
    token = str(config.admin_token)
    try:
        with httpx.Client(base_url=started.url, headers={"Authorization": f"Token {token}"}, timeout=300) as client:
            _tour(client, started.url, token, enrol, video_path, shown)
        print(f"\nDone in {time.monotonic() - t0:.0f} s.")
        if keep_running:
            print(keep_running_message(started.url, str(config.admin_password), token), flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nStopping facewatch ...", flush=True)
    finally:
        stop_service()
    return 0


def keep_running_message(url: str, password: str, token: str) -> str:
    """What `facewatch demo --keep-running` prints once the tour is done: where the console is, how to sign in."""
    return f"""
facewatch keeps running. Open the console in a browser:
  console    {url}/
  sign in    user name admin, password {password}
  API token  {token}   (API docs at {url}/docs)
Press Ctrl+C to stop."""


def _tour(client: httpx.Client, url: str, token: str, enrol: bytes, video_path: Path, shown: list[str]) -> None:
    health = wait_healthy(client)
    print(f"   GET /health -> {health['status']}")
    group = _created(client.post("/v1/camera-groups", json={"name": "demo"}))
    watch_list = _created(client.post("/v1/watch-lists", json={"name": "VIP", "color": "#2266ff"}))
    dossier = _created(client.post("/v1/dossiers", json={"name": ENROL_NAME, "watch_list_ids": [watch_list["id"]]}))
    face = _created(client.post(f"/v1/dossiers/{dossier['id']}/faces",
                                files={"photo": (ENROL_PHOTO, enrol, "image/jpeg")}))
    print(f"4. Enrolled {ENROL_NAME!r} (dossier {dossier['id']}) on watch list 'VIP' from {ENROL_PHOTO} "
          f"(face quality {face['quality']:.2f})")
    feed = LiveFeed(url, token, {"camera_group_id": group["id"], "timeout_s": 600})
    with video_path.open("rb") as handle:
        video = _created(client.post("/v1/videos", files={"file": (video_path.name, handle, "video/mp4")},
                                     data={"camera_group_id": str(group["id"]),
                                           "stream_settings": json.dumps(STREAM_SETTINGS)}))
    print(f"5. Uploaded the video: POST /v1/videos -> video {video['id']}, job {video['job']['id']}")
    started = time.monotonic()
    last = -1
    while True:
        video = client.get(f"/v1/videos/{video['id']}").json()
        done, total = video["progress"]["frames_done"], video["progress"]["frames_total"]
        if done != last:
            print(f"   {video['status']:>8}: {done}/{total} frames", flush=True)
            last = done
        if video["status"] in ("done", "failed", "cancelled"):
            break
        if time.monotonic() - started > 900:
            raise RuntimeError("the video was not processed within 15 minutes")
        time.sleep(1.0)
    if video["status"] != "done":
        raise RuntimeError(f"processing failed: {video['error']}")
    print(f"   processed in {time.monotonic() - started:.1f} s: {video['events_count']} events "
          f"({video['matched_count']} matched, {video['unmatched_count']} unmatched)")
    _print_events(client, video, group["id"], shown)
    time.sleep(1.5)  # the feed polls every 0.5 s
    print(f"\nThe live feed (GET /v1/events/stream) delivered {len(feed.events)} event(s) as they were created.")
    _where_next(url, token, video, group["id"])


def _print_events(client: httpx.Client, video: dict[str, Any], group_id: int, shown: list[str]) -> None:
    events = client.get("/v1/events", params={"video_id": video["id"], "limit": 1000}).json()["results"]
    events.sort(key=lambda e: (e["video_offset_s"] or 0.0, e["id"]))
    names: dict[int, str] = {}
    print("\nEvents (one per face track, best shot):")
    for event in events:
        offset = event["video_offset_s"] or 0.0
        photo = photo_at(shown, offset)
        if event["matched"]:
            dossier_id = event["dossier_id"]
            if dossier_id not in names:
                names[dossier_id] = client.get(f"/v1/dossiers/{dossier_id}").json()["name"]
            who = f"MATCH {names[dossier_id]} (confidence {event['confidence']:.3f})"
        else:
            who = "unmatched"
        gender = event["gender"]["value"] if event["gender"] else "?"
        age = f"{event['age']:.0f}" if event["age"] is not None else "?"
        print(f"  {offset:5.2f} s  [{photo:<10}] {who:<45} quality {event['quality']:.2f}  "
              f"age ~{age}, {gender}  episode {event['episode_id']}")
    episodes = client.get("/v1/episodes", params={"camera_group_id": group_id, "limit": 100}).json()["results"]
    print("\nEpisodes (events of one person close in time):")
    for episode in sorted(episodes, key=lambda e: e["id"]):
        who = names.get(episode["dossier_id"], f"dossier {episode['dossier_id']}") if episode["matched"] else (
            "unmatched person")
        print(f"  episode {episode['id']}: {who}, {episode['event_count']} event(s), best {episode['best_event_id']}, "
              f"{'open' if episode['open'] else 'closed'}")


def _where_next(url: str, token: str, video: dict[str, Any], group_id: int) -> None:
    auth = f'-H "Authorization: Token {token}"'
    print(f"""
Where to look next (run `facewatch demo --keep-running` to keep this service up):
  API docs (interactive)   {url}/docs
  this video               curl {auth} {url}/v1/videos/{video['id']}
  its events               curl {auth} "{url}/v1/events?video_id={video['id']}"
  episodes                 curl {auth} "{url}/v1/episodes?camera_group_id={group_id}"
  live feed (SSE)          curl -N {auth} {url}/v1/events/stream
  jobs (node, attempts)    curl {auth} {url}/v1/jobs
  offline batch            facewatch process VIDEO... --camera-group NAME --json
  README.md                configuration, cameras, watch lists, webhooks, the cluster""")


def _created(response: httpx.Response) -> dict[str, Any]:
    if response.status_code != 201:
        raise RuntimeError(f"{response.request.method} {response.request.url.path} answered "
                           f"{response.status_code}: {response.text[:300]}")
    return response.json()
