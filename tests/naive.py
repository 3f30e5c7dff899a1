"""Slow, obvious NumPy twins of the numba kernels: loops that read like the ONNX spec."""

from __future__ import annotations

import itertools
import math

import numpy as np


def conv2d(x, w, b, *, strides, pads, dilations, group):
    """x (N, C, H, W), w (M, C/G, KH, KW), pads (top, left, bottom, right)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    pt, pl, pb, pr = pads
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr), np.float64)
    xp[:, :, pt : pt + h, pl : pl + wd] = x
    sh, sw = strides
    dh, dw = dilations
    oh = (h + pt + pb - ((kh - 1) * dh + 1)) // sh + 1
    ow = (wd + pl + pr - ((kw - 1) * dw + 1)) // sw + 1
    out = np.zeros((n, m, oh, ow), np.float64)
    mg = m // group
    for ni, mi, i, j in itertools.product(range(n), range(m), range(oh), range(ow)):
        g = mi // mg
        acc = b[mi] if b is not None else 0.0
        for ci in range(cg):
            for a in range(kh):
                for e in range(kw):
                    acc += w[mi, ci, a, e] * xp[ni, g * cg + ci, i * sh + a * dh, j * sw + e * dw]
        out[ni, mi, i, j] = acc
    return out.astype(np.float32)


def patches(x, kh, kw):
    """x (N, C, H, W) -> (N, C*kh*kw, H//kh, W//kw): plane (c*kh + a)*kw + e holds
    x[n, c, i*kh + a, j*kw + e] (a patchify conv's input as a 1x1 conv's)."""
    n, c, h, w = x.shape
    oh, ow = h // kh, w // kw
    g = np.zeros((n, c * kh * kw, oh, ow), x.dtype)
    for ci, a, e in itertools.product(range(c), range(kh), range(kw)):
        for i, j in itertools.product(range(oh), range(ow)):
            g[:, (ci * kh + a) * kw + e, i, j] = x[:, ci, i * kh + a, j * kw + e]
    return g


# Each epilogue activation (kernels/activation.ACTIVATIONS) with the alpha and beta a
# test gives it: the float64 formulas of the ONNX ops.
EPILOGUE_PARAMS = {
    None: (0.0, 0.0),
    "Relu": (0.0, 0.0),
    "LeakyRelu": (0.2, 0.0),
    "Tanh": (0.0, 0.0),
    "Sigmoid": (0.0, 0.0),
    "Clip": (-0.5, 0.7),
    "HardSigmoid": (0.3, 0.4),
    "HardSwish": (1 / 6, 0.5),
    "SiLU": (0.0, 0.0),
}


def activation(name, v, alpha, beta):
    """The activation ``name`` of v, computed in float64."""
    v = np.asarray(v, np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        sig = 1 / (1 + np.exp(-v))
        return {
            None: lambda: v,
            "Relu": lambda: np.maximum(v, 0),
            "LeakyRelu": lambda: np.where(v >= 0, v, alpha * v),
            "Tanh": lambda: np.tanh(v),
            "Sigmoid": lambda: sig,
            "Clip": lambda: np.clip(v, alpha, beta),
            "HardSigmoid": lambda: np.clip(alpha * v + beta, 0, 1),
            "HardSwish": lambda: v * np.clip(v / 6 + 0.5, 0, 1),
            "SiLU": lambda: v * sig,
        }[name]()


def pool2d(x, *, kernel, strides, pads, dilations, ceil_mode, mode, count_include_pad=0):
    """Max or average pooling with the spec's window arithmetic."""
    n, c, h, wd = x.shape
    kh, kw = kernel
    sh, sw = strides
    pt, pl, pb, pr = pads
    dh, dw = dilations

    def out_size(size, p0, p1, k, s, d):
        span = size + p0 + p1 - ((k - 1) * d + 1)
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + p0:
            o -= 1
        return o

    oh = out_size(h, pt, pb, kh, sh, dh)
    ow = out_size(wd, pl, pr, kw, sw, dw)
    out = np.zeros((n, c, oh, ow), np.float32)
    for ni, ci, i, j in itertools.product(range(n), range(c), range(oh), range(ow)):
        vals, padded = [], 0
        for a in range(kh):
            for e in range(kw):
                yp, xp_ = i * sh + a * dh, j * sw + e * dw  # padded coordinates
                if yp >= h + pt + pb or xp_ >= wd + pl + pr:
                    continue
                padded += 1
                y, xx = yp - pt, xp_ - pl
                if 0 <= y < h and 0 <= xx < wd:
                    vals.append(x[ni, ci, y, xx])
        if mode == "max":
            out[ni, ci, i, j] = max(vals)
        else:
            out[ni, ci, i, j] = sum(vals) / (padded if count_include_pad else len(vals))
    return out


def global_pool(x, use_max):
    """Mean (in float64) or max of each row of x (planes, S)."""
    return x.max(1) if use_max else x.astype(np.float64).mean(1)


def scale_shift(x, scale, shift, act, alpha=0.0, beta=0.0):
    """``kernels.normalize.scale_shift_planes``: act(x * scale[c] + shift[c]) for x (N, C,
    ...), channel by channel, in float64 (an inference BatchNormalization, folded)."""
    b = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    with np.errstate(invalid="ignore"):
        v = x.astype(np.float64) * scale.reshape(b) + shift.reshape(b)
        return activation(act, v, alpha, beta)


def matvec(a, w, b, act, alpha=0.0, beta=0.0):
    """act(a @ w + b) row by row, in float64: a (M, K), w (K, N), b (N,) or None."""
    y = a.astype(np.float64) @ w.astype(np.float64)
    if b is not None:
        y = y + b
    return activation(act, y, alpha, beta)


def squeeze_excite(x, w1, b1, w2, b2, acts):
    """x (N, C, ...) * act2(W2 act1(W1 mean(x) + b1) + b2) per image and channel, W1
    (R, C), W2 (C, R); acts ((act1, alpha1, beta1), (act2, alpha2, beta2))."""
    n, c = x.shape[:2]
    pooled = x.reshape(n, c, -1).astype(np.float64).mean(2)
    hidden = matvec(pooled, w1.T, b1, *acts[0])
    gate = matvec(hidden, w2.T, b2, *acts[1])
    return x * gate.reshape(n, c, *([1] * (x.ndim - 2)))


def taps(src, w, offs, m, t, length):
    """acc[i, p] = sum_k w[i, k] * src[offs[k] + p]: the op-table convolution's inner sum."""
    acc = np.zeros((m, length), np.float64)
    for i, k in itertools.product(range(m), range(t)):
        acc[i] += w[i * t + k] * src[offs[k] : offs[k] + length].astype(np.float64)
    return acc


def unary(x, mode, alpha=0.0, beta=0.0, gamma=0.0):
    """``kernels.unary.unary``: each activation by its formula in the ONNX spec, in float64."""

    def f(v):
        if mode == "Elu":
            return v if v > 0 else alpha * (math.exp(v) - 1)
        if mode == "Selu":
            return gamma * (v if v > 0 else alpha * (math.exp(v) - 1))
        if mode == "Celu":
            return max(0.0, v) + min(0.0, alpha * (math.exp(v / alpha) - 1))
        if mode == "HardSigmoid":
            return max(0.0, min(1.0, alpha * v + beta))
        if mode == "HardSwish":
            return v * max(0.0, min(1.0, v / 6 + 0.5))
        if mode == "Softplus":
            return math.log(1 + math.exp(v)) if v < 30 else v
        if mode == "Softsign":
            return v / (1 + abs(v))
        if mode == "Mish":
            return v * math.tanh(math.log(1 + math.exp(v)) if v < 30 else v)
        if mode == "Gelu":
            return 0.5 * v * (1 + math.erf(v / math.sqrt(2)))
        if mode == "GeluTanh":
            return 0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v**3)))
        if mode == "ThresholdedRelu":
            return v if v > alpha else 0.0
        if mode == "Shrink":  # alpha: lambd, beta: bias
            return v + beta if v < -alpha else (v - beta if v > alpha else 0.0)
        if mode == "Erf":
            return math.erf(v)
        raise ValueError(mode)

    return np.array([f(float(v)) for v in x.reshape(-1)]).reshape(x.shape)


