"""Convolution as im2col + one batched GEMM per chunk of images, then a fused epilogue.

Shapes are normalised to 3-D spatial (1-D and 2-D convolutions have D=1, H=1).

``_im2col``: x (N, C, D, H, W) -> cols (C*KD*KH*KW, nb*OD*OH*OW) for images n0..n0+nb.
Row r = ((c*KD + a)*KH + b)*KW + e holds, for every output position, the input tap

    x[n, c, od*sd - pd + a*dd, oh*sh - ph + b*dh, ow*sw - pw + e*dw]   (0 outside)

Each prange iteration fills one row: disjoint slices.

The GEMM is numpy's (BLAS, split over the cores by ``kernels/gemm``) on the grouped
views: (G, M/G, C/G*K) @ (G, C/G*K, cols).

``_epilogue``: y (M, nb, S) -> out (nb, M, S) with, per output channel m,

    out = act(y + bias[m]) * scale[m] + shift[m]

act: 0 none, 1 relu, 2 leaky relu (alpha), 3 tanh, 4 sigmoid. The scale/shift pair is
a BatchNormalization that follows the activation, applied in the same pass.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from runtime.kernels.gemm import matmul
from runtime.kernels.jit import kernel
from runtime.memory import scratch

ACTIVATIONS = {None: 0, "Relu": 1, "LeakyRelu": 2, "Tanh": 3, "Sigmoid": 4}


@kernel(parallel=True)
def _im2col(
    x, cols, n0, nb, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, od_, oh_, ow_
):  # pragma: no cover
    _, C, D, H, W = x.shape
    rows = C * kd * kh * kw
    plane = od_ * oh_ * ow_
    for r in prange(rows):
        e = r % kw
        b = (r // kw) % kh
        a = (r // (kw * kh)) % kd
        c = r // (kw * kh * kd)
        for i in range(nb):
            n = n0 + i
            col0 = i * plane
            for od in range(od_):
                z = od * sd - pd + a * dd
                for oh in range(oh_):
                    y = oh * sh - ph + b * dh
                    base = col0 + (od * oh_ + oh) * ow_
                    if z < 0 or z >= D or y < 0 or y >= H:
                        for ow in range(ow_):
                            cols[r, base + ow] = 0.0
                        continue
                    for ow in range(ow_):
                        xx = ow * sw - pw + e * dw
                        if 0 <= xx < W:
                            cols[r, base + ow] = x[n, c, z, y, xx]
                        else:
                            cols[r, base + ow] = 0.0


# Tanh as a rational function (Eigen's and MLAS's float approximation): branch-free,
# so LLVM vectorises the loop; max abs error 3.4e-7 against float64 tanh.
_TANH_CLAMP = np.float32(7.90531110763549805)
_TA = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
       -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)  # fmt: skip
_TB = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)
A0, A1, A2, A3, A4, A5, A6 = (np.float32(v) for v in _TA)
B0, B1, B2, B3 = (np.float32(v) for v in _TB)


@kernel(inline="always")
def _tanh(v):  # pragma: no cover
    v = min(max(v, -_TANH_CLAMP), _TANH_CLAMP)
    v2 = v * v
    p = ((((((A6 * v2 + A5) * v2 + A4) * v2 + A3) * v2 + A2) * v2 + A1) * v2 + A0) * v
    q = ((B3 * v2 + B2) * v2 + B1) * v2 + B0
    return p / q


@kernel(inline="always")
def _sigmoid(v):  # pragma: no cover
    if v >= 0.0:
        return 1.0 / (1.0 + math.exp(-v))
    e = math.exp(v)
    return e / (1.0 + e)


@kernel(parallel=True)
def _epilogue(y, out, n0, bias, act, alpha, scale, shift):  # pragma: no cover
    M, nb, S = y.shape
    for job in prange(nb * M):
        i = job // M
        m = job % M
        bm = bias[m]
        sc = scale[m]
        sf = shift[m]
        src = y[m, i]
        dst = out[n0 + i, m]
        # One loop per activation, so that each inner loop is branch-free.
        if act == 1:
            for s in range(S):
                v = src[s] + bm
                dst[s] = (v if v > 0.0 else np.float32(0.0)) * sc + sf
        elif act == 2:
            for s in range(S):
                v = src[s] + bm
                dst[s] = (v if v >= 0.0 else v * alpha) * sc + sf
        elif act == 3:
            for s in range(S):
                dst[s] = _tanh(src[s] + bm) * sc + sf
        elif act == 4:
            for s in range(S):
                dst[s] = _sigmoid(src[s] + bm) * sc + sf
        else:
            for s in range(S):
                dst[s] = (src[s] + bm) * sc + sf


COLS_BUDGET = 1 << 25  # floats per im2col chunk (128 MiB): bounds the scratch memory


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
) -> np.ndarray:
    """x (N, C, D, H, W), w (M, C/G, KD, KH, KW) -> out (N, M, OD, OH, OW), all float32.

    ``pads`` are the begin pads; the output shape (already in ``out``) fixes the end.
    Shapes are trusted: the public op checks them.
    """
    N, C = x.shape[:2]
    M, cg, kd, kh, kw = w.shape
    od_, oh_, ow_ = out.shape[2:]
    plane = od_ * oh_ * ow_
    k = cg * kd * kh * kw
    wg = w.reshape(group, M // group, k)  # (G, M/G, C/G*K)
    scale = np.ones(M, np.float32) if scale is None else scale
    shift = np.zeros(M, np.float32) if shift is None else shift
    out3 = out.reshape(N, M, plane)
    nb_max = max(1, COLS_BUDGET // max(1, C * kd * kh * kw * plane))
    for n0 in range(0, N, nb_max):
        nb = min(nb_max, N - n0)
        cols = scratch("conv.cols", (C * kd * kh * kw, nb * plane), np.float32)
        _im2col(x, cols, n0, nb, kd, kh, kw, *strides, *pads, *dilations, od_, oh_, ow_)
        y = scratch("conv.gemm", (group, M // group, nb * plane), np.float32)
        matmul(wg, cols.reshape(group, k, nb * plane), y)  # (G, M/G, nb*S)
        _epilogue(y.reshape(M, nb, plane), out3, n0, bias, act, np.float32(alpha), scale, shift)
    return out
