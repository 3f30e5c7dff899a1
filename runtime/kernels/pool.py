"""Max and average pooling kernels over 3-D spatial windows (1-D and 2-D are D=1, H=1).

Every kernel computes one (n, c) plane per prange iteration, so no two iterations
write the same element. Inputs are float32 (N*C, D, H, W) with no padding; the
window bounds do the padding arithmetic.

For output position o on an axis with stride s, dilation d, kernel k and begin
pad p, the window taps are ``i = o*s - p + j*d`` for j in 0..k-1; taps outside
[0, size) are skipped (max) or, with ``count_include_pad``, counted as zeros up to
the padded extent (average).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.jit import kernel


@kernel(parallel=True)
def _max_pool3d(x, out, idx, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw):  # pragma: no cover
    planes, D, H, W = x.shape
    _, OD, OH, OW = out.shape
    for p in prange(planes):
        base = p * D * H * W
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    best = -np.inf
                    best_i = -1
                    for a in range(kd):
                        z = od * sd - pd + a * dd
                        if z < 0 or z >= D:
                            continue
                        for b in range(kh):
                            y = oh * sh - ph + b * dh
                            if y < 0 or y >= H:
                                continue
                            for c in range(kw):
                                xx = ow * sw - pw + c * dw
                                if xx < 0 or xx >= W:
                                    continue
                                v = x[p, z, y, xx]
                                if v > best or best_i < 0:
                                    best = v
                                    best_i = base + (z * H + y) * W + xx
                    out[p, od, oh, ow] = best
                    idx[p, od, oh, ow] = best_i


@kernel(parallel=True)
def _avg_pool3d(
    x, out, kd, kh, kw, sd, sh, sw, pd, ph, pw, dd, dh, dw, ed, eh, ew, include_pad
):  # pragma: no cover
    """(ed, eh, ew): the padded extent per axis, size + begin pad + end pad."""
    planes, D, H, W = x.shape
    _, OD, OH, OW = out.shape
    for p in prange(planes):
        for od in range(OD):
            for oh in range(OH):
                for ow in range(OW):
                    total = 0.0
                    count = 0
                    padded = 0
                    for a in range(kd):
                        zp = od * sd + a * dd  # position in padded coordinates
                        if zp >= ed:
                            continue
                        z = zp - pd
                        for b in range(kh):
                            yp = oh * sh + b * dh
                            if yp >= eh:
                                continue
                            y = yp - ph
                            for c in range(kw):
                                xp = ow * sw + c * dw
                                if xp >= ew:
                                    continue
                                padded += 1
                                xx = xp - pw
                                if 0 <= z < D and 0 <= y < H and 0 <= xx < W:
                                    total += x[p, z, y, xx]
                                    count += 1
                    div = padded if include_pad else count
                    out[p, od, oh, ow] = total / div if div > 0 else 0.0


@kernel(parallel=True)
def _global_pool(x, out, use_max):  # pragma: no cover
    """x: (planes, S) -> out: (planes,), mean or max over S."""
    planes, S = x.shape
    for p in prange(planes):
        if use_max:
            m = -np.inf
            for i in range(S):
                if x[p, i] > m:
                    m = x[p, i]
            out[p] = m
        else:
            t = 0.0
            for i in range(S):
                t += x[p, i]
            out[p] = t / S


@kernel(inline="always")
def _reduce_row(o, row, n, step, first, is_max):  # pragma: no cover
    """o[i] = row[i*step] (first), else max or sum of o[i] and row[i*step], for i < n.
    Steps 1 and 2 get loops of their own: a constant stride vectorises."""
    if first:
        if step == 1:
            for i in range(n):
                o[i] = row[i]
        elif step == 2:
            for i in range(n):
                o[i] = row[2 * i]
        else:
            for i in range(n):
                o[i] = row[i * step]
    elif is_max:
        if step == 1:
            for i in range(n):
                o[i] = max(o[i], row[i])
        elif step == 2:
            for i in range(n):
                o[i] = max(o[i], row[2 * i])
        else:
            for i in range(n):
                o[i] = max(o[i], row[i * step])
    elif step == 1:
        for i in range(n):
            o[i] += row[i]
    elif step == 2:
        for i in range(n):
            o[i] += row[2 * i]
    else:
        for i in range(n):
            o[i] += row[i * step]


@kernel()
def pool_dense(
    src, dst, tmp, C, H, W, oh_, ow_, kh, kw, sh, sw, dh, dw, is_max
):  # pragma: no cover
    """C planes (flat) whose every window lies inside the input, with no bounds checks,
    in two separable passes: across each input row that windows touch (into ``tmp``,
    rows of ow_), then down those rows. tmp holds (oh_-1)*sh + (kh-1)*dh + 1 rows."""
    inv = np.float32(1.0 / (kh * kw))
    rows = (oh_ - 1) * sh + (kh - 1) * dh + 1
    for c in range(C):
        for y in range(rows):
            t = tmp[y * ow_ : (y + 1) * ow_]
            for kx in range(kw):
                _reduce_row(t, src[(c * H + y) * W + kx * dw :], ow_, sw, kx == 0, is_max)
        for oy in range(oh_):
            o = dst[(c * oh_ + oy) * ow_ : (c * oh_ + oy + 1) * ow_]
            for ky in range(kh):
                _reduce_row(o, tmp[(oy * sh + ky * dh) * ow_ :], ow_, 1, ky == 0, is_max)
            if not is_max:
                for ox in range(ow_):
                    o[ox] *= inv


def pool_rows(out_hw: tuple[int, ...], pool: np.ndarray) -> int:
    """Floats of ``pool_dense``'s row buffer for an output (OH, OW) and a window
    (kh, kw, sh, sw), dilation 1; at least one."""
    kh, _, sh, _ = (int(v) for v in pool)
    return max(1, ((out_hw[0] - 1) * sh + kh) * out_hw[1]) if kh > 0 else 1


@kernel(parallel=True)
def pool_dense_planes(x, out, tmp, kh, kw, sh, sw, dh, dw, is_max):  # pragma: no cover
    """x (planes, H, W) -> out (planes, OH, OW) with ``pool_dense``, a plane per
    iteration; tmp (threads, rows*OW) is each thread's own."""
    planes, H, W = x.shape
    _, OH, OW = out.shape
    xf = x.reshape(planes, H * W)
    of = out.reshape(planes, OH * OW)
    for p in prange(planes):
        t = tmp[numba.get_thread_id()]
        # np.int64(1), not 1: a literal argument compiles pool_dense once more
        pool_dense(xf[p], of[p], t, np.int64(1), H, W, OH, OW, kh, kw, sh, sw, dh, dw, is_max)


