"""`facewatch migrate-model --to MODEL`: re-embed every stored face with another embedder, then switch.

How it goes (SPEC §8: switching the model is a migration, never a silent mix of vectors):
1. The target embedder is loaded first (FaceNet needs FACEWATCH_FACENET_WEIGHTS): if it cannot be
   loaded, nothing has changed.
2. Every dossier face, then every event, that has no vector for the target model yet is re-embedded,
   a batch at a time, and gets a NEW `FaceVector` row (gallery `dossiers` / `events`, model = the
   target) with the same metadata; each batch commits on its own, so an interrupted run resumes where
   it stopped (items that already have a target vector are skipped). The old vectors stay; the
   runtime setting `embedder` still names the old model, so the running service keeps matching and
   searching with it the whole time (the old model's gallery shards ignore rows of other models).
3. The face image: the saved normalised crop (`crop_key`: the chip in the geometry of the model that
   made it — dossier crops are PNG, event crops JPEG) when that geometry (chip size, alignment
   template, padding) is the target's; otherwise the face is detected again in the saved source
   (dossier faces: the uploaded photo `source_key`; events: the full frame `frame_key`, else the
   thumbnail) and the face overlapping the stored box best is aligned for the target. The crop's
   geometry is that of the model of the item's existing vectors, or, for a model this version does
   not know, the embedder whose chip size equals the crop's.
4. Then every representative face of a person (gallery `persons`, docs/persons.md) gets the target
   vector of the event it was taken from — the same face, so it is copied from the events gallery,
   not embedded again — with the person's metadata. Without this, online assignment after the switch
   would search an empty persons gallery and start a new person for every returning stranger.
   A face whose event has no target vector yet is reported and retried like the others.
5. Items whose image is missing or shows no face are reported (`failed`) and retried by the next run.
6. When every item has a target vector (or with `force_switch`), the setting `embedder` is switched
   to the target, and — when a service runs on FACEWATCH_RAY_ADDRESS — the target model's gallery
   shards are created (they load the new rows from the DB) and snapshotted, so they are ready.
   The running extractor pool, API and event pipeline still hold the old model: restart the service
   (`facewatch serve`) to serve with the new one, then run `migrate-model --to MODEL` once more: it
   picks up the events recorded between the last pass and the restart (and does nothing else).
   Old vectors are kept (switching back is `PATCH /v1/settings {"embedder": OLD}` + restart, while
   they are there). User galleries (`/v1/galleries`) hold vectors without saved crops: they are
   not migrated; re-add their faces.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facewatch.settings import Config
from models.embedders import EMBEDDERS, Embedder, EmbedderSpec, embedder_spec, l2_normalize, load_embedder
from models.images import ImageError, decode_image
from storage import orm
from storage.dossier_vectors import DOSSIERS_GALLERY, EVENTS_GALLERY, dossier_face_meta
from storage.media import LocalMediaStore
from storage.persons import PERSONS_GALLERY, face_meta
from storage.selections import (
    count_without_vector,
    dossier_faces_after,
    dossiers_by_ids,
    events_after,
    person_faces_after,
    persons_by_ids,
    vector_models,
)
from storage.unit_of_work import UnitOfWork

log = logging.getLogger("facewatch.migrate_model")
DEFAULT_BATCH = 32
IMAGE_LIMIT = 64 * 1024 * 1024


class MigrationError(RuntimeError):
    """The migration cannot start (unknown model, weights missing); nothing was changed."""


Geometry = tuple[int, str, float | None]


def geometry(spec: EmbedderSpec) -> Geometry:
    return (spec.chip_size, spec.template, spec.padding)


@dataclass
class MigrationReport:
    target: str
    previous: str
    dossier_faces: int = 0
    events: int = 0
    person_faces: int = 0
    skipped_done: int = 0
    from_crop: int = 0
    redetected: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # the items still failing after the last pass
    remaining: int = 0
    switched: bool = False
    switch_note: str = ""
    galleries: str = ""
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class _Item:
    gallery: str
    item_id: str
    crop_key: str
    sources: list[str]  # media keys to detect in, best first
    bbox: list[float] | None  # the face's box in sources[0] (None: take the biggest face)
    models: list[str]  # models of the item's existing vectors
    meta: dict[str, Any]


class _Imager:
    """Chips in the target geometry: from saved crops, or by detecting again in the saved source."""

    def __init__(self, media: LocalMediaStore, target: EmbedderSpec,
                 analyzer_factory: Callable[[], Any] | None) -> None:
        self.media, self.target = media, target
        self._analyzer: Any = None
        self._analyzer_factory = analyzer_factory

    def analyzer(self) -> Any:
        if self._analyzer is None:
            if self._analyzer_factory is not None:
                self._analyzer = self._analyzer_factory()
            else:
                from models.face_analysis import PhotoAnalyzer

                t = self.target
                self._analyzer = PhotoAnalyzer(t.chip_size, t.template, t.padding)
        return self._analyzer

    def _image(self, key: str) -> np.ndarray | None:
        if not key or not self.media.exists(key):
            return None
        try:
            return decode_image(self.media.get(key), max_bytes=IMAGE_LIMIT)
        except ImageError:
            return None

    def crop_geometry(self, item: _Item, crop: np.ndarray) -> Geometry | None:
        for model in item.models:
            if model in EMBEDDERS:
                return geometry(EMBEDDERS[model])
        if crop.shape[0] == crop.shape[1]:
            sized = [s for s in EMBEDDERS.values() if s.chip_size == crop.shape[0]]
            if len({geometry(s) for s in sized}) == 1:
                return geometry(sized[0])
        return None

    def chip(self, item: _Item) -> tuple[np.ndarray | None, str]:
        """(chip, how) — how: 'crop', 'redetected', or the reason there is none."""
        size = self.target.chip_size
        crop = self._image(item.crop_key)
        if crop is not None and crop.shape[:2] == (size, size) and self.crop_geometry(item, crop) == geometry(
                self.target):
            return crop, "crop"
        for number, key in enumerate(item.sources):
            image = self._image(key)
            if image is None:
                continue
            faces = self.analyzer().analyze(image)
            if not faces:
                continue
            face = _best_face(faces, item.bbox if number == 0 else None)
            if face is None:
                continue
            return self.analyzer().chips(image, [face])[0], "redetected"
        if not item.crop_key and not any(item.sources):
            return None, "no saved crop or source image"
        return None, "the crop is in another geometry and no face was found in the saved source image"


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _best_face(faces: list[Any], bbox: list[float] | None) -> Any | None:
    if not bbox or len(bbox) != 4:
        return faces[0]  # biggest first
    best = max(faces, key=lambda f: _iou(f.bbox, bbox))
    return best if _iou(best.bbox, bbox) >= 0.3 else None


def _dossier_items(uow: UnitOfWork, after: int, batch: int) -> tuple[list[_Item], int | None]:
    faces = dossier_faces_after(uow.session, after, batch)
    if not faces:
        return [], None
    models = vector_models(uow.session, DOSSIERS_GALLERY, [str(f.id) for f in faces])
    dossiers = {d.id: d for d in dossiers_by_ids(uow.session, sorted({f.dossier_id for f in faces}))}
    items = [_Item(DOSSIERS_GALLERY, str(f.id), f.crop_key, [f.source_key] if f.source_key else [],
                   list(f.bbox or []) or None, models.get(str(f.id), []), dossier_face_meta(dossiers[f.dossier_id]))
             for f in faces]
    return items, faces[-1].id


def event_meta(event: orm.Event) -> dict[str, Any]:
    return {"camera_id": event.camera_id, "camera_group_id": event.camera_group_id,
            "timestamp": event.timestamp.timestamp()}


def _event_items(uow: UnitOfWork, after: str, batch: int) -> tuple[list[_Item], str | None]:
    events = events_after(uow.session, after, batch)
    if not events:
        return [], None
    models = vector_models(uow.session, EVENTS_GALLERY, [e.id for e in events])
    items = []
    for e in events:
        sources = [k for k in (e.frame_key, e.thumbnail_key) if k]
        bbox = (list(e.bbox or []) or None) if e.frame_key else None  # frame coordinates
        items.append(_Item(EVENTS_GALLERY, e.id, e.crop_key, sources, bbox, models.get(e.id, []), event_meta(e)))
    return items, events[-1].id


def _person_face_items(uow: UnitOfWork, after: int, batch: int) -> tuple[list[orm.PersonFace], int | None]:
    faces = person_faces_after(uow.session, after, batch)
    return faces, (faces[-1].id if faces else None)


def count_remaining(db_url: str, target: str) -> int:
    """Dossier faces, events and persons' representative faces without a vector for `target`."""
    with UnitOfWork(db_url) as uow:
        return sum(count_without_vector(uow.session, gallery, target)
                   for gallery in (DOSSIERS_GALLERY, EVENTS_GALLERY, PERSONS_GALLERY))


