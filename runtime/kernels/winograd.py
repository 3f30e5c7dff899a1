"""Winograd convolution F(m x m, r x r) for 2-D, stride-1, group-1 convolutions.

A tile of m x m outputs needs an a x a input tile (a = m + r - 1). With the
transforms B^T (a, a), G (a, r) and A^T (m, a) of Lavin and Gray (2016),

    Y = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise)

computes the tile with a*a multiplications per input channel where direct
convolution needs m*m*r*r: for F(4x4, 3x3) 36 instead of 144, for F(4x4, 5x5) 64
instead of 400. Summed over input channels, the elementwise products become a*a
independent GEMMs:

    U[xi] = (G g G^T)[xi]      (a*a, M, C)   weights, transformed and packed at load
    V[xi] = (B^T d B)[xi]      (a*a, C, T)   every input tile (T tiles in a chunk)
    Z[xi] = U[xi] @ V[xi]      (a*a, M, T)   ``winograd_gemm.products``
    Y     = A^T Z A            per output channel and tile, then bias, activation
                               and BN scale/shift, and a fused max pool, into the output
                               (with a fused residual Add: bias, then the residual,
                               activation and scale/shift once each plane is in place)

The transforms come from Toom-Cook interpolation at the points 0, 1, -1, 2, -1/2
(and infinity): A^T and G are the Vandermonde rows at those points, with G's
rows divided by the Lagrange denominators, and B^T is solved from the identity
the three must satisfy (``transforms`` checks it). Both stages of each transform
are ``taps`` calls over contiguous rows, so LLVM vectorises them: in the input
transform four channels' tiles, in the output transform tiles by 16 channels, as
the products write Z (in blocks of 16 channels, NCHWc's layout). ``WinogradConv``
lays a convolution out once per input shape; each chunk of images then runs the
three steps in one compiled call (``_winograd_conv_chunk``).
"""

from __future__ import annotations

import math
from functools import cache, lru_cache

import numba
import numpy as np
from numba import prange

from runtime.config import WINOGRAD_CHUNK_FLOATS, WINOGRAD_OUT_PASS_FLOATS
from runtime.kernels.activation import activate, activate_channels
from runtime.kernels.gemm import NO_RESIDUAL, activate_vector, vector_act
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    transpose,
    vadd,
    vfmav,
    vload,
    vload_first,
    vmax,
    vstore,
    vstore_first,
)
from runtime.kernels.taps import taps
from runtime.kernels.winograd_gemm import MB, NR, pack_rows, padded, panel_floats, products
from runtime.memory import scratch

# Output tile m for each kernel size r. F(4x4, 5x5) has 8 x 8 input tiles and 64
# multiplications per 16 outputs where F(2x2, 5x5) has 36 per 4: AlexNet's conv2
# alone, 2 threads, batch 1: 1.88 ms against 3.68; batch 8: 13.5 against 25.1. Its
# error grows with the larger points: 6.7e-6 of the output's scale against 1.9e-6.
TILE = {3: 4, 5: 4}
# For few tiles (fewer than ``config.WINOGRAD_SMALL_TILES``), F(2x2, 3x3).
SMALL_TILE = {3: 2}
POINTS = (0.0, 1.0, -1.0, 2.0, -0.5, -2.0, 0.5)  # 2 and -1/2: 3x less error than +-2
# Channels per job in the transforms: their tiles are one contiguous run of v or z, so
# taps' loops are BLOCK times longer (AlexNet's conv2 output transform, one thread,
# batch 1: 0.37 ms against 0.52 with one channel a job).
BLOCK = 4
CB = WIDTH  # output channels per job of the output transform: Z's blocks of channels


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
    # The exact solution is dyadic (halves and quarters); lstsq leaves 1e-16 noise in
    # place of its zeros, and the transform kernels skip only exact zeros.
    snapped = np.round(bt * 1024) / 1024
    if np.allclose(snapped, bt, rtol=0, atol=1e-9):
        bt = snapped
    d, f = np.random.default_rng(0).standard_normal(a), np.random.default_rng(1).standard_normal(r)
    want = np.array([f @ d[i : i + r] for i in range(m)])
    if not np.allclose(at @ ((g @ f) * (bt @ d)), want, atol=1e-9):
        raise AssertionError(f"Winograd F({m}, {r}): the transforms do not reproduce correlation")
    return bt, g, at


