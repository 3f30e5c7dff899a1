"""Ops that index, broadcast or make tensors: Expand, Tile, Range, OneHot, Where,
GatherElements, GatherND, ScatterElements, ScatterND, Scatter, Compress, NonZero,
Unique, Trilu, Einsum, EyeLike, Size, CastLike, ReverseSequence, Det.

These are cold in a CNN (shape arithmetic, masks, detection post-processing) and
run as plain NumPy, in the input's own dtype. Each opset version whose semantics
changed is registered (ScatterElements' ``reduction`` at 16 and 18, GatherND's
``batch_dims`` at 12, OneHot's negative indices at 11...).
"""

from __future__ import annotations

import numpy as np
import onnx

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.memory import check_size
from runtime.ops.elementwise import _cast, cast
from runtime.ops.registry import register
from runtime.ops.tensor import _axis, _ints


def _integers(op: str, name: str, x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise ShapeError(f"{op}: input {name} must be integers, received {x.dtype}")
    return x.astype(np.int64, copy=False)


def _in_range(op: str, idx: np.ndarray, n: int, what: str) -> np.ndarray:
    """Indices in [-n, n-1], made non-negative."""
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ShapeError(
            f"{op}: {what} range {idx.min()}..{idx.max()}: expected within [-{n}, {n - 1}]"
        )
    return np.where(idx < 0, idx + n, idx)


def _scalar(op: str, name: str, x: np.ndarray) -> np.generic:
    x = np.asarray(x)
    if x.size != 1:
        raise ShapeError(f"{op}: input {name} must hold one value, received shape {x.shape}")
    return x.reshape(-1)[0]


@register("Expand", since=8)
def expand(x, shape):
    dims = _ints(shape, "Expand", "shape")
    try:
        out = np.broadcast_shapes(x.shape, tuple(dims))
    except ValueError:
        raise ShapeError(
            f"Expand: input shape {x.shape} does not broadcast with shape {dims}"
        ) from None
    check_size(out, x.dtype, "Expand output")
    return np.array(np.broadcast_to(x, out))


@register("Tile", since=6)
def tile(x, repeats):
    reps = _ints(repeats, "Tile", "repeats")
    if len(reps) != x.ndim:
        raise ShapeError(f"Tile: repeats {reps} need one value per axis of input {x.shape}")
    if any(r < 0 for r in reps):
        raise ShapeError(f"Tile: repeats {reps}: expected every value >= 0")
    check_size(tuple(d * r for d, r in zip(x.shape, reps, strict=True)), x.dtype, "Tile output")
    return np.tile(x, reps)


def _range(start, limit, delta, compute=None):
    for name, v in (("start", start), ("limit", limit), ("delta", delta)):
        if np.asarray(v).size != 1:
            raise ShapeError(f"Range: input {name} must be a scalar, received {np.shape(v)}")
    dtype = np.asarray(start).dtype
    s, lim, d = (np.asarray(v).reshape(()) for v in (start, limit, delta))
    if d == 0:
        raise ShapeError("Range: delta 0: expected a non-zero step")
    n = max(int(np.ceil((float(lim) - float(s)) / float(d))), 0)
    check_size((n,), dtype, "Range output")
    work = compute or dtype
    out = s.astype(work) + np.arange(n, dtype=work) * d.astype(work)
    return out.astype(dtype)


@register("Range", since=11)
def range_11(start, limit, delta):
    return _range(start, limit, delta)


_STASH = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.DOUBLE: np.float64}


@register("Range", since=27)
def range_27(start, limit, delta, *, stash_type=1):
    if stash_type not in _STASH:
        raise InvalidAttributeError(f"Range: stash_type {stash_type}: expected 1 (FLOAT) or 11")
    low = np.asarray(start).dtype == np.float16
    return _range(start, limit, delta, _STASH[stash_type] if low else None)


