"""A whole small network in one compiled call: a flat op table run over groups of images.

``runtime/compiled.py`` compiles a plan (a chain of Conv, pooling, Gemm, activations,
Softmax...) into ``code``: one row of ``REC`` int64 fields per op. ``run_images``
then runs the table inside numba on a group of images at a time (``_run_group``),
op by op: no Python work per op, and the group's activations stay in a small
per-thread workspace (``ws``) that fits the core's cache. A Gemm takes the whole
group, so its weights are read once for four images (LeNet-5's first dense layer:
2.23 us an image alone, 1.02 in groups of four); every other op runs one image after
another. Images are split into contiguous chunks that threads take in turn; each
image writes only its own output row.

Fields of a row (``F_*`` below): the op code, the workspace offsets of its source
and destination, and the op's sizes and the offsets of its parameters in ``fpool``
(float32: weights, biases, scales) and ``ipool`` (int64: tap offsets).

Convolution (``taps.taps``): ``acc[m, p] = sum_t w[m, t] * src[offs[t] + p]``. For a
stride-1 convolution, ``src`` is the zero-padded input and ``offs[t]`` the flat
offset of tap t = (c, ky, kx), ``c*Hp*Wp + ky*Wp + kx``: output row oy lives at
``p = oy*Wp + ox``, so one long contiguous loop covers every output position (the
columns ox >= OW are computed and dropped). Otherwise ``src`` holds im2col columns
and ``offs[t] = t*P``. A Gemm runs the engine's GEMM micro-kernel on the group
(``gemm.gemm_f32_6x16_tile``, ``gemm.gemm_f32_6x32_tile``).
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from runtime.kernels.activation import activate, softmax_row
from runtime.kernels.gemm import MR, gemm_f32_6x16_tile, gemm_f32_6x32_tile
from runtime.kernels.jit import kernel
from runtime.kernels.pool import _max_pool_lanes, max_pool_by_lanes, pool_dense
from runtime.kernels.taps import taps

REC = 32  # int64 fields per op row

# op codes
OP_CONV, OP_POOL, OP_GEMM, OP_ACT, OP_AFFINE, OP_SOFTMAX = 1, 2, 3, 4, 5, 6

# fields shared by every op
F_OP, F_SRC, F_DST = 0, 1, 2
# Conv
(
    C_CIN,
    C_H,
    C_W,
    C_COUT,
    C_KH,
    C_KW,
    C_SH,
    C_SW,
    C_PH,
    C_PW,
    C_DH,
    C_DW,
    C_OH,
    C_OW,
    C_ACT,
    C_WOFF,
    C_BOFF,
    C_SCALE,
    C_SHIFT,
    C_ALPHA,
    C_TAPS,
    C_FLAT,
    C_HP,
    C_WP,
    C_PAD,
    C_ACC,
    C_POOL,
    C_PKH,
    C_PKW,
) = range(3, 32)
POOL_NONE, POOL_AVG, POOL_MAX = 0, 1, 2  # C_POOL: a tiling pool fused into the conv
# pooling
(
    P_C,
    P_H,
    P_W,
    P_OH,
    P_OW,
    P_KH,
    P_KW,
    P_SH,
    P_SW,
    P_PH,
    P_PW,
    P_DH,
    P_DW,
    P_MAX,
    P_INCL,
    P_EH,
    P_EW,
    P_TMP,
) = range(3, 21)
# Gemm: y = act(x @ w + b), w (K, N) packed in panels of G_NR columns (``gemm.pack_b``)
G_K, G_N, G_WOFF, G_BOFF, G_ACT, G_ALPHA, G_NR = range(3, 10)
# elementwise activation, in place
A_SIZE, A_ACT, A_ALPHA = range(3, 6)
# per-channel y = x * scale + shift (an unfused BatchNormalization)
B_C, B_S, B_SCALE, B_SHIFT = range(3, 7)
# Softmax / LogSoftmax over the whole image vector
S_SIZE, S_LOG = range(3, 5)

# The per-op helpers below are inlined into run_images at numba's IR level
# (inline="always"): compiled as functions of their own, each level of calls was
# optimized and turned into machine code again inside its caller, with a Python entry
# point each. LeNet-5's first call from an empty cache: 15.8 s of CPU, 11.7 inlined
# (benchmarks/cold_start.py), the same speed after it.


@kernel(inline="always")
def _conv2d_nchw_taps(r, src, dst, ws, ipool, fpool):  # pragma: no cover
    """One image's convolution: src and dst are its input and output in ``ws``."""
    cin, H, W, cout = r[C_CIN], r[C_H], r[C_W], r[C_COUT]
    kh, kw, sh, sw = r[C_KH], r[C_KW], r[C_SH], r[C_SW]
    ph, pw, dh, dw = r[C_PH], r[C_PW], r[C_DH], r[C_DW]
    oh_, ow_, hp, wp = r[C_OH], r[C_OW], r[C_HP], r[C_WP]
    src = src[: cin * H * W]
    dst = dst[: cout * oh_ * ow_]
    pad = ws[r[C_PAD] :]
    T = cin * kh * kw
    offs = ipool[r[C_TAPS] : r[C_TAPS] + T]
    if r[C_FLAT] == 1 and hp == H and wp == W:  # stride 1, no padding: read x itself
        pad = src
        L = (oh_ - 1) * wp + ow_
        rs = wp
    elif r[C_FLAT] == 1:  # stride 1: zero-padded copy (cin, hp, wp), output rows of wp
        for i in range(cin * hp * wp):
            pad[i] = 0.0
        x0, x1 = max(0, -pw), min(W, wp - pw)  # input columns that land in the copy
        for c in range(cin):  # loops: numba's slice assignment costs 4x more here
            for iy in range(max(0, -ph), min(H, hp - ph)):
                to = pad[(c * hp + iy + ph) * wp + pw + x0 : (c * hp + iy + ph) * wp + pw + x1]
                fro = src[(c * H + iy) * W + x0 : (c * H + iy) * W + x1]
                for i in range(x1 - x0):
                    to[i] = fro[i]
        L = (oh_ - 1) * wp + ow_
        rs = wp
    else:  # im2col columns (T, oh_*ow_)
        P = oh_ * ow_
        t = 0
        for c in range(cin):
            for ky in range(kh):
                for kx in range(kw):
                    col = pad[t * P : (t + 1) * P]
                    for oy in range(oh_):
                        iy = oy * sh - ph + ky * dh
                        for ox in range(ow_):
                            ix = ox * sw - pw + kx * dw
                            ok = 0 <= iy < H and 0 <= ix < W
                            col[oy * ow_ + ox] = src[(c * H + iy) * W + ix] if ok else 0.0
                    t += 1
        L = P
        rs = ow_
    stride = oh_ * rs
    acc = ws[r[C_ACC] : r[C_ACC] + cout * stride]
    w = fpool[r[C_WOFF] : r[C_WOFF] + cout * T]
    taps(pad, w, offs, acc, cout, T, L, stride)
    act = r[C_ACT]
    alpha, beta = fpool[r[C_ALPHA]], fpool[r[C_ALPHA] + 1]
    for m in range(cout):
        sc = fpool[r[C_SCALE] + m] if r[C_SCALE] >= 0 else np.float32(1.0)
        sf = fpool[r[C_SHIFT] + m] if r[C_SHIFT] >= 0 else np.float32(0.0)
        # In place over the channel's whole accumulator (one long vector loop, the
        # dropped columns included), then the rows are packed into the output.
        a = acc[m * stride : m * stride + L]
        activate(a, L, fpool[r[C_BOFF] + m], act, alpha, beta, sc, sf)
        if r[C_POOL] != POOL_NONE:
            _pool_rows(a, dst, m, rs, oh_, ow_, r[C_PKH], r[C_PKW], r[C_POOL] == POOL_MAX)
        else:
            for oy in range(oh_):
                row = dst[(m * oh_ + oy) * ow_ : (m * oh_ + oy + 1) * ow_]
                for ox in range(ow_):
                    row[ox] = a[oy * rs + ox]