def reduce_middle(x, mode):
    """``kernels.reduce.reduce_middle``: x (A, K, B) reduced over K, element by element."""
    a_n, k_n, b_n = x.shape
    out = np.zeros((a_n, b_n))
    for a, b in itertools.product(range(a_n), range(b_n)):
        vals = [float(x[a, k, b]) for k in range(k_n)]
        if mode in ("Sum", "Mean"):
            out[a, b] = sum(vals) / (k_n if mode == "Mean" else 1)
        elif mode in ("Max", "Min"):
            out[a, b] = max(vals) if mode == "Max" else min(vals)
        elif mode == "SumSquare":
            out[a, b] = sum(v * v for v in vals)
        else:  # L1
            out[a, b] = sum(abs(v) for v in vals)
    return out


def normalize_rows(x, scale, bias, inner, epsilon, center):
    """``kernels.normalize.normalize_rows``: each row standardised, then scale[g, s // inner]
    and bias[g, s // inner] with g = r % G. Returns (y, mean, inv)."""
    rows, s_n = x.shape
    y = np.zeros((rows, s_n))
    mean, inv = np.zeros(rows), np.zeros(rows)
    for r in range(rows):
        vals = [float(v) for v in x[r]]
        m = sum(vals) / s_n if center else 0.0
        var = sum((v - m) ** 2 for v in vals) / s_n
        mean[r], inv[r] = m, 1 / math.sqrt(var + epsilon)
        g = r % scale.shape[0]
        for s in range(s_n):
            y[r, s] = (vals[s] - m) * inv[r] * scale[g, s // inner] + bias[g, s // inner]
    return y, mean, inv


def _source_coordinate(o, scale, n_in, n_out, coord):
    """The input coordinate of output index o, as the Resize spec writes it (the output
    length in align_corners is ``scale * n_in``, as in ONNX's reference)."""
    width = scale * n_in
    if coord == "half_pixel":
        return (o + 0.5) / scale - 0.5
    if coord == "pytorch_half_pixel":
        return (o + 0.5) / scale - 0.5 if width != 1 else -0.5
    if coord == "align_corners":
        return o * (n_in - 1) / (width - 1) if width != 1 else 0.0
    if coord == "asymmetric":
        return o / scale
    raise ValueError(coord)


def _nearest(v, nearest_mode):
    if nearest_mode == "round_prefer_floor":
        return math.floor(v) if v - math.floor(v) <= 0.5 else math.floor(v) + 1
    if nearest_mode == "round_prefer_ceil":
        return math.floor(v) if v - math.floor(v) < 0.5 else math.floor(v) + 1
    return math.floor(v) if nearest_mode == "floor" else math.ceil(v)


def resize2d(x, out_hw, *, mode, coord, nearest_mode="round_prefer_floor"):
    """Resize of the last two axes of x (N, C, H, W) to ``out_hw``, pixel by pixel:
    nearest, or bilinear on the source coordinate clamped into the image."""
    n, c, h, w = x.shape
    oh, ow = out_hw
    out = np.zeros((n, c, oh, ow), np.float64)
    for i, j in itertools.product(range(oh), range(ow)):
        sy = _source_coordinate(i, oh / h, h, oh, coord)
        sx = _source_coordinate(j, ow / w, w, ow, coord)
        if mode == "nearest":
            yi = min(max(_nearest(sy, nearest_mode), 0), h - 1)
            xi = min(max(_nearest(sx, nearest_mode), 0), w - 1)
            out[:, :, i, j] = x[:, :, yi, xi]
            continue
        sy, sx = min(max(sy, 0.0), h - 1.0), min(max(sx, 0.0), w - 1.0)
        y0, x0 = math.floor(sy), math.floor(sx)
        y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
        fy, fx = sy - y0, sx - x0
        top = x[:, :, y0, x0] * (1 - fx) + x[:, :, y0, x1] * fx
        bottom = x[:, :, y1, x0] * (1 - fx) + x[:, :, y1, x1] * fx
        out[:, :, i, j] = top * (1 - fy) + bottom * fy
    return out


def conv_transpose2d(x, w, b, *, strides, pads, dilations, group, output_padding=(0, 0)):
    """x (N, C, H, W), w (C, M/G, KH, KW), pads (top, left, bottom, right): every input
    pixel scatters its kernel-weighted value onto the output, as the spec defines it."""
    n, c, h, wd = x.shape
    _, mg, kh, kw = w.shape
    sh, sw = strides
    dh, dw = dilations
    pt, pl, pb, pr = pads
    full_h = (h - 1) * sh + (kh - 1) * dh + 1 + output_padding[0]
    full_w = (wd - 1) * sw + (kw - 1) * dw + 1 + output_padding[1]
    full = np.zeros((n, mg * group, full_h, full_w), np.float64)
    cg = c // group
    for ni, ci, i, j in itertools.product(range(n), range(c), range(h), range(wd)):
        g = ci // cg
        for mi, a, e in itertools.product(range(mg), range(kh), range(kw)):
            full[ni, g * mg + mi, i * sh + a * dh, j * sw + e * dw] += (
                x[ni, ci, i, j] * w[ci, mi, a, e]
            )
    out = full[:, :, pt : full_h - pb, pl : full_w - pr]
    if b is not None:
        out = out + b.reshape(1, -1, 1, 1)
    return out


# ``kernels.rnn.ACTIVATIONS``, in its order (a code is an index), as NumPy in float64.
RNN_ACTIVATIONS = {
    "Relu": lambda v, a, b: np.maximum(v, 0),
    "Tanh": lambda v, a, b: np.tanh(v),
    "Sigmoid": lambda v, a, b: 1 / (1 + np.exp(-v)),
    "Affine": lambda v, a, b: a * v + b,
    "LeakyRelu": lambda v, a, b: np.where(v >= 0, v, a * v),
    "ThresholdedRelu": lambda v, a, b: np.where(v > a, v, 0),
    "ScaledTanh": lambda v, a, b: a * np.tanh(b * v),
    "HardSigmoid": lambda v, a, b: np.clip(a * v + b, 0, 1),
    "Elu": lambda v, a, b: np.where(v >= 0, v, a * (np.exp(v) - 1)),
    "Softsign": lambda v, a, b: v / (1 + np.abs(v)),
    "Softplus": lambda v, a, b: np.logaddexp(0, v),
}


def recurrence(cell, xw, rt, bias, h0, seq_lens, reverse, acts, alphas, betas, clip, *,
               c0=None, p=None, linear_before_reset=0, input_forget=0):  # fmt: skip
    """``kernels.rnn``'s recurrences (cell "RNN", "GRU" or "LSTM"), in float64, the
    whole batch a step at a time: row b reads step s (or L_b - 1 - s in reverse) while
    s < L_b and keeps its state after. Returns (y, y_h, y_c); y_c is None but for LSTM."""
    names = list(RNN_ACTIVATIONS)
    t_n, n_n, _ = xw.shape
    d_n, h_n, g_n = rt.shape
    y = np.zeros((t_n, d_n, n_n, h_n))
    y_h = np.zeros((d_n, n_n, h_n))
    y_c = np.zeros((d_n, n_n, h_n))
    rows = np.arange(n_n)
    with np.errstate(over="ignore"):
        for d in range(d_n):

            def act(i, v, d=d):
                v = np.clip(v, -clip, clip)
                return RNN_ACTIVATIONS[names[acts[d, i]]](v, alphas[d, i], betas[d, i])

            wb = bias[d, :g_n].astype(np.float64)
            rb = bias[d, g_n:].astype(np.float64)
            r = rt[d].astype(np.float64)  # (H, G*H)
            h = h0[d].astype(np.float64)
            c = np.zeros_like(h) if c0 is None else c0[d].astype(np.float64)
            for s in range(t_n):
                active = s < seq_lens
                t = np.where(reverse[d], seq_lens - 1 - s, s).clip(0, t_n - 1)
                x = xw[t, rows, d * g_n : (d + 1) * g_n].astype(np.float64)  # (N, G*H)
                if cell == "RNN":
                    new_h, new_c = act(0, x + wb + rb + h @ r), c
                elif cell == "GRU":
                    zr = x[:, : 2 * h_n] + wb[: 2 * h_n] + rb[: 2 * h_n] + h @ r[:, : 2 * h_n]
                    z, rg = act(0, zr[:, :h_n]), act(0, zr[:, h_n:])
                    rh, rbh = r[:, 2 * h_n :], rb[2 * h_n :]
                    if linear_before_reset:
                        n = x[:, 2 * h_n :] + wb[2 * h_n :] + rg * (h @ rh + rbh)
                    else:
                        n = x[:, 2 * h_n :] + wb[2 * h_n :] + rbh + (rg * h) @ rh
                    new_h, new_c = (1 - z) * act(1, n) + z * h, c
                else:
                    pi, po, pf = (np.zeros(h_n),) * 3 if p is None else np.split(p[d], 3)
                    g = x + wb + rb + h @ r
                    gi, go, gf, gc = np.split(g, 4, axis=1)
                    i = act(0, gi + pi * c)
                    f = 1 - i if input_forget else act(0, gf + pf * c)
                    new_c = f * c + i * act(1, gc)
                    o = act(0, go + po * new_c)
                    hn = RNN_ACTIVATIONS[names[acts[d, 2]]](new_c, alphas[d, 2], betas[d, 2])
                    new_h = o * hn
                h = np.where(active[:, None], new_h, h)
                c = np.where(active[:, None], new_c, c)
                y[t[active], d, rows[active]] = h[active]
            empty = seq_lens == 0
            y_h[d] = np.where(empty[:, None], 0, h)
            y_c[d] = np.where(empty[:, None], 0, c)
    return y, y_h, (y_c if cell == "LSTM" else None)
