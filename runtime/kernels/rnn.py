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

A job is one direction and a block of up to ``ROWS`` batch rows: the states of
different directions and rows depend on nothing of each other, so the jobs run in
parallel, each writing its own slices of y, y_h and y_c. A row of length L reads
steps 0..L-1 (forward) or L-1..0 (reverse) and writes y at the step it read; a
block runs as many steps as its longest row, and a row past its length keeps its
state. ``clip`` > 0 bounds every gate's input to [-clip, clip] before its
activation (``math.inf``: no clip). Per step, ``g = xw[t] + biases + h @ R^T`` for
the block's rows: for each k, row k of R^T (contiguous) is read once from memory
and added, scaled by h[row, k], to every row's gates from L1 (an axpy, which
vectorises without reordering sums); then each gate's activation over a row at a
time (``activate_row``: one loop per function; float32 tanh in MLAS's rational
form, which vectorises, as onnxruntime computes it):

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

from runtime.kernels.activation import _tanh as tanh_rational
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
def activate_row(v, code, alpha, beta, clip):  # pragma: no cover
    """v[:] = ACTIVATIONS[code](v bounded to [-clip, clip]), in place, one loop per
    function. float32 Tanh runs the rational tanh (MLAS's, as onnxruntime does; max
    abs error 3.4e-7), which vectorises. Sigmoid stays 1 / (1 + e^-x): GRU's 1 - z
    needs z to the last bit where z nears 1, and the rational form lost it (the node
    suite's GRU cases failed). The others call ``activate``."""
    n = v.shape[0]
    if clip < math.inf:
        for j in range(n):
            v[j] = bound(v[j], clip)
    if code == 1 and v.itemsize == 4:
        for j in range(n):
            v[j] = tanh_rational(v[j])
    elif code == 2:
        for j in range(n):
            v[j] = 1.0 / (1.0 + math.exp(-v[j]))
    else:
        for j in range(n):
            v[j] = activate(code, v[j], alpha, beta)


ROWS = 8  # batch rows a job steps together: R^T is read once a step for all of them
# Floats after each row of a job's gate buffers: rows 2 KiB apart (512 gates) would
# sit 4 KiB apart two by two, and a load from one row would wait on a store to
# another (4K aliasing; 8 rows of 128 LSTM units ran at a quarter of the speed).
PAD = 16


