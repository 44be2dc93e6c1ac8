"""Reader for dlib's binary serialization of DNN models (``*.dat`` files written by ``dlib::serialize``).

What the format holds (see ``dlib/serialize.h``, ``dlib/dnn/core.h``, ``layers.h``, ``input.h``):

* integers: a control byte (low 4 bits = number of value bytes, bit 0x80 = negative), then the
  magnitude little-endian;
* strings: an integer length, then the bytes;
* float/double settings: an integer mantissa and an integer exponent, value = mantissa * 2**exponent
  (three reserved exponents encode +inf, -inf and NaN);
* bools: the ASCII byte ``'0'`` or ``'1'``;
* tensors: version 2, then num_samples, k, nr, nc, then that many raw little-endian float32 values;
  "alias tensors" (views into a layer's parameter block): version 1 and the four dimensions only.

A network is nested templates, and it serializes the way it nests: the loss layer writes its version
and settings, then each wrapper writes its version and *first* its sub-network, *then* its own layer
details. So the file holds every wrapper's version from the output side inwards, then the input layer,
then the layers' details from the input side outwards. Tag and skip wrappers write only their version
(1) and no tag number, so the file cannot tell a tag from a skip: both come out as ``tag_or_skip``
markers here, and the model builder places them from the known architecture.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Setting = int | float | bool

# Wrapper versions, as written by dlib's core.h.
_ADD_LAYER = 2  # add_layer over another layer
_TAG_OR_SKIP = 1  # add_tag_layer / add_skip_layer
_INPUT_ADD_LAYER_VERSIONS = (2, 3)  # add_layer directly over the input layer
_LOSS_VERSION = 1

# float_details exponents that stand for special values.
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002

TAG_OR_SKIP = "tag_or_skip"


class TruncatedFileError(ValueError):
    """The data ends before the object being read does."""


@dataclass(frozen=True)
class LayerRecord:
    """One layer as stored: its type tag (e.g. ``con_4``), parameter arrays and settings.

    Arrays keep dlib's layout: ``con_4`` weight (filters, k, nr, nc) and bias (filters,); ``affine_``
    gamma and beta (k,); ``fc_2`` weight (num_inputs, num_outputs) and bias (num_outputs,) if any.
    """

    kind: str
    params: dict[str, np.ndarray] = field(default_factory=dict)
    settings: dict[str, Setting] = field(default_factory=dict)


@dataclass(frozen=True)
class DlibNetwork:
    """A parsed network: the input layer, the layers from input to output, the loss layer."""

    input: LayerRecord
    layers: list[LayerRecord]
    loss: LayerRecord

    @property
    def records(self) -> list[LayerRecord]:
        """Every record in execution order: input, layers, loss."""
        return [self.input, *self.layers, self.loss]


class DlibReader:
    """Sequential reader over the bytes of a dlib-serialized object; ValueError on bad data."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def _take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise TruncatedFileError(
                f"truncated dlib file: {what} needs {n} bytes at offset {self.pos}, only {self.remaining} left"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def read_int(self, what: str = "integer") -> int:
        control = self._take(1, what)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise ValueError(f"malformed dlib integer ({what}): control byte {control:#04x} at {self.pos - 1}")
        value = int.from_bytes(self._take(size, what), "little")
        return -value if control & 0x80 else value

    def read_str(self, what: str = "string", max_len: int = 1 << 20) -> str:
        length = self.read_int(f"{what} length")
        if not 0 <= length <= max_len:
            raise ValueError(f"malformed dlib file: implausible {what} length {length} at {self.pos}")
        raw = self._take(length, what)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ValueError(f"malformed dlib file: {what} is not ASCII: {raw[:40]!r}") from exc

    def peek_str(self) -> str | None:
        """The string at the current position if one plausibly starts here; the position is kept."""
        start = self.pos
        try:
            length = self.read_int("string length")
            if not 0 < length <= 64:
                return None
            raw = self._take(length, "string")
            return raw.decode("ascii") if raw.isascii() else None
        except TruncatedFileError:
            raise
        except ValueError:  # not an integer here, so not a string either
            return None
        finally:
            self.pos = start

    def read_float(self, what: str = "float") -> float:
        mantissa = self.read_int(f"{what} mantissa")
        exponent = self.read_int(f"{what} exponent")
        special = {_EXP_INF: math.inf, _EXP_NINF: -math.inf, _EXP_NAN: math.nan}
        if exponent in special:
            return special[exponent]
        return math.ldexp(mantissa, exponent)

    def read_bool(self, what: str = "bool") -> bool:
        byte = self._take(1, what)
        if byte not in (b"0", b"1"):
            raise ValueError(f"malformed dlib bool ({what}): {byte!r} at {self.pos - 1}")
        return byte == b"1"

    def read_tensor(self, what: str = "tensor") -> np.ndarray:
        """A resizable_tensor: float32 array of shape (num_samples, k, nr, nc)."""
        version = self.read_int(f"{what} version")
        if version != 2:
            raise ValueError(f"unsupported dlib tensor version {version} for {what} at {self.pos}")
        dims = tuple(self.read_int(f"{what} dims") for _ in range(4))
        if any(d < 0 for d in dims):
            raise ValueError(f"malformed dlib tensor {what}: negative dimension {dims}")
        count = math.prod(dims)
        raw = self._take(4 * count, f"{what} data ({count} floats)")
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(dims)

    def read_alias(self, what: str = "alias tensor") -> tuple[int, int, int, int]:
        """An alias_tensor: only its shape (num_samples, k, nr, nc)."""
        version = self.read_int(f"{what} version")
        if version != 1:
            raise ValueError(f"unsupported dlib alias_tensor version {version} for {what}")
        return tuple(self.read_int(f"{what} dims") for _ in range(4))  # type: ignore[return-value]


