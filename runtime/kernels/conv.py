"""Convolution as im2col and the engine's GEMM, with the epilogue in the GEMM's store.

Shapes are normalised to 3-D spatial (1-D and 2-D convolutions have D=1, H=1).

The columns: x (N, C, D, H, W) -> cols (C*KD*KH*KW, N*OD*OH*OW). Row r = ((c*KD +
a)*KH + b)*KW + e holds, for every output position, the input tap

    x[n, c, od*sd - pd + a*dd, oh*sh - ph + b*dh, ow*sw - pw + e*dw]   (0 outside)

``_fill_panel`` writes one panel of them (NR columns of one group's rows) in the
GEMM's packed layout of B (``gemm.pack_b``). The GEMM is the engine's own
(``kernels/gemm``: every output channel computed by the same arithmetic) on the
grouped views, (G, M/G, C/G*K) @ (G, C/G*K, cols), with the weights packed once per
plan (``pack_weights``).

With M/G >= ``GEMM_FEW_ROWS`` a conv is one parallel region: ``_im2col_gemm``'s jobs
(and ``gemm.gemm_pointwise``'s, for a 1x1 at stride 1) fill their own panel in L1,
multiply it and store the tiles with the epilogue (``gemm.store_conv_tile``). With
fewer rows, ``_im2col`` (or ``_pack_pointwise``) packs a chunk of images' columns,
``gemm.gemm_packed`` multiplies them and ``_epilogue`` stores: y (M, nb, S) -> out
(nb, M, S) with, per output channel m,

    out = act(y + bias[m]) * scale[m] + shift[m]

act: ``kernels/activation.ACTIVATIONS``. The scale/shift pair is a BatchNormalization
that follows the activation, applied in the same pass."""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.config import GEMM_FEW_ROWS, IM2COL_CHUNK_FLOATS
from runtime.kernels import gemm
from runtime.kernels.activation import activate
from runtime.kernels.jit import kernel
from runtime.kernels.simd import WIDTH
from runtime.memory import scratch