@kernel()
def _jobs(d_n, n_n):  # pragma: no cover
    """The number of jobs: every direction times the blocks of ``ROWS`` rows."""
    return d_n * ((n_n + ROWS - 1) // ROWS)


@kernel()
def _block(job, n_n):  # pragma: no cover
    """(direction, first row, rows) of a job."""
    blocks = (n_n + ROWS - 1) // ROWS
    d = job // blocks
    b0 = (job % blocks) * ROWS
    return d, b0, min(ROWS, n_n - b0)


@kernel()
def _step_of(seq_lens, b, s, reverse):  # pragma: no cover
    """The time step row b reads at its s-th step (-1: past its length)."""
    length = seq_lens[b]
    if s >= length:
        return -1
    return length - 1 - s if reverse else s


@kernel()
def _add_product(g, h, rt, d, col0, cols, rows):  # pragma: no cover
    """g[r, j] += sum_k h[r, k] * rt[d, k, col0 + j], for r < rows, j < cols, k < H."""
    for k in range(rt.shape[1]):
        row = rt[d, k, col0 : col0 + cols]  # 1-D views: a loop over them vectorises
        for r in range(rows):
            hk = h[r, k]
            gr = g[r]
            for j in range(cols):
                gr[j] += hk * row[j]


@kernel()
def _finish(y, seq_lens, d, b0, rows):  # pragma: no cover
    """Zero y past each row's length."""
    for b in range(b0, b0 + rows):
        for t in range(seq_lens[b], y.shape[0]):
            y[t, d, b, :] = 0.0


@kernel()
def _last(y_h, seq_lens, d, b0, rows, h):  # pragma: no cover
    """The block's last states h (rows, H) into y_h (0 for an empty row)."""
    for r in range(rows):
        if seq_lens[b0 + r] == 0:
            y_h[d, b0 + r, :] = 0.0
        else:
            y_h[d, b0 + r, :] = h[r]


@kernel(parallel=True)
def rnn_recurrence(
    xw, rt, bias, h0, seq_lens, reverse, acts, alphas, betas, clip, y, y_h
):  # pragma: no cover
    """RNN: h = f(xw[t] + Wb + Rb + h @ R^T), G = 1."""
    n_n = xw.shape[1]
    d_n, h_n, _ = rt.shape
    for job in prange(_jobs(d_n, n_n)):
        d, b0, rows = _block(job, n_n)
        h = h0[d, b0 : b0 + rows].copy()
        g = np.empty((rows, h_n + PAD), xw.dtype)
        wb, rb = bias[d, :h_n], bias[d, h_n:]
        for s in range(seq_lens[b0 : b0 + rows].max()):
            for r in range(rows):
                x = xw[max(_step_of(seq_lens, b0 + r, s, reverse[d]), 0), b0 + r]
                gr = g[r]
                for j in range(h_n):
                    gr[j] = x[d * h_n + j] + wb[j] + rb[j]
            _add_product(g, h, rt, d, np.int64(0), h_n, rows)  # not a literal 0: one compile
            for r in range(rows):
                t = _step_of(seq_lens, b0 + r, s, reverse[d])
                if t >= 0:
                    activate_row(g[r, :h_n], acts[d, 0], alphas[d, 0], betas[d, 0], clip)
                    h[r] = g[r, :h_n]
                    y[t, d, b0 + r, :] = h[r]
        _finish(y, seq_lens, d, b0, rows)
        _last(y_h, seq_lens, d, b0, rows, h)


@kernel(parallel=True)
def gru_recurrence(
    xw, rt, bias, h0, seq_lens, reverse, linear_before_reset, acts, alphas, betas, clip, y, y_h
):  # pragma: no cover
    """GRU, G = 3 (gates z, r, h): acts[d] = (f, g)."""
    n_n = xw.shape[1]
    d_n, h_n, _ = rt.shape
    h2, h3 = 2 * h_n, 3 * h_n
    for job in prange(_jobs(d_n, n_n)):
        d, b0, rows = _block(job, n_n)
        h = h0[d, b0 : b0 + rows].copy()
        g = np.empty((rows, h2 + PAD), xw.dtype)  # z, r
        lin = np.empty((rows, h_n + PAD), xw.dtype)  # then the input of g()
        rh = np.empty((rows, h_n + PAD), xw.dtype)  # r * h
        wb, rb = bias[d, :h3], bias[d, h3:]
        for s in range(seq_lens[b0 : b0 + rows].max()):
            for r in range(rows):
                x = xw[max(_step_of(seq_lens, b0 + r, s, reverse[d]), 0), b0 + r]
                gr, lr = g[r], lin[r]
                for j in range(h2):
                    gr[j] = x[d * h3 + j] + wb[j] + rb[j]
                for j in range(h_n):
                    lr[j] = rb[h2 + j]
            _add_product(g, h, rt, d, np.int64(0), h2, rows)
            for r in range(rows):
                activate_row(g[r, :h2], acts[d, 0], alphas[d, 0], betas[d, 0], clip)
            if linear_before_reset:  # lin = r * (h @ Rh^T + Rbh)
                _add_product(lin, h, rt, d, h2, h_n, rows)
                for r in range(rows):
                    gr, lr = g[r], lin[r]
                    for j in range(h_n):
                        lr[j] *= gr[h_n + j]
            else:  # lin = (r * h) @ Rh^T + Rbh
                for r in range(rows):
                    gr, hr, rr = g[r], h[r], rh[r]
                    for j in range(h_n):
                        rr[j] = gr[h_n + j] * hr[j]
                _add_product(lin, rh, rt, d, h2, h_n, rows)
            for r in range(rows):
                t = _step_of(seq_lens, b0 + r, s, reverse[d])
                if t < 0:
                    continue
                x, gr, lr, hr = xw[t, b0 + r], g[r], lin[r], h[r]
                for j in range(h_n):
                    lr[j] += x[d * h3 + h2 + j] + wb[h2 + j]
                activate_row(lr[:h_n], acts[d, 1], alphas[d, 1], betas[d, 1], clip)
                for j in range(h_n):
                    z = gr[j]
                    hr[j] = (1 - z) * lr[j] + z * hr[j]
                y[t, d, b0 + r, :] = hr
        _finish(y, seq_lens, d, b0, rows)
        _last(y_h, seq_lens, d, b0, rows, h)


@kernel(parallel=True)
def lstm_recurrence(
    xw, rt, bias, peepholes, h0, c0, seq_lens, reverse, input_forget, acts, alphas, betas,
    clip, y, y_h, y_c,
):  # pragma: no cover  # fmt: skip
    """LSTM, G = 4 (gates i, o, f, c): acts[d] = (f, g, h); peepholes (D, 3*H) = P[iof]
    (zeros when the node has none); y_c as y_h, the last cell state."""
    n_n = xw.shape[1]
    d_n, h_n, _ = rt.shape
    g_n = 4 * h_n
    for job in prange(_jobs(d_n, n_n)):
        d, b0, rows = _block(job, n_n)
        h = h0[d, b0 : b0 + rows].copy()
        c = c0[d, b0 : b0 + rows].copy()
        g = np.empty((rows, g_n + PAD), xw.dtype)
        f, fa, fb = acts[d, 0], alphas[d, 0], betas[d, 0]
        pi, po, pf = peepholes[d, :h_n], peepholes[d, h_n : 2 * h_n], peepholes[d, 2 * h_n :]
        wb, rb = bias[d, :g_n], bias[d, g_n:]
        for s in range(seq_lens[b0 : b0 + rows].max()):
            for r in range(rows):
                x = xw[max(_step_of(seq_lens, b0 + r, s, reverse[d]), 0), b0 + r]
                gr = g[r]
                for j in range(g_n):
                    gr[j] = x[d * g_n + j] + wb[j] + rb[j]
            _add_product(g, h, rt, d, np.int64(0), g_n, rows)
            for r in range(rows):
                t = _step_of(seq_lens, b0 + r, s, reverse[d])
                if t < 0:
                    continue
                gr, cr, hr = g[r], c[r], h[r]
                gi, go, gf, gc = (
                    gr[:h_n],
                    gr[h_n : 2 * h_n],
                    gr[2 * h_n : 3 * h_n],
                    gr[3 * h_n : g_n],
                )
                for j in range(h_n):
                    gi[j] += pi[j] * cr[j]
                activate_row(gi, f, fa, fb, clip)
                if input_forget:
                    for j in range(h_n):
                        gf[j] = 1 - gi[j]
                else:
                    for j in range(h_n):
                        gf[j] += pf[j] * cr[j]
                    activate_row(gf, f, fa, fb, clip)
                activate_row(gc, acts[d, 1], alphas[d, 1], betas[d, 1], clip)
                for j in range(h_n):
                    cr[j] = gf[j] * cr[j] + gi[j] * gc[j]
                    go[j] += po[j] * cr[j]
                activate_row(go, f, fa, fb, clip)
                hr[:] = cr
                activate_row(hr, acts[d, 2], alphas[d, 2], betas[d, 2], math.inf)
                for j in range(h_n):
                    hr[j] *= go[j]
                y[t, d, b0 + r, :] = hr
        _finish(y, seq_lens, d, b0, rows)
        _last(y_h, seq_lens, d, b0, rows, h)
        _last(y_c, seq_lens, d, b0, rows, c)
