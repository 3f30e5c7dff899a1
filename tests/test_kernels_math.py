"""The kernels of the math, activation, reduction and normalization ops against their
naive twins (tests/naive.py), parametrized over modes and layouts."""

from __future__ import annotations

import naive
import numpy as np
import pytest

from runtime.kernels import normalize as normalize_kernels
from runtime.kernels import reduce as reduce_kernels
from runtime.kernels import unary as unary_kernels

RNG = np.random.default_rng(3)

UNARY_CASES = [
    ("Elu", 1.3, 0.0, 0.0),
    ("Selu", 1.67326319, 0.0, 1.05070102),
    ("Celu", 0.7, 0.0, 0.0),
    ("HardSigmoid", 0.2, 0.5, 0.0),
    ("HardSwish", 0.0, 0.0, 0.0),
    ("Softplus", 0.0, 0.0, 0.0),
    ("Softsign", 0.0, 0.0, 0.0),
    ("Mish", 0.0, 0.0, 0.0),
    ("Gelu", 0.0, 0.0, 0.0),
    ("GeluTanh", 0.0, 0.0, 0.0),
    ("ThresholdedRelu", 0.4, 0.0, 0.0),
    ("Shrink", 0.5, 0.1, 0.0),
    ("Erf", 0.0, 0.0, 0.0),
]


def test_every_mode_is_tested():
    assert sorted(c[0] for c in UNARY_CASES) == sorted(unary_kernels.MODES)


