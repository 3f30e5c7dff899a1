"""Where the pointwise GEMM's time goes at small K: a probe, not the engine's code.

Five ways to run a 1x1 conv (x (K, S) -> relu(W x + b), W (M, K)) on one thread, each
timed by the calling thread's CPU clock (median of 200 calls, in-cache data):

- ``engine``: the engine's kernel (``gemm._conv_nchw_pointwise_gemm``), called with
  its arguments made once, as a conv's prepared call does;
- ``tile_store``: a panel of 32 columns packed, then each 6-row block through the
  engine's ``gemm_f32_6x32_tile_store`` (the micro-kernel with its general epilogue);
- ``sums_then_epilogue``: the same micro-kernel storing its raw sums, then the
  epilogue row by row (``gemm._store_row``) over what it stored;
- ``plain_store``: the same loop with a bias-and-Relu store only;
- ``panel_bias_act``: the engine's store for scale 1, shift 0 and no residual
  (``gemm.gemm_f32_6x32_panel_bias_act``: a panel's row blocks in one call).

Only whole 6-row blocks and 32-column panels are computed (the probe's shapes have
few partial ones); each variant is checked against NumPy on what it computes.

    PYTHONPATH=. python benchmarks/pointwise_store_probe.py
"""

from __future__ import annotations

import statistics
import time

import numba
import numpy as np
from numba import prange

from runtime.kernels import gemm
from runtime.kernels.activation import ACTIVATIONS
from runtime.kernels.simd import WIDTH, vadd, vfma, vload, vrelu, vsplat, vstore, vzero

MR, NR = gemm.MR, 2 * WIDTH
SHAPES = [(16, 72, 3136), (24, 96, 784), (96, 576, 64), (40, 240, 192), (576, 96, 64)]
_JIT = {"fastmath": {"contract"}, "error_model": "numpy"}


@numba.njit(**_JIT)
def _plain_tile(a, pan, kk, of, o, s, m0, bias):  # pragma: no cover
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = vzero()
    for k in range(kk):
        b = vload(pan, 2 * k * WIDTH)
        e = vload(pan, (2 * k + 1) * WIDTH)
        r = k * MR
        c0, d0 = vfma(c0, b, a[r]), vfma(d0, e, a[r])
        c1, d1 = vfma(c1, b, a[r + 1]), vfma(d1, e, a[r + 1])
        c2, d2 = vfma(c2, b, a[r + 2]), vfma(d2, e, a[r + 2])
        c3, d3 = vfma(c3, b, a[r + 3]), vfma(d3, e, a[r + 3])
        c4, d4 = vfma(c4, b, a[r + 4]), vfma(d4, e, a[r + 4])
        c5, d5 = vfma(c5, b, a[r + 5]), vfma(d5, e, a[r + 5])
    for i, (c, d) in enumerate(((c0, d0), (c1, d1), (c2, d2), (c3, d3), (c4, d4), (c5, d5))):
        q = o + i * s
        vstore(of, q, vrelu(vadd(c, vsplat(bias[m0 + i]))))
        vstore(of, q + WIDTH, vrelu(vadd(d, vsplat(bias[m0 + i]))))


@numba.njit(**_JIT)
def _sums_tile(a, pan, kk, of, o, s, m0, bias, scale, shift, res):  # pragma: no cover
    c0 = c1 = c2 = c3 = c4 = c5 = vzero()
    d0 = d1 = d2 = d3 = d4 = d5 = vzero()
    for k in range(kk):
        b = vload(pan, 2 * k * WIDTH)
        e = vload(pan, (2 * k + 1) * WIDTH)
        r = k * MR
        c0, d0 = vfma(c0, b, a[r]), vfma(d0, e, a[r])
        c1, d1 = vfma(c1, b, a[r + 1]), vfma(d1, e, a[r + 1])
        c2, d2 = vfma(c2, b, a[r + 2]), vfma(d2, e, a[r + 2])
        c3, d3 = vfma(c3, b, a[r + 3]), vfma(d3, e, a[r + 3])
        c4, d4 = vfma(c4, b, a[r + 4]), vfma(d4, e, a[r + 4])
        c5, d5 = vfma(c5, b, a[r + 5]), vfma(d5, e, a[r + 5])
    for i, (c, d) in enumerate(((c0, d0), (c1, d1), (c2, d2), (c3, d3), (c4, d4), (c5, d5))):
        vstore(of, o + i * s, c)
        vstore(of, o + i * s + WIDTH, d)
    for i in range(MR):
        q = o + i * s
        c, d = vload(of, q), vload(of, q + WIDTH)
        gemm._store_row(of, q, c, d, m0 + i, NR, bias, 1, 0.0, 0.0, scale, shift, res)


