"""Depthwise 2-D convolution (group = input channels): a direct kernel, a plane a job.

    out[n, m, oh, ow] = act(b[m] + sum_{i, j} w[m, 0, i, j] *
                            x[n, m // mult, oh*sh - ph + i*dh, ow*sw - pw + j*dw]) * sc[m] + sf[m]

with mult = M / C output channels per input channel. As im2col it would be C
products of one row each, so the GEMM's tiles would be all padding (MobileNets and
EfficientNets are mostly such layers).

Each job copies its input plane once into a zero-padded buffer split into ``sw``
phases by column (phase q holds the padded columns q, q + sw, q + 2 sw, ...), so
that at any stride a tap reads a contiguous run of a phase row. An output row is
computed ``BLOCK`` outputs at a time: four ``simd`` vectors of sums in registers, one
fused multiply-add per tap and vector, the taps in the same order for every output,
so channels that see the same data get the same bits. The row goes through a row
buffer (its last block is partial) into the plane, then the epilogue
(``activation.activate``) runs on the plane while it is in cache. Each job writes its
own output plane.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.jit import kernel
from runtime.kernels.simd import WIDTH, vfma, vload, vstore, vzero

BLOCK = 4 * WIDTH  # outputs of a row per step: four vectors of sums


def geometry(h, w, pads, out, k, s, d) -> tuple[int, int, int]:
    """(rows, phase width, row buffer) of ``depthwise2d``'s buffers for one plane:
    the padded plane is s[1] phases of (rows, phase width) floats."""
    rows = max(h + pads[0], (out[0] - 1) * s[0] + (k[0] - 1) * d[0] + 1)
    row_buf = -(-out[1] // BLOCK) * BLOCK
    width = max(-(-(w + pads[1]) // s[1]), row_buf + ((k[1] - 1) * d[1]) // s[1] + 1)
    return rows, width, row_buf


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
    RB = rows.shape[1]
    for job in prange(N * M):
        n, m = job // M, job % M
        c = m // mult
        buf = planes[numba.get_thread_id()]
        rb = rows[numba.get_thread_id()]
        for i in range(sw * HP * WQ):
            buf[i] = 0.0
        for y in range(H):
            src = x[n, c, y]
            for q in range(sw):  # padded column q + u*sw is input column q + u*sw - pw
                line = buf[(q * HP + y + ph) * WQ :]
                u0 = max(0, (pw - q + sw - 1) // sw)
                u1 = min(WQ, (W - 1 + pw - q) // sw + 1)
                for u in range(u0, u1):
                    line[u] = src[q + u * sw - pw]
        dst = out[n, m].reshape(-1)
        taps = np.empty(KW, np.int64)  # tap j's offset in the phased plane, row 0
        for j in range(KW):
            taps[j] = ((j * dw) % sw) * HP * WQ + (j * dw) // sw
        for oy in range(OH):
            for v0 in range(0, RB, BLOCK):
                a0 = a1 = a2 = a3 = vzero()
                for i in range(KH):
                    r = (oy * sh + i * dh) * WQ + v0
                    for j in range(KW):
                        o = taps[j] + r
                        t = w[m, 0, i, j]
                        a0 = vfma(a0, vload(buf, o), t)
                        a1 = vfma(a1, vload(buf, o + WIDTH), t)
                        a2 = vfma(a2, vload(buf, o + 2 * WIDTH), t)
                        a3 = vfma(a3, vload(buf, o + 3 * WIDTH), t)
                vstore(rb, v0, a0)
                vstore(rb, v0 + WIDTH, a1)
                vstore(rb, v0 + 2 * WIDTH, a2)
                vstore(rb, v0 + 3 * WIDTH, a3)
            for v in range(OW):
                dst[oy * OW + v] = rb[v]
        activate(dst, OH * OW, bias[m], act, alpha, beta, scale[m], shift[m])
