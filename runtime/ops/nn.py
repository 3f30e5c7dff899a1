"""Neural-network ops: Conv, pooling, BatchNormalization, LRN, Gemm, MatMul, Softmax.

The public functions check attributes and shapes and raise typed errors; the
``@njit`` kernels in ``runtime/kernels`` only compute. Conv and the pools work in
float32 (the kernels' type); a different input type is a clear error.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numba
import numpy as np

from runtime import kernel_table
from runtime.config import GEMM_FEW_ROWS
from runtime.errors import InvalidAttributeError, ShapeError
from runtime.kernel_table import Choice
from runtime.kernels import gemm as gemm_kernels
from runtime.kernels import matvec as matvec_kernels
from runtime.kernels import normalize as normalize_kernels
from runtime.kernels import pool as pool_kernels
from runtime.kernels.activation import ACTIVATIONS, activate, softmax_rows
from runtime.kernels.simd import WIDTH
from runtime.memory import allocate, check_size, scratch
from runtime.ops.registry import register

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
# the @njit kernels of the ops that run them outside the kernel table (``register``)
MAX_POOL = ("pool.max_pool_rows", "pool.max_pool_rows_planes", "pool._max_pool3d")
GLOBAL_POOL = ("pool.global_pool_rows", "pool._global_pool")
SQUEEZE_EXCITE = ("matvec.squeeze_excite", "matvec.squeeze_excite_images")
MATVEC = ("matvec.matvec_rows", "matvec.matvec_rows_panels")
# Below this many floats of work a kernel runs serially: starting a parallel region
# costs microseconds (more after a conv has swept the caches), as much as the work.
SERIAL_FLOATS = 1 << 16
GEMM = (
    "gemm._pack_a",
    "gemm._pack_b",
    "gemm._gemm_f32_tiles",
    "gemm._gemm_f32_rows",
)  # kernel_table.matmul
SOFTMAX = ("activation.softmax_rows",)  # the bound float32 call (``_softmax_call``)


def _parallel(floats: int) -> bool:
    """Whether work of ``floats`` floats runs in a parallel region."""
    return floats >= SERIAL_FLOATS and numba.get_num_threads() > 1


def _float32(op: str, name: str, x: np.ndarray) -> np.ndarray:
    if x.dtype != np.float32:
        raise ShapeError(f"{op}: input {name} must be float32, received {x.dtype}")
    return np.ascontiguousarray(x)


def _spatial(
    op: str,
    in_shape: tuple[int, ...],
    kernel: tuple[int, ...],
    *,
    auto_pad: str,
    pads,
    strides,
    dilations,
    ceil_mode: int = 0,
    pool: bool = False,
) -> tuple[list[int], list[int], list[int], list[int], list[int]]:
    """Check the window attributes; return (out, pads_begin, pads_end, strides, dilations).
    ``pool``: sizes as onnxruntime's pools give them where the window is larger than the
    padded input (none, or one window reaching past it), not an error."""
    nd = len(in_shape)
    strides = [1] * nd if strides is None else list(strides)
    dilations = [1] * nd if dilations is None else list(dilations)
    if len(strides) != nd or len(dilations) != nd:
        raise InvalidAttributeError(
            f"{op}: strides {strides} and dilations {dilations} need {nd} values each"
        )
    if any(s < 1 for s in strides):
        raise InvalidAttributeError(f"{op}: strides {strides}: expected every stride >= 1")
    if any(d < 1 for d in dilations):
        raise InvalidAttributeError(f"{op}: dilations {dilations}: expected every dilation >= 1")
    if any(k < 1 for k in kernel):
        raise InvalidAttributeError(f"{op}: kernel_shape {list(kernel)}: expected sizes >= 1")
    if auto_pad not in AUTO_PADS:
        raise InvalidAttributeError(f"{op}: auto_pad {auto_pad!r}: expected one of {AUTO_PADS}")
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dilations, strict=True)]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        out = [-(-i // s) for i, s in zip(in_shape, strides, strict=True)]
        total = [
            max((o - 1) * s + e - i, 0)
            for o, s, e, i in zip(out, strides, eff, in_shape, strict=True)
        ]
        small = [t // 2 for t in total]
        big = [t - t // 2 for t in total]
        begin, end = (small, big) if auto_pad == "SAME_UPPER" else (big, small)
        return out, begin, end, strides, dilations
    if auto_pad == "VALID":
        begin, end = [0] * nd, [0] * nd
    else:
        pads = [0] * (2 * nd) if pads is None else list(pads)
        if len(pads) != 2 * nd:
            raise InvalidAttributeError(f"{op}: pads {pads}: expected {2 * nd} values")
        if any(p < 0 for p in pads):
            raise InvalidAttributeError(f"{op}: pads {pads}: expected every pad >= 0")
        begin, end = pads[:nd], pads[nd:]
    out = []
    for i, b, e_, k, s in zip(in_shape, begin, end, eff, strides, strict=True):
        span = i + b + e_ - k
        # span // s rounded up with ceil_mode, else toward zero (onnxruntime's integer
        # division: a negative span rounds up too)
        o = (-(-span // s) if ceil_mode or span < 0 else span // s) + 1
        if ceil_mode and (o - 1) * s >= i + b:
            o -= 1  # the last window would start inside the end padding only
        # A conv's window must fit the padded input. A pool's may not: with ceil_mode the
        # spec's ceil((i + pads - k) / s + 1) may give one window reaching past the end (a
        # 1x1 image through a 2x2 pool of stride 2: one output, as onnxruntime and torch);
        # onnxruntime's pools give no window (an empty output) or one, and fail below 0.
        if span < 0 and (o < 0 if pool else o < 1 or not ceil_mode):
            raise ShapeError(
                f"{op}: window {k} (dilated) is larger than the padded input {i + b + e_}"
            )
        out.append(o)
    return out, begin, end, strides, dilations


def _to3d(values: list[int], fill: int) -> tuple[int, int, int]:
    return tuple([fill] * (3 - len(values)) + list(values))  # type: ignore[return-value]


def _as5d(x: np.ndarray) -> np.ndarray:
    return x.reshape(x.shape[:2] + (1,) * (5 - x.ndim) + x.shape[2:])


def conv_forward(x, w, b=None, res=None, *, _out=None, **attrs):
    """Conv, with the fused extras the planner uses: ``conv_call``, then the call
    (``res``: the other operand of a residual Add fused into it).

    A float16 or float64 Conv runs on float32 copies (the kernels' type), cast back."""
    if x.dtype in (np.float16, np.float64):
        b32 = None if b is None else b.astype(np.float32)
        r32 = None if res is None else res.astype(np.float32)
        y = conv_forward(x.astype(np.float32), w.astype(np.float32), b32, r32, **attrs)
        return y.astype(x.dtype)
    x = _float32("Conv", "X", x)
    return conv_call(x.shape, w, b, **attrs)(x, _out and _out[0], res)


class ConvCall:
    """A Conv checked and laid out for one input shape: ``call(x, out=None, res=None)``
    runs it (``out``: a planned buffer, used when it has the output's shape; ``res``:
    with ``res_shape``, the other operand of the residual Add fused into the conv)."""

    def __init__(
        self,
        out_shape: tuple[int, ...],
        run: Callable,
        choice: Choice | None,
        res_shape: tuple[int, ...] | None = None,
        unfused: Callable | None = None,
    ) -> None:
        self.out_shape, self.run, self.choice = out_shape, run, choice
        self.res_shape = res_shape  # the conv's output before a fused pool
        self.unfused = unfused  # unfused(x, res): for a residual of another shape

    def __call__(
        self, x: np.ndarray, out: np.ndarray | None = None, res: np.ndarray | None = None
    ) -> np.ndarray:
        if out is None or out.shape != self.out_shape or out.dtype != np.float32:
            out = allocate(self.out_shape, np.float32, "Conv output")  # no planned buffer
        if not out.size:  # an empty batch: nothing to compute (the kernels' tiling divides by it)
            return out
        if self.res_shape is None:
            self.run(x, out)
        elif self.unfused is not None and res is not None and res.shape != self.res_shape:
            return self.unfused(x, res)  # broadcast: the Add as its own pass
        else:
            self.run(x, out, self.residual(res))
        return out

    def residual(self, res: np.ndarray | None) -> np.ndarray:
        """The residual Add's other operand, flat, float32, C-contiguous and writable
        (one array type for the kernels; another layout is copied)."""
        if res is None or res.dtype != np.float32:
            what = "no input" if res is None else f"a {res.dtype} input"
            raise ShapeError(f"Add fused into a Conv: {what}; expected float32 like the conv's")
        if res.shape != self.res_shape:
            raise ShapeError(
                f"Add fused into a Conv: its other input {res.shape} is not shaped as the "
                f"conv's output {self.res_shape}"
            )
        if not (res.flags.c_contiguous and res.flags.writeable):
            res = np.array(res, np.float32, order="C")
        return res.reshape(-1)


def _unfused_residual(x_shape, w, b, conv_attrs, epilogue, pool) -> Callable:
    """``unfused(x, res)``: a residual Add fused into a conv, for an other operand not
    shaped as the conv's output (broadcast either way, as ONNX's Add allows): the conv
    alone (laid out on first use), then the Add, the activation, scale and shift and
    max pool, each its own pass, as the graph before the fusion computes them."""
    calls: list[ConvCall] = []

    def unfused(x: np.ndarray, res: np.ndarray) -> np.ndarray:
        if res.dtype != np.float32:
            raise ShapeError(f"Add fused into a Conv: a {res.dtype} input; expected float32")
        if not calls:
            calls.append(conv_call(x_shape, w, b, **conv_attrs))
        y = calls[0](x)
        try:
            s = np.add(y, res, dtype=np.float32)
        except ValueError:
            raise ShapeError(
                f"Add fused into a Conv: its other input {res.shape} does not broadcast with "
                f"the conv's output {y.shape}"
            ) from None
        act, alpha, beta, scale, shift = epilogue
        if act:
            flat = s.reshape(-1)
            one, zero = np.float32(1.0), np.float32(0.0)
            activate(flat, flat.size, zero, act, np.float32(alpha), np.float32(beta), one, zero)
        along = (-1,) + (1,) * (y.ndim - 2)  # the conv's channel axis, counted from the end
        if scale is not None:
            s *= scale.reshape(along)
        if shift is not None:
            s += shift.reshape(along)
        if pool is None:
            return s
        return max_pool(s, kernel_shape=list(pool[:2]), strides=list(pool[2:]), _num_outputs=1)

    return unfused


def kernel_constant(a: np.ndarray) -> np.ndarray:
    """``a`` as float32, C-contiguous and writable, copied only where it is not.

    numba compiles one specialization per array type, and read-only is part of the
    type: a read-only initializer and a computed array (zeros for an absent bias, a
    folded BatchNormalization's weights) would each compile the kernel, so that a
    model could compile after ``cnn warmup``. Every constant a conv kernel takes is
    made alike here, once per plan.
    """
    a = np.ascontiguousarray(a, np.float32)
    return a if a.flags.writeable else a.copy()


def conv_call(
    x_shape,
    w,
    b=None,
    *,
    winograd=None,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
    activation=None,
    alpha=0.01,
    beta=0.0,
    post_scale=None,
    post_shift=None,
    max_pool=None,
    residual=False,
) -> ConvCall:
    """Check a Conv of inputs shaped ``x_shape`` and lay it out, with the fused extras
    the planner uses (activation, then scale and shift, then ``max_pool`` (kh, kw, sh,
    sw): a 2-D max pooling with no padding). The engine keeps the call in the plan of
    that input shape.

    ``winograd``: a ``kernel_table.WinogradWeights`` (the kernel table found the conv
    Winograd-worthy at load); a 2-D convolution with equal strides, dilation 1 and
    group 1 then runs as Winograd, its tile chosen per shape (``kernel_table``).
    ``residual``: a residual Add fused into the conv (``passes.fuse_conv_residual_add``):
    the call takes its other operand, added after the bias, before the activation.
    """
    w = _float32("Conv", "W", w)
    if len(x_shape) not in (3, 4, 5) or w.ndim != len(x_shape):
        raise ShapeError(
            f"Conv: expected X and W of one rank among 3, 4, 5 (1-D to 3-D), "
            f"received X {tuple(x_shape)} and W {w.shape}"
        )
    n, c = x_shape[:2]
    m, cg = w.shape[:2]
    if group < 1 or c % group or m % group:
        raise InvalidAttributeError(
            f"Conv: group {group} must divide the {c} input and {m} output channels"
        )
    if cg * group != c:
        raise ShapeError(
            f"Conv: X has {c} channels, W expects {cg} per group x {group} groups = {cg * group}"
        )
    kernel = w.shape[2:]
    if kernel_shape is not None and tuple(kernel_shape) != kernel:
        raise ShapeError(f"Conv: kernel_shape {list(kernel_shape)} but W has {list(kernel)}")
    if b is None:
        b = np.zeros(m, np.float32)
    elif b.shape != (m,):
        raise ShapeError(f"Conv: B must have shape ({m},), received {b.shape}")
    w, b = kernel_constant(w), kernel_constant(b)
    post_scale = None if post_scale is None else kernel_constant(post_scale)
    post_shift = None if post_shift is None else kernel_constant(post_shift)
    out_sp, begin, _, st, dil = _spatial(
        "Conv", x_shape[2:], kernel, auto_pad=auto_pad, pads=pads, strides=strides,
        dilations=dilations,
    )  # fmt: skip
    pooled_sp = out_sp
    if max_pool is not None:
        if len(out_sp) != 2 or len(max_pool) != 4:
            raise InvalidAttributeError(
                f"Conv: max_pool {max_pool} fuses a 2-D pooling: expected (kh, kw, sh, sw) "
                f"and a 2-D convolution, received a {len(out_sp)}-D one"
            )
        pooled_sp, *_ = _spatial("MaxPool", out_sp, max_pool[:2], auto_pad="NOTSET", pads=None,
                                 strides=max_pool[2:], dilations=None, pool=True)  # fmt: skip
    # A window larger than the conv's output: onnxruntime's pool gives one output (the max
    # of what the window holds) or none, which the fused kernels' stores do not cover, so
    # the MaxPool op pools the conv's output apart.
    apart = max_pool is not None and any(o < k for o, k in zip(out_sp, max_pool[:2], strict=True))
    out_shape = (n, m, *pooled_sp)
    # Sizes are checked before anything is laid out: a huge pad or batch must be a
    # TensorTooLargeError here, not a MemoryError inside a kernel's work arrays.
    check_size(out_shape, np.float32, "Conv output")
    check_size((n, m, *out_sp), np.float32, "Conv output before its fused max pool")
    spec = kernel_table.ConvSpec(
        w, group, tuple(st), tuple(dil), tuple(begin), winograd=winograd,
        x_shape=tuple(x_shape), out_sp=tuple(out_sp), bias=b,
        epilogue={"act": ACTIVATIONS[activation], "alpha": alpha, "beta": beta,
                  "scale": post_scale, "shift": post_shift},
        max_pool=None if max_pool is None or apart else tuple(max_pool), residual=bool(residual),
    )  # fmt: skip
    choice, run = kernel_table.choose_conv(spec)
    if apart:
        run = _pooled_apart(run, (n, m, *out_sp), max_pool)
        choice = Choice(choice.algorithm, choice.reason + "; the max pool apart (its window is "
                        "larger than the conv's output)",
                        choice.runs + kernel_table.POOL_AFTER)  # fmt: skip
    if not residual:
        return ConvCall(out_shape, run, choice)
    conv_attrs = dict(winograd=winograd, auto_pad=auto_pad, dilations=dilations, group=group,
                      kernel_shape=kernel_shape, pads=pads, strides=strides)  # fmt: skip
    epilogue = (ACTIVATIONS[activation], alpha, beta, post_scale, post_shift)
    unfused = _unfused_residual(x_shape, w, b, conv_attrs, epilogue, max_pool)
    return ConvCall(out_shape, run, choice, (n, m, *out_sp), unfused)


def _pooled_apart(run: Callable, conv_shape: tuple[int, ...], pool: tuple[int, ...]) -> Callable:
    """``run`` into a scratch array of the conv's whole output, then the MaxPool op's own
    pooling of it (``pool``: kh, kw, sh, sw) into out."""

    def run_then_pool(x: np.ndarray, out: np.ndarray, *res: np.ndarray) -> None:
        conv = scratch("conv.unpooled_apart", conv_shape, np.float32)
        run(x, conv, *res)
        max_pool(conv, kernel_shape=list(pool[:2]), strides=list(pool[2:]), _out=[out],
                 _num_outputs=1)  # fmt: skip

    return run_then_pool


@register("Conv", since=1)
def conv(x, w, b=None, *, auto_pad="NOTSET", dilations=None, group=1, kernel_shape=None,
         pads=None, strides=None, _out=None):  # fmt: skip
    return conv_forward(x, w, b, auto_pad=auto_pad, dilations=dilations, group=group,
                        kernel_shape=kernel_shape, pads=pads, strides=strides,
                        _out=_out)  # fmt: skip


def pool_setup(op, x, kernel_shape, auto_pad, pads, strides, dilations, ceil_mode):
    x = _float32(op, "X", x)
    if x.ndim not in (3, 4, 5):
        raise ShapeError(f"{op}: expected X of rank 3 to 5 (N, C, spatial...), received {x.shape}")
    if kernel_shape is None or len(kernel_shape) != x.ndim - 2:
        raise InvalidAttributeError(
            f"{op}: kernel_shape {kernel_shape}: expected {x.ndim - 2} sizes for input {x.shape}"
        )
    out_sp, begin, end, st, dil = _spatial(
        op, x.shape[2:], tuple(kernel_shape), auto_pad=auto_pad, pads=pads, strides=strides,
        dilations=dilations, ceil_mode=ceil_mode, pool=True,
    )  # fmt: skip
    return x, out_sp, begin, end, st, dil


# What onnxruntime's max pools give a window with no tap inside the input (a dilated
# window whose taps straddle a small input, or pads as wide as the window): the lowest
# float, where our kernels' maximum of nothing is -inf.
LOWEST = np.finfo(np.float32).min


def empty_windows(in_sp, out_sp, begin, kernel, strides, dilations) -> np.ndarray | None:
    """The windows with no tap inside the input, a boolean array shaped ``out_sp``, or
    None where there is none (the usual case, told apart in a few integer tests)."""
    geometry = list(zip(in_sp, out_sp, begin, kernel, strides, dilations, strict=True))
    if all(d == 1 and b < k and (o - 1) * s - b < i for i, o, b, k, s, d in geometry):
        return None  # every window of contiguous taps overlaps the input
    mask = np.zeros(tuple(out_sp), bool)
    for axis, (i, o, b, k, s, d) in enumerate(geometry):
        taps = np.arange(o)[:, None] * s - b + np.arange(k)[None, :] * d  # (o, k)
        outside = ~((taps >= 0) & (taps < i)).any(axis=1)
        mask |= outside.reshape([o if a == axis else 1 for a in range(len(geometry))])
    return mask if mask.any() else None


def _empty_indices(x_shape, empty, storage_order: int) -> np.ndarray:
    """onnxruntime's index for each empty window of every plane (``empty``'s True
    entries): the plane's offset plus every coordinate at -1, in the storage order."""
    sp = x_shape[2:]
    sizes = [int(np.prod(sp[a + 1 :])) for a in range(len(sp))]  # row-major strides
    if storage_order == 1:
        sizes = [int(np.prod(sp[:a])) for a in range(len(sp))]  # column-major strides
    planes = np.arange(x_shape[0] * x_shape[1], dtype=np.int64).reshape(x_shape[:2])
    return (planes * int(np.prod(sp)) - sum(sizes))[..., None]  # (N, C, 1)


@register("MaxPool", since=1, kernels=MAX_POOL)
def max_pool(x, *, auto_pad="NOTSET", ceil_mode=0, dilations=None, kernel_shape=None,
             pads=None, storage_order=0, strides=None, _out=None, _num_outputs=2):  # fmt: skip
    if storage_order not in (0, 1):
        raise InvalidAttributeError(f"MaxPool: storage_order {storage_order}: expected 0 or 1")
    x, out_sp, begin, _, st, dil = pool_setup(
        "MaxPool", x, kernel_shape, auto_pad, pads, strides, dilations, ceil_mode
    )
    n, c = x.shape[:2]
    shape = (n, c, *out_sp)
    y = allocate(shape, np.float32, "MaxPool output", _out and _out[0])
    with_indices = _num_outputs > 1
    if not with_indices and x.ndim == 4 and y.size:  # rows by vectors, -inf around the plane
        return MaxPoolCall(x.shape, out_sp, begin, kernel_shape, st, dil)(x, y)
    if with_indices:
        idx = allocate(shape, np.int64, "MaxPool indices", _out and _out[1])
    else:
        idx = scratch("maxpool.indices", shape, np.int64)
    if not y.size:  # a window larger than the padded input: no output, as onnxruntime
        return (y, idx) if with_indices else y
    x5 = _as5d(x).reshape(n * c, *_as5d(x).shape[2:])
    out = y.reshape(n * c, *_to3d(out_sp, 1))
    pool_kernels._max_pool3d(
        x5, out, idx.reshape(out.shape), *_to3d(list(kernel_shape), 1), *_to3d(st, 1),
        *_to3d(begin, 0), *_to3d(dil, 1),
    )  # fmt: skip
    empty = empty_windows(x.shape[2:], out_sp, begin, kernel_shape, st, dil)
    if empty is not None:
        y[..., empty] = LOWEST
    if not with_indices:
        return y
    if storage_order == 1:
        # Column-major indices: the same element, counted with the last axis slowest.
        sp = x.shape[2:]
        flat = idx % int(np.prod(sp))
        coords = np.unravel_index(flat, sp)
        col = np.ravel_multi_index(coords[::-1], sp[::-1])
        idx = idx - flat + col
    if empty is not None:
        idx[..., empty] = _empty_indices(x.shape, empty, storage_order)
    return y, idx


class MaxPoolCall:
    """A 2-D MaxPool without indices laid out for one float32 input shape: rows by
    vectors (``pool.max_pool_rows``), a plane per job where the work is large."""

    def __init__(self, shape, out_sp, begin, kernel_shape, strides, dilations) -> None:
        n, c, h, w = shape
        self.x3, self.y3 = (n * c, h, w), (n * c, *out_sp)
        self.shape = (n, c, *out_sp)
        self.args = (*begin[:2], *kernel_shape, *strides, *dilations)
        self.empty = empty_windows((h, w), out_sp, begin, kernel_shape, strides, dilations)
        floats = pool_kernels.max_pool_row_floats(
            w, out_sp[1], begin[1], kernel_shape[1], strides[1], dilations[1]
        )
        self.tmp_floats = pool_kernels.MAX_POOL_ROWS * floats + pool_kernels.WIDTH
        parallel = _parallel(n * c * h * w)
        self.kernel = pool_kernels.max_pool_rows_planes if parallel else pool_kernels.max_pool_rows
        lanes = pool_kernels.max_pool_by_lanes(
            kernel_shape[1], strides[1], begin[1], dilations[0], dilations[1]
        )  # pool._max_pool_planes' register path
        how = (
            "maxima down each window in registers, across by lane shifts"
            if lanes
            else f"vertical maxima of {pool_kernels.MAX_POOL_ROWS} rows at a time, then across them"
        )
        halves = "even and odd" if lanes else "even"
        self.choice = Choice(
            f"max_pool_rows_{'planes' if parallel else 'serial'}_{kernel_table.isa()}",
            f"{n * c} plane(s): {how}"
            + (f", stride 2 by {halves} lanes" if strides[1] == 2 else "")
            + ("; a plane per job" if parallel else "; small: one thread"),
            (MAX_POOL[1] if parallel else MAX_POOL[0],),
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = allocate(self.shape, np.float32, "MaxPool output", out)
        tmp = scratch("maxpool.rows", (numba.get_num_threads(), self.tmp_floats), np.float32)
        self.kernel(np.ascontiguousarray(x).reshape(self.x3), y.reshape(self.y3), tmp, *self.args)
        if self.empty is not None:
            y[..., self.empty] = LOWEST
        return y


def _max_pool_prepare(x: np.ndarray, args: list, attrs: Mapping) -> MaxPoolCall | None:
    if x.dtype != np.float32 or x.ndim != 4 or attrs.get("_num_outputs", 2) > 1:
        return None  # indices, other ranks: the op (it raises the errors, naming its node)
    if attrs.get("storage_order", 0) not in (0, 1):
        return None
    try:
        x, out_sp, begin, _, st, dil = pool_setup(
            "MaxPool", x, attrs.get("kernel_shape"), attrs.get("auto_pad", "NOTSET"),
            attrs.get("pads"), attrs.get("strides"), attrs.get("dilations"),
            attrs.get("ceil_mode", 0),
        )  # fmt: skip
    except (ShapeError, InvalidAttributeError):
        return None
    if 0 in out_sp:
        return None  # no output: the op returns it
    return MaxPoolCall(x.shape, out_sp, begin, attrs["kernel_shape"], st, dil)


max_pool.prepare = _max_pool_prepare


AVG_POOL = ("pool.avg_pool_rows", "pool.avg_pool_rows_planes", "pool._avg_pool3d")


def _plain_avg_pool(shape, out_sp, begin, end, kernel_shape, strides, dilations) -> bool:
    """A 2-D average pool whose every window lies inside the input (no padding,
    dilation 1, no window past the end from ceil_mode): ``pool.avg_pool_rows``."""
    return (
        len(shape) == 4
        and not any(begin)
        and not any(end)
        and all(d == 1 for d in dilations)
        and all(o > 0 for o in out_sp)
        and all(
            (o - 1) * s + k <= i
            for o, s, k, i in zip(out_sp, strides, kernel_shape, shape[2:], strict=True)
        )
    )


class AvgPoolCall:
    """A 2-D AveragePool whose windows lie inside the input (``_plain_avg_pool``) laid
    out for one float32 input shape: rows in vectors (``pool.avg_pool_rows``), jobs of
    whole planes where the work is large."""

    def __init__(self, shape, out_sp, kernel_shape, strides) -> None:
        n, c, h, w = shape
        self.x3, self.y3 = (n * c, h, w), (n * c, *out_sp)
        self.shape = (n, c, *out_sp)
        self.args = (*kernel_shape, *strides)
        self.parallel = _parallel(n * c * h * w)
        self.jobs = min(n * c, 4 * numba.get_num_threads())
        sw = strides[1]
        how = {1: "a vector a tap", 2: "even lanes of two vectors a tap"}.get(sw, "one by one")
        self.choice = Choice(
            f"avg_pool_rows_{'planes' if self.parallel else 'serial'}_{kernel_table.isa()}",
            f"{n * c} plane(s), every window inside: {WIDTH} outputs of a row at a time, "
            + how
            + ("; jobs of whole planes" if self.parallel else "; small: one thread"),
            (AVG_POOL[1] if self.parallel else AVG_POOL[0],),
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = allocate(self.shape, np.float32, "AveragePool output", out)
        x3, y3 = np.ascontiguousarray(x).reshape(self.x3), y.reshape(self.y3)
        if self.parallel:
            pool_kernels.avg_pool_rows_planes(x3, y3, *self.args, self.jobs)
        else:
            pool_kernels.avg_pool_rows(x3, y3, *self.args)
        return y


@register("AveragePool", since=1, kernels=AVG_POOL)
def average_pool(x, *, auto_pad="NOTSET", ceil_mode=0, count_include_pad=0, dilations=None,
                 kernel_shape=None, pads=None, strides=None, _out=None):  # fmt: skip
    x, out_sp, begin, end, st, dil = pool_setup(
        "AveragePool", x, kernel_shape, auto_pad, pads, strides, dilations, ceil_mode
    )
    n, c = x.shape[:2]
    if _plain_avg_pool(x.shape, out_sp, begin, end, kernel_shape, st, dil):
        return AvgPoolCall(x.shape, out_sp, kernel_shape, st)(x, _out and _out[0])
    x5 = _as5d(x).reshape(n * c, *_as5d(x).shape[2:])
    extent = [i + b + e for i, b, e in zip(x.shape[2:], begin, end, strict=True)]
    y = allocate((n, c, *out_sp), np.float32, "AveragePool output", _out and _out[0])
    if not y.size:  # a window larger than the padded input: no output, as onnxruntime
        return y
    out = y.reshape(n * c, *_to3d(out_sp, 1))
    pool_kernels._avg_pool3d(
        x5, out, *_to3d(list(kernel_shape), 1), *_to3d(st, 1), *_to3d(begin, 0),
        *_to3d(dil, 1), *_to3d(extent, 1), bool(count_include_pad),
    )  # fmt: skip
    return y


def _avg_pool_prepare(x: np.ndarray, args: list, attrs: Mapping) -> AvgPoolCall | None:
    if x.dtype != np.float32 or x.ndim != 4:
        return None  # other ranks: the op (it raises the errors, naming its node)
    try:
        x, out_sp, begin, end, st, dil = pool_setup(
            "AveragePool", x, attrs.get("kernel_shape"), attrs.get("auto_pad", "NOTSET"),
            attrs.get("pads"), attrs.get("strides"), attrs.get("dilations"),
            attrs.get("ceil_mode", 0),
        )  # fmt: skip
    except (ShapeError, InvalidAttributeError):
        return None
    if not _plain_avg_pool(x.shape, out_sp, begin, end, attrs["kernel_shape"], st, dil):
        return None
    return AvgPoolCall(x.shape, out_sp, attrs["kernel_shape"], st)


average_pool.prepare = _avg_pool_prepare


def global_pool_into(x2: np.ndarray, out: np.ndarray, use_max: bool) -> None:
    """out (planes,) = the mean or max of each row of x2 (planes, S), C-contiguous:
    serially for small work (``pool.global_pool_rows``), else in parallel jobs."""
    if _parallel(x2.size):
        floats = numba.get_num_threads() * pool_kernels.POOL_BUF
        buf = scratch("globalpool.buffers", (floats,), np.float32)
        pool_kernels._global_pool(x2, out, use_max, buf)
    else:
        pool_kernels.global_pool_rows(x2, out, use_max)


def _global_pool(op: str, x: np.ndarray, use_max: bool, out=None) -> np.ndarray:
    x = _float32(op, "X", x)
    if x.ndim < 3:
        raise ShapeError(f"{op}: expected X of rank >= 3 (N, C, spatial...), received {x.shape}")
    n, c = x.shape[:2]
    if x.size == 0 and n * c:
        raise ShapeError(f"{op}: X {x.shape} has empty spatial axes: no window to pool")
    y = allocate((n, c, *([1] * (x.ndim - 2))), np.float32, f"{op} output", out)
    global_pool_into(x.reshape(n * c, x.size // max(n * c, 1)), y.reshape(-1), use_max)
    return y


class GlobalPoolCall:
    """GlobalAveragePool or GlobalMaxPool laid out for one float32 input shape: the
    call runs the kernel and nothing else (after a conv has swept the caches, each
    line of Python costs microseconds)."""

    def __init__(self, op: str, shape: tuple[int, ...], use_max: bool) -> None:
        n, c = shape[:2]
        self.shape = (n, c, *([1] * (len(shape) - 2)))
        self.rows = (n * c, int(np.prod(shape[2:], dtype=np.int64)))
        self.use_max, self.op = use_max, op
        parallel = _parallel(n * c * self.rows[1])
        self.kernel = pool_kernels._global_pool if parallel else pool_kernels.global_pool_rows
        self.choice = Choice(
            "global_pool_parallel" if parallel else "global_pool_rows",
            f"{n * c} plane(s) of {self.rows[1]}: "
            + ("jobs over the threads" if parallel else "small: one thread"),
            GLOBAL_POOL[1:] if parallel else GLOBAL_POOL[:1],
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = allocate(self.shape, np.float32, f"{self.op} output", out)
        x2 = np.ascontiguousarray(x).reshape(self.rows)
        if self.kernel is pool_kernels.global_pool_rows:
            pool_kernels.global_pool_rows(x2, y.reshape(-1), self.use_max)
        else:
            global_pool_into(x2, y.reshape(-1), self.use_max)
        return y


def _global_pool_prepare(op: str, use_max: bool):
    def prepare(x: np.ndarray, args: list, attrs: Mapping) -> GlobalPoolCall | None:
        if x.dtype != np.float32 or x.ndim < 3 or x.size == 0:
            return None  # the unbound step raises the error, naming its node
        return GlobalPoolCall(op, x.shape, use_max)

    return prepare


# and the squeeze-and-excitation block that ``passes`` fuses into a GlobalAveragePool's
# node (``fused_squeeze_excite``)
@register("GlobalAveragePool", since=1, kernels=(*GLOBAL_POOL, *SQUEEZE_EXCITE))
def global_average_pool(x, *, _out=None):
    return _global_pool("GlobalAveragePool", x, False, _out and _out[0])


@register("GlobalMaxPool", since=1, kernels=GLOBAL_POOL)
def global_max_pool(x, *, _out=None):
    return _global_pool("GlobalMaxPool", x, True, _out and _out[0])


global_average_pool.prepare = _global_pool_prepare("GlobalAveragePool", False)
global_max_pool.prepare = _global_pool_prepare("GlobalMaxPool", True)


def bn_affine(
    inputs: tuple[str, ...],
    attrs: Mapping,
    constants: Mapping[str, np.ndarray],
    channels: int | None,
) -> tuple[np.ndarray, np.ndarray] | None:
    """An inference BatchNormalization node's (scale, shift) per channel, when its four
    parameters are constants of ``channels`` floats each (``inputs``: the node's input
    names), else None: the step then checks them itself."""
    names = inputs[1:5]
    if len(names) != 4 or not all(n in constants for n in names) or channels is None:
        return None
    if attrs.get("training_mode", 0) or attrs.get("spatial", 1) != 1:
        return None
    vectors = [constants[n] for n in names]
    if any(v.shape != (channels,) or v.dtype.kind != "f" for v in vectors):
        return None
    return bn_scale_shift(*vectors, attrs.get("epsilon", 1e-5))


def bn_scale_shift(scale, bias, mean, var, epsilon):
    """Inference BatchNormalization as y = x * a + c, per channel."""
    a = (scale / np.sqrt(var.astype(np.float64) + epsilon)).astype(np.float32)
    c = (bias - mean * a).astype(np.float32)
    return a, c


BATCH_NORM = ("normalize.scale_shift_planes", "normalize.scale_shift_planes_parallel")


class BatchNormCall:
    """Inference BatchNormalization, and an activation fused after it
    (``passes.fuse_bn_activation``), laid out for one float32 input shape: y = act(x *
    scale + shift) per channel, plane by plane in vectors
    (``normalize.scale_shift_planes``), into a planned buffer where one is given."""

    def __init__(self, shape, a, c, activation=None, alpha=0.0, beta=0.0) -> None:
        n, ch = shape[:2]
        self.shape = tuple(shape)
        self.s_n = int(np.prod(shape[2:], dtype=np.int64))
        self.planes = n * ch
        self.a = np.array(a, np.float32, order="C")  # writable: one kernel signature
        self.c = np.array(c, np.float32, order="C")
        self.act, self.alpha, self.beta = ACTIVATIONS[activation], float(alpha), float(beta)
        self.parallel = _parallel(self.planes * self.s_n)
        self.jobs = min(self.planes, 4 * numba.get_num_threads())
        then = f", then {activation}" if activation else ""
        self.choice = Choice(
            f"scale_shift_planes_{'parallel' if self.parallel else 'serial'}_{kernel_table.isa()}",
            f"{self.planes} plane(s) of {self.s_n}: x * scale + shift per channel in vectors"
            + then
            + ("; jobs of whole planes" if self.parallel else "; small: one thread"),
            (BATCH_NORM[1] if self.parallel else BATCH_NORM[0],),
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = allocate(self.shape, np.float32, "BatchNormalization output", out)
        xf, yf = np.ascontiguousarray(x).reshape(-1), y.reshape(-1)
        if self.parallel:
            normalize_kernels.scale_shift_planes_parallel(
                xf, yf, self.a, self.c, self.s_n, self.jobs, self.act, self.alpha, self.beta
            )
        else:
            normalize_kernels.scale_shift_planes(
                xf, yf, self.a, self.c, self.s_n, 0, self.planes, self.act, self.alpha, self.beta
            )
        return y


def _bn_check(x, scale, bias, mean, var, spatial, training_mode) -> None:
    if training_mode:
        raise InvalidAttributeError(
            "BatchNormalization: training_mode=1 is not supported by an inference runtime"
        )
    if spatial != 1:
        raise InvalidAttributeError("BatchNormalization: spatial=0 is not supported")
    if x.ndim < 2:
        raise ShapeError(f"BatchNormalization: X must have a channel axis, received {x.shape}")
    c = x.shape[1]
    for name, t in (("scale", scale), ("B", bias), ("mean", mean), ("var", var)):
        if t.shape != (c,):
            raise ShapeError(
                f"BatchNormalization: input {name} must have shape ({c},), received {t.shape}"
            )


def _numpy_activation(y: np.ndarray, act: str, alpha: float, beta: float) -> np.ndarray:
    """A fused activation (``kernels.activation.ACTIVATIONS``, but SiLU) on a tensor of
    another float type than float32, in float64 and rounded back to its type."""
    v = y.astype(np.float64)
    with np.errstate(over="ignore"):
        r = {
            "Relu": lambda: np.maximum(v, 0),
            "LeakyRelu": lambda: np.where(v >= 0, v, v * alpha),
            "Tanh": lambda: np.tanh(v),
            "Sigmoid": lambda: 1 / (1 + np.exp(-v)),
            "Clip": lambda: np.clip(v, alpha, beta),
            "HardSigmoid": lambda: np.clip(v * alpha + beta, 0, 1),
            "HardSwish": lambda: v * np.clip(v * alpha + beta, 0, 1),
        }[act]()
    return r.astype(y.dtype)


@register("BatchNormalization", since=7, kernels=BATCH_NORM)
def batch_normalization(x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1,
                        training_mode=0, _out=None):  # fmt: skip
    return fused_batch_norm(x, scale, bias, mean, var, epsilon=epsilon, spatial=spatial,
                            training_mode=training_mode, _out=_out)  # fmt: skip


def fused_batch_norm(x, scale, bias, mean, var, *, epsilon=1e-5, momentum=0.9, spatial=1,
                     training_mode=0, activation=None, alpha=0.0, beta=0.0, _out=None):  # fmt: skip
    """The engine's BatchNormalization step: inference BatchNormalization and the
    activation that ``passes.fuse_bn_activation`` fuses after it (``activation``, with
    its ``alpha`` and ``beta``: ``passes.activation_of``)."""
    _bn_check(x, scale, bias, mean, var, spatial, training_mode)
    a, sh = bn_scale_shift(scale, bias, mean, var, epsilon)
    if x.dtype == np.float32:
        return BatchNormCall(x.shape, a, sh, activation, alpha, beta)(x, _out and _out[0])
    bshape = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    y = (x * a.reshape(bshape).astype(x.dtype) + sh.reshape(bshape).astype(x.dtype)).astype(x.dtype)
    return y if activation is None else _numpy_activation(y, activation, alpha, beta)


def _batch_norm_prepare(x: np.ndarray, args: list, attrs: Mapping) -> BatchNormCall | None:
    if x.dtype != np.float32 or x.ndim < 2 or len(args) != 4 or any(a is None for a in args):
        return None  # the unbound step checks and raises, naming its node
    try:
        _bn_check(x, *args, attrs.get("spatial", 1), attrs.get("training_mode", 0))
    except (ShapeError, InvalidAttributeError):
        return None
    if any(t.dtype.kind != "f" for t in args):
        return None
    a, sh = bn_scale_shift(*args, attrs.get("epsilon", 1e-5))
    act = attrs.get("activation")
    return BatchNormCall(x.shape, a, sh, act, attrs.get("alpha", 0.0), attrs.get("beta", 0.0))


batch_normalization.prepare = _batch_norm_prepare
fused_batch_norm.prepare = _batch_norm_prepare


@register("LRN", since=1)
def lrn(x, *, alpha=0.0001, beta=0.75, bias=1.0, size):
    if size < 1:
        raise InvalidAttributeError(f"LRN: size {size}: expected >= 1")
    if x.ndim < 3:
        raise ShapeError(f"LRN: expected X of rank >= 3, received {x.shape}")
    c = x.shape[1]
    check_size((x.shape[0], c + size, *x.shape[2:]), np.float64, "LRN window sums")
    sq = np.square(x.astype(np.float64))
    lo, hi = (size - 1) // 2, size // 2  # window [c - lo, c + hi], as the spec's floor/ceil
    padded = np.pad(sq, [(0, 0), (lo, hi)] + [(0, 0)] * (x.ndim - 2))
    csum = np.cumsum(padded, axis=1)
    csum = np.concatenate([np.zeros_like(csum[:, :1]), csum], axis=1)
    window = csum[:, size : size + c] - csum[:, :c]
    return (x / (bias + alpha / size * window) ** beta).astype(x.dtype)


@register("Gemm", since=7, kernels=MATVEC)  # and the GEMM's, from ``kernel_table``
def gemm(a, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0, _out=None):  # noqa: N803
    return gemm_call(a.shape, a.dtype, b, c, alpha=alpha, beta=beta, transA=transA,
                     transB=transB)(a, _out and _out[0])  # fmt: skip


class GemmCall:
    """A Gemm checked for one shape of A: ``call(a, out=None)`` runs it. In float32, B
    is packed once for the engine's GEMM (``gemm.PackedGemm``), or for fewer rows than
    ``GEMM_FEW_ROWS`` in panels for a matrix-vector pass (``matvec.matvec_rows``); both
    add a bias that is the same for every row and apply the fused ReLU while they store."""

    def __init__(self, shape, dtype, b, c, alpha, beta, trans_a, relu) -> None:
        self.shape, self.dtype, self.b, self.c = shape, dtype, b, c
        self.alpha, self.beta, self.trans_a, self.relu = alpha, beta, trans_a, relu
        self.packed = None
        self.matvec = None  # a few rows: (kernel, packed panels, padded bias, act)
        self.fused = False  # bias and ReLU applied by the packed GEMM
        n = shape[1]
        row_bias = (
            c is None
            or c.ndim == 0
            or (c.ndim <= 2 and c.shape[-1] in (1, n) and c.size == c.shape[-1])
        )  # the same bias for every row
        if dtype == b.dtype == np.float32:
            self.fused = alpha == 1.0 and row_bias
            bias = None
            if self.fused and c is not None and beta != 0.0:
                bias = np.broadcast_to(c.reshape(-1) * c.dtype.type(beta), (n,))
            fused = relu and self.fused
            store = "bias and ReLU in the store" if fused else "bias in the store"
            if not self.fused:
                store = "alpha and C applied after"
            entry, self.choice = kernel_table.choose_gemm(shape[0], store)
            if entry.few_rows and shape[0] > 0 and b.shape[0] > 0:
                self._matvec(b, bias, fused, store)
            else:
                self.packed = gemm_kernels.PackedGemm(b, bias, fused, few_rows=entry.few_rows)
        else:
            self.choice = kernel_table.numpy_gemm(dtype, b.dtype)

    def _matvec(self, b: np.ndarray, bias: np.ndarray | None, relu: bool, store: str) -> None:
        """Few rows of A: B packed in panels for ``matvec.matvec_rows``, a serial pass
        (in parallel jobs per panel for a B of ``SERIAL_FLOATS`` or more)."""
        k, n = b.shape
        parallel = _parallel(k * n)
        kernel = matvec_kernels.matvec_rows_panels if parallel else matvec_kernels.matvec_rows
        wp = matvec_kernels.pack_panels(np.asarray(b, np.float32))
        self.matvec = (kernel, wp, matvec_kernels.pad_bias(bias, n), 1 if relu else 0)
        self.choice = Choice(
            f"gemm_f32_matvec_{kernel_table.isa()}",
            f"{self.shape[0]} row(s) of A, fewer than {GEMM_FEW_ROWS}: a matrix-vector pass, "
            f"B in panels of {matvec_kernels.PANEL} columns, "
            + ("a job per panel" if parallel else "one pass, one thread")
            + f"; {store}",
            (MATVEC[1] if parallel else MATVEC[0],),
        )

    def __call__(self, a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        a = a.T if self.trans_a else a
        y = allocate(self.shape, self.dtype, "Gemm output", out)
        if self.matvec is not None and a.dtype == np.float32:
            kernel, wp, bias, act = self.matvec
            kernel(np.ascontiguousarray(a), wp, bias, y, act, 0.0, 0.0)
            if self.fused:
                return y
        elif self.packed is not None and a.dtype == np.float32:
            self.packed(a, y)
            if self.fused:
                return y
        else:
            np.dot(a, self.b, out=y)
        if self.alpha != 1.0:
            y *= a.dtype.type(self.alpha)
        c, beta = self.c, self.beta
        if c is not None and beta != 0.0:
            y += c * c.dtype.type(beta) if beta != 1.0 else c
        if self.relu:
            np.maximum(y, 0, out=y)
        return y


def gemm_shape(a_shape, b_shape, c_shape=None, *, beta=1.0, transA=0, transB=0):  # noqa: N803
    """The output shape of a Gemm, checked (ShapeError): A and B 2-D, their inner
    dimensions equal, C broadcasting to the output."""
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise ShapeError(
            f"Gemm: A and B must be 2-D, received {tuple(a_shape)} and {tuple(b_shape)}"
        )
    a_shape = tuple(a_shape[::-1]) if transA else tuple(a_shape)
    b_shape = tuple(b_shape[::-1]) if transB else tuple(b_shape)
    if a_shape[1] != b_shape[0]:
        raise ShapeError(
            f"Gemm: inner dimensions differ: A' is {a_shape}, B' is {b_shape} "
            f"(transA={transA}, transB={transB})"
        )
    shape = (a_shape[0], b_shape[1])
    if c_shape is not None and beta != 0.0:
        try:
            full = np.broadcast_shapes(tuple(c_shape), shape)
        except ValueError:
            full = None
        if full != shape:
            raise ShapeError(f"Gemm: C {tuple(c_shape)} does not broadcast to {shape}")
    return shape


def gemm_call(a_shape, a_dtype, b, c=None, *, alpha=1.0, beta=1.0, transA=0, transB=0,  # noqa: N803
              relu=False) -> GemmCall:  # fmt: skip
    """Check a Gemm of A shaped ``a_shape``, optionally with a ReLU after it; the
    engine keeps the call in the plan of that shape."""
    shape = gemm_shape(a_shape, b.shape, None if c is None else c.shape, beta=beta,
                       transA=transA, transB=transB)  # fmt: skip
    b = b.T if transB else b
    dtype = np.result_type(a_dtype, b)
    return GemmCall(shape, dtype, b, c, alpha, beta, transA, relu)


@register("MatMul", since=1, kernels=GEMM)
def matmul(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ShapeError(f"MatMul: scalars are not allowed, received {a.shape} and {b.shape}")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ShapeError(f"MatMul: inner dimensions differ: A {a.shape}, B {b.shape}")
    if a.dtype != b.dtype:
        raise ShapeError(f"MatMul: A and B must share a type, received {a.dtype} and {b.dtype}")
    try:
        batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ShapeError(
            f"MatMul: the batch dimensions of A {a.shape} and B {b.shape} do not broadcast"
        ) from None
    rows = () if a.ndim == 1 else (a.shape[-2],)
    cols = () if b.ndim == 1 else (b.shape[-1],)
    check_size((*batch, *rows, *cols), a.dtype, "MatMul output")
    try:
        if a.dtype == b.dtype == np.float32 and a.ndim >= 2 and b.ndim == 2:
            rows = a.reshape(-1, a.shape[-1])  # x @ W: one product over every row
            out = allocate((rows.shape[0], b.shape[1]), np.float32, "MatMul output")
            return kernel_table.matmul(rows, b, out).reshape(*a.shape[:-1], b.shape[1])
        if a.dtype == b.dtype == np.float32 and a.ndim >= 2 and b.ndim >= 2:
            batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
            a3 = np.broadcast_to(a, (*batch, *a.shape[-2:])).reshape(-1, *a.shape[-2:])
            b3 = np.broadcast_to(b, (*batch, *b.shape[-2:])).reshape(-1, *b.shape[-2:])
            out = allocate((a3.shape[0], a.shape[-2], b.shape[-1]), np.float32, "MatMul output")
            return kernel_table.matmul(a3, b3, out).reshape(*batch, *out.shape[1:])
        return np.matmul(a, b)
    except ValueError as exc:
        raise ShapeError(f"MatMul: A {a.shape} and B {b.shape}: {exc}") from None


def _softmax(x: np.ndarray, axis: int, log: bool, out: np.ndarray | None = None) -> np.ndarray:
    y = allocate(x.shape, x.dtype, "Softmax output", out)
    np.subtract(x, np.max(x, axis=axis, keepdims=True), out=y)
    if log:
        y -= np.log(np.sum(np.exp(y), axis=axis, keepdims=True))
        return y
    np.exp(y, out=y)
    y /= np.sum(y, axis=axis, keepdims=True)
    return y


def _softmax_axis(op: str, x: np.ndarray, axis: int) -> int:
    if not -x.ndim <= axis < max(x.ndim, 1):
        raise InvalidAttributeError(f"{op}: axis {axis} out of range for rank {x.ndim}")
    return axis % max(x.ndim, 1)


def _softmax_2d(op: str, x: np.ndarray, axis: int, log: bool) -> np.ndarray:
    """Opset < 13: coerce to 2-D at ``axis`` and normalise each row."""
    ax = _softmax_axis(op, x, axis)
    rows = int(np.prod(x.shape[:ax], dtype=np.int64))
    cols = int(np.prod(x.shape[ax:], dtype=np.int64))  # not -1: rows may be 0
    return _softmax(x.reshape(rows, cols), 1, log).reshape(x.shape)


def _softmax_call(op: str, x: np.ndarray, attrs: Mapping, log: bool, whole_rows: bool):
    """Softmax over rows of x (R, S), laid out for x's shape: opset 1's coerced 2-D, or
    opset 13's last axis; None (the general path) for another axis, type, or no values."""
    ax = _softmax_axis(op, x, attrs.get("axis", 1 if whole_rows else -1))
    if x.dtype != np.float32 or x.size == 0 or not (whole_rows or ax == x.ndim - 1):
        return None
    rows = int(np.prod(x.shape[:ax], dtype=np.int64))

    def call(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        y = allocate(x.shape, x.dtype, f"{op} output", out)
        softmax_rows(x.reshape(rows, -1), y.reshape(rows, -1), log)
        return y

    return call


@register("Softmax", since=1, kernels=SOFTMAX)
def softmax_1(x, *, axis=1):
    return _softmax_2d("Softmax", x, axis, False)


@register("Softmax", since=13, kernels=SOFTMAX)
def softmax_13(x, *, axis=-1, _out=None):
    return _softmax(x, _softmax_axis("Softmax", x, axis), False, _out and _out[0])


@register("LogSoftmax", since=1, kernels=SOFTMAX)
def log_softmax_1(x, *, axis=1):
    return _softmax_2d("LogSoftmax", x, axis, True)


@register("LogSoftmax", since=13, kernels=SOFTMAX)
def log_softmax_13(x, *, axis=-1):
    return _softmax(x, _softmax_axis("LogSoftmax", x, axis), True)


# ``fn.prepare(x, constants, attrs)``: the op laid out for x's shape, a call
# ``(x, out=None) -> y`` that the engine keeps in the plan of that shape, or None.
conv.prepare = lambda x, args, attrs: (
    conv_call(x.shape, *args, **attrs) if x.dtype == np.float32 else None
)
gemm.prepare = lambda x, args, attrs: gemm_call(x.shape, x.dtype, *args, **attrs)
softmax_1.prepare = lambda x, args, attrs: _softmax_call("Softmax", x, attrs, False, True)
softmax_13.prepare = lambda x, args, attrs: _softmax_call("Softmax", x, attrs, False, False)
log_softmax_1.prepare = lambda x, args, attrs: _softmax_call("LogSoftmax", x, attrs, True, True)
log_softmax_13.prepare = lambda x, args, attrs: _softmax_call("LogSoftmax", x, attrs, True, False)


def fused_conv(x, w, b=None, res=None, *, _out=None, **attrs):
    """The engine's Conv step: a Conv with the extras its rewrite passes fuse into it
    (``conv_call``'s keywords: residual Add, activation, scale and shift, max pool,
    Winograd weights; ``res``: the residual Add's other operand)."""
    return conv_forward(x, w, b, res, _out=_out, **attrs)


def fused_gemm(a, b, c=None, *, activation=None, _out=None, **attrs):
    """The engine's Gemm step: a Gemm with the activation its rewrite passes fuse into it
    (``activation="Relu"``)."""
    relu = activation == "Relu"
    return gemm_call(a.shape, a.dtype, b, c, relu=relu, **attrs)(a, _out and _out[0])


def _fused_gemm_prepare(x: np.ndarray, args: list, attrs: Mapping) -> GemmCall:
    gemm_attrs = {k: v for k, v in attrs.items() if k != "activation"}
    return gemm_call(x.shape, x.dtype, *args, relu=attrs.get("activation") == "Relu", **gemm_attrs)


class MatMulCall:
    """x @ W for x of one shape (rank >= 2, float32) and a constant 2-D W, plus a bias
    row (``c``, N values) fused from the Add after it: every row of x through one
    ``GemmCall``, W packed once."""

    def __init__(self, shape: tuple[int, ...], w: np.ndarray, c: np.ndarray | None) -> None:
        k, n = w.shape
        if shape[-1] != k:
            raise ShapeError(f"MatMul: inner dimensions differ: A {tuple(shape)}, B {w.shape}")
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        self.k, self.n = k, n
        self.out_shape = (*shape[:-1], n)
        self.gemm = gemm_call((rows, k), np.float32, w, None if c is None else c.reshape(n))
        self.choice = self.gemm.choice

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        flat = None if out is None else out.reshape(-1, self.n)
        return self.gemm(x.reshape(-1, self.k), flat).reshape(self.out_shape)


def _matmul_call(x: np.ndarray, w: np.ndarray, c: np.ndarray | None = None) -> MatMulCall | None:
    if x.dtype != np.float32 or w.dtype != np.float32 or x.ndim < 2 or w.ndim != 2:
        return None
    return MatMulCall(x.shape, w, c)


def fused_matmul(x, w, c=None, *, _out=None):
    """The engine's MatMul step for a constant 2-D W (``passes.fuse_matmul_bias``): x @ W
    plus the bias ``c`` of an Add fused after it, W packed once (``MatMulCall``); other
    types and shapes as ``matmul``, then the Add."""
    call = _matmul_call(x, w, c)
    if call is not None:
        return call(x, _out and _out[0])
    y = matmul(x, w)
    return y if c is None else (y + c).astype(y.dtype)


fused_conv.prepare = conv.prepare
fused_gemm.prepare = _fused_gemm_prepare
fused_matmul.prepare = lambda x, args, attrs: _matmul_call(x, *args)


# --------------------------------------------------------------------------- squeeze-and-excitation


class SqueezeExciteCall:
    """A squeeze-and-excitation block laid out for one input shape: y = x * s, with
    s = act2(W2 act1(W1 mean(x) + b1) + b2) per image and channel (W1 (R, C), W2 (C, R):
    two 1x1 convs over the pooled (N, C, 1, ...)). One kernel instead of four ops
    (``matvec.squeeze_excite``): a pass to pool each plane, the two products over the
    pooled vector (weights packed here, once), a pass to scale the planes; an image
    per job for a batch (``squeeze_excite_images``)."""

    def __init__(self, x_shape: tuple[int, ...], w1, b1, w2, b2, acts) -> None:
        n, c = x_shape[:2]
        r = w1.shape[0]
        ones = (1,) * (len(x_shape) - 2)
        if (
            w1.shape != (r, c, *ones)
            or w2.shape != (c, r, *ones)
            or b1.shape != (r,)
            or b2.shape != (c,)
        ):
            raise ShapeError(
                f"squeeze-and-excitation: X {tuple(x_shape)} with 1x1 conv weights {w1.shape} "
                f"and {w2.shape}, biases {b1.shape} and {b2.shape}: expected ({r}, {c}, "
                f"{', '.join(map(str, ones))}) and ({c}, {r}, ...), biases ({r},) and ({c},)"
            )
        check_size(x_shape, np.float32, "squeeze-and-excitation output")
        self.shape, self.n, self.c, self.r = tuple(x_shape), n, c, r
        self.plane = int(np.prod(x_shape[2:], dtype=np.int64))
        pack = matvec_kernels.pack_panels
        self.w1p = pack(np.asarray(w1, np.float32).reshape(r, c).T)  # (C, R) in panels
        self.w2p = pack(np.asarray(w2, np.float32).reshape(c, r).T)  # (R, C) in panels
        self.b1p, self.b2p = matvec_kernels.pad_bias(b1, r), matvec_kernels.pad_bias(b2, c)
        (act1, alpha1, beta1), (act2, alpha2, beta2) = acts
        self.acts = (
            ACTIVATIONS[act1], float(alpha1), float(beta1),
            ACTIVATIONS[act2], float(alpha2), float(beta2),
        )  # fmt: skip
        self.images = n > 1
        kernel = SQUEEZE_EXCITE[1] if self.images else SQUEEZE_EXCITE[0]
        self.choice = Choice(
            f"squeeze_excite_nchw_{'images' if self.images else 'serial'}_{kernel_table.isa()}",
            "global pool, two 1x1 convs over it and the channel scale in one kernel; "
            + (f"{n} images, one a job" if self.images else "one image, one pass"),
            (kernel,),
        )

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        out = allocate(self.shape, np.float32, "squeeze-and-excitation output", out)
        n, c = self.n, self.c
        if out.size == 0:
            return out
        x3 = np.ascontiguousarray(x).reshape(n, c, self.plane)
        rows = numba.get_num_threads() if self.images else 1
        work = scratch("se.work", (rows, matvec_kernels.excite_work(c, self.r)), np.float32)
        kernel = (
            matvec_kernels.squeeze_excite_images if self.images else matvec_kernels.squeeze_excite
        )
        kernel(
            x3, out.reshape(n, c, self.plane), self.w1p, self.b1p, self.r, self.w2p, self.b2p,
            *self.acts, work,
        )  # fmt: skip
        return out


def squeeze_excite_call(x_shape, w1, b1, w2, b2, *, act1=None, alpha1=0.01, beta1=0.0,
                        act2=None, alpha2=0.01, beta2=0.0) -> SqueezeExciteCall:  # fmt: skip
    return SqueezeExciteCall(
        tuple(x_shape), w1, b1, w2, b2, ((act1, alpha1, beta1), (act2, alpha2, beta2))
    )


def fused_squeeze_excite(x, w1, b1, w2, b2, *, act1=None, alpha1=0.01, beta1=0.0, act2=None,
                         alpha2=0.01, beta2=0.0, _out=None):  # fmt: skip
    """The engine's squeeze-and-excitation step (``passes.fuse_squeeze_excitation``):
    GlobalAveragePool, Conv 1x1 (+ act1), Conv 1x1 (+ act2), Mul by the input."""
    x32 = _float32("GlobalAveragePool", "X", x)
    if x32.ndim < 3:
        raise ShapeError(f"GlobalAveragePool: expected X of rank >= 3, received {x.shape}")
    if x32.size == 0 and x32.shape[0] * x32.shape[1]:
        raise ShapeError(f"GlobalAveragePool: X {x.shape} has empty spatial axes")
    call = squeeze_excite_call(x32.shape, w1, b1, w2, b2, act1=act1, alpha1=alpha1,
                               beta1=beta1, act2=act2, alpha2=alpha2, beta2=beta2)  # fmt: skip
    return call(x32, _out and _out[0])


def _squeeze_excite_prepare(x: np.ndarray, args: list, attrs: Mapping) -> SqueezeExciteCall | None:
    if x.dtype != np.float32 or x.ndim < 3 or (x.size == 0 and x.shape[0] * x.shape[1]):
        return None  # the unbound step raises the error, naming its node
    return squeeze_excite_call(x.shape, *args, **attrs)


fused_squeeze_excite.prepare = _squeeze_excite_prepare