class Migrator:
    def __init__(self, config: Config, target: str, *, batch: int = DEFAULT_BATCH, embedder: Embedder | None = None,
                 analyzer_factory: Callable[[], Any] | None = None,
                 progress: Callable[[MigrationReport], None] | None = None) -> None:
        try:
            self.spec = embedder_spec(target)
        except KeyError as exc:
            raise MigrationError(str(exc.args[0])) from None
        if batch < 1:
            raise MigrationError("--batch must be at least 1")
        self.config, self.batch, self.progress = config, batch, progress
        with UnitOfWork(config.database_url) as uow:
            previous = str(uow.settings.get("embedder"))
        self.report = MigrationReport(target=self.spec.name, previous=previous)
        if embedder is None:
            try:
                embedder = load_embedder(self.spec.name)
            except (FileNotFoundError, ValueError, ImportError, OSError) as exc:
                raise MigrationError(f"cannot load the {self.spec.name} model: {exc}") from exc
        self.embedder = embedder
        self._failed: dict[tuple[str, str], str] = {}
        self._counting_skips = True
        self.imager = _Imager(LocalMediaStore(config.media_root), self.spec, analyzer_factory)

    def run_pass(self, max_batches: int | None = None) -> int:
        """One pass over dossier faces, events, then persons' faces; returns the batches done."""
        batches = 0
        self._failed.clear()
        for gallery in (DOSSIERS_GALLERY, EVENTS_GALLERY):
            after: Any = 0 if gallery == DOSSIERS_GALLERY else ""
            while max_batches is None or batches < max_batches:
                with UnitOfWork(self.config.database_url) as uow:
                    if gallery == DOSSIERS_GALLERY:
                        items, after = _dossier_items(uow, after, self.batch)
                    else:
                        items, after = _event_items(uow, after, self.batch)
                if after is None:
                    break
                if self._migrate(items):
                    batches += 1
        after = 0
        while max_batches is None or batches < max_batches:
            with UnitOfWork(self.config.database_url) as uow:
                faces, after = _person_face_items(uow, after, self.batch)
                if after is None:
                    break
                if self._copy_person_faces(uow, faces):
                    batches += 1
        self._counting_skips = False  # later passes meet this pass's work again
        self.report.failed = [{"gallery": g, "item_id": i, "reason": r} for (g, i), r in self._failed.items()]
        return batches

    def _migrate(self, items: list[_Item]) -> bool:
        todo = [i for i in items if self.spec.name not in i.models]
        if self._counting_skips:
            self.report.skipped_done += len(items) - len(todo)
        if not todo:
            return False
        chips, ready = [], []
        for item in todo:
            chip, how = self.imager.chip(item)
            if chip is None:
                self._failed[(item.gallery, item.item_id)] = how
                continue
            chips.append(chip)
            ready.append(item)
            if how == "crop":
                self.report.from_crop += 1
            else:
                self.report.redetected += 1
        if ready:
            vectors = l2_normalize(self.embedder.embed(np.stack(chips)))
            with UnitOfWork(self.config.database_url) as uow:
                for item, vector in zip(ready, vectors, strict=True):
                    array = np.ascontiguousarray(vector, dtype=np.float32).ravel()
                    uow.vectors.upsert(item.gallery, item.item_id, self.spec.name, array.tobytes(), int(array.size),
                                       item.meta)
                uow.commit()
            for item in ready:
                if item.gallery == DOSSIERS_GALLERY:
                    self.report.dossier_faces += 1
                else:
                    self.report.events += 1
        if self.progress is not None:
            self.progress(self.report)
        return True

    def _copy_person_faces(self, uow: UnitOfWork, faces: list[orm.PersonFace]) -> bool:
        """Persons' representative faces take their event's target vector (step 4); one commit a batch."""
        ids = [str(f.id) for f in faces]
        done = {v.item_id for v in uow.vectors.by_items(PERSONS_GALLERY, self.spec.name, ids)}
        todo = [f for f in faces if str(f.id) not in done]
        if self._counting_skips:
            self.report.skipped_done += len(faces) - len(todo)
        if not todo:
            return False
        vectors = {v.item_id: v for v in uow.vectors.by_items(EVENTS_GALLERY, self.spec.name,
                                                              [f.event_id for f in todo if f.event_id])}
        persons = persons_by_ids(uow.session, {f.person_id for f in todo})
        for face in todo:
            vector = vectors.get(face.event_id or "")
            if vector is None:
                self._failed[(PERSONS_GALLERY, str(face.id))] = (
                    f"its event {face.event_id} has no {self.spec.name} vector (see the event's failure)")
                continue
            uow.vectors.upsert(PERSONS_GALLERY, str(face.id), self.spec.name, vector.vector, int(vector.dim),
                               face_meta(persons[face.person_id]))
            self.report.person_faces += 1
        uow.commit()
        if self.progress is not None:
            self.progress(self.report)
        return True

    def switch(self, force: bool = False) -> bool:
        self.report.remaining = count_remaining(self.config.database_url, self.spec.name)
        if self.report.remaining and not force:
            self.report.switch_note = (f"not switched: {self.report.remaining} item(s) have no {self.spec.name} vector "
                                       "yet (see `failed`); run again, or pass --force-switch")
            return False
        with UnitOfWork(self.config.database_url) as uow:
            uow.settings.update({"embedder": self.spec.name})
            uow.commit()
        self.report.switched = True
        self.report.switch_note = (f"the setting `embedder` is now {self.spec.name}; restart the service to serve "
                                   f"with it, then run `facewatch migrate-model --to {self.spec.name}` once more")
        return True


