"""``matmul``: BLAS sgemm on blocks of the output, run on numba's own threads.

One thread pool: numba's parallel kernels (im2col, Winograd, epilogues)
own the cores, and their OpenMP threads keep spinning for a while after each
parallel region. A GEMM computed by a second pool of threads in between (BLAS's
own, or Python worker threads) fights those spinning threads for the two cores:
AlexNet at batch 8 took 137 ms that way against 106 ms with spinning disabled.
So the GEMM runs inside a numba ``prange``: each iteration calls the BLAS library
that numpy loaded (``cblas_sgemm``, found through threadpoolctl) on one block of the
output, single-threaded (the session limits BLAS to one thread around its runs).

Blocks: a batch of products (a batched MatMul) gives one job per product;
a single product is cut into ranges of rows or columns of the output, whichever
axis is longer, one per thread. Every job writes its own part of ``out``.
Operands may be transposed views (a Gemm's ``transB``): the strides decide
CblasTrans and the leading dimension. Without a usable cblas_sgemm, numpy's
matmul runs instead.

A fully connected layer at a small batch (``x @ W.T``, at most ``SMALL_BATCH``
rows) is bound by reading W, not by arithmetic: ``small_batch_nt`` streams each
block of four rows of W once for all the batch's rows, four rows of x at a time
(``dot_rows_4``). It reached 4.5 ms for AlexNet's 4096 x 9216 layer at batch 1,
where sgemm took 15.6 ms (reading W alone takes 6.2 ms with numpy's ``sum``); at
batch 8 on one thread it takes 11.9 ms where sgemm took 36.7 ms. It runs on one
thread too.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numba
import numpy as np
from numba import prange

from runtime.kernels.jit import kernel

SPLIT_FLOPS = 2_000_000  # a single product smaller than this runs as one call
SMALL_BATCH = 16
ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112
SYMBOLS = (("scipy_cblas_sgemm64_", ctypes.c_int64), ("cblas_sgemm64_", ctypes.c_int64),
           ("cblas_sgemm", ctypes.c_int))  # fmt: skip


@lru_cache(maxsize=1)
def sgemm_function():
    """numpy's BLAS ``cblas_sgemm`` as a ctypes function, or None."""
    from threadpoolctl import threadpool_info

    np.ones((2, 2), np.float32) @ np.ones((2, 2), np.float32)  # BLAS is loaded by now
    for info in threadpool_info():
        if info.get("user_api") != "blas":
            continue
        try:
            lib = ctypes.CDLL(info["filepath"])
        except OSError:
            continue
        for name, blasint in SYMBOLS:
            fn = getattr(lib, name, None)
            if fn is None:
                continue
            f32, ptr, flag = ctypes.c_float, ctypes.c_void_p, ctypes.c_int
            fn.argtypes = [flag, flag, flag, blasint, blasint, blasint, f32, ptr, blasint,
                           ptr, blasint, f32, ptr, blasint]  # fmt: skip
            fn.restype = None
            return fn
    return None


@kernel(parallel=True)
def _blocks(sgemm, pa, pb, pc, dims, ops, jobs, parts, split_rows):  # pragma: no cover
    """Job j: product g = j // parts, block j % parts of its rows or columns.

    dims: M, N, K, and element strides of each product (sa, sb, sc);
    ops: transa, lda, transb, ldb, ldc, and the element steps along op(A)'s rows
    (ai), op(B)'s columns (bj).
    """
    M, N, K, sa, sb, sc = dims[0], dims[1], dims[2], dims[3], dims[4], dims[5]
    ta, lda, tb, ldb, ldc, ai, bj = ops[0], ops[1], ops[2], ops[3], ops[4], ops[5], ops[6]
    for j in prange(jobs):
        g = j // parts
        p = j % parts
        a_off, b_off, c_off = g * sa, g * sb, g * sc
        m, n = M, N
        if split_rows:
            r0 = p * M // parts
            m = (p + 1) * M // parts - r0
            a_off += r0 * ai
            c_off += r0 * ldc
        else:
            c0 = p * N // parts
            n = (p + 1) * N // parts - c0
            b_off += c0 * bj
            c_off += c0
        if m > 0 and n > 0:  # int(): plain ints for ctypes when numba's JIT is disabled
            sgemm(ROW_MAJOR, int(ta), int(tb), int(m), int(n), int(K), np.float32(1.0),
                  int(pa + 4 * a_off), int(lda), int(pb + 4 * b_off), int(ldb), np.float32(0.0),
                  int(pc + 4 * c_off), int(ldc))  # fmt: skip


@kernel(fastmath=True)
def dot_rows(x, w, y, j0, j1):  # pragma: no cover
    """y[j] = w[j] . x for j0 <= j < j1, four rows of w at a time, each read once.

    fastmath lets LLVM reorder each dot product's sum so that it vectorises.
    """
    K = x.shape[0]
    j = j0
    while j + 4 <= j1:
        w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for k in range(K):
            v = x[k]
            s0 += w0[k] * v
            s1 += w1[k] * v
            s2 += w2[k] * v
            s3 += w3[k] * v
        y[j], y[j + 1], y[j + 2], y[j + 3] = s0, s1, s2, s3
        j += 4
    while j < j1:
        s = np.float32(0.0)
        for k in range(K):
            s += w[j, k] * x[k]
        y[j] = s
        j += 1


