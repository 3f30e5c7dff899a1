"""Winograd convolution F(m x m, r x r) for 2-D, stride-1, group-1 convolutions.

A tile of m x m outputs needs an a x a input tile (a = m + r - 1). With the
transforms B^T (a, a), G (a, r) and A^T (m, a) of Lavin and Gray (2016),

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise)

computes the tile with a*a multiplications per input channel where direct
convolution needs m*m*r*r: for F(4x4, 3x3) 36 instead of 144, for F(2x2, 5x5) 36
instead of 100. Summed over input channels, the elementwise products become a*a
independent GEMMs:

    U[xi] = (G g G^T)[xi]      (a*a, M, C)   weights, transformed once at load
    V[xi] = (B^T d B)[xi]      (a*a, C, T)   every input tile (T tiles in a chunk)
    Z[xi] = U[xi] @ V[xi]      (a*a, M, T)   numpy's BLAS, split over the cores
    Y     = A^T Z A            per output channel and tile, then bias, activation
                               and BN scale/shift, written into the output

The transforms come from Toom-Cook interpolation at the points 0, 1, -1, 2, -1/2
(and infinity): A^T and G are the Vandermonde rows at those points, with G's
rows divided by the Lagrange denominators, and B^T is solved from the identity
the three must satisfy (``transforms`` checks it). Both transform kernels run
their innermost loop over tiles, which are contiguous, so LLVM vectorises them.
"""

from __future__ import annotations

from functools import cache

import numba
import numpy as np
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.gemm import matmul
from runtime.kernels.jit import kernel
from runtime.memory import scratch

TILE = {3: 4, 5: 2}  # output tile m for each kernel size r: both give 6 x 6 input tiles
POINTS = (0.0, 1.0, -1.0, 2.0, -0.5, -2.0, 0.5)  # 2 and -1/2: 3x less error than +-2
BUDGET = 1 << 25  # floats in each of V and Z per chunk of images (128 MiB)


