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
