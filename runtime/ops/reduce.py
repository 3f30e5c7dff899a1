"""Reductions: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd, ReduceSumSquare,
ReduceL1, ReduceL2, ReduceLogSum, ReduceLogSumExp; ArgMax, ArgMin, TopK, CumSum, CumProd.

A float32 Sum, Mean, Max, Min, SumSquare, L1 or L2 over adjacent axes (ReduceMean
over the spatial axes is the global pooling of many CNNs) runs the parallel
``kernels.reduce.reduce_middle`` kernel (``reduce_rows`` where the reduced axes are
the last ones); every other case is plain NumPy. A float32 Mean over the last axes
(MNASNet's and ShuffleNetV2's global mean: ReduceMean over H and W) runs the global
average pool's kernels instead (``nn.global_pool_into``: sixteen planes' sums
transposed in registers), laid out once per input shape when its axes are known at
load (``ReduceMeanCall``). Versions:
the Reduce ops take ``axes`` as an attribute before opset 18 (ReduceSum before 13)
and as an optional input after, with ``noop_with_empty_axes``; ArgMax and ArgMin gain
``select_last_index`` at 12; TopK takes ``k`` as an attribute before 10 and
``largest`` and ``sorted`` from 11.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.kernel_table import Choice
from runtime.kernels.reduce import MODES, reduce_middle, reduce_rows
from runtime.memory import allocate
from runtime.ops.nn import GLOBAL_POOL, _parallel, global_pool_into
from runtime.ops.registry import register


def _axis(op: str, axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise InvalidAttributeError(
            f"{op}: {what} {axis} is out of range for rank {rank} (expected {-rank}..{rank - 1})"
        )
    return axis % max(rank, 1)


def _axes_input(op: str, axes: np.ndarray | None) -> list[int] | None:
    if axes is None:
        return None
    if axes.dtype.kind not in "iu" or axes.ndim > 1:
        raise ShapeError(
            f"{op}: input 'axes' must be a 1-D integer tensor, received {axes.dtype} {axes.shape}"
        )
    return [int(a) for a in axes.reshape(-1)]


def _norm_axes(op: str, axes, rank: int, noop: int) -> tuple[int, ...]:
    """The reduced axes, sorted; () for a no-op (empty axes and noop_with_empty_axes)."""
    if axes is None or len(axes) == 0:
        return () if noop else tuple(range(rank))
    norm = [_axis(op, int(a), rank, "axes entry") for a in axes]
    if len(set(norm)) != len(norm):
        raise InvalidAttributeError(f"{op}: axes {list(axes)} name an axis twice")
    return tuple(sorted(norm))


def _extreme(x: np.ndarray, biggest: bool):
    """The largest (or smallest) value of x's type: the identity of min (of max), what
    a reduction over no elements gives."""
    if x.dtype.kind == "b":
        return biggest
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return info.max if biggest else info.min
    return np.inf if biggest else -np.inf


def _numpy_reduce(kind: str, x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    kw = {"axis": axes, "keepdims": keep}
    with np.errstate(all="ignore"):
        if kind == "Sum":
            return np.sum(x, dtype=x.dtype, **kw)
        if kind == "Mean":
            return np.mean(x, **kw).astype(x.dtype)
        if kind == "Max":
            return np.max(x, initial=_extreme(x, False), **kw)
        if kind == "Min":
            return np.min(x, initial=_extreme(x, True), **kw)
        if kind == "Prod":
            return np.prod(x, dtype=x.dtype, **kw)
        if kind == "SumSquare":
            return np.sum(np.square(x), dtype=x.dtype, **kw)
        if kind == "L1":
            return np.sum(np.abs(x), dtype=x.dtype, **kw)
        if kind == "L2":
            wide = x.astype(np.float64) if x.dtype.kind in "iu" else x
            return np.sqrt(np.sum(np.square(wide), **kw)).astype(x.dtype)
        if kind == "LogSum":
            return np.log(np.sum(x, **kw)).astype(x.dtype)
        # LogSumExp, shifted by the maximum so that exp does not overflow
        top = np.max(x, initial=_extreme(x, False), axis=axes, keepdims=True)
        shift = np.where(np.isfinite(top), top, 0).astype(x.dtype)
        total = np.log(np.sum(np.exp(x - shift), **kw))
        return (total + (shift if keep else np.squeeze(shift, axis=axes))).astype(x.dtype)


def _kernel_view(x: np.ndarray, axes: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(A, K, B) when x is a float32 tensor reduced over adjacent axes, K > 0."""
    if x.dtype != np.float32 or not axes or list(axes) != list(range(axes[0], axes[-1] + 1)):
        return None
    a = int(np.prod(x.shape[: axes[0]], dtype=np.int64))
    k = int(np.prod(x.shape[axes[0] : axes[-1] + 1], dtype=np.int64))
    b = int(np.prod(x.shape[axes[-1] + 1 :], dtype=np.int64))
    return (a, k, b) if k > 0 else None


