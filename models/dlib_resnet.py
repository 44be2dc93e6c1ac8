"""dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) as a PyTorch module.

The network is the one of dlib's ``dnn_face_recognition_ex.cpp``: a 7x7/2 convolution, max pool, then
residual units of 32, 64, 128 and 256 filters, a global average pool and a 128-unit fully connected
layer without bias. The weights come from dlib's own file (parsed by :mod:`models.dlib_format`); the
structure is matched against the file layer by layer, so a different file fails loudly.

Equivalence notes (what dlib does that a stock ResNet would not):

* input: ``(pixel - mean[c]) / 256`` with the per-channel means stored in the file;
* ``affine`` layers are frozen batch norm (``gamma * x + beta``); here they are folded into the
  convolution before them, which is exact up to float rounding;
* down-sampling units add an average-pooled shortcut whose shape can differ from the main branch
  (fewer channels; and at 8x8 -> 3x3 vs 4x4 a different size): dlib's ``add_prev`` zero-pads both to
  the larger shape before adding (extra rows/columns/channels at the end), and so does this module;
* descriptors are NOT unit-normalised (dlib compares them with Euclidean distance 0.6).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.dlib_format import TAG_OR_SKIP, DlibNetwork, LayerRecord, read_network
from models.model_files import dlib_resnet_path

CHIP_SIZE = 150
DESCRIPTOR_DIM = 128
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Measured on a 2-core AVX512/AMX CPU: 16-64 chips per batch run fastest (activations stay in cache);
# a GPU wants bigger batches.
_DEFAULT_BATCH = {False: 32, True: 128}

# Layer kinds of one residual unit, in execution order, as they appear in the file.
_UNIT = ["con_4", "affine_", "relu_", "con_4", "affine_"]
_IDENTITY_TAIL = ["add_prev_", "relu_"]
_DOWN_TAIL = [TAG_OR_SKIP, TAG_OR_SKIP, "avg_pool_2", "add_prev_", "relu_"]


def _conv_affine(con: LayerRecord, affine: LayerRecord) -> nn.Conv2d:
    """A Conv2d equal to dlib's ``affine(con(x))``: the per-channel scale and shift folded in."""
    s = con.settings
    weight = torch.from_numpy(con.params["weight"].copy())
    conv = nn.Conv2d(
        weight.shape[1],
        weight.shape[0],
        (int(s["nr"]), int(s["nc"])),
        stride=(int(s["stride_y"]), int(s["stride_x"])),
        padding=(int(s["padding_y"]), int(s["padding_x"])),
    )
    gamma = torch.from_numpy(affine.params["gamma"].copy()).double()
    beta = torch.from_numpy(affine.params["beta"].copy()).double()
    bias = torch.from_numpy(con.params["bias"].copy()).double()
    if gamma.numel() != weight.shape[0]:
        raise ValueError(f"affine layer has {gamma.numel()} channels, convolution has {weight.shape[0]}")
    with torch.no_grad():
        # Fold in float64 so the folded parameters are the correctly rounded float32 values.
        conv.weight.copy_((weight.double() * gamma.view(-1, 1, 1, 1)).float())
        conv.bias.copy_((bias * gamma + beta).float())
    return conv


