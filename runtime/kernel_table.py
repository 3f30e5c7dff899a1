"""The kernel table: every Conv and Gemm kernel, and the one place that chooses.

Each ``Kernel`` entry has a name in XNNPACK's manner (op, layout, algorithm, tile,
ISA: ``conv_nchw_pointwise_gemm_6x32_avx512``), the condition under which it applies
(``applies``: None when it does, else why not), what it prepares once per plan and
the call it makes (``prepare``: packed or transformed weights, work-array sizes
checked against the size limit, then a ``run(x, out)``), the reason it is chosen
(``why``), and the ``@njit`` kernels that call runs (``runs``: what ``cnn warmup``
must compile, and what the describe-matches-what-ran test watches).

The engine asks twice, and only here:

* at load (``conv_at_load``): shapes are not known yet, so the table is read with
  the weights and attributes alone; a Winograd-worthy conv gets its
  ``WinogradWeights`` (transformed per tile on first use), recorded on its step;
* per input shape (``choose_conv``, ``choose_gemm``), when a plan lays its steps out:
  the first entry that applies is the kernel, and its ``Choice`` (the entry's name,
  the reason, and the better entries' reasons for not applying) is what
  ``describe()`` prints. Kernels compute; none re-decides. Sub-paths (few rows, the
  Winograd tile, 1x1 columns read in place) are entries or parameters chosen here.

A new kernel is one entry here (in its place in the order), its twin in
``tests/naive.py`` and its case in the op tests (``docs/adding-an-op.md``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numba
import numpy as np

from runtime.config import (
    DIRECT_MAX_LANES,
    GEMM_FEW_ROWS,
    WINOGRAD_MIN_CHANNELS,
    WINOGRAD_SMALL_TILES,
)
from runtime.kernels import conv as conv_kernels
from runtime.kernels import depthwise as depthwise_kernels
from runtime.kernels import gemm as gemm_kernels
from runtime.kernels import patch as patch_kernels
from runtime.kernels import winograd as winograd_kernels
from runtime.kernels.isa import has_avx512
from runtime.kernels.simd import WIDTH
from runtime.memory import check_size, scratch

Run = Callable[[np.ndarray, np.ndarray], Any]  # run(x, out): writes out


@dataclass(frozen=True)
class Choice:
    """The kernel chosen for a step, and why (or why a faster one was not)."""

    algorithm: str  # the kernel's name (``Kernel.name``), or "numpy ..." where none runs
    reason: str
    runs: tuple[str, ...] = ()  # the @njit kernels its call runs ("module.function")


def isa() -> str:
    """The instruction set the kernels are built for, as their names say it."""
    return "avx512" if has_avx512() else "avx2"


def gemm_tile(width: int | None = None) -> str:
    """The GEMM micro-kernel's tile, MR x NR (6x32 with AVX-512, 6x16 with AVX2)."""
    return f"{gemm_kernels.MR}x{width or gemm_kernels.nr()}"


def pointwise_width(s: ConvSpec) -> int:
    """The pointwise GEMM's panel width: one vector when every image's columns fit
    one (a 4x4 plane at batch 1: a 32-wide tile would be half padding), else ``nr()``."""
    if s.x_shape is not None and s.x_shape[0] * int(np.prod(s.out_sp)) <= WIDTH:
        return WIDTH
    return gemm_kernels.nr()


ROWS_TILE = f"1x{4 * WIDTH}"  # ``gemm.gemm_f32_1x64_row``: one row of A by four vectors of columns

# A 3x3 conv at stride 1 with at most this many channel pairs (C in times M out, group
# 1) runs the direct kernel (AVX-512's 8 x 32 tiles, ``kernels/conv.ConvDirect``), not
# Winograd: Winograd's input and output transforms (C + M values per tile) outweigh its
# 2.25 to 4 times fewer products there. One conv at a time, Winograd and direct
# alternated, medians of 30 (Intel Xeon 6/167, AVX-512, machine loaded; one thread
# unless said), direct's time over Winograd's: C*M 1024 to 2560, 0.58-0.94 at batch 1
# (F(2x2)), 0.61-1.03 at batch 8 (F(4x4)), 0.62-0.94 on two threads; C*M 3072, 0.76-1.00
# at batch 1 and 0.96-1.03 at batch 8; C*M 4096, 1.00-1.18 (Winograd faster). In the
# zoo's networks (``cnn profile --runs 30 --threads 1``, 3 rounds): ResNet-18's 32 x 32
# convs 1.50-1.62x faster, ResNet-50's 2.0x, GoogLeNet's 3072-pair convs 1.11x and
# 1.32x at batch 1 but 0.92x at batch 8 (a tie at the limit). With AVX2's 6 x 16 direct
# tiles (AMD EPYC family 25 model 1, Zen 3, one thread, CPU clock, Winograd and direct
# alternated twice, session 16): GoogLeNet's 96x32x32 stem conv (3072 pairs) 0.93-0.94
# -> 0.80-0.84 ms and 64x16x16 one 0.38 -> 0.23-0.25, ResNet-50's 32 x 32 on 16x16 0.26
# and 0.40 -> 0.21 and 0.17, ResNet-18's 32 x 32 on 28x28 a tie (1.523 -> 1.516 ms
# the three), so the same limit holds there. A plan-time knob read by this module
# alone; here, not in ``config``, whose edits recompile kernels. Unit: channel pairs.
DIRECT_3X3_MAX_PAIRS = 3072


# --------------------------------------------------------------------------- Conv


