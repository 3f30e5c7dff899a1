"""The activations that convolutions, Gemms and the op-table programs fuse.

``activate(a, n, bias, act, alpha, beta, sc, sf)``: ``a[i] = act(a[i] + bias) * sc + sf``
for i < n, in place (one channel's values); ``activate_channels`` the same along a
row of channels, with bias, sc and sf arrays. The scale and shift are a
BatchNormalization that follows the activation (the article's AlexNet puts BN after
ReLU). One loop per activation, each branch-free, so LLVM vectorises it; in place on
one array on purpose: with a separate source that may alias the destination, LLVM's
runtime overlap check would send the loop to scalar code. ReLU keeps a NaN, as
``np.maximum`` and onnxruntime's Relu do (a NaN must not turn into a 0 because the
activation was fused); Clip, HardSigmoid and HardSwish keep it too, as ``np.clip`` does.
"""

from __future__ import annotations

import math

import numpy as np

from runtime.kernels.jit import kernel

# The codes the kernels branch on; ``alpha`` and ``beta`` are each one's parameters:
# LeakyRelu's slope (alpha); Clip's min and max (alpha, beta; Relu6 is Clip(0, 6));
# HardSigmoid max(0, min(1, alpha*x + beta)); HardSwish x * HardSigmoid(x) with
# alpha 1/6 and beta 1/2; SiLU x * sigmoid(x) (Sigmoid then Mul, as exporters write it).
ACTIVATIONS = {
    None: 0,
    "Relu": 1,
    "LeakyRelu": 2,
    "Tanh": 3,
    "Sigmoid": 4,
    "Clip": 5,
    "HardSigmoid": 6,
    "HardSwish": 7,
    "SiLU": 8,
}

# Tanh as a rational function (Eigen's and MLAS's float approximation): branch-free,
# so LLVM vectorises the loop; max abs error 3.4e-7 against float64 tanh.
_TANH_CLAMP = np.float32(7.90531110763549805)
_TA = (
    4.89352455891786e-03,
    6.37261928875436e-04,
    1.48572235717979e-05,
    5.12229709037114e-08,
    -8.60467152213735e-11,
    2.00018790482477e-13,
    -2.76076847742355e-16,
)
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


@kernel(inline="always")
def clamp(v, lo, hi):  # pragma: no cover
    v = lo if v < lo else v  # a NaN fails both tests: it stays NaN, as in np.clip
    return hi if v > hi else v


@kernel()
def activate(a, n, bias, act, alpha, beta, sc, sf):  # pragma: no cover
    zero, one = np.float32(0.0), np.float32(1.0)
    if act == 1:
        for i in range(n):
            v = a[i] + bias
            a[i] = (zero if v <= 0.0 else v) * sc + sf  # NaN stays NaN
    elif act == 2:
        for i in range(n):
            v = a[i] + bias
            a[i] = (v if v >= 0.0 else v * alpha) * sc + sf
    elif act == 3:
        for i in range(n):
            a[i] = _tanh(a[i] + bias) * sc + sf
    elif act == 4:
        for i in range(n):
            a[i] = _sigmoid(a[i] + bias) * sc + sf
    elif act == 5:
        for i in range(n):
            a[i] = clamp(a[i] + bias, alpha, beta) * sc + sf
    elif act == 6:
        for i in range(n):
            a[i] = clamp((a[i] + bias) * alpha + beta, zero, one) * sc + sf
    elif act == 7:
        for i in range(n):
            v = a[i] + bias
            a[i] = v * clamp(v * alpha + beta, zero, one) * sc + sf
    elif act == 8:
        for i in range(n):
            v = a[i] + bias
            a[i] = v * _sigmoid(v) * sc + sf
    else:
        for i in range(n):
            a[i] = (a[i] + bias) * sc + sf


@kernel()
def activate_channels(a, rows, stride, n, bias, act, alpha, beta, sc, sf):  # pragma: no cover
    """``activate`` along rows of channels: a[r*stride + i] = act(a[r*stride + i] +
    bias[i]) * sc[i] + sf[i] for r < rows, i < n."""
    zero, one = np.float32(0.0), np.float32(1.0)
    for r in range(rows):
        x = a[r * stride : r * stride + n]
        if act == 1:
            for i in range(n):
                v = x[i] + bias[i]
                x[i] = (zero if v <= 0.0 else v) * sc[i] + sf[i]
        elif act == 2:
            for i in range(n):
                v = x[i] + bias[i]
                x[i] = (v if v >= 0.0 else v * alpha) * sc[i] + sf[i]
        elif act == 3:
            for i in range(n):
                x[i] = _tanh(x[i] + bias[i]) * sc[i] + sf[i]
        elif act == 4:
            for i in range(n):
                x[i] = _sigmoid(x[i] + bias[i]) * sc[i] + sf[i]
        elif act == 5:
            for i in range(n):
                x[i] = clamp(x[i] + bias[i], alpha, beta) * sc[i] + sf[i]
        elif act == 6:
            for i in range(n):
                x[i] = clamp((x[i] + bias[i]) * alpha + beta, zero, one) * sc[i] + sf[i]
        elif act == 7:
            for i in range(n):
                v = x[i] + bias[i]
                x[i] = v * clamp(v * alpha + beta, zero, one) * sc[i] + sf[i]
        elif act == 8:
            for i in range(n):
                v = x[i] + bias[i]
                x[i] = v * _sigmoid(v) * sc[i] + sf[i]
        else:
            for i in range(n):
                x[i] = (x[i] + bias[i]) * sc[i] + sf[i]


@kernel()
def softmax_row(x, y, log):  # pragma: no cover
    """y = softmax(x) (or log-softmax) of one row, summed in float64."""
    n = x.shape[0]
    top = x[0]
    for i in range(n):
        top = max(top, x[i])
    total = 0.0
    for i in range(n):
        total += math.exp(x[i] - top)
    if log:
        # in float64: without the JIT a float32 top plus a Python float stays float32
        # (NumPy 2's promotion), and its rounding (1e-6 at |top| ~ 20) reached y
        shift = np.float64(top) + math.log(total)
        for i in range(n):
            y[i] = x[i] - shift
    else:
        for i in range(n):
            y[i] = math.exp(x[i] - top) / total


@kernel()
def softmax_rows(x, y, log):  # pragma: no cover
    """``softmax_row`` of every row of x (R, S) into y."""
    for r in range(x.shape[0]):
        softmax_row(x[r], y[r], log)
