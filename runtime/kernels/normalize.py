"""The float32 kernel of ``runtime/ops/normalization.py``: standardise rows, then an
affine transform.

``normalize_rows(x, y, scale, bias, inner, epsilon, center, mean, inv)``, x and y
(R, S), scale and bias (G, T) with T * inner = S, mean and inv (R,):

    m[r]    = sum_s x[r, s] / S                          (0 when not ``center``)
    v[r]    = sum_s (x[r, s] - m[r])^2 / S
    inv[r]  = 1 / sqrt(v[r] + epsilon)
    y[r, s] = (x[r, s] - m[r]) * inv[r] * scale[g, s // inner] + bias[g, s // inner]

with g = r % G. The normalisations are layouts of this one kernel:

    LayerNormalization      R = outer dims, S = normalised dims, G = 1, inner = 1
    RMSNormalization        the same, center false (v is then the mean square)
    InstanceNormalization   R = N*C, S = spatial, G = C, T = 1, inner = S
    GroupNormalization-21   R = N*groups, S = C/groups * spatial, G = groups,
                            T = C/groups, inner = spatial (scale per channel)
    GroupNormalization-18   the same with T = 1, inner = S (scale per group)

Rows run in parallel, each writing its own row of y and its mean and inv; sums add
in float64.

``standardize_rows(x, y, scale, bias, epsilon, center, mean, inv)``: the layout of
LayerNormalization and RMSNormalization (G = 1, inner = 1; scale and bias (S,)) in
float32, its sums reassociated into vector lanes (``fastmath`` reassoc only: NaN and
infinities as IEEE says). The float64 sums of ``normalize_rows`` are a serial chain
of conversions and adds, 4 ns an element (ConvNeXt's LayerNorms over 96 to 768
channels: 4 times onnxruntime's).

``standardize_channels(x, y, scale, bias, epsilon, block)``: LayerNormalization over the
channel axis of x and y (N, C, S), an NCHW tensor's planes, with scale and bias (C,):

    m[n, s]    = sum_c x[n, c, s] / C
    inv[n, s]  = 1 / sqrt(sum_c (x[n, c, s] - m[n, s])^2 / C + epsilon)
    y[n, c, s] = (x[n, c, s] - m[n, s]) * inv[n, s] * scale[c] + bias[c]

what ConvNeXt computes as Transpose to channels-last, LayerNormalization over the last
axis, Transpose back (``passes.channels_first_layer_norm``). A job takes ``block``
positions of one image: the sums run along the channels with the positions in vector
lanes (a contiguous run of each plane), so no Transpose is needed; its C x block
values stay in cache over the three passes. float32 sums, as ``standardize_rows``.

``scale_shift_planes(x, y, scale, shift, s_n, lo, hi, act, alpha, beta)``: inference
BatchNormalization (and an activation after it) on flat x and y, planes of ``s_n``
values, plane p of channel c = p % C (C = scale's length), for planes lo <= p < hi:

    y[p * s_n + s] = act(x[p * s_n + s] * scale[c] + shift[c])

scale and shift are the folded (gamma / sqrt(var + eps), beta - mean * scale), act one
of ``activation.ACTIVATIONS`` (Relu: a NaN stays NaN, as onnxruntime's). In vectors
along each plane, the last one partial: DenseNet's planes are 4x4 to 32x32, and its
pre-activation BatchNormalization -> Relu -> Conv cannot fold into the conv.
``scale_shift_planes_parallel`` runs ``jobs`` jobs of whole planes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from runtime.kernels.activation import activate
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    vadd,
    vload,
    vload_first,
    vmul,
    vrelu,
    vsplat,
    vstore,
    vstore_first,
)


@kernel(parallel=True)
def normalize_rows(x, y, scale, bias, inner, epsilon, center, mean, inv):  # pragma: no cover
    rows, s_n = x.shape
    groups = scale.shape[0]
    for r in prange(rows):
        xr = x[r]
        m = 0.0
        if center:
            for s in range(s_n):
                m += xr[s]
            m /= s_n
        v = 0.0
        for s in range(s_n):
            d = xr[s] - m
            v += d * d
        v /= s_n
        iv = 1.0 / math.sqrt(v + epsilon)
        mean[r] = m
        inv[r] = iv
        g = r % groups
        sc = scale[g]
        sh = bias[g]
        yr = y[r]
        if inner == 1:
            for s in range(s_n):
                yr[s] = (xr[s] - m) * iv * sc[s] + sh[s]
        else:
            for t in range(s_n // inner):
                a = iv * sc[t]
                c = sh[t] - m * a
                for s in range(t * inner, (t + 1) * inner):
                    yr[s] = xr[s] * a + c


@kernel(parallel=True, fastmath={"reassoc", "contract"})
def standardize_rows(x, y, scale, bias, epsilon, center, mean, inv):  # pragma: no cover
    rows, s_n = x.shape
    n = np.float32(s_n)
    eps = np.float32(epsilon)
    for r in prange(rows):
        xr = x[r]
        yr = y[r]
        m = np.float32(0.0)
        if center:
            for s in range(s_n):
                m += xr[s]
            m = m / n
        v = np.float32(0.0)
        for s in range(s_n):
            d = xr[s] - m
            v += d * d
        iv = np.float32(1.0) / np.sqrt(v / n + eps)
        mean[r] = m
        inv[r] = iv
        for s in range(s_n):
            yr[s] = (xr[s] - m) * iv * scale[s] + bias[s]


@kernel(parallel=True, fastmath={"reassoc", "contract"})
def standardize_channels(x, y, scale, bias, epsilon, block):  # pragma: no cover
    images, c_n, s_n = x.shape
    n = np.float32(c_n)
    eps = np.float32(epsilon)
    one = np.float32(1.0)
    blocks = (s_n + block - 1) // block
    for job in prange(images * blocks):
        i = job // blocks
        s0 = (job % blocks) * block
        w = min(block, s_n - s0)
        xi = x[i]
        yi = y[i]
        m = np.zeros(w, np.float32)
        v = np.zeros(w, np.float32)
        for c in range(c_n):
            xr = xi[c, s0 : s0 + w]
            for s in range(w):
                m[s] += xr[s]
        for s in range(w):
            m[s] = m[s] / n
        for c in range(c_n):
            xr = xi[c, s0 : s0 + w]
            for s in range(w):
                d = xr[s] - m[s]
                v[s] += d * d
        for s in range(w):
            v[s] = one / np.sqrt(v[s] / n + eps)
        for c in range(c_n):
            xr = xi[c, s0 : s0 + w]
            yr = yi[c, s0 : s0 + w]
            sc = scale[c]
            sh = bias[c]
            for s in range(w):
                yr[s] = (xr[s] - m[s]) * v[s] * sc + sh


@kernel(inline="always")
def _scale_shift_range(xf, yf, scale, shift, s_n, lo, hi, act, alpha, beta):  # pragma: no cover
    """``scale_shift_planes`` for planes lo..hi-1 (loops written out: see
    ``pool.pool_planes`` on helpers that take arrays)."""
    c_n = scale.shape[0]
    full = s_n - s_n % WIDTH
    rest = s_n - full
    one = np.float32(1.0)
    for p in range(lo, hi):
        c = p % c_n
        a = vsplat(scale[c])
        b = vsplat(shift[c])
        o = p * s_n
        if act == 1:
            for i in range(o, o + full, WIDTH):
                vstore(yf, i, vrelu(vadd(vmul(vload(xf, i), a), b)))
            if rest:
                v = vrelu(vadd(vmul(vload_first(xf, o + full, rest), a), b))
                vstore_first(yf, o + full, v, rest)
        else:
            for i in range(o, o + full, WIDTH):
                vstore(yf, i, vadd(vmul(vload(xf, i), a), b))
            if rest:
                v = vadd(vmul(vload_first(xf, o + full, rest), a), b)
                vstore_first(yf, o + full, v, rest)
            if act > 1:  # the others in place, from activation.activate
                activate(yf[o : o + s_n], s_n, np.float32(0.0), act, alpha, beta, one,
                         np.float32(0.0))  # fmt: skip


@kernel()
def scale_shift_planes(x, y, scale, shift, s_n, lo, hi, act, alpha, beta):  # pragma: no cover
    _scale_shift_range(x, y, scale, shift, s_n, lo, hi, act, alpha, beta)


@kernel(parallel=True)
def scale_shift_planes_parallel(
    x, y, scale, shift, s_n, jobs, act, alpha, beta
):  # pragma: no cover
    """``scale_shift_planes`` over every plane in ``jobs`` jobs of whole planes."""
    planes = x.shape[0] // max(s_n, 1)
    per = (planes + jobs - 1) // jobs
    for j in prange(jobs):
        lo = j * per
        hi = min(lo + per, planes)
        if lo < hi:
            _scale_shift_range(x, y, scale, shift, s_n, lo, hi, act, alpha, beta)
