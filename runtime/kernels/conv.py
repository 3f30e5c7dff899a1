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

With M/G >= ``GEMM_FEW_ROWS`` a conv is one parallel region: ``_conv_nchw_im2col_gemm``'s jobs
(and ``gemm.gemm_pointwise``'s, for a 1x1 at stride 1) fill their own panel in L1,
multiply it and store the tiles with the epilogue (``gemm.store_conv_tile``). With
fewer rows, ``_im2col`` (or ``_pack_pointwise``) packs a chunk of images' columns,
``gemm.gemm_rows`` multiplies them and ``_epilogue`` stores: y (M, nb, S) -> out
(nb, M, S) with, per output channel m,

    out = act(y + bias[m]) * scale[m] + shift[m]

act: ``kernels/activation.ACTIVATIONS``. The scale/shift pair is a BatchNormalization
that follows the activation, applied in the same pass.

``ConvDirect`` (``_conv_nchw_direct_gemm``) runs a 2-D conv without packing B at
all: its tiles read the GEMM's B straight from a padded, phase-split copy of the
input (``_pad_phases``), 16 outputs of a row or 16 positions of a small plane a
vector, in the same order of sums as im2col, so both give the same bits."""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.config import DIRECT_RUN_FLOATS, IM2COL_CHUNK_FLOATS
from runtime.kernels import gemm
from runtime.kernels.activation import activate, activate_channels
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    transpose,
    vadd,
    veven,
    vfma,
    vfmav,
    vload,
    vload_first,
    vload_lanes,
    vstore,
    vstore_first,
    vstore_lanes,
    vzero,
)
from runtime.memory import scratch

MR = gemm.MR


@kernel(inline="always")
def copy_line(bf, d, xf, s, lo, hi, sw, room):  # pragma: no cover
    """bf[d + q] = xf[s + q*sw] for lo <= q < hi: a vector at a time at strides 1 and 2
    (two loads and their even lanes), while a vector stays within ``room`` of d and
    within xf (the values it writes past hi are rewritten by the caller), then the
    last values by masked loads and stores of just them; other strides one by one
    (numba's checked scalar indexing does not vectorise)."""
    q = lo
    if sw == 1:
        while q < hi and q + WIDTH <= room and s + q + WIDTH <= xf.size:
            vstore(bf, d + q, vload(xf, s + q))
            q += WIDTH
        while q < hi:
            n = min(WIDTH, hi - q)
            vstore_first(bf, d + q, vload_first(xf, s + q, n), n)
            q += n
    elif sw == 2:
        while q < hi and q + WIDTH <= room and s + 2 * q + 2 * WIDTH <= xf.size:
            vstore(bf, d + q, veven(vload(xf, s + 2 * q), vload(xf, s + 2 * q + WIDTH)))
            q += WIDTH
        while q < hi:
            n = min(WIDTH, hi - q)  # reads 2n - 1 values: the last at s + 2 (hi - 1)
            first = vload_first(xf, s + 2 * q, min(WIDTH, 2 * n - 1))
            second = vload_first(xf, s + 2 * q + WIDTH, max(0, 2 * n - 1 - WIDTH))
            vstore_first(bf, d + q, veven(first, second), n)
            q += n
    while q < hi:
        bf[d + q] = xf[s + q * sw]
        q += 1


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
                        # the row's room: a vector past hi is rewritten by what follows
                        copy_line(bf, d0, xf, line + e * dw, lo, hi, sw, NR - j + ow)
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
def _conv_nchw_im2col_gemm(
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
    res,
):  # pragma: no cover
    """A conv by im2col as one parallel region: a GEMM job (g, panel p, a chunk of row
    blocks, as in ``gemm._gemm_f32_tiles``) fills its own panel of columns (``_fill_panel``) in
    its thread's ``panels`` row, where the tiles read it from L1, then stores its
    tiles with the epilogue (``gemm.store_panel_tiles``). Jobs that share a panel
    (chunks of rows) each fill it. out (N, M, plane); ``res``: a residual shaped as
    out, flat, added after the bias and before the activation (or none)."""
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
        gemm.store_panel_tiles(ap[g], q * chunk, min(mb, (q + 1) * chunk), pan, Kg, t, NR,
                               out, n0, plane, g * Mg, Mg, j0, n, bias, act, alpha, beta,
                               scale, shift, res)  # fmt: skip


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


class ConvGemm:
    """A conv as the engine's GEMM, laid out once for one input shape: each method is
    the call of one entry of ``runtime/kernel_table.py``, which chooses among them
    (none re-decides). x (N, C, D, H, W) -> out (N, M, OD, OH, OW), all float32;
    ``packed``: ``pack_weights(w, group)``; ``pads`` the begin pads (the output shape
    fixes the end); ``epilogue``: (act, alpha, beta, scale, shift); ``panel_width``:
    the pointwise GEMM's tile width (None: ``gemm.nr()``)."""

    def __init__(
        self,
        x_shape: tuple[int, ...],
        w_shape: tuple[int, ...],
        packed: np.ndarray,
        bias: np.ndarray,
        group: int,
        *,
        strides: tuple[int, int, int],
        pads: tuple[int, int, int],
        dilations: tuple[int, int, int],
        out_sp: tuple[int, int, int],
        epilogue: tuple,
        panel_width: int | None = None,
    ) -> None:
        c = x_shape[1]
        self.panel_width = panel_width  # the pointwise GEMM's columns per panel
        m, cg, kd, kh, kw = w_shape
        self.x_shape = tuple(x_shape)
        self.wp, self.bias, self.group, self.rows = packed, bias, group, m // group
        self.k = cg * kd * kh * kw
        self.plane = int(np.prod(out_sp))
        self.planes = (x_shape[0], c, self.plane)  # x as the pointwise GEMM reads it
        self.out_planes = (x_shape[0], m, self.plane)
        self.nr = gemm.nr()
        self.epilogue = epilogue
        bounds = line_bounds(x_shape[4], kw, strides[2], pads[2], dilations[2])
        self.geometry = (kd, kh, kw, *strides, *pads, *dilations, *out_sp, *bounds)
        # images per chunk of the row-by-row paths' columns
        self.nb_max = max(1, IM2COL_CHUNK_FLOATS // max(1, c * kd * kh * kw * self.plane))
        if panel_width is not None:  # the pointwise GEMM's arguments, made once
            act, alpha, beta, self.scale, self.shift = epilogue
            self.pw_ep = gemm.pointwise_epilogue(bias, alpha, beta)
            self.pw_geo = gemm.pointwise_geometry(0, x_shape[0], self.rows, panel_width, act)
            # x and out as the kernel reads them, (N, C, H, W): 1-D and 3-D convs reshaped
            self.pw_x = (x_shape[0], c, 1, self.plane)
            self.pw_out = (x_shape[0], m, 1, self.plane)
            numba.get_num_threads()  # starts numba's threads, which the kernel's region uses

    def pointwise_gemm(
        self, x: np.ndarray, out: np.ndarray, res: np.ndarray = gemm.NO_RESIDUAL
    ) -> None:
        """1x1 at stride 1, unpadded, M/G >= GEMM_FEW_ROWS: the GEMM's jobs pack their
        own panels of columns from the input planes (``gemm.gemm_pointwise``); ``res``:
        a residual shaped as out, flat, added before the activation (or none)."""
        x = np.ascontiguousarray(x)
        if x.ndim != 4:
            x, out = x.reshape(self.pw_x), out.reshape(self.pw_out)
        gemm._conv_nchw_pointwise_gemm(
            self.wp, x, out, self.pw_ep, self.scale, self.shift, self.pw_geo, res
        )

    def im2col_gemm(
        self, x: np.ndarray, out: np.ndarray, res: np.ndarray = gemm.NO_RESIDUAL
    ) -> None:
        """M/G >= GEMM_FEW_ROWS: one parallel region whose jobs fill their own panel of
        im2col columns in L1, multiply it and store with the epilogue (``res``: as in
        ``pointwise_gemm``)."""
        n = self.x_shape[0]
        width = self.nr
        threads = numba.get_num_threads()
        tiles = scratch("gemm.tiles", (threads, gemm.tile_floats(width)), np.float32)
        panels = scratch("conv.panel", (threads, self.k * width), np.float32)
        chunk = gemm.job_rows(
            self.group, self.wp.shape[1], gemm.blocks(n * self.plane, width), threads
        )
        _conv_nchw_im2col_gemm(
            x.reshape(self.x_shape), self.wp, out.reshape(n, -1, self.plane), 0, n, self.rows,
            chunk, panels, tiles, *self.geometry, self.bias, *self.epilogue, res,
        )  # fmt: skip

    def pointwise_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        """1x1 at stride 1 with few rows: the planes packed as columns, then row by row."""
        n, c = self.x_shape[:2]
        x3 = np.ascontiguousarray(x).reshape(n, c, self.plane)
        self._rows(lambda bp, n0, nb: _pack_pointwise(x3, bp, n0, nb), out)

    def im2col_rows(self, x: np.ndarray, out: np.ndarray) -> None:
        """Few rows: a chunk of images' im2col columns, then the GEMM row by row."""
        x5 = x.reshape(self.x_shape)
        self._rows(lambda bp, n0, nb: _im2col(x5, bp, n0, nb, *self.geometry), out)

    def _rows(self, columns, out: np.ndarray) -> None:
        n, plane, group = self.x_shape[0], self.plane, self.group
        out3 = out.reshape(n, -1, plane)
        width = gemm.nr()
        for n0 in range(0, n, self.nb_max):
            nb = min(self.nb_max, n - n0)
            bp = scratch("conv.cols", (group, gemm.blocks(nb * plane, width), self.k, width),
                         np.float32)  # fmt: skip
            columns(bp, n0, nb)
            y = scratch("conv.gemm", (group, self.rows, nb * plane), np.float32)
            gemm.gemm_rows(self.wp, bp, y, self.rows, nb * plane)  # (G, M/G, nb*S)
            _epilogue(y.reshape(-1, nb, plane), out3, n0, self.bias, *self.epilogue)


# --------------------------------------------------------------------------- direct GEMM
#
# A 2-D conv without im2col's panels. The input is copied once into padded planes
# split by phase (strides sh, sw: sh*sw planes of Hq x Wq, phase (p, q) holding the
# padded rows p, p + sh, ... and columns q, q + sw, ...). In that layout output (oh,
# ow)'s tap (c, a, e) is the value at position oh*Wq + ow plus the tap's offset
#
#     offs[k] = ((c*sh*sw + (a*dh % sh)*sw + e*dw % sw) * Hq + a*dh // sh) * Wq + e*dw // sw
#
# so 16 consecutive positions are 16 consecutive values for every tap: a vector of
# the GEMM's B, read in place, as XNNPACK's indirect GEMM reads rows through
# pointers. A "slot" is such a vector: 16 outputs of one row (row slots, for rows
# of 12 outputs and more), or 16 consecutive positions of the plane that run on
# across rows (grid slots, for small planes; the lanes at ow >= OW are computed and
# dropped). A tile is ``width // 16`` slots; the sums are the GEMM's, k in the same
# (c, a, e) order as the im2col kernel's, so the outputs are the same bits.


@kernel(parallel=True)
def _pad_phases(x, qf, sh, sw, hq, wq, pt, pl, prow, pcol, lo, hi):  # pragma: no cover
    """The phases the taps read, prow x pcol: qf (flat: N, C, len(prow) * len(pcol), hq,
    wq) [n, c, u*len(pcol) + v, i, j] = x[n, c, i*sh + prow[u] - pt, j*sw + pcol[v] -
    pl], 0 outside x (N, C, H, W); phase column v's j in [lo[v], hi[v]) read inside x.
    A job the phase planes of one row phase of one input plane."""
    N, C, H, W = x.shape
    nu, nv = prow.shape[0], pcol.shape[0]
    xf = x.reshape(-1)
    for job in prange(N * C * nu):
        u = job % nu
        nc = job // nu
        for i in range(hq):
            y = i * sh + prow[u] - pt
            for v in range(nv):
                d = (((nc * nu + u) * nv + v) * hq + i) * wq
                lo_v, hi_v = lo[v], hi[v]
                if y < 0 or y >= H:
                    lo_v = hi_v = wq
                for j in range(lo_v):
                    qf[d + j] = 0.0
                copy_line(qf, d, xf, (nc * H + y) * W + pcol[v] - pl, lo_v, hi_v, sw, wq)
                for j in range(hi_v, wq):
                    qf[d + j] = 0.0


@kernel(inline="always")
def _store_vector(of, o, c, m, bias, act, alpha, beta, scale, shift, res):  # pragma: no cover
    """One vector of channel m's sums through the epilogue into of[o : o + 16]; ``res``
    (flat as of, or none): a residual added before the activation."""
    if res.shape[0] > 0:
        c = gemm.epilogue_vector_res(c, vload(res, o), bias[m], act, alpha, beta, scale[m],
                                     shift[m])  # fmt: skip
    else:
        c = gemm.epilogue_vector(c, bias[m], act, alpha, beta, scale[m], shift[m])
    vstore(of, o, c)


@kernel()
def conv_direct_6x32_tile(
    a, xf, i0, i1, offs, K, t, of, o0, o1, S, m0, whole, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """The 6 x 32 tile a (K, MR) @ B, B's row k the vectors xf[i0 + offs[k]] and
    xf[i1 + offs[k]] (two slots); ``whole``: its rows stored through the epilogue
    from registers at of[o0 + r*S], of[o1 + r*S] (channels m0 + r), else into t (MR, 32)."""
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = vzero()
    for k in range(K):
        off = offs[k]
        b = vload(xf, i0 + off)
        e = vload(xf, i1 + off)
        j = k * gemm.MR
        s = a[j]
        c0 = vfma(c0, b, s)
        d0 = vfma(d0, e, s)
        s = a[j + 1]
        c1 = vfma(c1, b, s)
        d1 = vfma(d1, e, s)
        s = a[j + 2]
        c2 = vfma(c2, b, s)
        d2 = vfma(d2, e, s)
        s = a[j + 3]
        c3 = vfma(c3, b, s)
        d3 = vfma(d3, e, s)
        s = a[j + 4]
        c4 = vfma(c4, b, s)
        d4 = vfma(d4, e, s)
        s = a[j + 5]
        c5 = vfma(c5, b, s)
        d5 = vfma(d5, e, s)
    if whole:
        _store_vector(of, o0, c0, m0, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1, d0, m0, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + S, c1, m0 + 1, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + S, d1, m0 + 1, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 2 * S, c2, m0 + 2, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 2 * S, d2, m0 + 2, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 3 * S, c3, m0 + 3, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 3 * S, d3, m0 + 3, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 4 * S, c4, m0 + 4, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 4 * S, d4, m0 + 4, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 5 * S, c5, m0 + 5, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 5 * S, d5, m0 + 5, bias, act, alpha, beta, scale, shift, res)
    else:
        w2 = 2 * WIDTH
        vstore(t, 0 * w2, c0)
        vstore(t, 0 * w2 + WIDTH, d0)
        vstore(t, 1 * w2, c1)
        vstore(t, 1 * w2 + WIDTH, d1)
        vstore(t, 2 * w2, c2)
        vstore(t, 2 * w2 + WIDTH, d2)
        vstore(t, 3 * w2, c3)
        vstore(t, 3 * w2 + WIDTH, d3)
        vstore(t, 4 * w2, c4)
        vstore(t, 4 * w2 + WIDTH, d4)
        vstore(t, 5 * w2, c5)
        vstore(t, 5 * w2 + WIDTH, d5)


@kernel()
def conv_direct_8x32_tile(
    a, xf, i0, i1, offs, K, t, of, o0, o1, S, m0, whole, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """``conv_direct_6x32_tile`` with 8 rows (a (K, 8)): 16 sums in registers, 10 loads
    for 16 FMAs, and no rows wasted at 16, 32 or 64 channels a group."""
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = vzero()
    for k in range(K):
        off = offs[k]
        b = vload(xf, i0 + off)
        e = vload(xf, i1 + off)
        j = k * 8
        s = a[j + 0]
        c0 = vfma(c0, b, s)
        d0 = vfma(d0, e, s)
        s = a[j + 1]
        c1 = vfma(c1, b, s)
        d1 = vfma(d1, e, s)
        s = a[j + 2]
        c2 = vfma(c2, b, s)
        d2 = vfma(d2, e, s)
        s = a[j + 3]
        c3 = vfma(c3, b, s)
        d3 = vfma(d3, e, s)
        s = a[j + 4]
        c4 = vfma(c4, b, s)
        d4 = vfma(d4, e, s)
        s = a[j + 5]
        c5 = vfma(c5, b, s)
        d5 = vfma(d5, e, s)
        s = a[j + 6]
        c6 = vfma(c6, b, s)
        d6 = vfma(d6, e, s)
        s = a[j + 7]
        c7 = vfma(c7, b, s)
        d7 = vfma(d7, e, s)
    if whole:
        _store_vector(of, o0, c0, m0, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1, d0, m0, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 1 * S, c1, m0 + 1, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 1 * S, d1, m0 + 1, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 2 * S, c2, m0 + 2, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 2 * S, d2, m0 + 2, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 3 * S, c3, m0 + 3, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 3 * S, d3, m0 + 3, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 4 * S, c4, m0 + 4, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 4 * S, d4, m0 + 4, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 5 * S, c5, m0 + 5, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 5 * S, d5, m0 + 5, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 6 * S, c6, m0 + 6, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 6 * S, d6, m0 + 6, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 7 * S, c7, m0 + 7, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o1 + 7 * S, d7, m0 + 7, bias, act, alpha, beta, scale, shift, res)
    else:
        w2 = 2 * WIDTH
        vstore(t, 0 * w2, c0)
        vstore(t, 0 * w2 + WIDTH, d0)
        vstore(t, 1 * w2, c1)
        vstore(t, 1 * w2 + WIDTH, d1)
        vstore(t, 2 * w2, c2)
        vstore(t, 2 * w2 + WIDTH, d2)
        vstore(t, 3 * w2, c3)
        vstore(t, 3 * w2 + WIDTH, d3)
        vstore(t, 4 * w2, c4)
        vstore(t, 4 * w2 + WIDTH, d4)
        vstore(t, 5 * w2, c5)
        vstore(t, 5 * w2 + WIDTH, d5)
        vstore(t, 6 * w2, c6)
        vstore(t, 6 * w2 + WIDTH, d6)
        vstore(t, 7 * w2, c7)
        vstore(t, 7 * w2 + WIDTH, d7)


@kernel()
def conv_direct_6x16_tile(
    a, xf, i0, offs, K, t, of, o0, S, m0, whole, bias, act, alpha, beta, scale, shift, res
):  # pragma: no cover
    """``conv_direct_6x32_tile`` with one slot (AVX2: one vector is two registers)."""
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    for k in range(K):
        b = vload(xf, i0 + offs[k])
        j = k * gemm.MR
        c0 = vfma(c0, b, a[j])
        c1 = vfma(c1, b, a[j + 1])
        c2 = vfma(c2, b, a[j + 2])
        c3 = vfma(c3, b, a[j + 3])
        c4 = vfma(c4, b, a[j + 4])
        c5 = vfma(c5, b, a[j + 5])
    if whole:
        _store_vector(of, o0, c0, m0, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + S, c1, m0 + 1, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 2 * S, c2, m0 + 2, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 3 * S, c3, m0 + 3, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 4 * S, c4, m0 + 4, bias, act, alpha, beta, scale, shift, res)
        _store_vector(of, o0 + 5 * S, c5, m0 + 5, bias, act, alpha, beta, scale, shift, res)
    else:
        vstore(t, 0 * WIDTH, c0)
        vstore(t, 1 * WIDTH, c1)
        vstore(t, 2 * WIDTH, c2)
        vstore(t, 3 * WIDTH, c3)
        vstore(t, 4 * WIDTH, c4)
        vstore(t, 5 * WIDTH, c5)


@kernel(inline="always")
def _slot_pieces(
    t, i, of, o_m, oh, ow, oh_, ow_, wq, grid, mode, res, bias, act, alpha, beta, sc, sf
):  # pragma: no cover
    """A slot's lanes t[i : i + 16] (first output (oh, ow)) in pieces along the output
    rows, o_m the channel's plane in of: mode 0 gathers the residual's values into t,
    1 copies t out (both a masked vector a piece), 2 copies t + bias + residual out and
    activates, 3 copies t out and activates with the bias. A row slot (``grid`` false)
    stops at its row's end."""
    lane = 0
    while lane < WIDTH and oh < oh_:
        if ow >= ow_:  # the lanes past the row's end, to the next row
            if not grid:
                break
            lane += wq - ow
            oh += 1
            ow = 0
            continue
        count = min(WIDTH - lane, ow_ - ow)
        o = o_m + oh * ow_ + ow
        if mode == 0:
            vstore(t, i, vload_lanes(res, o - lane, vload(t, i), lane, lane + count))
        elif mode == 1:
            vstore_lanes(of, o - lane, vload(t, i), lane, lane + count)
        elif mode == 2:
            for u in range(count):
                of[o + u] = (t[i + lane + u] + bias) + res[o + u]
            activate(of[o : o + count], count, np.float32(0.0), act, alpha, beta, sc, sf)
        else:
            for u in range(count):
                of[o + u] = t[i + lane + u]
            if mode == 3:
                activate(of[o : o + count], count, bias, act, alpha, beta, sc, sf)
        lane += count
        ow += count


@kernel(inline="always")
def _store_slots(
    t,
    width,
    mr,
    of,
    on,
    S,
    m0,
    rows,
    oh0,
    ow0,
    oh1,
    ow1,
    nslots,
    oh_,
    ow_,
    wq,
    grid,
    vector_act,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
    res,
):  # pragma: no cover
    """A tile t (mr, width) of ``rows`` channels from m0, its first ``nslots`` slots
    (first outputs (oh0, ow0), (oh1, ow1)) into the image's outputs of at on + m*S
    (``_slot_pieces``): the vector epilogue on whole vectors (as ``conv_direct_*_tile``
    stores from registers), other activations by ``activate`` on the stored values.
    ``res`` (flat as of, or none): a residual, for the vector epilogue a slot's pieces
    gathered into the tile buffer's spare row first."""
    has_res = res.shape[0] > 0
    spare = mr * width
    for r in range(rows):
        m = m0 + r
        b, sc, sf = bias[m], scale[m], shift[m]
        o_m = on + m * S
        for v in range(nslots):
            i = r * width + v * WIDTH
            oh, ow = (oh0, ow0) if v == 0 else (oh1, ow1)
            if vector_act:
                if has_res:
                    vstore(t, spare, vzero())
                    _slot_pieces(t, spare, of, o_m, oh, ow, oh_, ow_, wq, grid, 0, res, b, act,
                                 alpha, beta, sc, sf)  # fmt: skip
                    c = gemm.epilogue_vector_res(vload(t, i), vload(t, spare), b, act, alpha,
                                                 beta, sc, sf)  # fmt: skip
                else:
                    c = gemm.epilogue_vector(vload(t, i), b, act, alpha, beta, sc, sf)
                vstore(t, i, c)
                mode = 1
            else:
                mode = 2 if has_res else 3
            _slot_pieces(t, i, of, o_m, oh, ow, oh_, ow_, wq, grid, mode, res, b, act, alpha,
                         beta, sc, sf)  # fmt: skip


@kernel(inline="always")
def _slot_output(s, srow, slots, wq):  # pragma: no cover
    """Slot s's first output (oh, ow): row slots srow to a row; grid slots (srow ==
    slots) at plane position 16 s, rows wq apart."""
    if srow == slots:
        return (WIDTH * s) // wq, (WIDTH * s) % wq
    return s // srow, (s % srow) * WIDTH


@kernel(inline="always")
def _next_slot(oh, ow, srow, slots, wq):  # pragma: no cover
    """``_slot_output`` of the slot after the one at (oh, ow), without dividing: the
    direct kernel steps through a run's tiles once per row block, and at a stem's few
    taps the divisions cost as much as a tile's products."""
    ow += WIDTH
    if srow == slots:
        while ow >= wq:
            ow -= wq
            oh += 1
        return oh, ow
    if ow >= srow * WIDTH:
        return oh + 1, 0
    return oh, ow


@kernel(parallel=True)
def _conv_nchw_direct_gemm(
    qf,
    C,
    P,
    hq,
    wq,
    rowstep,
    ap,
    offs,
    out,
    Mg,
    chunk,
    run,
    srow,
    slots,
    oh_,
    ow_,
    width,
    tiles,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
    res,
):  # pragma: no cover
    """out (N, M, OH*OW) = the conv of the phase planes qf (flat: N, C, P phases, hq,
    wq; ``_pad_phases``) by the packed weights ap (G, M/G blocks, K, mr), with the
    epilogue. ``slots`` slots an image (``_slot_output``); a tile ``width // 16``
    consecutive ones; jobs (image, group, a run of ``run`` tiles, a chunk of row
    blocks), each block over the run's tiles in turn. Tap k of a group's K reads qf at
    a slot's position (oh * rowstep + ow) + offs[k]."""
    G, mb, K, mr = ap.shape
    N, M, S = out.shape
    per = width // WIDTH
    T = (slots + per - 1) // per
    R = (T + run - 1) // run
    chunks = (mb + chunk - 1) // chunk
    cg = C // G
    of = out.reshape(-1)
    vector_act = gemm.vector_act(act, alpha)  # gemm.VECTOR_ACTS (LeakyRelu: its slope)
    for job in prange(N * G * R * chunks):
        c = job % chunks
        r = (job // chunks) % R
        g = (job // (chunks * R)) % G
        n = job // (chunks * R * G)
        t = tiles[numba.get_thread_id()]
        base = (n * C + g * cg) * P * hq * wq
        b0, t0 = c * chunk, r * run
        nt = min(T, t0 + run) - t0
        for b in range(b0, min(mb, b0 + chunk)):  # block by block over the run
            m0 = g * Mg + b * mr
            rows = min(mr, Mg - b * mr)
            a = ap[g, b].reshape(-1)
            oh0, ow0 = _slot_output(t0 * per, srow, slots, wq)
            for tt in range(t0, t0 + nt):
                s0 = tt * per
                nslots = min(per, slots - s0)
                oh1, ow1 = oh0, ow0  # one slot: itself again
                if nslots > 1:
                    oh1, ow1 = _next_slot(oh0, ow0, srow, slots, wq)
                i0 = base + oh0 * rowstep + ow0
                i1 = base + oh1 * rowstep + ow1
                # whole: every slot 16 outputs of one row, stored from the registers
                full = nslots == per and ow0 + WIDTH <= ow_ and (per == 1 or ow1 + WIDTH <= ow_)
                o0 = (n * M + m0) * S + oh0 * ow_ + ow0
                o1 = (n * M + m0) * S + oh1 * ow_ + ow1
                whole = vector_act and full and rows == mr
                if per == 2 and mr == 8:
                    conv_direct_8x32_tile(a, qf, i0, i1, offs, K, t, of, o0, o1, S,
                                          m0, whole, bias, act, alpha, beta, scale, shift,
                                          res)  # fmt: skip
                elif per == 2:
                    conv_direct_6x32_tile(a, qf, i0, i1, offs, K, t, of, o0, o1, S,
                                          m0, whole, bias, act, alpha, beta, scale, shift,
                                          res)  # fmt: skip
                else:
                    conv_direct_6x16_tile(a, qf, i0, offs, K, t, of, o0, S, m0, whole, bias,
                                          act, alpha, beta, scale, shift, res)  # fmt: skip
                if not whole:
                    _store_slots(t, width, mr, of, n * M * S, S, m0, rows, oh0, ow0, oh1, ow1,
                                 nslots, oh_, ow_, wq, srow == slots,
                                 vector_act, bias, act, alpha, beta, scale, shift,
                                 res)  # fmt: skip
                oh0, ow0 = _next_slot(oh1, ow1, srow, slots, wq)


def direct_rows(rows: int, width: int) -> int:
    """Output channels a tile of the direct kernel (its row block): 8 with two slots a
    tile (AVX-512; AVX2's 16 registers hold 6 rows of one slot) unless 6 wastes fewer
    rows on the group's ``rows``."""
    if width != 2 * WIDTH:
        return MR
    return 8 if -(-rows // 8) * 8 <= -(-rows // MR) * MR else MR


def pack_direct(w: np.ndarray, group: int, mr: int) -> np.ndarray:
    """w (M, C/G, KH, KW) -> (G, ceil(M/G / mr), C/G*KH*KW, mr) float32: the direct
    kernel's row blocks of mr output channels (zeros past M/G), tap k's mr weights
    in a row."""
    m = w.shape[0]
    a = w.reshape(group, m // group, -1)
    g, rows, k = a.shape
    blocks = np.zeros((g, -(-rows // mr) * mr, k), np.float32)
    blocks[:, :rows] = a
    return np.ascontiguousarray(blocks.reshape(g, -1, mr, k).transpose(0, 1, 3, 2))


def direct_layout(
    out_sp: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    width: int,
) -> tuple[int, int, int, int, int, int]:
    """(r, hq, wq, rowstep, srow, slots): the phase planes' rows split by r (hq rows of
    wq), an output row's step in them, and the slots an image. Row slots (r = 1: the
    planes keep every row, an output row sh rows on) where the output rows are 12 wide
    or more and they take no more tiles than grid slots; else grid slots (r = sh:
    each output row one plane row on, so that positions run on across rows)."""
    (oh, ow), (kh, kw), (sh, sw), (dh, dw) = out_sp, kernel, strides, dilations
    wq = ow + (kw - 1) * dw // sw
    per = width // WIDTH
    srow = -(-ow // WIDTH)
    row_slots = oh * srow
    grid_slots = -(-((oh - 1) * wq + ow) // WIDTH)
    if ow >= 12 and -(-row_slots // per) <= -(-grid_slots // per):
        return 1, (oh - 1) * sh + (kh - 1) * dh + 1, wq, sh * wq, srow, row_slots
    return sh, oh + (kh - 1) * dh // sh, wq, wq, grid_slots, grid_slots


def direct_lanes(x_shape: tuple[int, ...], out_sp, kernel, strides, dilations, width: int) -> int:
    """The lanes a direct conv's tiles compute over the batch (tiles x width)."""
    slots = direct_layout(out_sp, kernel, strides, dilations, width)[5]
    return x_shape[0] * -(-slots // (width // WIDTH)) * width


class ConvDirect:
    """A 2-D conv as ``_conv_nchw_direct_gemm``, laid out once for one input shape:
    x (N, C, H, W) -> out (N, M, OH, OW) float32; ``packed``: ``pack_direct`` of the
    weights (row blocks of ``direct_rows``); ``pads`` the begin pads (top, left)."""

    def __init__(
        self,
        x_shape: tuple[int, ...],
        w_shape: tuple[int, ...],
        packed: np.ndarray,
        bias: np.ndarray,
        group: int,
        *,
        strides: tuple[int, int],
        pads: tuple[int, int],
        dilations: tuple[int, int],
        out_sp: tuple[int, int],
        epilogue: tuple,
    ) -> None:
        n, c, _, w = x_shape
        m, cg, kh, kw = w_shape
        (_, sw), (_, pl), (dh, dw) = strides, pads, dilations
        self.x_shape, self.wp, self.bias, self.group = tuple(x_shape), packed, bias, group
        self.rows, self.out_sp, self.epilogue = m // group, tuple(out_sp), epilogue
        self.width = gemm.nr()
        r, hq, wq, self.rowstep, self.srow, self.slots = direct_layout(
            out_sp, (kh, kw), strides, dilations, self.width
        )
        # only the phases some tap reads (a 1x1 at stride 2: one of four)
        prow = np.unique(np.arange(kh) * dh % r)
        pcol = np.unique(np.arange(kw) * dw % sw)
        phases = len(prow) * len(pcol)
        self.phases = (r, sw, hq, wq, *pads, prow.astype(np.int64), pcol.astype(np.int64))
        self.planes = (c, phases, hq, wq, self.rowstep)
        ci, a, e = np.ix_(np.arange(cg), np.arange(kh), np.arange(kw))
        phase = np.searchsorted(prow, a * dh % r) * len(pcol) + np.searchsorted(pcol, e * dw % sw)
        offs = ((ci * phases + phase) * hq + a * dh // r) * wq + e * dw // sw  # tap (c, a, e)
        self.offs = np.ascontiguousarray(offs.reshape(-1), np.int64)
        # phase column q's j reads x's column j*sw + q - pl: inside for j in [lo, hi)
        self.lo = np.clip(-((pcol - pl) // sw), 0, wq).astype(np.int64)
        self.hi = np.maximum(np.clip(-((pcol - pl - w) // sw), 0, wq), self.lo).astype(np.int64)
        self.size = n * c * phases * hq * wq
        # a tile's lanes past the plane read on: the last group's last slot + its reach
        per = self.width // WIDTH
        oh, ow = _slot_output(-(-self.slots // per) * per - 1, self.srow, self.slots, wq)
        last = oh * self.rowstep + ow
        self.reach = ((n * c - cg) * phases * hq * wq) + last + WIDTH + int(self.offs.max())
        self.q_shape = (max(self.size, self.reach),)

    def __call__(self, x: np.ndarray, out: np.ndarray, res: np.ndarray = gemm.NO_RESIDUAL) -> None:
        """``res``: a residual shaped as out, flat, added before the activation (or none)."""
        n, m = self.x_shape[0], self.wp.shape[0] * self.rows
        qf = scratch("conv.phases", self.q_shape, np.float32)
        qf[self.size :] = 0.0  # lanes past the planes: zeros, no denormal garbage
        _pad_phases(np.ascontiguousarray(x).reshape(self.x_shape), qf, *self.phases, self.lo,
                    self.hi)  # fmt: skip
        threads = numba.get_num_threads()
        width = self.width
        mr = self.wp.shape[3]
        tiles = scratch("conv.direct_tiles", (threads, (mr + 1) * width), np.float32)
        plane = self.out_sp[0] * self.out_sp[1]
        run, runs = self.runs(threads)
        chunk = gemm.job_rows(n * self.group, self.wp.shape[1], runs, threads)
        _conv_nchw_direct_gemm(
            qf, *self.planes, self.wp, self.offs, out.reshape(n, m, plane), self.rows, chunk,
            run, self.srow, self.slots, *self.out_sp, width, tiles, self.bias, *self.epilogue,
            res,
        )  # fmt: skip

    def runs(self, threads: int) -> tuple[int, int]:
        """(tiles a job, runs of them an image): the input vectors of a run at most
        ``DIRECT_RUN_FLOATS``, and runs enough that each thread gets jobs."""
        n, taps = self.x_shape[0] * self.group, self.wp.shape[2]
        tiles = -(-self.slots // (self.width // WIDTH))
        want = -(-gemm.GEMM_JOBS_PER_THREAD * threads // n)  # runs an image
        run = max(1, min(DIRECT_RUN_FLOATS // (taps * self.width), -(-tiles // want)))
        return run, -(-tiles // run)


class ConvGathered:
    """A 1x1 conv that is not pointwise (strided or padded) as the taps it reads
    gathered into planes, then the pointwise GEMM on them: ``_pad_phases`` with one
    phase writes g (N, C, OH, OW) [n, c, i, j] = x[n, c, i*sh - pt, j*sw - pl] (0
    outside x), and ``ConvGemm.pointwise_gemm`` multiplies. The direct kernel would
    read the same phase plane in place, but at a 1x1's few taps its tiles' stores
    and edges cost more than the GEMM's packing. ``packed``: ``pack_weights`` of the
    weights as (M, C/G, 1, 1, 1); ``pads`` the begin pads (top, left)."""

    def __init__(
        self,
        x_shape: tuple[int, ...],
        w_shape: tuple[int, ...],
        packed: np.ndarray,
        bias: np.ndarray,
        group: int,
        *,
        strides: tuple[int, int],
        pads: tuple[int, int],
        out_sp: tuple[int, int],
        epilogue: tuple,
        panel_width: int | None = None,
    ) -> None:
        n, c, _, w = x_shape
        (oh, ow), (sh, sw), (pt, pl) = out_sp, strides, pads
        self.x_shape, self.g_shape = tuple(x_shape), (n, c, oh, ow)
        zero = np.zeros(1, np.int64)  # the one phase: row 0, column 0
        # gathered column j reads x's column j*sw - pl: inside for j in [lo, hi)
        lo = np.clip(-((zero - pl) // sw), 0, ow)
        hi = np.maximum(np.clip(-((zero - pl - w) // sw), 0, ow), lo)
        self.phases = (sh, sw, oh, ow, pt, pl, zero, zero, lo, hi)
        self.gemm = ConvGemm(
            (n, c, 1, oh, ow), (w_shape[0], w_shape[1], 1, 1, 1), packed, bias, group,
            strides=(1, 1, 1), pads=(0, 0, 0), dilations=(1, 1, 1), out_sp=(1, oh, ow),
            epilogue=epilogue, panel_width=panel_width,
        )  # fmt: skip

    def __call__(self, x: np.ndarray, out: np.ndarray, res: np.ndarray = gemm.NO_RESIDUAL) -> None:
        """``res``: a residual shaped as out, flat, added before the activation (or none)."""
        g = scratch("conv.gathered", self.g_shape, np.float32)
        _pad_phases(np.ascontiguousarray(x).reshape(self.x_shape), g.reshape(-1), *self.phases)
        self.gemm.pointwise_gemm(g, out, res)


# --------------------------------------------------------------------------- pixels GEMM
#
# A conv with the output channels in the vectors: out^T = cols^T @ W^T. A tile is
# PIXELS output positions by NR output channels: each tap broadcasts the PIXELS
# positions' input values, read in place from the direct kernel's phase planes
# (``_pad_phases``: position oh * rowstep + ow plus the tap's offset), against a row
# of W^T (NR channels, packed once per plan). No columns are packed, and a small
# plane wastes no lanes past its end: a 7x7 output at M = 128 computes 56 x 128 lane
# products a tap, where the direct kernel's grid slots compute 64 x 128 and im2col's
# panels 64 x 132 (a 4x4 plane: 16 x 128 against 32 x 128 and 32 x 132).

PIXELS = 8  # output positions a tile of ``conv_pixels_8x32_tile``


@kernel()
def conv_pixels_8x32_tile(qf, p0, p1, p2, p3, p4, p5, p6, p7, offs, w, K, t):  # pragma: no cover
    """t (8, 32) = 8 output positions by 32 output channels: the sum over taps k of
    qf[p_r + offs[k]] (position r's input value) times w[32 k : 32 k + 32] (W^T's row
    k), a fused multiply-add a tap in k's order, as the GEMM's tiles sum. Unsigned
    indices: numba's check for a negative one cost 1.26x at K = 576 (the positions and
    offsets are never negative)."""
    c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = d6 = d7 = vzero()
    for k in range(K):
        b = vload(w, 2 * k * WIDTH)
        e = vload(w, (2 * k + 1) * WIDTH)
        off = offs[k]
        s = qf[np.uint64(p0 + off)]
        c0 = vfma(c0, b, s)
        d0 = vfma(d0, e, s)
        s = qf[np.uint64(p1 + off)]
        c1 = vfma(c1, b, s)
        d1 = vfma(d1, e, s)
        s = qf[np.uint64(p2 + off)]
        c2 = vfma(c2, b, s)
        d2 = vfma(d2, e, s)
        s = qf[np.uint64(p3 + off)]
        c3 = vfma(c3, b, s)
        d3 = vfma(d3, e, s)
        s = qf[np.uint64(p4 + off)]
        c4 = vfma(c4, b, s)
        d4 = vfma(d4, e, s)
        s = qf[np.uint64(p5 + off)]
        c5 = vfma(c5, b, s)
        d5 = vfma(d5, e, s)
        s = qf[np.uint64(p6 + off)]
        c6 = vfma(c6, b, s)
        d6 = vfma(d6, e, s)
        s = qf[np.uint64(p7 + off)]
        c7 = vfma(c7, b, s)
        d7 = vfma(d7, e, s)
    w2 = 2 * WIDTH
    vstore(t, 0 * w2, c0)
    vstore(t, 0 * w2 + WIDTH, d0)
    vstore(t, 1 * w2, c1)
    vstore(t, 1 * w2 + WIDTH, d1)
    vstore(t, 2 * w2, c2)
    vstore(t, 2 * w2 + WIDTH, d2)
    vstore(t, 3 * w2, c3)
    vstore(t, 3 * w2 + WIDTH, d3)
    vstore(t, 4 * w2, c4)
    vstore(t, 4 * w2 + WIDTH, d4)
    vstore(t, 5 * w2, c5)
    vstore(t, 5 * w2 + WIDTH, d5)
    vstore(t, 6 * w2, c6)
    vstore(t, 6 * w2 + WIDTH, d6)
    vstore(t, 7 * w2, c7)
    vstore(t, 7 * w2 + WIDTH, d7)


@kernel(inline="always")
def _next_pixel(p, ow, ow_, jump, live):  # pragma: no cover
    """(position, ow) of the output after the one at (p, ow): one on along the row, or
    ``jump`` more at its end (no division); the same once past the plane (``live``
    false: the tile's lanes past the plane read a real value, never stored)."""
    if not live:
        return p, ow
    if ow + 1 == ow_:
        return p + 1 + jump, 0
    return p + 1, ow + 1


@kernel(inline="always")
def _store_pixels(
    t, NR, npx, of, o, S, nm, m0, in_vectors, bias, act, alpha, beta, scale, shift
):  # pragma: no cover
    """A tile t (PIXELS, NR): its first npx positions (of one image, from of[o] on) by
    channels m0 .. m0 + nm (planes S apart) through the epilogue, channels a vector
    (with an activation of ``gemm.VECTOR_ACTS``, as Winograd's channel vectors: bias,
    scale and shift loaded masked; else ``activate_channels``), then transposed in
    registers into the planes."""
    if in_vectors:
        for v in range(0, nm, WIDTH):
            nv = min(WIDTH, nm - v)
            bv = vload_first(bias, m0 + v, nv)
            sv, fv = vload_first(scale, m0 + v, nv), vload_first(shift, m0 + v, nv)
            for r in range(npx):
                c = vadd(vload(t, r * NR + v), bv)
                c = gemm.activate_vector(c, act, alpha, beta, 1.0, 0.0)
                vstore(t, r * NR + v, vfmav(fv, c, sv))
    else:
        activate_channels(t, npx, NR, nm, bias[m0:], act, alpha, beta, scale[m0:], shift[m0:])
    for v in range(0, nm, WIDTH):
        transpose(t, v, NR, npx, WIDTH, of, o + v * S, S, min(WIDTH, nm - v), npx)


@kernel(parallel=True)
def _conv_nchw_pixels_gemm(
    qf,
    C,
    P,
    hq,
    wq,
    rowstep,
    wp,
    offs,
    out,
    Mg,
    per_job,
    oh_,
    ow_,
    tiles,
    bias,
    act,
    alpha,
    beta,
    scale,
    shift,
):  # pragma: no cover
    """out (N, M, OH*OW) = the conv of the phase planes qf (flat: N, C, P phases, hq,
    wq; ``_pad_phases``) by W^T packed as wp (G, ceil(M/G / NR), K, NR)
    (``gemm.pack_b``), with the epilogue. Tap k of a group's K reads qf at an output's
    position (oh * rowstep + ow) + offs[k]. Jobs (image, group, a run of ``per_job``
    tiles of PIXELS positions): each block of NR channels over the run's tiles in turn
    (``conv_pixels_8x32_tile``, stored by ``_store_pixels``)."""
    G, Pm, K, NR = wp.shape
    N, M, S = out.shape
    B = (S + PIXELS - 1) // PIXELS
    J = (B + per_job - 1) // per_job
    cg = C // G
    jump = rowstep - ow_
    of = out.reshape(-1)
    in_vectors = gemm.vector_act(act, alpha)  # gemm.VECTOR_ACTS (LeakyRelu: its slope)
    for job in prange(N * G * J):
        j = job % J
        g = (job // J) % G
        n = job // (J * G)
        t = tiles[numba.get_thread_id()]
        base = (n * C + g * cg) * P * hq * wq
        b0 = j * per_job
        b1 = min(B, b0 + per_job)
        s_first = b0 * PIXELS
        oh_first = s_first // ow_
        ow_first = s_first - oh_first * ow_
        for q in range(Pm):
            m0 = g * Mg + q * NR
            nm = min(NR, Mg - q * NR)
            wb = wp[g, q].reshape(-1)
            p0 = base + oh_first * rowstep + ow_first
            ow = ow_first
            for bb in range(b0, b1):
                s0 = bb * PIXELS
                npx = min(PIXELS, S - s0)
                p1, ow = _next_pixel(p0, ow, ow_, jump, npx > 1)
                p2, ow = _next_pixel(p1, ow, ow_, jump, npx > 2)
                p3, ow = _next_pixel(p2, ow, ow_, jump, npx > 3)
                p4, ow = _next_pixel(p3, ow, ow_, jump, npx > 4)
                p5, ow = _next_pixel(p4, ow, ow_, jump, npx > 5)
                p6, ow = _next_pixel(p5, ow, ow_, jump, npx > 6)
                p7, ow = _next_pixel(p6, ow, ow_, jump, npx > 7)
                conv_pixels_8x32_tile(qf, p0, p1, p2, p3, p4, p5, p6, p7, offs, wb, K, t)
                _store_pixels(t, NR, npx, of, (n * M + m0) * S + s0, S, nm, m0, in_vectors,
                              bias, act, alpha, beta, scale, shift)  # fmt: skip
                p0, ow = _next_pixel(p7, ow, ow_, jump, True)


class ConvPixels:
    """A 2-D conv as ``_conv_nchw_pixels_gemm`` (AVX-512's pairs of vectors, 32
    channels), laid out once for one input shape: x (N, C, H, W) -> out (N, M, OH, OW)
    float32; ``w`` (M, C/G, KH, KW); the phase planes as ``ConvDirect`` lays them out;
    ``pads`` the begin pads (top, left); ``epilogue``: (act, alpha, beta, scale,
    shift)."""

    def __init__(
        self,
        x_shape: tuple[int, ...],
        w: np.ndarray,
        bias: np.ndarray,
        group: int,
        *,
        strides: tuple[int, int],
        pads: tuple[int, int],
        dilations: tuple[int, int],
        out_sp: tuple[int, int],
        epilogue: tuple,
    ) -> None:
        m = w.shape[0]
        self.rows, self.width = m // group, 2 * WIDTH
        k = int(np.prod(w.shape[1:]))
        wt = w.reshape(group, self.rows, k).transpose(0, 2, 1)
        self.wp = gemm.pack_b(np.ascontiguousarray(wt), self.width)  # once per plan
        self.layout = ConvDirect(
            x_shape, w.shape, self.wp, bias, group, strides=strides, pads=pads,
            dilations=dilations, out_sp=out_sp, epilogue=epilogue,
        )  # fmt: skip
        self.x_shape, self.bias, self.epilogue = tuple(x_shape), bias, epilogue
        self.out_sp, self.group = tuple(out_sp), group
        self.q_shape = self.layout.q_shape

    def __call__(self, x: np.ndarray, out: np.ndarray) -> None:
        d = self.layout
        n, m = self.x_shape[0], self.wp.shape[0] * self.rows
        qf = scratch("conv.phases", self.q_shape, np.float32)
        qf[d.size :] = 0.0
        _pad_phases(np.ascontiguousarray(x).reshape(self.x_shape), qf, *d.phases, d.lo, d.hi)
        threads = numba.get_num_threads()
        tiles = scratch("conv.pixel_tiles", (threads, PIXELS * self.width), np.float32)
        plane = self.out_sp[0] * self.out_sp[1]
        blocks = -(-plane // PIXELS)
        # runs enough that each thread gets jobs (on one thread: a job an image and group)
        want = 1 if threads == 1 else -(-gemm.GEMM_JOBS_PER_THREAD * threads // (n * self.group))
        per_job = -(-blocks // min(blocks, want))
        _conv_nchw_pixels_gemm(
            qf, *d.planes, self.wp, d.offs, out.reshape(n, m, plane), self.rows, per_job,
            *self.out_sp, tiles, self.bias, *self.epilogue,
        )  # fmt: skip


if numba.config.DISABLE_JIT:
    # Plain Python runs the direct tiles as NumPy sums over the gathered vectors, as
    # ``gemm`` does its micro-kernels (the vector loop, interpreted, takes minutes).

    def _direct_tile(a, xf, bases, offs, K, t, of, outs, S, m0, whole, epilogue, mr=MR):
        width = len(bases) * WIDTH
        tile = t[: mr * width].reshape(mr, width)
        lanes = np.arange(WIDTH)
        for v, i in enumerate(bases):
            b = xf[i + offs[:K, None] + lanes]  # (K, 16)
            np.einsum("km,kn->mn", a[: K * mr].reshape(K, mr), b, optimize=False,
                      out=tile[:, v * WIDTH : (v + 1) * WIDTH])  # fmt: skip
        if whole:
            for r in range(mr):
                for v, o in enumerate(outs):
                    _store_vector(of, o + r * S, tile[r, v * WIDTH : (v + 1) * WIDTH], m0 + r,
                                  *epilogue)  # fmt: skip

    def conv_direct_6x32_tile(
        a,
        xf,
        i0,
        i1,
        offs,
        K,
        t,
        of,
        o0,
        o1,
        S,
        m0,
        whole,
        bias,
        act,
        alpha,
        beta,
        scale,
        shift,
        res,
    ):
        _direct_tile(a, xf, (i0, i1), offs, K, t, of, (o0, o1), S, m0, whole,
                     (bias, act, alpha, beta, scale, shift, res))  # fmt: skip

    def conv_direct_6x16_tile(
        a, xf, i0, offs, K, t, of, o0, S, m0, whole, bias, act, alpha, beta, scale, shift, res
    ):
        _direct_tile(a, xf, (i0,), offs, K, t, of, (o0,), S, m0, whole,
                     (bias, act, alpha, beta, scale, shift, res))  # fmt: skip

    def conv_direct_8x32_tile(
        a,
        xf,
        i0,
        i1,
        offs,
        K,
        t,
        of,
        o0,
        o1,
        S,
        m0,
        whole,
        bias,
        act,
        alpha,
        beta,
        scale,
        shift,
        res,
    ):
        _direct_tile(a, xf, (i0, i1), offs, K, t, of, (o0, o1), S, m0, whole,
                     (bias, act, alpha, beta, scale, shift, res), 8)  # fmt: skip

    def conv_pixels_8x32_tile(qf, p0, p1, p2, p3, p4, p5, p6, p7, offs, w, K, t):
        values = qf[np.array([p0, p1, p2, p3, p4, p5, p6, p7]) + offs[:K, None]]  # (K, 8)
        width = 2 * WIDTH
        np.einsum("kr,kn->rn", values, w[: K * width].reshape(K, width), optimize=False,
                  out=t[: PIXELS * width].reshape(PIXELS, width))  # fmt: skip
