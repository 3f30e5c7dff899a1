"""Activations: Elu, Selu, Celu, PRelu, HardSigmoid, HardSwish, Softplus, Softsign, Mish,
Gelu, ThresholdedRelu, Shrink, Hardmax.

The pointwise ones run the parallel ``kernels.unary.unary`` kernel on float32 and
float64 (float16 and bfloat16 compute in float32 and round back; Gelu on float32 runs
``unary_vector``, erf in vectors); Shrink on integer types, PRelu (a broadcast
slope) and Hardmax (an argmax) are plain NumPy. Opsets whose semantics changed are
registered apart: Hardmax before 13 coerces the input to 2-D at ``axis``, from 13 it
works along ``axis`` alone.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.kernels.unary import MODES, VECTOR_MODES, unary, unary_vector
from runtime.memory import allocate
from runtime.ops.broadcast import broadcast, same_type
from runtime.ops.registry import register

UNARY = ("unary.unary",)  # the float32 kernel of these activations
VECTOR = ("unary.unary", "unary.unary_vector")  # Gelu and Erf: float32 in vectors


def is_float(x: np.ndarray) -> bool:
    """A float tensor: NumPy's float types, or ml_dtypes' bfloat16 (onnx's numpy type)."""
    return x.dtype.kind == "f" or x.dtype.name == "bfloat16"


def _float_input(op: str, x: np.ndarray) -> None:
    if not is_float(x):
        raise ShapeError(f"{op}: input X must be a float tensor, received {x.dtype}")


def pointwise(
    op: str,
    x: np.ndarray,
    mode: str,
    alpha: float = 0.0,
    beta: float = 0.0,
    gamma: float = 0.0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """``kernels.unary`` mode ``mode`` of x (any float type), into ``out`` when it fits."""
    _float_input(op, x)
    work = x if x.dtype in (np.float32, np.float64) else x.astype(np.float32)
    flat = np.ascontiguousarray(work).reshape(-1)
    y = allocate(x.shape, work.dtype, f"{op} output", out if work is x else None)
    if work.dtype == np.float32 and mode in VECTOR_MODES:
        unary_vector(flat, y.reshape(-1), MODES[mode])
    else:
        unary(flat, y.reshape(-1), MODES[mode], float(alpha), float(beta), float(gamma))
    return y if work is x else y.astype(x.dtype)


def _first(out):
    return out[0] if out else None


@register("Elu", since=6, kernels=UNARY)
def elu(x, *, alpha=1.0, _out=None):
    return pointwise("Elu", x, "Elu", alpha, out=_first(_out))


@register("Selu", since=6, kernels=UNARY)
def selu(x, *, alpha=1.67326319217681884765625, gamma=1.05070102214813232421875, _out=None):
    return pointwise("Selu", x, "Selu", alpha, gamma=gamma, out=_first(_out))


@register("Celu", since=12, kernels=UNARY)
def celu(x, *, alpha=1.0, _out=None):
    if alpha == 0.0:
        raise InvalidAttributeError("Celu: alpha 0.0: expected a nonzero alpha (x / alpha)")
    return pointwise("Celu", x, "Celu", alpha, out=_first(_out))


@register("HardSigmoid", since=6, kernels=UNARY)
def hard_sigmoid(x, *, alpha=0.2, beta=0.5, _out=None):
    return pointwise("HardSigmoid", x, "HardSigmoid", alpha, beta, out=_first(_out))


@register("HardSwish", since=14, kernels=UNARY)
def hard_swish(x, *, _out=None):
    return pointwise("HardSwish", x, "HardSwish", out=_first(_out))


@register("Softplus", since=1, kernels=UNARY)
def softplus(x, *, _out=None):
    return pointwise("Softplus", x, "Softplus", out=_first(_out))


@register("Softsign", since=1, kernels=UNARY)
def softsign(x, *, _out=None):
    return pointwise("Softsign", x, "Softsign", out=_first(_out))


@register("Mish", since=18, kernels=UNARY)
def mish(x, *, _out=None):
    return pointwise("Mish", x, "Mish", out=_first(_out))


@register("Gelu", since=20, kernels=VECTOR)
def gelu(x, *, approximate="none", _out=None):
    modes = {"none": "Gelu", "tanh": "GeluTanh"}
    if approximate not in modes:
        raise InvalidAttributeError(
            f"Gelu: approximate {approximate!r}: expected one of {sorted(modes)}"
        )
    return pointwise("Gelu", x, modes[approximate], out=_first(_out))


@register("ThresholdedRelu", since=10, kernels=UNARY)
def thresholded_relu(x, *, alpha=1.0, _out=None):
    return pointwise("ThresholdedRelu", x, "ThresholdedRelu", alpha, out=_first(_out))


@register("Shrink", since=9, kernels=UNARY)
def shrink(x, *, bias=0.0, lambd=0.5, _out=None):
    if is_float(x):
        return pointwise("Shrink", x, "Shrink", lambd, bias, out=_first(_out))
    if x.dtype.kind not in "iu":
        raise ShapeError(f"Shrink: input must be numeric, received {x.dtype}")
    wide = x.astype(np.float64)
    y = np.where(wide < -lambd, wide + bias, np.where(wide > lambd, wide - bias, 0.0))
    return y.astype(x.dtype)


def _prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    same_type("PRelu", x, slope)
    broadcast("PRelu", x, slope)
    if np.broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise ShapeError(
            f"PRelu: slope {slope.shape} must broadcast to X {x.shape} (unidirectionally)"
        )
    return np.where(x < 0, x * slope, x).astype(x.dtype, copy=False)


@register("PRelu", since=7)
def prelu(x, slope):
    return _prelu(x, slope)


def _hardmax_along(x: np.ndarray, axis: int) -> np.ndarray:
    y = np.zeros_like(x)
    if x.size:
        # argmax takes the first of equal maxima, as the spec asks
        np.put_along_axis(y, np.expand_dims(np.argmax(x, axis=axis), axis), 1, axis=axis)
    return y


def _axis(op: str, axis: int, rank: int) -> int:
    if not -rank <= axis < max(rank, 1):
        raise InvalidAttributeError(
            f"{op}: axis {axis} is out of range for rank {rank} (expected {-rank}..{rank - 1})"
        )
    return axis % max(rank, 1)


@register("Hardmax", since=1)
def hardmax_1(x, *, axis=1):
    ax = _axis("Hardmax", axis, x.ndim)
    rows = int(np.prod(x.shape[:ax], dtype=np.int64))
    return _hardmax_along(x.reshape(rows, -1), 1).reshape(x.shape)


@register("Hardmax", since=13)
def hardmax_13(x, *, axis=-1):
    return _hardmax_along(x, _axis("Hardmax", axis, x.ndim))