@cache
def transforms(m: int, r: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(B^T, G, A^T) for F(m, r), float64, checked to compute a 1-D correlation exactly."""
    a = m + r - 1
    pts = np.array(POINTS[: a - 1])  # a - 1 finite points, then infinity
    at = np.zeros((m, a))
    at[:, : a - 1] = pts[None, :] ** np.arange(m)[:, None]
    at[m - 1, a - 1] = 1.0
    g = np.zeros((a, r))
    denom = np.array([np.prod([p - q for q in pts if q != p]) for p in pts])
    g[: a - 1] = pts[:, None] ** np.arange(r)[None, :] / denom[:, None]
    g[a - 1, r - 1] = 1.0
    # y_i = sum_k g_k d_{i+k} for every d and filter: for each input position l,
    # sum_xi at[i, xi] * g[xi, k] * bt[xi, l] = [l == i + k], linear in bt[:, l].
    system = np.einsum("ix,xk->ikx", at, g).reshape(m * r, a)
    bt = np.zeros((a, a))
    for col in range(a):
        rhs = np.array([1.0 if col == i + k else 0.0 for i in range(m) for k in range(r)])
        bt[:, col] = np.linalg.lstsq(system, rhs, rcond=None)[0]
    d, f = np.random.default_rng(0).standard_normal(a), np.random.default_rng(1).standard_normal(r)
    want = np.array([f @ d[i : i + r] for i in range(m)])
    if not np.allclose(at @ ((g @ f) * (bt @ d)), want, atol=1e-9):
        raise AssertionError(f"Winograd F({m}, {r}): the transforms do not reproduce correlation")
    return bt, g, at


def transform_weights(w: np.ndarray, m: int) -> np.ndarray:
    """w (M, C, r, r) -> U (a*a, M, C) float32: G g G^T per filter, in float64."""
    cout, cin, r, _ = w.shape
    _, g, _ = transforms(m, r)
    u = np.einsum("pk,oikl,ql->pqoi", g, w.astype(np.float64), g)
    return np.ascontiguousarray(u.reshape(-1, cout, cin), dtype=np.float32)


@kernel(parallel=True)
def _input_tiles(x, v, bt, n0, nb, m, ph, pw, th, tw, work):  # pragma: no cover
    """x (N, C, H, W) -> v (a*a, C, T): B^T d B for every a x a tile of images n0..

    work: (threads, 2, a, a, T), each thread's scratch (``d`` and ``s`` below).
    """
    _, C, H, W = x.shape
    a = bt.shape[0]
    T = nb * th * tw
    for c in prange(C):
        d = work[numba.get_thread_id(), 0]  # d[i, j, t]: tile t's input (i, j)
        for i in range(a):
            for j in range(a):
                row = d[i, j]
                # tiles tx in [lo, hi) read inside the row: x = tx*m - pw + j in [0, W)
                lo = min(tw, max(0, (pw - j + m - 1) // m))
                hi = max(lo, min(tw, (W - 1 + pw - j) // m + 1))
                for k in range(nb):
                    img = x[n0 + k, c]
                    for ty in range(th):
                        y = ty * m - ph + i
                        out = row[(k * th + ty) * tw : (k * th + ty + 1) * tw]
                        if y < 0 or y >= H:
                            out[:] = 0.0
                            continue
                        line = img[y]
                        base = lo * m - pw + j
                        for tx in range(lo):
                            out[tx] = 0.0
                        for tx in range(hi - lo):
                            out[lo + tx] = line[base + tx * m]
                        for tx in range(hi, tw):
                            out[tx] = 0.0
        s = work[numba.get_thread_id(), 1]  # s[p, j] = sum_i bt[p, i] d[i, j]
        s[:] = 0.0
        for p in range(a):
            for i in range(a):
                f = np.float32(bt[p, i])
                if f != 0.0:
                    for j in range(a):
                        sp, di = s[p, j], d[i, j]
                        for t in range(T):
                            sp[t] += f * di[t]
        for p in range(a):
            for q in range(a):
                out = v[p * a + q, c]
                out[:] = 0.0
                for j in range(a):
                    f = np.float32(bt[q, j])  # (d B)[., q] = sum_j d[., j] bt[q, j]
                    if f != 0.0:
                        sj = s[p, j]
                        for t in range(T):
                            out[t] += f * sj[t]


@kernel(parallel=True)
def _output_tiles(
    z, out, at, n0, nb, th, tw, bias, act, alpha, scale, shift, work
):  # pragma: no cover
    """z (a*a, M, T) -> out (N, M, OH, OW): A^T Z A per tile, then the fused epilogue.

    work: (threads, m*a + m*m, T), each thread's scratch (``s`` and ``y`` below).
    """
    _, M, OH, OW = out.shape
    m, a = at.shape
    T = nb * th * tw
    for o in prange(M):
        w = work[numba.get_thread_id()]
        s = w[: m * a].reshape((m, a, T))  # s[i, q] = sum_p at[i, p] z[p, q]
        s[:] = 0.0
        for i in range(m):
            for p in range(a):
                f = np.float32(at[i, p])
                if f != 0.0:
                    for q in range(a):
                        si, zp = s[i, q], z[p * a + q, o]
                        for t in range(T):
                            si[t] += f * zp[t]
        y = w[m * a :].reshape((m, m, T))
        y[:] = 0.0
        for i in range(m):
            for j in range(m):
                yij = y[i, j]
                for q in range(a):
                    f = np.float32(at[j, q])
                    if f != 0.0:
                        sq = s[i, q]
                        for t in range(T):
                            yij[t] += f * sq[t]
                activate(yij, T, bias[o], act, alpha, scale[o], shift[o])
                for k in range(nb):
                    plane = out[n0 + k, o]
                    for ty in range(th):
                        oy = ty * m + i
                        if oy >= OH:
                            continue
                        t0 = (k * th + ty) * tw
                        for tx in range(tw):
                            ox = tx * m + j
                            if ox < OW:
                                plane[oy, ox] = yij[t0 + tx]


def conv2d_winograd(
    x: np.ndarray,
    u: np.ndarray,
    m: int,
    bias: np.ndarray,
    out: np.ndarray,
    *,
    pads: tuple[int, int],
    act: int = 0,
    alpha: float = 0.01,
    scale: np.ndarray | None = None,
    shift: np.ndarray | None = None,
) -> np.ndarray:
    """x (N, C, H, W), U from ``transform_weights`` -> out (N, M, OH, OW), float32.

    ``pads`` are the begin pads; the output shape (already in ``out``) fixes the end.
    """
    n, c = x.shape[:2]
    aa, cout, _ = u.shape
    a = round(aa**0.5)
    bt, _, at = transforms(m, a - m + 1)
    oh, ow = out.shape[2:]
    th, tw = -(-oh // m), -(-ow // m)
    scale = np.ones(cout, np.float32) if scale is None else scale
    shift = np.zeros(cout, np.float32) if shift is None else shift
    nb_max = max(1, BUDGET // (aa * max(c, cout) * th * tw))
    threads = numba.get_num_threads()
    for n0 in range(0, n, nb_max):
        nb = min(nb_max, n - n0)
        t = nb * th * tw
        v = scratch("winograd.v", (aa, c, t), np.float32)
        work = scratch("winograd.work", (threads, 2, a, a, t), np.float32)
        _input_tiles(x, v, bt, n0, nb, m, pads[0], pads[1], th, tw, work)
        z = scratch("winograd.z", (aa, cout, t), np.float32)
        matmul(u, v, z)
        work = scratch("winograd.work", (threads, m * a + m * m, t), np.float32)
        _output_tiles(z, out, at, n0, nb, th, tw, bias, act, np.float32(alpha), scale, shift,
                      work)  # fmt: skip
    return out