def winograd_weights(w: np.ndarray, stride: int = 1, tile: int | None = None) -> WinogradWeights:
    """``WinogradWeights`` for a conv's weights at ``stride``."""
    return WinogradWeights(w, stride, -(-w.shape[2] // stride), tile)


@dataclass(eq=False)
class WinogradWeights:
    """A conv's weights for Winograd, transformed (and packed) per tile on first use:
    ``u(tile)`` -> ``winograd.transform_weights`` of the (space-to-depth) weights."""

    w: np.ndarray  # (M, C, k, k), float32
    stride: int
    kernel: int  # the kernel after space-to-depth: ceil(k / stride)
    tile: int | None = None  # a fixed tile (tests, tuning); None: the table picks per shape
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def u(self, tile: int) -> np.ndarray:
        if tile not in self._cache:
            ws = winograd_kernels.space_to_depth_weights(self.w, self.stride)
            ws = ws if self.stride > 1 else self.w
            self._cache[tile] = winograd_kernels.transform_weights(ws, tile)
        return self._cache[tile]


@dataclass(frozen=True)
class ConvSpec:
    """A Conv as the table reads it: checked by ``ops.nn.conv_call`` (or, at load, its
    weights and attributes only: ``x_shape`` None)."""

    w: np.ndarray  # (M, C/G, *kernel) float32, C-contiguous, writable
    group: int
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads: tuple[int, ...]  # begin pads (NOTSET/VALID pads at load: begin then end)
    winograd: WinogradWeights | None = None  # found Winograd-worthy at load
    x_shape: tuple[int, ...] | None = None
    out_sp: tuple[int, ...] = ()  # the convolution's output size (before a fused pool)
    bias: np.ndarray | None = None
    epilogue: Mapping[str, Any] = field(default_factory=dict)  # act, alpha, beta, scale, shift
    max_pool: tuple[int, int, int, int] | None = None  # fused (kh, kw, sh, sw), no padding
    residual: bool = False  # a residual Add fused: run(x, out, res) adds res in the store

    @property
    def kernel(self) -> tuple[int, ...]:
        return tuple(self.w.shape[2:])

    @property
    def rows(self) -> int:
        """Output channels per group: the GEMM's rows."""
        return self.w.shape[0] // self.group


@dataclass(frozen=True)
class Kernel:
    """One entry of the table."""

    name: Callable[[ConvSpec], str]  # from the spec: a tile chosen per shape is in it
    family: str  # the algorithm, for tests and totals: winograd, depthwise, pointwise, ...
    applies: Callable[[ConvSpec], str | None]  # None: applies; else why not
    why: Callable[[ConvSpec], str]
    prepare: Callable[[ConvSpec], Run]  # once per plan: the call
    runs: tuple[str, ...]  # the @njit kernels the call runs


def _is_2d(s: ConvSpec) -> str | None:
    return None if s.w.ndim == 4 else f"a {s.w.ndim - 2}-D convolution"


def _winograd_applies(s: ConvSpec) -> str | None:
    if s.winograd is None:
        return "not Winograd-worthy at load"
    if s.w.ndim != 4 or s.group != 1 or any(d != 1 for d in s.dilations):
        return "not a 2-D, group 1, undilated convolution"
    if len(set(s.strides)) != 1:
        return "strides not square"
    return None


def winograd_tile(s: ConvSpec) -> tuple[int, str]:
    """(tile m of F(m x m, k x k), why) for a Winograd conv at its input shape."""
    weights = s.winograd
    assert weights is not None
    kk = weights.kernel
    if weights.tile is not None:
        return weights.tile, "tile fixed by the caller"
    tile = winograd_kernels.TILE[kk]
    if s.x_shape is None:
        return tile, f"{kk}x{kk} tiles chosen per input shape"
    tiles = s.x_shape[0] * -(-s.out_sp[0] // tile) * -(-s.out_sp[1] // tile)
    small = winograd_kernels.SMALL_TILE.get(kk)
    if small and tiles < WINOGRAD_SMALL_TILES:
        return small, f"{tiles} tiles of {tile}x{tile}, fewer than {WINOGRAD_SMALL_TILES}"
    return tile, f"{tiles} tiles of {tile}x{tile}"


def _winograd_name(s: ConvSpec) -> str:
    kk = s.winograd.kernel  # type: ignore[union-attr]
    m = winograd_tile(s)[0] if s.x_shape is not None or s.winograd.tile else None  # type: ignore[union-attr]
    tile = f"f{m}x{m}" if m else "f?x?"
    return f"conv2d_nchw_winograd_{tile}_{kk}x{kk}_{isa()}"


def _winograd_why(s: ConvSpec) -> str:
    w = s.winograd
    assert w is not None
    how = f"{w.kernel}x{w.kernel}" + (
        f" over the space-to-depth input (stride {w.stride})" if w.stride > 1 else ""
    )
    return f"{how}; {winograd_tile(s)[1]}"


def _winograd_prepare(s: ConvSpec) -> Run:
    assert s.x_shape is not None and s.winograd is not None and s.bias is not None
    tile = winograd_tile(s)[0]
    run = winograd_kernels.WinogradConv(
        s.x_shape, s.winograd.u(tile), tile, s.bias, pads=s.pads[:2], size=s.out_sp[:2],
        stride=s.winograd.stride, max_pool=s.max_pool, **s.epilogue,
    )  # fmt: skip
    threads = numba.config.NUMBA_NUM_THREADS
    for what, shape in (
        ("Winograd input tiles", run.v_shape),
        ("Winograd products", run.z_shape),
        ("Winograd planes", (threads, run.planes)),
        ("Winograd work", (threads, run.work)),
    ):
        check_size(shape, np.float32, what)
    return run


def _depthwise_applies(s: ConvSpec) -> str | None:
    if s.group == 1 or s.w.shape[1] != 1:
        return "not depthwise (group 1, or several input channels per group)"
    return _is_2d(s)


def _epilogue_vectors(s: ConvSpec) -> tuple[np.ndarray, np.ndarray]:
    """The epilogue's scale and shift (ones and zeros when absent), made once per plan."""
    m = s.w.shape[0]
    scale, shift = s.epilogue.get("scale"), s.epilogue.get("shift")
    scale = np.ones(m, np.float32) if scale is None else scale
    shift = np.zeros(m, np.float32) if shift is None else shift
    return scale, shift


def _act(s: ConvSpec) -> tuple[int, np.float32, np.float32]:
    e = s.epilogue
    return e.get("act", 0), np.float32(e.get("alpha", 0.01)), np.float32(e.get("beta", 0.0))


def depthwise_group(channels: int, threads: int) -> int:
    """Channels a job of the depthwise kernel: up to 16, so a job's set-up is paid once
    for many small planes, while each thread still gets four jobs or more."""
    return max(1, min(16, channels // (4 * threads)))


def _depthwise_prepare(s: ConvSpec) -> Run:
    assert s.x_shape is not None
    st, dil, begin = s.strides, s.dilations, s.pads
    hq, wq, plane, res = depthwise_kernels.geometry(
        *s.x_shape[2:], begin, s.out_sp, s.kernel, st, dil
    )
    threads = numba.config.NUMBA_NUM_THREADS
    check_size((threads, plane), np.float32, "depthwise conv planes")
    geometry = (begin[0], begin[1], st[0], st[1], dil[0], dil[1], hq, wq)
    scale, shift = _epilogue_vectors(s)
    w, b, act = s.w, s.bias, _act(s)
    m = s.w.shape[0]

    def run(x: np.ndarray, out: np.ndarray) -> None:
        t = numba.get_num_threads()
        planes = scratch("depthwise.planes", (t, plane), np.float32)
        results = scratch("depthwise.results", (t, res), np.float32)
        depthwise_kernels.depthwise2d(
            np.ascontiguousarray(x), w, b, out, *geometry, *act, scale, shift,
            depthwise_group(m * x.shape[0], t), planes, results,
        )  # fmt: skip

    return run


# Output planes up to this many pixels run channels-in-lanes: measured faster than the
# phased planes from 16x16 down (1.06 at 16x16, 1.6 to 5.9 below), slower at 28x28 (0.84).
DEPTHWISE_LANES_PIXELS = 256
# Filters of this many taps or more (ConvNeXt's 7x7) run channels-in-lanes at any size:
# 1.07 to 1.18 times faster than the phased planes at 28x28, 56x56 and 112x112 (5x5: 0.96).
DEPTHWISE_LANES_TAPS = 49


def _depthwise_lanes_applies(s: ConvSpec) -> str | None:
    why = _depthwise_applies(s)
    if why is not None:
        return why
    if s.w.shape[0] != s.group:
        return "several filters per channel"
    if s.x_shape is None:
        return "the plane's size is known per shape"
    pixels, taps = s.out_sp[0] * s.out_sp[1], s.kernel[0] * s.kernel[1]
    if pixels > DEPTHWISE_LANES_PIXELS and taps < DEPTHWISE_LANES_TAPS:
        return (
            f"{pixels} output pixels a plane, more than {DEPTHWISE_LANES_PIXELS}, "
            f"and {taps} taps, fewer than {DEPTHWISE_LANES_TAPS}"
        )
    return None


# A depthwise step in lanes splits its jobs over threads when each gets this much work
# or more (``depthwise_lanes_work``); below it one thread runs them all, without a
# parallel launch. Two threads against one, 3x3 filters (busy machine, 2 cores): 0.95 of
# the time at 960 channels 4x4 (work 16 320) and 96 at 14x14 stride 2 (8526); 0.82 at 576
# 8x8 stride 2 (16 704), 0.79 at 384 8x8 (26 112), 0.70 at 576 7x7 (29 988).
DEPTHWISE_SPLIT_WORK = 8192


def depthwise_lanes_work(n: int, c: int, taps: int, pixels_in: int, pixels_out: int) -> int:
    """A depthwise lanes step's work: per job (WIDTH channels of an image) its taps times
    output pixels, and its pixels transposed in and out at four taps' worth each
    (measured: a transposed pixel cost about as much as 4.5 taps)."""
    return n * -(-c // WIDTH) * (taps * pixels_out + 4 * (pixels_in + pixels_out))


def _depthwise_lanes_prepare(s: ConvSpec) -> Run:
    assert s.x_shape is not None and s.bias is not None
    st, dil, begin = s.strides, s.dilations, s.pads
    hp, wp, floats = depthwise_kernels.lanes_geometry(
        *s.x_shape[2:], begin, s.out_sp, s.kernel, st, dil
    )
    threads = numba.config.NUMBA_NUM_THREADS
    check_size((threads, floats), np.float32, "depthwise planes")
    table = depthwise_kernels.lanes_tables(*s.x_shape[2:], begin, s.out_sp, s.kernel, st, dil, wp)
    taps = s.kernel[0] * s.kernel[1]
    scale, shift = _epilogue_vectors(s)
    packed = depthwise_kernels.pack_lanes(s.w, s.bias, scale, shift)  # once per plan
    n, c, h, w = s.x_shape
    work = depthwise_lanes_work(n, c, taps, h * w, s.out_sp[0] * s.out_sp[1])
    split = DEPTHWISE_SPLIT_WORK
    # A buffer a thread when the step may split (the kernel asks numba for the threads:
    # a Python call to ``numba.get_num_threads`` costs more than a small step's taps).
    shape = (depthwise_kernels.buffers_floats(threads if work >= 2 * split else 1, floats),)
    geometry = (table, taps, hp * wp * WIDTH, floats, *_act(s))

    def run(x: np.ndarray, out: np.ndarray) -> None:
        planes = scratch("depthwise.lanes", shape, np.float32)
        depthwise_kernels.depthwise2d_lanes(
            np.ascontiguousarray(x), *packed, out, *geometry, planes, work, split
        )

    return run


def _pointwise(s: ConvSpec) -> str | None:
    """None for a 1x1 conv at stride 1 without padding: its input planes are the
    GEMM's columns."""
    if any(k != 1 for k in s.kernel) or any(v != 1 for v in s.strides) or any(s.pads):
        return "not 1x1 at stride 1 without padding"
    if s.x_shape is not None and tuple(s.x_shape[2:]) != tuple(s.out_sp):
        return "padded at the end"
    return None


def _many_rows(s: ConvSpec) -> str | None:
    if s.rows < GEMM_FEW_ROWS:
        return f"{s.rows} output channel(s) per group, fewer than {GEMM_FEW_ROWS}"
    return None


def _both(*tests: Callable[[ConvSpec], str | None]) -> Callable[[ConvSpec], str | None]:
    def applies(s: ConvSpec) -> str | None:
        for t in tests:
            why = t(s)
            if why is not None:
                return why
        return None

    return applies


def _few_rows(s: ConvSpec) -> str | None:
    return None if s.rows < GEMM_FEW_ROWS else f"{s.rows} rows fill the GEMM's tiles"


def _as5d_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[:2]) + (1,) * (5 - len(shape)) + tuple(shape[2:])


def _to3d(values: tuple[int, ...], fill: int) -> tuple[int, int, int]:
    return tuple([fill] * (3 - len(values)) + list(values))  # type: ignore[return-value]


def _im2col_sizes(s: ConvSpec) -> None:
    """im2col's columns: all of C x kernel for at least one image's output plane."""
    assert s.x_shape is not None
    plane = int(np.prod(s.out_sp, dtype=np.int64))
    k_size = s.x_shape[1] * int(np.prod(s.kernel, dtype=np.int64))
    check_size((k_size, plane), np.float32, "im2col columns")
    check_size((s.w.shape[0], plane), np.float32, "im2col products")


def _gemm_conv_prepare(pointwise: bool, few_rows: bool) -> Callable[[ConvSpec], Run]:
    def prepare(s: ConvSpec) -> Run:
        assert s.x_shape is not None
        _im2col_sizes(s)
        w5 = s.w.reshape(_as5d_shape(s.w.shape))
        packed = conv_kernels.pack_weights(w5, s.group)  # once per plan: the call keeps it
        scale, shift = _epilogue_vectors(s)
        call = conv_kernels.ConvGemm(
            _as5d_shape(s.x_shape), w5.shape, packed, s.bias, s.group,
            strides=_to3d(s.strides, 1), pads=_to3d(s.pads, 0), dilations=_to3d(s.dilations, 1),
            out_sp=_to3d(tuple(s.out_sp), 1), epilogue=(*_act(s), scale, shift),
            panel_width=pointwise_width(s) if pointwise else None,
        )  # fmt: skip
        if pointwise:
            return call.pointwise_rows if few_rows else call.pointwise_gemm
        return call.im2col_rows if few_rows else call.im2col_gemm

    return prepare


def _gathered_applies(s: ConvSpec) -> str | None:
    """None for a 2-D 1x1 conv that is not pointwise (strided or padded)."""
    if s.w.ndim != 4 or any(k != 1 for k in s.kernel):
        return "not a 2-D 1x1 conv"
    if _pointwise(s) is None:
        return "pointwise: its input planes are the GEMM's columns"
    if s.x_shape is None:
        return "the output's size known per shape"
    return _many_rows(s)


def _gathered_prepare(s: ConvSpec) -> Run:
    assert s.x_shape is not None
    n, c = s.x_shape[:2]
    check_size((n, c, *s.out_sp), np.float32, "gathered 1x1 conv input")
    packed = conv_kernels.pack_weights(s.w[:, :, None], s.group)  # once per plan
    return conv_kernels.ConvGathered(
        s.x_shape, s.w.shape, packed, s.bias, s.group, strides=tuple(s.strides),
        pads=tuple(s.pads[:2]), out_sp=tuple(s.out_sp), epilogue=(*_act(s),
        *_epilogue_vectors(s)), panel_width=pointwise_width(s),
    )  # fmt: skip


def _patch_applies(s: ConvSpec) -> str | None:
    """None for a 2-D "patchify" conv: kernel = stride, undilated, not 1x1, whose windows
    lie inside the input (no padding read), with enough rows for the GEMM's tiles."""
    if s.w.ndim != 4:
        return f"a {s.w.ndim - 2}-D convolution"  # 1-D and 3-D: not measured
    if tuple(s.kernel) != tuple(s.strides) or s.kernel == (1, 1):
        return "kernel not equal to the stride (or 1x1)"
    if any(d != 1 for d in s.dilations):
        return "dilated"
    if s.x_shape is None:
        return "the output's size known per shape"
    (kh, kw), (h, w) = s.kernel, s.x_shape[2:]
    if any(s.pads[:2]) or tuple(s.out_sp) != (h // kh, w // kw):
        return (
            f"windows read padding: begin pads {tuple(s.pads[:2])}, output "
            f"{s.out_sp[0]}x{s.out_sp[1]} against {h // kh}x{w // kw} whole patches"
        )
    return _many_rows(s)  # few rows: im2col's row-by-row entry, as for a 1x1


def _patch_prepare(s: ConvSpec) -> Run:
    """``patch.PatchConv``, its weights packed as a 1x1 conv's (M, C/G*kh*kw) once per plan."""
    assert s.x_shape is not None
    m, cg, kh, kw = s.w.shape
    packed = conv_kernels.pack_weights(s.w.reshape(m, cg * kh * kw, 1, 1, 1), s.group)
    return patch_kernels.PatchConv(
        s.x_shape, s.w.shape, packed, s.bias, s.group, out_sp=tuple(s.out_sp),
        epilogue=(*_act(s), *_epilogue_vectors(s)), panel_width=pointwise_width(s),
    )  # fmt: skip


def _direct_lanes(s: ConvSpec) -> tuple[int, int]:
    """(lanes the direct kernel's tiles compute, lanes of im2col's panels) over the batch."""
    assert s.x_shape is not None
    nr = gemm_kernels.nr()
    args = (s.out_sp, s.kernel, s.strides, s.dilations, nr)
    direct = conv_kernels.direct_lanes(s.x_shape, *args)
    return direct, -(-s.x_shape[0] * s.out_sp[0] * s.out_sp[1] // nr) * nr


def _direct_tile(s: ConvSpec) -> str:
    """The direct kernel's tile: rows (``conv.direct_rows``) x NR."""
    nr = gemm_kernels.nr()
    return f"{conv_kernels.direct_rows(s.rows, nr)}x{nr}"


def _direct_applies(s: ConvSpec) -> str | None:
    """None for a 2-D conv whose outputs fill the direct kernel's vectors about as well
    as im2col's panels do."""
    if s.w.ndim != 4:
        return f"a {s.w.ndim - 2}-D convolution"
    if s.x_shape is None:
        return "the output's size known per shape"
    direct, im2col = _direct_lanes(s)
    # Grouped convs take it whatever lanes its tiles waste: im2col runs a GEMM a group,
    # tiny for RegNet's 46 groups of 8 channels over 4x4 outputs (1.1 GFLOP/s: 0.78 and
    # 0.73 ms against the direct kernel's 0.48 and 0.29, `cnn profile --threads 1 --clock
    # cpu`, AMD EPYC Zen 3, AVX2).
    if direct > DIRECT_MAX_LANES * im2col and s.group == 1:
        return f"its tiles would compute {direct} lanes against im2col's {im2col}"
    return _many_rows(s)


def _direct_prepare(s: ConvSpec) -> Run:
    assert s.x_shape is not None
    mr = conv_kernels.direct_rows(s.rows, gemm_kernels.nr())
    packed = conv_kernels.pack_direct(s.w, s.group, mr)  # once per plan
    call = conv_kernels.ConvDirect(
        s.x_shape, s.w.shape, packed, s.bias, s.group, strides=tuple(s.strides),
        pads=tuple(s.pads[:2]), dilations=tuple(s.dilations), out_sp=tuple(s.out_sp),
        epilogue=(*_act(s), *_epilogue_vectors(s)),
    )  # fmt: skip
    check_size(call.q_shape, np.float32, "direct conv phase planes")
    return call


def _direct_why(s: ConvSpec) -> str:
    assert s.x_shape is not None
    layout = conv_kernels.direct_layout(
        s.out_sp, s.kernel, s.strides, s.dilations, gemm_kernels.nr()
    )
    slots = "rows" if layout[4] < layout[5] else "positions across rows"
    (kh, kw), (dh, dw) = s.kernel, s.dilations
    split = (layout[0], s.strides[1])  # rows split only for grid slots
    used = len({i * dh % split[0] for i in range(kh)}) * len({i * dw % split[1] for i in range(kw)})
    phases = f", {used} stride phase(s)" if used > 1 else ""
    direct, im2col = _direct_lanes(s)
    why = (
        f"B's vectors read in place from the padded input{phases}: 16 outputs of {slots} "
        f"a vector, {direct} lanes (im2col's: {im2col})"
    )
    if s.group != 1 or any(d != 1 for d in s.dilations):
        return why
    few = _few_channel_pairs(s.w, s.strides)
    small = min(s.w.shape[0], s.w.shape[1]) < WINOGRAD_MIN_CHANNELS
    return why if few is None or small else f"{why}; not Winograd: {few}"


# A strided conv (not 1x1) runs with its output channels in the vectors
# (``conv.ConvPixels``: 8 positions by 32 channels a tile, read in place from the direct
# kernel's phase planes) where that computes at most this share of the lane products of
# the direct kernel (or of im2col's panels, where the direct kernel does not apply), and
# the direct kernel's tiles are not whole rows of 16 outputs (those it stores from
# registers): small planes, whose grid slots or short rows are part padding and stored
# piece by piece. One conv at a time, pixels and direct alternated, medians of 100
# (Intel Xeon 6/167, AVX-512, machine loaded; one thread; 3x3 at stride 2, batch 1),
# direct's time over pixels': ResNet-18's 16->32 at 28x28 (share 0.94) 1.19, 32->64 at
# 14x14 (0.89) 1.08, 64->128 at 7x7 (0.88) 1.12; ResNet-50's 64->64 at 8x8 (0.67) 1.35,
# 128->128 at 4x4 (0.50) 1.59; where the direct tiles are whole rows, pixels lost:
# 32->32 at 16x16 (0.89) 0.92, stems of 3 channels at 64x64 (1.0) 0.92-0.95. RegNet's
# groups of 8 channels fill a quarter of the 32 lanes (share 2 to 4): the direct kernel.
# AVX-512 only (its 8 x 32 tiles; not measured on AVX2). Unit: a ratio.
PIXELS_MAX_SHARE = 0.95
# Taps an output sums (C/G x KH x KW) from which the pixels tiles were measured (144:
# 16 channels of 3x3); fewer (stems of 3 channels) keep the direct kernel. Unit: taps.
PIXELS_MIN_TAPS = 144


def _lane_products(s: ConvSpec) -> tuple[int, int, int]:
    """(pixels, direct, im2col): the lane products a tap of the pixels tiles, the
    direct kernel's and im2col's compute over the batch and the groups."""
    assert s.x_shape is not None
    nr, g, rows = gemm_kernels.nr(), s.group, s.rows
    px = conv_kernels.PIXELS
    pixels = s.x_shape[0] * -(-s.out_sp[0] * s.out_sp[1] // px) * px * g * -(-rows // nr) * nr
    direct, im2col = _direct_lanes(s)
    mr = conv_kernels.direct_rows(rows, nr)
    return (
        pixels,
        direct * g * -(-rows // mr) * mr,
        im2col * g * -(-rows // gemm_kernels.MR) * gemm_kernels.MR,
    )


def _direct_whole_rows(s: ConvSpec) -> bool:
    """Whether the direct kernel's tiles are rows of whole vectors of outputs (row
    slots, the rows a multiple of 16 long), which it stores from its registers."""
    layout = conv_kernels.direct_layout(
        s.out_sp, s.kernel, s.strides, s.dilations, gemm_kernels.nr()
    )
    return layout[4] < layout[5] and s.out_sp[1] % WIDTH == 0


def _pixels_applies(s: ConvSpec) -> str | None:
    if not has_avx512():
        return "AVX-512 only (its 8 x 32 tiles; not measured with AVX2)"
    if s.w.ndim != 4:
        return f"a {s.w.ndim - 2}-D convolution"
    if all(v == 1 for v in s.strides) or all(k == 1 for k in s.kernel):
        return "not a strided conv wider than 1x1"
    if s.x_shape is None:
        return "the output's size known per shape"
    taps = int(np.prod(s.w.shape[1:]))
    if taps < PIXELS_MIN_TAPS:
        return f"{taps} taps an output, fewer than {PIXELS_MIN_TAPS}"
    if _direct_whole_rows(s):
        return f"rows of {s.out_sp[1]} outputs: whole vectors of the direct kernel's tiles"
    pixels, direct, im2col = _lane_products(s)
    rival, what = (
        (direct, "the direct kernel's") if _direct_applies(s) is None else (im2col, "im2col's")
    )
    if pixels > PIXELS_MAX_SHARE * rival:
        return f"its tiles would compute {pixels} lane products a tap against {what} {rival}"
    return _many_rows(s)


def _pixels_why(s: ConvSpec) -> str:
    pixels, direct, im2col = _lane_products(s)
    return (
        f"output channels in the vectors, {conv_kernels.PIXELS} positions a tile: "
        f"{pixels} lane products a tap (direct kernel: {direct}, im2col: {im2col})"
    )


def _pixels_prepare(s: ConvSpec) -> Run:
    assert s.x_shape is not None and s.bias is not None
    call = conv_kernels.ConvPixels(
        s.x_shape, s.w, s.bias, s.group, strides=tuple(s.strides), pads=tuple(s.pads[:2]),
        dilations=tuple(s.dilations), out_sp=tuple(s.out_sp),
        epilogue=(*_act(s), *_epilogue_vectors(s)),
    )  # fmt: skip
    check_size(call.q_shape, np.float32, "pixels conv phase planes")
    return call


CONV_KERNELS: tuple[Kernel, ...] = (
    Kernel(
        name=_winograd_name,
        family="winograd",
        applies=_winograd_applies,
        why=_winograd_why,
        prepare=_winograd_prepare,
        runs=("winograd._winograd_conv_chunk",),
    ),
    Kernel(
        name=lambda s: f"conv2d_nchw_depthwise_lanes{WIDTH}_{isa()}",
        family="depthwise",
        applies=_depthwise_lanes_applies,
        why=lambda s: f"group {s.group} = channels, small planes or 7x7: {WIDTH} channels a vector",
        prepare=_depthwise_lanes_prepare,
        runs=("depthwise.depthwise2d_lanes",),
    ),
    Kernel(
        name=lambda s: f"conv2d_nchw_depthwise_direct_{isa()}",
        family="depthwise",
        applies=_depthwise_applies,
        why=lambda s: f"group {s.group} = input channels: phased planes, channels in groups",
        prepare=_depthwise_prepare,
        runs=("depthwise.depthwise2d",),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_pointwise_gemm_{gemm_tile(pointwise_width(s))}_{isa()}",
        family="pointwise",
        applies=_both(_pointwise, _many_rows),
        why=lambda s: "1x1 at stride 1: each job packs its panel of input planes in L1",
        prepare=_gemm_conv_prepare(pointwise=True, few_rows=False),
        runs=("gemm._conv_nchw_pointwise_gemm",),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_pointwise_gemm_rows_{ROWS_TILE}_{isa()}",
        family="pointwise",
        applies=_both(_pointwise, _few_rows),
        why=lambda s: f"1x1 at stride 1, {s.rows} output channel(s) per group: row by row",
        prepare=_gemm_conv_prepare(pointwise=True, few_rows=True),
        runs=("conv._pack_pointwise", "gemm._gemm_f32_rows", "conv._epilogue"),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_gathered_pointwise_gemm_{gemm_tile(pointwise_width(s))}_{isa()}",
        family="pointwise",
        applies=_gathered_applies,
        why=lambda s: (
            f"1x1 at stride {'x'.join(map(str, s.strides))}, padded {tuple(s.pads)}: "
            "the taps gathered into planes, then the pointwise GEMM"
        ),
        prepare=_gathered_prepare,
        runs=("conv._pad_phases", "gemm._conv_nchw_pointwise_gemm"),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_patch_pointwise_gemm_{gemm_tile(pointwise_width(s))}_{isa()}",
        family="patch",
        applies=_patch_applies,
        why=lambda s: (
            f"kernel {'x'.join(map(str, s.kernel))} = stride, unpadded: the patches "
            "gathered into planes, then the pointwise GEMM"
        ),
        prepare=_patch_prepare,
        runs=("patch.gather_patches", "gemm._conv_nchw_pointwise_gemm"),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_pixels_gemm_{conv_kernels.PIXELS}x{gemm_kernels.nr()}_{isa()}",
        family="pixels",
        applies=_pixels_applies,
        why=_pixels_why,
        prepare=_pixels_prepare,
        runs=("conv._pad_phases", "conv._conv_nchw_pixels_gemm"),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_direct_gemm_{_direct_tile(s)}_{isa()}",
        family="direct",
        applies=_direct_applies,
        why=_direct_why,
        prepare=_direct_prepare,
        runs=("conv._pad_phases", "conv._conv_nchw_direct_gemm"),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_im2col_gemm_{gemm_tile()}_{isa()}",
        family="im2col",
        applies=_many_rows,
        why=lambda s: "each job fills its panel of im2col columns in L1",
        prepare=_gemm_conv_prepare(pointwise=False, few_rows=False),
        runs=("conv._conv_nchw_im2col_gemm",),
    ),
    Kernel(
        name=lambda s: f"conv_nchw_im2col_gemm_rows_{ROWS_TILE}_{isa()}",
        family="im2col",
        applies=lambda s: None,
        why=lambda s: f"{s.rows} output channel(s) per group: im2col columns, then row by row",
        prepare=_gemm_conv_prepare(pointwise=False, few_rows=True),
        runs=("conv._im2col", "gemm._gemm_f32_rows", "conv._epilogue"),
    ),
)

# a fused max pool that the kernel does not fuse: the MaxPool step's kernels (``_pool_after``)
POOL_AFTER = ("pool.max_pool_rows", "pool.max_pool_rows_planes")


def _pools_itself(entry: Kernel, s: ConvSpec) -> bool:
    """Whether ``entry``'s kernel applies a fused max pool itself: Winograd's output
    transform does, but for a conv with a residual Add (added to the unpooled output
    once it is in place, then pooled as ``_pool_after`` pools it)."""
    return entry.family == "winograd" and not s.residual


def _pool_after(s: ConvSpec):
    """The call that pools the output of a conv whose kernel does not pool (``s.max_pool``:
    no padding, dilation or ceil mode): the MaxPool step's own (``nn.MaxPoolCall``, rows
    by vectors), 2 to 5 times faster than the separable plane-per-job pool it replaced
    (1d21e0d)."""
    from runtime.ops.nn import MaxPoolCall  # runtime.ops.nn imports this module

    assert s.x_shape is not None and s.max_pool is not None
    kh, kw, sh, sw = s.max_pool
    pooled = ((s.out_sp[0] - kh) // sh + 1, (s.out_sp[1] - kw) // sw + 1)
    conv_shape = (s.x_shape[0], s.w.shape[0], *s.out_sp)
    return MaxPoolCall(conv_shape, pooled, (0, 0), (kh, kw), (sh, sw), (1, 1))


def _choose(table: tuple[Kernel, ...], s: ConvSpec) -> tuple[Kernel, Choice]:
    """The first entry that applies, and its choice."""
    for entry in table:
        if entry.applies(s) is None:
            runs = entry.runs
            if s.max_pool is not None and not _pools_itself(entry, s):
                runs += _pool_after(s).choice.runs
            return entry, Choice(entry.name(s), entry.why(s), runs)
    raise AssertionError("the last conv entry applies to every conv")


# entries whose store adds a residual
RESIDUAL_FAMILIES = ("winograd", "pointwise", "patch", "direct", "im2col")


def residual_fits(w: np.ndarray | None, attrs: Mapping[str, Any]) -> bool:
    """Whether a conv with constant weights ``w`` and ``attrs`` runs, at any input
    shape, an entry whose store can add a fused residual: Winograd (its weights found
    Winograd-worthy at load), or a pointwise, direct or im2col GEMM in tiles (not
    depthwise, enough rows per group)."""
    if w is None or w.dtype != np.float32 or w.ndim < 3:
        return False
    if conv_at_load(w, attrs)[1] is not None:  # Winograd weights: the Winograd entry
        return True
    group = attrs.get("group", 1)
    return not (group > 1 and w.shape[1] == 1) and w.shape[0] // group >= GEMM_FEW_ROWS


def choose_conv(s: ConvSpec) -> tuple[Choice, Run]:
    """The conv's kernel at its input shape, and its call (prepared now: weights packed
    or transformed, work sizes checked). A fused max pool that the kernel does not fuse
    runs after it (``_pool_after``). With a fused residual the call is
    ``run(x, out, res)``; only Winograd and the GEMM entries in tiles take one
    (``residual_fits`` holds for the convs the pass fuses it into)."""
    table = CONV_KERNELS
    if s.residual:  # the entries that take it
        table = tuple(e for e in CONV_KERNELS if e.family in RESIDUAL_FAMILIES)
    entry, choice = _choose(table, s)
    if s.residual:
        assert "_rows_" not in choice.algorithm, choice  # residual_fits: enough rows
        choice = Choice(choice.algorithm, choice.reason + "; the residual Add in the store",
                        choice.runs)  # fmt: skip
    if s.max_pool is None or _pools_itself(entry, s):
        return choice, entry.prepare(s)
    return choice, _then_max_pool(s, entry.prepare(replace(s, max_pool=None)))


def _then_max_pool(s: ConvSpec, run: Run) -> Run:
    """``run`` into a scratch array of the conv's whole output, then its max pool."""
    assert s.x_shape is not None
    conv_shape = (s.x_shape[0], s.w.shape[0], *s.out_sp)
    pool = _pool_after(s)

    def run_then_pool(x: np.ndarray, out: np.ndarray, *res: np.ndarray) -> None:
        conv = scratch("conv.unpooled", conv_shape, np.float32)
        run(x, conv, *res)
        pool(conv, out.reshape(pool.shape))

    return run_then_pool


IM2COL_AT_LOAD = "im2col or pointwise GEMM (per shape)"


def conv_at_load(w: np.ndarray | None, attrs: Mapping[str, Any]) -> tuple[Choice, Any]:
    """(choice, WinogradWeights or None) for a Conv with constant weights ``w`` (None:
    the weights are computed at run time), from its weights and attributes alone."""
    strides = tuple(attrs.get("strides") or [1, 1])
    group = attrs.get("group", 1)
    if w is None:
        return Choice(IM2COL_AT_LOAD, "weights are not constants"), None
    if w.dtype != np.float32 or w.ndim < 3:
        return Choice(IM2COL_AT_LOAD, f"not a float32 conv (W {w.shape})"), None
    pads = tuple(attrs.get("pads") or [0] * (2 * (w.ndim - 2)))
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID"):
        pads = (1,)  # SAME pads depend on the input's size
    elif attrs.get("auto_pad") == "VALID":
        pads = (0,)
    spec = ConvSpec(w, group, strides, tuple(attrs.get("dilations") or [1] * (w.ndim - 2)), pads)
    found = _winograd_at_load(w, attrs, strides, group)
    if isinstance(found, WinogradWeights):
        spec = ConvSpec(w, group, strides, spec.dilations, pads, winograd=found)
        return _choose(CONV_KERNELS, spec)[1], found
    entry, choice = _choose(CONV_KERNELS, spec)
    if entry.family == "im2col":
        choice = Choice(choice.algorithm, f"{choice.reason}; not Winograd: {found}", choice.runs)
    return choice, None


def _winograd_at_load(
    w: np.ndarray, attrs: Mapping[str, Any], strides: tuple[int, ...], group: int
) -> WinogradWeights | str:
    """The conv's WinogradWeights, or why it cannot run as Winograd."""
    if w.ndim != 4:
        return f"not a 2-D conv (W {w.shape})"
    if w.shape[2] != w.shape[3] or len(set(strides)) != 1:
        return "kernel or strides not square"
    if group != 1:
        return f"group {group}"
    if any(d != 1 for d in attrs.get("dilations") or [1]):
        return "dilated"
    s = strides[0]
    kk = -(-w.shape[2] // s)
    if kk not in winograd_kernels.TILE:
        return f"kernel {w.shape[2]}x{w.shape[3]} at stride {s}: no Winograd tile for {kk}x{kk}"
    channels = min(w.shape[0], w.shape[1] * s * s)
    if channels < WINOGRAD_MIN_CHANNELS:
        return f"{channels} channels (Winograd from {WINOGRAD_MIN_CHANNELS})"
    few = _few_channel_pairs(w, strides)
    return WinogradWeights(w, s, kk) if few is None else few


def _few_channel_pairs(w: np.ndarray, strides: tuple[int, ...]) -> str | None:
    """Why a Winograd-sized 3x3 conv at stride 1 (group 1, undilated: the caller
    checks) runs the direct kernel instead: its C*M channel pairs are at most
    ``DIRECT_3X3_MAX_PAIRS`` (measured with AVX-512's and AVX2's direct tiles). None
    otherwise."""
    if w.ndim != 4 or w.shape[2:] != (3, 3) or any(v != 1 for v in strides):
        return None
    pairs = w.shape[0] * w.shape[1]
    if pairs > DIRECT_3X3_MAX_PAIRS:
        return None
    return (
        f"{w.shape[1]} x {w.shape[0]} channels, {pairs} pairs, at most "
        f"{DIRECT_3X3_MAX_PAIRS}: the direct kernel, Winograd's transforms outweigh its products"
    )


# --------------------------------------------------------------------------- Gemm


@dataclass(frozen=True)
class GemmKernel:
    """One entry of the GEMM table: A (M, K) @ B (K, N) in float32."""

    name: str
    family: str
    few_rows: bool  # ``gemm.gemm_f32_1x64_row`` row by row, else MR x NR tiles
    runs: tuple[str, ...]


def gemm_entries() -> tuple[GemmKernel, ...]:
    """The GEMM entries on this machine, in the order they are tried."""
    return (
        GemmKernel(
            f"gemm_f32_rows_{ROWS_TILE}_{isa()}",
            "gemm rows",
            True,
            ("gemm._pack_a", "gemm._gemm_f32_rows"),
        ),
        GemmKernel(
            f"gemm_f32_packed_{gemm_tile()}_{isa()}",
            "gemm",
            False,
            ("gemm._pack_a", "gemm._gemm_f32_tiles"),
        ),
    )


def choose_gemm(rows: int, epilogue: str) -> tuple[GemmKernel, Choice]:
    """The float32 GEMM kernel for A with ``rows`` rows (``epilogue``: what its store
    applies, said in the reason)."""
    rows_kernel, tiles_kernel = gemm_entries()
    if rows < GEMM_FEW_ROWS:
        why = f"{rows} row(s) of A, fewer than {GEMM_FEW_ROWS}: a tile would be mostly padding"
        entry = rows_kernel
    else:
        why, entry = f"{rows} rows of A in tiles of {gemm_tile()}", tiles_kernel
    return entry, Choice(entry.name, f"{why}; {epilogue}", entry.runs)


def numpy_gemm(a_dtype: np.dtype, b_dtype: np.dtype) -> Choice:
    return Choice("numpy dot", f"{np.dtype(a_dtype)} x {np.dtype(b_dtype)}: not float32")


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b for float32 (M, K) @ (K, N) or (G, M, K) @ (G, K, N), any strides of
    a and b, out C-contiguous, with the GEMM entry for M rows (other types and layouts:
    numpy's matmul)."""
    if not (
        a.dtype == b.dtype == out.dtype == np.float32
        and out.flags.c_contiguous
        and a.ndim == b.ndim == out.ndim
        and a.ndim in (2, 3)
        and (a.ndim == 2 or a.shape[0] == b.shape[0] == out.shape[0])
    ):
        return np.matmul(a, b, out=out)
    a3 = a if a.ndim == 3 else a[None]
    b3 = b if b.ndim == 3 else b[None]
    g, m, k = a3.shape
    n = b3.shape[2]
    if k == 0:
        out[...] = 0.0
        return out
    nr = gemm_kernels.nr()
    check_size((g, gemm_kernels.blocks(n, nr) * nr, k), np.float32, "GEMM packed B")
    entry, _ = choose_gemm(m, "")
    ap = gemm_kernels.pack_a_call(a3)
    bp = gemm_kernels.pack_b_call(b3)
    run = gemm_kernels.gemm_rows if entry.few_rows else gemm_kernels.gemm_tiles
    run(ap, bp, out if out.ndim == 3 else out[None], m, n)
    return out


# --------------------------------------------------------------------------- chain program

# A plan that compiles into one chain program (``runtime/compiled.py``) runs each op
# as a row of an op table inside ``kernels/chain.run_images``: one parallel region per
# call, a group of images a job. Its convs are chosen here too, and the program keeps
# the choice of each step for ``describe()``.
CHAIN_RUNS = ("chain.run_images", "chain.run_images_serial")


def choose_chain_conv(strides: list[int], dilations: list[int], pool: str) -> tuple[bool, Choice]:
    """(taps read in place, choice) for a conv in a chain program: at stride 1 and
    undilated its taps read the padded input plane in place, else their columns are
    gathered first; ``pool``: what the program does with a pooling fused into it."""
    if list(strides) == [1, 1] and list(dilations) == [1, 1]:
        name, why = "conv2d_nchw_chain_taps", "stride 1: the taps read the padded plane in place"
        flat = True
    else:
        name, why = "conv2d_nchw_chain_columns", "strided or dilated: the taps' columns first"
        flat = False
    return flat, Choice(f"{name}_{isa()}", why + pool, CHAIN_RUNS)


def chain_op(op: str, why: str) -> Choice:
    """The choice of a chain program's row for a step of ``op`` that is not a conv."""
    return Choice(f"chain_{op.lower()}_{isa()}", why, CHAIN_RUNS)


def every_kernel() -> tuple[str, ...]:
    """Every @njit kernel the table's entries run ("module.function"), in table order."""
    names: list[str] = []
    for entry in CONV_KERNELS:
        names += entry.runs
    names += POOL_AFTER
    for g in gemm_entries():
        names += g.runs
    return tuple(dict.fromkeys(names))