@kernel(inline="always")
def _pool_rows(a, dst, m, rs, oh_, ow_, kh, kw, is_max):  # pragma: no cover
    """Channel m's conv output (rows of stride rs in ``a``) pooled by kh x kw windows
    that tile it, straight into dst (m, oh_/kh, ow_/kw): no packed copy in between.

    ``pool.pool_dense`` computes the same through a row buffer; the 2x2 case unrolled
    here made LeNet-5 20.0 us an image against 25.1 us with (an earlier) pool_dense,
    and 1.44 against 1.77 ms at batch 64 with today's (one thread, machine shared).
    """
    ph_, pw_ = oh_ // kh, ow_ // kw
    inv = np.float32(1.0 / (kh * kw))
    for py in range(ph_):
        o = dst[(m * ph_ + py) * pw_ : (m * ph_ + py + 1) * pw_]
        top = a[py * kh * rs :]
        if kh == 2 and kw == 2:  # the common case, unrolled
            r0, r1 = top[:ow_], top[rs : rs + ow_]
            for px in range(pw_):
                u, v = r0[2 * px], r0[2 * px + 1]
                s, t = r1[2 * px], r1[2 * px + 1]
                o[px] = max(max(u, v), max(s, t)) if is_max else (u + v + s + t) * inv
            continue
        for px in range(pw_):
            best = top[px * kw]
            total = np.float32(0.0)
            for i in range(kh):
                for j in range(kw):
                    v = top[i * rs + px * kw + j]
                    best = max(best, v)
                    total += v
            o[px] = best if is_max else total * inv


