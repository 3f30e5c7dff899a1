"""Normalizations: LayerNormalization, GroupNormalization, InstanceNormalization,
RMSNormalization, LpNormalization, MeanVarianceNormalization.

The first four are layouts of one computation, standardising rows of a 2-D view and
applying a scale and bias (see ``kernels.normalize``): float32 runs that parallel
kernel; other float types compute the same in NumPy, in float64, and round to
their type. LpNormalization and MeanVarianceNormalization are plain NumPy.
GroupNormalization is registered twice: opset 18 scales per group, 21 per channel.

``layer_norm_channels`` is no ONNX op: it is the step ``passes.channels_first_layer_norm``
makes of a LayerNormalization between Transposes to channels-last and back (ConvNeXt),
normalising an NCHW tensor over its channel axis alone (``kernels.normalize``'s
``standardize_channels``).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import onnx

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.kernels.normalize import normalize_rows, standardize_channels, standardize_rows
from runtime.memory import allocate
from runtime.ops.registry import register

NORMALIZE = ("normalize.normalize_rows",)  # the float32 kernel
STANDARDIZE = ("normalize.standardize_rows",)  # LayerNormalization's layout, float32
CHANNELS = ("normalize.standardize_channels",)  # over NCHW's channels (layer_norm_channels)
CHANNELS_BLOCK = 8192  # floats of one job's C x positions block: in L1 over its three passes

_STASH = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}


def _float(op: str, name: str, x: np.ndarray) -> None:
    if x.dtype.kind != "f":
        raise ShapeError(f"{op}: input {name} must be a float tensor, received {x.dtype}")


def _stash(op: str, stash_type: int) -> type:
    if stash_type not in _STASH:
        raise InvalidAttributeError(
            f"{op}: stash_type {stash_type}: expected 1 (FLOAT) or 11 (DOUBLE)"
        )
    return _STASH[stash_type]


def _axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise InvalidAttributeError(
            f"{op}: axis {axis} is out of range for rank {rank} (expected {-rank}..{rank - 1})"
        )
    return axis % rank


def _param(
    op: str, name: str, t: np.ndarray | None, shape: tuple[int, ...], x: np.ndarray, fill: float
) -> np.ndarray:
    """Input ``name`` broadcast (unidirectionally) to ``shape``, or ``fill`` if absent."""
    if t is None:
        return np.full(shape, fill, x.dtype)
    try:
        ok = np.broadcast_shapes(t.shape, shape) == tuple(shape)
    except ValueError:
        ok = False
    if not ok:
        raise ShapeError(f"{op}: input {name} {t.shape} does not broadcast to {tuple(shape)}")
    return np.broadcast_to(t, shape)


def normalize(
    x2: np.ndarray,
    scale: np.ndarray,
    bias: np.ndarray,
    inner: int,
    epsilon: float,
    center: bool,
    out: np.ndarray | None = None,
    what: str = "normalization",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(y, mean, inv) of x2 (R, S) by ``kernels.normalize.normalize_rows``'s formula;
    scale and bias (G, S // inner); float32 by ``standardize_rows`` where G = 1 and
    inner = 1 (LayerNormalization, RMSNormalization), else ``normalize_rows``."""
    rows, s_n = x2.shape
    if x2.dtype == np.float32:
        y = allocate(x2.shape, np.float32, what, out)
        mean = np.empty(rows, np.float32)
        inv = np.empty(rows, np.float32)
        # writable copies (a few values): one kernel signature whether or not they
        # are read-only initializers
        sc = np.array(scale, np.float32, order="C")
        sh = np.array(bias, np.float32, order="C")
        x2 = np.ascontiguousarray(x2)
        if inner == 1 and sc.shape[0] == 1:
            standardize_rows(x2, y, sc[0], sh[0], float(epsilon), center, mean, inv)
        else:
            normalize_rows(x2, y, sc, sh, inner, float(epsilon), center, mean, inv)
        return y, mean, inv
    w = x2.astype(np.float64)
    m = w.mean(axis=1) if center and s_n else np.zeros(rows)
    d = w - m[:, None]
    inv = 1.0 / np.sqrt((d * d).mean(axis=1) + epsilon) if s_n else np.zeros(rows)
    groups = scale.shape[0]
    g = np.arange(rows) % groups
    sc = np.repeat(scale.astype(np.float64), inner, axis=1)[g]  # (R, S)
    sh = np.repeat(bias.astype(np.float64), inner, axis=1)[g]
    return (d * inv[:, None] * sc + sh).astype(x2.dtype), m, inv


def _planned(out, x: np.ndarray, rows: int) -> np.ndarray | None:
    out = out[0] if out else None
    if out is None or out.shape != x.shape or out.dtype != x.dtype:
        return None
    return out.reshape(rows, -1)