def build_target_galleries(config: Config, model: str) -> str:
    """With a service on FACEWATCH_RAY_ADDRESS: create the target model's gallery shards (they load
    their rows from the DB) and snapshot them, so the restarted service finds them ready."""
    if not config.ray_address:
        return "built at the next start of the service (from the database)"
    import ray

    from actors.galleries import Galleries

    spec = embedder_spec(model)
    if not ray.is_initialized():
        ray.init(address=config.ray_address, namespace="facewatch", log_to_driver=False)
    galleries = Galleries.from_config(config, model)
    galleries.open_all()
    for name in (DOSSIERS_GALLERY, EVENTS_GALLERY, PERSONS_GALLERY):
        galleries.router(name).snapshot()
    return f"{spec.name} galleries built and snapshotted on the running cluster"


def migrate_model(config: Config, target: str, *, batch: int = DEFAULT_BATCH, switch: bool = True,
                  force_switch: bool = False, max_batches: int | None = None, embedder: Embedder | None = None,
                  analyzer_factory: Callable[[], Any] | None = None,
                  progress: Callable[[MigrationReport], None] | None = None) -> dict[str, Any]:
    """Re-embed every stored face for `target` (resumable), then switch (see the module docstring)."""
    started = time.monotonic()
    migrator = Migrator(config, target, batch=batch, embedder=embedder, analyzer_factory=analyzer_factory,
                        progress=progress)
    migrator.run_pass(max_batches)
    if max_batches is None:
        # Events recorded while the first pass ran: one more (cheap) pass before deciding to switch.
        migrator.run_pass()
    report = migrator.report
    if switch and max_batches is None:
        if migrator.switch(force_switch):
            report.galleries = build_target_galleries(config, migrator.spec.name)
    else:
        report.remaining = count_remaining(config.database_url, migrator.spec.name)
        report.switch_note = "not switched (--no-switch or a limited run)"
    report.seconds = round(time.monotonic() - started, 3)
    return report.as_dict()


