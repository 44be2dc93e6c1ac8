"""migrate-model: every stored face re-embedded with the target model from its saved crop (or, for
another geometry, detected again in its saved source), in batches, resumable, the old model serving
until the switch; a target that cannot load (FaceNet without weights) changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import func, select

from cluster.migrate_model import MigrationError, migrate_model
from facewatch.settings import Config
from models.embedders import embedder_spec, l2_normalize
from models.face_analysis import PhotoAnalyzer
from models.images import decode_image, encode_jpeg, encode_png
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, store_dossier_face_vector
from storage.media import LocalMediaStore
from storage.persons import PERSONS_GALLERY
from storage.unit_of_work import UnitOfWork
from tests.conftest import make_config

OLD = "old_model"
DLIB = "dlib_resnet_v1"


@pytest.fixture(scope="module")
def dlib_analyzer() -> PhotoAnalyzer:
    spec = embedder_spec(DLIB)
    return PhotoAnalyzer(spec.chip_size, spec.template, spec.padding)


@pytest.fixture(scope="module")
def photos(faces_dir: Path, dlib_analyzer: PhotoAnalyzer) -> dict[str, tuple[bytes, np.ndarray, list[float]]]:
    """Per photo: its bytes, the dlib chip of its face, the face's box (detected once per module)."""
    out = {}
    for file in ("obama.jpg", "obama2.jpg", "biden.jpg"):
        data = (faces_dir / file).read_bytes()
        image = decode_image(data)
        found = dlib_analyzer.analyze(image)
        out[file] = (data, dlib_analyzer.chips(image, found[:1])[0], found[0].bbox)
    return out


@pytest.fixture(scope="module")
def dlib_embedder():
    from models.embedders import load_embedder

    return load_embedder(DLIB)