def _one_hot(indices, depth, values, axis, negative_ok):
    d = int(_scalar("OneHot", "depth", depth))
    if d < 1:
        raise ShapeError(f"OneHot: depth {d}: expected >= 1")
    values = np.asarray(values)
    if values.size != 2:
        raise ShapeError(f"OneHot: values must hold [off, on], received shape {values.shape}")
    idx = np.asarray(indices)
    idx = np.trunc(idx).astype(np.int64) if idx.dtype.kind == "f" else idx.astype(np.int64)
    if negative_ok:
        idx = np.where(idx < 0, idx + d, idx)
    ax = _axis(axis, idx.ndim + 1, "OneHot")
    check_size((*idx.shape, d), values.dtype, "OneHot output")
    hot = np.expand_dims(idx, ax) == np.arange(d).reshape([-1] + [1] * (idx.ndim - ax))
    return np.where(hot, values.reshape(-1)[1], values.reshape(-1)[0]).astype(values.dtype)


@register("OneHot", since=9)
def one_hot_9(indices, depth, values, *, axis=-1):
    return _one_hot(indices, depth, values, axis, False)


@register("OneHot", since=11)
def one_hot_11(indices, depth, values, *, axis=-1):
    return _one_hot(indices, depth, values, axis, True)


@register("Where", since=9)
def where(condition, x, y):
    if condition.dtype != np.bool_:
        raise ShapeError(f"Where: condition must be bool, received {condition.dtype}")
    if x.dtype != y.dtype:
        raise ShapeError(f"Where: X and Y must share a type, received {x.dtype} and {y.dtype}")
    try:
        shape = np.broadcast_shapes(condition.shape, x.shape, y.shape)
    except ValueError:
        raise ShapeError(
            f"Where: shapes {condition.shape}, {x.shape}, {y.shape} do not broadcast"
        ) from None
    check_size(shape, x.dtype, "Where output")
    return np.where(condition, x, y)


@register("GatherElements", since=11)
def gather_elements(data, indices, *, axis=0):
    ax = _axis(axis, data.ndim, "GatherElements")
    idx = _integers("GatherElements", "indices", indices)
    if idx.ndim != data.ndim:
        raise ShapeError(
            f"GatherElements: indices {idx.shape} must have the rank of data {data.shape}"
        )
    idx = _in_range("GatherElements", idx, data.shape[ax], "indices")
    return np.take_along_axis(data, idx, axis=ax)


def _gather_nd(data, indices, batch_dims):
    idx = _integers("GatherND", "indices", indices)
    b = batch_dims
    if not 0 <= b < min(data.ndim, max(idx.ndim, 1)):
        raise InvalidAttributeError(
            f"GatherND: batch_dims {b}: expected 0..{min(data.ndim, idx.ndim) - 1}"
        )
    if data.shape[:b] != idx.shape[:b]:
        raise ShapeError(
            f"GatherND: the first {b} dimensions of data {data.shape} and indices "
            f"{idx.shape} must agree"
        )
    k = idx.shape[-1]
    if k > data.ndim - b:
        raise ShapeError(
            f"GatherND: indices' last dimension {k} exceeds the rank {data.ndim - b} of data "
            f"after {b} batch dimensions"
        )
    batch = int(np.prod(data.shape[:b], dtype=np.int64))
    d = data.reshape((batch, *data.shape[b:]))  # (B, *rest)
    ix = idx.reshape((batch, -1, k)).copy()  # (B, L, k), made non-negative below
    for j in range(k):
        ix[..., j] = _in_range("GatherND", ix[..., j], d.shape[1 + j], "indices")
    rows = np.arange(batch).reshape(batch, 1)
    out = d[(rows, *(ix[..., j] for j in range(k)))]  # (B, L, *data.shape[b+k:])
    return out.reshape(idx.shape[:-1] + data.shape[b + k :])


@register("GatherND", since=11)
def gather_nd_11(data, indices):
    return _gather_nd(data, indices, 0)


@register("GatherND", since=12)
def gather_nd_12(data, indices, *, batch_dims=0):
    return _gather_nd(data, indices, batch_dims)


_REDUCTIONS = {
    "none": None,
    "add": np.add,
    "mul": np.multiply,
    "max": np.maximum,
    "min": np.minimum,
}


def _reduction(op: str, reduction: str, allowed: tuple[str, ...]):
    if reduction not in allowed:
        raise InvalidAttributeError(f"{op}: reduction {reduction!r}: expected one of {allowed}")
    return _REDUCTIONS[reduction]


