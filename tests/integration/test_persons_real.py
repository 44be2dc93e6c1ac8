"""THE PROOF of persons on real faces (../shared/data/faces), through the real event pipeline core.

(a) Videos are made from the shared photos: on camera 1 an unenrolled person (Barack Obama) crosses the
    view twice and a second unenrolled person (Joe Biden) once; on camera 2 the first crosses once more —
    each crossing from another photo of him, separated by more than the episode idle timeout. The
    videos are decoded and processed the way a camera job does (MTCNN → quality → IoU tracker → the best
    shot of each track, "overall" mode → 5-point alignment → the dlib ResNet port) and every best shot is
    handed to `EventPipelineCore` (real gallery actors, real DB). Expected: exactly two anonymous
    persons, the first with three events on two cameras, in three episodes.
(b) Clustering quality: every single-face photo of knn_examples/train and /test is one event, in file
    order; purity ≥ 0.98 and at most 1.1 persons per real identity.
The CameraJob's Ray/Serve plumbing (extractor deployment, job manager) is tested in
tests/cluster/test_camera_job.py and tests/cluster/test_video_pipeline.py; it adds nothing to what persons decide.
"""

from __future__ import annotations

import asyncio
import os
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from actors.best_shot import OverallBest, ShotCandidate
from actors.event_pipeline import EventPipelineCore
from actors.galleries import Galleries
from actors.tracking import IouTracker
from benchmarks.calibrate_persons import embed_photos, knn_single_face_photos, quality_of_clustering
from facewatch.sightings import FaceSighting, event_id_for
from models.alignment import align_faces
from models.detector import FaceDetector
from models.embedders import embedder_spec, load_embedder
from models.quality import face_quality
from storage import orm
from storage.db import migrate
from storage.unit_of_work import UnitOfWork
from tests.helpers import local_ray

EMBEDDER = "dlib_resnet_v1"
FPS = 4
T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
IDLE_TIMEOUT_S = 5.0


@pytest.fixture(scope="module", autouse=True)
def ray_cluster():
    address = os.environ.get("FACEWATCH_TEST_RAY_ADDRESS")  # a running cluster, when starting one is slow
    with local_ray(4, f"test-persons-real-{os.getpid()}", address=address):
        yield


class Installation:
    def __init__(self, tmp: Path) -> None:
        self.url = f"sqlite:///{tmp / 'fw.db'}"
        migrate(self.url)
        spec = embedder_spec(EMBEDDER)
        self.spec = spec
        self.galleries = Galleries(db_url=self.url, snapshot_dir=str(tmp / "snap"), model=EMBEDDER, dim=spec.dim,
                                   shards=2, replicas=1)
        with UnitOfWork(self.url) as uow:
            uow.settings.update({"episode_idle_timeout_s": IDLE_TIMEOUT_S})
            self.group = uow.camera_groups.add(orm.CameraGroup(name="site")).id
            self.cameras = [uow.cameras.add(orm.Camera(name=f"cam{i}", camera_group_id=self.group)).id
                            for i in (1, 2)]
            uow.commit()
        self.pipeline = EventPipelineCore(self.url, self.galleries, spec.calibration)

    def close(self) -> None:
        for router in self.galleries._routers.values():
            router.kill()


@pytest.fixture
def install(tmp_path: Path):
    inst = Installation(tmp_path)
    yield inst
    inst.close()


# ---- (a) videos from photos -------------------------------------------------------------------------------
def face_patch(path: Path, detector: FaceDetector, side: int = 150) -> np.ndarray:
    """The photo's biggest face with a margin, as a side × side patch (a face of about 90 px)."""
    image = np.asarray(Image.open(path).convert("RGB"))
    x1, y1, x2, y2 = detector.detect(image).order_by_size().boxes[0]
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 0.85
    box = (int(max(0, cx - half)), int(max(0, cy - half)), int(min(image.shape[1], cx + half)),
           int(min(image.shape[0], cy + half)))
    return np.asarray(Image.fromarray(image).crop(box).resize((side, side), Image.Resampling.BILINEAR))


def crossing(patch: np.ndarray, frames: int = 8, step: int = 25) -> list[np.ndarray]:
    """The patch walking left to right across a 640x360 view."""
    out = []
    for i in range(frames):
        frame = np.full((360, 640, 3), 110, np.uint8)
        x = 40 + i * step
        frame[100:100 + patch.shape[0], x:x + patch.shape[1]] = patch
        out.append(frame)
    return out


def empty(seconds: float) -> list[np.ndarray]:
    return [np.full((360, 640, 3), 110, np.uint8) for _ in range(int(seconds * FPS))]