# --- layer details -------------------------------------------------------------------------------


def _read_multipliers(r: DlibReader) -> dict[str, Setting]:
    names = ("learning_rate_mult", "weight_decay_mult", "bias_learning_rate_mult", "bias_weight_decay_mult")
    return {name: r.read_float(name) for name in names}


def _split_params(params: np.ndarray, shapes: list[tuple[int, ...]], layer: str) -> list[np.ndarray]:
    flat = params.reshape(-1)
    sizes = [math.prod(s) for s in shapes]
    if sum(sizes) != flat.size:
        raise ValueError(f"{layer}: parameter block holds {flat.size} floats, expected {sum(sizes)} for {shapes}")
    out, start = [], 0
    for shape, size in zip(shapes, sizes, strict=True):
        out.append(flat[start : start + size].reshape(shape))
        start += size
    return out


def _read_con(r: DlibReader, kind: str) -> LayerRecord:
    params = r.read_tensor("con params")
    names = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    settings: dict[str, Setting] = {name: r.read_int(name) for name in names}
    filters = r.read_alias("con filters")
    biases = r.read_alias("con biases")
    settings.update(_read_multipliers(r))
    n, nr, nc = settings["num_filters"], settings["nr"], settings["nc"]
    if (filters[0], filters[2], filters[3]) != (n, nr, nc):
        raise ValueError(f"{kind}: filter shape {filters} disagrees with settings {n}x{nr}x{nc}")
    weight, bias = _split_params(params, [filters, (math.prod(biases),)], kind)
    return LayerRecord(kind, {"weight": weight, "bias": bias}, settings)


def _read_affine(r: DlibReader, kind: str) -> LayerRecord:
    params = r.read_tensor("affine params")
    gamma = r.read_alias("affine gamma")
    beta = r.read_alias("affine beta")
    settings: dict[str, Setting] = {"mode": r.read_int("affine mode")}
    if kind == "affine_2":
        settings["disabled"] = r.read_bool("affine disabled")
    if gamma != beta:
        raise ValueError(f"{kind}: gamma shape {gamma} differs from beta shape {beta}")
    g, b = _split_params(params, [(math.prod(gamma),), (math.prod(beta),)], kind)
    return LayerRecord(kind, {"gamma": g, "beta": b}, settings)


def _read_pool(r: DlibReader, kind: str) -> LayerRecord:
    names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return LayerRecord(kind, {}, {name: r.read_int(name) for name in names})


def _read_fc(r: DlibReader, kind: str) -> LayerRecord:
    settings: dict[str, Setting] = {"num_outputs": r.read_int("fc num_outputs"), "num_inputs": r.read_int()}
    params = r.read_tensor("fc params")
    weights = r.read_alias("fc weights")
    biases = r.read_alias("fc biases")
    settings["bias_mode"] = r.read_int("fc bias mode")
    settings.update(_read_multipliers(r))
    if (weights[0], weights[1]) != (settings["num_inputs"], settings["num_outputs"]):
        raise ValueError(f"{kind}: weight shape {weights} disagrees with settings {settings}")
    shapes = [(weights[0], weights[1])] + ([(math.prod(biases),)] if math.prod(biases) else [])
    arrays = _split_params(params, shapes, kind)
    out = {"weight": arrays[0]}
    if len(arrays) == 2:
        out["bias"] = arrays[1]
    return LayerRecord(kind, out, settings)


