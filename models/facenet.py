"""FaceNet (InceptionResnetV1 from facenet-pytorch, 512-d) as a second embedder.

Weights are never downloaded: the user points `FACEWATCH_FACENET_WEIGHTS` (or `weights_path`) at a
facenet-pytorch checkpoint (`20180402-114759-vggface2.pt` or `20180408-102900-casia-webface.pt`).
The classifier head in those checkpoints is dropped: only the embedding layers are loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.calibration import Calibration, cosine_for_distance

WEIGHTS_ENV = "FACEWATCH_FACENET_WEIGHTS"
CHIP_SIZE = 160
# The usual facenet-pytorch operating points (L2 distance of unit vectors); see models/calibration.py.
FACENET_CALIBRATION = Calibration(
    strict_cosine=cosine_for_distance(1.0),
    medium_cosine=cosine_for_distance(1.1),
    low_cosine=cosine_for_distance(1.2),
)


class MissingWeightsError(FileNotFoundError):
    """The FaceNet weights file was not given or does not exist."""


def _resolve_weights(weights_path: str | Path | None) -> Path:
    from facewatch.settings import load_config  # lazily: reading the environment is the caller's moment

    value = weights_path or load_config().facenet_weights
    if not value:
        raise MissingWeightsError(
            f"FaceNet needs a weights file: set {WEIGHTS_ENV} to a facenet-pytorch checkpoint "
            "(e.g. 20180402-114759-vggface2.pt); facewatch never downloads weights"
        )
    path = Path(value)
    if not path.is_file():
        raise MissingWeightsError(f"FaceNet weights file {path} does not exist ({WEIGHTS_ENV})")
    return path


def load_facenet_state(path: Path) -> dict[str, torch.Tensor]:
    """The embedding weights of a checkpoint (a state dict), without the classifier head."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise ValueError(f"{path} is not a readable facenet-pytorch checkpoint: {exc}") from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict of tensors")
    return {k: v for k, v in state.items() if not k.startswith("logits.")}


class FaceNetEmbedder:
    """512-d FaceNet descriptors from 160×160 RGB chips; unit length, batched, cuda when present."""

    name = "facenet_vggface2"
    dim = 512
    chip_size = CHIP_SIZE
    calibration = FACENET_CALIBRATION

    def __init__(self, weights_path: str | Path | None = None, device: str | None = None,
                 batch_size: int = 32) -> None:
        from facenet_pytorch import InceptionResnetV1

        path = _resolve_weights(weights_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = InceptionResnetV1(pretrained=None, classify=False)
        missing, unexpected = self.model.load_state_dict(load_facenet_state(path), strict=False)
        wanted_missing = [k for k in missing if not k.startswith("logits.")]
        if wanted_missing or unexpected:
            raise ValueError(f"{path} does not match InceptionResnetV1 (missing {wanted_missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        self.model.eval().to(self.device)
        self.batch_size = batch_size

    @torch.inference_mode()
    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N,160,160,3) uint8 RGB → (N,512) float32 unit vectors."""
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"FaceNet expects (N,{CHIP_SIZE},{CHIP_SIZE},3) chips, got {chips.shape}")
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(chips[start:start + self.batch_size]))
            x = batch.to(self.device).permute(0, 3, 1, 2).float()
            x = (x - 127.5) / 128.0  # facenet-pytorch's fixed image standardisation
            out.append(self.model(x).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)
