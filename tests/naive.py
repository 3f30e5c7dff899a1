"""Slow, obvious NumPy twins of the numba kernels: loops that read like the ONNX spec."""

from __future__ import annotations

import itertools

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
