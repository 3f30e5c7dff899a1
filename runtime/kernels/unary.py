"""The elementwise activations of ``runtime/ops/activations.py`` (and Erf) as one kernel.

``unary(x, y, mode, alpha, beta, gamma)``: ``y[i] = f_mode(x[i])`` over flat arrays
of one float type, the modes numbered in ``MODES``; ``alpha``, ``beta`` and ``gamma``
are the op's attributes (unused ones ignored). One kernel with a mode switch rather
than one kernel per op, so that a cold cache compiles it once (per float type):

    Elu              x if x > 0 else alpha * (exp(x) - 1)
    Selu             gamma * (x if x > 0 else alpha * (exp(x) - 1))
    Celu             max(0, x) + min(0, alpha * (exp(x / alpha) - 1))
    HardSigmoid      max(0, min(1, alpha * x + beta))
    HardSwish        x * max(0, min(1, x / 6 + 1 / 2))
    Softplus         log(1 + exp(x)), as max(x, 0) + log1p(exp(-|x|)) (no overflow)
    Softsign         x / (1 + |x|)
    Mish             x * tanh(softplus(x))
    Gelu             x / 2 * (1 + erf(x / sqrt(2)))
    GeluTanh         x / 2 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 x^3)))
    ThresholdedRelu  x if x > alpha else 0
    Shrink           x + beta if x < -alpha; x - beta if x > alpha; else 0 (alpha: lambd)
    Erf              erf(x)

The loop runs over blocks of ``BLOCK`` elements in parallel (each block its own
slice of y); the mode is tested once per block, so each block's loop is branch-free.

``unary_vector(x, y, mode)``: the modes of ``VECTOR_MODES`` on float32, ``WIDTH``
lanes at a time. The scalar loop calls libm's ``erff`` per element, which LLVM does
not vectorise (ConvNeXt's GELU: 4 ns an element); ``verf`` is the faithfully rounded
float32 erf of two polynomials (Norbert Juffa's, which onnxruntime's MLAS uses too):
x + x p(x^2) for |x| <= 0.921875, else 1 - exp(-(t + t q(t))) with t = |x| clamped to
4 (from there it rounds to exactly 1; MLAS clamps at 3.725, where it is 1 - 2^-23, and
so GELU of -40 is -2.4e-6 there, 0 here), exp as ``gemm.vexp``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from runtime.kernels.activation import clamp
from runtime.kernels.gemm import vexp
from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    vfmav,
    vload,
    vload_first,
    vmax,
    vmin,
    vmul,
    vsplat,
    vstore,
    vstore_first,
    vwhere_lt,
    vzero,
)

MODES = {
    "Elu": 0,
    "Selu": 1,
    "Celu": 2,
    "HardSigmoid": 3,
    "HardSwish": 4,
    "Softplus": 5,
    "Softsign": 6,
    "Mish": 7,
    "Gelu": 8,
    "GeluTanh": 9,
    "ThresholdedRelu": 10,
    "Shrink": 11,
    "Erf": 12,
}
VECTOR_MODES = ("Gelu", "Erf")  # the modes ``unary_vector`` runs (float32)
BLOCK = 16384
_SQRT_HALF = 0.7071067811865476
_SQRT_2_OVER_PI = 0.7978845608028654


@kernel(inline="always")
def _softplus(v):  # pragma: no cover
    return max(v, 0.0) + math.log1p(math.exp(-abs(v)))


@kernel(parallel=True)
def unary(x, y, mode, alpha, beta, gamma):  # pragma: no cover
    n = x.shape[0]
    blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(blocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        if mode == 0:
            for i in range(lo, hi):
                v = x[i]
                y[i] = v if v > 0 else alpha * math.expm1(v)
        elif mode == 1:
            for i in range(lo, hi):
                v = x[i]
                y[i] = gamma * (v if v > 0 else alpha * math.expm1(v))
        elif mode == 2:
            for i in range(lo, hi):
                v = x[i]
                y[i] = max(v, 0.0) + min(0.0, alpha * math.expm1(v / alpha))
        elif mode == 3:
            for i in range(lo, hi):
                y[i] = clamp(alpha * x[i] + beta, 0.0, 1.0)  # NaN stays NaN, as np.clip
        elif mode == 4:
            for i in range(lo, hi):
                v = x[i]
                y[i] = v * max(0.0, min(1.0, v * (1.0 / 6.0) + 0.5))
        elif mode == 5:
            for i in range(lo, hi):
                y[i] = _softplus(x[i])
        elif mode == 6:
            for i in range(lo, hi):
                v = x[i]
                y[i] = v / (1.0 + abs(v))
        elif mode == 7:
            for i in range(lo, hi):
                v = x[i]
                y[i] = v * math.tanh(_softplus(v))
        elif mode == 8:
            for i in range(lo, hi):
                v = x[i]
                y[i] = 0.5 * v * (1.0 + math.erf(v * _SQRT_HALF))
        elif mode == 9:
            for i in range(lo, hi):
                v = x[i]
                y[i] = 0.5 * v * (1.0 + math.tanh(_SQRT_2_OVER_PI * (v + 0.044715 * v * v * v)))
        elif mode == 10:
            for i in range(lo, hi):
                v = x[i]
                y[i] = v if v > alpha else 0.0
        elif mode == 11:
            for i in range(lo, hi):
                v = x[i]
                y[i] = v + beta if v < -alpha else (v - beta if v > alpha else 0.0)
        else:
            for i in range(lo, hi):
                y[i] = math.erf(x[i])


_ERF_SPLIT, _ERF_CLAMP = np.float32(0.921875), np.float32(4.0)
# x + x p(x^2) on [0, 0.921875], p's coefficients from the highest power down
_ERF_SMALL = tuple(
    np.float32(c)
    for c in (-5.99104969e-4, 4.99339588e-3, -2.67667342e-2, 1.12818025e-1, -3.76124859e-1)
)
_ERF_SMALL_LAST = np.float32(1.28379151e-1)  # 2 / sqrt(pi) - 1
# 1 - exp(-(t + t q(t))) above it, q's coefficients from the highest power down
_ERF_BIG = tuple(
    np.float32(c)
    for c in (
        1.72948930e-5,
        -3.83208680e-4,
        3.88393435e-3,
        -2.42545605e-2,
        1.06777847e-1,
        6.34846687e-1,
    )
)
_ERF_BIG_LAST = np.float32(1.28717512e-1)


@kernel(inline="always")
def verf(v):  # pragma: no cover
    """erf lane by lane, within 1 ulp; a NaN stays NaN."""
    t = vmax(v, vmul(v, vsplat(-1.0)))  # |v|
    s = vmul(t, t)
    p = vsplat(_ERF_SMALL[0])
    p = vfmav(vsplat(_ERF_SMALL[1]), p, s)
    p = vfmav(vsplat(_ERF_SMALL[2]), p, s)
    p = vfmav(vsplat(_ERF_SMALL[3]), p, s)
    p = vfmav(vsplat(_ERF_SMALL[4]), p, s)
    p = vfmav(vsplat(_ERF_SMALL_LAST), p, s)
    small = vfmav(t, p, t)
    c = vmin(t, vsplat(_ERF_CLAMP))
    q = vsplat(_ERF_BIG[0])
    q = vfmav(vsplat(_ERF_BIG[1]), q, c)
    q = vfmav(vsplat(_ERF_BIG[2]), q, c)
    q = vfmav(vsplat(_ERF_BIG[3]), q, c)
    q = vfmav(vsplat(_ERF_BIG[4]), q, c)
    q = vfmav(vsplat(_ERF_BIG[5]), q, c)
    q = vfmav(vsplat(_ERF_BIG_LAST), q, c)
    big = vfmav(vsplat(1.0), vexp(vmul(vfmav(c, q, c), vsplat(-1.0))), vsplat(-1.0))
    a = vwhere_lt(vsplat(_ERF_SPLIT), t, big, small)  # a NaN t: small, NaN
    return vwhere_lt(v, vzero(), vmul(a, vsplat(-1.0)), a)


@kernel(inline="always")
def _vector_mode(v, mode):  # pragma: no cover
    if mode == 8:  # Gelu: v / 2 * (1 + erf(v / sqrt(2)))
        e = verf(vmul(v, vsplat(_SQRT_HALF)))
        return vfmav(vmul(v, vsplat(0.5)), vmul(v, vsplat(0.5)), e)
    return verf(v)


@kernel(parallel=True)
def unary_vector(x, y, mode):  # pragma: no cover
    n = x.shape[0]
    blocks = (n + BLOCK - 1) // BLOCK
    for b in prange(blocks):
        lo = b * BLOCK
        hi = min(lo + BLOCK, n)
        i = lo
        while i + WIDTH <= hi:
            vstore(y, i, _vector_mode(vload(x, i), mode))
            i += WIDTH
        if i < hi:
            vstore_first(y, i, _vector_mode(vload_first(x, i, hi - i), mode), hi - i)
