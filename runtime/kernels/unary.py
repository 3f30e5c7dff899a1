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
"""

from __future__ import annotations

import math

from numba import prange

from runtime.kernels.activation import clamp
from runtime.kernels.jit import kernel

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