def _read_plain(r: DlibReader, kind: str) -> LayerRecord:
    return LayerRecord(kind)


_LAYER_READERS: dict[str, Callable[[DlibReader, str], LayerRecord]] = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "affine_2": _read_affine,
    "relu_": _read_plain,
    "add_prev_": _read_plain,
    "max_pool_2": _read_pool,
    "avg_pool_2": _read_pool,
    "fc_2": _read_fc,
}


def _read_input(r: DlibReader) -> LayerRecord:
    kind = r.read_str("input layer type")
    if kind not in ("input_rgb_image_sized", "input_rgb_image"):
        raise ValueError(f"unsupported dlib input layer {kind!r}")
    settings: dict[str, Setting] = {c: r.read_float(c) for c in ("avg_red", "avg_green", "avg_blue")}
    if kind == "input_rgb_image_sized":
        settings["nr"] = r.read_int("input nr")
        settings["nc"] = r.read_int("input nc")
    return LayerRecord(kind, {}, settings)


def _read_loss(r: DlibReader) -> LayerRecord:
    kind = r.read_str("loss layer type")
    if kind == "loss_metric_2":
        return LayerRecord(kind, {}, {"margin": r.read_float("margin"), "dist_thresh": r.read_float()})
    if kind == "loss_metric_":
        return LayerRecord(kind)
    raise ValueError(f"unsupported dlib loss layer {kind!r}")


def _read_details(r: DlibReader) -> LayerRecord:
    at = r.pos
    kind = r.read_str("layer type")
    reader = _LAYER_READERS.get(kind)
    if reader is None:
        raise ValueError(f"unsupported or malformed dlib layer type {kind!r} at offset {at}")
    return reader(r, kind)


def _read_layer_state(r: DlibReader, input_version: int | None) -> None:
    """Skip the training state every add_layer stores after its details (empty tensors in a saved net)."""
    for name in ("this_layer_setup_called", "gradient_input_is_stale", "output_disabled"):
        r.read_bool(name)
    for name in ("x_grad", "cached_output", "params_grad" if input_version is None else "grad_final"):
        r.read_tensor(name)
    if input_version == 3:
        r.read_int("sample_expansion_factor")


def _read_wrapper_versions(r: DlibReader) -> tuple[list[int], int]:
    """Versions of the wrappers from the output side inwards, and that of the innermost add_layer."""
    versions: list[int] = []
    while True:
        version = r.read_int("layer version")
        next_tag = r.peek_str()
        if next_tag is not None and next_tag.startswith("input"):
            if version not in _INPUT_ADD_LAYER_VERSIONS:
                raise ValueError(f"unsupported version {version} of the add_layer over the input layer")
            return versions, version
        if version not in (_ADD_LAYER, _TAG_OR_SKIP):
            raise ValueError(f"malformed dlib network: unexpected layer version {version} at {r.pos}")
        versions.append(version)


def parse_network(data: bytes) -> DlibNetwork:
    """Parse a whole serialized ``add_loss_layer`` network; ValueError on malformed or truncated data."""
    r = DlibReader(data)
    if r.read_int("loss version") != _LOSS_VERSION:
        raise ValueError("not a dlib DNN file: the first integer (loss layer version) is not 1")
    loss = _read_loss(r)
    versions, input_version = _read_wrapper_versions(r)
    input_layer = _read_input(r)
    layers = [_read_details(r)]
    _read_layer_state(r, input_version)
    for version in reversed(versions):  # inner to outer = execution order
        if version == _TAG_OR_SKIP:
            layers.append(LayerRecord(TAG_OR_SKIP))
            continue
        layers.append(_read_details(r))
        _read_layer_state(r, None)
    if r.remaining:
        raise ValueError(f"malformed dlib file: {r.remaining} unexpected bytes after the network")
    return DlibNetwork(input_layer, layers, loss)


def read_network(path: str | Path) -> DlibNetwork:
    """Read and parse a dlib DNN ``.dat`` file."""
    return parse_network(Path(path).read_bytes())
