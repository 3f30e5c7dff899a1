"""Row-vector products with a constant matrix, and the squeeze-and-excitation block.

A fully connected layer at batch 1 and the two small products of a
squeeze-and-excitation block are matrix-vector products: y = act(v @ W + b) for a
vector v (K,) and a constant W (K, N). The tile GEMM (``gemm``) packs v into a block
of ``MR`` rows and runs a parallel region for a few microseconds of work; here W is
packed once, at plan time, into panels of ``PANEL`` columns (``pack_panels``: (P, K,
PANEL) flat, zero columns past N), and a serial pass streams each panel with four
vectors of sums in registers. Each sum is the GEMM's chain

    c = 0;  for k in 0 .. K-1:  c = fma(v[k], W[k, j], c)

in that order, then the bias, then the activation (``gemm.activate_vector``; a
LeakyRelu of any slope here), so a column gets the same bits wherever it lies.

``matvec_rows`` (serial) and ``matvec_rows_panels`` (a job per panel, for large W on
several threads): out (M, N) = act(a @ W + b) for the M rows of a.

``squeeze_excite`` (serial, image by image) and ``squeeze_excite_images`` (an image
per job): y = x * s per channel, s = act2(W2 act1(W1 mean(x) + b1) + b2), in one pass
to pool the planes (``pool.pool_planes``), the two products, and one pass to scale.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.gemm import activate_vector
from runtime.kernels.jit import kernel
from runtime.kernels.pool import POOL_BUF, pool_planes
from runtime.kernels.simd import (
    WIDTH,
    vadd,
    vfma,
    vload,
    vload_first,
    vmul,
    vsplat,
    vstore,
    vstore_first,
    vwhere_lt,
    vzero,
)

PANEL = 4 * WIDTH  # columns a pass keeps in registers: four vectors of sums


def panels(n: int) -> int:
    """Panels of ``PANEL`` columns for n columns."""
    return (n + PANEL - 1) // PANEL


def pack_panels(w: np.ndarray) -> np.ndarray:
    """W (K, N) -> (P * K * PANEL,) float32: panel p holds columns p*PANEL.. of every row,
    row after row, zeros past N."""
    k, n = w.shape
    p = panels(n)
    wp = np.zeros((k, p * PANEL), np.float32)
    wp[:, :n] = w
    return np.ascontiguousarray(wp.reshape(k, p, PANEL).transpose(1, 0, 2)).reshape(-1)


def pad_bias(b: np.ndarray | None, n: int) -> np.ndarray:
    """A bias of n columns (None: zeros) zero-padded to whole panels, float32."""
    out = np.zeros(panels(n) * PANEL, np.float32)
    if b is not None:
        out[:n] = np.broadcast_to(np.asarray(b, np.float32).reshape(-1), (n,))
    return out


@kernel(inline="always")
def _act(v, act, alpha, beta):  # pragma: no cover
    """act(v), ``activation.ACTIVATIONS``' codes; LeakyRelu of any slope."""
    if act == 2:
        return vwhere_lt(v, vzero(), vmul(v, vsplat(alpha)), v)
    return activate_vector(v, act, alpha, beta, 1.0, 0.0)


@kernel(inline="always")
def _put(y, yo, j, c, n):  # pragma: no cover
    """y[yo + j : yo + j + WIDTH] = c, the lanes below n - j only."""
    if j + WIDTH <= n:
        vstore(y, yo + j, c)
    elif j < n:
        vstore_first(y, yo + j, c, n - j)


@kernel(inline="always")
def matvec_panel(v, vo, wp, K, p, bias, act, alpha, beta, y, yo, n):  # pragma: no cover
    """y[yo + j] = act(sum_k v[vo + k] * W[k, j] + bias[j]) for the columns j of panel p
    below n (wp: ``pack_panels``; bias: ``pad_bias``)."""
    o = p * K * PANEL
    c0 = c1 = c2 = c3 = vzero()
    for k in range(K):
        a = v[vo + k]
        q = o + k * PANEL
        c0 = vfma(c0, vload(wp, q), a)
        c1 = vfma(c1, vload(wp, q + WIDTH), a)
        c2 = vfma(c2, vload(wp, q + 2 * WIDTH), a)
        c3 = vfma(c3, vload(wp, q + 3 * WIDTH), a)
    j = p * PANEL
    _put(y, yo, j, _act(vadd(c0, vload(bias, j)), act, alpha, beta), n)
    _put(y, yo, j + WIDTH, _act(vadd(c1, vload(bias, j + WIDTH)), act, alpha, beta), n)
    _put(y, yo, j + 2 * WIDTH, _act(vadd(c2, vload(bias, j + 2 * WIDTH)), act, alpha, beta), n)
    _put(y, yo, j + 3 * WIDTH, _act(vadd(c3, vload(bias, j + 3 * WIDTH)), act, alpha, beta), n)


