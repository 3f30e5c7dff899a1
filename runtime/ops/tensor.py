"""Ops that move, reshape or make tensors: Reshape, Flatten, Transpose, Concat, Split,
Squeeze, Unsqueeze, Slice, Gather, Pad, Shape, Constant, ConstantOfShape, Identity,
Dropout (inference: identity).

Several of these moved attributes to inputs at some opset (Reshape 5, Slice 10,
Pad 11, Squeeze/Unsqueeze/Split 13, Dropout 12); each version is registered.
Plain NumPy: these move memory, they do not compute. Each op that makes a tensor
larger than its inputs (ConstantOfShape, Concat, Gather, Pad) checks the result
against the size limit before it allocates.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.memory import check_size
from runtime.ops.registry import register


def _axis(axis: int, rank: int, op: str, what: str = "axis") -> int:
    if not -rank <= axis < rank:
        raise InvalidAttributeError(
            f"{op}: {what} {axis} is out of range for rank {rank} (expected {-rank}..{rank - 1})"
        )
    return axis % rank


def _ints(values, op: str, what: str) -> list[int]:
    if values is None:
        return []
    arr = np.asarray(values)
    if arr.dtype.kind not in "iu":
        raise ShapeError(f"{op}: input {what!r} must be integers, received {arr.dtype}")
    return [int(v) for v in arr.reshape(-1)]


@register("Identity", since=1)
def identity(x):
    return x


@register("Dropout", since=7)
def dropout_7(x, *, ratio=0.5):
    # Opsets 7 to 9 type the mask as X (T), 10 and 11 as bool; the spec leaves its
    # values at inference open, and onnxruntime gives zeros (False) there.
    return x, np.zeros(x.shape, dtype=x.dtype)


@register("Dropout", since=10)
def dropout_10(x, *, ratio=0.5):
    return x, np.zeros(x.shape, dtype=bool)


@register("Dropout", since=12)
def dropout_12(x, ratio=None, training_mode=None, *, seed=0):
    training = training_mode is not None and bool(np.asarray(training_mode).reshape(()))
    if training and (ratio is None or float(np.asarray(ratio).reshape(())) != 0.0):
        # ratio 0 drops nothing, so training mode is then the identity too
        raise InvalidAttributeError(
            "Dropout: training_mode=True with a nonzero ratio (random masks) is not supported "
            "by an inference runtime; expected training_mode False, no input, or ratio 0"
        )
    return x, np.ones(x.shape, dtype=bool)


@register("Constant", since=1)
def constant(
    *,
    value=None,
    value_float=None,
    value_floats=None,
    value_int=None,
    value_ints=None,
    sparse_value=None,
    value_string=None,
    value_strings=None,
):
    given = {
        "value": value,
        "value_float": None if value_float is None else np.array(value_float, np.float32),
        "value_floats": None if value_floats is None else np.array(value_floats, np.float32),
        "value_int": None if value_int is None else np.array(value_int, np.int64),
        "value_ints": None if value_ints is None else np.array(value_ints, np.int64),
        "sparse_value": sparse_value,
        "value_string": value_string,
        "value_strings": value_strings,
    }
    present = [k for k, v in given.items() if v is not None]
    if len(present) != 1:
        raise InvalidAttributeError(
            f"Constant: expected exactly one value attribute, received {present or 'none'}"
        )
    if present[0] in ("sparse_value", "value_string", "value_strings"):
        raise InvalidAttributeError(f"Constant: attribute {present[0]!r} is not supported")
    return np.array(given[present[0]])


@register("ConstantOfShape", since=9)
def constant_of_shape(shape, *, value=None):
    dims = _ints(shape, "ConstantOfShape", "input")
    if any(d < 0 for d in dims):
        raise ShapeError(f"ConstantOfShape: dimensions must be >= 0, received {dims}")
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    if fill.size != 1:
        raise InvalidAttributeError(
            f"ConstantOfShape: value must hold one element, received {fill.size}"
        )
    check_size(tuple(dims), fill.dtype, "ConstantOfShape output")
    return np.full(dims, fill[0], dtype=fill.dtype)


@register("Shape", since=1)
def shape(x, *, start=0, end=None):
    dims = np.array(x.shape, dtype=np.int64)
    rank = len(dims)
    start = min(max(start + rank if start < 0 else start, 0), rank)
    end = rank if end is None else min(max(end + rank if end < 0 else end, 0), rank)
    return dims[start:end].copy()


def _reshape(x, shape, allowzero, op="Reshape"):
    dims = _ints(shape, op, "shape")
    out = []
    for i, d in enumerate(dims):
        if d == 0 and not allowzero:
            if i >= x.ndim:
                raise ShapeError(f"{op}: shape {dims} copies dimension {i}, input rank is {x.ndim}")
            out.append(x.shape[i])
        elif d < -1:
            raise ShapeError(f"{op}: dimension {d} in shape {dims}: expected >= -1")
        else:
            out.append(d)
    if out.count(-1) > 1:
        raise ShapeError(f"{op}: shape {dims} has more than one -1")
    known = int(np.prod([d for d in out if d != -1], dtype=np.int64))
    if -1 in out:
        if known == 0 or x.size % known:
            raise ShapeError(f"{op}: cannot reshape {x.shape} ({x.size} elements) into {dims}")
        out[out.index(-1)] = x.size // known
    elif known != x.size:
        raise ShapeError(
            f"{op}: cannot reshape {x.shape} ({x.size} elements) into {tuple(out)} ({known})"
        )
    return x.reshape(out)


@register("Reshape", since=5)
def reshape(x, shape, *, allowzero=0):
    return _reshape(x, shape, allowzero)


@register("Flatten", since=1)
def flatten(x, *, axis=1):
    axis = axis + x.ndim if axis < 0 else axis
    if not 0 <= axis <= x.ndim:
        raise InvalidAttributeError(f"Flatten: axis out of range for rank {x.ndim}")
    outer = int(np.prod(x.shape[:axis], dtype=np.int64))
    return x.reshape(outer, -1) if x.size else x.reshape(outer, int(np.prod(x.shape[axis:])))


@register("Transpose", since=1)
def transpose(x, *, perm=None):
    perm = tuple(reversed(range(x.ndim))) if perm is None else tuple(perm)
    if sorted(perm) != list(range(x.ndim)):
        raise InvalidAttributeError(
            f"Transpose: perm {perm} is not a permutation of 0..{x.ndim - 1}"
        )
    y = np.transpose(x, perm)
    return y if y.flags.c_contiguous else y.copy(order="C")  # ascontiguousarray makes 0-d 1-d


@register("Concat", since=4)
def concat(*inputs, axis, _out=None):
    """``_out``: a planned buffer for the result, written when shape and type fit (a
    fresh array a call is one the size of the output, cold, every run)."""
    if not inputs:
        raise ShapeError("Concat: expected at least one input")
    rank = inputs[0].ndim
    ax = _axis(axis, rank, "Concat")
    for i, t in enumerate(inputs):
        if t.ndim != rank or t.shape[:ax] + t.shape[ax + 1 :] != (
            inputs[0].shape[:ax] + inputs[0].shape[ax + 1 :]
        ):
            raise ShapeError(
                f"Concat: input {i} has shape {t.shape}, expected {inputs[0].shape} "
                f"except along axis {ax}"
            )
        if t.dtype != inputs[0].dtype:
            raise ShapeError(
                f"Concat: input {i} has type {t.dtype}, expected {inputs[0].dtype} as input 0"
            )
    shape = list(inputs[0].shape)
    shape[ax] = sum(t.shape[ax] for t in inputs)
    check_size(tuple(shape), inputs[0].dtype, "Concat output")
    out = _out[0] if _out else None
    if out is not None and (out.shape != tuple(shape) or out.dtype != inputs[0].dtype):
        out = None
    return np.concatenate(inputs, axis=ax, out=out)


def _split(x, sizes, n_outputs, axis, op="Split"):
    ax = _axis(axis, x.ndim, op)
    length = x.shape[ax]
    if not sizes:
        if n_outputs < 1 or length % n_outputs:
            raise ShapeError(
                f"{op}: cannot split length {length} into {n_outputs} equal parts; "
                "give 'split' sizes"
            )
        sizes = [length // n_outputs] * n_outputs
    if sum(sizes) != length or any(s < 0 for s in sizes):
        raise ShapeError(f"{op}: split sizes {sizes} must be >= 0 and sum to {length}")
    bounds = np.cumsum(sizes)[:-1]
    return tuple(np.ascontiguousarray(p) for p in np.split(x, bounds, axis=ax))


@register("Split", since=2)
def split_2(x, *, axis=0, split=None, _num_outputs):
    return _split(x, list(split or []), _num_outputs, axis)


@register("Split", since=13)
def split_13(x, split=None, *, axis=0, _num_outputs):
    return _split(x, _ints(split, "Split", "split"), _num_outputs, axis)


@register("Split", since=18)
def split_18(x, split=None, *, axis=0, num_outputs=None, _num_outputs):
    sizes = _ints(split, "Split", "split")
    if num_outputs is not None and sizes:
        raise InvalidAttributeError("Split: give either the 'split' input or num_outputs")
    if num_outputs is not None and not sizes:
        ax = _axis(axis, x.ndim, "Split")
        length = x.shape[ax]
        chunk = -(-length // num_outputs)  # the last chunk may be smaller
        sizes = [min(chunk, max(length - i * chunk, 0)) for i in range(num_outputs)]
    return _split(x, sizes, _num_outputs, axis)


def _squeeze(x, axes, op="Squeeze"):
    if not axes:
        return x.reshape([d for d in x.shape if d != 1])
    norm = sorted({_axis(a, x.ndim, op) for a in axes})
    for a in norm:
        if x.shape[a] != 1:
            raise ShapeError(f"{op}: axis {a} has size {x.shape[a]}, expected 1 (shape {x.shape})")
    return x.reshape([d for i, d in enumerate(x.shape) if i not in norm])


@register("Squeeze", since=1)
def squeeze_1(x, *, axes=None):
    return _squeeze(x, list(axes or []))


@register("Squeeze", since=13)
def squeeze_13(x, axes=None):
    return _squeeze(x, _ints(axes, "Squeeze", "axes"))


def _unsqueeze(x, axes, op="Unsqueeze"):
    rank = x.ndim + len(axes)
    norm = sorted(_axis(a, rank, op, "axes entry") for a in axes)
    if len(set(norm)) != len(norm):
        raise InvalidAttributeError(f"{op}: axes {list(axes)} repeat an axis")
    shape = list(x.shape)
    for a in norm:
        shape.insert(a, 1)
    return x.reshape(shape)


@register("Unsqueeze", since=1)
def unsqueeze_1(x, *, axes):
    return _unsqueeze(x, list(axes))


@register("Unsqueeze", since=13)
def unsqueeze_13(x, axes):
    return _unsqueeze(x, _ints(axes, "Unsqueeze", "axes"))


@register("Gather", since=1)
def gather(data, indices, *, axis=0):
    ax = _axis(axis, data.ndim, "Gather")
    idx = np.asarray(indices)
    if idx.dtype.kind not in "iu":
        raise ShapeError(f"Gather: indices must be integers, received {idx.dtype}")
    n = data.shape[ax]
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ShapeError(
            f"Gather: indices range {idx.min()}..{idx.max()} outside [-{n}, {n - 1}] on axis {ax}"
        )
    check_size(data.shape[:ax] + idx.shape + data.shape[ax + 1 :], data.dtype, "Gather output")
    return np.take(data, np.where(idx < 0, idx + n, idx), axis=ax)


def _slice(x, starts, ends, axes, steps, op="Slice"):
    if not axes:
        axes = list(range(len(starts)))
    if not steps:
        steps = [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ShapeError(
            f"{op}: starts, ends, axes, steps must have one length, received "
            f"{len(starts)}, {len(ends)}, {len(axes)}, {len(steps)}"
        )
    index = [slice(None)] * x.ndim
    seen = set()
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        a = _axis(a, x.ndim, op, "axes entry")
        if a in seen:
            raise InvalidAttributeError(f"{op}: axis {a} is sliced twice")
        seen.add(a)
        if st == 0:
            raise InvalidAttributeError(f"{op}: step 0 on axis {a}: expected a non-zero step")
        dim = x.shape[a]
        # ONNX clamps to [0, dim] for positive steps and [-1, dim-1] for negative ones;
        # Python slices clamp the same way once values are normalised.
        s = s + dim if s < 0 else s
        e = e + dim if e < 0 else e
        if st > 0:
            s, e = min(max(s, 0), dim), min(max(e, 0), dim)
        else:
            s, e = min(max(s, -1), dim - 1), min(max(e, -1), dim - 1)
        index[a] = slice(s, None if (st < 0 and e < 0) else e, st)
    return np.ascontiguousarray(x[tuple(index)])


@register("Slice", since=1)
def slice_1(x, *, starts, ends, axes=None):
    return _slice(x, list(starts), list(ends), list(axes or []), [])


@register("Slice", since=10)
def slice_10(x, starts, ends, axes=None, steps=None):
    return _slice(
        x,
        _ints(starts, "Slice", "starts"),
        _ints(ends, "Slice", "ends"),
        _ints(axes, "Slice", "axes"),
        _ints(steps, "Slice", "steps"),
    )


_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def _pad(x, pads, mode, value, axes=None, op="Pad"):
    if mode not in _PAD_MODES:
        raise InvalidAttributeError(f"{op}: mode {mode!r}: expected one of {sorted(_PAD_MODES)}")
    axes = list(range(x.ndim)) if not axes else [_axis(a, x.ndim, op, "axes entry") for a in axes]
    if len(pads) != 2 * len(axes):
        raise ShapeError(
            f"{op}: expected {2 * len(axes)} pads for {len(axes)} axes, received {len(pads)}"
        )
    width = [(0, 0)] * x.ndim
    for i, a in enumerate(axes):
        width[a] = (pads[i], pads[i + len(axes)])
    # Negative pads crop; numpy only pads, so crop first, then pad the positive part.
    crop = tuple(slice(max(-b, 0), x.shape[i] - max(-e, 0)) for i, (b, e) in enumerate(width))
    x = x[crop]
    width = [(max(b, 0), max(e, 0)) for b, e in width]
    out_shape = tuple(max(d, 0) + b + e for d, (b, e) in zip(x.shape, width, strict=True))
    check_size(out_shape, x.dtype, f"{op} output")
    if mode != "constant" and any(
        (b or e) and d == 0 for d, (b, e) in zip(x.shape, width, strict=True)
    ):
        raise ShapeError(f"{op}: mode {mode!r} cannot pad an empty axis of shape {x.shape}")
    if mode == "constant":
        return np.pad(x, width, mode="constant", constant_values=value)
    return np.pad(x, width, mode=_PAD_MODES[mode])


@register("Pad", since=2)
def pad_2(x, *, pads, mode="constant", value=0.0):
    return _pad(x, list(pads), mode, x.dtype.type(value))


@register("Pad", since=11)
def pad_11(x, pads, constant_value=None, axes=None, *, mode="constant"):
    value = x.dtype.type(0) if constant_value is None else np.asarray(constant_value).reshape(-1)
    if not np.isscalar(value):
        value = x.dtype.type(0) if value.size == 0 else value[0]
    return _pad(x, _ints(pads, "Pad", "pads"), mode, value, _ints(axes, "Pad", "axes"))
