"""The recurrences over time of ``runtime/ops/rnn.py``: RNN, GRU and LSTM.

The op computes the input projection of every time step as one GEMM first,
``xw = X @ W^T`` (T*N rows, all directions side by side in the columns); these
kernels run what cannot be batched over time: per step, the small product of the
previous hidden state with the recurrence weights, the gates and their activations.

Shapes (D directions, T steps, N batch rows, H hidden units, G gates per unit):

    xw        (T, N, D*G*H)  X @ W^T, direction d's gates in columns d*G*H ...
    rt        (D, H, G*H)    R^T: row k holds what h[k] adds to each gate
    bias      (D, 2*G*H)     [Wb, Rb] as the ONNX input B gives them
    h0 (, c0) (D, N, H)      initial states
    seq_lens  (N,)           0 <= length <= T
    reverse   (D,)           direction d reads its sequence back to front
    acts      (D, A)         activation codes (``ACTIVATIONS``), with alphas, betas
    y         (T, D, N, H)   every step's hidden state; steps past a row's length 0
    y_h (, y_c) (D, N, H)    the last state; 0 for a row of length 0 (as onnxruntime)

Each (direction, batch row) pair is a job of its own: its state depends on nothing
else, so the jobs run in parallel, each writing its own slices of y, y_h and y_c. A
job of length L reads steps 0..L-1 (forward) or L-1..0 (reverse) and writes y at the
step it read. ``clip`` > 0 bounds every gate's input to [-clip, clip] before its
activation (``math.inf``: no clip). Per step, ``g = xw[t] + biases + h @ R^T`` runs
as one axpy per hidden unit over a contiguous row of R^T (it vectorises without
reordering sums), then the gates of one unit at a time:

    RNN   h = f(g)
    GRU   z = f(g_z), r = f(g_r)
          linear_before_reset 0: n = g(xw_h + Wbh + Rbh + (r * h) @ Rh^T)
          linear_before_reset 1: n = g(xw_h + Wbh + r * (h @ Rh^T + Rbh))
          h = (1 - z) * n + z * h
    LSTM  i = f(g_i + Pi * c), f_ = f(g_f + Pf * c) (1 - i with input_forget)
          c' = f_ * c + i * g(g_c), o = f(g_o + Po * c'), h = o * h(c'), c = c'
"""

from __future__ import annotations

import math

import numpy as np
from numba import prange

from runtime.kernels.jit import kernel

# The activations ONNX's recurrent ops allow, by code (an index into this tuple).
ACTIVATIONS = (
    "Relu",
    "Tanh",
    "Sigmoid",
    "Affine",
    "LeakyRelu",
    "ThresholdedRelu",
    "ScaledTanh",
    "HardSigmoid",
    "Elu",
    "Softsign",
    "Softplus",
)


@kernel()
def activate(code, x, alpha, beta):  # pragma: no cover
    """``ACTIVATIONS[code]`` of x, as the ONNX recurrent ops define them."""
    if code == 0:
        return x if x > 0.0 else 0.0
    if code == 1:
        return math.tanh(x)
    if code == 2:
        return 1.0 / (1.0 + math.exp(-x))
    if code == 3:
        return alpha * x + beta
    if code == 4:
        return x if x >= 0.0 else alpha * x
    if code == 5:
        return x if x > alpha else 0.0
    if code == 6:
        return alpha * math.tanh(beta * x)
    if code == 7:
        return min(max(alpha * x + beta, 0.0), 1.0)
    if code == 8:
        return x if x >= 0.0 else alpha * (math.exp(x) - 1.0)
    if code == 9:
        return x / (1.0 + abs(x))
    # Softplus, log(1 + e^x) without overflow for large x
    if x > 0.0:
        return x + math.log1p(math.exp(-x))
    return math.log1p(math.exp(x))


@kernel()
def bound(x, clip):  # pragma: no cover
    """x limited to [-clip, clip] (a NaN stays NaN)."""
    if x > clip:
        return clip
    if x < -clip:
        return -clip
    return x


@kernel()
def _finish(y, y_h, d, b, h, length):  # pragma: no cover
    """Zero y past a row's length; the last state into y_h (0 for an empty row)."""
    for t in range(length, y.shape[0]):
        y[t, d, b, :] = 0.0
    if length == 0:
        y_h[d, b, :] = 0.0
    else:
        y_h[d, b, :] = h


@kernel(parallel=True)
def rnn_recurrence(
    xw, rt, bias, h0, seq_lens, reverse, acts, alphas, betas, clip, y, y_h
):  # pragma: no cover
    """RNN: h = f(xw[t] + Wb + Rb + h @ R^T), G = 1."""
    n_n = xw.shape[1]
    d_n, h_n, _ = rt.shape
    for job in prange(d_n * n_n):
        d = job // n_n
        b = job % n_n
        length = seq_lens[b]
        h = h0[d, b].copy()
        g = np.empty(h_n, xw.dtype)
        code, alpha, beta = acts[d, 0], alphas[d, 0], betas[d, 0]
        base = d * h_n
        for s in range(length):
            t = length - 1 - s if reverse[d] else s
            for j in range(h_n):
                g[j] = xw[t, b, base + j] + bias[d, j] + bias[d, h_n + j]
            for k in range(h_n):
                hk = h[k]
                for j in range(h_n):
                    g[j] += hk * rt[d, k, j]
            for j in range(h_n):
                h[j] = activate(code, bound(g[j], clip), alpha, beta)
            y[t, d, b, :] = h
        _finish(y, y_h, d, b, h, length)


