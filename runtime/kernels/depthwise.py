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
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.jit import kernel
from runtime.kernels.simd import WIDTH, vfma, vload, vstore, vzero

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


@kernel(parallel=True)
def depthwise2d(
    x, w, bias, out, ph, pw, sh, sw, dh, dw, HP, WQ, act, alpha, beta, scale, shift, planes, rows
):  # pragma: no cover
    """x (N, C, H, W), w (M, 1, KH, KW), out (N, M, OH, OW); HP, WQ from ``geometry``;
    planes (threads, sw*HP*WQ) and rows (threads, row buffer) the threads' buffers."""
    N, C, H, W = x.shape
    M, _, KH, KW = w.shape
    OH, OW = out.shape[2], out.shape[3]
    mult = M // C
    RB = rows.shape[1] // ROWS  # one output row, whole vectors
    # The padding stays zero: every job writes the same interior of its thread's plane.
    planes[:, : sw * HP * WQ] = 0.0
    for job in prange(N * M):
        n, m = job // M, job % M
        c = m // mult
        buf = planes[numba.get_thread_id()]
        rb = rows[numba.get_thread_id()]
        for y in range(H):
            src = x[n, c, y]
            if sw == 1:  # one phase: a contiguous copy
                line = buf[(y + ph) * WQ + pw :]
                for u in range(W):
                    line[u] = src[u]
                continue
            for q in range(sw):  # padded column q + u*sw is input column q + u*sw - pw
                line = buf[(q * HP + y + ph) * WQ :]
                u0 = max(0, (pw - q + sw - 1) // sw)
                u1 = min(WQ, (W - 1 + pw - q) // sw + 1)
                for u in range(u0, u1):
                    line[u] = src[q + u * sw - pw]
        dst = out[n, m].reshape(-1)
        step = sh * WQ  # from one output row to the next in the phased plane
        for oy in range(0, OH, ROWS):
            full = oy + ROWS <= OH
            for v0 in range(0, RB, WIDTH):
                a0 = a1 = a2 = a3 = vzero()
                for i in range(KH):
                    r = (oy * sh + i * dh) * WQ + v0
                    for j in range(KW):
                        o = ((j * dw) % sw) * HP * WQ + (j * dw) // sw + r
                        t = w[m, 0, i, j]
                        a0 = vfma(a0, vload(buf, o), t)
                        a1 = vfma(a1, vload(buf, o + step), t)
                        a2 = vfma(a2, vload(buf, o + 2 * step), t)
                        a3 = vfma(a3, vload(buf, o + 3 * step), t)
                if full and v0 + WIDTH <= OW:  # straight into the plane
                    d = oy * OW + v0
                    vstore(dst, d, a0)
                    vstore(dst, d + OW, a1)
                    vstore(dst, d + 2 * OW, a2)
                    vstore(dst, d + 3 * OW, a3)
                    continue
                vstore(rb, v0, a0)
                vstore(rb, RB + v0, a1)
                vstore(rb, 2 * RB + v0, a2)
                vstore(rb, 3 * RB + v0, a3)
                for k in range(min(ROWS, OH - oy)):
                    for v in range(v0, min(OW, v0 + WIDTH)):
                        dst[(oy + k) * OW + v] = rb[k * RB + v]
        activate(dst, OH * OW, bias[m], act, alpha, beta, scale[m], shift[m])
