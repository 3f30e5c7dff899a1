"""Convolution as im2col + one batched GEMM per chunk of images, then a fused epilogue.

Shapes are normalised to 3-D spatial (1-D and 2-D convolutions have D=1, H=1).

``_im2col``: x (N, C, D, H, W) -> cols (C*KD*KH*KW, nb*OD*OH*OW) for images n0..n0+nb,
written straight in the GEMM's packed layout of B (``gemm.pack_b``).
Row r = ((c*KD + a)*KH + b)*KW + e holds, for every output position, the input tap

    x[n, c, od*sd - pd + a*dd, oh*sh - ph + b*dh, ow*sw - pw + e*dw]   (0 outside)

Each prange iteration fills one row: disjoint elements.

The GEMM is the engine's own (``kernels/gemm``: every output channel computed by the
same arithmetic) on the grouped views, (G, M/G, C/G*K) @ (G, C/G*K, cols), with the
weights packed once per plan (``pack_weights``).

``_epilogue``: y (M, nb, S) -> out (nb, M, S) with, per output channel m,

    out = act(y + bias[m]) * scale[m] + shift[m]

act: ``kernels/activation.ACTIVATIONS``. The scale/shift pair is a BatchNormalization
that follows the activation, applied in the same pass.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from runtime.config import IM2COL_CHUNK_FLOATS
from runtime.kernels import gemm
from runtime.kernels.activation import activate
from runtime.kernels.jit import kernel
from runtime.memory import scratch


@kernel(parallel=True)
def _im2col(
    x, bp, n0, nb, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, od_, oh_, ow_
):  # pragma: no cover
    """The columns straight into the GEMM's packed B, bp (G, ceil(cols/NR), Kg, NR)
    (``gemm.pack_b``'s layout, Kg = C/G*KD*KH*KW): row r, column col at
    bp[r // Kg, col // NR, r % Kg, col % NR]."""
    _, C, D, H, W = x.shape
    Kg, NR = bp.shape[2], bp.shape[3]
    rows = C * kd * kh * kw
    plane = od_ * oh_ * ow_
    for r in prange(rows):
        e = r % kw
        b = (r // kw) % kh
        a = (r // (kw * kh)) % kd
        c = r // (kw * kh * kd)
        dst = bp[r // Kg]
        rr = r % Kg
        # output columns ow in [lo, hi) read inside the row: 0 <= ow*sw - pw + e*dw < W
        lo = min(ow_, max(0, (pw - e * dw + sw - 1) // sw))
        hi = max(lo, min(ow_, (W - 1 + pw - e * dw) // sw + 1))
        first = lo * sw - pw + e * dw
        for i in range(nb):
            n = n0 + i
            for od in range(od_):
                z = od * sd - pd + a * dd
                for oh in range(oh_):
                    y = oh * sh - ph + b * dh
                    col = i * plane + (od * oh_ + oh) * ow_
                    p, j = col // NR, col % NR
                    inside = z >= 0 and z < D and y >= 0 and y < H
                    line = x[n, c, max(0, min(z, D - 1)), max(0, min(y, H - 1))]
                    for ow in range(ow_):
                        v = np.float32(0.0)
                        if inside and ow >= lo and ow < hi:
                            v = line[first + (ow - lo) * sw]
                        dst[p, rr, j] = v
                        j += 1
                        if j == NR:
                            j = 0
                            p += 1
        last = bp.shape[1] - 1  # columns past the last one: zeros (never stored)
        for j in range(nb * plane - last * NR, NR):
            dst[last, rr, j] = 0.0


@kernel(parallel=True)
def _epilogue(y, out, n0, bias, act, alpha, scale, shift):  # pragma: no cover
    M, nb, S = y.shape
    for job in prange(nb * M):
        i = job // M
        m = job % M
        dst = out[n0 + i, m]
        dst[:] = y[m, i]
        activate(dst, S, bias[m], act, alpha, scale[m], shift[m])


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
    for n0 in range(0, N, nb_max):
        nb = min(nb_max, N - n0)
        width = gemm.nr()
        bp = scratch("conv.cols", (group, gemm.blocks(nb * plane, width), k, width), np.float32)
        _im2col(x, bp, n0, nb, kd, kh, kw, *strides, *pads, *dilations, od_, oh_, ow_)
        y = scratch("conv.gemm", (group, M // group, nb * plane), np.float32)
        gemm.gemm_packed(wp, bp, y, M // group, nb * plane)  # (G, M/G, nb*S)
        _epilogue(y.reshape(M, nb, plane), out3, n0, bias, act, np.float32(alpha), scale, shift)
    return out
