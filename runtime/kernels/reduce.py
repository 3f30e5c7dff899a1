"""The float32 reduction of ``runtime/ops/reduce.py``: one axis block of a 3-D view.

``reduce_middle(x, out, mode)``: x (A, K, B) -> out (A, B), reducing over K, the
modes numbered in ``MODES``:

    Sum        sum_k x[a, k, b]
    Mean       sum_k x[a, k, b] / K
    Max, Min   max_k, min_k (K >= 1)
    SumSquare  sum_k x[a, k, b]^2
    L1         sum_k |x[a, k, b]|

Any set of adjacent axes is such a view of a C-contiguous tensor (ReduceMean over
the spatial axes of NCHW, a global pooling: A = N*C, K = H*W, B = 1). Sums add in
float64. The parallel loop runs over (a, block of ``BLOCK`` b's) pairs, each writing
its own slice of out; a block's accumulators are a row of float64 that the loop
over k updates in stride (vectorised when B is large).

``reduce_rows(x, out, mode)``: the same where B = 1 (a global pooling), x (A, K) ->
out (A,): a row's K values are contiguous, and its float64 sums are reassociated
into vector lanes (``fastmath`` reassoc only: NaN and infinities as IEEE says).
``reduce_middle`` there took a row of one accumulator and a slice per element, 4 ns
an element (ShuffleNetV2's ReduceMean over 1024 planes of 7x7: 20 times
onnxruntime's).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from runtime.kernels.jit import kernel

MODES = {"Sum": 0, "Mean": 1, "Max": 2, "Min": 3, "SumSquare": 4, "L1": 5}
BLOCK = 256


@kernel(parallel=True)
def reduce_middle(x, out, mode):  # pragma: no cover
    a_n, k_n, b_n = x.shape
    blocks = (b_n + BLOCK - 1) // BLOCK
    for t in prange(a_n * blocks):
        a = t // blocks
        lo = (t % blocks) * BLOCK
        hi = min(lo + BLOCK, b_n)
        w = hi - lo
        acc = np.zeros(w, np.float64)
        if mode == 2:
            acc[:] = -np.inf
        elif mode == 3:
            acc[:] = np.inf
        for k in range(k_n):
            row = x[a, k, lo:hi]
            if mode <= 1:
                for j in range(w):
                    acc[j] += row[j]
            elif mode == 2:
                for j in range(w):
                    v = row[j]
                    # NaN propagates, as in numpy and onnxruntime
                    acc[j] = v if v > acc[j] or v != v else acc[j]
            elif mode == 3:
                for j in range(w):
                    v = row[j]
                    acc[j] = v if v < acc[j] or v != v else acc[j]
            elif mode == 4:
                for j in range(w):
                    v = np.float64(row[j])
                    acc[j] += v * v
            else:
                for j in range(w):
                    acc[j] += abs(row[j])
        scale = 1.0 / k_n if mode == 1 and k_n > 0 else 1.0
        for j in range(w):
            out[a, lo + j] = acc[j] * scale


@kernel(parallel=True, fastmath={"reassoc", "contract"})
def reduce_rows(x, out, mode):  # pragma: no cover
    a_n, k_n = x.shape
    for a in prange(a_n):
        row = x[a]
        acc = 0.0
        if mode == 2:
            acc = -np.inf
            for k in range(k_n):
                v = row[k]
                acc = v if v > acc or v != v else acc
        elif mode == 3:
            acc = np.inf
            for k in range(k_n):
                v = row[k]
                acc = v if v < acc or v != v else acc
        elif mode == 4:
            for k in range(k_n):
                v = np.float64(row[k])
                acc += v * v
        elif mode == 5:
            for k in range(k_n):
                acc += abs(np.float64(row[k]))
        else:
            for k in range(k_n):
                acc += np.float64(row[k])
            if mode == 1 and k_n > 0:
                acc = acc / k_n
        out[a] = acc
