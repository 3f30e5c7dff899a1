"""The small ops' kernels against their naive twins: max pooling in vectors, the global
pools, the matrix-vector product and the squeeze-and-excitation block, each serial and
parallel, with sizes that leave partial vectors and panels, and batches above one."""

from __future__ import annotations

import naive
import numba
import numpy as np
import pytest

from runtime.kernels import matvec, pool
from runtime.kernels.activation import ACTIVATIONS

RNG = np.random.default_rng(24)
ACTS = [None, "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Clip", "HardSigmoid", "HardSwish", "SiLU"]


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


MAX_POOL_CASES = [
    # (N, C, H, W), kernel, strides, pads (top, left, bottom, right), dilations
    ((1, 3, 36, 37), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),  # ResNet's stem pool, odd width
    ((2, 2, 9, 40), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1)),  # dense, batch 2
    ((1, 2, 7, 17), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # stride 1, a partial vector
    ((1, 2, 11, 50), (3, 2), (3, 3), (1, 0, 1, 1), (1, 1)),  # stride 3: output by output
    ((1, 2, 15, 40), (3, 3), (2, 2), (0, 2, 1, 0), (2, 2)),  # dilated, uneven pads
    ((3, 1, 5, 5), (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),  # windows over most padding
    # 3x3, stride 1, one pad a side (Inception's branch pools): lane shifts, no buffer
    ((2, 3, 16, 16), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # a whole vector a row
    ((1, 4, 8, 8), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # half a vector a row
    ((1, 2, 5, 40), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # three vectors, the last partial
    ((1, 2, 4, 32), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # two whole vectors
    ((2, 1, 1, 1), (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),  # one value a plane
]

MAX_POOL_LANES_CASES = [
    # (N, C, H, W), kernel, strides, pads, ceil_mode: pool.max_pool_by_lanes' geometries
    ((1, 3, 37, 111), (3, 3), (2, 2), (0, 0, 0, 0), 1),  # SqueezeNet's stem pool, ceil
    ((1, 2, 28, 56), (3, 3), (2, 2), (1, 1, 1, 1), 0),  # ResNet's stem pool
    ((1, 2, 10, 45), (2, 2), (2, 2), (0, 0, 0, 0), 1),  # 2x2, ceil: the last window half out
    ((1, 2, 7, 33), (3, 3), (2, 2), (1, 1, 1, 1), 1),  # pads and ceil
    ((1, 2, 8, 70), (4, 4), (2, 2), (1, 1, 1, 1), 0),  # taps -1 .. 2
    ((1, 2, 8, 70), (5, 5), (2, 2), (2, 2, 2, 2), 0),  # taps -2 .. 2
    ((1, 2, 6, 40), (2, 4), (2, 2), (0, 0, 0, 0), 0),  # taps 0 .. 3
    ((1, 2, 9, 20), (2, 2), (1, 1), (0, 0, 0, 0), 0),  # stride 1, taps 0 .. 1
    ((1, 2, 9, 20), (2, 2), (1, 1), (1, 1, 1, 1), 0),  # stride 1, taps -1 .. 0: wider out
    ((1, 2, 12, 33), (3, 2), (2, 2), (1, 0, 1, 0), 0),  # uneven window
    ((1, 2, 12, 33), (3, 3), (3, 2), (1, 1, 1, 1), 0),  # stride 3 down, 2 across
    ((2, 1, 3, 3), (3, 3), (2, 2), (1, 1, 1, 1), 1),  # a plane smaller than a vector
]


@pytest.mark.parametrize(("xs", "k", "s", "p", "ceil"), MAX_POOL_LANES_CASES)
@pytest.mark.parametrize("parallel", [False, True])
def test_max_pool_in_registers_matches_naive(xs, k, s, p, ceil, parallel):
    assert pool.max_pool_by_lanes(k[1], s[1], p[1], 1, 1)
    x = _rand(*xs)
    want = naive.pool2d(x, kernel=k, strides=s, pads=p, dilations=(1, 1), ceil_mode=ceil,
                        mode="max")  # fmt: skip
    n, c, h, w = xs
    floats = pool.max_pool_row_floats(w, want.shape[3], p[1], k[1], s[1], 1)
    tmp = np.zeros((numba.get_num_threads(), pool.MAX_POOL_ROWS * floats + pool.WIDTH), np.float32)
    got = np.full(want.shape, np.nan, np.float32)
    run = pool.max_pool_rows_planes if parallel else pool.max_pool_rows
    run(x.reshape(n * c, h, w), got.reshape(n * c, *want.shape[2:]), tmp, p[0], p[1], *k, *s, 1, 1)
    np.testing.assert_array_equal(got, want)


def test_max_pool_in_registers_only_where_the_taps_reach_a_lane():
    """Dilation, a stride past 2 or taps more than a lane from the output's own vector
    take the row buffer."""
    assert not pool.max_pool_by_lanes(3, 1, 0, 1, 1)  # taps 0 .. 2 at stride 1
    assert not pool.max_pool_by_lanes(3, 3, 1, 1, 1)
    assert not pool.max_pool_by_lanes(3, 2, 1, 1, 2)
    assert not pool.max_pool_by_lanes(6, 2, 1, 1, 1)  # taps -1 .. 4


@pytest.mark.parametrize(("xs", "k", "s", "p", "d"), MAX_POOL_CASES)
@pytest.mark.parametrize("parallel", [False, True])
def test_max_pool_rows_match_naive(xs, k, s, p, d, parallel):
    x = _rand(*xs)
    want = naive.pool2d(
        x, kernel=k, strides=s, pads=p, dilations=d, ceil_mode=0, mode="max"
    )  # fmt: skip
    n, c, h, w = xs
    floats = pool.max_pool_row_floats(w, want.shape[3], p[1], k[1], s[1], d[1])
    tmp = np.full(
        (numba.get_num_threads(), pool.MAX_POOL_ROWS * floats + pool.WIDTH), np.nan, np.float32
    )  # the kernel fills it
    got = np.full(want.shape, np.nan, np.float32)
    run = pool.max_pool_rows_planes if parallel else pool.max_pool_rows
    run(x.reshape(n * c, h, w), got.reshape(n * c, *want.shape[2:]), tmp, p[0], p[1], *k, *s, *d)
    np.testing.assert_array_equal(got, want)


AVG_POOL_CASES = [
    # (N, C, H, W), kernel, strides: every window inside the plane
    ((1, 3, 32, 32), (2, 2), (2, 2)),  # DenseNet's transition pool
    ((2, 2, 16, 16), (2, 2), (2, 2)),  # a row's last vector ends at the row's end
    ((1, 2, 33, 35), (3, 3), (2, 2)),  # odd sizes, a partial vector
    ((2, 2, 9, 17), (3, 3), (1, 1)),  # stride 1
    ((1, 2, 5, 40), (2, 3), (1, 2)),  # uneven window and strides, three vectors a row
    ((1, 2, 11, 50), (3, 2), (3, 3)),  # stride 3: output by output
    ((3, 1, 1, 1), (1, 1), (1, 1)),  # planes of one value
]


@pytest.mark.parametrize(("xs", "k", "s"), AVG_POOL_CASES)
@pytest.mark.parametrize("parallel", [False, True])
def test_avg_pool_rows_match_naive(xs, k, s, parallel):
    x = _rand(*xs)
    x[0, 0, 0, 0], x[-1, -1, -1, -1] = np.inf, np.nan  # spoil their own windows alone
    want = naive.pool2d(
        x, kernel=k, strides=s, pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0, mode="avg"
    )  # fmt: skip
    n, c, h, w = xs
    got = np.full(want.shape, -7.0, np.float32)
    x3, y3 = x.reshape(n * c, h, w), got.reshape(n * c, *want.shape[2:])
    if parallel:
        pool.avg_pool_rows_planes(x3, y3, *k, *s, 2)
    else:
        pool.avg_pool_rows(x3, y3, *k, *s)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


# partial vectors, a partial group of 16 planes, planes of one float, several jobs of
# the parallel kernel, planes summed one by one (past SUM_BLOCK)
PLANES = [(7, 45), (37, 16), (5, 1), (18, 3), (700, 49), (2, 3 * pool.SUM_BLOCK + 37)]


@pytest.mark.parametrize("planes_s", PLANES)
@pytest.mark.parametrize("use_max", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_global_pools_match_naive(planes_s, use_max, parallel):
    x = _rand(*planes_s) + np.float32(3)  # away from 0: the mean's relative error shows
    out = np.full(planes_s[0], np.nan, np.float32)
    if parallel:
        buf = np.empty(numba.get_num_threads() * pool.POOL_BUF, np.float32)
        pool._global_pool(x, out, use_max, buf)
    else:
        pool.global_pool_rows(x, out, use_max)
    np.testing.assert_allclose(out, naive.global_pool(x, use_max), rtol=1e-6, atol=1e-7)


def test_global_max_pool_skips_nan():
    x = _rand(3, 37)
    x[0, 5] = x[1, 36] = np.nan
    x[2, 20:] = np.nan
    out = np.empty(3, np.float32)
    pool.global_pool_rows(x, out, True)
    np.testing.assert_array_equal(out, np.nanmax(x, 1))


@pytest.mark.parametrize(("m", "k", "n"), [(1, 128, 100), (2, 37, 70), (1, 5, 3), (1, 33, 129)])
@pytest.mark.parametrize("act", [None, "Relu", "LeakyRelu"])
@pytest.mark.parametrize("parallel", [False, True])
def test_matvec_rows_match_naive(m, k, n, act, parallel):
    a, w, b = _rand(m, k), _rand(k, n), _rand(n)
    alpha = -0.3 if act == "LeakyRelu" else 0.0  # a slope outside [0, 1] too
    got = np.full((m, n), np.nan, np.float32)
    run = matvec.matvec_rows_panels if parallel else matvec.matvec_rows
    run(a, matvec.pack_panels(w), matvec.pad_bias(b, n), got, ACTIVATIONS[act], alpha, 0.0)
    want = naive.matvec(a, w, b, act, alpha)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_matvec_columns_are_the_gemm_chain():
    """Each column is fma(a[k], w[k, j], c) over k in order, the GEMM's chain: equal
    columns of W give equal bits wherever they lie in a panel."""
    a = _rand(1, 300)
    w = np.repeat(_rand(300, 1), 131, axis=1)
    got = np.empty((1, 131), np.float32)
    matvec.matvec_rows(a, matvec.pack_panels(w), matvec.pad_bias(None, 131), got, 0, 0.0, 0.0)
    assert (got == got[0, 0]).all()


def _acts(act):
    if act == "Clip":
        return (act, -0.5, 2.0)
    if act in ("HardSigmoid", "HardSwish"):
        return (act, 1 / 6 if act == "HardSwish" else 0.2, 0.5)
    return (act, 0.1 if act == "LeakyRelu" else 0.0, 0.0)


@pytest.mark.parametrize("act1", ACTS)
@pytest.mark.parametrize(("n", "c", "r", "hw"), [(1, 24, 8, (5, 7)), (3, 70, 19, (4, 4))])
def test_squeeze_excite_matches_naive(act1, n, c, r, hw):
    """act1 over every activation; act2 the gates exporters write (HardSigmoid, Sigmoid),
    and act1 again; one image serially, a batch an image a job."""
    x = _rand(n, c, *hw) * np.float32(2)
    w1, b1, w2, b2 = _rand(r, c) / np.float32(3), _rand(r), _rand(c, r) / np.float32(2), _rand(c)
    for act2 in ("HardSigmoid", "Sigmoid", act1):
        acts = (_acts(act1), _acts(act2))
        want = naive.squeeze_excite(x, w1, b1, w2, b2, acts)
        codes = tuple(v for a in acts for v in (ACTIVATIONS[a[0]], float(a[1]), float(a[2])))
        work = np.full(
            (numba.get_num_threads(), matvec.excite_work(c, r)), np.nan, np.float32
        )  # fmt: skip
        got = np.full_like(x, np.nan)
        run = matvec.squeeze_excite_images if n > 1 else matvec.squeeze_excite
        run(
            x.reshape(n, c, -1), got.reshape(n, c, -1), matvec.pack_panels(w1.T),
            matvec.pad_bias(b1, r), r, matvec.pack_panels(w2.T), matvec.pad_bias(b2, c),
            *codes, work,
        )  # fmt: skip
        # the gate is a float32 sum of 19 to 70 products, some cancelling, times x (|x|
        # up to 8): an absolute error of a few 1e-6 in the gate, of 1e-5 in y
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=4e-5, err_msg=str(acts))