def transform_weights(w: np.ndarray, m: int) -> np.ndarray:
    """w (M, C, r, r) -> U (a*a, M, C), G g G^T per filter in float64, packed for the
    products (``winograd_gemm.pack_rows``): float32 (a*a, ceil(M/MB), C, MB)."""
    cout, cin, r, _ = w.shape
    _, g, _ = transforms(m, r)
    u = np.einsum("pk,oikl,ql->pqoi", g, w.astype(np.float64), g)
    return pack_rows(u.reshape(-1, cout, cin).astype(np.float32))


def space_to_depth_weights(w: np.ndarray, s: int) -> np.ndarray:
    """w (M, C, k, k), stride s -> (M, C*s*s, k', k'), k' = ceil(k/s), zero-filled.

    A stride-s convolution of x equals a stride-1 convolution of ``space_to_depth(x)``
    with these weights: w'[m, (c*s + dy)*s + dx, KY, KX] = w[m, c, KY*s + dy, KX*s + dx].
    """
    cout, cin, k, _ = w.shape
    kk = -(-k // s)
    padded = np.zeros((cout, cin, kk * s, kk * s), np.float32)
    padded[:, :, :k, :k] = w
    split = padded.reshape(cout, cin, kk, s, kk, s)  # (m, c, KY, dy, KX, dx)
    return np.ascontiguousarray(
        split.transpose(0, 1, 3, 5, 2, 4).reshape(cout, cin * s * s, kk, kk)
    )


@kernel(inline="always")
def _strided_row(row, line, n, s, first):  # pragma: no cover
    """row[X] = line[X*s + first] where that lies in ``line``, else 0, for X < n: a row
    of a space-to-depth channel (first = dx - pw, its column phase less the pad)."""
    W = line.shape[0]
    lo = min(n, max(0, (s - 1 - first) // s))  # columns X in [lo, hi) read inside
    hi = max(lo, min(n, (W - 1 - first) // s + 1))
    for X in range(lo):
        row[X] = 0.0
    start = lo * s + first
    for X in range(hi - lo):
        row[lo + X] = line[start + X * s]
    for X in range(hi, n):
        row[X] = 0.0


@lru_cache(maxsize=64)
def tile_offsets(a: int, m: int, nb: int, th: int, tw: int, hp: int, wp: int) -> np.ndarray:
    """(a*a, T): where element (i, j) of tile t (a x a, tiles m apart) sits in ``nb``
    planes of (hp, wp), tiles numbered (image, tile row, tile column)."""
    k, ty, tx = np.meshgrid(np.arange(nb), np.arange(th), np.arange(tw), indexing="ij")
    corner = (k * hp + ty * m) * wp + tx * m  # (nb, th, tw): each tile's top-left
    i, j = np.meshgrid(np.arange(a), np.arange(a), indexing="ij")
    offsets = (i * wp + j).reshape(-1, 1) + corner.reshape(1, -1)
    offsets.setflags(write=False)
    return offsets


@kernel(inline="always")
def _arange(n, step):  # pragma: no cover
    """[0, step, 2*step, ...] (n values) by a loop: in a parallel kernel, np.arange(n) *
    step is a parallel loop of its own, compiled as one more function."""
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = i * step
    return out


@kernel(parallel=True)
def _input_tiles(
    x, v, btw, n0, nb, st, ph, pw, H2, W2, hp, wp, offsets, planes, work
):  # pragma: no cover
    """x (N, C, H, W) -> v (a*a*C*T,), flat (a*a, C, T): B^T d B for every a x a tile
    of images n0.. For a stride st = s > 1, x stands for its space-to-depth (N, C*s*s,
    H2, W2): channel (c*s + dy)*s + dx holds x[:, c, Y*s + dy - ph, X*s + dx - pw] (0
    outside), copied straight into the planes, already padded.

    Channels go ``BLOCK`` at a time. Per channel, the nb images are copied into a
    zero-padded plane (nb, hp, wp), so that gathering the tiles is one loop per tile
    position (i, j) with no bounds checks: d[i*a + j, c, t] = plane[offsets[i*a + j,
    t]] (``tile_offsets``). Both products with B^T are ``taps`` calls (btw: B^T
    row-major, float32) over rows of the block's channels and tiles, which are
    contiguous in ``v`` too. planes: (threads, nb*hp*wp); work: (threads,
    2*a*a*BLOCK*T), each thread's own.
    """
    _, C, H, W = x.shape
    C *= st * st
    aa, T = offsets.shape
    a = round(math.sqrt(aa))
    flat = planes.reshape(-1)  # only the images' regions are written below: the borders stay 0
    for i in range(flat.shape[0]):
        flat[i] = 0.0
    for job in prange((C + BLOCK - 1) // BLOCK):
        c0 = job * BLOCK
        L = min(BLOCK, C - c0) * T
        tid = numba.get_thread_id()
        pl = planes[tid]
        d = work[tid]  # d[(i*a + j)*L + c*T + t]: tile t's input (i, j) in channel c0+c
        for c in range(L // T):
            for k in range(nb):
                if st == 1:
                    img = x[n0 + k, c0 + c]
                    for y in range(H):
                        row = pl[(k * hp + y + ph) * wp + pw :]
                        line = img[y]
                        for xx in range(W):
                            row[xx] = line[xx]
                    continue
                q = c0 + c  # a space-to-depth channel: every value of its region written
                img, dy, dx = x[n0 + k, q // (st * st)], (q // st) % st, q % st
                for Y in range(H2):
                    row = pl[(k * hp + Y) * wp :]
                    y = Y * st + dy - ph
                    if 0 <= y < H:
                        _strided_row(row, img[y], W2, st, dx - pw)
                    else:
                        for X in range(W2):
                            row[X] = 0.0
            for ij in range(aa):
                di, idx = d[ij * L + c * T : ij * L + (c + 1) * T], offsets[ij]
                for t in range(T):
                    di[t] = pl[idx[t]]
        s = work[tid, aa * BLOCK * T :]  # s[p*a + j] = sum_i bt[p, i] d[i*a + j]
        by_row = _arange(a, a * L)  # tap i of d[i*a + j]: rows a apart
        for j in range(a):
            taps(d[j * L :], btw, by_row, s[j * L :], a, a, L, a * L)
        by_col = _arange(a, L)  # tap j of s[p*a + j]: adjacent rows
        for p in range(a):  # v[p*a + q, c0:c0+BLOCK] = sum_j bt[q, j] s[p*a + j]
            taps(s[p * a * L :], btw, by_col, v[(p * a * C + c0) * T :], a, a, L, C * T)


@kernel(inline="always")
def _residual_plane(y, r, P, in_vectors, act, alpha, beta, sc, sf):  # pragma: no cover
    """y[:P] = act(y + r) * sc + sf: one output channel's plane (y holding conv +
    bias), the residual r added first; WIDTH values a vector, the last ones masked."""
    if not in_vectors:
        for i in range(P):
            y[i] = y[i] + r[i]
        activate(y, P, np.float32(0.0), act, alpha, beta, sc, sf)
        return
    full = P - P % WIDTH
    for i in range(0, full, WIDTH):
        v = activate_vector(vadd(vload(y, i), vload(r, i)), act, alpha, beta, sc, sf)
        vstore(y, i, v)
    if full < P:
        n = P - full
        v = vadd(vload_first(y, full, n), vload_first(r, full, n))
        vstore_first(y, full, activate_vector(v, act, alpha, beta, sc, sf), n)


@kernel(parallel=True)
def _output_tiles(
    zb,
    out,
    atw,
    n0,
    nb,
    Tp,
    Mp,
    OH,
    OW,
    ohp,
    owp,
    offsets,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
    res,
    pool,
    per_pass,
    planes,
    work,
    rows,
):  # pragma: no cover
    """zb (a*a*Mp*Tp,), flat (a*a, Mp/CB, Tp, CB): Z in blocks of CB channels
    (``winograd_gemm.products``) -> out (N, M, ...): A^T Z A per tile (atw: A^T
    row-major, float32), then the fused epilogue.

    A job per block of ``CB`` output channels. In a pass over ``per_pass`` tiles, both
    products are ``taps`` calls along rows of those tiles' CB channels, contiguous in
    zb, and the epilogue runs along each tile's channels. Each tile's outputs go, CB
    channels at a time, into the job's planes (nb, ohp, owp, CB), which every tile
    fits: y[i*m + j, t] -> planes[offsets[i*m + j, t]], no bounds checks; with an
    activation of ``gemm.VECTOR_ACTS`` (``gemm.vector_act``) a tile's CB channels go
    through ``gemm.activate_vector`` as one vector (a partial block's bias, scale and
    shift loaded masked), the others through the scalar ``activate_channels``. Their
    first OH x OW are the convolution's output: copied into ``out`` (N, M, OH, OW), a
    row's 16 positions by CB channels transposed in registers (``simd.transpose``),
    or, when ``pool`` (kh, kw, sh, sw) has a kernel, max pooled there, CB channels a
    vector, into ``out`` (N, M, PH, PW), so that only the pooled values are scattered
    across channels.

    ``res`` (flat as out, or none; never sharing out's memory): a residual Add fused
    into the conv. The tiles then store y + bias alone; once the block's planes are
    in ``out``, each channel's plane becomes act((y + bias) + res) * scale + shift, 16
    positions a vector (``gemm.activate_vector``, as the GEMM epilogue's
    ``epilogue_vector_res``; the scalar ``activate`` for an activation it has not).
    No pool with a residual (``kernel_table`` pools after the conv).

    planes: (threads, nb*ohp*owp*CB); work: (threads, (m*a + m*m)*per_pass*CB); rows:
    (threads, PH*PW*CB): an image's pooled values.
    """
    M = out.shape[1]
    mm, T = offsets.shape
    m = round(math.sqrt(mm))
    a = atw.shape[0] // m
    blocks = Mp // CB
    in_vectors = vector_act(act, alpha)  # gemm.VECTOR_ACTS (LeakyRelu: its slope)
    has_res = res.shape[0] > 0
    P = OH * OW
    by_row = _arange(a, a * Mp * Tp)  # tap p of z[p*a + q]
    for job in prange((M + CB - 1) // CB):
        o0 = job * CB
        nc = min(CB, M - o0)
        tid = numba.get_thread_id()
        w, pl = work[tid], planes[tid]
        # the block's bias, scale and shift, lanes from nc on 0 (those lanes of the
        # planes are never read into out)
        bv = vload_first(bias, o0, nc)
        sv, fv = vload_first(scale, o0, nc), vload_first(shift, o0, nc)
        for t0 in range(0, T, per_pass):
            nt = min(per_pass, T - t0)
            L = nt * CB
            s = w[: m * a * L]  # s[i*a + q] = sum_p at[i, p] z[p*a + q, block, t0:t0+nt]
            for q in range(a):
                taps(
                    zb[((q * blocks + job) * Tp + t0) * CB :],
                    atw,
                    by_row,
                    s[q * L :],
                    m,
                    a,
                    L,
                    a * L,
                )
            y = w[m * a * L :]  # y[i*m + j] = sum_q at[j, q] s[i*a + q]
            by_col = _arange(a, L)  # tap q of s[i*a + q]: adjacent rows
            for i in range(m):
                taps(s[i * a * L :], atw, by_col, y[i * m * L :], m, a, L, L)
            for ij in range(mm):
                yij, idx = y[ij * L :], offsets[ij, t0:]
                if has_res:  # y + bias: the residual and the activation once in out
                    for tt in range(nt):
                        vstore(pl, idx[tt] * CB, vadd(vload(yij, tt * CB), bv))
                    continue
                if in_vectors:  # a tile's CB channels one vector, straight into the planes
                    for tt in range(nt):
                        v = vadd(vload(yij, tt * CB), bv)
                        v = activate_vector(v, act, alpha, beta, 1.0, 0.0)
                        vstore(pl, idx[tt] * CB, vfmav(fv, v, sv))
                    continue
                activate_channels(
                    yij, nt, CB, nc, bias[o0:], act, alpha, beta, scale[o0:], shift[o0:]
                )
                for tt in range(nt):
                    src, dst = yij[tt * CB :], pl[idx[tt] * CB :]
                    for c in range(CB):
                        dst[c] = src[c]
        kh, kw, sh, sw = pool[0], pool[1], pool[2], pool[3]
        for k in range(nb):
            img = pl[k * ohp * owp * CB :]
            if kh == 0:
                dst = out[n0 + k].reshape(-1)  # (M*OH*OW,): channel o0+c at (o0+c)*P
                for oy in range(OH):
                    for ox in range(0, OW, WIDTH):
                        n = min(WIDTH, OW - ox)  # positions: rows of the transposition
                        at = o0 * P + oy * OW + ox
                        transpose(img, (oy * owp + ox) * CB, CB, n, CB, dst, at, P, nc, n)
                if has_res:
                    for c in range(nc):
                        _residual_plane(
                            dst[(o0 + c) * P :],
                            res[((n0 + k) * M + o0 + c) * P :],
                            P,
                            in_vectors,
                            act,
                            alpha,
                            beta,
                            scale[o0 + c],
                            shift[o0 + c],
                        )
                continue
            PH, PW = out.shape[2], out.shape[3]
            pooled = rows[tid]  # (PH*PW, CB): the image's pooled values, CB channels a vector
            for py in range(PH):
                for px in range(PW):
                    acc = vload(img, ((py * sh) * owp + px * sw) * CB)
                    for ky in range(kh):
                        for kx in range(kw):
                            acc = vmax(acc, vload(img, ((py * sh + ky) * owp + px * sw + kx) * CB))
                    vstore(pooled, (py * PW + px) * CB, acc)
            for c in range(nc):
                dst = out[n0 + k, o0 + c].reshape(PH * PW)
                for i in range(PH * PW):
                    dst[i] = pooled[i * CB + c]


@kernel()
def _winograd_conv_chunk(
    up,
    x,
    v,
    zb,
    out,
    btw,
    atw,
    n0,
    nb,
    s,
    ph,
    pw,
    H2,
    W2,
    tiles,
    hp,
    wp,
    OH,
    OW,
    ohp,
    owp,
    in_offsets,
    out_offsets,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
    pool,
    per_pass,
    planes,
    work,
    rows,
    vpanels,
    res,
):  # pragma: no cover
    """Images n0 .. n0+nb in one compiled call: input transform, the a*a GEMMs
    Z[xi] = U[xi] @ V[xi] (``winograd_gemm.products`` on the packed weights ``up``, into
    zb in blocks of channels), output transform. No Python runs between the three:
    after each parallel region has swept megabytes through the caches, every line of
    Python costs several times its usual time (AlexNet, batch 1: 30 us between two
    kernels)."""
    aa, C, Mp = up.shape[0], x.shape[1] * s * s, up.shape[1] * MB
    T = nb * tiles  # the offsets are nb images' (``tile_offsets``)
    Tp = (T + NR - 1) // NR * NR
    vc, zc = v.reshape(-1)[: aa * C * T], zb.reshape(-1)[: aa * Tp * Mp]
    _input_tiles(x, vc, btw, n0, nb, s, ph, pw, H2, W2, hp, wp, in_offsets, planes, work)
    products(up, vc, zc, C, T, vpanels)
    _output_tiles(
        zc,
        out,
        atw,
        n0,
        nb,
        Tp,
        Mp,
        OH,
        OW,
        ohp,
        owp,
        out_offsets,
        bias,
        act,
        alpha,
        beta,
        scale,
        shift,
        res,
        pool,
        per_pass,
        planes,
        work,
        rows,
    )


class WinogradConv:
    """A Winograd convolution laid out once for one input shape; ``conv(x, out)`` runs
    it. The layout (transforms, tile offsets, chunks of images) is the same for every
    call with that shape, so the engine keeps it in the shape's plan, and a call does
    little Python: after a kernel has swept megabytes through the caches, each line of
    it costs several times its usual time.

    x (N, C, H, W) -> out (N, M, OH, OW): U packed by ``transform_weights`` (of
    ``space_to_depth_weights`` for ``stride`` s > 1: the input transform reads x as
    its space-to-depth), M = len(bias);
    ``pads`` the begin pads; ``size`` (OH, OW) the convolution's output, which fixes
    the end; ``max_pool`` (kh, kw, sh, sw), a max pooling whose every window lies
    inside that output, applied in the output transform (``out`` has the pooled shape).
    """

    def __init__(
        self,
        x_shape: tuple[int, ...],
        u: np.ndarray,
        m: int,
        bias: np.ndarray,
        *,
        pads: tuple[int, int],
        size: tuple[int, int],
        stride: int = 1,
        act: int = 0,
        alpha: float = 0.01,
        beta: float = 0.0,
        scale: np.ndarray | None = None,
        shift: np.ndarray | None = None,
        max_pool: tuple[int, int, int, int] | None = None,
    ) -> None:
        aa, cout = u.shape[0], bias.shape[0]
        a = round(aa**0.5)
        n, c = x_shape[0], x_shape[1] * stride * stride
        h2, w2 = size[0] + a - m, size[1] + a - m  # the stride-1 conv's input, padded
        bt, _, at = transforms(m, a - m + 1)
        self.btw, self.atw = bt.astype(np.float32).ravel(), at.astype(np.float32).ravel()
        self.pool = np.array(max_pool or (0, 0, 1, 1), np.int64)
        oh, ow = size
        th, tw = -(-oh // m), -(-ow // m)
        self.nb_max = max(1, WINOGRAD_CHUNK_FLOATS // (aa * max(c, cout) * th * tw))
        nb = min(self.nb_max, n)
        hp, wp = th * m + a - m, tw * m + a - m  # every input tile inside
        ohp, owp = th * m, tw * m
        self.offsets = {  # per chunk size: nb_max images, and the last chunk's
            k: (tile_offsets(a, m, k, th, tw, hp, wp), tile_offsets(m, m, k, th, tw, ohp, owp))
            for k in {nb, n % self.nb_max or nb}
        }
        t, mp = nb * th * tw, u.shape[1] * MB
        self.v_shape, self.z_shape = (aa, c, t), (aa, mp // CB, padded(t, NR), CB)
        out_rows = m * a + m * m  # rows of the output transform's work, per_pass*CB each
        self.per_pass = max(1, WINOGRAD_OUT_PASS_FLOATS // (out_rows * CB))
        self.planes = max(nb * hp * wp, CB * nb * ohp * owp)
        kh, kw, sh, sw = self.pool  # (0, 0, 1, 1) when there is no pool
        self.pooled = ((oh - kh) // sh + 1) * ((ow - kw) // sw + 1) * CB
        self.vpanels = panel_floats(c)
        self.work = max(2 * aa * BLOCK * t, out_rows * self.per_pass * CB)
        scale = np.ones(cout, np.float32) if scale is None else scale
        shift = np.zeros(cout, np.float32) if shift is None else shift
        # the epilogue loads them as vectors: contiguous float32
        bias, scale, shift = (np.ascontiguousarray(a, np.float32) for a in (bias, scale, shift))
        self.n, self.u = n, u
        self.args = (bias, act, np.float32(alpha), np.float32(beta), scale, shift, self.pool)
        # pads: where x starts in the planes (stride 1) or in the space-to-depth rows
        self.geometry = (stride, pads[0], pads[1], h2, w2, th * tw, hp, wp, oh, ow, ohp, owp)

    def __call__(self, x: np.ndarray, out: np.ndarray, res: np.ndarray = NO_RESIDUAL) -> np.ndarray:
        """out = the conv of x; ``res`` (out's shape, flat, float32, C-contiguous, not
        sharing out's memory; or none): a residual Add's other operand, added after
        the bias, before the activation."""
        threads = numba.get_num_threads()
        v = scratch("winograd.v", self.v_shape, np.float32)
        zb = scratch("winograd.z", self.z_shape, np.float32)
        planes = scratch("winograd.planes", (threads, self.planes), np.float32)
        work = scratch("winograd.work", (threads, self.work), np.float32)
        rows = scratch("winograd.pool", (threads, self.pooled), np.float32)
        vpanels = scratch("winograd.vpanels", (threads, self.vpanels), np.float32)
        for n0 in range(0, self.n, self.nb_max):
            nb = min(self.nb_max, self.n - n0)
            _winograd_conv_chunk(
                self.u,
                x,
                v,
                zb,
                out,
                self.btw,
                self.atw,
                n0,
                nb,
                *self.geometry,
                *self.offsets[nb],
                *self.args,
                self.per_pass,
                planes,
                work,
                rows,
                vpanels,
                res,
            )
        return out