def _random_old_vector(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(128).astype(np.float32)


class World:
    """Dossier faces and events as the old model left them: crops in dlib geometry, old vectors."""

    def __init__(self, config: Config, photos: dict[str, tuple[bytes, np.ndarray, list[float]]]) -> None:
        self.config, self.url = config, config.database_url
        media = LocalMediaStore(config.media_root)
        self.chips: dict[str, np.ndarray] = {}
        self.faces: dict[str, int] = {}
        self.events: list[str] = []
        with UnitOfWork(self.url) as uow:
            uow.settings.update({"embedder": OLD})
            group = uow.camera_groups.add(orm.CameraGroup(name="lobby"))
            wl = uow.watch_lists.add(orm.WatchList(name="vip"))
            for n, (name, file, keep_crop) in enumerate([("obama", "obama.jpg", True), ("obama2", "obama2.jpg", False),
                                                         ("biden", "biden.jpg", True)]):
                data, chip, bbox = photos[file]
                self.chips[name] = chip
                dossier = uow.dossiers.add(orm.Dossier(name=name, watch_lists=[wl]))
                face = uow.dossier_faces.add(orm.DossierFace(
                    dossier_id=dossier.id, source_key=media.put(data, "jpg"),
                    crop_key=media.put(encode_png(chip), "png") if keep_crop else "", bbox=bbox))
                store_dossier_face_vector(uow, face, dossier, OLD, _random_old_vector(n))
                self.faces[name] = face.id
                # an event of the same person: its crop (JPEG chip) and full frame
                event_id = f"ev-{name}"
                uow.session.add(orm.Event(id=event_id, camera_group_id=group.id, bbox=bbox,
                                          crop_key=media.put(encode_jpeg(chip, 95), "jpg"),
                                          frame_key=media.put(data, "jpg")))
                uow.vectors.upsert(EVENTS_GALLERY, event_id, OLD, _random_old_vector(100 + n).tobytes(), 128,
                                   {"camera_id": None, "camera_group_id": group.id, "timestamp": 0.0})
                self.events.append(event_id)
            uow.session.add(orm.Event(id="ev-lost-media", camera_group_id=group.id, crop_key="", frame_key=""))
            uow.commit()

    def vector(self, gallery: str, item: Any, model: str) -> np.ndarray | None:
        with UnitOfWork(self.url) as uow:
            row = uow.vectors.find(gallery, str(item), model)
            return None if row is None else np.frombuffer(row.vector, np.float32)

    def count(self, model: str) -> int:
        with UnitOfWork(self.url) as uow:
            return int(uow.session.scalar(select(func.count()).select_from(orm.FaceVector)
                                          .where(orm.FaceVector.model == model)))

    def embedder_setting(self) -> str:
        with UnitOfWork(self.url) as uow:
            return str(uow.settings.get("embedder"))


@pytest.fixture
def world(sqlite_url: str, tmp_path: Path, photos) -> World:
    return World(make_config(tmp_path, sqlite_url), photos)


def test_migrates_to_dlib_in_resumable_batches_then_switches(world: World, dlib_embedder,
                                                             dlib_analyzer: PhotoAnalyzer) -> None:
    old_vectors = world.count(OLD)
    # an interrupted run: one batch of two faces, no switch; the old model still serves
    first = migrate_model(world.config, DLIB, batch=2, max_batches=1, embedder=dlib_embedder,
                          analyzer_factory=lambda: dlib_analyzer)
    assert first["dossier_faces"] == 2 and not first["switched"]
    assert (first["from_crop"], first["redetected"]) == (1, 1)  # obama2 has no saved crop: its photo is used
    assert world.count(DLIB) == 2 and world.embedder_setting() == OLD
    # the next run resumes: it skips what is done; the event without media fails, so no switch yet
    second = migrate_model(world.config, DLIB, batch=2, embedder=dlib_embedder, analyzer_factory=lambda: dlib_analyzer)
    assert second["skipped_done"] == 2
    assert (second["dossier_faces"], second["events"], second["from_crop"]) == (1, 3, 4)
    assert second["failed"] == [{"gallery": EVENTS_GALLERY, "item_id": "ev-lost-media",
                                 "reason": "no saved crop or source image"}]
    assert not second["switched"] and second["remaining"] == 1 and world.embedder_setting() == OLD
    # forced: the setting names the new model; old vectors stay (switching back stays possible)
    third = migrate_model(world.config, DLIB, batch=2, force_switch=True, embedder=dlib_embedder,
                          analyzer_factory=lambda: dlib_analyzer)
    assert third["switched"] and third["dossier_faces"] == 0 and third["skipped_done"] == 6
    assert world.embedder_setting() == DLIB
    assert world.count(OLD) == old_vectors and world.count(DLIB) == 6

    # the vectors are the real model's: from the crop exactly, from the re-detected photo, per person
    crop_vector = world.vector(DOSSIERS_GALLERY, world.faces["obama"], DLIB)
    expected = l2_normalize(dlib_embedder.embed(world.chips["obama"][None]))[0]
    assert float(crop_vector @ expected) > 0.9999
    assert third["from_crop"] == 0
    obama2 = world.vector(DOSSIERS_GALLERY, world.faces["obama2"], DLIB)
    biden = world.vector(DOSSIERS_GALLERY, world.faces["biden"], DLIB)
    calibration = embedder_spec(DLIB).calibration
    assert calibration.confidence(float(crop_vector @ obama2)) >= 0.75  # the same person
    assert calibration.confidence(float(crop_vector @ biden)) < 0.75
    event_vector = world.vector(EVENTS_GALLERY, "ev-obama", DLIB)
    assert float(event_vector @ crop_vector) > 0.99  # its JPEG crop of the same chip
    with UnitOfWork(world.url) as uow:  # metadata as the old rows had it
        row = uow.vectors.find(DOSSIERS_GALLERY, str(world.faces["obama"]), DLIB)
        assert row.meta["active"] is True and row.meta["watch_list_ids"]


class FakeFaceNet:
    """Stands in for FaceNet (its weights are the user's): records the chips it is given."""

    name, dim = "facenet_vggface2", 512

    def __init__(self) -> None:
        self.shapes: list[tuple[int, ...]] = []

    def embed(self, chips: np.ndarray) -> np.ndarray:
        self.shapes.append(chips.shape)
        return np.resize(chips.reshape(len(chips), -1)[:, :512].astype(np.float32), (len(chips), 512)) + 1.0


def test_another_geometry_detects_again_in_the_saved_source(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeFaceNet()
    report = migrate_model(world.config, "facenet_vggface2", batch=4, embedder=fake, force_switch=True)
    assert (report["dossier_faces"], report["events"], report["from_crop"]) == (3, 3, 0)
    assert report["redetected"] == 6  # 150-px dlib crops do not fit FaceNet's 160-px geometry
    assert all(shape[1:] == (160, 160, 3) for shape in fake.shapes)
    assert world.vector(DOSSIERS_GALLERY, world.faces["biden"], "facenet_vggface2").shape == (512,)


def test_facenet_without_weights_is_a_clear_error_and_changes_nothing(world: World, monkeypatch: pytest.MonkeyPatch,
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from cluster.cli import main

    before = (world.count(OLD), world.count("facenet_vggface2"), world.embedder_setting())
    monkeypatch.delenv("FACEWATCH_FACENET_WEIGHTS", raising=False)
    with pytest.raises(MigrationError, match="FACEWATCH_FACENET_WEIGHTS"):
        migrate_model(world.config, "facenet_vggface2")
    monkeypatch.setenv("FACEWATCH_FACENET_WEIGHTS", str(tmp_path / "missing.pt"))
    with pytest.raises(MigrationError, match="missing.pt"):
        migrate_model(world.config, "facenet_vggface2")
    with pytest.raises(MigrationError, match="unknown embedder"):
        migrate_model(world.config, "no_such_model")
    monkeypatch.setenv("FACEWATCH_HOME", str(world.config.home))
    monkeypatch.setenv("FACEWATCH_DATABASE_URL", world.url)
    monkeypatch.setenv("FACEWATCH_MEDIA_ROOT", str(world.config.media_root))
    assert main(["migrate-model", "--to", "facenet_vggface2"]) == 2
    assert "FaceNet weights file" in capsys.readouterr().err
    assert (world.count(OLD), world.count("facenet_vggface2"), world.embedder_setting()) == before


def _persons_shard(url: str, model: str):
    """The persons gallery of `model` as a shard builds it from the database (the real index, no Ray)."""
    from actors.gallery_config import ShardConfig
    from actors.gallery_shard import GalleryShard
    from facewatch.gallery_schema import PERSON_COLUMNS

    spec = embedder_spec(model)
    return GalleryShard(ShardConfig(PERSONS_GALLERY, spec.name, spec.dim, db_url=url, columns=PERSON_COLUMNS))


def test_persons_faces_follow_the_model_so_strangers_are_still_recognised(world: World, dlib_embedder,
                                                                          dlib_analyzer: PhotoAnalyzer) -> None:
    from storage import persons as p

    with UnitOfWork(world.url) as uow:  # three strangers' persons, each represented by one event's face
        persons = {}
        for n, event_id in enumerate(["ev-obama", "ev-biden", "ev-lost-media"]):
            person = p.new_person(uow, 0)
            p.add_face(uow, person, event_id, 0.9, OLD, _random_old_vector(200 + n))
            persons[event_id] = person.id
        uow.commit()
        faces = {f.event_id: f.id for f in p.faces_of(uow, persons.values())}
    assert _persons_shard(world.url, DLIB).stats()["count"] == 0  # before: the new model's gallery is empty

    first = migrate_model(world.config, DLIB, batch=2, force_switch=True, embedder=dlib_embedder,
                          analyzer_factory=lambda: dlib_analyzer)
    assert first["person_faces"] == 2 and first["switched"]
    assert {"gallery": PERSONS_GALLERY, "item_id": str(faces["ev-lost-media"]),
            "reason": f"its event ev-lost-media has no {DLIB} vector (see the event's failure)"} in first["failed"]
    assert first["remaining"] == 2  # the event without media and its person's face
    for event_id in ("ev-obama", "ev-biden"):  # the event's own new vector, with the person's metadata
        assert np.array_equal(world.vector(PERSONS_GALLERY, faces[event_id], DLIB),
                              world.vector(EVENTS_GALLERY, event_id, DLIB))
        with UnitOfWork(world.url) as uow:
            row = uow.vectors.find(PERSONS_GALLERY, str(faces[event_id]), DLIB)
            assert row.meta == {"person_id": persons[event_id], "scope": 0}
    again = migrate_model(world.config, DLIB, batch=2, embedder=dlib_embedder, analyzer_factory=lambda: dlib_analyzer)
    assert again["person_faces"] == 0 and again["skipped_done"] == 8  # resumable: 3 + 3 + 2 done before

    # what online assignment does after the switch: the persons shard of the new model, built from the
    # DB, finds a stranger's person from a NEW photo of them (obama2), above the person threshold
    shard = _persons_shard(world.url, DLIB)
    calibration = embedder_spec(DLIB).calibration
    with UnitOfWork(world.url) as uow:
        min_score = float(calibration.cosine(float(uow.settings.get("person_threshold"))))
    owners = {str(face): event_id for event_id, face in faces.items()}
    for chip, expected in (("obama2", "ev-obama"), ("biden", "ev-biden")):
        query = l2_normalize(dlib_embedder.embed(world.chips[chip][None]))
        hits = shard.search(query, 3, min_score=min_score, filters={"scope": 0})[0]
        assert [owners[item] for item, _ in hits] == [expected], (chip, hits)