@register("LayerNormalization", since=17, kernels=STANDARDIZE + CHANNELS)
def layer_normalization(x, scale, b=None, *, axis=-1, epsilon=1e-5, stash_type=1, _out=None):
    op = "LayerNormalization"
    _float(op, "X", x)
    u = _stash(op, stash_type)
    ax = _axis(op, axis, x.ndim)
    inner_shape = x.shape[ax:]
    rows = int(np.prod(x.shape[:ax], dtype=np.int64))
    s_n = int(np.prod(inner_shape, dtype=np.int64))
    sc = _param(op, "Scale", scale, inner_shape, x, 1.0).reshape(1, s_n)
    sh = _param(op, "B", b, inner_shape, x, 0.0).reshape(1, s_n)
    y, mean, inv = normalize(
        x.reshape(rows, s_n), sc, sh, 1, epsilon, True, _planned(_out, x, rows), f"{op} output"
    )
    stats = x.shape[:ax] + (1,) * (x.ndim - ax)
    return y.reshape(x.shape), mean.astype(u).reshape(stats), inv.astype(u).reshape(stats)


def channels_block(c: int, s: int, threads: int) -> int:
    """Positions a job of ``standardize_channels`` takes: a multiple of 16 (whole vectors)
    whose C x block values fit ``CHANNELS_BLOCK`` floats, and no more than gives each
    thread a job of a plane of s positions."""
    block = max(16, CHANNELS_BLOCK // max(c, 1) // 16 * 16)
    share = -(-s // max(threads, 1))
    return max(16, min(block, -(-share // 16) * 16))


def _kernel_vector(v: np.ndarray | None, c: int) -> bool:
    """``v`` is what ``standardize_channels`` takes as is: (c,) float32, C-contiguous and
    writable (one array type: a read-only one would compile the kernel again)."""
    return (
        isinstance(v, np.ndarray)
        and v.shape == (c,)
        and v.dtype == np.float32
        and v.flags.c_contiguous
        and v.flags.writeable
    )


def layer_norm_channels(x, scale, b=None, *, epsilon=1e-5, _out=None):
    """LayerNormalization of x (N, C, ...) over axis 1 alone (each position's C values),
    scale and bias (C,): what Transpose to channels-last, LayerNormalization over the
    last axis and Transpose back compute, without the Transposes.

    The step ``passes.channels_first_layer_norm`` makes passes scale and bias as the
    kernel takes them, and a float32 x runs with no more checks than that (ConvNeXt's
    small late stages: the checks cost more than the kernel); anything else is
    checked and laid out first."""
    c = x.shape[1] if x.ndim >= 2 else -1
    if not (
        x.dtype == np.float32
        and x.flags.c_contiguous
        and _kernel_vector(scale, c)
        and _kernel_vector(b, c)
    ):
        return _layer_norm_channels_checked(x, scale, b, epsilon, _out)
    n = x.shape[0]
    s_n = math.prod(x.shape[2:])
    y = _out[0] if _out else None
    if y is None or y.shape != x.shape or y.dtype != np.float32 or not y.flags.c_contiguous:
        y = allocate(x.shape, np.float32, "LayerNormalization output")
    block = channels_block(c, s_n, numba.get_num_threads())
    standardize_channels(x.reshape(n, c, s_n), y.reshape(n, c, s_n), scale, b, epsilon, block)
    return y


def _layer_norm_channels_checked(x, scale, b, epsilon, out):
    """``layer_norm_channels`` for inputs not already laid out for its kernel."""
    op = "LayerNormalization"
    _float(op, "X", x)
    if x.ndim < 2:
        raise ShapeError(f"{op} over channels: expected X of rank >= 2, received {x.shape}")
    c = x.shape[1]
    sc = _param(op, "Scale", scale, (c,), x, 1.0)
    sh = _param(op, "B", b, (c,), x, 0.0)
    if x.dtype != np.float32:  # NumPy in float64 (``normalize``), channels moved last
        last = np.moveaxis(x, 1, -1)
        y, _, _ = normalize(last.reshape(-1, c), sc.reshape(1, c), sh.reshape(1, c), 1, epsilon,
                            True)  # fmt: skip
        return np.moveaxis(y.reshape(last.shape), -1, 1)
    sc, sh = (np.array(v, np.float32, order="C") for v in (sc, sh))  # writable copies
    return layer_norm_channels(np.ascontiguousarray(x), sc, sh, epsilon=float(epsilon), _out=out)


@register("RMSNormalization", since=23, kernels=STANDARDIZE)
def rms_normalization(x, scale, *, axis=-1, epsilon=1e-5, stash_type=1, _out=None):
    op = "RMSNormalization"
    _float(op, "X", x)
    _stash(op, stash_type)
    ax = _axis(op, axis, x.ndim)
    inner_shape = x.shape[ax:]
    rows = int(np.prod(x.shape[:ax], dtype=np.int64))
    s_n = int(np.prod(inner_shape, dtype=np.int64))
    sc = _param(op, "scale", scale, inner_shape, x, 1.0).reshape(1, s_n)
    sh = np.zeros((1, s_n), x.dtype)
    y, _, _ = normalize(
        x.reshape(rows, s_n), sc, sh, 1, epsilon, False, _planned(_out, x, rows), f"{op} output"
    )
    return y.reshape(x.shape)


def _channels(op: str, x: np.ndarray) -> tuple[int, int, int]:
    _float(op, "X", x)
    if x.ndim < 2:
        raise ShapeError(f"{op}: expected X of rank >= 2 (N, C, ...), received {x.shape}")
    n, c = x.shape[:2]
    return n, c, int(np.prod(x.shape[2:], dtype=np.int64))


def _per_channel(op: str, name: str, t: np.ndarray, c: int) -> np.ndarray:
    if t.size != c or t.ndim != 1:
        raise ShapeError(f"{op}: input {name} must have shape ({c},), received {t.shape}")
    return t


@register("InstanceNormalization", since=6, kernels=NORMALIZE)
def instance_normalization(x, scale, b, *, epsilon=1e-5, _out=None):
    op = "InstanceNormalization"
    n, c, spatial = _channels(op, x)
    sc = _per_channel(op, "scale", scale, c).reshape(c, 1)
    sh = _per_channel(op, "B", b, c).reshape(c, 1)
    y, _, _ = normalize(
        x.reshape(n * c, spatial),
        sc,
        sh,
        spatial,
        epsilon,
        True,
        _planned(_out, x, n * c),
        f"{op} output",
    )
    return y.reshape(x.shape)


def _group_norm(x, scale, bias, epsilon, num_groups, per_channel, out):
    op = "GroupNormalization"
    n, c, spatial = _channels(op, x)
    if num_groups < 1 or c % num_groups:
        raise InvalidAttributeError(
            f"{op}: num_groups {num_groups} must be >= 1 and divide the {c} channels of X"
        )
    per = c // num_groups
    if per_channel:
        sc = _per_channel(op, "scale", scale, c).reshape(num_groups, per)
        sh = _per_channel(op, "bias", bias, c).reshape(num_groups, per)
        inner = spatial
    else:
        sc = _per_channel(op, "scale", scale, num_groups).reshape(num_groups, 1)
        sh = _per_channel(op, "bias", bias, num_groups).reshape(num_groups, 1)
        inner = per * spatial
    rows = n * num_groups
    y, _, _ = normalize(
        x.reshape(rows, per * spatial),
        sc,
        sh,
        inner,
        epsilon,
        True,
        _planned(out, x, rows),
        f"{op} output",
    )
    return y.reshape(x.shape)


@register("GroupNormalization", since=18, kernels=NORMALIZE)
def group_normalization_18(x, scale, bias, *, epsilon=1e-5, num_groups, _out=None):
    return _group_norm(x, scale, bias, epsilon, num_groups, False, _out)


@register("GroupNormalization", since=21, kernels=NORMALIZE)
def group_normalization_21(x, scale, bias, *, epsilon=1e-5, num_groups, stash_type=1, _out=None):
    _stash("GroupNormalization", stash_type)
    return _group_norm(x, scale, bias, epsilon, num_groups, True, _out)


@register("LpNormalization", since=1)
def lp_normalization(x, *, axis=-1, p=2):
    op = "LpNormalization"
    _float(op, "input", x)
    if p not in (1, 2):
        raise InvalidAttributeError(f"{op}: p {p}: expected 1 or 2")
    ax = _axis(op, axis, x.ndim)
    wide = x.astype(np.float64)
    if p == 1:
        norm = np.sum(np.abs(wide), axis=ax, keepdims=True)
    else:
        norm = np.sqrt(np.sum(wide * wide, axis=ax, keepdims=True))
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.where(norm == 0, 0.0, wide / norm)  # a zero vector stays zero
    return y.astype(x.dtype)


@register("MeanVarianceNormalization", since=9)
def mean_variance_normalization(x, *, axes=(0, 2, 3)):
    op = "MeanVarianceNormalization"
    _float(op, "X", x)
    ax = tuple(sorted({_axis(op, a, x.ndim) for a in axes}))
    if len(ax) != len(axes):
        raise InvalidAttributeError(f"{op}: axes {list(axes)} name an axis twice")
    wide = x.astype(np.float64)
    mean = wide.mean(axis=ax, keepdims=True)
    std = np.sqrt(np.maximum((wide * wide).mean(axis=ax, keepdims=True) - mean * mean, 0.0))
    return ((wide - mean) / (std + 1e-9)).astype(x.dtype)