@kernel(inline="always")
def _pool(r, src, dst, ws):  # pragma: no cover
    """One image's pooling: src and dst are its input and output in ``ws``."""
    C, H, W, oh_, ow_ = r[P_C], r[P_H], r[P_W], r[P_OH], r[P_OW]
    kh, kw, sh, sw, ph, pw = r[P_KH], r[P_KW], r[P_SH], r[P_SW], r[P_PH], r[P_PW]
    dh, dw, eh, ew = r[P_DH], r[P_DW], r[P_EH], r[P_EW]
    is_max, incl = r[P_MAX] == 1, r[P_INCL] == 1
    src = src[: C * H * W]
    dst = dst[: C * oh_ * ow_]
    dense = ph == 0 and pw == 0 and (oh_ - 1) * sh + (kh - 1) * dh < H
    if dense and (ow_ - 1) * sw + (kw - 1) * dw < W:  # the step path's kernel
        tmp = ws[r[P_TMP] : r[P_TMP] + H * ow_]
        pool_dense(src, dst, tmp, C, H, W, oh_, ow_, kh, kw, sh, sw, dh, dw, is_max)
        return
    if is_max and max_pool_by_lanes(kw, sw, pw, dh, dw):  # the step path's, no buffer
        _max_pool_lanes(src, dst, 0, C, H, W, oh_, ow_, ph, pw, kh, kw, sh, sw)
        return
    # Other windows that reach into the padding: pool._max_pool3d and _avg_pool3d's
    # arithmetic on one image, without their parallel loop over planes.
    for c in range(C):
        plane = src[c * H * W : (c + 1) * H * W]
        for oy in range(oh_):
            for ox in range(ow_):
                best = -np.inf
                total = np.float32(0.0)
                count = 0
                padded = 0
                for ky in range(kh):
                    yp = oy * sh + ky * dh  # padded coordinates
                    if yp >= eh:
                        continue
                    y = yp - ph
                    for kx in range(kw):
                        xp = ox * sw + kx * dw
                        if xp >= ew:
                            continue
                        padded += 1
                        x = xp - pw
                        if 0 <= y < H and 0 <= x < W:
                            v = plane[y * W + x]
                            total += v
                            count += 1
                            if v > best:
                                best = v
                o = (c * oh_ + oy) * ow_ + ox
                if is_max:
                    dst[o] = best
                else:
                    div = padded if incl else count
                    dst[o] = total / div if div > 0 else 0.0


@kernel(inline="always")
def _gemm_f32_group(r, ws, fpool, G, a):  # pragma: no cover
    """The group's G images at once (image g's vectors at g*a from the regions'
    starts), on the engine's GEMM micro-kernel: each panel of w is read once for the
    group, and every output is the same chain of fused multiply-adds wherever it lies
    (``kernels/gemm``)."""
    K, N, NR = r[G_K], r[G_N], r[G_NR]
    panels = (N + NR - 1) // NR
    wp = fpool[r[G_WOFF] : r[G_WOFF] + panels * K * NR]
    x, y = ws[r[F_SRC] :], ws[r[F_DST] :]
    ap = np.zeros(K * MR, np.float32)  # the group's vectors as one packed row block
    for k in range(K):
        for g in range(G):
            ap[k * MR + g] = x[g * a + k]
    t = np.empty(MR * NR, np.float32)
    b = fpool[r[G_BOFF] : r[G_BOFF] + N]
    for p in range(panels):
        if NR == 16:
            gemm_f32_6x16_tile(ap, wp[p * K * NR : (p + 1) * K * NR], K, t)
        else:
            gemm_f32_6x32_tile(ap, wp[p * K * NR : (p + 1) * K * NR], K, t)
        j0 = p * NR
        for g in range(G):
            yg = y[g * a + j0 : g * a + min(N, j0 + NR)]
            for j in range(yg.shape[0]):
                yg[j] = t[g * NR + j] + b[j0 + j]
    for g in range(G):
        activate(
            y[g * a : g * a + N],
            N,
            np.float32(0.0),
            r[G_ACT],
            fpool[r[G_ALPHA]],
            fpool[r[G_ALPHA] + 1],
            np.float32(1.0),
            np.float32(0.0),
        )