@kernel()
def matvec_rows(a, wp, bias, out, act, alpha, beta):  # pragma: no cover
    """out (M, N) = act(a (M, K) @ W + bias), row by row, panel by panel; a and out
    C-contiguous."""
    M, K = a.shape
    N = out.shape[1]
    af = a.reshape(-1)
    of = out.reshape(-1)
    for m in range(M):
        for p in range((N + PANEL - 1) // PANEL):
            matvec_panel(af, m * K, wp, K, p, bias, act, alpha, beta, of, m * N, N)


@kernel(parallel=True)
def matvec_rows_panels(a, wp, bias, out, act, alpha, beta):  # pragma: no cover
    """``matvec_rows`` with a job per panel (its rows inside): for a W large enough to
    share among threads."""
    M, K = a.shape
    N = out.shape[1]
    af = a.reshape(-1)
    of = out.reshape(-1)
    for p in prange((N + PANEL - 1) // PANEL):
        for m in range(M):
            matvec_panel(af, m * K, wp, K, p, bias, act, alpha, beta, of, m * N, N)


@kernel(inline="always")
def _excite_image(
    xf, of, i, C, S, w1p, b1p, R, w2p, b2p, act1, alpha1, beta1, act2, alpha2, beta2, work
):  # pragma: no cover
    """Image i of xf (N*C*S,) into of: work holds ``pool_planes``' buffer, then the
    pooled vector (C), the hidden one (R) and the gate (C), each from a multiple of
    WIDTH."""
    cw = (C + WIDTH - 1) // WIDTH * WIDTH
    rw = (R + WIDTH - 1) // WIDTH * WIDTH
    pooled = (POOL_BUF + WIDTH - 1) // WIDTH * WIDTH
    hidden, gate = pooled + cw, pooled + cw + rw
    base = i * C * S
    pool_planes(xf, base, S, C, False, work, pooled, work, 0)
    for p in range((R + PANEL - 1) // PANEL):
        matvec_panel(work, pooled, w1p, C, p, b1p, act1, alpha1, beta1, work, hidden, R)
    for p in range((C + PANEL - 1) // PANEL):
        matvec_panel(work, hidden, w2p, R, p, b2p, act2, alpha2, beta2, work, gate, C)
    full = S - S % WIDTH
    for c in range(C):
        o = base + c * S
        g = work[gate + c]
        for s in range(0, full, WIDTH):
            vstore(of, o + s, vmul(vload(xf, o + s), vsplat(g)))
        if full < S:
            v = vmul(vload_first(xf, o + full, S - full), vsplat(g))
            vstore_first(of, o + full, v, S - full)


def excite_work(c: int, r: int) -> int:
    """Floats of ``squeeze_excite``'s work row for C channels and R hidden units."""
    pooled = (POOL_BUF + WIDTH - 1) // WIDTH * WIDTH
    return pooled + 2 * ((c + WIDTH - 1) // WIDTH * WIDTH) + (r + WIDTH - 1) // WIDTH * WIDTH


@kernel()
def squeeze_excite(
    x, out, w1p, b1p, R, w2p, b2p, act1, alpha1, beta1, act2, alpha2, beta2, work
):  # pragma: no cover
    """out (N, C, S) = x * act2(W2 act1(W1 mean_S(x) + b1) + b2) per image and channel,
    image by image (W1 (R, C) and W2 (C, R) packed transposed: ``pack_panels`` of
    W1.T and W2.T; biases ``pad_bias``); work (threads, ``excite_work``), row 0 used."""
    N, C, S = x.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in range(N):
        _excite_image(
            xf, of, i, C, S, w1p, b1p, R, w2p, b2p, act1, alpha1, beta1, act2, alpha2,
            beta2, work[0],
        )  # fmt: skip


@kernel(parallel=True)
def squeeze_excite_images(
    x, out, w1p, b1p, R, w2p, b2p, act1, alpha1, beta1, act2, alpha2, beta2, work
):  # pragma: no cover
    """``squeeze_excite`` with an image per job, each thread its own row of work."""
    N, C, S = x.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for i in prange(N):
        _excite_image(
            xf, of, i, C, S, w1p, b1p, R, w2p, b2p, act1, alpha1, beta1, act2, alpha2,
            beta2, work[numba.get_thread_id()],
        )  # fmt: skip
