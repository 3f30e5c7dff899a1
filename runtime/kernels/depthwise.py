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
the sums in registers (or, for activations outside ``gemm.VECTOR_ACTS``, by
``activation.activate`` on the plane while it is in cache), then each row's first
OW of WQ goes to the output. Copies in and out are masked vectors (``simd``), so a
channel's set-up is a few vector operations a row; a job is a group of channels, so
a job's (thread buffers, zeroing) is paid once per group: on planes of 16x16 and
below the set-up, not the taps, was most of the time.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.gemm import epilogue_vector
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    veven,
    vfma,
    vload,
    vload_first,
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
    vector_act = act == 0 or act == 1 or act == 5
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
                    a0 = epilogue_vector(a0, b, act, alpha, beta, sc, sf)
                    a1 = epilogue_vector(a1, b, act, alpha, beta, sc, sf)
                    a2 = epilogue_vector(a2, b, act, alpha, beta, sc, sf)
                    a3 = epilogue_vector(a3, b, act, alpha, beta, sc, sf)
                vstore(rb, p, a0)
                vstore(rb, p + WIDTH, a1)
                vstore(rb, p + 2 * WIDTH, a2)
                vstore(rb, p + 3 * WIDTH, a3)
            for p in range(blocks, total, WIDTH):
                a0 = vzero()
                for k in range(KH * KW):
                    a0 = vfma(a0, vload(buf, taps[k] + p), wf[w0 + k])
                if vector_act:
                    a0 = epilogue_vector(a0, b, act, alpha, beta, sc, sf)
                vstore(rb, p, a0)
            o0 = (n * M + m) * OH * OW
            for oy in range(OH):
                copy_first(of, o0 + oy * OW, rb, oy * WQ, OW)
            if not vector_act:
                activate(of[o0 : o0 + OH * OW], OH * OW, b, act, alpha, beta, sc, sf)
