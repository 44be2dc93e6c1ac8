"""The system galleries (`dossiers`: the watch-list gallery; `events`; `persons`) of one installation.

`Galleries` opens (creates or finds) the shard actors of each gallery for the active embedder and
hands out their routers. Writers commit rows to the DB first, then call `sync_async(name)` so the
next search sees the change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from actors.gallery import GalleryRouter, create_gallery
from facewatch.errors import FacewatchError
from facewatch.gallery_schema import DOSSIER_COLUMNS, EVENT_COLUMNS, SYSTEM_GALLERY_COLUMNS
from facewatch.settings import Config

log = logging.getLogger("facewatch.galleries")

__all__ = ["DOSSIER_COLUMNS", "EVENT_COLUMNS", "SYSTEM_GALLERY_COLUMNS", "Galleries"]  # columns: re-exported


def shard_actor_options(gpu: str, gpu_fraction: float) -> dict[str, float]:
    """Ray resources of a system gallery's shard: a GPU share only when the setting asks for GPUs."""
    options = {"num_cpus": 0.0}
    if gpu == "auto" and gpu_fraction > 0:
        options["num_gpus"] = float(gpu_fraction)
    return options


@dataclass
class Galleries:
    db_url: str
    snapshot_dir: str
    model: str
    dim: int
    shards: int = 2
    replicas: int = 1
    detached: bool = False
    gpu: str = "off"  # FACEWATCH_GALLERY_GPU (actors/gallery_index.py `choose_device`)
    gpu_fraction: float = 0.0  # FACEWATCH_GALLERY_GPU_FRACTION: asked of Ray per shard replica when gpu=auto
    _routers: dict[str, GalleryRouter] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config, embedder: str, detached: bool = True) -> Galleries:
        """The system galleries of an installation as its settings shape them (shards, replicas, GPU);
        no actor is started or looked up until a router is asked for."""
        from models.embedders import embedder_spec  # models import torch: only where galleries are opened

        spec = embedder_spec(embedder)
        return cls(db_url=config.database_url, snapshot_dir=str(config.snapshot_dir), model=spec.name, dim=spec.dim,
                   shards=config.gallery_shards, replicas=config.gallery_replicas, detached=detached,
                   gpu=config.gallery_gpu, gpu_fraction=config.gallery_gpu_fraction)

    def _create(self, name: str) -> GalleryRouter:
        return create_gallery(
            name, self.model, self.dim, shards=self.shards, replicas=self.replicas, db_url=self.db_url,
            snapshot_dir=self.snapshot_dir, columns=SYSTEM_GALLERY_COLUMNS.get(name), detached=self.detached,
            actor_options=shard_actor_options(self.gpu, self.gpu_fraction), ready_timeout_s=None, gpu=self.gpu,
        )

    async def router_async(self, name: str) -> GalleryRouter:
        """The router of a system gallery, creating its actors on first use and waiting until they load."""
        if name not in self._routers:
            router = self._create(name)
            await router.wait_ready_async()
            self._routers[name] = router
        return self._routers[name]

    def router(self, name: str) -> GalleryRouter:
        """Blocking form of `router_async` for scripts and start-up code (not inside an event loop)."""
        if name not in self._routers:
            router = self._create(name)
            router.wait_ready()
            self._routers[name] = router
        return self._routers[name]

    def open_all(self) -> None:
        for name in SYSTEM_GALLERY_COLUMNS:
            self.router(name)

    async def drop_async(self, name: str) -> None:
        """Stop a (deleted) gallery's actors for good."""
        router = self._routers.pop(name, None) or self._create(name)
        router.kill()

    async def sync_async(self, name: str) -> None:
        """Best effort: a shard that is down replays the change log when it comes back."""
        try:
            missing = await (await self.router_async(name)).sync_async()
        except FacewatchError as exc:
            log.warning("gallery %s: sync failed (%s); shards will catch up from the DB", name, exc.reason)
            return
        if missing:
            log.warning("gallery %s: shards %s had no live replica to sync", name, missing)

    async def shards_down_async(self, timeout_s: float = 5.0) -> dict[str, list[int]]:
        """Per gallery opened by this process: the shards none of whose replicas answers within
        `timeout_s` (searches of those galleries miss their items); galleries all up are left out."""
        down: dict[str, list[int]] = {}
        for name, router in sorted(self._routers.items()):
            answers = await router._on_every_replica("stats", timeout_s=timeout_s)
            shards = [shard for shard, replicas in enumerate(answers) if all(r is None for r in replicas)]
            if shards:
                down[name] = shards
        return down