def _scatter_elements(op, data, indices, updates, axis, ufunc):
    ax = _axis(axis, data.ndim, op)
    idx = _integers(op, "indices", indices)
    if idx.shape != updates.shape or idx.ndim != data.ndim:
        raise ShapeError(
            f"{op}: indices {idx.shape} and updates {updates.shape} must share a shape of the "
            f"rank of data {data.shape}"
        )
    idx = _in_range(op, idx, data.shape[ax], "indices")
    where = list(np.indices(idx.shape, sparse=True))
    where[ax] = idx
    out = data.copy()
    if ufunc is None:
        out[tuple(where)] = updates
    else:
        ufunc.at(out, tuple(where), updates.astype(data.dtype, copy=False))
    return out


@register("Scatter", since=9)
def scatter(data, indices, updates, *, axis=0):
    return _scatter_elements("Scatter", data, indices, updates, axis, None)


@register("ScatterElements", since=11)
def scatter_elements_11(data, indices, updates, *, axis=0):
    return _scatter_elements("ScatterElements", data, indices, updates, axis, None)


@register("ScatterElements", since=16)
def scatter_elements_16(data, indices, updates, *, axis=0, reduction="none"):
    ufunc = _reduction("ScatterElements", reduction, ("none", "add", "mul"))
    return _scatter_elements("ScatterElements", data, indices, updates, axis, ufunc)


@register("ScatterElements", since=18)
def scatter_elements_18(data, indices, updates, *, axis=0, reduction="none"):
    ufunc = _reduction("ScatterElements", reduction, tuple(_REDUCTIONS))
    return _scatter_elements("ScatterElements", data, indices, updates, axis, ufunc)


def _scatter_nd(data, indices, updates, ufunc):
    idx = _integers("ScatterND", "indices", indices)
    k = idx.shape[-1] if idx.ndim else 0
    if idx.ndim < 1 or k > data.ndim:
        raise ShapeError(f"ScatterND: indices {idx.shape}: expected rank >= 1, last dim <= rank")
    want = idx.shape[:-1] + data.shape[k:]
    if updates.shape != want:
        raise ShapeError(f"ScatterND: updates must have shape {want}, received {updates.shape}")
    where = tuple(_in_range("ScatterND", idx[..., j], data.shape[j], "indices") for j in range(k))
    out = data.copy()
    if ufunc is None:
        out[where] = updates
    else:
        ufunc.at(out, where, updates.astype(data.dtype, copy=False))
    return out


@register("ScatterND", since=11)
def scatter_nd_11(data, indices, updates):
    return _scatter_nd(data, indices, updates, None)


@register("ScatterND", since=16)
def scatter_nd_16(data, indices, updates, *, reduction="none"):
    return _scatter_nd(
        data, indices, updates, _reduction("ScatterND", reduction, ("none", "add", "mul"))
    )


@register("ScatterND", since=18)
def scatter_nd_18(data, indices, updates, *, reduction="none"):
    return _scatter_nd(
        data, indices, updates, _reduction("ScatterND", reduction, tuple(_REDUCTIONS))
    )


def _compress(x, condition, axis, negative_ok):
    cond = np.asarray(condition)
    if cond.ndim != 1:
        raise ShapeError(f"Compress: condition must be 1-D, received shape {cond.shape}")
    if axis is None:
        x, ax = x.reshape(-1), 0
    else:
        if axis < 0 and not negative_ok:
            raise InvalidAttributeError(f"Compress: axis {axis}: expected >= 0 before opset 11")
        ax = _axis(axis, x.ndim, "Compress")
    if cond.size > x.shape[ax]:
        raise ShapeError(
            f"Compress: condition has {cond.size} values, axis {ax} only {x.shape[ax]}"
        )
    return np.compress(cond.astype(bool), x, axis=ax)


@register("Compress", since=9)
def compress_9(x, condition, *, axis=None):
    return _compress(x, condition, axis, False)


@register("Compress", since=11)
def compress_11(x, condition, *, axis=None):
    return _compress(x, condition, axis, True)


@register("NonZero", since=9)
def non_zero(x):
    return np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1)


