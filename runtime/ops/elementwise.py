"""Elementwise ops with NumPy broadcasting: arithmetic, activations, Clip, Cast.

Plain NumPy (cold ops, or ops NumPy already runs at memory speed). A broadcast is
checked against the size limit before it is computed (``broadcast_shape``).
"""

from __future__ import annotations

import numpy as np
import onnx

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.memory import check_size
from runtime.ops.registry import register


def broadcast_shape(op: str, *arrays: np.ndarray) -> tuple[int, ...]:
    """The shape the inputs broadcast to, checked against the size limit before
    anything is computed (a wrong-length vector can broadcast into terabytes)."""
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        shapes = ", ".join(str(a.shape) for a in arrays)
        raise ShapeError(
            f"{op}: input shapes {shapes} do not broadcast (expected equal or 1 per dimension)"
        ) from None
    check_size(shape, np.result_type(*arrays), f"{op} output (inputs broadcast)")
    return shape


def _same_type(op: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.dtype != b.dtype:
        raise ShapeError(f"{op}: inputs must share a type, received {a.dtype} and {b.dtype}")


def _arithmetic(op_type: str, ufunc: np.ufunc) -> None:
    """Register a same-type, broadcasting binary op (opset 7 on)."""

    def op(a, b):
        _same_type(op_type, a, b)
        broadcast_shape(op_type, a, b)
        return ufunc(a, b)

    op.__name__ = op_type.lower()
    register(op_type, since=7)(op)


for _op_type, _ufunc in (("Add", np.add), ("Sub", np.subtract), ("Mul", np.multiply)):
    _arithmetic(_op_type, _ufunc)


@register("Div", since=7)
def div(a, b):
    _same_type("Div", a, b)
    broadcast_shape("Div", a, b)
    if np.issubdtype(a.dtype, np.integer):
        if np.any(b == 0):
            raise ValueError("Div: integer division by zero")
        # ONNX integer division truncates toward zero (C semantics), unlike numpy's floor.
        return (np.trunc(a.astype(np.float64) / b)).astype(a.dtype)
    return np.divide(a, b)


@register("Sum", since=8)
def sum_(*inputs):
    if not inputs:
        raise ShapeError("Sum: expected at least one input, received none")
    broadcast_shape("Sum", *inputs)
    out = inputs[0]
    for x in inputs[1:]:
        _same_type("Sum", out, x)
        out = np.add(out, x)
    return np.array(out, copy=True) if out is inputs[0] else out


def _unary_out(x: np.ndarray, planned: tuple | None) -> np.ndarray | None:
    """The planned buffer for an output shaped like ``x``, if the plan gave one."""
    out = planned[0] if planned else None
    return out if out is not None and out.shape == x.shape and out.dtype == x.dtype else None


@register("Relu", since=6)
def relu(x, *, _out=None):
    return np.maximum(x, x.dtype.type(0), out=_unary_out(x, _out))


@register("LeakyRelu", since=6)
def leaky_relu(x, *, alpha=0.01):
    return np.where(x >= 0, x, x * x.dtype.type(alpha)).astype(x.dtype, copy=False)


@register("Tanh", since=6)
def tanh(x, *, _out=None):
    return np.tanh(x, out=_unary_out(x, _out))


@register("Sigmoid", since=6)
def sigmoid(x):
    # Split by sign so that exp never overflows.
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _clip(x, lo, hi):
    out = x if lo is None else np.maximum(x, lo)
    out = out if hi is None else np.minimum(out, hi)
    if out is x:
        return np.array(x, copy=True)
    return np.asarray(out, dtype=x.dtype)  # a scalar for a 0-d x: made an array here


@register("Clip", since=6)
def clip_6(x, *, min=-3.4028234663852886e38, max=3.4028234663852886e38):
    return _clip(x, x.dtype.type(min), x.dtype.type(max))


@register("Clip", since=11)
def clip_11(x, min=None, max=None):
    for name, bound in (("min", min), ("max", max)):
        if bound is not None and bound.size != 1:
            raise ShapeError(f"Clip: input {name!r} must be a scalar, received shape {bound.shape}")
    lo = None if min is None else x.dtype.type(min.reshape(()))
    hi = None if max is None else x.dtype.type(max.reshape(()))
    return _clip(x, lo, hi)


_CAST_UNSUPPORTED = {
    onnx.TensorProto.STRING,
    onnx.TensorProto.COMPLEX64,
    onnx.TensorProto.COMPLEX128,
}
_FLOAT8 = {
    onnx.TensorProto.FLOAT8E4M3FN,
    onnx.TensorProto.FLOAT8E4M3FNUZ,
    onnx.TensorProto.FLOAT8E5M2,
    onnx.TensorProto.FLOAT8E5M2FNUZ,
}
_ROUND_MODES = ("up", "down", "nearest")


def _cast(x, to, saturate, round_mode):
    """The reference's arithmetic: float8 saturates (by default), E8M0 rounds by
    ``round_mode``, everything else is numpy's (and ml_dtypes') ``astype``."""
    known = to in onnx.TensorProto.DataType.values()
    if to in _CAST_UNSUPPORTED or not known:
        name = onnx.TensorProto.DataType.Name(to) if known else to
        raise InvalidAttributeError(
            f"Cast: target type {name} is not supported; numeric types (float8, bfloat16 "
            "and the 4- and 2-bit types included) and BOOL are"
        )
    if x.dtype.kind in "OSU":
        raise InvalidAttributeError(f"Cast: input type {x.dtype} is not supported")
    if round_mode not in _ROUND_MODES:
        raise InvalidAttributeError(f"Cast: round_mode {round_mode!r}: expected {_ROUND_MODES}")
    dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
    check_size(x.shape, dtype, "Cast output")
    with np.errstate(invalid="ignore", over="ignore"):
        if to in _FLOAT8 and saturate:
            return onnx.numpy_helper.saturate_cast(x, dtype)
        if to == onnx.TensorProto.FLOAT8E8M0:
            return onnx.numpy_helper.to_float8e8m0(x, saturate, round_mode).astype(dtype)
        return x.astype(dtype)


@register("Cast", since=6)
def cast(x, *, to, saturate=1):
    return _cast(x, to, saturate, "up")


@register("Cast", since=24)
def cast_24(x, *, to, round_mode="up", saturate=1):
    return _cast(x, to, saturate, round_mode)