def _pad_to(t: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    dc, dh, dw = c - t.shape[1], h - t.shape[2], w - t.shape[3]
    if dc == 0 and dh == 0 and dw == 0:
        return t
    return F.pad(t, (0, dw, 0, dh, 0, dc))


def zero_padded_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's ``add_prev``: both operands zero-padded (at the end of each dim) to the larger shape."""
    if a.shape == b.shape:
        return a + b
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    return _pad_to(a, c, h, w) + _pad_to(b, c, h, w)


class ResidualUnit(nn.Module):
    """``relu(add_prev(block(x), shortcut(x)))`` with block = conv-affine-relu-conv-affine."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, pool: tuple[int, int] | None) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.down = pool is not None
        self.pool_kernel, self.pool_stride = pool if pool is not None else (1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = F.avg_pool2d(x, self.pool_kernel, self.pool_stride) if self.down else x
        return F.relu(zero_padded_add(y, shortcut))


class _LayerCursor:
    """Walks the parsed layers and checks that they follow the expected pattern."""

    def __init__(self, layers: Sequence[LayerRecord]) -> None:
        self.layers = list(layers)
        self.i = 0

    def peek(self, kinds: list[str]) -> bool:
        window = [rec.kind for rec in self.layers[self.i : self.i + len(kinds)]]
        return window == kinds

    def take(self, kinds: list[str]) -> list[LayerRecord]:
        if not self.peek(kinds):
            found = [rec.kind for rec in self.layers[self.i : self.i + len(kinds)]]
            raise ValueError(f"unexpected dlib layer sequence at layer {self.i}: expected {kinds}, found {found}")
        taken = self.layers[self.i : self.i + len(kinds)]
        self.i += len(kinds)
        return taken

    @property
    def done(self) -> bool:
        return self.i == len(self.layers)


def _pool_settings(rec: LayerRecord) -> tuple[int, int]:
    s = rec.settings
    if s["nr"] != s["nc"] or s["stride_y"] != s["stride_x"] or s["padding_y"] or s["padding_x"]:
        raise ValueError(f"unsupported pooling settings {s}")
    return int(s["nr"]), int(s["stride_y"])


def _build_unit(cursor: _LayerCursor) -> ResidualUnit:
    con1, aff1, _, con2, aff2 = cursor.take([TAG_OR_SKIP, *_UNIT])[1:]
    conv1, conv2 = _conv_affine(con1, aff1), _conv_affine(con2, aff2)
    if cursor.peek(_IDENTITY_TAIL):
        cursor.take(_IDENTITY_TAIL)
        return ResidualUnit(conv1, conv2, None)
    pool = cursor.take(_DOWN_TAIL)[2]
    return ResidualUnit(conv1, conv2, _pool_settings(pool))


class DlibResNet(nn.Module):
    """dlib's face ResNet. Input (N, 3, 150, 150) RGB in 0..255 (uint8 or float); output (N, 128)."""

    def __init__(self, network: DlibNetwork) -> None:
        super().__init__()
        inp = network.input.settings
        if network.input.kind != "input_rgb_image_sized" or (inp["nr"], inp["nc"]) != (CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"expected a 150x150 input_rgb_image_sized layer, found {network.input}")
        mean = torch.tensor([inp["avg_red"], inp["avg_green"], inp["avg_blue"]], dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, 3, 1, 1))
        cursor = _LayerCursor(network.layers)
        con, aff, _, pool = cursor.take(["con_4", "affine_", "relu_", "max_pool_2"])
        self.stem = _conv_affine(con, aff)
        self.stem_pool = _pool_settings(pool)
        units = []
        while cursor.peek([TAG_OR_SKIP]):
            units.append(_build_unit(cursor))
        self.units = nn.Sequential(*units)
        gap, fc = cursor.take(["avg_pool_2", "fc_2"])
        if gap.settings["nr"] != 0 or gap.settings["nc"] != 0:
            raise ValueError(f"expected a global average pool before the fc layer, found {gap.settings}")
        if "bias" in fc.params:
            raise ValueError("expected an fc layer without bias")
        self.fc = nn.Linear(int(fc.settings["num_inputs"]), int(fc.settings["num_outputs"]), bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.from_numpy(fc.params["weight"].T.copy()))  # dlib: x @ W(in, out)
        if not cursor.done:
            raise ValueError(f"unexpected trailing dlib layers from layer {cursor.i}")

    def normalize_input(self, x: torch.Tensor) -> torch.Tensor:
        """dlib's input_rgb_image_sized: (pixel - mean) / 256, in float32."""
        return (x.float() - self.mean) / 256.0

    def set_compute_dtype(self, dtype: torch.dtype) -> DlibResNet:
        """Cast weights (not the input means, which stay float32) to ``dtype``, e.g. bfloat16."""
        for module in (self.stem, self.units, self.fc):
            module.to(dtype)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.normalize_input(x).to(self.stem.weight.dtype)
        x = F.relu(self.stem(x))
        x = F.max_pool2d(x, self.stem_pool[0], self.stem_pool[1])
        x = self.units(x)
        return self.fc(x.mean(dim=(2, 3)))


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """Build the module from dlib's ``.dat`` file (default: the one in face_recognition_models)."""
    return DlibResNet(read_network(path or dlib_resnet_path())).eval()


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def chips_to_tensor(chips: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(N,150,150,3) numpy/tensor or (N,3,150,150) tensor -> (N,3,150,150) view, channels_last strides.

    A NHWC array becomes a permuted view (no copy): its strides already are channels_last.
    """
    t = torch.from_numpy(np.ascontiguousarray(chips)) if isinstance(chips, np.ndarray) else chips
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4:
        raise ValueError(f"expected a batch of chips (N,150,150,3), got shape {tuple(t.shape)}")
    if t.shape[-1] == 3 and t.shape[1] != 3:
        t = t.permute(0, 3, 1, 2)
    if tuple(t.shape[1:]) != (3, CHIP_SIZE, CHIP_SIZE):
        raise ValueError(f"expected RGB chips of {CHIP_SIZE}x{CHIP_SIZE}, got shape {tuple(chips.shape)}")
    return t


class DlibResNetEmbedder:
    """Batched face descriptors from aligned 150x150 RGB chips (dlib's ``get_face_chip``, padding 0.25).

    ``precision="bf16"`` runs the convolutions in bfloat16 (fast on CPUs with AMX/AVX512-BF16 and on
    GPUs; cosine to dlib's output stays above 0.9999 on real faces); the default float32 matches dlib
    to about 1e-6. ``compile=True`` uses ``torch.compile`` (a slow first batch, then fused kernels);
    batches are then padded to ``batch_size`` so that one compiled shape serves every call.
    """

    name = "dlib_resnet_v1"
    version = "1"
    dim = DESCRIPTOR_DIM
    input_size = CHIP_SIZE

    def __init__(
        self,
        path: str | Path | None = None,
        device: str | torch.device | None = None,
        batch_size: int | None = None,
        precision: str = "fp32",
        compile: bool = False,
    ) -> None:
        if precision not in _DTYPES:
            raise ValueError(f"precision must be one of {sorted(_DTYPES)}, got {precision!r}")
        self.device = pick_device(device)
        self.batch_size = _DEFAULT_BATCH[self.device.type == "cuda"] if batch_size is None else batch_size
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.precision = precision
        self.compiled = compile
        model = load_dlib_resnet(path).set_compute_dtype(_DTYPES[precision])
        self.model = model.to(self.device).to(memory_format=torch.channels_last)
        # Inductor's "freezing" folds the weights in as constants and pre-packs them for oneDNN.
        self._run = torch.compile(self.model, dynamic=False, options={"freezing": True}) if compile else self.model
        # One forward at a time: oneDNN/cuDNN already use every core, and compiled graphs are not reentrant.
        self._lock = threading.Lock()

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        n = batch.shape[0]
        if self.compiled and n < self.batch_size:
            batch = torch.cat([batch, batch[:1].expand(self.batch_size - n, -1, -1, -1)])
        x = batch.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        return self._run(x)[:n]

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """(N,150,150,3) uint8 RGB chips -> (N,128) float32 descriptors, on dlib's scale (not unit length)."""
        x = chips_to_tensor(chips)
        if x.shape[0] == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        outputs = []
        with self._lock, torch.inference_mode():
            for start in range(0, x.shape[0], self.batch_size):
                outputs.append(self._forward(x[start : start + self.batch_size]).float().cpu())
        return torch.cat(outputs).numpy()

    def embed_normalized(self, chips: np.ndarray) -> np.ndarray:
        """Unit-length descriptors (cosine similarity = dot product); dlib's own are not normalised."""
        return l2_normalize(self.embed(chips))

    def warmup(self, chips: np.ndarray | None = None) -> None:
        """Run one batch so that lazy set-up (kernel selection, compilation) happens now."""
        if chips is None:
            chips = np.full((self.batch_size, CHIP_SIZE, CHIP_SIZE, 3), 128, dtype=np.uint8)
        self.embed(chips[: self.batch_size])


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