@kernel(inline="always")
def _fill_panel(
    xf,
    bf,
    base,
    p,
    g,
    Kg,
    NR,
    cols,
    C,
    D,
    H,
    W,
    n0,
    kd,
    kh,
    kw,
    sd,
    sh,
    sw,
    pd,
    ph,
    pw,
    dd,
    dh,
    dw,
    od_,
    oh_,
    ow_,
    lo0,
    hi0,
):  # pragma: no cover
    """Panel p of group g's columns into bf[base : base + Kg*NR], laid out (Kg, NR):
    row rr (input channel g*C/G + rr // (kd*kh*kw), then the tap), column j = the
    conv's column p*NR + j. The panel's columns split into runs along one output row
    (same image, od, oh); each run of each kernel row is a copy of one input line,
    with zeros where the taps fall in the padding, in three branch-free loops.
    lo0/hi0: kernel column e reads inside the line for ow in [lo0[e], hi0[e])."""
    plane = od_ * oh_ * ow_
    col0 = p * NR
    ncol = min(NR, cols - col0)
    cg = Kg // (kd * kh * kw)
    j = 0
    while j < ncol:  # a run: columns col0+j .. col0+j+run-1, ow .. ow+run-1
        col = col0 + j
        i = col // plane
        rem = col % plane
        od = rem // (oh_ * ow_)
        oh = (rem // ow_) % oh_
        ow = rem % ow_
        end = ow + min(ncol - j, ow_ - ow)
        n = n0 + i
        rr = 0  # row rr = ((c*kd + a)*kh + b)*kw + e within the group
        for c in range(g * cg, (g + 1) * cg):
            for a in range(kd):
                z = od * sd - pd + a * dd
                for b in range(kh):
                    y = oh * sh - ph + b * dh
                    inside = z >= 0 and z < D and y >= 0 and y < H
                    line = (((n * C + c) * D + z) * H + y) * W - pw
                    for e in range(kw):
                        d0 = base + rr * NR + j - ow
                        lo = min(end, max(ow, lo0[e]))
                        hi = max(lo, min(end, hi0[e]))
                        if not inside:
                            lo = hi = end
                        for q in range(ow, lo):
                            bf[d0 + q] = 0.0
                        s0 = line + e * dw
                        if sw == 1:  # a constant stride: the copy vectorises
                            for q in range(lo, hi):
                                bf[d0 + q] = xf[s0 + q]
                        else:
                            for q in range(lo, hi):
                                bf[d0 + q] = xf[s0 + q * sw]
                        for q in range(hi, end):
                            bf[d0 + q] = 0.0
                        rr += 1
        j += end - ow
    if ncol < NR:  # columns past the last one: zeros (never stored)
        for r in range(Kg):
            for q in range(ncol, NR):
                bf[base + r * NR + q] = 0.0


def line_bounds(W: int, kw: int, sw: int, pw: int, dw: int) -> tuple[np.ndarray, np.ndarray]:
    """For each kernel column e, the outputs ow in [lo[e], hi[e]) whose tap reads
    inside the input line: 0 <= ow*sw - pw + e*dw < W (no integer division in the
    loops)."""
    e = np.arange(kw)
    lo = np.maximum(0, (pw - e * dw + sw - 1) // sw)
    hi = (W - 1 + pw - e * dw) // sw + 1
    return lo.astype(np.int64), hi.astype(np.int64)


@kernel(parallel=True)
def _im2col(
    x, bp, n0, nb, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, od_, oh_, ow_, lo0, hi0
):  # pragma: no cover
    """The columns straight into the GEMM's packed B, bp (G, ceil(cols/NR), Kg, NR)
    (``gemm.pack_b``'s layout, Kg = C/G*KD*KH*KW): row r, column col at
    bp[r // Kg, col // NR, r % Kg, col % NR]. A job fills one panel of one group
    (``_fill_panel``): its writes are the panel's own block, which stays in cache."""
    _, C, D, H, W = x.shape
    G, P, Kg, NR = bp.shape
    cols = nb * od_ * oh_ * ow_
    xf = x.reshape(-1)  # flat offsets: no array view per (run, row)
    bf = bp.reshape(-1)
    for job in prange(G * P):
        g, p = job // P, job % P
        base = (g * P + p) * Kg * NR
        _fill_panel(
            xf, bf, base, p, g, Kg, NR, cols, C, D, H, W, n0, kd, kh, kw, sd, sh, sw, pd, ph,
            pw, dd, dh, dw, od_, oh_, ow_, lo0, hi0,
        )  # fmt: skip


@kernel(parallel=True)
def _im2col_gemm(
    x,
    ap,
    out,
    n0,
    nb,
    Mg,
    chunk,
    panels,
    tiles,
    kd,
    kh,
    kw,
    sd,
    sh,
    sw,
    pd,
    ph,
    pw,
    dd,
    dh,
    dw,
    od_,
    oh_,
    ow_,
    lo0,
    hi0,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
):  # pragma: no cover
    """A conv by im2col as one parallel region: a GEMM job (g, panel p, a chunk of row
    blocks, as in ``gemm._gemm``) fills its own panel of columns (``_fill_panel``) in
    its thread's ``panels`` row, where the tiles read it from L1, then stores its
    tiles with the epilogue. Jobs that share a panel (chunks of rows) each fill it.
    out (N, M, plane)."""
    _, C, D, H, W = x.shape
    G, mb, Kg = ap.shape[0], ap.shape[1], ap.shape[2]
    plane = od_ * oh_ * ow_
    NR = panels.shape[1] // Kg
    cols = nb * plane
    P = (cols + NR - 1) // NR
    chunks = (mb + chunk - 1) // chunk
    xf = x.reshape(-1)
    for job in prange(G * P * chunks):
        g = job // (P * chunks)
        p = (job // chunks) % P
        q = job % chunks
        t = tiles[numba.get_thread_id()]
        pan = panels[numba.get_thread_id()]
        _fill_panel(xf, pan, 0, p, g, Kg, NR, cols, C, D, H, W, n0, kd, kh, kw, sd, sh, sw,
                    pd, ph, pw, dd, dh, dw, od_, oh_, ow_, lo0, hi0)  # fmt: skip
        j0 = p * NR
        n = min(NR, cols - j0)
        for b in range(q * chunk, min(mb, (q + 1) * chunk)):
            gemm.tile(ap[g, b].reshape(-1), pan, Kg, t, NR)
            gemm.store_conv_tile(t, out, n0, plane, g * Mg + b * gemm.MR,
                                 min(gemm.MR, Mg - b * gemm.MR), j0, n, NR, bias, act,
                                 alpha, beta, scale, shift)  # fmt: skip


@kernel(parallel=True)
def _pack_pointwise(x, bp, n0, nb):  # pragma: no cover
    """A 1x1 conv's columns (stride 1, no pads): x (N, C, S) rows into the packed B,
    bp (G, ceil(nb*S/NR), Kg, NR): row k of image n0+i, position s at column i*S + s.
    A job per (image, row) reads its row once, in order, and writes it NR values at a
    time: disjoint elements. Columns past the last one are zeros."""
    _, C, S = x.shape
    Kg, NR = bp.shape[2], bp.shape[3]
    P = bp.shape[1]
    bf = bp.reshape(-1)
    for job in prange(nb * C):
        i = job // C
        k = job % C
        row = x[n0 + i, k]
        base = ((k // Kg) * P * Kg + k % Kg) * NR  # panel 0 of row k
        col = i * S
        s = 0
        while s < S:
            p = col // NR
            j = col % NR
            count = min(S - s, NR - j)
            d0 = base + p * Kg * NR + j
            for q in range(count):
                bf[d0 + q] = row[s + q]
            s += count
            col += count
    cols = nb * S
    if cols < P * NR:
        for k in prange(C):
            d0 = ((k // Kg) * P * Kg + (P - 1) * Kg + k % Kg) * NR
            for q in range(cols - (P - 1) * NR, NR):
                bf[d0 + q] = 0.0


@kernel(parallel=True)
def _epilogue(y, out, n0, bias, act, alpha, beta, scale, shift):  # pragma: no cover
    M, nb, S = y.shape
    for job in prange(nb * M):
        i = job // M
        m = job % M
        dst = out[n0 + i, m]
        dst[:] = y[m, i]
        activate(dst, S, bias[m], act, alpha, beta, scale[m], shift[m])


def pack_weights(w: np.ndarray, group: int) -> np.ndarray:
    """w (M, C/G, KD, KH, KW) -> the GEMM's packed A, (G, M/G, C/G*K) in row blocks."""
    m = w.shape[0]
    return gemm.pack_a(w.reshape(group, m // group, -1))


def conv3d_im2col(
    x: np.ndarray,
    w: np.ndarray,
    bias: np.ndarray,
    out: np.ndarray,
    *,
    group: int,
    strides: tuple[int, int, int],
    pads: tuple[int, int, int],
    dilations: tuple[int, int, int],
    act: int = 0,
    alpha: float = 0.01,
    beta: float = 0.0,
    scale: np.ndarray | None = None,
    shift: np.ndarray | None = None,
    packed: np.ndarray | None = None,
) -> np.ndarray:
    """x (N, C, D, H, W), w (M, C/G, KD, KH, KW) -> out (N, M, OD, OH, OW), all float32.

    ``pads`` are the begin pads; the output shape (already in ``out``) fixes the end.
    ``packed``: ``pack_weights(w, group)``, made once by the caller (else here).
    Shapes are trusted: the public op checks them.
    """
    N, C = x.shape[:2]
    M, cg, kd, kh, kw = w.shape
    od_, oh_, ow_ = out.shape[2:]
    plane = od_ * oh_ * ow_
    k = cg * kd * kh * kw
    wp = pack_weights(w, group) if packed is None else packed  # (G, M/G blocks, C/G*K, MR)
    scale = np.ones(M, np.float32) if scale is None else scale
    shift = np.zeros(M, np.float32) if shift is None else shift
    out3 = out.reshape(N, M, plane)
    nb_max = max(1, IM2COL_CHUNK_FLOATS // max(1, C * kd * kh * kw * plane))
    ones, zeros = (1, 1, 1), (0, 0, 0)
    pointwise = (kd, kh, kw) == ones and tuple(strides) == ones and tuple(pads) == zeros
    pointwise = pointwise and x.shape[2:] == out.shape[2:] and x.flags.c_contiguous
    ab = np.float32(alpha), np.float32(beta)
    bounds = line_bounds(x.shape[4], kw, strides[2], pads[2], dilations[2])
    if pointwise and M // group >= GEMM_FEW_ROWS:  # the GEMM's jobs pack their own columns
        gemm.gemm_pointwise(wp, x.reshape(N, C, plane), out3, 0, N, bias, act, *ab, scale, shift)
        return out
    if M // group >= GEMM_FEW_ROWS:  # the GEMM's jobs fill their own columns
        width = gemm.nr()
        threads = numba.get_num_threads()
        tiles = scratch("gemm.tiles", (threads, max(gemm.MR * width, 4 * WIDTH)), np.float32)
        panels = scratch("conv.panel", (threads, k * width), np.float32)
        chunk = gemm.job_rows(group, wp.shape[1], gemm.blocks(N * plane, width))
        geometry = (kd, kh, kw, *strides, *pads, *dilations, od_, oh_, ow_, *bounds)
        _im2col_gemm(
            x, wp, out3, 0, N, M // group, chunk, panels, tiles, *geometry, bias, act, *ab,
            scale, shift,
        )  # fmt: skip
        return out
    for n0 in range(0, N, nb_max):
        nb = min(nb_max, N - n0)
        width = gemm.nr()
        bp = scratch("conv.cols", (group, gemm.blocks(nb * plane, width), k, width), np.float32)
        if pointwise:  # the columns are the input's planes
            _pack_pointwise(x.reshape(N, C, plane), bp, n0, nb)
        else:
            _im2col(x, bp, n0, nb, kd, kh, kw, *strides, *pads, *dilations, od_, oh_, ow_, *bounds)
        y = scratch("conv.gemm", (group, M // group, nb * plane), np.float32)
        gemm.gemm_packed(wp, bp, y, M // group, nb * plane)  # (G, M/G, nb*S)
        _epilogue(y.reshape(M, nb, plane), out3, n0, bias, act, *ab, scale, shift)
    return out
