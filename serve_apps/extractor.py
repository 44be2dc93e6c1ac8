"""The extractor pool: a Ray Serve deployment that embeds face chips and estimates attributes.

Camera jobs (from any node) and the API send chips; `@serve.batch` merges concurrent calls into one
model batch. One GPU per replica where the cluster has GPUs, CPU otherwise; replicas autoscale
between FACEWATCH_EXTRACTOR_MIN_REPLICAS and _MAX_REPLICAS on ongoing requests.
The API's photo analysis (detect, quality, chips) runs here too, so models load only in this pool.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.serve import Application
from ray.serve.handle import DeploymentHandle

from facewatch import metrics
from facewatch.chips import ChipBatch
from facewatch.errors import BadImage
from facewatch.names import EXTRACTOR_APP, EXTRACTOR_DEPLOYMENT
from facewatch.settings import Config
from models.alignment import AlignmentError
from models.attributes import get_attribute_model
from models.detector import DetectorError
from models.embedders import embedder_spec, l2_normalize, load_embedder
from models.face_analysis import PhotoAnalyzer

DEFAULT_ATTRIBUTES = ("age_gender",)


class FaceExtractor:
    def __init__(self, embedder: str, attribute_models: tuple[str, ...] = DEFAULT_ATTRIBUTES,
                 max_batch: int = 64) -> None:
        self.spec = embedder_spec(embedder)
        self.embedder = load_embedder(embedder)
        self.attribute_models = [get_attribute_model(name) for name in attribute_models]
        self.analyzer = PhotoAnalyzer(self.spec.chip_size, self.spec.template, self.spec.padding)
        self.extract.set_max_batch_size(max_batch)
        self.batches = 0
        self.chips = 0

    def info(self) -> dict[str, Any]:
        return {"embedder": self.spec.name, "dim": self.spec.dim, "chip_size": self.spec.chip_size,
                "template": self.spec.template, "padding": self.spec.padding,
                "attributes": [m.name for m in self.attribute_models],
                "batches": self.batches, "chips": self.chips}

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.005)
    async def extract(self, requests: list[np.ndarray | ChipBatch]) -> list[dict[str, Any]]:
        """Each request: (n, S, S, 3) uint8 chips in the embedder's geometry → embeddings + attributes.

        A plain array gets attributes for every chip; a `ChipBatch` only for the chips it names (the
        others get `{}`)."""
        return await asyncio.to_thread(self.extract_requests, requests)

    def extract_requests(self, requests: list[np.ndarray | ChipBatch]) -> list[dict[str, Any]]:
        """`extract`'s work on the requests `@serve.batch` merged, as one model batch (on a worker thread)."""
        batches = [ChipBatch.of(r) for r in requests]
        chips = np.concatenate([b.chips for b in batches]) if batches else np.zeros((0, 1, 1, 3), np.uint8)
        wanted = np.concatenate([b.attribute_mask() for b in batches]) if batches else np.zeros(0, bool)
        started = time.perf_counter()
        embeddings, attributes = self._run(chips, wanted)
        metrics.extraction_batch(self.spec.name, len(chips), time.perf_counter() - started)
        self.batches += 1
        self.chips += len(chips)
        out, start = [], 0
        for batch in batches:
            n = len(batch)
            out.append({"embeddings": embeddings[start:start + n], "attributes": attributes[start:start + n],
                        "model": self.spec.name})
            start += n
        return out

    def _run(self, chips: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, list[dict[str, Any]]]:
        if len(chips) == 0:
            return np.zeros((0, self.spec.dim), np.float32), []
        embeddings = l2_normalize(self.embedder.embed(chips))
        attributes: list[dict[str, Any]] = [{} for _ in range(len(chips))]
        chosen = np.flatnonzero(wanted)
        if self.spec.template == "dlib" and len(chosen):  # the attribute models read dlib-geometry chips
            for model in self.attribute_models:
                for i, values in zip(chosen, model.predict_chips(chips[chosen]), strict=True):
                    attributes[i].update(values)
        return embeddings, attributes

    async def analyze(self, image: np.ndarray, with_chips: bool = True) -> dict[str, Any]:
        """Faces of one photo (biggest first) with quality and, with `with_chips`, their aligned chips."""
        try:
            faces = await asyncio.to_thread(self.analyzer.analyze, image)
            result: dict[str, Any] = {"faces": [asdict(f) for f in faces]}
            if with_chips:
                result["chips"] = await asyncio.to_thread(self.analyzer.chips, image, faces)
        except (DetectorError, AlignmentError) as exc:
            # The models refuse a photo they cannot take: the caller's bad input, typed so that it
            # crosses back to the API as BAD_IMAGE (422), not as a failure of the pool (503).
            raise BadImage(f"the photo cannot be analysed: {exc}") from exc
        return result


def _uses_gpu() -> bool:
    try:
        return ray.cluster_resources().get("GPU", 0) > 0
    except Exception:  # noqa: BLE001 - no cluster yet: plan for CPU
        return False


def build_extractor_application(config: Config, embedder: str) -> Application:
    gpu = _uses_gpu()
    deployment = serve.deployment(
        FaceExtractor,
        name=EXTRACTOR_DEPLOYMENT,
        autoscaling_config={
            "min_replicas": config.extractor_min_replicas,
            "max_replicas": max(config.extractor_max_replicas, config.extractor_min_replicas),
            "target_ongoing_requests": config.extractor_target_ongoing_requests,
        },
        max_ongoing_requests=max(64, config.extractor_max_batch * 2),
        ray_actor_options={"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1},
    )
    return deployment.bind(embedder, DEFAULT_ATTRIBUTES, config.extractor_max_batch)


def extractor_handle() -> DeploymentHandle:
    """The pool's handle, from any process in the cluster."""
    return serve.get_deployment_handle(EXTRACTOR_DEPLOYMENT, app_name=EXTRACTOR_APP)