@pytest.mark.parametrize(("mode", "alpha", "beta", "gamma"), UNARY_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_matches_naive(mode, alpha, beta, gamma, dtype):
    # more than one parallel block, values from -40 to 40 (exp overflows past 88)
    n = unary_kernels.BLOCK + 1000
    x = (RNG.standard_normal(n) * 3).astype(dtype)
    x[:4] = [-40.0, 40.0, 0.0, -0.0]
    y = np.full(n, np.nan, dtype)
    unary_kernels.unary(x, y, unary_kernels.MODES[mode], alpha, beta, gamma)
    want = naive.unary(x[:: max(1, n // 3000)], mode, alpha, beta, gamma)
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y[:: max(1, n // 3000)], want, rtol=tol, atol=tol)
    assert not np.isnan(y).any()


@pytest.mark.parametrize("mode", unary_kernels.VECTOR_MODES)
@pytest.mark.parametrize("n", [unary_kernels.BLOCK + 1003, 16, 5, 0])
def test_unary_vector_matches_naive(mode, n):
    """The vector kernel: every lane and a partial last vector (n not a multiple of
    16), both sides of erf's split at 0.921875 and its clamp at 3.725, signed zeros,
    infinities and NaN, within 2 ulp of float64's erf (1e-6 where it rounds to 0)."""
    x = (RNG.standard_normal(n) * 2).astype(np.float32)
    edges = [-40.0, 40.0, 0.0, -0.0, 0.921875, -0.9219, 3.725, -3.8, np.inf, -np.inf, 1e-30]
    x[: min(n, len(edges))] = edges[: min(n, len(edges))]
    y = np.full(n, np.nan, np.float32)
    unary_kernels.unary_vector(x, y, unary_kernels.MODES[mode])
    want = naive.unary(x.astype(np.float64), mode).astype(np.float32)
    np.testing.assert_allclose(y, want, rtol=2.5e-7, atol=1e-30 if mode == "Erf" else 1e-6)
    if n:
        x[0] = np.nan
        unary_kernels.unary_vector(x[:1], y[:1], unary_kernels.MODES[mode])
        assert np.isnan(y[0])


REDUCE_SHAPES = [
    (6, 49, 1),  # global pooling of 6 planes of 7x7
    (1, 5, 300),  # reduce the first axis; more than one block of b
    (3, 4, 7),
    (2, 1, 3),
]


@pytest.mark.parametrize("shape", REDUCE_SHAPES)
@pytest.mark.parametrize("mode", sorted(reduce_kernels.MODES))
def test_reduce_middle_matches_naive(shape, mode):
    x = RNG.standard_normal(shape).astype(np.float32)
    out = np.full((shape[0], shape[2]), np.nan, np.float32)
    reduce_kernels.reduce_middle(x, out, reduce_kernels.MODES[mode])
    np.testing.assert_allclose(out, naive.reduce_middle(x, mode), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("k_n", "mode"),
    [(k, m) for k in (49, 3136 + 3, 1) for m in sorted(reduce_kernels.MODES)]
    + [(0, m) for m in ("Sum", "SumSquare", "L1")],  # an empty row: 0 (Max, Min: K >= 1)
)
def test_reduce_rows_matches_naive(k_n, mode):
    """B = 1: each row's K values reduced, sums in float64 lanes; NaN propagates."""
    x = RNG.standard_normal((13, k_n)).astype(np.float32) + 0.25
    out = np.full(13, np.nan, np.float32)
    reduce_kernels.reduce_rows(x, out, reduce_kernels.MODES[mode])
    want = naive.reduce_middle(x[:, :, None], mode)[:, 0]
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)
    if k_n:
        x[4, k_n // 2] = np.nan
        reduce_kernels.reduce_rows(x, out, reduce_kernels.MODES[mode])
        assert np.isnan(out[4]) and not np.isnan(np.delete(out, 4)).any()


def test_reduce_middle_propagates_nan():
    x = RNG.standard_normal((2, 5, 3)).astype(np.float32)
    x[1, 2, 0] = np.nan
    for mode in ("Max", "Min", "Sum"):
        out = np.zeros((2, 3), np.float32)
        reduce_kernels.reduce_middle(x, out, reduce_kernels.MODES[mode])
        assert np.isnan(out[1, 0]) and not np.isnan(np.delete(out.reshape(-1), 3)).any()


NORMALIZE_LAYOUTS = [
    # rows, S, groups, T (inner = S // T), center: the layouts of the four ops
    (12, 96, 1, 96, True),  # LayerNormalization over 96 channels
    (12, 96, 1, 96, False),  # RMSNormalization
    (6, 25, 3, 1, True),  # InstanceNormalization: N=2, C=3, 5x5
    (8, 2 * 9, 4, 2, True),  # GroupNormalization-21: 4 groups of 2 channels of 3x3
    (8, 2 * 9, 4, 1, True),  # GroupNormalization-18: a scale per group
]


@pytest.mark.parametrize("s_n", [96, 768 + 5, 7, 1])
@pytest.mark.parametrize("center", [True, False])
def test_standardize_rows_matches_naive(s_n, center):
    """LayerNormalization's (and RMSNormalization's) layout in float32 vector lanes."""
    rows = 37
    x = (RNG.standard_normal((rows, s_n)) * 2 + 0.5).astype(np.float32)
    scale = RNG.standard_normal(s_n).astype(np.float32)
    bias = RNG.standard_normal(s_n).astype(np.float32)
    y = np.empty_like(x)
    mean, inv = np.empty(rows, np.float32), np.empty(rows, np.float32)
    normalize_kernels.standardize_rows(x, y, scale, bias, 1e-3, center, mean, inv)
    want_y, want_mean, want_inv = naive.normalize_rows(x, scale[None], bias[None], 1, 1e-3, center)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inv, want_inv, rtol=1e-5)
    x[3, 0] = np.nan
    normalize_kernels.standardize_rows(x, y, scale, bias, 1e-3, center, mean, inv)
    assert np.isnan(y[3]).all() and not np.isnan(np.delete(y, 3, axis=0)).any()


@pytest.mark.parametrize(
    ("n", "c", "s_n", "block"),
    [(2, 24, 1024, 336), (1, 96, 64, 80), (3, 192, 16, 32), (2, 7, 37, 16), (1, 1, 5, 16)],
)
def test_standardize_channels_matches_naive(n, c, s_n, block):
    """LayerNormalization over the channel axis of (N, C, S): each position's C values
    standardised (naive: the rows of the channels-last view), blocks of positions in
    lanes, a partial block at the end."""
    x = (RNG.standard_normal((n, c, s_n)) * 2 + 0.5).astype(np.float32)
    scale = RNG.standard_normal(c).astype(np.float32)
    bias = RNG.standard_normal(c).astype(np.float32)
    y = np.full_like(x, np.nan)
    normalize_kernels.standardize_channels(x, y, scale, bias, 1e-3, block)
    rows = x.transpose(0, 2, 1).reshape(-1, c)  # (N*S, C): channels last
    want, _, _ = naive.normalize_rows(rows, scale[None], bias[None], 1, 1e-3, True)
    want = want.reshape(n, s_n, c).transpose(0, 2, 1)
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
    x[n - 1, 0, s_n - 1] = np.nan  # a NaN spoils its own position's values alone
    normalize_kernels.standardize_channels(x, y, scale, bias, 1e-3, block)
    assert np.isnan(y[n - 1, :, s_n - 1]).all()
    y[n - 1, :, s_n - 1] = 0.0
    assert not np.isnan(y).any()


def test_channels_block_fits_its_floats_and_shares_the_planes():
    from runtime.ops.normalization import CHANNELS_BLOCK, channels_block

    for c, s, threads in ((24, 1024, 1), (96, 64, 2), (768, 49, 1), (3, 4096, 2)):
        block = channels_block(c, s, threads)
        assert block % 16 == 0 and block >= 16
        assert c * block <= max(CHANNELS_BLOCK, 16 * c)
        assert -(-s // block) >= min(threads, -(-s // 16))  # a job for each thread


@pytest.mark.parametrize(("rows", "s_n", "groups", "t_n", "center"), NORMALIZE_LAYOUTS)
def test_normalize_rows_matches_naive(rows, s_n, groups, t_n, center):
    x = (RNG.standard_normal((rows, s_n)) * 2 + 0.5).astype(np.float32)
    scale = RNG.standard_normal((groups, t_n)).astype(np.float32)
    bias = RNG.standard_normal((groups, t_n)).astype(np.float32)
    y = np.empty_like(x)
    mean, inv = np.empty(rows, np.float32), np.empty(rows, np.float32)
    inner = s_n // t_n
    normalize_kernels.normalize_rows(x, y, scale, bias, inner, 1e-3, center, mean, inv)
    want_y, want_mean, want_inv = naive.normalize_rows(x, scale, bias, inner, 1e-3, center)
    np.testing.assert_allclose(y, want_y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inv, want_inv, rtol=1e-5)


# planes of one vector (DenseNet's 4x4), of 7x7 (three vectors and one value), of one
# value, and a large odd plane; batches above one
SCALE_SHIFT_SHAPES = [(1, 5, 16), (2, 6, 49), (3, 4, 1), (2, 3, 1037)]
SCALE_SHIFT_ACTS = [None, "Relu", "LeakyRelu", "Tanh", "Sigmoid", "Clip", "HardSigmoid",
                    "HardSwish", "SiLU"]  # fmt: skip


@pytest.mark.parametrize("shape", SCALE_SHIFT_SHAPES)
@pytest.mark.parametrize("act", SCALE_SHIFT_ACTS)
@pytest.mark.parametrize("parallel", [False, True])
def test_scale_shift_planes_match_naive(shape, act, parallel):
    """Inference BatchNormalization with the activation after it, per channel; the
    serial kernel over a range of planes leaves the others alone."""
    from runtime.kernels.activation import ACTIVATIONS

    n, c, s_n = shape
    x = (RNG.standard_normal(shape) * 3).astype(np.float32)
    if act in (None, "Relu", "LeakyRelu", "Clip"):  # as IEEE and onnxruntime say
        x[0, 0, 0], x[-1, -1, -1], x[n - 1, c // 2, s_n // 2] = np.nan, np.inf, -np.inf
    scale = RNG.standard_normal(c).astype(np.float32)
    shift = RNG.standard_normal(c).astype(np.float32)
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    want = naive.scale_shift(x, scale, shift, act, alpha, beta)
    y = np.full_like(x, 7.0)
    code = ACTIVATIONS[act]
    if parallel:
        normalize_kernels.scale_shift_planes_parallel(
            x.reshape(-1), y.reshape(-1), scale, shift, s_n, 3, code, alpha, beta
        )
    else:
        planes = n * c
        normalize_kernels.scale_shift_planes(
            x.reshape(-1), y.reshape(-1), scale, shift, s_n, 1, planes, code, alpha, beta
        )
        assert (y.reshape(planes, s_n)[0] == 7.0).all()  # plane 0 is outside the range
        y.reshape(planes, s_n)[0] = want.reshape(planes, s_n)[0]
    np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
