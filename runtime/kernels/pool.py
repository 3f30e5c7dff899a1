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
from numba.extending import register_jitable

from runtime.kernels.jit import kernel
from runtime.kernels.simd import (
    WIDTH,
    transpose,
    vadd,
    vdiv,
    veven,
    vload,
    vload_first,
    vload_lanes,
    vmax,
    vsplat,
    vstore,
    vstore_first,
    vwhere_lt,
    vzero,
)

if numba.config.DISABLE_JIT:

    def vlane_before(v: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """prev's last lane, then v's lanes but its last: each lane's left neighbour."""
        return np.concatenate((prev[WIDTH - 1 :], v[: WIDTH - 1]))

    def vlane_after(v: np.ndarray, nxt: np.ndarray) -> np.ndarray:
        """v's lanes but its first, then nxt's first lane: each lane's right neighbour."""
        return np.concatenate((v[1:], nxt[:1]))

    def vodd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Lanes 1, 3, 5, ... of a then b (``veven``'s other half)."""
        return np.concatenate((a, b))[1::2].copy()

else:
    from llvmlite import ir
    from numba.extending import intrinsic

    from runtime.kernels.simd import float32xw

    _LANES = ir.VectorType(ir.IntType(32), WIDTH)

    @intrinsic
    def vlane_before(typingctx, v, prev):
        def codegen(context, builder, sig, args):
            order = [2 * WIDTH - 1, *range(WIDTH - 1)]
            return builder.shuffle_vector(args[0], args[1], ir.Constant(_LANES, order))

        return float32xw(v, prev), codegen

    @intrinsic
    def vlane_after(typingctx, v, nxt):
        def codegen(context, builder, sig, args):
            order = [*range(1, WIDTH), WIDTH]
            return builder.shuffle_vector(args[0], args[1], ir.Constant(_LANES, order))

        return float32xw(v, nxt), codegen

    @intrinsic
    def vodd(typingctx, a, b):
        def codegen(context, builder, sig, args):
            order = list(range(1, 2 * WIDTH, 2))
            return builder.shuffle_vector(args[0], args[1], ir.Constant(_LANES, order))

        return float32xw(a, b), codegen


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


SUM_BLOCK = 64 * WIDTH  # floats a plane's vector sums take before they are added in float64


@kernel(inline="always")
def plane_sum(xf, o, S, buf, bo):  # pragma: no cover
    """sum(xf[o : o + S]) in float64: two vectors of float32 sums per block of
    ``SUM_BLOCK`` floats, each block's 16 lanes then added in float64 (through
    buf[bo : bo + WIDTH])."""
    total = 0.0
    for b0 in range(0, S, SUM_BLOCK):
        n = min(SUM_BLOCK, S - b0)
        s0 = vzero()
        s1 = vzero()
        i = 0
        while i + 2 * WIDTH <= n:
            s0 = vadd(s0, vload(xf, o + b0 + i))
            s1 = vadd(s1, vload(xf, o + b0 + i + WIDTH))
            i += 2 * WIDTH
        if i + WIDTH <= n:
            s0 = vadd(s0, vload(xf, o + b0 + i))
            i += WIDTH
        if i < n:
            s1 = vadd(s1, vload_first(xf, o + b0 + i, n - i))
        vstore(buf, bo, vadd(s0, s1))
        for j in range(WIDTH):
            total += buf[bo + j]
    return total


POOL_BUF = 2 * WIDTH * WIDTH + WIDTH  # floats of ``pool_planes``' buffer


@kernel(inline="always")
def pool_planes(xf, o, S, count, use_max, out, oo, buf, bo):  # pragma: no cover
    """out[oo + q] = the mean or max of plane q, xf[o + q*S : o + (q+1)*S], q < count.
    Sixteen planes at a time: each plane's vector of lanes (float32 sums, or maxima
    from -inf, NaNs skipped as ``x > m`` skips them) into a row of buf, the 16 x 16
    block transposed in registers (``transpose``), and its rows added (or maxed): one
    vector of 16 results. Planes of more than ``SUM_BLOCK`` floats are summed one by
    one (``plane_sum``). buf[bo : bo + POOL_BUF] is the kernel's.

    The loops are written out here, not in helpers: an inlined helper that takes an
    array costs a reference count's atomic increment and decrement per call, which
    at a call per plane cost ten times the work."""
    blk = bo + WIDTH * WIDTH
    at = bo + 2 * WIDTH * WIDTH
    for j in range(WIDTH):
        buf[at + j] = j
    lanes = vload(buf, at)
    ninf = vsplat(-np.inf)
    if not use_max and S > SUM_BLOCK:
        for q in range(count):
            out[oo + q] = plane_sum(xf, o + q * S, S, buf, bo) / S
        return
    for g in range(0, count, WIDTH):
        rows = min(WIDTH, count - g)
        for r in range(rows):
            p = o + (g + r) * S
            if use_max:
                if S < WIDTH:
                    v = vmax(ninf, vwhere_lt(lanes, vsplat(S), vload_first(xf, p, S), ninf))
                else:
                    v = ninf
                    i = 0
                    while i + WIDTH <= S:
                        v = vmax(v, vload(xf, p + i))
                        i += WIDTH
                    if i < S:  # the last vector again, overlapping: a max does not mind
                        v = vmax(v, vload(xf, p + S - WIDTH))
            else:
                v = vzero()
                s1 = vzero()
                i = 0
                while i + 2 * WIDTH <= S:
                    v = vadd(v, vload(xf, p + i))
                    s1 = vadd(s1, vload(xf, p + i + WIDTH))
                    i += 2 * WIDTH
                if i + WIDTH <= S:
                    v = vadd(v, vload(xf, p + i))
                    i += WIDTH
                if i < S:
                    s1 = vadd(s1, vload_first(xf, p + i, S - i))
                v = vadd(v, s1)
            vstore(buf, bo + r * WIDTH, v)
        transpose(buf, bo, WIDTH, rows, WIDTH, buf, blk, WIDTH, WIDTH, WIDTH)
        acc = vload(buf, blk)
        for c in range(1, WIDTH):
            if use_max:
                acc = vmax(acc, vload(buf, blk + c * WIDTH))
            else:
                acc = vadd(acc, vload(buf, blk + c * WIDTH))
        if not use_max:
            acc = vdiv(acc, vsplat(S))
        vstore_first(out, oo + g, acc, rows)


@kernel()
def global_pool_rows(x, out, use_max):  # pragma: no cover
    """x: (planes, S) C-contiguous -> out: (planes,), mean or max over S
    (``pool_planes``), in one thread: no parallel region to start."""
    planes, S = x.shape
    buf = np.empty(POOL_BUF, np.float32)
    pool_planes(x.reshape(-1), 0, S, planes, use_max, out, 0, buf, 0)


@kernel(parallel=True)
def _global_pool(x, out, use_max, buf):  # pragma: no cover
    """``global_pool_rows`` in jobs of about ``POOL_JOB`` floats of whole groups of 16
    planes; buf (threads * POOL_BUF) holds each thread's buffer."""
    planes, S = x.shape
    per = max(1, POOL_JOB // max(S, 1) // WIDTH) * WIDTH
    jobs = (planes + per - 1) // per
    xf = x.reshape(-1)
    for j in prange(jobs):
        lo = j * per
        count = min(per, planes - lo)
        t = numba.get_thread_id() * POOL_BUF
        pool_planes(xf, lo * S, S, count, use_max, out, lo, buf, t)


POOL_JOB = 1 << 14  # floats of planes per job of ``_global_pool``


@kernel(inline="always")
def _avg_pool_range(xf, of, lo, hi, H, W, OH, OW, kh, kw, sh, sw):  # pragma: no cover
    """Planes lo..hi-1 of ``avg_pool_rows``: WIDTH outputs of a row at a time, each the
    sum of its kh x kw taps (row by row, left to right: onnxruntime's order) divided
    by their count. Stride 1 loads a vector a tap; stride 2 two, and keeps the even
    lanes (``veven``); a vector that would reach past the row's end loads only what is
    in it (``vload_first``). Other strides: output by output."""
    count = np.float32(kh * kw)
    cv = vsplat(count)
    for p in range(lo, hi):
        for oy in range(OH):
            o = (p * OH + oy) * OW
            r0 = (p * H + oy * sh) * W
            for ox in range(0, OW, WIDTH):
                n = min(WIDTH, OW - ox)
                if sw > 2:
                    for j in range(n):
                        t = np.float32(0.0)
                        for ky in range(kh):
                            r = r0 + ky * W + (ox + j) * sw
                            for kx in range(kw):
                                t += xf[r + kx]
                        of[o + ox + j] = t / count
                    continue
                acc = vzero()
                for ky in range(kh):
                    end = r0 + ky * W + W
                    for kx in range(kw):
                        a0 = r0 + ky * W + ox * sw + kx
                        v = vload(xf, a0) if a0 + WIDTH <= end else vload_first(xf, a0, end - a0)
                        if sw == 2:
                            a1 = a0 + WIDTH
                            if a1 + WIDTH <= end:
                                v1 = vload(xf, a1)
                            else:
                                v1 = vload_first(xf, a1, max(0, end - a1))
                            v = veven(v, v1)
                        acc = vadd(acc, v)
                vstore_first(of, o + ox, vdiv(acc, cv), n)


@kernel()
def avg_pool_rows(x, out, kh, kw, sh, sw):  # pragma: no cover
    """2-D average pooling of x (planes, H, W) -> out (planes, OH, OW) where every
    window lies inside the plane (no padding, dilation 1): ``_avg_pool_range``, in
    one thread."""
    planes, H, W = x.shape
    _, OH, OW = out.shape
    _avg_pool_range(x.reshape(-1), out.reshape(-1), 0, planes, H, W, OH, OW, kh, kw, sh, sw)


@kernel(parallel=True)
def avg_pool_rows_planes(x, out, kh, kw, sh, sw, jobs):  # pragma: no cover
    """``avg_pool_rows`` in ``jobs`` jobs of whole planes."""
    planes, H, W = x.shape
    _, OH, OW = out.shape
    xf = x.reshape(-1)
    of = out.reshape(-1)
    per = (planes + jobs - 1) // jobs
    for j in prange(jobs):
        lo = j * per
        hi = min(lo + per, planes)
        if lo < hi:
            _avg_pool_range(xf, of, lo, hi, H, W, OH, OW, kh, kw, sh, sw)


MAX_POOL_ROWS = 8  # output rows a pass of ``_max_pool_planes`` keeps in its row buffer


@kernel(inline="always")
def _rows_max(xf, src, W, y0, y1, i, ninf):  # pragma: no cover
    """Lane-wise max of rows y0..y1-1 of the plane at xf[src], columns i..i+WIDTH-1
    (those past W: -inf), folded from row y0 down. The second and third rows are
    written out: as a loop beside the partial vector's, the whole vectors' maxima of
    three rows took 3.4 times as long (AMD EPYC Zen 3, AVX2)."""
    n = min(WIDTH, W - i)
    if n == WIDTH:
        v = vload(xf, src + y0 * W + i)
        if y1 - y0 > 1:
            v = vmax(v, vload(xf, src + (y0 + 1) * W + i))
        if y1 - y0 > 2:
            v = vmax(v, vload(xf, src + (y0 + 2) * W + i))
        for y in range(y0 + 3, y1):
            v = vmax(v, vload(xf, src + y * W + i))
    else:
        v = vload_lanes(xf, src + y0 * W + i, ninf, 0, n)
        for y in range(y0 + 1, y1):
            v = vmax(v, vload_lanes(xf, src + y * W + i, ninf, 0, n))
    return v


@kernel(inline="always")
def _cols_max(xf, src, W, y0, y1, i, ninf):  # pragma: no cover
    """``_rows_max`` at input column i; -inf where i is past the row or the window
    holds no row of the plane."""
    if i >= W or y0 >= y1:
        return ninf
    return _rows_max(xf, src, W, y0, y1, i, ninf)


@kernel(inline="always")
def _shifted(v, prev, nxt, s):  # pragma: no cover
    """v's lanes moved by s in {-1, 0, 1}: each lane's neighbour s lanes along, from
    prev before the first lane and nxt past the last."""
    if s < 0:
        return vlane_before(v, prev)
    if s > 0:
        return vlane_after(v, nxt)
    return v


@kernel(inline="always")
def _tap2(ce, pe, ne, co, po, no, d):  # pragma: no cover
    """At stride 2, input column 2j + d of each output j from the even (e) and odd (o)
    columns' vectors, the current one and its neighbours: d even, e moved by d/2; odd,
    o moved by (d-1)/2."""
    if d % 2 == 0:
        return _shifted(ce, pe, ne, d // 2)
    return _shifted(co, po, no, (d - 1) // 2)


@register_jitable
def max_pool_by_lanes(kw: int, sw: int, pw: int, dh: int, dw: int) -> bool:
    """Whether ``_max_pool_planes`` pools in registers (``_max_pool_lanes``): dilation 1,
    stride 1 or 2, and each window's taps within a lane of the vectors next to its
    output's (input columns stride * j + d, d = -pw .. kw - 1 - pw: -1 .. 1 at stride
    1, -2 .. 3 at stride 2). Inception's 3x3 same-size pools, ResNet's and DenseNet's
    stem pool, SqueezeNet's and GoogLeNet's ceil-mode ones, every 2x2 pool at stride 2."""
    if dh != 1 or dw != 1 or pw < 0:
        return False
    if sw == 1:
        return pw <= 1 and kw - 1 - pw <= 1
    if sw == 2:
        return pw <= 2 and kw - 1 - pw <= 3
    return False


@kernel(inline="always")
def _max_pool_lanes(xf, of, lo, hi, H, W, OH, OW, ph, pw, kh, kw, sh, sw):  # pragma: no cover
    """Planes lo..hi-1 with no row buffer (``max_pool_by_lanes`` says when): each vector's
    maxima down its window's rows in registers (any kh, sh and ph), then across by lane
    shifts of it and its neighbours (``vlane_before``, ``vlane_after``); at stride 2 a
    vector of outputs reads two of inputs, split into even and odd columns (``veven``,
    ``vodd``): SqueezeNet's stem pool 850 -> 460 us, ResNet's 840 -> 470 against the
    row buffer (AMD EPYC Zen 3, AVX2, one thread). Rows, then taps left to right, are
    folded in the order of the buffer's two passes, so a NaN goes the same way. Taps are
    written out, not looped over: a loop of vectors beside branches is slow to compile
    into registers (``_rows_max``)."""
    ninf = vsplat(-np.inf)
    for p in range(lo, hi):
        src = p * H * W
        for oy in range(OH):
            ys = oy * sh - ph
            y0 = max(ys, 0)
            y1 = min(ys + kh, H)
            o = (p * OH + oy) * OW
            if sw == 1:
                prev = ninf
                cur = _cols_max(xf, src, W, y0, y1, 0, ninf)
                for ox in range(0, OW, WIDTH):
                    nxt = _cols_max(xf, src, W, y0, y1, ox + WIDTH, ninf)
                    m = _shifted(cur, prev, nxt, -pw)  # kw <= 3: taps written out
                    if kw > 1:
                        m = vmax(m, _shifted(cur, prev, nxt, 1 - pw))
                    if kw > 2:
                        m = vmax(m, _shifted(cur, prev, nxt, 2 - pw))
                    vstore_first(of, o + ox, m, min(WIDTH, OW - ox))
                    prev = cur
                    cur = nxt
            else:
                pe = ninf
                po = ninf
                a = _cols_max(xf, src, W, y0, y1, 0, ninf)
                b = _cols_max(xf, src, W, y0, y1, WIDTH, ninf)
                ce = veven(a, b)
                co = vodd(a, b)
                for ox in range(0, OW, WIDTH):
                    i = 2 * (ox + WIDTH)
                    a = _cols_max(xf, src, W, y0, y1, i, ninf)
                    b = _cols_max(xf, src, W, y0, y1, i + WIDTH, ninf)
                    ne = veven(a, b)
                    no = vodd(a, b)
                    m = _tap2(ce, pe, ne, co, po, no, -pw)  # kw <= 6: taps written out
                    if kw > 1:
                        m = vmax(m, _tap2(ce, pe, ne, co, po, no, 1 - pw))
                    if kw > 2:
                        m = vmax(m, _tap2(ce, pe, ne, co, po, no, 2 - pw))
                    if kw > 3:
                        m = vmax(m, _tap2(ce, pe, ne, co, po, no, 3 - pw))
                    if kw > 4:
                        m = vmax(m, _tap2(ce, pe, ne, co, po, no, 4 - pw))
                    if kw > 5:
                        m = vmax(m, _tap2(ce, pe, ne, co, po, no, 5 - pw))
                    vstore_first(of, o + ox, m, min(WIDTH, OW - ox))
                    pe = ce
                    po = co
                    ce = ne
                    co = no


@kernel(inline="always")
def _max_pool_planes(
    xf, of, lo, hi, H, W, OH, OW, tmp, rw, ph, pw, kh, kw, sh, sw, dh, dw
):  # pragma: no cover
    """Planes lo..hi-1, ``MAX_POOL_ROWS`` output rows a pass: first each row's lane-wise
    max of its window's input rows (those inside the plane) into its row of tmp (rw
    floats a row, from a 64-byte boundary: input column 0 at the first multiple of
    WIDTH from pw on, the pad columns before it), -inf around it; then across those
    rows, each vector of outputs from kw loads (stride 2: the even lanes of two,
    ``veven``). Two passes, and whole vectors stored on vector boundaries: the stem
    pool of ResNet ran five times slower when each row's loads straddled the
    unaligned vectors just stored. Loops written out, as in ``pool_planes``."""
    if max_pool_by_lanes(kw, sw, pw, dh, dw):
        _max_pool_lanes(xf, of, lo, hi, H, W, OH, OW, ph, pw, kh, kw, sh, sw)
        return
    ninf = vsplat(-np.inf)
    full = W - W % WIDTH
    a = (-(tmp.ctypes.data // 4)) % WIDTH  # tmp[a] starts a 64-byte line
    at = (pw + WIDTH - 1) // WIDTH * WIDTH  # input column 0 in a row
    base = at - pw  # padded column 0 in a row
    for p in range(lo, hi):
        for r0 in range(0, OH, MAX_POOL_ROWS):
            r1 = min(r0 + MAX_POOL_ROWS, OH)
            for oy in range(r0, r1):
                t = a + (oy - r0) * rw + at
                first = True
                for ky in range(kh):
                    y = oy * sh - ph + ky * dh
                    if y < 0 or y >= H:
                        continue
                    src = (p * H + y) * W
                    for i in range(0, full, WIDTH):
                        v = vload(xf, src + i)
                        if not first:
                            v = vmax(vload(tmp, t + i), v)
                        vstore(tmp, t + i, v)
                    if full < W:
                        v = vload_first(xf, src + full, W - full)
                        if not first:
                            v = vmax(vload_first(tmp, t + full, W - full), v)
                        vstore_first(tmp, t + full, v, W - full)
                    first = False
                if first:  # no row of the window inside the plane
                    for i in range(0, W, WIDTH):
                        vstore_first(tmp, t + i, ninf, min(WIDTH, W - i))
            for oy in range(r0, r1):
                o = (p * OH + oy) * OW
                t = a + (oy - r0) * rw + base
                for ox in range(0, OW, WIDTH):
                    n = min(WIDTH, OW - ox)
                    b = t + ox * sw
                    m = ninf
                    if sw == 1:
                        m = vload(tmp, b)
                        for kx in range(1, kw):
                            m = vmax(m, vload(tmp, b + kx * dw))
                    elif sw == 2:
                        m = veven(vload(tmp, b), vload(tmp, b + WIDTH))
                        for kx in range(1, kw):
                            q = b + kx * dw
                            m = vmax(m, veven(vload(tmp, q), vload(tmp, q + WIDTH)))
                    else:  # a wider stride: output by output
                        for j in range(n):
                            best = -np.inf
                            for kx in range(kw):
                                v = tmp[b + j * sw + kx * dw]
                                if v > best:
                                    best = v
                            of[o + ox + j] = best
                        continue
                    vstore_first(of, o + ox, m, n)


def max_pool_row_floats(w: int, ow: int, pw: int, kw: int, sw: int, dw: int) -> int:
    """Floats of a row of ``max_pool_rows``' buffer for input width w and output width ow,
    a multiple of WIDTH: the padded row the windows span, its input columns from a
    multiple of WIDTH, and room for vector reads past it (a thread's buffer:
    ``MAX_POOL_ROWS`` rows and WIDTH floats to start them on a 64-byte boundary)."""
    at = (pw + WIDTH - 1) // WIDTH * WIDTH
    span = max(at + w, at - pw + (ow + WIDTH - 1) // WIDTH * WIDTH * sw + (kw - 1) * dw)
    return (span + 3 * WIDTH - 1) // WIDTH * WIDTH


@kernel()
def max_pool_rows(x, out, tmp, ph, pw, kh, kw, sh, sw, dh, dw):  # pragma: no cover
    """2-D max pooling of x (planes, H, W) with begin pads (ph, pw) -> out (planes, OH,
    OW), plane by plane, in vectors (``_max_pool_planes``); tmp (threads, MAX_POOL_ROWS
    * rw + WIDTH), rw = ``max_pool_row_floats``, row 0 used (-inf first)."""
    planes, H, W = x.shape
    _, OH, OW = out.shape
    t = tmp[0]
    t[:] = -np.inf
    rw = (tmp.shape[1] - WIDTH) // MAX_POOL_ROWS
    _max_pool_planes(
        x.reshape(-1), out.reshape(-1), 0, planes, H, W, OH, OW, t, rw, ph, pw, kh, kw, sh,
        sw, dh, dw,
    )  # fmt: skip


@kernel(parallel=True)
def max_pool_rows_planes(x, out, tmp, ph, pw, kh, kw, sh, sw, dh, dw):  # pragma: no cover
    """``max_pool_rows`` with a plane per job, each thread its own row buffer (tmp's
    rows: -inf first)."""
    planes, H, W = x.shape
    _, OH, OW = out.shape
    tmp[:] = -np.inf
    xf = x.reshape(-1)
    of = out.reshape(-1)
    rw = (tmp.shape[1] - WIDTH) // MAX_POOL_ROWS
    for p in prange(planes):
        t = tmp[numba.get_thread_id()]
        _max_pool_planes(xf, of, p, p + 1, H, W, OH, OW, t, rw, ph, pw, kh, kw, sh, sw, dh, dw)


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
