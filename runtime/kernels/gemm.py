"""``matmul``: numpy's BLAS matmul, cut into blocks that run on every core.

BLAS runs single-threaded inside the engine (its threads would fight numba's), so a
big product is cut into blocks of the output, one per core, each computed by numpy
in a worker thread (numpy releases the GIL in matmul). A block is a range of rows
or of columns of the output, whichever axis is longer (a conv's output channels,
or the 4096 outputs of a fully connected layer at batch 1); every block writes its
own part of ``out``.
"""

from __future__ import annotations

import itertools
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

SPLIT_FLOPS = 20_000_000  # a product this big is split across the cores
_pool: ThreadPoolExecutor | None = None


def matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> np.ndarray:
    """out = a @ b for (..., M, K) @ (..., K, N), on every core when it is big."""
    global _pool
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch = out.size // max(1, m * n)
    axis = -2 if m >= n else -1
    parts = min(numba.get_num_threads(), out.shape[axis])
    if parts < 2 or 2 * batch * m * k * n < SPLIT_FLOPS:
        return np.matmul(a, b, out=out)
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=numba.config.NUMBA_NUM_THREADS,
                                   thread_name_prefix="cnn-gemm")  # fmt: skip
    bounds = np.linspace(0, out.shape[axis], parts + 1).astype(int)
    if axis == -2:
        blocks = [(a[..., i:j, :], b, out[..., i:j, :]) for i, j in itertools.pairwise(bounds)]
    else:
        blocks = [(a, b[..., i:j], out[..., i:j]) for i, j in itertools.pairwise(bounds)]
    jobs = [_pool.submit(np.matmul, x, y, out=o) for x, y, o in blocks]
    for job in jobs:
        job.result()
    return out
