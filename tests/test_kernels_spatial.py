"""The Resize and ConvTranspose kernels against their naive NumPy twins (tests/naive.py)."""

from __future__ import annotations

import naive
import numpy as np
import pytest

from runtime.kernels.resize import resize_planes
from runtime.ops.spatial import axis_taps, conv_transpose, resize

RNG = np.random.default_rng(3)


def _rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


RESIZE_CASES = [
    # (N, C, H, W), (OH, OW)
    ((1, 3, 5, 7), (10, 14)),  # x2
    ((2, 2, 4, 4), (13, 7)),  # odd factors
    ((1, 4, 9, 12), (4, 5)),  # downsampling
    ((1, 1, 6, 5), (6, 11)),  # one axis unchanged
    ((1, 2, 1, 3), (1, 6)),  # a length-1 axis
]
COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]


@pytest.mark.parametrize(("xs", "out"), RESIZE_CASES)
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize(
    ("mode", "nearest_mode"),
    [
        ("linear", None),
        ("nearest", "round_prefer_floor"),
        ("nearest", "round_prefer_ceil"),
        ("nearest", "floor"),
        ("nearest", "ceil"),
    ],
)
def test_resize_matches_naive(xs, out, coord, mode, nearest_mode):
    x = _rand(*xs)
    sizes = np.array([*xs[:2], *out], np.int64)
    kw = {"nearest_mode": nearest_mode} if nearest_mode else {}
    got = resize(x, None, None, sizes, mode=mode, coordinate_transformation_mode=coord, **kw)
    want = naive.resize2d(x, out, mode=mode, coord=coord, **kw)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", ["cubic", "linear"])
@pytest.mark.parametrize("antialias", [0, 1])
@pytest.mark.parametrize("scales", [(1.0, 1.0, 0.6, 0.45), (1.0, 1.0, 1.7, 2.0)])
def test_resize_kernel_matches_numpy_path(mode, antialias, scales):
    """The float32 kernel and the float64 NumPy path apply the same taps."""
    x = _rand(2, 3, 11, 9)
    sc = np.array(scales, np.float32)
    kw = {"mode": mode, "antialias": antialias, "exclude_outside": 1, "cubic_coeff_a": -0.5}
    got = resize(x, None, sc, None, **kw)
    want = resize(x.astype(np.float64), None, sc, None, **kw)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_resize_planes_kernel_is_a_weighted_gather():
    """The kernel alone on hand-made taps: out[p, i, j] = sum wy * wx * x[p, iy, ix]."""
    x = _rand(3, 4, 5)
    iy, wy, _ = axis_taps(4, 6, 1.5, mode="linear", coord="half_pixel", nearest_mode="")
    ix, wx, _ = axis_taps(5, 3, 0.6, mode="cubic", coord="asymmetric", nearest_mode="")
    out = np.empty((3, 6, 3), np.float32)
    resize_planes(x, iy, wy.astype(np.float32), ix, wx.astype(np.float32), out)
    ref = np.zeros((3, 6, 3))
    for t in range(iy.shape[1]):
        for s in range(ix.shape[1]):
            ref += (
                wy[:, t][None, :, None] * wx[:, s][None, None, :] * x[:, iy[:, t]][:, :, ix[:, s]]
            )
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


CONV_T_CASES = [
    # (N, C, H, W), (M/G, KH, KW), strides, pads, dilations, group, output_padding
    ((1, 3, 5, 5), (4, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, (0, 0)),
    ((2, 4, 6, 7), (3, 2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, (0, 0)),  # the U-Net upsampler
    ((1, 2, 4, 5), (2, 3, 3), (2, 3), (1, 0, 1, 2), (1, 1), 1, (1, 2)),
    ((1, 4, 5, 4), (2, 3, 2), (1, 2), (1, 1, 0, 0), (2, 1), 2, (0, 1)),  # grouped, dilated
    ((2, 6, 3, 3), (1, 4, 4), (2, 2), (1, 1, 1, 1), (1, 1), 6, (0, 0)),  # depthwise
]


@pytest.mark.parametrize(("xs", "ws", "st", "pads", "dil", "group", "opad"), CONV_T_CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv_transpose_matches_naive(xs, ws, st, pads, dil, group, opad, dtype):
    x = _rand(*xs, dtype=dtype)
    w = _rand(xs[1], *ws, dtype=dtype)
    b = _rand(ws[0] * group, dtype=dtype)
    got = conv_transpose(
        x, w, b, strides=st, pads=pads, dilations=dil, group=group, output_padding=opad
    )
    want = naive.conv_transpose2d(
        x, w, b, strides=st, pads=pads, dilations=dil, group=group, output_padding=opad
    )
    assert got.shape == want.shape and got.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv_transpose_1d_and_3d_are_the_2d_case_with_height_one():
    x, w, b = _rand(2, 3, 7), _rand(3, 2, 3), _rand(2)
    got = conv_transpose(x, w, b, strides=(2,), pads=(1, 0))
    want = naive.conv_transpose2d(
        x[:, :, None],
        w[:, :, None],
        b,
        strides=(1, 2),
        pads=(0, 1, 0, 0),
        dilations=(1, 1),
        group=1,
    )[:, :, 0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    got3 = conv_transpose(
        x[:, :, None, None], w[:, :, None, None], b, strides=(1, 1, 2), pads=(0, 0, 1, 0, 0, 0)
    )
    np.testing.assert_allclose(got3[:, :, 0, 0], want, rtol=1e-4, atol=1e-4)