@kernel(fastmath=True)
def dot_rows_4(x0, x1, x2, x3, w, y0, y1, y2, y3):  # pragma: no cover
    """y_i[j] = w[j] . x_i for four inputs and every row j of w: each block of four
    rows of w is read once for the four inputs, sixteen sums at a time."""
    J, K = w.shape
    j = 0
    while j + 4 <= J:
        w0, w1, w2, w3 = w[j], w[j + 1], w[j + 2], w[j + 3]
        s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.float32(0.0)
        s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.float32(0.0)
        for k in range(K):
            a, b, c, d = w0[k], w1[k], w2[k], w3[k]
            v = x0[k]
            s00 += a * v
            s01 += b * v
            s02 += c * v
            s03 += d * v
            v = x1[k]
            s10 += a * v
            s11 += b * v
            s12 += c * v
            s13 += d * v
            v = x2[k]
            s20 += a * v
            s21 += b * v
            s22 += c * v
            s23 += d * v
            v = x3[k]
            s30 += a * v
            s31 += b * v
            s32 += c * v
            s33 += d * v
        y0[j], y0[j + 1], y0[j + 2], y0[j + 3] = s00, s01, s02, s03
        y1[j], y1[j + 1], y1[j + 2], y1[j + 3] = s10, s11, s12, s13
        y2[j], y2[j + 1], y2[j + 2], y2[j + 3] = s20, s21, s22, s23
        y3[j], y3[j + 1], y3[j + 2], y3[j + 3] = s30, s31, s32, s33
        j += 4
    if j < J:
        dot_rows(x0, w, y0, j, J)
        dot_rows(x1, w, y1, j, J)
        dot_rows(x2, w, y2, j, J)
        dot_rows(x3, w, y3, j, J)


@kernel(parallel=True)
def small_batch_nt(x, w, out, bias, relu):  # pragma: no cover
    """out = x @ w.T + bias, then max(., 0) if ``relu``, for x (N, K), w (J, K), bias
    (J,): four rows of w per iteration, dotted with four rows of x at a time (then
    one) while they are in cache."""
    J, N = w.shape[0], x.shape[0]
    for jb in prange((J + 3) // 4):
        j0, j1 = jb * 4, min(J, jb * 4 + 4)
        wb = w[j0:j1]
        n = 0
        while n + 4 <= N:
            dot_rows_4(x[n], x[n + 1], x[n + 2], x[n + 3], wb, out[n, j0:j1],
                       out[n + 1, j0:j1], out[n + 2, j0:j1], out[n + 3, j0:j1])  # fmt: skip
            n += 4
        while n < N:
            dot_rows(x[n], w, out[n], j0, j1)
            n += 1
        for n in range(N):
            for j in range(j0, j1):
                v = out[n, j] + bias[j]
                out[n, j] = max(v, np.float32(0.0)) if relu else v


def _operand(x: np.ndarray, rows: int, cols: int) -> tuple[int, int, int] | None:
    """(trans flag, leading dimension, element step along the rows) of a 2-D view."""
    s0, s1 = (s // 4 for s in x.strides[-2:])
    if s1 == 1 or cols == 1:
        return NO_TRANS, max(s0, cols, 1), s0
    if s0 == 1 or rows == 1:
        return TRANS, max(s1, rows, 1), 1
    return None


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b for float32 (M, K) @ (K, N) or (G, M, K) @ (G, K, N), on every core."""
    sgemm = sgemm_function()
    m, k = a.shape[-2:]
    n = b.shape[-1]
    g = 1 if a.ndim == 2 else a.shape[0]
    threads = numba.get_num_threads()
    big = 2 * g * m * k * n >= SPLIT_FLOPS
    opa, opb = _operand(a, m, k), _operand(b, k, n)
    ok = (
        sgemm is not None and big and threads > 1 and a.dtype == b.dtype == out.dtype == np.float32
        and opa is not None and opb is not None and out.strides[-1] == 4
        and (a.ndim == 2 or a.shape[0] == b.shape[0] == out.shape[0])
    )  # fmt: skip
    small = a.ndim == 2 and m <= SMALL_BATCH and a.flags.c_contiguous and b.T.flags.c_contiguous
    if small and big and a.dtype == b.dtype == out.dtype == np.float32 and out.flags.c_contiguous:
        # on one thread too: sgemm is slower at these shapes
        small_batch_nt(a, b.T, out, np.zeros(n, np.float32), False)
        return out
    if not ok:
        return np.matmul(a, b, out=out)
    if g >= 2 * threads:
        parts, split_rows = 1, True
    else:
        parts, split_rows = threads, m >= n
    step = (
        [0, 0, 0] if a.ndim == 2 else [s // 4 for s in (a.strides[0], b.strides[0], out.strides[0])]
    )
    dims = np.array([m, n, k, *step], np.int64)
    ops = np.array([opa[0], opa[1], opb[0], opb[1], out.strides[-2] // 4, opa[2],
                    1 if opb[0] == NO_TRANS else opb[1]], np.int64)  # fmt: skip
    ptrs = (np.int64(x.ctypes.data) for x in (a, b, out))
    _blocks(sgemm, *ptrs, dims, ops, g * parts, parts, split_rows)
    return out
