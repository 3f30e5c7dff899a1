"""``products``: the GEMMs z[g] = u[g] @ v[g] of a Winograd convolution, on weights
packed once at load (the other GEMM, ``gemm.py``, serves Gemm, MatMul and im2col convs).

Winograd's a*a products have few columns at a small batch (AlexNet's 13x13 layers
at batch 1: 49 tiles), and there numpy's BLAS runs far below its peak: it packs the
weight block on every call (384 x 384 x 49 at 45 GMAC/s a core against 74 at 196
columns). Here the weights are packed once (``pack_rows``) and a register-blocked
micro-kernel (``_gemm_f32_32x14_panel``, on ``simd`` vectors) computes MB = 32 output
rows by NR = 14 columns at a time, 28 vectors of sums in registers, each step a load of two
weight vectors, fourteen broadcasts of v and 28 fused multiply-adds.

Blocking, for a job (product g, a group of up to ``PANELS_PER_JOB`` panels of NR columns):
the group's columns of v[g] are copied once into a thread's buffer, panel by panel
as (K, NR), zero-filled past the last column, so that the micro-kernel reads them
contiguously; then every row block of u[g] runs over them. z is written in blocks
of WIDTH rows, (Mp/WIDTH, T, WIDTH) per product (NCHWc's layout): each register of
sums is one store, where a store into z's (M, T) rows would scatter every value
(AlexNet's conv1 at batch 8, 36 x 96 x 48 x 1568 that way: 8.96 ms against numpy's
sgemm 3.57), and the output transform reads a block's (T, WIDTH) contiguously. The weights of
all products do not fit the L2 cache (AlexNet's conv4: 9.4 MB), so the micro-kernel
prefetches its weight rows ``AHEAD`` steps ahead (16 x 384 x 384 x 49, two threads:
1.33 times numpy's sgemm with it, 1.14 without).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.jit import kernel
from runtime.kernels.simd import WIDTH, prefetch, vfma, vload, vstore, vzero

MB = 2 * WIDTH  # output rows per panel: two vectors
NR = 14  # columns per panel
HALF = NR // 2  # a last panel of this many columns or fewer runs as a half panel
PANELS_PER_JOB = 8  # panels of columns per job: (K, PANELS_PER_JOB*NR) of v, 172 KiB at K = 384
AHEAD = 32  # weight rows prefetched ahead


def pack_rows(u: np.ndarray) -> np.ndarray:
    """u (G, M, K) -> (G, ceil(M/MB), K, MB) float32: each block of MB rows, column by
    column, zero rows past M."""
    g, m, k = u.shape
    blocks = -(-m // MB)
    rows = np.zeros((g, blocks * MB, k), np.float32)
    rows[:, :m] = u
    return np.ascontiguousarray(rows.reshape(g, blocks, MB, k).transpose(0, 1, 3, 2))


def padded(n: int, block: int) -> int:
    """n rounded up to a multiple of block."""
    return -(-n // block) * block


def panel_floats(k: int) -> int:
    """Floats in each thread's buffer of v panels in ``products``, for inner size k."""
    return PANELS_PER_JOB * NR * k


