"""The `reextract` task's success path: migrate-model run by the real task supervisor on Ray.

The world is test_migrate_model's (dossier faces and events with an old model's vectors, dlib crops);
the task re-embeds every face with dlib in a Ray part, switches the `embedder` setting, and a search
by photo in the new model's dossiers gallery (built from the database) finds the right dossier.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import delete

from actors.gallery_config import ShardConfig
from actors.gallery_shard import GalleryShard
from actors.task_supervisor import SupervisorTuning, start_task_supervisor
from facewatch.gallery_schema import DOSSIER_COLUMNS
from models.embedders import embedder_spec, l2_normalize, load_embedder
from models.images import decode_image
from storage import orm
from storage import tasks as store
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY
from storage.unit_of_work import UnitOfWork
from tests.conftest import make_config
from tests.helpers import local_ray, wait_for
from tests.integration.test_migrate_model import DLIB, OLD, World, dlib_analyzer, photos  # noqa: F401 - fixtures


def test_a_reextract_task_migrates_every_face_switches_and_search_finds_the_dossier(
        sqlite_url: str, tmp_path: Path, photos, dlib_analyzer, faces_dir: Path) -> None:  # noqa: F811
    world = World(make_config(tmp_path, sqlite_url), photos)
    with UnitOfWork(world.url) as uow:  # every face has its media here, so the migration is complete
        uow.session.execute(delete(orm.Event).where(orm.Event.id == "ev-lost-media"))
        task_id = store.create_task(uow.session, "reextract", {"model": DLIB, "batch": 2}, "", "admin").id
        uow.commit()
    old_vectors = world.count(OLD)

    with local_ray(2, "test-reextract"):
        start_task_supervisor(world.config, OLD, SupervisorTuning(poll_s=0.3, part_cpus=0.5))

        def final() -> dict | None:
            with UnitOfWork(world.url) as uow:
                task = store.task_dict(uow.session.get(orm.Task, task_id))
            return task if task["status"] in ("done", "failed", "cancelled") else None

        task = wait_for(final, timeout_s=300.0, every_s=0.3, what="the reextract task to end")

    assert task["status"] == "done", task
    assert task["parts_total"] == task["parts_done"] == 1 and task["parts_failed"] == 0
    summary = task["summary"]
    assert summary["target"] == DLIB and summary["switched"] is True and summary["failed"] == []
    assert (summary["dossier_faces"], summary["events"], summary["remaining"]) == (3, 3, 0)
    # every face has the new model's vector; the old ones stay; the setting names the new model
    for face_id in world.faces.values():
        assert world.vector(DOSSIERS_GALLERY, face_id, DLIB).shape == (128,)
    for event_id in world.events:
        assert world.vector(EVENTS_GALLERY, event_id, DLIB).shape == (128,)
    assert world.count(DLIB) == 6 and world.count(OLD) == old_vectors
    assert world.embedder_setting() == DLIB

    # a search by a new photo of Biden in the new model's dossiers gallery finds his dossier alone
    spec = embedder_spec(DLIB)
    shard = GalleryShard(ShardConfig(DOSSIERS_GALLERY, spec.name, spec.dim, db_url=world.url,
                                     columns=DOSSIER_COLUMNS))
    image = decode_image((faces_dir / "knn_examples/train/biden/biden2.jpg").read_bytes())
    chip = dlib_analyzer.chips(image, dlib_analyzer.analyze(image)[:1])
    query = l2_normalize(load_embedder(DLIB).embed(chip))
    hits = shard.search(query, 3, min_score=float(spec.calibration.cosine(0.75)))[0]
    assert [item for item, _ in hits] == [str(world.faces["biden"])], hits