@kernel(parallel=True)
def gru_recurrence(
    xw, rt, bias, h0, seq_lens, reverse, linear_before_reset, acts, alphas, betas, clip, y, y_h
):  # pragma: no cover
    """GRU, G = 3 (gates z, r, h): acts[d] = (f, g)."""
    n_n = xw.shape[1]
    d_n, h_n, _ = rt.shape
    h2 = 2 * h_n
    for job in prange(d_n * n_n):
        d = job // n_n
        b = job % n_n
        length = seq_lens[b]
        h = h0[d, b].copy()
        g = np.empty(h2, xw.dtype)  # z, r
        lin = np.empty(h_n, xw.dtype)  # h @ Rh^T (+ Rbh), or (r * h) @ Rh^T
        rh = np.empty(h_n, xw.dtype)
        f, fa, fb = acts[d, 0], alphas[d, 0], betas[d, 0]
        code, ga, gb = acts[d, 1], alphas[d, 1], betas[d, 1]
        base = d * 3 * h_n
        wb = bias[d, : 3 * h_n]
        rb = bias[d, 3 * h_n :]
        for s in range(length):
            t = length - 1 - s if reverse[d] else s
            for j in range(h2):
                g[j] = xw[t, b, base + j] + wb[j] + rb[j]
            for k in range(h_n):
                hk = h[k]
                for j in range(h2):
                    g[j] += hk * rt[d, k, j]
            for j in range(h2):
                g[j] = activate(f, bound(g[j], clip), fa, fb)
            if linear_before_reset:
                for j in range(h_n):
                    lin[j] = rb[h2 + j]
                for k in range(h_n):
                    hk = h[k]
                    for j in range(h_n):
                        lin[j] += hk * rt[d, k, h2 + j]
                for j in range(h_n):
                    lin[j] *= g[h_n + j]
            else:
                for j in range(h_n):
                    rh[j] = g[h_n + j] * h[j]
                    lin[j] = rb[h2 + j]
                for k in range(h_n):
                    rk = rh[k]
                    for j in range(h_n):
                        lin[j] += rk * rt[d, k, h2 + j]
            for j in range(h_n):
                n = activate(
                    code, bound(xw[t, b, base + h2 + j] + wb[h2 + j] + lin[j], clip), ga, gb
                )
                z = g[j]
                h[j] = (1.0 - z) * n + z * h[j]
            y[t, d, b, :] = h
        _finish(y, y_h, d, b, h, length)


@kernel(parallel=True)
def lstm_recurrence(
    xw,
    rt,
    bias,
    peepholes,
    h0,
    c0,
    seq_lens,
    reverse,
    input_forget,
    acts,
    alphas,
    betas,
    clip,
    y,
    y_h,
    y_c,
):  # pragma: no cover
    """LSTM, G = 4 (gates i, o, f, c): acts[d] = (f, g, h); peepholes (D, 3*H) = P[iof]
    (zeros when the node has none); y_c as y_h, the last cell state."""
    n_n = xw.shape[1]
    d_n, h_n, _ = rt.shape
    g_n = 4 * h_n
    for job in prange(d_n * n_n):
        d = job // n_n
        b = job % n_n
        length = seq_lens[b]
        h = h0[d, b].copy()
        c = c0[d, b].copy()
        g = np.empty(g_n, xw.dtype)
        f, fa, fb = acts[d, 0], alphas[d, 0], betas[d, 0]
        code_g, ga, gb = acts[d, 1], alphas[d, 1], betas[d, 1]
        code_h, ha, hb = acts[d, 2], alphas[d, 2], betas[d, 2]
        base = d * g_n
        p = peepholes[d]
        for s in range(length):
            t = length - 1 - s if reverse[d] else s
            for j in range(g_n):
                g[j] = xw[t, b, base + j] + bias[d, j] + bias[d, g_n + j]
            for k in range(h_n):
                hk = h[k]
                for j in range(g_n):
                    g[j] += hk * rt[d, k, j]
            for j in range(h_n):
                gi = activate(f, bound(g[j] + p[j] * c[j], clip), fa, fb)
                if input_forget:
                    gf = 1.0 - gi
                else:
                    gf = activate(f, bound(g[2 * h_n + j] + p[2 * h_n + j] * c[j], clip), fa, fb)
                gc = activate(code_g, bound(g[3 * h_n + j], clip), ga, gb)
                cj = gf * c[j] + gi * gc
                go = activate(f, bound(g[h_n + j] + p[h_n + j] * cj, clip), fa, fb)
                c[j] = cj
                h[j] = go * activate(code_h, cj, ha, hb)
            y[t, d, b, :] = h
        _finish(y, y_h, d, b, h, length)
        if length == 0:
            y_c[d, b, :] = 0.0
        else:
            y_c[d, b, :] = c