def cli_migrate_model(args: Any) -> int:
    """`facewatch migrate-model --to MODEL [--batch N] [--no-switch] [--force-switch] [--json]`;
    exit status 0 when switched (or --no-switch), 1 when items are left, 2 when it cannot start."""
    import sys

    from cluster.output import print_json
    from cluster.service import prepare_database
    from facewatch.settings import load_config

    config = load_config()
    prepare_database(config)

    def progress(report: MigrationReport) -> None:
        if not args.json:
            print(f"\r{report.dossier_faces} dossier faces, {report.events} events, {report.person_faces} persons' "
                  "faces re-embedded", end="", file=sys.stderr, flush=True)

    try:
        report = migrate_model(config, args.to, batch=args.batch, switch=not args.no_switch,
                               force_switch=args.force_switch, progress=progress)
    except MigrationError as exc:
        print(f"facewatch migrate-model: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print_json(report)
    else:
        print(file=sys.stderr)
        for failure in report["failed"][:20]:
            print(f"  failed {failure['gallery']}/{failure['item_id']}: {failure['reason']}")
        print(f"{report['dossier_faces']} dossier faces, {report['events']} events and {report['person_faces']} "
              f"persons' faces re-embedded with "
              f"{report['target']} ({report['skipped_done']} had one before); {report['switch_note']}")
        if report["galleries"]:
            print(f"galleries: {report['galleries']}")
    return 0 if report["switched"] or args.no_switch else 1