@kernel()
def _gemm_f32_32x14_panel(up, vp, zb, Tp, m0, t0, K):  # pragma: no cover
    """z[m0 + i, t0 + j] = sum_k up[k*MB + i] * vp[k*NR + j] for i < MB, j < NR, an MB x
    NR block in 28 vector registers, into zb (Mp/WIDTH, Tp, WIDTH): z in blocks of
    WIDTH rows, each block (Tp, WIDTH), a column's WIDTH values contiguous."""
    b0 = ((m0 // WIDTH) * Tp + t0) * WIDTH
    b1 = b0 + Tp * WIDTH
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = c07 = c08 = c09 = c0a = c0b = c0c = c0d = vzero()
    c10 = c11 = c12 = c13 = c14 = c15 = c16 = c17 = c18 = c19 = c1a = c1b = c1c = c1d = vzero()
    for k in range(K):
        prefetch(up, (k + AHEAD) * MB)
        prefetch(up, (k + AHEAD) * MB + WIDTH)
        a0 = vload(up, k * MB)
        a1 = vload(up, k * MB + WIDTH)
        o = k * NR
        b = vp[o]
        c00 = vfma(c00, a0, b)
        c10 = vfma(c10, a1, b)
        b = vp[o + 1]
        c01 = vfma(c01, a0, b)
        c11 = vfma(c11, a1, b)
        b = vp[o + 2]
        c02 = vfma(c02, a0, b)
        c12 = vfma(c12, a1, b)
        b = vp[o + 3]
        c03 = vfma(c03, a0, b)
        c13 = vfma(c13, a1, b)
        b = vp[o + 4]
        c04 = vfma(c04, a0, b)
        c14 = vfma(c14, a1, b)
        b = vp[o + 5]
        c05 = vfma(c05, a0, b)
        c15 = vfma(c15, a1, b)
        b = vp[o + 6]
        c06 = vfma(c06, a0, b)
        c16 = vfma(c16, a1, b)
        b = vp[o + 7]
        c07 = vfma(c07, a0, b)
        c17 = vfma(c17, a1, b)
        b = vp[o + 8]
        c08 = vfma(c08, a0, b)
        c18 = vfma(c18, a1, b)
        b = vp[o + 9]
        c09 = vfma(c09, a0, b)
        c19 = vfma(c19, a1, b)
        b = vp[o + 10]
        c0a = vfma(c0a, a0, b)
        c1a = vfma(c1a, a1, b)
        b = vp[o + 11]
        c0b = vfma(c0b, a0, b)
        c1b = vfma(c1b, a1, b)
        b = vp[o + 12]
        c0c = vfma(c0c, a0, b)
        c1c = vfma(c1c, a1, b)
        b = vp[o + 13]
        c0d = vfma(c0d, a0, b)
        c1d = vfma(c1d, a1, b)
    # column j's rows m0 .. m0+MB: one vector in each of two channel blocks
    vstore(zb, b0 + 0 * WIDTH, c00)
    vstore(zb, b1 + 0 * WIDTH, c10)
    vstore(zb, b0 + 1 * WIDTH, c01)
    vstore(zb, b1 + 1 * WIDTH, c11)
    vstore(zb, b0 + 2 * WIDTH, c02)
    vstore(zb, b1 + 2 * WIDTH, c12)
    vstore(zb, b0 + 3 * WIDTH, c03)
    vstore(zb, b1 + 3 * WIDTH, c13)
    vstore(zb, b0 + 4 * WIDTH, c04)
    vstore(zb, b1 + 4 * WIDTH, c14)
    vstore(zb, b0 + 5 * WIDTH, c05)
    vstore(zb, b1 + 5 * WIDTH, c15)
    vstore(zb, b0 + 6 * WIDTH, c06)
    vstore(zb, b1 + 6 * WIDTH, c16)
    vstore(zb, b0 + 7 * WIDTH, c07)
    vstore(zb, b1 + 7 * WIDTH, c17)
    vstore(zb, b0 + 8 * WIDTH, c08)
    vstore(zb, b1 + 8 * WIDTH, c18)
    vstore(zb, b0 + 9 * WIDTH, c09)
    vstore(zb, b1 + 9 * WIDTH, c19)
    vstore(zb, b0 + 10 * WIDTH, c0a)
    vstore(zb, b1 + 10 * WIDTH, c1a)
    vstore(zb, b0 + 11 * WIDTH, c0b)
    vstore(zb, b1 + 11 * WIDTH, c1b)
    vstore(zb, b0 + 12 * WIDTH, c0c)
    vstore(zb, b1 + 12 * WIDTH, c1c)
    vstore(zb, b0 + 13 * WIDTH, c0d)
    vstore(zb, b1 + 13 * WIDTH, c1d)


@kernel()
def _gemm_f32_32x7_panel(up, vp, zb, Tp, m0, t0, K):  # pragma: no cover
    """``_gemm_f32_32x14_panel`` for the last NR/2 columns or fewer, vp (K, NR/2): an
    MB x NR/2 block in 14 vector registers (AlexNet's 13x13 layers at batch 1 have 49
    tiles: 14 + 14 + 14 + 7, not 56)."""
    b0 = ((m0 // WIDTH) * Tp + t0) * WIDTH
    b1 = b0 + Tp * WIDTH
    c00 = c01 = c02 = c03 = c04 = c05 = c06 = vzero()
    c10 = c11 = c12 = c13 = c14 = c15 = c16 = vzero()
    for k in range(K):
        prefetch(up, (k + AHEAD) * MB)
        prefetch(up, (k + AHEAD) * MB + WIDTH)
        a0 = vload(up, k * MB)
        a1 = vload(up, k * MB + WIDTH)
        o = k * HALF
        b = vp[o]
        c00 = vfma(c00, a0, b)
        c10 = vfma(c10, a1, b)
        b = vp[o + 1]
        c01 = vfma(c01, a0, b)
        c11 = vfma(c11, a1, b)
        b = vp[o + 2]
        c02 = vfma(c02, a0, b)
        c12 = vfma(c12, a1, b)
        b = vp[o + 3]
        c03 = vfma(c03, a0, b)
        c13 = vfma(c13, a1, b)
        b = vp[o + 4]
        c04 = vfma(c04, a0, b)
        c14 = vfma(c14, a1, b)
        b = vp[o + 5]
        c05 = vfma(c05, a0, b)
        c15 = vfma(c15, a1, b)
        b = vp[o + 6]
        c06 = vfma(c06, a0, b)
        c16 = vfma(c16, a1, b)
    vstore(zb, b0 + 0 * WIDTH, c00)
    vstore(zb, b1 + 0 * WIDTH, c10)
    vstore(zb, b0 + 1 * WIDTH, c01)
    vstore(zb, b1 + 1 * WIDTH, c11)
    vstore(zb, b0 + 2 * WIDTH, c02)
    vstore(zb, b1 + 2 * WIDTH, c12)
    vstore(zb, b0 + 3 * WIDTH, c03)
    vstore(zb, b1 + 3 * WIDTH, c13)
    vstore(zb, b0 + 4 * WIDTH, c04)
    vstore(zb, b1 + 4 * WIDTH, c14)
    vstore(zb, b0 + 5 * WIDTH, c05)
    vstore(zb, b1 + 5 * WIDTH, c15)
    vstore(zb, b0 + 6 * WIDTH, c06)
    vstore(zb, b1 + 6 * WIDTH, c16)


@kernel(parallel=True)
def products(up, v, zb, K, T, vpanels):  # pragma: no cover
    """z[g] = u[g] @ v[g] for every g, in blocks of rows: up (G, Mp/MB, K, MB) from
    ``pack_rows``, v flat (G, K, T), zb flat (G, Mp/WIDTH, Tp, WIDTH): z[g, o, t] at
    zb[g, o // WIDTH, t, o % WIDTH], Tp = ``padded(T, NR)`` (columns past T: zeros'
    products, or not written after a half panel), Mp = Mp/MB * MB. vpanels: (threads,
    ``panel_floats(K)``)."""
    G, blocks = up.shape[0], up.shape[1]
    Mp = blocks * MB
    panels = (T + NR - 1) // NR
    groups = (panels + PANELS_PER_JOB - 1) // PANELS_PER_JOB
    for job in prange(G * groups):
        g, p0 = job // groups, (job % groups) * PANELS_PER_JOB
        p1 = min(panels, p0 + PANELS_PER_JOB)
        vp = vpanels[numba.get_thread_id()]
        vg, zg = v[g * K * T : (g + 1) * K * T], zb[g * Mp * panels * NR :]
        for p in range(p0, p1):  # panel p: (K, NR) or (K, HALF), its columns zero past T
            t0 = p * NR
            nt = min(NR, T - t0)
            n = NR if nt > HALF else HALF
            dst = vp[(p - p0) * K * NR :]
            for k in range(K):
                src, d = vg[k * T + t0 :], dst[k * n : (k + 1) * n]
                for j in range(nt):
                    d[j] = src[j]
                for j in range(nt, n):
                    d[j] = 0.0
        for mb in range(blocks):
            u = up[g, mb].reshape(-1)
            for p in range(p0, p1):
                vpp, t0 = vp[(p - p0) * K * NR :], p * NR
                if T - t0 > HALF:
                    _gemm_f32_32x14_panel(u, vpp, zg, panels * NR, mb * MB, t0, K)
                else:
                    _gemm_f32_32x7_panel(u, vpp, zg, panels * NR, mb * MB, t0, K)