@numba.njit(parallel=True, **_JIT)
def _panels(variant, ap, x, out, bias, scale, shift, res):  # pragma: no cover
    """Panels of NR columns packed from x, each row block through ``variant``."""
    blocks, kk = ap.shape[0], ap.shape[1]
    s = x.shape[1]
    xf, of = x.reshape(-1), out.reshape(-1)
    pan = np.empty(kk * NR, np.float32)
    for p in prange(s // NR):  # one thread: the probe's runs set it
        for k in range(kk):
            vstore(pan, k * NR, vload(xf, k * s + p * NR))
            vstore(pan, k * NR + WIDTH, vload(xf, k * s + p * NR + WIDTH))
        for b in range(blocks):
            a, o = ap[b].reshape(-1), b * MR * s + p * NR
            if variant == 3:
                if b == 0:  # every block in one call
                    gemm.gemm_f32_6x32_panel_bias_act(
                        ap.reshape(-1), 0, blocks, kk, pan, of, p * NR, s, 0, NR, bias, 1, 0.0, 0.0
                    )
            elif variant == 0:
                gemm.gemm_f32_6x32_tile_store(
                    a, pan, kk, of, o, s, b * MR, bias, 1, 0.0, 0.0, scale, shift, res
                )
            elif variant == 1:
                _sums_tile(a, pan, kk, of, o, s, b * MR, bias, scale, shift, res)
            else:
                _plain_tile(a, pan, kk, of, o, s, b * MR, bias)


def median_us(call, n: int = 200) -> float:
    for _ in range(5):
        call()
    times = []
    for _ in range(n):
        t0 = time.thread_time()
        call()
        times.append(time.thread_time() - t0)
    return statistics.median(times) * 1e6


def probe(k: int, m: int, s: int) -> str:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((k, s)).astype(np.float32)
    w = rng.standard_normal((m, k)).astype(np.float32)
    bias = rng.standard_normal(m).astype(np.float32)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    ap = gemm.pack_a(w[None])
    want = np.maximum(w @ x + bias[:, None], 0)
    out = np.empty((1, m, s), np.float32)

    ep = gemm.pointwise_epilogue(bias, 0.0, 0.0)
    geo = gemm.pointwise_geometry(0, 1, m, NR, ACTIVATIONS["Relu"])
    x4, out4 = x.reshape(1, k, 1, s), out.reshape(1, m, 1, s)

    def engine() -> None:  # as a conv's prepared call makes it (``conv.ConvGemm``)
        gemm._conv_nchw_pointwise_gemm(ap, x4, out4, ep, ones, zeros, geo, gemm.NO_RESIDUAL)

    engine()
    np.testing.assert_allclose(out[0], want, rtol=1e-4, atol=1e-3)
    rows, cols = (m // MR) * MR, (s // NR) * NR
    part = np.zeros((m, s), np.float32)
    cells = [f"K={k} M={m} S={s}: engine {median_us(engine):.1f} us"]
    names = ("tile_store", "sums_then_epilogue", "plain_store", "panel_bias_act")
    for variant, name in enumerate(names):

        def call(v=variant) -> None:
            _panels(v, ap[0][: m // MR], x, part, bias, ones, zeros, gemm.NO_RESIDUAL)

        call()
        np.testing.assert_allclose(part[:rows, :cols], want[:rows, :cols], rtol=1e-4, atol=1e-3)
        cells.append(f"{name} {median_us(call):.1f}")
    return ", ".join(cells)


def main() -> None:
    numba.set_num_threads(1)
    for shape in SHAPES:
        print(probe(*shape), flush=True)


if __name__ == "__main__":
    main()
