"""Depthwise 2-D convolution (group = input channels): a direct kernel, a plane a job.

    out[n, m, oh, ow] = act(b[m] + sum_{i, j} w[m, 0, i, j] *
                            x[n, m // mult, oh*sh - ph + i*dh, ow*sw - pw + j*dw]) * sc[m] + sf[m]

with mult = M / C output channels per input channel. As im2col it would be C
products of one row each, so the GEMM's tiles would be all padding (MobileNets and
EfficientNets are mostly such layers).

Each job copies its input plane once into a zero-padded buffer split into ``sw``
phases by column (phase q holds the padded columns q, q + sw, q + 2 sw, ...), so
that at any stride a tap reads a contiguous run of a phase row. An output row is
computed a vector of outputs at a time, ``ROWS`` rows together: four ``simd`` vectors
of sums in registers, one fused multiply-add per tap and vector, the taps in the same
order for every output, so channels that see the same data get the same bits. A row
is rounded up to whole vectors only (a 7-wide row computes 16, not 64). The rows go
through a row buffer (their last vector is partial) into the plane, then the epilogue
(``activation.activate``) runs on the plane while it is in cache. Each job writes its
own output plane.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.gemm import epilogue_vector
from runtime.kernels.jit import kernel
from runtime.kernels.simd import WIDTH, veven, vfma, vload, vstore, vzero

ROWS = 4  # output rows per step: four vectors of sums, one per row, hide the FMA latency


def geometry(h, w, pads, out, k, s, d) -> tuple[int, int, int]:
    """(rows, phase width, row buffer) of ``depthwise2d``'s buffers for one plane:
    the padded plane is s[1] phases of (rows, phase width) floats, tall enough for
    the output rows rounded up to ``ROWS``; a row buffer holds ``ROWS`` rows of the
    output width rounded up to whole vectors."""
    oh = -(-out[0] // ROWS) * ROWS
    rows = max(h + pads[0], (oh - 1) * s[0] + (k[0] - 1) * d[0] + 1)
    row_buf = -(-out[1] // WIDTH) * WIDTH
    width = max(-(-(w + pads[1]) // s[1]), row_buf + ((k[1] - 1) * d[1]) // s[1] + 1)
    return rows, width, ROWS * row_buf


@kernel(inline="always")
def copy_run(dst, d, src, s, n, room, avail):  # pragma: no cover
    """dst[d : d + n] = src[s : s + n], a vector at a time (a scalar loop with numba's
    index checks does not vectorise). The last vector may run past n, while it stays
    within ``room`` of dst and ``avail`` of src: the values past n are zeroed again
    (they are the plane's padding)."""
    u = 0
    while u < n and u + WIDTH <= room and u + WIDTH <= avail:
        vstore(dst, d + u, vload(src, s + u))
        u += WIDTH
    for z in range(n, u):
        dst[d + z] = 0.0
    while u < n:
        dst[d + u] = src[s + u]
        u += 1


@kernel(inline="always")
def copy_every_other(dst, d, src, s, n, room, avail):  # pragma: no cover
    """dst[d + v] = src[s + 2 v] for v < n: two vectors read, their even lanes kept
    (``veven``); as ``copy_run``, the last vector may run past n within ``room`` of
    dst and ``avail`` of src, and what it wrote past n is zeroed again."""
    v = 0
    while v < n and v + WIDTH <= room and 2 * v + 2 * WIDTH <= avail:
        vstore(dst, d + v, veven(vload(src, s + 2 * v), vload(src, s + 2 * v + WIDTH)))
        v += WIDTH
    for z in range(n, v):
        dst[d + z] = 0.0
    while v < n:
        dst[d + v] = src[s + 2 * v]
        v += 1


@kernel(parallel=True)
def depthwise2d(
    x, w, bias, out, ph, pw, sh, sw, dh, dw, HP, WQ, act, alpha, beta, scale, shift, planes, rows
):  # pragma: no cover
    """x (N, C, H, W) and out (N, M, OH, OW) C-contiguous, w (M, 1, KH, KW); HP, WQ from
    ``geometry``; planes (threads, sw*HP*WQ) and rows (threads, row buffer) the threads'
    buffers. Every index is flat (no array view per row: a view costs more than the
    row's copy). With an activation of ``gemm.VECTOR_ACTS`` the epilogue is applied
    to the sums in registers (``gemm.epilogue_vector``), else by ``activate`` after."""
    N, C, H, W = x.shape
    M, _, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    mult = M // C
    RB = rows.shape[1] // ROWS  # one output row, whole vectors
    xf = x.reshape(-1)
    of = out.reshape(-1)
    wf = w.reshape(-1)
    vector_act = act == 0 or act == 1 or act == 5
    # Divisions are slow (tens of cycles each): the taps' offsets in the phased plane
    # and each phase's columns are worked out once here, not per tap or row.
    taps = np.empty(KH * KW, np.int64)
    for i in range(KH):
        for j in range(KW):
            taps[i * KW + j] = ((j * dw) % sw) * HP * WQ + (j * dw) // sw + i * dh * WQ
    u0s = np.empty(sw, np.int64)
    u1s = np.empty(sw, np.int64)
    for q in range(sw):  # padded column q + u*sw is input column q + u*sw - pw
        u0s[q] = max(0, (pw - q + sw - 1) // sw)
        u1s[q] = min(WQ, (W - 1 + pw - q) // sw + 1)
    # The padding stays zero: every job writes the same interior of its thread's plane.
    planes[:, : sw * HP * WQ] = 0.0
    for job in prange(N * M):
        n, m = job // M, job % M
        c = m // mult
        buf = planes[numba.get_thread_id()]
        rb = rows[numba.get_thread_id()]
        b, sc, sf = bias[m], scale[m], shift[m]
        x0 = (n * C + c) * H * W
        for y in range(H):
            src = x0 + y * W
            if sw == 1:  # one phase: a contiguous copy
                copy_run(buf, (y + ph) * WQ + pw, xf, src, W, WQ - pw, xf.size - src)
                continue
            for q in range(sw):
                d = (q * HP + y + ph) * WQ
                u0, u1 = u0s[q], u1s[q]
                if sw == 2 and u1 > u0:  # every other input column, from q + 2*u0 - pw
                    first = q + 2 * u0 - pw
                    copy_every_other(
                        buf, d + u0, xf, src + first, u1 - u0, WQ - u0, xf.size - src - first
                    )
                    continue
                for u in range(u0, u1):
                    buf[d + u] = xf[src + q + u * sw - pw]
        o0 = (n * M + m) * OH * OW
        w0 = m * KH * KW
        step = sh * WQ  # from one output row to the next in the phased plane
        for oy in range(0, OH, ROWS):
            full = oy + ROWS <= OH
            for v0 in range(0, RB, WIDTH):
                a0 = a1 = a2 = a3 = vzero()
                r = oy * step + v0
                for k in range(KH * KW):
                    o = taps[k] + r
                    t = wf[w0 + k]
                    a0 = vfma(a0, vload(buf, o), t)
                    a1 = vfma(a1, vload(buf, o + step), t)
                    a2 = vfma(a2, vload(buf, o + 2 * step), t)
                    a3 = vfma(a3, vload(buf, o + 3 * step), t)
                if vector_act:
                    a0 = epilogue_vector(a0, b, act, alpha, beta, sc, sf)
                    a1 = epilogue_vector(a1, b, act, alpha, beta, sc, sf)
                    a2 = epilogue_vector(a2, b, act, alpha, beta, sc, sf)
                    a3 = epilogue_vector(a3, b, act, alpha, beta, sc, sf)
                if full and v0 + WIDTH <= OW:  # straight into the plane
                    d = o0 + oy * OW + v0
                    vstore(of, d, a0)
                    vstore(of, d + OW, a1)
                    vstore(of, d + 2 * OW, a2)
                    vstore(of, d + 3 * OW, a3)
                    continue
                vstore(rb, v0, a0)
                vstore(rb, RB + v0, a1)
                vstore(rb, 2 * RB + v0, a2)
                vstore(rb, 3 * RB + v0, a3)
                for k in range(min(ROWS, OH - oy)):
                    d = o0 + (oy + k) * OW
                    # A row of one vector (OW <= WIDTH) is stored whole: its lanes past
                    # OW fall on the next row, stored after it; not past the plane.
                    if RB == WIDTH and d + WIDTH <= o0 + OH * OW:
                        vstore(of, d, vload(rb, k * RB))
                        continue
                    for v in range(v0, min(OW, v0 + WIDTH)):
                        of[d + v] = rb[k * RB + v]
        if not vector_act:
            activate(of[o0 : o0 + OH * OW], OH * OW, b, act, alpha, beta, sc, sf)
