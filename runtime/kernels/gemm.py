"""``gemm_tiles``, ``gemm_rows`` and ``PackedGemm``: the engine's own float32 GEMM, on every core.

    C[g] = A[g] @ B[g]        A (G, M, K), B (G, K, N), C (G, M, N)

Why our own, and not the BLAS numpy loaded: every output element is computed by the
same arithmetic wherever it lies. C[g, i, j] is the chain of fused multiply-adds

    c = 0;  for k in 0 .. K-1:  c = fma(A[g, i, k], B[g, k, j], c)

in that order, whatever i and j are, whether the element sits in a full tile or a
tail, in which thread, at which batch size. BLAS kernels do not promise this:
OpenBLAS's Haswell sgemm (the kernel the environment forces on some AMD machines)
computes edge rows in another order than full blocks, so output channels that see
the same data differ in their last bits, and a softmax over logits of 1e10 (the
light SqueezeNet of ONNX's suite) turns that into wrong outputs. It also keeps
numba's threads the only thread pool.

Layout: A is packed into blocks of ``MR`` rows, (G, ceil(M/MR), K, MR), and B into
panels of ``nr()`` columns, (G, ceil(N/NR), K, NR), both zero-padded. A constant
operand (conv weights, a Gemm's B) is packed once, at plan time (``pack_a``,
``pack_b``); the other is packed per call by a parallel kernel. The micro-kernel
keeps an MR x NR block of sums in vector registers (``simd``): each step loads NR
values of B, broadcasts MR values of A and issues MR * NR/16 fused multiply-adds.
NR is 32 (two 512-bit vectors, 12 accumulators) with AVX-512 and 16 (one ``simd``
vector, which LLVM splits into two 256-bit registers: 12 accumulators) on AVX2, so
that the accumulators fit the register file of either (``isa.has_avx512``). Padding
rows and columns are zeros whose products are never stored.

Jobs: (product g, panel p, a chunk of row blocks), as many chunks as it takes to give
every thread several jobs; a job keeps its panel of B in cache across its row
blocks, and each writes its own tiles of C. The epilogue adds a bias per column and
applies a ReLU while the tile is stored.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.config import GEMM_JOBS_PER_THREAD
from runtime.kernels.activation import (
    _TANH_CLAMP,
    A0,
    A1,
    A2,
    A3,
    A4,
    A5,
    A6,
    B0,
    B1,
    B2,
    B3,
    activate,
)
from runtime.kernels.isa import has_avx512
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    prefetch,
    vadd,
    vdiv,
    vexp2,
    vfma,
    vfmav,
    vload,
    vload_first,
    vmax,
    vmin,
    vmul,
    vrelu,
    vround,
    vsplat,
    vstore,
    vstore_first,
    vwhere_lt,
    vzero,
)
from runtime.memory import scratch

if numba.config.DISABLE_JIT:
    thread_count = numba.get_num_threads
else:
    # numba's own intrinsic behind its jitted get_num_threads: a call of the threading
    # layer's symbol, which a cached kernel can hold (numba.get_num_threads in a kernel
    # holds a ctypes pointer, and numba then refuses to cache the kernel), and in a
    # kernel with a parallel region numba starts its threads before loading it
    from numba.np.ufunc.parallel import _iget_num_threads as thread_count

MR = 6  # rows of A per micro-kernel tile
NO_RESIDUAL = np.zeros(0, np.float32)  # a conv epilogue's residual operand, when none
AHEAD = 32  # rows of a B panel prefetched ahead: B streams from memory at a small M


def nr() -> int:
    """Columns of B per panel on this machine: 2 vectors with AVX-512, 1 with AVX2."""
    return 2 * WIDTH if has_avx512() else WIDTH


def blocks(n: int, size: int) -> int:
    return -(-n // size)


def tile_floats(width: int) -> int:
    """Floats of a thread's tile buffer for tiles of ``width`` columns: the MR x width
    tile, a spare row (``store_tile_vector_epilogue`` gathers a residual row there),
    and at least the four vectors of ``gemm_f32_1x64_row``."""
    return max((MR + 1) * width, 4 * WIDTH)


def pack_a(a: np.ndarray) -> np.ndarray:
    """A (G, M, K) -> (G, ceil(M/MR), K, MR) float32, zero rows past M."""
    g, m, k = a.shape
    rows = np.zeros((g, blocks(m, MR) * MR, k), np.float32)
    rows[:, :m] = a
    return np.ascontiguousarray(rows.reshape(g, -1, MR, k).transpose(0, 1, 3, 2))


def pack_b(b: np.ndarray, width: int | None = None) -> np.ndarray:
    """B (G, K, N) -> (G, ceil(N/NR), K, NR) float32, zero columns past N."""
    width = width or nr()
    g, k, n = b.shape
    cols = np.zeros((g, k, blocks(n, width) * width), np.float32)
    cols[:, :, :n] = b
    return np.ascontiguousarray(cols.reshape(g, k, -1, width).transpose(0, 2, 1, 3))


@kernel(parallel=True)
def _pack_a(a, ap):  # pragma: no cover
    """``pack_a`` into ap, for any strides of a."""
    G, M, K = a.shape
    mb = ap.shape[1]
    for job in prange(G * mb):
        g, b = job // mb, job % mb
        dst = ap[g, b]
        for r in range(MR):
            i = b * MR + r
            if i < M:
                for k in range(K):
                    dst[k, r] = a[g, i, k]
            else:
                for k in range(K):
                    dst[k, r] = 0.0


@kernel(parallel=True)
def _pack_b(b, bp):  # pragma: no cover
    """``pack_b`` into bp, for any strides of b: a job per row of b, which it reads once
    and writes NR values at a time into every panel."""
    G, K, N = b.shape
    nb, width = bp.shape[1], bp.shape[3]
    for job in prange(G * K):
        g, k = job // K, job % K
        row = b[g, k]
        for p in range(nb):
            dst = bp[g, p, k]
            j0 = p * width
            n = min(width, N - j0)
            for j in range(n):
                dst[j] = row[j0 + j]
            for j in range(n, width):
                dst[j] = 0.0


@kernel()
def gemm_f32_6x16_tile(ap, bp, K, t):  # pragma: no cover
    """t (MR*16) = the MR x 16 block ap (K, MR) @ bp (K, 16), six vectors of sums."""
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    for k in range(K):
        prefetch(bp, (k + AHEAD) * WIDTH)
        b = vload(bp, k * WIDTH)
        a = k * MR
        c0 = vfma(c0, b, ap[a])
        c1 = vfma(c1, b, ap[a + 1])
        c2 = vfma(c2, b, ap[a + 2])
        c3 = vfma(c3, b, ap[a + 3])
        c4 = vfma(c4, b, ap[a + 4])
        c5 = vfma(c5, b, ap[a + 5])
    vstore(t, 0 * WIDTH, c0)
    vstore(t, 1 * WIDTH, c1)
    vstore(t, 2 * WIDTH, c2)
    vstore(t, 3 * WIDTH, c3)
    vstore(t, 4 * WIDTH, c4)
    vstore(t, 5 * WIDTH, c5)


@kernel()
def gemm_f32_6x32_tile(ap, bp, K, t):  # pragma: no cover
    """t (MR*32) = the MR x 32 block ap (K, MR) @ bp (K, 32), twelve vectors of sums."""
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = vzero()
    for k in range(K):
        prefetch(bp, (2 * k + 2 * AHEAD) * WIDTH)
        prefetch(bp, (2 * k + 2 * AHEAD + 1) * WIDTH)
        b = vload(bp, 2 * k * WIDTH)
        e = vload(bp, (2 * k + 1) * WIDTH)
        a = k * MR
        s = ap[a]
        c0 = vfma(c0, b, s)
        d0 = vfma(d0, e, s)
        s = ap[a + 1]
        c1 = vfma(c1, b, s)
        d1 = vfma(d1, e, s)
        s = ap[a + 2]
        c2 = vfma(c2, b, s)
        d2 = vfma(d2, e, s)
        s = ap[a + 3]
        c3 = vfma(c3, b, s)
        d3 = vfma(d3, e, s)
        s = ap[a + 4]
        c4 = vfma(c4, b, s)
        d4 = vfma(d4, e, s)
        s = ap[a + 5]
        c5 = vfma(c5, b, s)
        d5 = vfma(d5, e, s)
    w2 = 2 * WIDTH
    vstore(t, 0 * w2, c0)
    vstore(t, 0 * w2 + WIDTH, d0)
    vstore(t, 1 * w2, c1)
    vstore(t, 1 * w2 + WIDTH, d1)
    vstore(t, 2 * w2, c2)
    vstore(t, 2 * w2 + WIDTH, d2)
    vstore(t, 3 * w2, c3)
    vstore(t, 3 * w2 + WIDTH, d3)
    vstore(t, 4 * w2, c4)
    vstore(t, 4 * w2 + WIDTH, d4)
    vstore(t, 5 * w2, c5)
    vstore(t, 5 * w2 + WIDTH, d5)


@kernel()
def gemm_f32_1x64_row(ap, r, bp, o0, o1, o2, o3, step, K, t):  # pragma: no cover
    """t[i*WIDTH : (i+1)*WIDTH] = sum_k ap[k*MR + r] * bp[o_i + k*step : ... + WIDTH] for
    four vectors of B (i = 0..3), four vectors of sums: one row of A against four
    streams of B, for products with too few rows to fill a tile (a fully connected
    layer at batch 1 reads B from memory; four streams read it faster than one).
    Each sum is the same chain of fused multiply-adds as in ``gemm_f32_6x16_tile``."""
    c0 = c1 = c2 = c3 = vzero()
    for k in range(K):
        a = ap[k * MR + r]
        c0 = vfma(c0, vload(bp, o0 + k * step), a)
        c1 = vfma(c1, vload(bp, o1 + k * step), a)
        c2 = vfma(c2, vload(bp, o2 + k * step), a)
        c3 = vfma(c3, vload(bp, o3 + k * step), a)
    vstore(t, 0 * WIDTH, c0)
    vstore(t, 1 * WIDTH, c1)
    vstore(t, 2 * WIDTH, c2)
    vstore(t, 3 * WIDTH, c3)


@kernel(inline="always")
def gemm_f32_6xnr_tile(ap, bp, K, t, width):  # pragma: no cover
    """``gemm_f32_6x16_tile`` or ``gemm_f32_6x32_tile``, for panels of ``width`` columns."""
    if width == WIDTH:
        gemm_f32_6x16_tile(ap, bp, K, t)
    else:
        gemm_f32_6x32_tile(ap, bp, K, t)


@kernel(parallel=True)
def _gemm_f32_rows(ap, bp, c, M, N, tiles, bias, relu):  # pragma: no cover
    """``_gemm_f32_tiles`` for M < ``GEMM_FEW_ROWS``: a job per four vectors of columns, row by row
    (``gemm_f32_1x64_row``)."""
    G, K, width = ap.shape[0], ap.shape[2], bp.shape[3]
    nb = bp.shape[1]
    per = width // WIDTH  # vectors per panel
    vectors = nb * per
    quads = (vectors + 3) // 4
    has_bias = bias.shape[0] > 0
    for job in prange(G * quads):
        g, q = job // quads, job % quads
        t = tiles[numba.get_thread_id()]
        bpg = bp[g].reshape(-1)
        offs = np.empty(4, np.int64)
        for i in range(4):
            v = min(4 * q + i, vectors - 1)  # past the last vector: the last again
            offs[i] = (v // per) * K * width + (v % per) * WIDTH
        for r in range(M):
            gemm_f32_1x64_row(
                ap[g, 0].reshape(-1), r, bpg, offs[0], offs[1], offs[2], offs[3], width, K, t
            )
            dst = c[g, r]
            for i in range(4):
                j0 = (4 * q + i) * WIDTH
                for j in range(max(0, min(WIDTH, N - j0))):
                    v = t[i * WIDTH + j]
                    if has_bias:
                        v += bias[j0 + j]
                    if relu and v < 0.0:
                        v = 0.0
                    dst[j0 + j] = v


@kernel(parallel=True)
def _gemm_f32_tiles(ap, bp, c, M, N, chunk, tiles, bias, relu):  # pragma: no cover
    """c[g] = ap[g] @ bp[g] (+ bias per column, then max(., 0) if relu), c (G, M, N)
    C-contiguous; jobs (g, panel, chunk of ``chunk`` row blocks); tiles (threads,
    MR*NR) the threads' tile buffers. ``bias`` has N values, or none."""
    G, mb, K, width = ap.shape[0], ap.shape[1], ap.shape[2], bp.shape[3]
    nb = bp.shape[1]
    chunks = (mb + chunk - 1) // chunk
    has_bias = bias.shape[0] > 0
    for job in prange(G * nb * chunks):
        g = job // (nb * chunks)
        p = (job // chunks) % nb
        q = job % chunks
        t = tiles[numba.get_thread_id()]
        bpp = bp[g, p].reshape(-1)
        j0 = p * width
        n = min(width, N - j0)
        for b in range(q * chunk, min(mb, (q + 1) * chunk)):
            gemm_f32_6xnr_tile(ap[g, b].reshape(-1), bpp, K, t, width)
            for r in range(min(MR, M - b * MR)):
                dst = c[g, b * MR + r]
                src = t[r * width : r * width + n]
                for j in range(n):
                    v = src[j]
                    if has_bias:
                        v += bias[j0 + j]
                    if relu and v < 0.0:
                        v = 0.0
                    dst[j0 + j] = v


@kernel(inline="always")
def store_conv_tile(
    t, out, n0, plane, m0, rows, j0, n, width, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """Tile t (MR, width): its first ``rows`` rows are output channels m0.., its first
    n columns the conv's columns j0.. (image n0 + col // plane, position col % plane):
    stored into out (images, M, plane) with the epilogue, row by row while in cache.
    ``res`` (out's values, flat, or none): a residual added after the bias, before
    the activation."""
    has_res = res.shape[0] > 0
    M = out.shape[1]
    for r in range(rows):
        m = m0 + r
        j = 0
        while j < n:  # the tile row's columns, split where an image ends
            i = (j0 + j) // plane
            s = (j0 + j) % plane
            count = min(n - j, plane - s)
            dst = out[n0 + i, m, s : s + count]
            dst[:] = t[r * width + j : r * width + j + count]
            if has_res:
                o = ((n0 + i) * M + m) * plane + s
                for u in range(count):
                    dst[u] = (dst[u] + bias[m]) + res[o + u]
                activate(dst, count, np.float32(0.0), act, alpha, beta, scale[m], shift[m])
            else:
                activate(dst, count, bias[m], act, alpha, beta, scale[m], shift[m])
            j += count


# The activations a conv epilogue applies to vectors of sums in registers (none, Relu,
# Tanh, Sigmoid, Clip, HardSigmoid, HardSwish, SiLU: ``activation.ACTIVATIONS``, and
# LeakyRelu with a slope in [0, 1]: ``vector_act``); the others go through
# ``activation.activate``.
VECTOR_ACTS = (0, 1, 3, 4, 5, 6, 7, 8)


@kernel(inline="always")
def vector_act(act, alpha):  # pragma: no cover
    """Whether ``epilogue_vector`` applies activation ``act`` (with ``alpha``)."""
    return (act != 2 and act <= 8) or (act == 2 and alpha >= 0.0 and alpha <= 1.0)


@kernel(inline="always")
def vtanh(v):  # pragma: no cover
    """``activation._tanh`` on a vector: the same clamp and rational function, written
    with the same multiplies and adds (the kernels may contract them into fused
    multiply-adds, as they may the scalar's)."""
    v = vmin(vmax(v, vsplat(-_TANH_CLAMP)), vsplat(_TANH_CLAMP))
    v2 = vmul(v, v)
    p = vadd(vmul(vsplat(A6), v2), vsplat(A5))
    p = vadd(vmul(p, v2), vsplat(A4))
    p = vadd(vmul(p, v2), vsplat(A3))
    p = vadd(vmul(p, v2), vsplat(A2))
    p = vadd(vmul(p, v2), vsplat(A1))
    p = vmul(vadd(vmul(p, v2), vsplat(A0)), v)
    q = vadd(vmul(vsplat(B3), v2), vsplat(B2))
    q = vadd(vmul(q, v2), vsplat(B1))
    q = vadd(vmul(q, v2), vsplat(B0))
    return vdiv(p, q)


# Sigmoid as 1 / (1 + exp(-v)) with Cephes' float exp (a polynomial on [-ln 2 / 2,
# ln 2 / 2] and an exact power of 2), lane by lane: the scalar Sigmoid calls exp, which
# LLVM does not vectorise (SiLU after an EfficientNet depthwise conv took about four
# times the conv).
_LOG2E, _LN2_HI, _LN2_LO = (
    np.float32(1.44269504088896341),
    np.float32(0.693359375),
    np.float32(-2.12194440e-4),
)
_E0, _E1, _E2, _E3, _E4, _E5 = (
    np.float32(v)
    for v in (
        1.9875691500e-4,
        1.3981999507e-3,
        8.3334519073e-3,
        4.1665795894e-2,
        1.6666665459e-1,
        5.0000001201e-1,
    )
)


@kernel(inline="always")
def vexp(v):  # pragma: no cover
    """exp lane by lane, within 2 ulp; 0 below -104 and inf above 89 (v clamped to
    [-104, 100] first), a NaN stays NaN."""
    v = vmin(vmax(v, vsplat(-104.0)), vsplat(100.0))
    n = vround(vmul(v, vsplat(_LOG2E)))
    r = vfma(vfma(v, n, -_LN2_HI), n, -_LN2_LO)  # v - n ln 2, in two parts
    y = vfmav(vsplat(_E1), vsplat(_E0), r)
    y = vfmav(vsplat(_E2), y, r)
    y = vfmav(vsplat(_E3), y, r)
    y = vfmav(vsplat(_E4), y, r)
    y = vfmav(vsplat(_E5), y, r)
    y = vadd(vfmav(r, y, vmul(r, r)), vsplat(1.0))
    return vmul(y, vexp2(n))


@kernel(inline="always")
def vsigmoid(v):  # pragma: no cover
    """1 / (1 + exp(-v)) on a vector (``vexp``): 0 from -87 down, so that SiLU of -inf is
    NaN (-inf * 0), as the unfused Sigmoid and Mul give; 1 at +inf; a NaN stays NaN.
    No lane makes a subnormal (each one costs a microcode assist: 15x the time, 5.8
    against 0.38 ns an element for v = 88 on a Xeon 6/167, which random-weight
    networks' large activations hit in every SiLU): exp's argument is held to
    [-80, 87], where 1 + exp(-80) is 1 in float32 already and 1 / (1 + exp(87)) is
    still normal; below -87, where the true value is subnormal, 0."""
    e = vexp(vmin(vmax(vmul(v, vsplat(-1.0)), vsplat(-80.0)), vsplat(87.0)))
    return vwhere_lt(v, vsplat(-87.0), vzero(), vdiv(vsplat(1.0), vadd(vsplat(1.0), e)))


@kernel(inline="always")
def epilogue_vector(c, bias, act, alpha, beta, sc, sf):  # pragma: no cover
    """act(c + bias) * sc + sf for one vector of one output channel's sums, ``act`` one
    of ``VECTOR_ACTS`` (Clip's bounds alpha and beta; HardSigmoid's and HardSwish's
    slope and offset); every element gets the same arithmetic (one rounded add, the
    activation with ``activation.activate``'s roundings, one fused multiply-add)."""
    return activate_vector(vadd(c, vsplat(bias)), act, alpha, beta, sc, sf)


@kernel(inline="always")
def epilogue_vector_res(c, r, bias, act, alpha, beta, sc, sf):  # pragma: no cover
    """``epilogue_vector`` with a residual vector r added after the bias, before the
    activation: act((c + bias) + r) * sc + sf (a residual Add fused into the conv)."""
    return activate_vector(vadd(vadd(c, vsplat(bias)), r), act, alpha, beta, sc, sf)


@kernel(inline="always")
def activate_vector(v, act, alpha, beta, sc, sf):  # pragma: no cover
    """act(v) * sc + sf for ``act`` one of ``VECTOR_ACTS`` (``act_vector``)."""
    return vfma(vsplat(sf), act_vector(v, act, alpha, beta), sc)


@kernel(inline="always")
def act_vector(v, act, alpha, beta):  # pragma: no cover
    """act(v) for ``act`` one of ``VECTOR_ACTS`` (LeakyRelu: ``vector_act``; max(v,
    alpha v) is its value for a slope in [0, 1])."""
    if act == 1:
        v = vrelu(v)
    elif act == 2:
        v = vmax(v, vmul(v, vsplat(alpha)))
    elif act == 3:
        v = vtanh(v)
    elif act == 4:
        v = vsigmoid(v)
    elif act == 8:
        v = vmul(v, vsigmoid(v))
    elif act == 5:
        v = vclip(v, alpha, beta)
    elif act == 6:
        v = vhard_sigmoid(v, alpha, beta)
    elif act == 7:
        v = vmul(v, vhard_sigmoid(v, alpha, beta))
    return v


@kernel(inline="always")
def vclip(v, lo, hi):  # pragma: no cover
    """Clip(v, lo, hi) on a vector; a NaN stays NaN."""
    return vmin(vmax(v, vsplat(lo)), vsplat(hi))


@kernel(inline="always")
def vhard_sigmoid(v, alpha, beta):  # pragma: no cover
    """max(0, min(1, alpha v + beta)) on a vector; a NaN stays NaN, as in ``clamp``."""
    h = vadd(vmul(v, vsplat(alpha)), vsplat(beta))
    return vmin(vmax(h, vsplat(0.0)), vsplat(1.0))


@kernel(inline="always")
def _store_row(
    of, o, c, d, m, width, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """One tile row's vectors c (and d, for 32-wide tiles) through the epilogue of
    channel m into of[o : o + width]; ``res`` (flat as of, or none): a residual."""
    b, sc, sf = bias[m], scale[m], shift[m]
    if res.shape[0] > 0:
        vstore(of, o, epilogue_vector_res(c, vload(res, o), b, act, alpha, beta, sc, sf))
        if width > WIDTH:
            r = vload(res, o + WIDTH)
            vstore(of, o + WIDTH, epilogue_vector_res(d, r, b, act, alpha, beta, sc, sf))
    else:
        vstore(of, o, epilogue_vector(c, b, act, alpha, beta, sc, sf))
        if width > WIDTH:
            vstore(of, o + WIDTH, epilogue_vector(d, b, act, alpha, beta, sc, sf))


@kernel()
def gemm_f32_6x16_tile_store(
    ap, bp, K, of, o, S, m0, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """``gemm_f32_6x16_tile``, its six rows stored through the epilogue straight into of at o,
    o + S, ..., o + 5 S (channels m0 .. m0 + 5; a full tile inside one image)."""
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    for k in range(K):
        b = vload(bp, k * WIDTH)
        a = k * MR
        c0 = vfma(c0, b, ap[a])
        c1 = vfma(c1, b, ap[a + 1])
        c2 = vfma(c2, b, ap[a + 2])
        c3 = vfma(c3, b, ap[a + 3])
        c4 = vfma(c4, b, ap[a + 4])
        c5 = vfma(c5, b, ap[a + 5])
    _store_row(of, o, c0, c0, m0, WIDTH, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + S, c1, c1, m0 + 1, WIDTH, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 2 * S, c2, c2, m0 + 2, WIDTH, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 3 * S, c3, c3, m0 + 3, WIDTH, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 4 * S, c4, c4, m0 + 4, WIDTH, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 5 * S, c5, c5, m0 + 5, WIDTH, bias, act, alpha, beta, scale, shift, res)


@kernel()
def gemm_f32_6x32_tile_store(
    ap, bp, K, of, o, S, m0, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """``gemm_f32_6x32_tile``, its six rows stored through the epilogue straight into of at o,
    o + S, ..., o + 5 S (channels m0 .. m0 + 5; a full tile inside one image)."""
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = vzero()
    for k in range(K):
        b = vload(bp, 2 * k * WIDTH)
        e = vload(bp, (2 * k + 1) * WIDTH)
        a = k * MR
        s = ap[a]
        c0 = vfma(c0, b, s)
        d0 = vfma(d0, e, s)
        s = ap[a + 1]
        c1 = vfma(c1, b, s)
        d1 = vfma(d1, e, s)
        s = ap[a + 2]
        c2 = vfma(c2, b, s)
        d2 = vfma(d2, e, s)
        s = ap[a + 3]
        c3 = vfma(c3, b, s)
        d3 = vfma(d3, e, s)
        s = ap[a + 4]
        c4 = vfma(c4, b, s)
        d4 = vfma(d4, e, s)
        s = ap[a + 5]
        c5 = vfma(c5, b, s)
        d5 = vfma(d5, e, s)
    w = 2 * WIDTH
    _store_row(of, o, c0, d0, m0, w, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + S, c1, d1, m0 + 1, w, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 2 * S, c2, d2, m0 + 2, w, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 3 * S, c3, d3, m0 + 3, w, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 4 * S, c4, d4, m0 + 4, w, bias, act, alpha, beta, scale, shift, res)
    _store_row(of, o + 5 * S, c5, d5, m0 + 5, w, bias, act, alpha, beta, scale, shift, res)


@kernel(inline="always")
def identity_rows(scale, shift, m0, m1):  # pragma: no cover
    """Whether channels m0 .. m1 have scale 1 and shift 0 (no BatchNormalization after
    the activation): their epilogue is act(sum + bias) alone."""
    same = True
    for m in range(m0, m1):
        same = same & (scale[m] == 1.0) & (shift[m] == 0.0)
    return same


# The activations of ``gemm_f32_6x32_panel_bias_act`` (none, Relu, Clip, HardSwish and
# SiLU: the CNNs' pointwise convs), each stored by its own code; the others take the
# general tile store.
BIAS_ACT_ACTS = (0, 1, 5, 7, 8)


@kernel(inline="always")
def bias_act_applies(act):  # pragma: no cover
    """Whether ``act`` is one of ``BIAS_ACT_ACTS``."""
    return act <= 1 or act == 5 or act == 7 or act == 8


@kernel(inline="always")
def _cheap_act(v, act, alpha, beta):  # pragma: no cover
    """``act_vector`` for act 0, 1, 5 or 7: a constant ``act`` folds the branches away."""
    if act == 1:
        v = vrelu(v)
    elif act == 5:
        v = vclip(v, alpha, beta)
    elif act == 7:
        v = vmul(v, vhard_sigmoid(v, alpha, beta))
    return v


@kernel(inline="always")
def _store_row_cheap(of, o, c, d, b, n, width, act, alpha, beta):  # pragma: no cover
    """``_store_row`` for scale 1, shift 0, no residual and act 0, 1, 5 or 7: act(c + b)
    (and d's) into of[o : o + n] (n <= width; masked stores, whose masks stay out of the
    loops). The same values: ``activate_vector``'s final fma(v, 1, 0) is v (no sum is
    -0: each starts at +0)."""
    vstore_first(of, o, _cheap_act(vadd(c, vsplat(b)), act, alpha, beta), min(n, WIDTH))
    if width > WIDTH:
        v = _cheap_act(vadd(d, vsplat(b)), act, alpha, beta)
        vstore_first(of, o + WIDTH, v, max(n - WIDTH, 0))


@kernel(inline="always")
def _store_row_silu(of, o, c, d, b, n, width):  # pragma: no cover
    """``_store_row_cheap`` for SiLU: v sigmoid(v), v = c + b."""
    v = vadd(c, vsplat(b))
    vstore_first(of, o, vmul(v, vsigmoid(v)), min(n, WIDTH))
    if width > WIDTH:
        v = vadd(d, vsplat(b))
        vstore_first(of, o + WIDTH, vmul(v, vsigmoid(v)), max(n - WIDTH, 0))


@kernel(inline="always")
def _store_tile_bias_act(
    of, o, S, m, c0, c1, c2, c3, c4, c5, d0, d1, d2, d3, d4, d5, n, width, bias, act, alpha, beta
):  # pragma: no cover
    """Six tile rows (channels m .. m + 5, vectors c and, 32 wide, d), their first n
    columns, at o, o + S, ..., o + 5 S as act(sum + bias), the activation
    (``BIAS_ACT_ACTS``) chosen once a tile."""
    if act == 8:
        _store_row_silu(of, o, c0, d0, bias[m], n, width)
        _store_row_silu(of, o + S, c1, d1, bias[m + 1], n, width)
        _store_row_silu(of, o + 2 * S, c2, d2, bias[m + 2], n, width)
        _store_row_silu(of, o + 3 * S, c3, d3, bias[m + 3], n, width)
        _store_row_silu(of, o + 4 * S, c4, d4, bias[m + 4], n, width)
        _store_row_silu(of, o + 5 * S, c5, d5, bias[m + 5], n, width)
    elif act == 1:
        _store_6_rows_cheap(of, o, S, m, c0, c1, c2, c3, c4, c5, d0, d1, d2, d3, d4, d5,
                            n, width, bias, 1, alpha, beta)  # fmt: skip
    elif act == 5:
        _store_6_rows_cheap(of, o, S, m, c0, c1, c2, c3, c4, c5, d0, d1, d2, d3, d4, d5,
                            n, width, bias, 5, alpha, beta)  # fmt: skip
    elif act == 7:
        _store_6_rows_cheap(of, o, S, m, c0, c1, c2, c3, c4, c5, d0, d1, d2, d3, d4, d5,
                            n, width, bias, 7, alpha, beta)  # fmt: skip
    else:
        _store_6_rows_cheap(of, o, S, m, c0, c1, c2, c3, c4, c5, d0, d1, d2, d3, d4, d5,
                            n, width, bias, 0, alpha, beta)  # fmt: skip


@kernel(inline="always")
def _store_6_rows_cheap(
    of, o, S, m, c0, c1, c2, c3, c4, c5, d0, d1, d2, d3, d4, d5, n, width, bias, act, alpha, beta
):  # pragma: no cover
    """``_store_tile_bias_act``'s six rows by ``_store_row_cheap``."""
    _store_row_cheap(of, o, c0, d0, bias[m], n, width, act, alpha, beta)
    _store_row_cheap(of, o + S, c1, d1, bias[m + 1], n, width, act, alpha, beta)
    _store_row_cheap(of, o + 2 * S, c2, d2, bias[m + 2], n, width, act, alpha, beta)
    _store_row_cheap(of, o + 3 * S, c3, d3, bias[m + 3], n, width, act, alpha, beta)
    _store_row_cheap(of, o + 4 * S, c4, d4, bias[m + 4], n, width, act, alpha, beta)
    _store_row_cheap(of, o + 5 * S, c5, d5, bias[m + 5], n, width, act, alpha, beta)


@kernel()
def gemm_f32_6x16_panel_bias_act(
    ap, b0, b1, K, bp, of, o, S, m0, n, bias, act, alpha, beta
):  # pragma: no cover
    """Row blocks b0 .. b1 of ap (flat (blocks, K, MR)) times the panel bp (K, 16), each
    tile's row r of block b stored as act(sum + bias) into of at o + (b MR + r) S, its
    first n columns (channel m0 + b MR + r; the panel's columns inside one image, a
    partial one at an image's end too): ``gemm_f32_6x16_tile_store``
    for scale 1, shift 0, no residual and ``BIAS_ACT_ACTS``, the same values, with the
    activation chosen per tile (``_store_tile_bias_act``) and one call for a job's
    tiles, not one per tile with the general epilogue's arguments."""
    for blk in range(b0, b1):
        a0 = blk * K * MR
        c0 = c1 = c2 = c3 = c4 = c5 = vzero()
        for k in range(K):
            b = vload(bp, k * WIDTH)
            a = a0 + k * MR
            c0 = vfma(c0, b, ap[a])
            c1 = vfma(c1, b, ap[a + 1])
            c2 = vfma(c2, b, ap[a + 2])
            c3 = vfma(c3, b, ap[a + 3])
            c4 = vfma(c4, b, ap[a + 4])
            c5 = vfma(c5, b, ap[a + 5])
        _store_tile_bias_act(of, o + blk * MR * S, S, m0 + blk * MR, c0, c1, c2, c3, c4, c5,
                             c0, c1, c2, c3, c4, c5, n, WIDTH, bias, act, alpha, beta)  # fmt: skip


@kernel()
def gemm_f32_6x32_panel_bias_act(
    ap, b0, b1, K, bp, of, o, S, m0, n, bias, act, alpha, beta
):  # pragma: no cover
    """``gemm_f32_6x16_panel_bias_act`` for a panel bp (K, 32): ``gemm_f32_6x32_tile_store``'s
    sums."""
    for blk in range(b0, b1):
        a0 = blk * K * MR
        c0 = c1 = c2 = c3 = c4 = c5 = vzero()
        d0 = d1 = d2 = d3 = d4 = d5 = vzero()
        for k in range(K):
            b = vload(bp, 2 * k * WIDTH)
            e = vload(bp, (2 * k + 1) * WIDTH)
            a = a0 + k * MR
            s = ap[a]
            c0 = vfma(c0, b, s)
            d0 = vfma(d0, e, s)
            s = ap[a + 1]
            c1 = vfma(c1, b, s)
            d1 = vfma(d1, e, s)
            s = ap[a + 2]
            c2 = vfma(c2, b, s)
            d2 = vfma(d2, e, s)
            s = ap[a + 3]
            c3 = vfma(c3, b, s)
            d3 = vfma(d3, e, s)
            s = ap[a + 4]
            c4 = vfma(c4, b, s)
            d4 = vfma(d4, e, s)
            s = ap[a + 5]
            c5 = vfma(c5, b, s)
            d5 = vfma(d5, e, s)
        _store_tile_bias_act(of, o + blk * MR * S, S, m0 + blk * MR, c0, c1, c2, c3, c4, c5,
                             d0, d1, d2, d3, d4, d5, n, 2 * WIDTH, bias, act, alpha,
                             beta)  # fmt: skip


@kernel(inline="always")
def store_tile_vector_epilogue(
    t, of, n0, M, S, m0, rows, j0, n, width, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """A partial tile t (MR, width) through ``epilogue_vector`` (in place, whole
    vectors), then its first ``rows`` rows and n columns copied into out (images, M, S)
    flat as of, split where an image ends: the same arithmetic as ``tile_store_*``.
    ``res`` (flat as of, or none): a residual, each row's gathered into the tile
    buffer's spare row t[MR * width :] (``TILE_FLOATS``) and added in vectors too."""
    has_res = res.shape[0] > 0
    rr = MR * width
    for r in range(rows):
        m = m0 + r
        if has_res:
            for u in range(width):
                t[rr + u] = 0.0
            j = 0
            while j < n:
                i = (j0 + j) // S
                s = (j0 + j) % S
                count = min(n - j, S - s)
                o = ((n0 + i) * M + m) * S + s
                for u in range(count):
                    t[rr + j + u] = res[o + u]
                j += count
        for v in range(0, width, WIDTH):
            i = r * width + v
            if has_res:
                c = epilogue_vector_res(vload(t, i), vload(t, rr + v), bias[m], act, alpha,
                                        beta, scale[m], shift[m])  # fmt: skip
            else:
                c = epilogue_vector(vload(t, i), bias[m], act, alpha, beta, scale[m], shift[m])
            vstore(t, i, c)
        j = 0
        while j < n:
            i = (j0 + j) // S
            s = (j0 + j) % S
            count = min(n - j, S - s)
            o = ((n0 + i) * M + m) * S + s
            for u in range(count):
                of[o + u] = t[r * width + j + u]
            j += count


@kernel(inline="always")
def store_panel_tiles(
    a_blocks,
    b0,
    b1,
    pan,
    K,
    t,
    width,
    out,
    n0,
    S,
    m_first,
    Mg,
    j0,
    n,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
    res,
    bias_act=-1,
):  # pragma: no cover
    """Row blocks b0 .. b1 of a_blocks (blocks, K, MR) times the panel pan (K, width) of
    a conv's columns j0 .. j0 + n (image n0 + col // S, position col % S), stored into
    out (images, M, S) as output channels m_first + b*MR + r with the conv's epilogue:
    with an activation of ``VECTOR_ACTS`` a full tile inside one image from its
    registers (``tile_store_*``), a partial one through the same vector epilogue
    (``store_tile_vector_epilogue``); other activations through ``store_conv_tile``.
    ``res`` (out's values, flat, or none): a residual Add fused into the conv, added
    after the bias and before the activation. ``bias_act``: whether rows b0 .. b1 have
    scale 1, shift 0 and no residual (-1: decided here, over those rows); their full
    tiles are then stored as act(sum + bias) by ``gemm_f32_6x32_panel_bias_act`` (or
    6x16), in one call. Shared by the pointwise and the im2col convs."""
    if bias_act < 0:
        rows_end = m_first + min(Mg, b1 * MR)
        plain = identity_rows(scale, shift, m_first + b0 * MR, rows_end)
        bias_act = 1 if res.shape[0] == 0 and plain else 0
    M = out.shape[1]
    of = out.reshape(-1)
    i0 = j0 // S
    s0 = j0 % S
    whole = n == width and s0 + width <= S  # the tile's columns inside image n0 + i0
    in_vectors = vector_act(act, alpha)
    bf = b0  # blocks b0 .. bf: full ones stored as act(sum + bias), in one call
    # inside one image; 32-wide panels only: on 16-wide ones (planes of 16 positions and
    # fewer, large K) the general tile store measured faster in the network (EfficientNet-B0's
    # six 6x16 steps 0.85-0.89 -> 0.98-1.06 ms with it, one thread, CPU clock)
    if bias_act == 1 and width > WIDTH and s0 + n <= S and bias_act_applies(act):
        bf = max(b0, min(b1, Mg // MR))
    if bf > b0:
        o = ((n0 + i0) * M + m_first) * S + s0
        flat = a_blocks.reshape(-1)
        if width == WIDTH:
            gemm_f32_6x16_panel_bias_act(flat, b0, bf, K, pan, of, o, S, m_first, n, bias,
                                         act, alpha, beta)  # fmt: skip
        else:
            gemm_f32_6x32_panel_bias_act(flat, b0, bf, K, pan, of, o, S, m_first, n, bias,
                                         act, alpha, beta)  # fmt: skip
    for b in range(bf, b1):
        m0 = m_first + b * MR
        rows = min(MR, Mg - b * MR)
        a = a_blocks[b].reshape(-1)
        if in_vectors and whole and rows == MR:
            o = ((n0 + i0) * M + m0) * S + s0
            if width == WIDTH:
                gemm_f32_6x16_tile_store(
                    a, pan, K, of, o, S, m0, bias, act, alpha, beta, scale, shift, res
                )
            else:
                gemm_f32_6x32_tile_store(
                    a, pan, K, of, o, S, m0, bias, act, alpha, beta, scale, shift, res
                )
        elif in_vectors:
            gemm_f32_6xnr_tile(a, pan, K, t, width)
            store_tile_vector_epilogue(t, of, n0, M, S, m0, rows, j0, n, width, bias, act,
                                       alpha, beta, scale, shift, res)  # fmt: skip
        else:
            gemm_f32_6xnr_tile(a, pan, K, t, width)
            store_conv_tile(t, out, n0, S, m0, rows, j0, n, width, bias, act, alpha, beta,
                            scale, shift, res)  # fmt: skip


@kernel(inline="always")
def _pointwise_job(
    job,
    ap,
    xf,
    C,
    S,
    out,
    n0,
    N,
    Mg,
    chunk,
    nbp,
    chunks,
    pan,
    t,
    width,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
    res,
    bias_act,
):  # pragma: no cover
    """Job (g, panel p, chunk q of row blocks) of ``_conv_nchw_pointwise_gemm``: panel p
    of group g's columns packed from the input planes xf (flat (N, C, S)) into pan, then
    multiplied and stored by ``store_panel_tiles`` (``bias_act``, 0 or 1: whether the
    call's epilogue is act(sum + bias) alone)."""
    mb, K = ap.shape[1], ap.shape[2]
    g = job // (nbp * chunks)
    p = (job // chunks) % nbp
    q = job % chunks
    j0 = p * width
    n = min(width, N - j0)
    i0 = j0 // S
    s0 = j0 % S
    if n == width and s0 + width <= S:  # a full panel inside image n0 + i0
        src = ((n0 + i0) * C + g * K) * S + s0
        for k in range(K):
            for v in range(0, width, WIDTH):
                vstore(pan, k * width + v, vload(xf, src + k * S + v))
    elif s0 + n <= S:  # a partial one at the end of image n0 + i0: zeros past n
        src = ((n0 + i0) * C + g * K) * S + s0
        for k in range(K):
            for v in range(0, width, WIDTH):
                vstore(
                    pan, k * width + v, vload_first(xf, src + k * S + v, min(max(n - v, 0), WIDTH))
                )
    else:
        for k in range(K):
            j = 0
            while j < n:  # runs of one image's positions
                i = (j0 + j) // S
                s = (j0 + j) % S
                count = min(n - j, S - s)
                src = ((n0 + i) * C + g * K + k) * S + s
                for u in range(count):
                    pan[k * width + j + u] = xf[src + u]
                j += count
            for u in range(n, width):
                pan[k * width + u] = 0.0
    store_panel_tiles(ap[g], q * chunk, min(mb, (q + 1) * chunk), pan, K, t, width, out, n0,
                      S, g * Mg, Mg, j0, n, bias, act, alpha, beta, scale, shift, res,
                      bias_act)  # fmt: skip


@kernel(parallel=True)
def _conv_nchw_pointwise_gemm(ap, x, out, ep, scale, shift, geo, res):  # pragma: no cover
    """A 1x1 conv at stride 1 without pads: packed weights ap (G, blocks, C/G, MR) times
    the planes of images n0 .. n0 + nb of x (N, C, H, W) into out (N, M, H, W) (1-D and
    3-D convs: H = 1, W the plane's size). A job (g, panel p of ``width`` columns, a
    chunk of row blocks, as in ``_gemm_f32_tiles``) packs its own panel of columns from
    the input planes (row k of group g: input channel g*Kg + k; column i*S + s: image
    n0 + i, position s) into its thread's panel, where the tiles then read it from L1 (a
    panel inside one image: a vector copy per row), and stores its tiles by
    ``store_panel_tiles``. Jobs that share a panel (chunks of rows) each pack it: K x NR
    copies against K x NR x MR x chunk multiply-adds; on one thread a chunk is every row
    block, each panel packed once.

    Few arguments, as numba's dispatch costs per argument: ep holds the bias (M), then
    alpha and beta; geo (int64) n0, nb, M/G, width and the activation; res: a residual,
    out's values flat, or none. The jobs stay a parallel region on one thread too: numba
    compiles its body with its arrays marked unaliased (no two of them views of one
    array), 1.3 to 1.6 times as fast at small K as the same loop outside one."""
    G, mb, K = ap.shape[0], ap.shape[1], ap.shape[2]
    C, S = x.shape[1], x.shape[2] * x.shape[3]
    M = out.shape[1]
    n0, nb, Mg, width, act = geo[0], geo[1], geo[2], geo[3], geo[4]
    alpha, beta = ep[M], ep[M + 1]
    xf = x.reshape(-1)
    o3 = out.reshape(out.shape[0], M, S)
    N = nb * S
    nbp = (N + width - 1) // width
    threads = thread_count()
    chunk = mb
    if threads > 1:  # ``job_rows``: as many chunks as give every thread several jobs
        chunks = max(1, min(mb, (GEMM_JOBS_PER_THREAD * threads + G * nbp - 1) // (G * nbp)))
        chunk = (mb + chunks - 1) // chunks
    chunks = (mb + chunk - 1) // chunk
    panels = np.empty((threads, K * width), np.float32)
    tiles = np.empty((threads, max((MR + 1) * width, 4 * WIDTH)), np.float32)  # tile_floats
    bias_act = 1 if res.shape[0] == 0 and identity_rows(scale, shift, 0, M) else 0  # once
    for job in prange(G * nbp * chunks):
        tid = numba.get_thread_id()
        _pointwise_job(job, ap, xf, C, S, o3, n0, N, Mg, chunk, nbp, chunks, panels[tid],
                       tiles[tid], width, ep, act, alpha, beta, scale, shift, res,
                       bias_act)  # fmt: skip


def pointwise_epilogue(bias: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``_conv_nchw_pointwise_gemm``'s ep: the bias (M), then alpha and beta."""
    return np.concatenate([bias, np.array([alpha, beta], np.float32)]).astype(np.float32)


def pointwise_geometry(n0: int, nb: int, rows: int, width: int, act: int) -> np.ndarray:
    """``_conv_nchw_pointwise_gemm``'s geo: n0, nb, M/G, the panel width, the activation."""
    return np.array([n0, nb, rows, width, act], np.int64)


def gemm_pointwise(
    ap: np.ndarray,
    x: np.ndarray,
    out: np.ndarray,
    n0: int,
    nb: int,
    bias: np.ndarray,
    act: int,
    alpha: float,
    beta: float,
    scale: np.ndarray,
    shift: np.ndarray,
    width: int | None = None,
    res: np.ndarray = NO_RESIDUAL,
) -> np.ndarray:
    """``_conv_nchw_pointwise_gemm``: packed weights ap (G, blocks, C/G, MR) times the planes of
    images n0 .. n0+nb of x (N, C, S) into out (N, M, S), with the conv's epilogue
    (``res``: a residual shaped as out, flat, added before the activation; or none).
    Needs M/G >= ``GEMM_FEW_ROWS``. A conv's prepared call (``conv.ConvGemm``) makes
    the epilogue and geometry arrays once and calls the kernel itself."""
    g = ap.shape[0]
    n, m, s = out.shape
    ep = pointwise_epilogue(bias, alpha, beta)
    geo = pointwise_geometry(n0, nb, m // g, width or nr(), act)
    x4, out4 = x.reshape(x.shape[0], x.shape[1], 1, s), out.reshape(n, m, 1, s)
    _conv_nchw_pointwise_gemm(ap, x4, out4, ep, scale, shift, geo, res)
    return out


def job_rows(g: int, mb: int, nb: int, threads: int = 0) -> int:
    """Row blocks per job: one chunk each while panels alone give every thread several
    jobs, else enough chunks that they do (``threads``: numba's, 0 to ask it)."""
    want = GEMM_JOBS_PER_THREAD * (threads or numba.get_num_threads())
    chunks = min(mb, blocks(want, g * nb))
    return blocks(mb, max(1, chunks))


def _tiles_buffer(width: int) -> np.ndarray:
    return scratch("gemm.tiles", (numba.get_num_threads(), tile_floats(width)), np.float32)


def gemm_tiles(
    ap: np.ndarray,
    bp: np.ndarray,
    out: np.ndarray,
    m: int,
    n: int,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """out (G, m, n) = packed A @ packed B (+ bias per column, ReLU) in MR x NR tiles
    (``_gemm_f32_tiles``), out C-contiguous."""
    b = np.zeros(0, np.float32) if bias is None else bias
    chunk = job_rows(ap.shape[0], ap.shape[1], bp.shape[1])
    _gemm_f32_tiles(ap, bp, out, m, n, chunk, _tiles_buffer(bp.shape[3]), b, relu)
    return out


def gemm_rows(
    ap: np.ndarray,
    bp: np.ndarray,
    out: np.ndarray,
    m: int,
    n: int,
    bias: np.ndarray | None = None,
    relu: bool = False,
) -> np.ndarray:
    """``gemm_tiles`` row by row (``_gemm_f32_rows``, ``gemm_f32_1x64_row``): for
    m < ``GEMM_FEW_ROWS``, where a tile of MR rows would compute mostly padding. The
    kernel reads A's first block of MR rows only: a larger m is a ValueError."""
    if m > MR:
        raise ValueError(f"gemm_rows: m = {m} rows, expected at most {MR} (use gemm_tiles)")
    b = np.zeros(0, np.float32) if bias is None else bias
    _gemm_f32_rows(ap, bp, out, m, n, _tiles_buffer(bp.shape[3]), b, relu)
    return out


def _as3d(x: np.ndarray) -> np.ndarray:
    return x if x.ndim == 3 else x[None]


def pack_a_call(a: np.ndarray) -> np.ndarray:
    """``pack_a`` of a (G, M, K) into a per-thread scratch buffer, in parallel."""
    g, m, k = a.shape
    ap = scratch("gemm.a", (g, blocks(m, MR), k, MR), np.float32)
    _pack_a(a, ap)
    return ap


def pack_b_call(b: np.ndarray, width: int | None = None) -> np.ndarray:
    """``pack_b`` of b (G, K, N) into a per-thread scratch buffer, in parallel."""
    width = width or nr()
    g, k, n = b.shape
    bp = scratch("gemm.b", (g, blocks(n, width), k, width), np.float32)
    _pack_b(b, bp)
    return bp


class PackedGemm:
    """y = x @ B (+ bias per column, ReLU) for a constant B (K, N), packed once: the
    float32 Gemm and MatMul ops' call at a given shape of x (M, K)."""

    def __init__(
        self,
        b: np.ndarray,
        bias: np.ndarray | None = None,
        relu: bool = False,
        *,
        few_rows: bool = False,
    ) -> None:
        """``few_rows``: run row by row (``gemm_rows``), chosen by the kernel table."""
        self.k, self.n = b.shape
        self.product = gemm_rows if few_rows else gemm_tiles
        self.bp = pack_b(np.asarray(b, np.float32)[None])
        self.bias = None if bias is None else np.ascontiguousarray(bias, np.float32)
        self.relu = relu

    def __call__(self, x: np.ndarray, out: np.ndarray) -> np.ndarray:
        """x (M, K) float32, any strides; out (M, N) float32 C-contiguous."""
        if self.k == 0:
            out[...] = 0.0 if self.bias is None else self.bias
            if self.relu:
                np.maximum(out, 0, out=out)
            return out
        ap = pack_a_call(x[None])
        return self.product(ap, self.bp, out[None], x.shape[0], self.n, self.bias, self.relu)


if numba.config.DISABLE_JIT:
    # Plain Python runs the micro-kernels as NumPy sums over the same panels (the vector
    # loop, interpreted, would take minutes for one conv layer). einsum without
    # ``optimize`` adds the products along k in order, in place, the same for every
    # element, as the vector loop does (BLAS would not: it is what this module
    # replaces), and holds no (K, MR, width) temporary.

    def _tile(ap, bp, K, t, width):
        out = t[: MR * width].reshape(MR, width)
        a, b = ap[: K * MR].reshape(K, MR), bp[: K * width].reshape(K, width)
        np.einsum("km,kn->mn", a, b, out=out, optimize=False)

    def gemm_f32_6x16_tile(ap, bp, K, t):
        _tile(ap, bp, K, t, WIDTH)

    def gemm_f32_6x32_tile(ap, bp, K, t):
        _tile(ap, bp, K, t, 2 * WIDTH)

    def _tile_store(ap, bp, K, of, o, S, m0, width, bias, act, alpha, beta, scale, shift, res):
        t = np.empty(MR * width, np.float32)
        _tile(ap, bp, K, t, width)
        for r in range(MR):
            m = m0 + r
            for v in range(0, width, WIDTH):
                c = vload(t, r * width + v)
                args = (bias[m], act, alpha, beta, scale[m], shift[m])
                if res.shape[0] > 0:
                    c = epilogue_vector_res(c, vload(res, o + r * S + v), *args)
                else:
                    c = epilogue_vector(c, *args)
                vstore(of, o + r * S + v, c)

    def gemm_f32_6x16_tile_store(ap, bp, K, of, o, S, m0, bias, act, alpha, beta, scale, shift,
                                 res):  # fmt: skip
        _tile_store(ap, bp, K, of, o, S, m0, WIDTH, bias, act, alpha, beta, scale, shift, res)

    def gemm_f32_6x32_tile_store(ap, bp, K, of, o, S, m0, bias, act, alpha, beta, scale, shift,
                                 res):  # fmt: skip
        _tile_store(ap, bp, K, of, o, S, m0, 2 * WIDTH, bias, act, alpha, beta, scale, shift,
                    res)  # fmt: skip

    def _panel_bias_act(ap, b0, b1, K, bp, of, o, S, m0, n, width, bias, act, alpha, beta):
        t = np.empty(MR * width, np.float32)
        for blk in range(b0, b1):
            _tile(ap[blk * K * MR :], bp, K, t, width)
            for r in range(MR):
                q, b = o + (blk * MR + r) * S, bias[m0 + blk * MR + r]
                for v in range(0, width, WIDTH):
                    c = act_vector(vadd(vload(t, r * width + v), vsplat(b)), act, alpha, beta)
                    vstore_first(of, q + v, c, min(max(n - v, 0), WIDTH))

    def gemm_f32_6x16_panel_bias_act(ap, b0, b1, K, bp, of, o, S, m0, n, bias, act, alpha, beta):
        _panel_bias_act(ap, b0, b1, K, bp, of, o, S, m0, n, WIDTH, bias, act, alpha, beta)

    def gemm_f32_6x32_panel_bias_act(ap, b0, b1, K, bp, of, o, S, m0, n, bias, act, alpha, beta):
        _panel_bias_act(ap, b0, b1, K, bp, of, o, S, m0, n, 2 * WIDTH, bias, act, alpha, beta)
