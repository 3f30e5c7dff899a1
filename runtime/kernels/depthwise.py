"""Depthwise 2-D convolution (group = input channels): a direct kernel on phased planes.

    out[n, m, oh, ow] = act(b[m] + sum_{i, j} w[m, 0, i, j] *
                            x[n, m // mult, oh*sh - ph + i*dh, ow*sw - pw + j*dw]) * sc[m] + sf[m]

with mult = M / C output channels per input channel. As im2col it would be C
products of one row each, so the GEMM's tiles would be all padding (MobileNets and
EfficientNets are mostly such layers).

Each channel's input plane is copied once into a zero-padded buffer split into
sh x sw phases (phase (a, b) holds the padded rows a, a + sh, ... and columns b,
b + sw, ...), all WQ wide. Tap (i, j) of output (oy, ox) then reads its phase at a
fixed offset from the output's flat index oy WQ + ox, at any stride, so the outputs
are computed over that flat index, four vectors at a time across rows: a 7-wide
row wastes the WQ - 7 lanes of the taps' reach, not 16 - 7 of a vector per row.
One fused multiply-add per tap and vector, the taps in the same order for every
output, so channels that see the same data get the same bits. The epilogue runs on
the sums in registers (``gemm.epilogue_vector``; Tanh, Sigmoid and SiLU by a vector
form of ``activation._tanh``'s rational function; LeakyRelu alone by
``activation.activate`` on the plane while it is in cache), then each row's first
OW of WQ goes to the output. Copies in and out are masked vectors (``simd``), so a
channel's set-up is a few vector operations a row; a job is a group of channels, so
a job's (thread buffers, zeroing) is paid once per group: on planes of 16x16 and
below the set-up, not the taps, was most of the time.

Below that (``depthwise2d_lanes``, one filter per channel), WIDTH channels share a
vector instead: a job transposes its channels' pixels into a padded plane of
WIDTH-wide pixels (NHWC16, as XNNPACK's and MLAS's depthwise kernels read them),
runs every tap over four pixels with every lane useful, and transposes the sums
back to the channels' planes. Its cost is two transpositions per pixel, not a
set-up per channel, so it wins on small planes and loses on large ones.
Its offsets are made once per plan (``lanes_tables``); a step with too little work a
thread for a parallel launch to pay runs its jobs in one thread, without one; and its
buffers start on a vector boundary (a vector split across two cache lines cost a 5x5
step 25 to 30%).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.gemm import epilogue_vector, vsigmoid, vtanh
from runtime.kernels.isa import has_avx512
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    transpose,
    vadd,
    veven,
    vfma,
    vfmav,
    vload,
    vload_first,
    vmax,
    vmin,
    vmul,
    vrelu,
    vsplat,
    vstore,
    vstore_first,
    vzero,
)


def geometry(h, w, pads, out, k, s, d) -> tuple[int, int, int, int]:
    """(rows, width, plane, results) of ``depthwise2d``'s buffers for one plane:
    the padded input split into s[0] x s[1] phases of (rows, width) floats, each wide
    enough for an output row and the taps' reach and tall enough for the input rows
    and the output rows' reach, one more row and a vector of slack after the last
    phase (what the last vectors read past the output); the results hold the output
    rows at that width, rounded up to whole vectors."""
    reach_h, reach_w = ((k[0] - 1) * d[0]) // s[0], ((k[1] - 1) * d[1]) // s[1]
    width = max(-(-(w + pads[1]) // s[1]), out[1] + reach_w)
    rows = max(-(-(h + pads[0]) // s[0]), out[0] + reach_h + 1)
    results = -(-(out[0] * width) // WIDTH) * WIDTH
    return rows, width, s[0] * s[1] * rows * width + WIDTH, results


@kernel(inline="always")
def _first_vector(a):  # pragma: no cover
    """Where in float32 array ``a`` the first WIDTH-float (vector-sized) boundary is:
    the threads' buffers start there, WIDTH floats of slack allowing, since a vector
    load or store that straddles two cache lines cost 25 to 30% of a 5x5 lanes step
    (numpy's arrays start on 16 bytes, a vector is 64)."""
    return (-(a.ctypes.data >> 2)) % WIDTH


def buffers_floats(threads: int, floats: int) -> int:
    """The floats of a scratch array holding ``threads`` buffers of ``floats`` each (a
    multiple of WIDTH) and the slack to start them on a vector boundary."""
    return threads * floats + WIDTH


@kernel(inline="always")
def copy_first(dst, d, src, s, n):  # pragma: no cover
    """dst[d : d + n] = src[s : s + n], a vector at a time, the last one masked: nothing
    outside the n values is read or written."""
    for u in range(0, n, WIDTH):
        k = min(WIDTH, n - u)
        vstore_first(dst, d + u, vload_first(src, s + u, k), k)


@kernel(inline="always")
def copy_every_other_first(dst, d, src, s, n):  # pragma: no cover
    """dst[d + v] = src[s + 2 v] for v < n, a vector at a time from two masked loads:
    nothing past src[s + 2 (n - 1)] is read, nothing past dst[d + n - 1] written."""
    last = 2 * n - 1  # source values up to and including the last one kept
    for v in range(0, n, WIDTH):
        lo = min(WIDTH, last - 2 * v)
        hi = min(WIDTH, max(0, last - 2 * v - WIDTH))
        k = min(WIDTH, n - v)
        both = veven(vload_first(src, s + 2 * v, lo), vload_first(src, s + 2 * v + WIDTH, hi))
        vstore_first(dst, d + v, both, k)


@kernel(parallel=True)
def depthwise2d(
    x,
    w,
    bias,
    out,
    ph,
    pw,
    sh,
    sw,
    dh,
    dw,
    HQ,
    WQ,
    act,
    alpha,
    beta,
    scale,
    shift,
    group,
    planes,
    results,
):  # pragma: no cover
    """``group`` channels a job. x (N, C, H, W) and out (N, M, OH, OW) C-contiguous,
    w (M, 1, KH, KW); HQ, WQ from ``geometry``; planes (threads, plane) and results
    (threads, results) the threads' buffers. Tap (i, j) of output (oy, ox) reads its
    phase at (oy + i dh // sh) WQ + ox + j dw // sw. Every index is flat (no array
    view per row: a view costs more than the row's copy)."""
    N, C, H, W = x.shape
    M, _, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    mult = M // C
    xf = x.reshape(-1)
    of = out.reshape(-1)
    wf = w.reshape(-1)
    vector_act = act != 2  # all but LeakyRelu in registers (``_epilogue``)
    phase = HQ * WQ
    taps = np.empty(KH * KW, np.int64)
    for i in range(KH):
        for j in range(KW):
            a, b = (i * dh) % sh, (j * dw) % sw
            taps[i * KW + j] = (a * sw + b) * phase + (i * dh) // sh * WQ + (j * dw) // sw
    rows = np.empty(H, np.int64)  # where input row y lands in phase (a, 0)
    for y in range(H):
        rows[y] = ((y + ph) % sh) * sw * phase + ((y + ph) // sh) * WQ
    u0s = np.empty(sw, np.int64)
    u1s = np.empty(sw, np.int64)
    for q in range(sw):  # padded column q + u*sw is input column q + u*sw - pw
        u0s[q] = max(0, (pw - q + sw - 1) // sw)
        u1s[q] = min(WQ, (W - 1 + pw - q) // sw + 1)
    total = OH * WQ  # flat outputs, the last WQ - OW of each row unused
    blocks = total // (4 * WIDTH) * (4 * WIDTH)
    planes[:] = 0.0  # the padding; every channel writes the same interior
    groups = -(-M // group)
    for job in prange(N * groups):
        n, g = job // groups, job % groups
        buf = planes[numba.get_thread_id()]
        rb = results[numba.get_thread_id()]
        last = -1
        for m in range(g * group, min(M, g * group + group)):
            c = m if mult == 1 else m // mult
            if c != last:  # two filters of one channel share its phases
                last = c
                x0 = (n * C + c) * H * W
                for y in range(H):
                    for q in range(sw):
                        u0, u1 = u0s[q], u1s[q]
                        if u1 <= u0:
                            continue
                        d = rows[y] + q * phase + u0
                        src = x0 + y * W + q + u0 * sw - pw
                        if sw == 1:
                            copy_first(buf, d, xf, src, u1 - u0)
                        elif sw == 2:
                            copy_every_other_first(buf, d, xf, src, u1 - u0)
                        else:
                            for u in range(u1 - u0):
                                buf[d + u] = xf[src + u * sw]
            w0 = m * KH * KW
            b, sc, sf = bias[m], scale[m], shift[m]
            for p in range(0, blocks, 4 * WIDTH):
                a0 = a1 = a2 = a3 = vzero()
                for k in range(KH * KW):
                    o = taps[k] + p
                    t = wf[w0 + k]
                    a0 = vfma(a0, vload(buf, o), t)
                    a1 = vfma(a1, vload(buf, o + WIDTH), t)
                    a2 = vfma(a2, vload(buf, o + 2 * WIDTH), t)
                    a3 = vfma(a3, vload(buf, o + 3 * WIDTH), t)
                if vector_act:
                    a0 = _epilogue(a0, b, act, alpha, beta, sc, sf)
                    a1 = _epilogue(a1, b, act, alpha, beta, sc, sf)
                    a2 = _epilogue(a2, b, act, alpha, beta, sc, sf)
                    a3 = _epilogue(a3, b, act, alpha, beta, sc, sf)
                vstore(rb, p, a0)
                vstore(rb, p + WIDTH, a1)
                vstore(rb, p + 2 * WIDTH, a2)
                vstore(rb, p + 3 * WIDTH, a3)
            for p in range(blocks, total, WIDTH):
                a0 = vzero()
                for k in range(KH * KW):
                    a0 = vfma(a0, vload(buf, taps[k] + p), wf[w0 + k])
                if vector_act:
                    a0 = _epilogue(a0, b, act, alpha, beta, sc, sf)
                vstore(rb, p, a0)
            o0 = (n * M + m) * OH * OW
            for oy in range(OH):
                copy_first(of, o0 + oy * OW, rb, oy * WQ, OW)
            if not vector_act:
                activate(of[o0 : o0 + OH * OW], OH * OW, b, act, alpha, beta, sc, sf)


if numba.config.DISABLE_JIT:
    _threads = numba.get_num_threads
else:
    from llvmlite import ir
    from numba.core import cgutils, types
    from numba.extending import intrinsic

    @intrinsic
    def _threads(typingctx):
        """``numba.get_num_threads()`` in a kernel. numba's own calls the threading layer
        through a ctypes pointer, which keeps a kernel out of the cache ("uses dynamic
        globals"); this calls the symbol the layer exports, as numba's get_thread_id
        does (and a Python call costs more than a small step's taps)."""
        numba.get_num_threads()  # starts the threading layer, which exports the symbol

        def codegen(context, builder, sig, args):
            fnty = ir.FunctionType(cgutils.intp_t, [])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "get_num_threads")
            return builder.call(fn, [])

        return types.intp(), codegen


# Eight output pixels a step where 32 vector registers hold their sums (AVX-512); AVX2's
# 16 hold four (each of its vectors is two registers there).
WIDE = has_avx512()


def lanes_geometry(h, w, pads, out, k, s, d) -> tuple[int, int, int]:
    """(rows, columns, floats) of ``depthwise2d_lanes``'s buffer: a padded plane of
    WIDTH-channel pixels (the input and the taps' reach from the last output), a
    WIDTH x WIDTH tile, then the output pixels rounded up to whole tiles."""
    rows = max(h + pads[0], (out[0] - 1) * s[0] + (k[0] - 1) * d[0] + 1)
    cols = max(w + pads[1], (out[1] - 1) * s[1] + (k[1] - 1) * d[1] + 1)
    pixels = -(-(out[0] * out[1]) // WIDTH) * WIDTH
    return rows, cols, (rows * cols + WIDTH + pixels) * WIDTH


def pack_lanes(w: np.ndarray, *vectors: np.ndarray) -> tuple[np.ndarray, ...]:
    """The filters (C, 1, KH, KW) as (G, KH*KW, WIDTH): each tap's weights for a group
    of WIDTH channels in a row; then each (C,) vector as (G, WIDTH). Zeros past C."""
    c = w.shape[0]
    g = -(-c // WIDTH)
    taps = np.zeros((g * WIDTH, w.shape[2] * w.shape[3]), np.float32)
    taps[:c] = w.reshape(c, -1)
    packed = [np.ascontiguousarray(taps.reshape(g, WIDTH, -1).transpose(0, 2, 1))]
    for v in vectors:
        flat = np.zeros(g * WIDTH, np.float32)
        flat[:c] = v
        packed.append(flat.reshape(g, WIDTH))
    return tuple(packed)


def lanes_tables(
    h: int,
    w: int,
    pads: tuple[int, ...],
    out: tuple[int, ...],
    k: tuple[int, ...],
    s: tuple[int, ...],
    d: tuple[int, ...],
    wp: int,
) -> np.ndarray:
    """``depthwise2d_lanes``'s offsets (int64), made once per plan: where each tap reads
    from an output pixel's corner (KH*KW), where each input pixel lands in the padded
    plane (H*W), then each output pixel's corner, the pixels rounded up to blocks of 4
    (the last one repeated); all in floats of the buffer."""
    L = WIDTH
    i, j = np.meshgrid(np.arange(k[0]), np.arange(k[1]), indexing="ij")
    taps = (i * d[0] * wp + j * d[1]) * L
    y, x = np.divmod(np.arange(h * w), w)
    spots = ((y + pads[0]) * wp + x + pads[1]) * L
    p = out[0] * out[1]
    q = np.minimum(np.arange(-(-p // 4) * 4), p - 1)
    oy, ox = np.divmod(q, out[1])
    pixels = (oy * s[0] * wp + ox * s[1]) * L
    return np.concatenate([taps.ravel(), spots, pixels]).astype(np.int64)


@kernel(inline="always")
def _epilogue(v, bias, act, alpha, beta, sc, sf):  # pragma: no cover
    """``gemm.epilogue_vector`` (Tanh, Sigmoid and SiLU too: ``gemm.vtanh``, ``gemm.vsigmoid``)."""
    return epilogue_vector(v, bias, act, alpha, beta, sc, sf)


@kernel(inline="always")
def _lanes_epilogue(v, bias, act, lo, hi, sc, sf):  # pragma: no cover
    """``gemm.epilogue_vector`` with a bias, scale and shift per lane (lo and hi: alpha
    and beta in every lane), the same arithmetic."""
    v = vadd(v, bias)
    if act == 1:
        v = vrelu(v)
    elif act == 5:
        v = vmin(vmax(v, lo), hi)
    elif act == 6 or act == 7:  # HardSigmoid, HardSwish
        h = vadd(vmul(v, lo), hi)
        h = vmin(vmax(h, vsplat(0.0)), vsplat(1.0))
        v = h if act == 6 else vmul(v, h)
    elif act == 3:
        v = vtanh(v)
    elif act == 4:
        v = vsigmoid(v)
    elif act == 8:  # SiLU
        v = vmul(v, vsigmoid(v))
    return vfmav(sf, v, sc)


@kernel(inline="always")
def _lanes_store(buf, at, v, vector_act, bias, act, lo, hi, sc, sf):  # pragma: no cover
    """buf[at : at + WIDTH] = v, through ``_lanes_epilogue`` with a vector activation."""
    if vector_act:
        v = _lanes_epilogue(v, bias, act, lo, hi, sc, sf)
    vstore(buf, at, v)


@kernel()
def _lanes_jobs(
    j0, j1, x, wt, bt, st, ft, out, table, K, tile, act, alpha, beta, buf
):  # pragma: no cover
    """Jobs ``j0`` to ``j1 - 1`` of ``depthwise2d_lanes`` in one thread's buffer ``buf``
    (its padding zeroed first)."""
    _, C, H, W = x.shape
    OH, OW = out.shape[2], out.shape[3]
    HW, P = H * W, OH * OW
    PB = -(-P // 4) * 4  # output pixels rounded up to blocks of 4: the last one repeated
    L = WIDTH
    xf = x.reshape(-1)
    of = out.reshape(-1)
    wf = wt.reshape(-1)
    bf, sf_, ff = bt.reshape(-1), st.reshape(-1), ft.reshape(-1)
    vector_act = act != 2  # all but LeakyRelu in registers (``_epilogue``)
    spots, pixels = K, K + HW  # where the table's parts start (``lanes_tables``)
    res = tile + L * L  # the buffer: the plane, a tile, the output pixels
    for u in range(0, tile, L):
        vstore(buf, u, vzero())  # the padding; every job writes the same interior
    lo, hi = vsplat(alpha), vsplat(beta)
    groups = -(-C // L)
    for job in range(j0, j1):
        n, g = job // groups, job % groups
        c0 = g * L
        lanes = min(L, C - c0)
        x0 = (n * C + c0) * HW
        for q0 in range(0, HW, L):
            k = min(L, HW - q0)
            transpose(xf, x0 + q0, HW, lanes, k, buf, tile, L, k, L)
            for q in range(k):
                vstore(buf, table[spots + q0 + q], vload(buf, tile + q * L))
        bv, sv, fv = vload(bf, c0), vload(sf_, c0), vload(ff, c0)
        o0 = (n * C + c0) * P
        w0 = g * K * L
        p = 0
        while WIDE and p + 8 <= PB:  # eight chains of FMAs: two FMA ports at latency 4
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = vzero()
            r0, r1 = table[pixels + p], table[pixels + p + 1]
            r2, r3 = table[pixels + p + 2], table[pixels + p + 3]
            r4, r5 = table[pixels + p + 4], table[pixels + p + 5]
            r6, r7 = table[pixels + p + 6], table[pixels + p + 7]
            for k in range(K):
                t = vload(wf, w0 + k * L)
                o = table[k]
                a0 = vfmav(a0, vload(buf, r0 + o), t)
                a1 = vfmav(a1, vload(buf, r1 + o), t)
                a2 = vfmav(a2, vload(buf, r2 + o), t)
                a3 = vfmav(a3, vload(buf, r3 + o), t)
                a4 = vfmav(a4, vload(buf, r4 + o), t)
                a5 = vfmav(a5, vload(buf, r5 + o), t)
                a6 = vfmav(a6, vload(buf, r6 + o), t)
                a7 = vfmav(a7, vload(buf, r7 + o), t)
            q = res + p * L
            _lanes_store(buf, q, a0, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + L, a1, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 2 * L, a2, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 3 * L, a3, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 4 * L, a4, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 5 * L, a5, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 6 * L, a6, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 7 * L, a7, vector_act, bv, act, lo, hi, sv, fv)
            p += 8
        while p < PB:
            a0 = a1 = a2 = a3 = vzero()
            r0, r1 = table[pixels + p], table[pixels + p + 1]
            r2, r3 = table[pixels + p + 2], table[pixels + p + 3]
            for k in range(K):
                t = vload(wf, w0 + k * L)
                o = table[k]
                a0 = vfmav(a0, vload(buf, r0 + o), t)
                a1 = vfmav(a1, vload(buf, r1 + o), t)
                a2 = vfmav(a2, vload(buf, r2 + o), t)
                a3 = vfmav(a3, vload(buf, r3 + o), t)
            q = res + p * L
            _lanes_store(buf, q, a0, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + L, a1, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 2 * L, a2, vector_act, bv, act, lo, hi, sv, fv)
            _lanes_store(buf, q + 3 * L, a3, vector_act, bv, act, lo, hi, sv, fv)
            p += 4
        for p0 in range(0, P, L):
            k = min(L, P - p0)
            transpose(buf, res + p0 * L, L, k, L, of, o0 + p0, P, lanes, k)
        if not vector_act:
            for c in range(c0, c0 + lanes):
                o = (n * C + c) * P
                activate(of[o : o + P], P, bf[c], act, alpha, beta, sf_[c], ff[c])


@kernel(parallel=True)
def depthwise2d_lanes(
    x, wt, bt, st, ft, out, table, K, tile, floats, act, alpha, beta, planes, work, split
):  # pragma: no cover
    """The depthwise conv of one filter per channel with the channels in the vector's
    lanes, for planes of a few vectors or less: a job is WIDTH channels of one image.
    x (N, C, H, W), out (N, C, OH, OW) C-contiguous; wt, bt, st, ft from ``pack_lanes``
    (filters, bias, scale, shift; LeakyRelu reads the last three per channel for
    ``activation.activate``); table from ``lanes_tables``, K the taps, tile the padded
    plane's floats and floats a buffer's (``lanes_geometry``); planes holds buffers
    from a vector boundary on (``buffers_floats``). The jobs run in as
    many threads' ranges as have ``split`` of the step's ``work`` each (at most the
    threads, the planes' rows and the jobs), one after the other when that is one: no
    parallel launch for a step too small to pay for it.

    A job transposes its channels' pixels, WIDTH x WIDTH tiles in registers
    (``simd.transpose``), into a zero-padded plane of WIDTH-channel pixels, computes
    four output pixels at a time (a tap: one weight vector, four pixel vectors, four
    fused multiply-adds, every lane useful) into a row of pixels, and transposes that
    back to the channels' planes. The taps run in the same order as ``depthwise2d``'s
    for every output, so both kernels give the same bits."""
    jobs = x.shape[0] * -(-x.shape[1] // WIDTH)
    first, rows = _first_vector(planes), (planes.shape[0] - WIDTH) // floats
    parts = min(_threads(), rows, jobs, work // max(1, split))
    if parts <= 1:
        buf = planes[first : first + floats]
        _lanes_jobs(0, jobs, x, wt, bt, st, ft, out, table, K, tile, act, alpha, beta, buf)
    else:
        for t in prange(parts):  # disjoint ranges of jobs, each in its own buffer
            j0, j1 = t * jobs // parts, (t + 1) * jobs // parts
            buf = planes[first + t * floats : first + (t + 1) * floats]
            _lanes_jobs(j0, j1, x, wt, bt, st, ft, out, table, K, tile, act, alpha, beta, buf)