@register("Unique", since=11)
def unique(x, *, axis=None, sorted=1):
    if sorted not in (0, 1):
        raise InvalidAttributeError(f"Unique: sorted {sorted}: expected 0 or 1")
    if axis is None:
        flat, ax = x.reshape(-1), 0
    else:
        flat, ax = x, _axis(axis, x.ndim, "Unique")
    values, first, inverse, counts = np.unique(
        flat, return_index=True, return_inverse=True, return_counts=True, axis=ax
    )
    inverse = inverse.reshape(-1)
    if not sorted:
        order = np.argsort(first, kind="stable")  # by first occurrence
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        values = np.take(values, order, axis=ax)
        first, counts, inverse = first[order], counts[order], rank[inverse]
    as64 = [np.asarray(a, np.int64) for a in (first, inverse, counts)]
    return (values, *as64)


@register("Trilu", since=14)
def trilu(x, k=None, *, upper=1):
    if x.ndim < 2:
        raise ShapeError(f"Trilu: expected rank >= 2, received shape {x.shape}")
    kk = 0 if k is None else int(_scalar("Trilu", "k", k))
    return np.triu(x, kk) if upper else np.tril(x, kk)


@register("Einsum", since=12)
def einsum(*inputs, equation):
    if not inputs:
        raise ShapeError("Einsum: expected at least one input")
    eq = equation.decode() if isinstance(equation, bytes) else equation
    dtype = inputs[0].dtype
    if dtype.kind not in "iufb":  # bfloat16 (ml_dtypes): numpy's einsum has no loop for it
        inputs = tuple(t.astype(np.float32) for t in inputs)
    try:
        out = np.einsum(eq.replace(" ", ""), *inputs)
    except ValueError as exc:
        shapes = ", ".join(str(t.shape) for t in inputs)
        raise ShapeError(f"Einsum: equation {eq!r} does not fit inputs {shapes}: {exc}") from None
    return np.asarray(out).astype(dtype)


@register("EyeLike", since=9)
def eye_like(x, *, dtype=None, k=0):
    if x.ndim != 2:
        raise ShapeError(f"EyeLike: expected a 2-D input, received shape {x.shape}")
    dt = x.dtype if dtype is None else onnx.helper.tensor_dtype_to_np_dtype(dtype)
    return np.eye(*x.shape, k=k, dtype=dt)


@register("Size", since=1)
def size(x):
    return np.array(x.size, dtype=np.int64)


@register("CastLike", since=15)
def cast_like_15(x, target):
    return cast(x, to=onnx.helper.np_dtype_to_tensor_dtype(target.dtype))


@register("CastLike", since=19)
def cast_like_19(x, target, *, saturate=1):
    return cast(x, to=onnx.helper.np_dtype_to_tensor_dtype(target.dtype), saturate=saturate)


@register("CastLike", since=24)
def cast_like_24(x, target, *, round_mode="up", saturate=1):
    return _cast(x, onnx.helper.np_dtype_to_tensor_dtype(target.dtype), saturate, round_mode)


@register("ReverseSequence", since=10)
def reverse_sequence(x, sequence_lens, *, batch_axis=1, time_axis=0):
    if x.ndim < 2:
        raise ShapeError(f"ReverseSequence: expected rank >= 2, received shape {x.shape}")
    if {batch_axis, time_axis} != {0, 1}:
        raise InvalidAttributeError(
            f"ReverseSequence: batch_axis {batch_axis}, time_axis {time_axis}: expected 0 and 1"
        )
    lens = _integers("ReverseSequence", "sequence_lens", sequence_lens).reshape(-1)
    if lens.size != x.shape[batch_axis]:
        raise ShapeError(
            f"ReverseSequence: sequence_lens has {lens.size} values, batch is {x.shape[batch_axis]}"
        )
    if np.any((lens < 0) | (lens > x.shape[time_axis])):
        raise ShapeError(f"ReverseSequence: sequence_lens {lens}: expected 0..{x.shape[time_axis]}")
    out = x.copy()
    for b, n in enumerate(lens):
        src = [slice(None)] * x.ndim
        src[batch_axis], src[time_axis] = b, slice(n - 1, None, -1) if n else slice(0, 0)
        dst = list(src)
        dst[time_axis] = slice(0, n)
        out[tuple(dst)] = x[tuple(src)]
    return out


@register("Det", since=11)
def det(x):
    if x.ndim < 2 or x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"Det: expected square matrices (..., M, M), received shape {x.shape}")
    if x.dtype.kind != "f":
        raise ShapeError(f"Det: expected a float input, received {x.dtype}")
    return np.linalg.det(x.astype(np.float64)).astype(x.dtype)