def reduce(
    kind: str,
    x: np.ndarray,
    axes: list[int] | tuple[int, ...] | None,
    keepdims: int,
    noop: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Reduce-``kind`` of x over ``axes`` (None: all, unless ``noop``)."""
    op = f"Reduce{kind}"
    if keepdims not in (0, 1):
        raise InvalidAttributeError(f"{op}: keepdims {keepdims}: expected 0 or 1")
    if x.dtype.kind not in "biuf" or (x.dtype.kind == "b" and kind not in ("Max", "Min")):
        raise ShapeError(f"{op}: input type {x.dtype} is not supported")
    if kind in ("LogSum", "LogSumExp", "Mean") and x.dtype.kind == "b":
        raise ShapeError(f"{op}: input type bool is not supported")
    ax = _norm_axes(op, axes, x.ndim, noop)
    shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape) if keepdims or i not in ax)
    view = _kernel_view(x, ax) if kind in MODES or kind == "L2" else None
    if view is None:
        return np.asarray(_numpy_reduce(kind, x, ax, bool(keepdims)))
    a, k, b = view
    y = allocate(shape, np.float32, f"{op} output", out)
    mode = MODES["SumSquare" if kind == "L2" else kind]
    if b == 1 and kind == "Mean":  # a global average pooling
        global_pool_into(np.ascontiguousarray(x).reshape(a, k), y.reshape(a), False)
    elif b == 1:  # a row of k values for each output: a global pooling
        reduce_rows(np.ascontiguousarray(x).reshape(a, k), y.reshape(a), mode)
    else:
        reduce_middle(np.ascontiguousarray(x).reshape(a, k, b), y.reshape(a, b), mode)
    if kind == "L2":
        np.sqrt(y, out=y)
    return y


REDUCE = ("reduce.reduce_middle", "reduce.reduce_rows")  # the float32 kernels


class ReduceMeanCall:
    """A float32 ReduceMean over the last axes laid out for one input shape: a
    global average pooling of rows of k values (``nn.global_pool_into``), the call
    running the kernel and little else."""

    def __init__(self, shape: tuple[int, ...], out_shape: tuple[int, ...], a: int, k: int):
        self.shape, self.rows = out_shape, (a, k)
        parallel = _parallel(a * k)
        self.choice = Choice(
            "global_pool_parallel" if parallel else "global_pool_rows",
            f"a mean over the last axes: {a} row(s) of {k}, the global average pool's "
            + ("jobs over the threads" if parallel else "kernel; small: one thread"),
            GLOBAL_POOL[1:] if parallel else GLOBAL_POOL[:1],
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = allocate(self.shape, np.float32, "ReduceMean output", out)
        global_pool_into(np.ascontiguousarray(x).reshape(self.rows), y.reshape(-1), False)
        return y


def _mean_prepare(x: np.ndarray, args: list, attrs) -> ReduceMeanCall | None:
    """A ``ReduceMeanCall`` where x is float32 and the axes (attribute, or a constant
    input) are its last ones; else None (the step runs ``reduce``, which checks)."""
    if x.dtype != np.float32 or x.size == 0:
        return None
    keep, noop = attrs.get("keepdims", 1), attrs.get("noop_with_empty_axes", 0)
    axes = args[0] if args else attrs.get("axes")
    try:
        if args and axes is not None:
            axes = _axes_input("ReduceMean", axes)
        ax = _norm_axes("ReduceMean", axes, x.ndim, noop)
    except (ShapeError, InvalidAttributeError):
        return None
    if keep not in (0, 1) or not ax or list(ax) != list(range(ax[0], x.ndim)):
        return None
    shape = tuple(1 if i in ax else d for i, d in enumerate(x.shape) if keep or i not in ax)
    a = int(np.prod(x.shape[: ax[0]], dtype=np.int64))
    return ReduceMeanCall(x.shape, shape, a, x.size // max(a, 1))


def _register_reduce(kind: str, input_since: int) -> None:
    """Reduce-``kind`` with ``axes`` as attribute (opset 1) and as input (``input_since``)."""

    def with_attribute(data, *, axes=None, keepdims=1, _out=None):
        return reduce(kind, data, axes, keepdims, 0, _out and _out[0])

    def with_input(data, axes=None, *, keepdims=1, noop_with_empty_axes=0, _out=None):
        listed = _axes_input(f"Reduce{kind}", axes)
        return reduce(kind, data, listed, keepdims, noop_with_empty_axes, _out and _out[0])

    kernels = REDUCE + GLOBAL_POOL if kind == "Mean" else REDUCE
    for fn, since in ((with_attribute, 1), (with_input, input_since)):
        fn.__name__ = f"reduce_{kind.lower()}_{since}"
        if kind == "Mean":
            fn.prepare = _mean_prepare
        register(f"Reduce{kind}", since=since, kernels=kernels)(fn)


_register_reduce("Sum", 13)
for _kind in ("Mean", "Max", "Min", "Prod", "SumSquare", "L1", "L2", "LogSum", "LogSumExp"):
    _register_reduce(_kind, 18)


# ------------------------------------------------------------------------ arg ops


def _arg(op: str, x: np.ndarray, axis: int, keepdims: int, last: int) -> np.ndarray:
    if keepdims not in (0, 1) or last not in (0, 1):
        raise InvalidAttributeError(
            f"{op}: keepdims {keepdims} and select_last_index {last}: expected 0 or 1 each"
        )
    ax = _axis(op, axis, x.ndim)
    if x.ndim and x.shape[ax] == 0:
        raise ShapeError(f"{op}: axis {axis} of X {x.shape} is empty: no index to select")
    find = np.argmax if op == "ArgMax" else np.argmin
    idx = x.shape[ax] - 1 - find(np.flip(x, ax), axis=ax) if last else find(x, axis=ax)
    idx = idx.astype(np.int64)
    return np.expand_dims(idx, ax) if keepdims else idx


for _op in ("ArgMax", "ArgMin"):

    def _register_arg(op: str = _op) -> None:
        @register(op, since=1)
        def arg_1(data, *, axis=0, keepdims=1):
            return _arg(op, data, axis, keepdims, 0)

        @register(op, since=12)
        def arg_12(data, *, axis=0, keepdims=1, select_last_index=0):
            return _arg(op, data, axis, keepdims, select_last_index)

    _register_arg()


# ------------------------------------------------------------------------- TopK


def _topk(x: np.ndarray, k: int, axis: int, largest: int) -> tuple[np.ndarray, np.ndarray]:
    ax = _axis("TopK", axis, x.ndim)
    if not 0 <= k <= x.shape[ax]:
        raise ShapeError(f"TopK: k {k}: expected 0..{x.shape[ax]} (axis {axis} of X {x.shape})")
    if largest:
        # descending, ties by ascending index: a stable ascending sort of the flipped axis
        flipped = np.argsort(np.flip(x, ax), axis=ax, kind="stable")
        order = x.shape[ax] - 1 - np.flip(flipped, ax)
    else:
        order = np.argsort(x, axis=ax, kind="stable")
    idx = np.take(order, np.arange(k), axis=ax).astype(np.int64)
    return np.take_along_axis(x, idx, axis=ax), idx


def _k_input(k: np.ndarray) -> int:
    if k.dtype.kind not in "iu" or k.size != 1:
        raise ShapeError(f"TopK: input K must hold one integer, received {k.dtype} {k.shape}")
    return int(k.reshape(()))


@register("TopK", since=1)
def topk_1(x, *, axis=-1, k):
    return _topk(x, k, axis, 1)


@register("TopK", since=10)
def topk_10(x, k, *, axis=-1):
    return _topk(x, _k_input(k), axis, 1)


@register("TopK", since=11)
def topk_11(x, k, *, axis=-1, largest=1, sorted=1):
    if sorted not in (0, 1) or largest not in (0, 1):
        raise InvalidAttributeError(
            f"TopK: largest {largest} and sorted {sorted}: expected 0 or 1 each"
        )
    return _topk(x, _k_input(k), axis, largest)  # sorted=0 allows any order: sorted is one


# --------------------------------------------------------------- CumSum, CumProd


def _cumulative(
    op: str, x: np.ndarray, axis: np.ndarray, exclusive: int, reverse: int, ufunc: np.ufunc
) -> np.ndarray:
    if axis.dtype.kind not in "iu" or axis.size != 1:
        raise ShapeError(
            f"{op}: input axis must hold one integer, received {axis.dtype} {axis.shape}"
        )
    if x.ndim == 0:
        raise ShapeError(f"{op}: input x must have rank >= 1, received a scalar")
    ax = _axis(op, int(axis.reshape(())), x.ndim)
    y = np.flip(x, ax) if reverse else x
    acc = ufunc.accumulate(y, axis=ax, dtype=x.dtype)
    if exclusive:
        first = np.full_like(np.take(acc, [0], axis=ax), ufunc.identity)
        acc = np.concatenate([first, np.take(acc, np.arange(x.shape[ax] - 1), axis=ax)], ax)
    return np.ascontiguousarray(np.flip(acc, ax) if reverse else acc)


@register("CumSum", since=11)
def cumsum(x, axis, *, exclusive=0, reverse=0):
    return _cumulative("CumSum", x, axis, exclusive, reverse, np.add)


@register("CumProd", since=26)
def cumprod(x, axis, *, exclusive=0, reverse=0):
    return _cumulative("CumProd", x, axis, exclusive, reverse, np.multiply)