def write_video(path: Path, frames: list[np.ndarray]) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=Fraction(FPS, 1))
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for frame in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def process_video(install: Installation, path: Path, job_id: int, camera_id: int, start: datetime,
                  detector: FaceDetector, model: Any) -> list[str | None]:
    """A camera job's frame path, Ray-free: detect, score, track, best shot per track, embed, post."""
    tracker, policy = IouTracker(miss_interval_s=1.0), OverallBest()
    shots: list[ShotCandidate] = []
    with av.open(str(path)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            image, t = frame.to_ndarray(format="rgb24"), index / FPS
            found = detector.detect(image)
            quality = face_quality(image, found) if len(found) else np.zeros(0)
            update = tracker.update(t, found.boxes)
            for track in update.ended:
                shots += policy.end_track(track.track_id)
            for track_id, i in update.assignments:
                chip = align_faces(image, found.landmarks[i:i + 1], size=install.spec.chip_size,
                                   template=install.spec.template, padding=install.spec.padding)
                policy.offer(ShotCandidate(track_id, t, float(quality[i]), found.boxes[i],
                                           payload=(chip, float(found.scores[i]))))
    for track in tracker.finish():
        shots += policy.end_track(track.track_id)
    sightings = []
    for shot in shots:
        chip, score = shot.payload
        vector = model.embed(chip)[0].astype(np.float64)
        sightings.append(FaceSighting(
            event_id=event_id_for(job_id, 0, shot.track_id, 0), job_id=job_id, camera_group_id=install.group,
            camera_id=camera_id, timestamp=start + timedelta(seconds=shot.time_s), video_offset_s=shot.time_s,
            bbox=[float(v) for v in shot.bbox], detection_score=score, quality=shot.quality,
            embedding=(vector / np.linalg.norm(vector)).astype(np.float32), model=EMBEDDER, track_id=shot.track_id))
    return asyncio.run(install.pipeline.post(sightings))


@pytest.mark.slow
def test_one_stranger_three_times_on_two_cameras_and_another_once(install: Installation, faces_dir: Path,
                                                                   tmp_path: Path) -> None:
    detector, model = FaceDetector(min_face_size=40), load_embedder(EMBEDDER)
    obama = [face_patch(faces_dir / name, detector) for name in ("obama.jpg", "obama2.jpg")]
    obama.append(face_patch(faces_dir / "knn_examples" / "test" / "obama1.jpg", detector))
    biden = face_patch(faces_dir / "biden.jpg", detector)
    gap = 2 * IDLE_TIMEOUT_S  # more than the episode idle timeout between crossings
    cam1 = write_video(tmp_path / "cam1.mp4", crossing(obama[0]) + empty(gap) + crossing(obama[1]) + empty(gap)
                       + crossing(biden))
    cam2 = write_video(tmp_path / "cam2.mp4", crossing(obama[2]))
    first = process_video(install, cam1, 1, install.cameras[0], T0, detector, model)
    second = process_video(install, cam2, 2, install.cameras[1], T0 + timedelta(minutes=5), detector, model)
    assert len(first) == 3 and len(second) == 1 and all(first + second), (first, second)

    with UnitOfWork(install.url) as uow:
        people = list(uow.session.scalars(select(orm.Person).order_by(orm.Person.id)))
        events = {e.id: e for e in uow.session.scalars(select(orm.Event))}
    assert [(x.dossier_id, x.event_count) for x in people] == [(None, 3), (None, 1)]
    stranger, other = people
    obama_events = [events[i] for i in (first[0], first[1], second[0])]
    assert {e.person_id for e in obama_events} == {stranger.id}
    assert events[first[2]].person_id == other.id
    assert stranger.camera_ids == sorted(install.cameras)
    assert len({e.episode_id for e in obama_events}) == 3  # separate episodes, one lasting person
    assert [e.person_status for e in obama_events] == ["new", "known", "known"]


# ---- (b) clustering quality on the shared photos ---------------------------------------------------------------
def test_clustering_quality_on_the_shared_photos(install: Installation, faces_dir: Path) -> None:
    photos = knn_single_face_photos(faces_dir)
    vectors, qualities, who = embed_photos(photos, EMBEDDER)
    assert len(who) == len(photos) == 12
    sightings = [FaceSighting(
        event_id=event_id_for(9, 0, i, 0), job_id=9, camera_group_id=install.group, camera_id=install.cameras[i % 2],
        timestamp=T0 + timedelta(minutes=10 * i), bbox=[0, 0, 100, 100], detection_score=0.99,
        quality=float(qualities[i]), embedding=vectors[i], model=EMBEDDER, track_id=i) for i in range(len(who))]
    ids = [asyncio.run(install.pipeline.post([s]))[0] for s in sightings]  # one at a time, as they come
    with UnitOfWork(install.url) as uow:
        person_of = {e.id: e.person_id for e in uow.session.scalars(select(orm.Event))}
    assert all(person_of[i] is not None for i in ids)
    result = quality_of_clustering([person_of[i] for i in ids], who)
    assert result["purity"] >= 0.98, result
    assert result["persons_per_identity"] <= 1.1, result
