"""``taps``: rows of outputs, each a weighted sum of shifted rows of one source.

    acc[m*stride + p] = sum_t w[m*T + t] * src[offs[t] + p]    (m < M, t < T, p < L)

A direct convolution is this (``kernels/chain``: t a tap (c, ky, kx), offs[t] its
offset in the padded input, p the output position), and so are both stages of a
Winograd transform (``kernels/winograd``: the rows are tiles' values at one tile
position, the weights the rows of B^T or A^T). The inner loop over p is contiguous
and LLVM vectorises it; four outputs and four taps a pass keep loads and stores few.
"""

from __future__ import annotations

from runtime.kernels.jit import kernel


@kernel()
def taps(src, w, offs, acc, M, T, L, stride):  # pragma: no cover
    """acc[m*stride + p] = sum_t w[m*T + t] * src[offs[t] + p] for m < M, p < L.

    Output channels go four at a time (then two, then one). The first T % 4 taps
    run one at a time, the first of them writing the accumulator; the rest go four
    at a time as one chain of fused multiply-adds a pass (the first such pass writes
    the accumulator when T % 4 == 0): each loaded input vector feeds four
    multiply-adds and each pass over an accumulator adds four taps.
    Each tap's source is a slice starting at its offset, so the inner loop indexes
    with the non-negative loop variable only and LLVM vectorises it.
    """
    r = T % 4
    m = 0
    while m + 4 <= M:
        a = acc[m * stride : m * stride + L]
        b = acc[(m + 1) * stride : (m + 1) * stride + L]
        c = acc[(m + 2) * stride : (m + 2) * stride + L]
        d = acc[(m + 3) * stride : (m + 3) * stride + L]
        wa = w[m * T : (m + 1) * T]
        wb = w[(m + 1) * T : (m + 2) * T]
        wc = w[(m + 2) * T : (m + 3) * T]
        wd = w[(m + 3) * T : (m + 4) * T]
        for t in range(r):
            x0 = src[offs[t] : offs[t] + L]
            a0, b0, c0, d0 = wa[t], wb[t], wc[t], wd[t]
            if t == 0:
                for p in range(L):
                    v0 = x0[p]
                    a[p], b[p], c[p], d[p] = a0 * v0, b0 * v0, c0 * v0, d0 * v0
            else:
                for p in range(L):
                    v0 = x0[p]
                    a[p] = a[p] + a0 * v0
                    b[p] = b[p] + b0 * v0
                    c[p] = c[p] + c0 * v0
                    d[p] = d[p] + d0 * v0
        for t in range(r, T, 4):
            x0 = src[offs[t] : offs[t] + L]
            x1 = src[offs[t + 1] : offs[t + 1] + L]
            x2 = src[offs[t + 2] : offs[t + 2] + L]
            x3 = src[offs[t + 3] : offs[t + 3] + L]
            a0, a1, a2, a3 = wa[t], wa[t + 1], wa[t + 2], wa[t + 3]
            b0, b1, b2, b3 = wb[t], wb[t + 1], wb[t + 2], wb[t + 3]
            c0, c1, c2, c3 = wc[t], wc[t + 1], wc[t + 2], wc[t + 3]
            d0, d1, d2, d3 = wd[t], wd[t + 1], wd[t + 2], wd[t + 3]
            if t == 0:
                for p in range(L):
                    v0, v1, v2, v3 = x0[p], x1[p], x2[p], x3[p]
                    a[p] = a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                    b[p] = b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
                    c[p] = c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
                    d[p] = d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3
            else:
                for p in range(L):
                    v0, v1, v2, v3 = x0[p], x1[p], x2[p], x3[p]
                    a[p] = a[p] + a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                    b[p] = b[p] + b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
                    c[p] = c[p] + c0 * v0 + c1 * v1 + c2 * v2 + c3 * v3
                    d[p] = d[p] + d0 * v0 + d1 * v1 + d2 * v2 + d3 * v3
        m += 4
    if m + 2 <= M:
        a = acc[m * stride : m * stride + L]
        b = acc[(m + 1) * stride : (m + 1) * stride + L]
        wa = w[m * T : (m + 1) * T]
        wb = w[(m + 1) * T : (m + 2) * T]
        for t in range(r):
            x0 = src[offs[t] : offs[t] + L]
            a0, b0 = wa[t], wb[t]
            if t == 0:
                for p in range(L):
                    a[p], b[p] = a0 * x0[p], b0 * x0[p]
            else:
                for p in range(L):
                    a[p] = a[p] + a0 * x0[p]
                    b[p] = b[p] + b0 * x0[p]
        for t in range(r, T, 4):
            x0 = src[offs[t] : offs[t] + L]
            x1 = src[offs[t + 1] : offs[t + 1] + L]
            x2 = src[offs[t + 2] : offs[t + 2] + L]
            x3 = src[offs[t + 3] : offs[t + 3] + L]
            a0, a1, a2, a3 = wa[t], wa[t + 1], wa[t + 2], wa[t + 3]
            b0, b1, b2, b3 = wb[t], wb[t + 1], wb[t + 2], wb[t + 3]
            if t == 0:
                for p in range(L):
                    v0, v1, v2, v3 = x0[p], x1[p], x2[p], x3[p]
                    a[p] = a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                    b[p] = b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
            else:
                for p in range(L):
                    v0, v1, v2, v3 = x0[p], x1[p], x2[p], x3[p]
                    a[p] = a[p] + a0 * v0 + a1 * v1 + a2 * v2 + a3 * v3
                    b[p] = b[p] + b0 * v0 + b1 * v1 + b2 * v2 + b3 * v3
        m += 2
    if m < M:
        a = acc[m * stride : m * stride + L]
        wa = w[m * T : (m + 1) * T]
        for t in range(r):
            x0 = src[offs[t] : offs[t] + L]
            a0 = wa[t]
            if t == 0:
                for p in range(L):
                    a[p] = a0 * x0[p]
            else:
                for p in range(L):
                    a[p] = a[p] + a0 * x0[p]
        for t in range(r, T, 4):
            x0 = src[offs[t] : offs[t] + L]
            x1 = src[offs[t + 1] : offs[t + 1] + L]
            x2 = src[offs[t + 2] : offs[t + 2] + L]
            x3 = src[offs[t + 3] : offs[t + 3] + L]
            a0, a1, a2, a3 = wa[t], wa[t + 1], wa[t + 2], wa[t + 3]
            if t == 0:
                for p in range(L):
                    a[p] = a0 * x0[p] + a1 * x1[p] + a2 * x2[p] + a3 * x3[p]
            else:
                for p in range(L):
                    a[p] = a[p] + a0 * x0[p] + a1 * x1[p] + a2 * x2[p] + a3 * x3[p]