@kernel(parallel=True)
def max_pool_padded_planes(x, out, pad, tmp, ph, pw, kh, kw, sh, sw, dh, dw):  # pragma: no cover
    """Max pooling of x (planes, H, W) with begin pads (ph, pw) -> out (planes, OH, OW):
    each plane is copied into its thread's -inf bordered plane pad (threads, HP*WP),
    HP = (OH-1)*sh + (kh-1)*dh + 1 and WP likewise, where every window is dense
    (``pool_dense``). tmp (threads, rows*OW) is each thread's own."""
    planes, H, W = x.shape
    _, OH, OW = out.shape
    HP = (OH - 1) * sh + (kh - 1) * dh + 1
    WP = (OW - 1) * sw + (kw - 1) * dw + 1
    xf = x.reshape(planes, H * W)
    of = out.reshape(planes, OH * OW)
    for p in prange(planes):
        t = numba.get_thread_id()
        q = pad[t]
        for y in range(HP):
            yy = y - ph
            row = q[y * WP : (y + 1) * WP]
            if yy < 0 or yy >= H:
                for xx in range(WP):  # a loop: a slice assignment compiles broadcasting
                    row[xx] = -np.inf
                continue
            src = xf[p, yy * W : (yy + 1) * W]
            for xx in range(WP):
                u = xx - pw
                row[xx] = src[u] if u >= 0 and u < W else -np.inf
        is_max = np.bool_(True)  # not literals: pool_dense compiles once for all callers
        pool_dense(q, of[p], tmp[t], np.int64(1), HP, WP, OH, OW, kh, kw, sh, sw, dh, dw, is_max)