@kernel(inline="always")
def _softmax(r, x, y):  # pragma: no cover
    n = r[S_SIZE]
    softmax_row(x[:n], y[:n], r[S_LOG] == 1)


@kernel(inline="always")
def _run_group(x, out, code, ipool, fpool, ws, a):  # pragma: no cover
    """Every op of ``code`` on a group of G images, op by op: x (G, in) -> out (G, out).

    Image g's activations lie at g*a from the start of each activation region; a
    Gemm takes the whole group at once, every other op one image after another.
    """
    G = x.shape[0]
    # Element loops, not slice assignments: numba compiles a slice assignment's
    # broadcasting and its error message (2 s of LeNet-5's first call).
    n_in, n_out = x.shape[1], out.shape[1]
    for g in range(G):
        for i in range(n_in):  # region 0 starts at offset 0
            ws[g * a + i] = x[g, i]
    for k in range(code.shape[0]):
        r = code[k]
        op = r[F_OP]
        if op == OP_GEMM:
            _gemm_f32_group(r, ws, fpool, G, a)
            continue
        for g in range(G):
            src, dst = ws[r[F_SRC] + g * a :], ws[r[F_DST] + g * a :]
            if op == OP_CONV:
                _conv2d_nchw_taps(r, src, dst, ws, ipool, fpool)
            elif op == OP_POOL:
                _pool(r, src, dst, ws)
            elif op == OP_ACT:  # in place
                activate(
                    src,
                    r[A_SIZE],
                    np.float32(0.0),
                    r[A_ACT],
                    fpool[r[A_ALPHA]],
                    fpool[r[A_ALPHA] + 1],
                    np.float32(1.0),
                    np.float32(0.0),
                )
            elif op == OP_AFFINE:  # in place
                C, S = r[B_C], r[B_S]
                for c in range(C):
                    activate(
                        src[c * S : (c + 1) * S],
                        S,
                        np.float32(0.0),
                        np.int64(0),  # not a literal 0: that compiles activate twice
                        np.float32(0.0),
                        np.float32(0.0),
                        fpool[r[B_SCALE] + c],
                        fpool[r[B_SHIFT] + c],
                    )
            elif op == OP_SOFTMAX:
                _softmax(r, src, dst)
    last = code[code.shape[0] - 1][F_DST]
    for g in range(G):
        for i in range(n_out):
            out[g, i] = ws[last + g * a + i]


@kernel(parallel=True)
def run_images(x, out, code, ipool, fpool, ws, a, group, chunks):  # pragma: no cover
    """x (N, in) -> out (N, out) in ``chunks`` contiguous chunks of images, each run
    in groups of ``group`` images (``_run_group``).

    The caller schedules chunks dynamically (``numba.parallel_chunksize(1)``): a
    thread takes the next chunk when it is done with one, so a core that the OS
    gives to another process for a while delays only its current chunk. A thread
    runs one chunk at a time, in its own workspace row ``ws[thread id]``.
    """
    n = x.shape[0]
    for c in prange(chunks):
        w = ws[numba.get_thread_id()]
        i1 = (c + 1) * n // chunks
        for i in range(c * n // chunks, i1, group):
            j = min(i1, i + group)
            _run_group(x[i:j], out[i:j], code, ipool, fpool, w, a)


@kernel()
def run_images_serial(x, out, code, ipool, fpool, ws, a, group):  # pragma: no cover
    """``run_images`` on the calling thread only (one image: no thread start-up)."""
    for i in range(0, x.shape[0], group):
        j = min(x.shape[0], i + group)
        _run_group(x[i:j], out[i:j], code, ipool, fpool, ws[0], a)
