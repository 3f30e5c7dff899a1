"""Separable 2-D resampling of float32 planes (Resize and Upsample on H and W).

Every Resize mode is separable: output row ``oy`` mixes input rows ``iy[oy, t]``
with weights ``wy[oy, t]`` and output column ``ox`` mixes input columns
``ix[ox, s]`` with weights ``wx[ox, s]``:

    out[p, oy, ox] = sum_t sum_s wy[oy, t] * wx[ox, s] * x[p, iy[oy, t], ix[ox, s]]

Nearest has one tap (weight 1), linear two, cubic four, antialiased filters more.
The taps (indices clamped into the input, weights already renormalised for
``exclude_outside``) are computed once by the op (``runtime/ops/spatial.py``).
"""

from __future__ import annotations

import numpy as np
from numba import prange

from runtime.kernels.jit import kernel


@kernel(parallel=True)
def resize_planes(x, iy, wy, ix, wx, out):  # pragma: no cover
    """x (P, H, W), iy/wy (OH, T), ix/wx (OW, S) -> out (P, OH, OW); one output row
    per prange iteration (disjoint)."""
    P = x.shape[0]
    OH, T = iy.shape
    OW, S = ix.shape
    for r in prange(P * OH):
        p = r // OH
        oy = r % OH
        dst = out[p, oy]
        if T == 1 and S == 1:
            src = x[p, iy[oy, 0]]
            for ox in range(OW):
                dst[ox] = src[ix[ox, 0]]
            continue
        for ox in range(OW):
            dst[ox] = 0.0
        for t in range(T):
            a = wy[oy, t]
            if a == 0.0:
                continue
            src = x[p, iy[oy, t]]
            for ox in range(OW):
                acc = np.float32(0.0)
                for s in range(S):
                    acc += wx[ox, s] * src[ix[ox, s]]
                dst[ox] += a * acc
