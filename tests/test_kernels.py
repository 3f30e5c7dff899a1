"""Each numba kernel against its naive NumPy twin (tests/naive.py), parametrized."""

from __future__ import annotations

import naive
import numba
import numpy as np
import pytest

from runtime.ops.nn import average_pool, conv, max_pool

RNG = np.random.default_rng(0)


def _rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


CONV_CASES = [
    # (N, C, H, W), (M, KH, KW), strides, pads, dilations, group
    ((2, 3, 9, 9), (4, 3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((1, 3, 10, 8), (5, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((2, 1, 28, 28), (6, 5, 5), (1, 1), (2, 2, 2, 2), (1, 1), 1),
    ((1, 4, 11, 11), (4, 3, 3), (1, 1), (1, 0, 2, 1), (2, 2), 1),
    ((2, 6, 7, 7), (6, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 6),  # depthwise
    ((1, 4, 8, 8), (6, 3, 3), (2, 1), (0, 1, 0, 1), (1, 1), 2),  # grouped
    ((1, 3, 23, 23), (8, 11, 11), (4, 4), (0, 0, 0, 0), (1, 1), 1),  # AlexNet's conv1 shape
    ((3, 37, 7, 5), (13, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # pointwise, images cross panels
    ((2, 8, 6, 6), (12, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 2),  # grouped pointwise
    ((2, 5, 9, 9), (2, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 2 rows: the few-rows GEMM
    # strided or padded 1x1s: the taps gathered, then the pointwise GEMM
    ((1, 6, 9, 9), (7, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),
    ((2, 6, 10, 11), (8, 1, 1), (3, 2), (1, 2, 0, 1), (1, 1), 2),  # grouped, padded
    ((1, 5, 6, 7), (9, 1, 1), (1, 1), (1, 0, 2, 1), (1, 1), 1),  # padded at stride 1
    ((1, 40, 4, 4), (13, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1, 16 columns: 6x16
    ((1, 9, 3, 3), (7, 1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1),  # 1x1, 9 columns: 6x16
    # long lines (im2col: copies by vectors, at stride 2 by even lanes; see
    # test_im2col_entries_match_naive)
    ((2, 6, 35, 35), (13, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),
    ((1, 4, 45, 67), (7, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    # the direct kernel: slots along rows (rows of 12 outputs and more) ...
    ((1, 3, 30, 30), (8, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),  # a stem: 2 phases
    ((2, 5, 9, 30), (13, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1),  # short slots, 2 images
    ((1, 3, 32, 32), (6, 7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1),  # ResNet's stem shape
    ((1, 4, 16, 40), (7, 3, 5), (1, 3), (1, 2, 0, 1), (1, 1), 1),  # stride 3, end pads
    ((1, 3, 18, 18), (5, 3, 3), (1, 1), (0, 1, 2, 1), (2, 2), 1),  # dilated
    ((1, 16, 14, 14), (16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),  # groups of 8 rows
    ((2, 12, 28, 28), (12, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 4),  # grouped, stride 2
    # ... and slots of positions across rows (small planes)
    ((1, 16, 8, 8), (16, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 2),  # RegNet: groups of 8
    ((1, 32, 4, 4), (32, 3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 4),  # one slot a tile
    ((1, 24, 8, 8), (24, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 3),  # 2x2 phases
    ((2, 5, 9, 7), (7, 1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1),  # strided 1x1: one phase
    ((1, 4, 7, 9), (5, 3, 3), (2, 1), (1, 0, 1, 2), (1, 2), 1),  # dilated, end pads
    ((1, 8, 13, 21), (16, 3, 3), (2, 1), (2, 1, 1, 2), (2, 3), 1),  # dilated, 8-row tiles
    # patchify convs (kernel = stride, unpadded): the patches gathered, then the pointwise
    # GEMM; sizes the stride does not divide drop their last rows and columns
    ((2, 3, 18, 17), (8, 4, 4), (4, 4), (0, 0, 0, 0), (1, 1), 1),  # ConvNeXt's stem, batch 2
    ((1, 12, 9, 11), (24, 2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1),  # its downsampling
    ((1, 8, 10, 9), (12, 2, 3), (2, 3), (0, 0, 0, 0), (1, 1), 2),  # grouped, not square
    ((1, 3, 33, 35), (7, 16, 16), (16, 16), (0, 0, 0, 0), (1, 1), 1),  # ViT's embedding
]


@pytest.mark.parametrize(("xs", "ws", "strides", "pads", "dil", "group"), CONV_CASES)
def test_conv2d_matches_naive(xs, ws, strides, pads, dil, group):
    x = _rand(*xs)
    w = _rand(ws[0], xs[1] // group, ws[1], ws[2])
    b = _rand(ws[0])
    got = conv(x, w, b, strides=strides, pads=pads, dilations=dil, group=group)
    want = naive.conv2d(x, w, b, strides=strides, pads=pads, dilations=dil, group=group)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_conv1d_is_conv2d_with_height_one():
    x, w, b = _rand(2, 3, 17), _rand(4, 3, 5), _rand(4)
    got = conv(x, w, b, strides=(2,), pads=(1, 2))
    want = naive.conv2d(
        x[:, :, None],
        w[:, :, None],
        b,
        strides=(1, 2),
        pads=(0, 1, 0, 2),
        dilations=(1, 1),
        group=1,
    )[:, :, 0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


POOL_CASES = [
    # (N, C, H, W), kernel, strides, pads, dilations, ceil_mode, count_include_pad
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 0, 0),
    ((1, 2, 9, 9), (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 0, 1),
    ((1, 2, 10, 7), (3, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, 0),
    ((1, 1, 11, 11), (3, 3), (1, 2), (2, 1, 0, 2), (2, 1), 1, 1),
    ((2, 4, 55, 55), (3, 3), (2, 2), (0, 0, 0, 0), (1, 1), 0, 0),  # AlexNet's pools
    # ceil_mode: one window larger than the input (the spec's ceil gives one output)
    ((1, 2, 1, 1), (2, 2), (2, 2), (0, 0, 0, 0), (1, 1), 1, 0),
    ((1, 2, 3, 3), (4, 4), (2, 2), (0, 0, 0, 0), (1, 1), 1, 1),
]


@pytest.mark.parametrize(("xs", "k", "s", "p", "d", "ceil", "cip"), POOL_CASES)
@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pool2d_matches_naive(xs, k, s, p, d, ceil, cip, mode):
    x = _rand(*xs)
    want = naive.pool2d(
        x,
        kernel=k,
        strides=s,
        pads=p,
        dilations=d,
        ceil_mode=ceil,
        mode=mode,
        count_include_pad=cip,
    )
    if mode == "max":
        got, idx = max_pool(x, kernel_shape=k, strides=s, pads=p, dilations=d, ceil_mode=ceil)
        # The indices point at the maxima in the flattened input.
        np.testing.assert_array_equal(x.reshape(-1)[idx], got)
        # Without indices: dense windows, or a -inf bordered copy of each padded plane.
        alone = max_pool(
            x, kernel_shape=k, strides=s, pads=p, dilations=d, ceil_mode=ceil, _num_outputs=1
        )
        np.testing.assert_array_equal(alone, got)
    else:
        got = average_pool(
            x, kernel_shape=k, strides=s, pads=p, dilations=d, ceil_mode=ceil, count_include_pad=cip
        )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


EPILOGUES = [a for a in naive.EPILOGUE_PARAMS if a is not None]

# (x shape, w shape, group, pads): one per way a conv's epilogue runs: the GEMM's
# store (>= GEMM_FEW_ROWS rows), the separate epilogue (fewer rows), a 1x1 whose
# jobs pack their own columns from the input planes (grouped too; with few rows: the
# planes packed first), and the depthwise kernel.
EPILOGUE_PATHS = {
    "gemm store": ((2, 3, 6, 6), (4, 3, 3, 3), 1, (1, 1, 1, 1)),
    "few rows": ((2, 3, 6, 6), (2, 3, 3, 3), 1, (1, 1, 1, 1)),
    "pointwise": ((2, 5, 7, 7), (6, 5, 1, 1), 1, (0, 0, 0, 0)),
    "grouped pointwise": ((3, 6, 5, 5), (8, 3, 1, 1), 2, (0, 0, 0, 0)),
    "pointwise few rows": ((2, 5, 7, 7), (2, 5, 1, 1), 1, (0, 0, 0, 0)),
    "pointwise 6x16": ((1, 5, 4, 4), (7, 5, 1, 1), 1, (0, 0, 0, 0)),
    "depthwise": ((2, 4, 7, 7), (4, 1, 3, 3), 4, (1, 1, 1, 1)),
    "direct": ((2, 3, 5, 16), (8, 3, 3, 3), 1, (1, 1, 1, 1)),  # whole tiles, 2 rows, 1 slot
    "direct short rows": ((1, 4, 3, 14), (6, 2, 3, 3), 2, (1, 1, 1, 1)),
    "direct small planes": ((1, 16, 4, 4), (16, 8, 3, 3), 2, (1, 1, 1, 1)),
}


@pytest.mark.parametrize("path", list(EPILOGUE_PATHS))
@pytest.mark.parametrize("act", EPILOGUES)
def test_conv_epilogue_activation_and_scale(act, path):
    from runtime.ops.nn import conv_forward

    xs, ws, group, pads = EPILOGUE_PATHS[path]
    x, w, b = _rand(*xs), _rand(*ws), _rand(ws[0])
    scale, shift = _rand(ws[0]), _rand(ws[0])
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    got = conv_forward(
        x, w, b, pads=pads, group=group, activation=act, alpha=alpha, beta=beta,
        post_scale=scale, post_shift=shift,
    )  # fmt: skip
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=pads, dilations=(1, 1), group=group)
    y = naive.activation(act, y, alpha, beta)
    want = y * scale[None, :, None, None] + shift[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def _unfused(act: str, y: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The runtime's own op for the activation ``act`` (SiLU: Sigmoid, then Mul)."""
    from runtime.ops import activations, elementwise

    if act == "SiLU":
        return y * elementwise.sigmoid(y)
    if act == "Clip":
        return elementwise.clip_11(y, np.float32(alpha), np.float32(beta))
    if act == "HardSigmoid":
        return activations.hard_sigmoid(y, alpha=alpha, beta=beta)
    if act == "HardSwish":
        return activations.hard_swish(y)
    if act == "LeakyRelu":
        return elementwise.leaky_relu(y, alpha=alpha)
    return {"Relu": elementwise.relu, "Tanh": elementwise.tanh,
            "Sigmoid": elementwise.sigmoid}[act](y)  # fmt: skip


@pytest.mark.parametrize("act", EPILOGUES)
def test_fused_activations_keep_nan_and_inf_as_the_ops_do(act):
    """A bias of inf (from a mutated model, tests/fuzz.py) makes inf - inf = NaN in the
    next layer: the fused activation must give what the unfused op gives."""
    from runtime.ops.nn import conv_forward

    x, w = _rand(1, 2, 3, 3), _rand(5, 2, 1, 1)
    b = np.array([np.inf, -np.inf, np.nan, 0.0, 1.0], np.float32)
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    got = conv_forward(x, w, b, activation=act, alpha=alpha, beta=beta)
    with np.errstate(invalid="ignore"):
        want = _unfused(act, conv_forward(x, w, b), alpha, beta)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def _entry_conv(
    family, x, w, b, strides, pads, dilations, group, act=None, alpha=0.0, beta=0.0, res=None
):
    """The conv by the first entry of ``family`` that applies, as the table would pick
    it within the family: im2col's 2-D paths, which the direct kernel takes first
    wherever it applies, stay tested."""
    from runtime import kernel_table
    from runtime.kernels.activation import ACTIVATIONS
    from runtime.ops.nn import _spatial

    out_sp, begin, *_ = _spatial("Conv", x.shape[2:], w.shape[2:], auto_pad="NOTSET",
                                 pads=pads, strides=strides, dilations=dilations)  # fmt: skip
    spec = kernel_table.ConvSpec(
        w, group, tuple(strides), tuple(dilations), tuple(begin), x_shape=x.shape,
        out_sp=tuple(out_sp), bias=b,
        epilogue={"act": ACTIVATIONS[act], "alpha": alpha, "beta": beta},
        residual=res is not None,
    )  # fmt: skip
    entry = next(e for e in kernel_table.CONV_KERNELS
                 if e.family == family and e.applies(spec) is None)  # fmt: skip
    out = np.full((x.shape[0], w.shape[0], *out_sp), np.nan, np.float32)
    entry.prepare(spec)(x, out, *([] if res is None else [res.reshape(-1)]))
    return out


@pytest.mark.parametrize(("xs", "ws", "strides", "pads", "dil", "group"), CONV_CASES)
def test_im2col_entries_match_naive(xs, ws, strides, pads, dil, group):
    if ws[0] // group < 3 or (group > 1 and group == xs[1]):
        pytest.skip("the few-rows and depthwise paths: in test_conv2d_matches_naive")
    x, w, b = _rand(*xs), _rand(ws[0], xs[1] // group, ws[1], ws[2]), _rand(ws[0])
    want = naive.conv2d(x, w, b, strides=strides, pads=pads, dilations=dil, group=group)
    got = _entry_conv("im2col", x, w, b, strides, pads, dil, group)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", EPILOGUES)
def test_im2col_gemm_store_epilogue(act):
    xs, ws, group, pads = EPILOGUE_PATHS["gemm store"]
    x, w, b = _rand(*xs), _rand(*ws), _rand(ws[0])
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=pads, dilations=(1, 1), group=group)
    want = naive.activation(act, y, alpha, beta)
    got = _entry_conv("im2col", x, w, b, (1, 1), pads, (1, 1), group, act, alpha, beta)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# strided convs wider than 1x1 with rows enough for tiles, and: images crossing a tile,
# two blocks of channels (the second partial), groups of 8 channels on a small plane
PIXELS_CASES = [
    c for c in CONV_CASES
    if max(c[2]) > 1 and c[1][1:] != (1, 1) and c[1][0] // c[5] >= 3 and c[5] != c[0][1]
] + [
    ((3, 16, 9, 9), (40, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 1),
    ((1, 64, 8, 8), (64, 3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8),
]  # fmt: skip


def _pixels_entry(monkeypatch):
    """The pixels entry made to apply to any strided conv (and with AVX2's build: its
    tiles are the same code)."""
    from runtime import kernel_table

    monkeypatch.setattr(kernel_table, "PIXELS_MAX_SHARE", float("inf"))
    monkeypatch.setattr(kernel_table, "PIXELS_MIN_TAPS", 0)
    monkeypatch.setattr(kernel_table, "_direct_whole_rows", lambda s: False)
    monkeypatch.setattr(kernel_table, "has_avx512", lambda: True)


@pytest.mark.parametrize(("xs", "ws", "strides", "pads", "dil", "group"), PIXELS_CASES)
def test_pixels_entry_matches_naive(monkeypatch, xs, ws, strides, pads, dil, group):
    _pixels_entry(monkeypatch)
    x, w, b = _rand(*xs), _rand(ws[0], xs[1] // group, ws[1], ws[2]), _rand(ws[0])
    want = naive.conv2d(x, w, b, strides=strides, pads=pads, dilations=dil, group=group)
    got = _entry_conv("pixels", x, w, b, strides, pads, dil, group)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("act", EPILOGUES)
def test_pixels_entry_epilogue(monkeypatch, act):
    """The pixels store's epilogue, channels a vector (or ``activate_channels``): the
    activation, then a BatchNormalization's scale and shift per channel."""
    from runtime import kernel_table
    from runtime.kernels.activation import ACTIVATIONS

    _pixels_entry(monkeypatch)
    x, w, b = _rand(2, 6, 11, 11), _rand(37, 6, 3, 3), _rand(37)
    scale, shift = _rand(37), _rand(37)
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    spec = kernel_table.ConvSpec(
        w, 1, (2, 2), (1, 1), (1, 1), x_shape=x.shape, out_sp=(6, 6), bias=b,
        epilogue={"act": ACTIVATIONS[act], "alpha": alpha, "beta": beta, "scale": scale,
                  "shift": shift},
    )  # fmt: skip
    entry = next(e for e in kernel_table.CONV_KERNELS if e.family == "pixels")
    assert entry.applies(spec) is None
    got = np.full((2, 37, 6, 6), np.nan, np.float32)
    entry.prepare(spec)(x, got)
    y = naive.conv2d(x, w, b, strides=(2, 2), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    want = naive.activation(act, y, alpha, beta) * scale[:, None, None] + shift[:, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


RESIDUAL_CASES = [
    # (N, C, H, W), (M, KH, KW), strides, pads, group: row slots (whole and short),
    # grid slots on a small plane, a grouped stride 2
    ((2, 5, 6, 20), (13, 3, 3), (1, 1), (1, 1, 1, 1), 1),
    ((1, 16, 6, 6), (16, 3, 3), (1, 1), (1, 1, 1, 1), 2),
    ((1, 12, 16, 16), (12, 3, 3), (2, 2), (1, 1, 1, 1), 4),
    ((2, 8, 9, 9), (20, 1, 1), (2, 2), (0, 0, 0, 0), 1),  # a gathered 1x1 (pointwise family)
    ((2, 6, 9, 11), (10, 2, 2), (2, 2), (0, 0, 0, 0), 2),  # a grouped patchify conv
]


def _fast_family(ws, strides) -> str:
    """The entry that takes a RESIDUAL_CASES conv before im2col."""
    if ws[1:] == (1, 1):
        return "pointwise"  # the gathered 1x1
    return "patch" if ws[1:] == strides else "direct"


# the 1x1 by the gathered pointwise entry, the patchify conv by the patch entry, the others
# by the direct kernel; all by im2col
RESIDUAL_RUNS = [
    (family, case)
    for case in RESIDUAL_CASES
    for family in (_fast_family(case[1], case[2]), "im2col")
]


@pytest.mark.parametrize(("family", "case"), RESIDUAL_RUNS)
@pytest.mark.parametrize("act", [None, "Relu", "HardSwish", "SiLU"])
def test_conv_store_adds_a_residual(family, act, case):
    """A residual Add fused into the store: act(conv + bias + res), vector epilogue
    (Relu, HardSwish) and scalar one (SiLU), whole tiles and pieces."""
    xs, ws, strides, pads, group = case
    x, w, b = _rand(*xs), _rand(ws[0], xs[1] // group, ws[1], ws[2]), _rand(ws[0])
    y = naive.conv2d(x, w, b, strides=strides, pads=pads, dilations=(1, 1), group=group)
    res = _rand(*y.shape)
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    want = naive.activation(act, y.astype(np.float64) + res, alpha, beta)
    got = _entry_conv(family, x, w, b, strides, pads, (1, 1), group, act, alpha, beta, res)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("xs", "kh", "kw"),
    [((1, 3, 8, 8), 4, 4), ((2, 5, 9, 11), 2, 2), ((3, 2, 7, 10), 3, 2), ((1, 1, 16, 17), 16, 16)],
)
def test_gather_patches_matches_naive(xs, kh, kw):
    """Every patch value lands in its plane, the rows and columns past whole patches
    are dropped, and nothing else is written (the output starts as NaN)."""
    from runtime.kernels.patch import gather_patches

    x = _rand(*xs)
    want = naive.patches(x, kh, kw)
    got = np.full(want.shape, np.nan, np.float32)
    gather_patches(x, got, kh, kw)
    np.testing.assert_array_equal(got, want)


PATCH_CASES = [
    # (N, C, H, W), (M, KH, KW), group: stems at odd sizes, downsampling, grouped, 6x16 tiles
    ((2, 3, 17, 18), (16, 4, 4), 1),
    ((1, 12, 9, 7), (24, 2, 2), 1),
    ((3, 8, 6, 10), (12, 2, 2), 4),
    ((1, 6, 8, 8), (9, 4, 4), 1),  # 2x2 outputs: one 16-wide panel
]


@pytest.mark.parametrize(("xs", "ws", "group"), PATCH_CASES)
@pytest.mark.parametrize("act", [None, "Relu", "HardSwish", "SiLU"])
@pytest.mark.parametrize("bias", [True, False])
def test_patch_entry_matches_naive(xs, ws, group, act, bias):
    """The patch entry (the patches gathered, then the pointwise GEMM), chosen by the
    table for a kernel equal to its stride, with its epilogue: act(conv + bias)."""
    from runtime.ops.nn import conv_call

    m, kh, kw = ws
    x, w = _rand(*xs), _rand(m, xs[1] // group, kh, kw)
    b = _rand(m) if bias else None
    choice = conv_call(xs, w, b, strides=(kh, kw), group=group).choice
    assert "_patch_pointwise_gemm_" in choice.algorithm, choice
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    y = naive.conv2d(x, w, b, strides=(kh, kw), pads=(0,) * 4, dilations=(1, 1), group=group)
    want = naive.activation(act, y, alpha, beta)
    got = _entry_conv("patch", x, w, np.zeros(m, np.float32) if b is None else b, (kh, kw),
                      (0,) * 4, (1, 1), group, act, alpha, beta)  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("xs", "ws", "strides", "pads", "dil", "why"),
    [
        ((1, 4, 8, 8), (8, 2, 2), (2, 2), (1, 1, 1, 1), (1, 1), "windows read padding"),
        ((1, 4, 9, 9), (8, 2, 2), (2, 2), (0, 0, 1, 1), (1, 1), "windows read padding"),
        ((1, 4, 8, 8), (8, 2, 2), (1, 1), (0, 0, 0, 0), (1, 1), "kernel not equal"),
        ((1, 4, 8, 8), (8, 2, 2), (2, 2), (0, 0, 0, 0), (2, 2), "dilated"),
        ((1, 4, 8, 8), (2, 2, 2), (2, 2), (0, 0, 0, 0), (1, 1), "fewer than"),
    ],
)
def test_patch_entry_applies_to_unpadded_kernels_equal_to_their_stride(
    xs, ws, strides, pads, dil, why
):
    """Padding that a window reads (at the start, or at the end where it adds an
    output), another stride, dilation or few rows: not the patch entry, and why."""
    from runtime import kernel_table
    from runtime.ops.nn import _spatial, conv_call

    w = _rand(ws[0], xs[1], ws[1], ws[2])
    out_sp, begin, *_ = _spatial("Conv", xs[2:], ws[1:], auto_pad="NOTSET", pads=pads,
                                 strides=strides, dilations=dil)  # fmt: skip
    b = np.zeros(ws[0], np.float32)
    spec = kernel_table.ConvSpec(w, 1, strides, dil, tuple(begin), x_shape=xs,
                                 out_sp=tuple(out_sp), bias=b)  # fmt: skip
    (entry,) = [e for e in kernel_table.CONV_KERNELS if e.family == "patch"]
    assert why in entry.applies(spec)
    call = conv_call(xs, w, strides=strides, pads=pads, dilations=dil)
    assert "_patch_" not in call.choice.algorithm, call.choice


@pytest.mark.parametrize("group", [1, 2])
def test_conv_split_gemm_matches_naive(monkeypatch, group):
    """The GEMM's row blocks are cut into many jobs: same result as one job each."""
    from runtime.kernels import gemm as gemm_kernels

    monkeypatch.setattr(gemm_kernels, "GEMM_JOBS_PER_THREAD", 64)
    x, w, b = _rand(2, 4, 9, 9), _rand(6, 4 // group, 3, 3), _rand(6)
    got = conv(x, w, b, pads=(1, 1, 1, 1), group=group)
    want = naive.conv2d(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=group)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


WINOGRAD_CASES = [
    # (N, C, H, W), M, r, pads (top, left, bottom, right)
    ((2, 4, 9, 9), 5, 3, (1, 1, 1, 1)),
    ((1, 3, 9, 10), 20, 3, (1, 1, 1, 1)),  # a whole block of CB output channels and a part
    ((1, 3, 13, 13), 8, 3, (1, 1, 1, 1)),  # AlexNet's 13x13: tiles overhang the output
    ((1, 2, 10, 7), 3, 3, (0, 0, 0, 0)),
    ((2, 3, 11, 12), 4, 3, (2, 1, 0, 2)),
    ((1, 4, 27, 27), 6, 5, (2, 2, 2, 2)),  # AlexNet's conv2 shape, fewer channels
    ((2, 2, 8, 9), 3, 5, (1, 2, 3, 0)),
]


def _winograd_params():
    from runtime.kernels import winograd

    for xs, m, r, pads in WINOGRAD_CASES:
        for tile in (winograd.TILE[r], winograd.SMALL_TILE.get(r)):
            if tile:
                yield xs, m, r, pads, tile


@pytest.mark.parametrize(("xs", "m", "r", "pads", "tile"), list(_winograd_params()))
@pytest.mark.parametrize("act", [None, *EPILOGUES])
def test_winograd_conv_matches_naive(xs, m, r, pads, tile, act):
    """Weights scaled by 1/sqrt(fan-in), as a trained network's are: outputs of order
    one, so the tolerance means the same for every kernel size and channel count
    (F(4x4, 5x5) over N(0, 1) weights sums 100 terms to outputs near 40)."""
    from runtime.kernel_table import winograd_weights
    from runtime.ops.nn import conv_forward

    x, w, b = _rand(*xs), _rand(m, xs[1], r, r) / np.float32(np.sqrt(xs[1] * r * r)), _rand(m)
    scale, shift = _rand(m), _rand(m)
    u = winograd_weights(w, 1, tile)
    got = conv_forward(
        x,
        w,
        b,
        winograd=u,
        pads=pads,
        activation=act,
        alpha=naive.EPILOGUE_PARAMS[act][0],
        beta=naive.EPILOGUE_PARAMS[act][1],
        post_scale=scale,
        post_shift=shift,
    )
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=pads, dilations=(1, 1), group=1)
    y = naive.activation(act, y, *naive.EPILOGUE_PARAMS[act])
    want = y * scale[None, :, None, None] + shift[None, :, None, None]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("xs", "k", "s", "pads"),
    [
        ((1, 3, 27, 27), 11, 4, (0, 0, 0, 0)),  # AlexNet's conv1, smaller
        ((2, 2, 15, 14), 6, 2, (1, 2, 0, 1)),
        ((1, 1, 17, 17), 9, 3, (2, 2, 2, 2)),
        ((1, 2, 12, 12), 10, 2, (0, 0, 0, 0)),  # k' = 5: F(4, 5)
    ],
)
def test_strided_winograd_by_space_to_depth_matches_naive(xs, k, s, pads):
    from runtime.kernel_table import winograd_weights
    from runtime.ops.nn import conv_forward

    x, w, b = _rand(*xs), _rand(4, xs[1], k, k), _rand(4)
    got = conv_forward(
        x, w, b, winograd=winograd_weights(w, s), pads=pads, strides=(s, s), activation="Relu"
    )
    want = naive.conv2d(x, w, b, strides=(s, s), pads=pads, dilations=(1, 1), group=1)
    np.testing.assert_allclose(got, np.maximum(want, 0), rtol=1e-4, atol=1e-4)


def test_winograd_chunks_match_naive(monkeypatch):
    """Images in several chunks (a small budget), the last one partial; in the output
    transform, several passes over the tiles and a partial last block of channels."""
    from runtime.kernel_table import winograd_weights
    from runtime.kernels import winograd
    from runtime.ops.nn import conv_forward

    # two images of 9 tiles a chunk; F(4x4, 3x3): 5 tiles a pass of the output transform
    monkeypatch.setattr(winograd, "WINOGRAD_CHUNK_FLOATS", 2 * 36 * 40 * 9)
    monkeypatch.setattr(winograd, "WINOGRAD_OUT_PASS_FLOATS", 40 * winograd.CB * 5)
    x, w, b = _rand(5, 4, 11, 10), _rand(40, 4, 3, 3) / np.float32(6), _rand(40)
    u = winograd_weights(w, 1, 4)
    got = conv_forward(
        x, w, b, winograd=u, pads=(1, 1, 1, 1), activation="Relu", max_pool=(2, 2, 2, 2)
    )
    y = np.maximum(
        naive.conv2d(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1), 0
    )
    want = naive.pool2d(
        y,
        kernel=(2, 2),
        strides=(2, 2),
        pads=(0, 0, 0, 0),
        dilations=(1, 1),
        ceil_mode=0,
        mode="max",
    )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


WINOGRAD_RESIDUAL_CASES = [
    # (N, C, H, W), M, r, pads, tile: a block of CB output channels and a part, rows of
    # 10 (one partial vector of positions a row) and of 18 (a whole vector and a part),
    # 7 x 7 planes (three vectors and one value), F(4x4, 5x5); batches above 1
    ((2, 3, 9, 10), 20, 3, (1, 1, 1, 1), 4),
    ((1, 4, 18, 18), 5, 3, (1, 1, 1, 1), 2),
    ((3, 2, 7, 7), 16, 3, (1, 1, 1, 1), 2),
    ((2, 3, 11, 13), 7, 5, (2, 2, 2, 2), 4),
]


def _winograd_residual(x, w, b, res, tile, pads, act, alpha, beta, scale, shift, pool=None):
    from runtime.kernel_table import winograd_weights
    from runtime.ops.nn import conv_forward

    return conv_forward(
        x, w, b, res, winograd=winograd_weights(w, 1, tile), pads=pads, activation=act,
        alpha=alpha, beta=beta, post_scale=scale, post_shift=shift, max_pool=pool,
        residual=True,
    )  # fmt: skip


@pytest.mark.parametrize(("xs", "m", "r", "pads", "tile"), WINOGRAD_RESIDUAL_CASES)
@pytest.mark.parametrize(
    ("act", "alpha"),
    [(None, 0.0), ("Relu", 0.0), ("SiLU", 0.0), ("HardSwish", 1 / 6), ("LeakyRelu", 2.0)],
)
def test_winograd_store_adds_a_residual(xs, m, r, pads, tile, act, alpha):
    """A residual Add fused into the Winograd output stage: act((conv + bias) + res) *
    scale + shift, in vectors (Relu, SiLU, HardSwish) and by the scalar activation
    (LeakyRelu with a slope above 1); partial blocks of channels and of positions."""
    x, w, b = _rand(*xs), _rand(m, xs[1], r, r) / np.float32(np.sqrt(xs[1] * r * r)), _rand(m)
    scale, shift = _rand(m), _rand(m)
    beta = naive.EPILOGUE_PARAMS[act][1]
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=pads, dilations=(1, 1), group=1)
    res = _rand(*y.shape)
    got = _winograd_residual(x, w, b, res, tile, pads, act, alpha, beta, scale, shift)
    want = naive.activation(act, y + res, alpha, beta)
    want = want * scale[None, :, None, None] + shift[None, :, None, None]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_winograd_residual_in_chunks_and_before_a_pool(monkeypatch):
    """Images in several chunks (each chunk's images read their own residual), and a
    max pool after a residual: the unpooled output gets the residual, then is pooled."""
    from runtime.kernels import winograd

    monkeypatch.setattr(winograd, "WINOGRAD_CHUNK_FLOATS", 2 * 36 * 40 * 9)
    x, w, b = _rand(5, 4, 11, 10), _rand(40, 4, 3, 3) / np.float32(6), _rand(40)
    ones, zeros = np.ones(40, np.float32), np.zeros(40, np.float32)
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=1)
    res = _rand(*y.shape)
    got = _winograd_residual(x, w, b, res, 4, (1, 1, 1, 1), "Relu", 0.0, 0.0, ones, zeros)
    np.testing.assert_allclose(got, np.maximum(y + res, 0), rtol=1e-4, atol=1e-4)
    pool = (2, 2, 2, 2)
    got = _winograd_residual(x, w, b, res, 4, (1, 1, 1, 1), "Relu", 0.0, 0.0, ones, zeros, pool)
    want = naive.pool2d(np.maximum(y + res, 0), kernel=(2, 2), strides=(2, 2), pads=(0, 0, 0, 0),
                        dilations=(1, 1), ceil_mode=0, mode="max")  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("use_winograd", [True, False])
@pytest.mark.parametrize(
    ("xs", "r", "pads", "pool"),
    [
        ((1, 3, 13, 13), 3, (1, 1, 1, 1), (3, 3, 2, 2)),  # AlexNet's conv5 + pool: 13 -> 6
        ((2, 2, 27, 27), 5, (2, 2, 2, 2), (3, 3, 2, 2)),  # conv2 + pool: 27 -> 13
        ((1, 2, 10, 9), 3, (0, 1, 2, 0), (2, 2, 2, 2)),  # windows leave the last row and column
        ((1, 3, 9, 9), 3, (1, 1, 1, 1), (3, 2, 1, 3)),
    ],
)
def test_conv_with_fused_max_pool_matches_naive(xs, r, pads, pool, use_winograd):
    """Conv, ReLU, scale and shift, then a max pool: in the Winograd output transform,
    or after an im2col conv (no transformed weights)."""
    from runtime.kernel_table import winograd_weights
    from runtime.kernels import winograd
    from runtime.ops.nn import conv_forward

    m = 5
    x, w, b = _rand(*xs), _rand(m, xs[1], r, r) / np.float32(np.sqrt(xs[1] * r * r)), _rand(m)
    scale, shift = _rand(m), _rand(m)  # negative scales too: the pool comes after them
    u = winograd_weights(w, 1, winograd.TILE[r]) if use_winograd else None
    got = conv_forward(
        x,
        w,
        b,
        winograd=u,
        pads=pads,
        activation="Relu",
        post_scale=scale,
        post_shift=shift,
        max_pool=pool,
    )
    y = np.maximum(naive.conv2d(x, w, b, strides=(1, 1), pads=pads, dilations=(1, 1), group=1), 0)
    y = y * scale[None, :, None, None] + shift[None, :, None, None]
    want = naive.pool2d(
        y,
        kernel=pool[:2],
        strides=pool[2:],
        pads=(0, 0, 0, 0),
        dilations=(1, 1),
        ceil_mode=0,
        mode="max",
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("m", "r"), [(2, 3), (3, 3), (4, 3), (2, 5)])
def test_winograd_transforms_compute_a_correlation(m, r):
    from runtime.kernels import winograd

    bt, g, at = winograd.transforms(m, r)
    assert bt.shape == (m + r - 1,) * 2 and g.shape == (m + r - 1, r) and at.shape == (m, m + r - 1)
    d, f = RNG.standard_normal(m + r - 1), RNG.standard_normal(r)
    want = np.correlate(d, f, mode="valid")
    np.testing.assert_allclose(at @ ((g @ f) * (bt @ d)), want, atol=1e-9)
    # B^T is exact: its zeros are zeros (the transform kernels skip them)
    np.testing.assert_array_equal(bt * 1024, np.round(bt * 1024))
    if (m, r) == (2, 3):
        assert np.count_nonzero(bt) == 8  # Lavin and Gray's B^T for F(2, 3)


def test_simd_vectors_load_fuse_and_store():
    from runtime.kernels import simd

    @numba.njit
    def axpy_rows(a, x, s, out):  # out[i:i+W] = a[i:i+W] * s + x[i:i+W], vector by vector
        for i in range(0, a.shape[0], simd.WIDTH):
            simd.prefetch(a, i + 4 * simd.WIDTH)  # past the end: a hint, never a fault
            simd.vstore(out, i, simd.vfma(simd.vload(x, i), simd.vload(a, i), s))
        acc = simd.vzero()
        simd.vstore(out, a.shape[0], simd.vfma(acc, simd.vload(a, 0), s))
        simd.vstore(out, a.shape[0] + simd.WIDTH, simd.vmax(simd.vload(a, 0), simd.vload(x, 0)))

    w = simd.WIDTH
    a, x = _rand(3 * w), _rand(3 * w)
    out = np.full(5 * w, np.nan, np.float32)
    axpy_rows(a, x, np.float32(0.5), out)
    np.testing.assert_allclose(out[: 3 * w], a * 0.5 + x, rtol=1e-6)
    np.testing.assert_allclose(out[3 * w : 4 * w], a[:w] * 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out[4 * w :], np.maximum(a[:w], x[:w]))


def test_simd_lane_operations_match_numpy():
    from runtime.kernels import simd

    w = simd.WIDTH

    @numba.njit
    def lanes(a, b, s, out):
        va, vb = simd.vload(a, 0), simd.vload(b, 0)
        simd.vstore(out, 0, simd.vmin(va, vb))
        simd.vstore(out, w, simd.vrelu(va))
        simd.vstore(out, 2 * w, simd.vsplat(s))
        simd.vstore(out, 3 * w, simd.vadd(va, vb))
        simd.vstore(out, 4 * w, simd.veven(va, vb))
        simd.vstore(out, 6 * w, simd.vmul(va, vb))

    @numba.njit
    def exact(n, b, out):  # 2^n, round(7 b), n / b
        simd.vstore(out, 0, simd.vexp2(simd.vload(n, 0)))
        simd.vstore(out, w, simd.vround(simd.vmul(simd.vload(b, 0), simd.vsplat(7.0))))
        simd.vstore(out, 2 * w, simd.vdiv(simd.vload(n, 0), simd.vload(b, 0)))

    @numba.njit
    def lane_fma(a, b, out):  # b + a * b, lane by lane
        simd.vstore(out, 0, simd.vfmav(simd.vload(b, 0), simd.vload(a, 0), simd.vload(b, 0)))

    a, b = _rand(w), _rand(w)
    a[:3] = (np.nan, -0.0, 0.0)
    out = np.full(7 * w, np.inf, np.float32)
    lanes(a, b, np.float32(1.5), out)
    np.testing.assert_array_equal(out[:w], np.where(a > b, b, a))
    np.testing.assert_array_equal(out[w : 2 * w], np.where(a <= 0, 0, a))  # NaN stays NaN
    assert not np.signbit(out[w + 1])  # -0 becomes +0, as the scalar epilogue's ReLU
    np.testing.assert_array_equal(out[2 * w : 3 * w], np.full(w, 1.5, np.float32))
    np.testing.assert_array_equal(out[3 * w : 4 * w], a + b)
    np.testing.assert_array_equal(out[4 * w : 5 * w], np.concatenate([a, b])[::2])
    np.testing.assert_array_equal(out[6 * w :], a * b)
    n = np.array([-250, -150, -126, -1, 0, 1, 2, 3, 64, 100, 127, 128, 200, 250, 5, 6], np.float32)
    powers = np.full(3 * w, np.inf, np.float32)
    exact(n, b, powers)
    with np.errstate(over="ignore"):  # 2^128 and up: inf in float32
        want = np.ldexp(np.float64(1), n.astype(int)).astype(np.float32)
    np.testing.assert_array_equal(powers[:w], want)
    np.testing.assert_array_equal(powers[w : 2 * w], np.rint(b * 7))
    np.testing.assert_array_equal(powers[2 * w :], n / b)
    fused = np.full(w, np.inf, np.float32)
    lane_fma(a, b, fused)
    np.testing.assert_allclose(fused[1:], b[1:] + a[1:] * b[1:], rtol=1e-6, atol=1e-6)  # a[0]: NaN


@pytest.mark.parametrize(
    ("rows", "n", "cols", "m"), [(16, 16, 16, 16), (5, 7, 9, 3), (0, 16, 2, 16)]
)
def test_simd_transpose_matches_numpy(rows, n, cols, m):
    """simd.transpose reads rows x n values (the rest of the tile zeros) and writes the
    first m values of cols columns, nothing else (the depthwise lanes kernel's tiles)."""
    from runtime.kernels import simd

    @numba.njit
    def transpose(a, b, rows, n, cols, m):
        simd.transpose(a, 3, 20, rows, n, b, 5, 30, cols, m)

    w = simd.WIDTH
    a = _rand(3 + 20 * (w - 1) + w)
    b = np.full(5 + 30 * (w - 1) + w, np.inf, np.float32)
    transpose(a, b, rows, n, cols, m)
    tile = np.zeros((w, w), np.float32)
    for r in range(rows):
        tile[r, :n] = a[3 + 20 * r : 3 + 20 * r + n]
    want = np.full_like(b, np.inf)
    for c in range(cols):
        want[5 + 30 * c : 5 + 30 * c + m] = tile[:m, c]
    np.testing.assert_array_equal(b, want)


@pytest.mark.parametrize("n", [0, 1, 7, 16])
def test_simd_masked_copies_touch_only_their_lanes(n):
    """vload_first reads a[i : i + n] and zeros the rest; vstore_first writes n lanes,
    nothing past them (the depthwise kernel's copies rely on it at a plane's end)."""
    from runtime.kernels import simd

    w = simd.WIDTH

    @numba.njit
    def copy(a, out, n):
        simd.vstore_first(out, 3, simd.vload_first(a, 5, n), n)
        simd.vstore(out, 2 * w, simd.vload_first(a, 5, n))

    a = _rand(2 * w)
    out = np.full(3 * w, np.inf, np.float32)
    copy(a[: 5 + n], out, n)  # a view ending at the last lane read
    want = np.full(3 * w, np.inf, np.float32)
    want[3 : 3 + n] = a[5 : 5 + n]
    want[2 * w :] = np.concatenate([a[5 : 5 + n], np.zeros(w - n, np.float32)])
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize(("lo", "hi"), [(0, 0), (0, 16), (3, 9), (5, 16), (15, 16)])
def test_simd_lane_ranges_touch_only_their_lanes(lo, hi):
    """vload_lanes reads lanes [lo, hi) of a[i + l] into v, keeping v's others;
    vstore_lanes writes those lanes alone (the direct conv stores a slot's pieces so,
    i negative where lo is not 0)."""
    from runtime.kernels import simd

    w = simd.WIDTH

    @numba.njit
    def copy(a, i, out, j, v, lo, hi):
        simd.vstore_lanes(out, j, simd.vload_lanes(a, i, simd.vload(v, 0), lo, hi), lo, hi)
        simd.vstore(out, 2 * w, simd.vload_lanes(a, i, simd.vload(v, 0), lo, hi))

    a, v = _rand(2 * w), _rand(w)
    out = np.full(3 * w, np.inf, np.float32)
    copy(a[: 4 + hi], 4 - lo, out, 7 - lo, v, lo, hi)  # ends at the last lane read
    want = np.full(3 * w, np.inf, np.float32)
    want[7 : 7 + hi - lo] = a[4 : 4 + hi - lo]
    both = v.copy()
    both[lo:hi] = a[4 : 4 + hi - lo]
    want[2 * w :] = both
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize(
    ("g", "m", "k", "t"),
    [
        (3, 32, 20, 14),  # one panel, one row block
        (2, 45, 17, 30),  # rows past the last full block, columns past the last full panel
        (2, 64, 33, 49),  # three full panels and a half panel
        (16, 70, 9, 150),  # more panels than a job's group: several jobs per product
        (1, 5, 1, 3),
    ],
)
def test_packed_products_match_numpy(g, m, k, t):
    """Winograd's products on weights packed by rows (``winograd_gemm``), written in
    blocks of channels, with zeros past the last row."""
    from runtime.kernels import winograd_gemm

    u, v = _rand(g, m, k), _rand(g, k, t)
    up = winograd_gemm.pack_rows(u)
    assert up.shape == (g, -(-m // winograd_gemm.MB), k, winograd_gemm.MB)
    vp = np.full((numba.get_num_threads(), winograd_gemm.panel_floats(k)), np.nan, np.float32)
    tp, mp = winograd_gemm.padded(t, winograd_gemm.NR), up.shape[1] * winograd_gemm.MB
    zb = np.full(g * mp * tp, np.nan, np.float32)
    winograd_gemm.products(up, v.reshape(-1), zb, k, t, vp)
    w = winograd_gemm.WIDTH  # z[g, o, t] = zb[g, o // w, t, o % w]
    z = zb.reshape(g, mp // w, tp, w).transpose(0, 1, 3, 2).reshape(g, mp, tp)
    want = np.matmul(u.astype(np.float64), v.astype(np.float64))
    np.testing.assert_allclose(z[:, :m, :t], want, rtol=1e-5, atol=1e-5)
    assert not z[:, m:, :t].any()  # rows past M: zero weights' products


def _gemm_check(a, b):
    from runtime.kernel_table import matmul

    out = np.full(
        (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1]),
        np.nan,
        np.float32,
    )
    matmul(a, b, out)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


GEMM_CASES = [
    ((70, 30), (30, 50), False, False),  # row blocks and a partial panel
    ((20, 30), (30, 90), False, False),  # several panels, a partial row block
    ((30, 70), (30, 50), True, False),  # A transposed
    ((9, 40), (33, 40), False, True),  # B transposed
    ((17, 40), (33, 40), False, True),
    ((1, 25), (25, 1), False, False),  # one row, one column
    ((6, 64), (64, 32), False, False),  # exactly one tile
]


@pytest.mark.parametrize("jobs", [1, 64])
@pytest.mark.parametrize(("sa", "sb", "ta", "tb"), GEMM_CASES)
def test_matmul_blocks_match_numpy(monkeypatch, sa, sb, ta, tb, jobs):
    from runtime.kernels import gemm

    monkeypatch.setattr(gemm, "GEMM_JOBS_PER_THREAD", jobs)  # 64: row blocks split into chunks
    a, b = _rand(*sa), _rand(*sb)
    _gemm_check(a.T if ta else a, b.T if tb else b)


def test_matmul_batched_products_match_numpy(monkeypatch):
    from runtime.kernels import gemm

    monkeypatch.setattr(gemm, "GEMM_JOBS_PER_THREAD", 64)
    _gemm_check(_rand(36, 12, 20), _rand(36, 20, 17))  # a job per product and panel
    _gemm_check(_rand(3, 12, 20), _rand(3, 20, 17))  # products split into chunks too


@pytest.mark.parametrize("width", [16, 32])
def test_gemm_packing_kernels_match_numpy_packing(width):
    """The parallel packing kernels (any strides) against the NumPy packing of constants."""
    from runtime.kernels import gemm

    a, b = _rand(2, 13, 7).transpose(0, 2, 1), _rand(2, 9, 37)[:, :, ::2]  # strided views
    ap = np.full((2, gemm.blocks(7, gemm.MR), 13, gemm.MR), np.nan, np.float32)
    gemm._pack_a(a, ap)
    np.testing.assert_array_equal(ap, gemm.pack_a(a))
    bp = np.full((2, gemm.blocks(19, width), 9, width), np.nan, np.float32)
    gemm._pack_b(b, bp)
    np.testing.assert_array_equal(bp, gemm.pack_b(b, width))


@pytest.mark.parametrize("rows", [11, 2])
@pytest.mark.parametrize("width", [16, 32])
def test_gemm_tiles_and_rows_with_bias_and_relu_match_numpy(width, rows):
    from runtime.kernels import gemm

    a, b, bias = _rand(1, rows, 23), _rand(1, 23, 45), _rand(45)
    out = np.full((1, rows, 45), np.nan, np.float32)
    product = gemm.gemm_tiles if rows >= 3 else gemm.gemm_rows
    product(gemm.pack_a(a), gemm.pack_b(b, width), out, rows, 45, bias, True)
    want = np.maximum(a[0].astype(np.float64) @ b[0] + bias, 0)
    np.testing.assert_allclose(out[0], want, rtol=1e-5, atol=1e-5)


def _bias_act_names():
    from runtime.kernels.activation import ACTIVATIONS
    from runtime.kernels.gemm import BIAS_ACT_ACTS

    return [name for name, code in ACTIVATIONS.items() if code in BIAS_ACT_ACTS]


@pytest.mark.parametrize("cols", ["whole", "partial"])
@pytest.mark.parametrize("width", [16, 32])
@pytest.mark.parametrize("act", _bias_act_names())
def test_gemm_panel_bias_act_is_the_tile_store_without_scale(act, width, cols):
    """The pointwise GEMM's store for scale 1, shift 0 and no residual (a panel's full
    row blocks in one call; its activations ``gemm.BIAS_ACT_ACTS``) gives the general
    tile store's bits, inf and NaN biases too, and act(a @ b + bias) within rounding;
    a partial panel (n columns) stores its first n columns only."""
    from runtime.kernels import gemm
    from runtime.kernels.activation import ACTIVATIONS

    m, k, s, o = 13, 11, width + 5, 3  # 2 full row blocks; rows s floats apart, from o
    n = width if cols == "whole" else width - 3 - width // 4  # columns stored
    a, b, bias = _rand(1, m, k), _rand(1, k, width), _rand(m)
    bias[[1, 7, 8]] = np.inf, -np.inf, np.nan
    ap, bp = gemm.pack_a(a), gemm.pack_b(b, width)[0, 0].reshape(-1)
    code, (alpha, beta) = ACTIVATIONS[act], naive.EPILOGUE_PARAMS[act]
    alpha, beta = np.float32(alpha), np.float32(beta)
    ones, zeros = np.ones(m, np.float32), np.zeros(m, np.float32)
    got, want = (np.full(o + 2 * gemm.MR * s, -7.0, np.float32) for _ in range(2))
    panel = gemm.gemm_f32_6x16_panel_bias_act if width == 16 else gemm.gemm_f32_6x32_panel_bias_act
    store = gemm.gemm_f32_6x16_tile_store if width == 16 else gemm.gemm_f32_6x32_tile_store
    with np.errstate(invalid="ignore"):  # without the JIT: inf * 0 (HardSwish, SiLU)
        panel(ap.reshape(-1), 0, 2, k, bp, got, o, s, 0, n, bias, code, alpha, beta)
        for blk in range(2):
            store(ap[0, blk].reshape(-1), bp, k, want, o + blk * gemm.MR * s, s, blk * gemm.MR,
                  bias, code, alpha, beta, ones, zeros, gemm.NO_RESIDUAL)  # fmt: skip
    rows = want[o:].reshape(2 * gemm.MR, s)
    rows[:, n:width] = -7.0  # the tile store writes every column
    np.testing.assert_array_equal(got, want)
    rows = got[o:].reshape(2 * gemm.MR, s)[:, :n]
    with np.errstate(invalid="ignore", over="ignore"):
        exact = naive.activation(act, a[0, :12].astype(np.float64) @ b[0] + bias[:12, None],
                                 alpha, beta)  # fmt: skip
    np.testing.assert_allclose(rows, exact[:, :n], rtol=1e-4, atol=1e-5)
    assert (got[:o] == -7.0).all() and (got[o:].reshape(12, s)[:, n:] == -7.0).all()


@pytest.mark.parametrize("xs", [(2, 7, 8, 9), (1, 7, 7, 7)])
@pytest.mark.parametrize("act", EPILOGUES)
def test_pointwise_conv_activation_without_scale_matches_naive(act, xs):
    """A pointwise conv with no BatchNormalization after its activation (its full
    row blocks through ``gemm_f32_6x32_panel_bias_act``, the rest through the general
    store): 13 channels (two full row blocks and one of one), 2 images of 8 x 9
    columns (whole panels and panels across images) or one of 7 x 7 (a partial panel
    at its end)."""
    from runtime.ops.nn import conv_forward

    x, w, b = _rand(*xs), _rand(13, xs[1], 1, 1), _rand(13)
    alpha, beta = naive.EPILOGUE_PARAMS[act]
    got = conv_forward(x, w, b, activation=act, alpha=alpha, beta=beta)
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=(0, 0, 0, 0), dilations=(1, 1), group=1)
    np.testing.assert_allclose(got, naive.activation(act, y, alpha, beta), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kernel_strides", [((2, 2), (2, 2)), ((3, 3), (2, 2)), ((3, 2), (1, 2))])
def test_max_pool_without_indices_matches_naive(kernel_strides):
    k, s = kernel_strides
    x = _rand(2, 3, 11, 10)
    got = max_pool(x, kernel_shape=k, strides=s, _num_outputs=1)
    want = naive.pool2d(
        x, kernel=k, strides=s, pads=(0, 0, 0, 0), dilations=(1, 1), ceil_mode=0, mode="max"
    )
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("act", ["Tanh", "Sigmoid", "SiLU"])
@pytest.mark.parametrize("lanes", [True, False])
def test_depthwise_smooth_activations_in_registers_match_the_ops(act, lanes, monkeypatch):
    """The depthwise kernels' vector Tanh, Sigmoid and SiLU against the runtime's own ops
    (``_unfused``) on the values that test them: large, saturating, infinite and NaN."""
    from runtime import kernel_table
    from runtime.ops.nn import conv_call

    monkeypatch.setattr(kernel_table, "DEPTHWISE_LANES_PIXELS", 10**9 if lanes else 0)
    values = [-np.inf, -100, -20, -9, -3, -0.5, -1e-4, 0, 1e-4, 0.5, 3, 9, 20, 100, np.inf, np.nan]
    x = np.concatenate([values, np.linspace(-30, 30, 48)]).astype(np.float32).reshape(1, 2, 4, 8)
    w = np.ones((2, 1, 1, 1), np.float32)  # the identity: each output, its input activated
    call = conv_call(x.shape, w, group=2, activation=act)
    assert ("_lanes16_" in call.choice.algorithm) == lanes
    got = call(x)
    with np.errstate(invalid="ignore"):  # SiLU at -inf: -inf * 0
        want = _unfused(act, x, 0.0, 0.0)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=4e-7)


@pytest.mark.parametrize(
    ("xs", "mult", "k", "attrs"),
    [
        ((2, 5, 9, 8), 1, 3, {"pads": (1, 1, 1, 1)}),  # MobileNet's 3x3, same padding
        ((1, 4, 11, 11), 1, 3, {"pads": (1, 1, 1, 1), "strides": (2, 2)}),  # strided
        ((1, 3, 10, 12), 2, 5, {"pads": (2, 1, 0, 2)}),  # two filters per channel, uneven pads
        ((1, 2, 13, 13), 1, 3, {"pads": (2, 2, 2, 2), "dilations": (2, 2)}),
        ((1, 3, 7, 7), 1, 7, {"pads": (3, 3, 3, 3)}),  # ConvNeXt's 7x7
        # rows of whole vectors and a tail: the copies' vector runs and their zeroed ends
        ((2, 3, 37, 37), 1, 3, {"pads": (1, 1, 1, 1)}),
        ((2, 3, 70, 71), 1, 3, {"pads": (1, 1, 1, 1), "strides": (2, 2)}),
        ((1, 2, 66, 66), 1, 5, {"pads": (2, 2, 2, 2), "strides": (2, 2)}),
        ((1, 2, 64, 64), 1, 3, {"pads": (0, 1, 0, 0), "strides": (2, 2)}),
        # groups of channels a job, the last one short; planes below one vector
        ((2, 37, 7, 7), 1, 3, {"pads": (1, 1, 1, 1)}),
        ((1, 19, 4, 4), 1, 3, {"pads": (1, 1, 1, 1)}),
        # a stride of 3 (its phases copied value by value), uneven strides, dilated stride 2
        ((1, 3, 13, 11), 1, 3, {"pads": (1, 1, 1, 1), "strides": (3, 3)}),
        ((1, 3, 12, 15), 2, 3, {"pads": (1, 0, 1, 2), "strides": (2, 1)}),
        ((1, 2, 17, 17), 1, 5, {"pads": (4, 4, 4, 4), "strides": (2, 2), "dilations": (2, 2)}),
    ],
)
@pytest.mark.parametrize(
    "act",
    [None, "Relu", "Sigmoid", "Clip", "HardSigmoid", "HardSwish", "Tanh", "SiLU", "LeakyRelu"],
)
@pytest.mark.parametrize("lanes", [True, False])
def test_depthwise_conv_matches_naive(xs, mult, k, attrs, act, lanes, monkeypatch):
    """Depthwise convs (group = channels) run a direct kernel (``kernels/depthwise``):
    channels in lanes whenever one filter per channel allows (the table's size limit
    lifted), else the phased planes (the limit at zero)."""
    from runtime import kernel_table
    from runtime.ops.nn import conv_call

    monkeypatch.setattr(kernel_table, "DEPTHWISE_LANES_PIXELS", 10**9 if lanes else 0)
    monkeypatch.setattr(kernel_table, "DEPTHWISE_LANES_TAPS", 0 if lanes else 10**9)
    c = xs[1]
    x, w, b = _rand(*xs), _rand(c * mult, 1, k, k), _rand(c * mult)
    scale, shift = _rand(c * mult), _rand(c * mult)
    bounds = {
        "Clip": {"alpha": -0.5, "beta": 0.5},
        "HardSigmoid": {"alpha": 0.3, "beta": 0.4},
        "HardSwish": {"alpha": 1 / 6, "beta": 0.5},
        "LeakyRelu": {"alpha": 0.1},
    }.get(act, {})
    call = conv_call(
        xs, w, b, group=c, activation=act, post_scale=scale, post_shift=shift, **bounds, **attrs
    )
    assert "depthwise" in call.choice.algorithm
    assert ("_lanes16_" in call.choice.algorithm) == (lanes and mult == 1)
    got = call(x)
    y = naive.conv2d(
        x,
        w,
        b,
        strides=attrs.get("strides", (1, 1)),
        pads=attrs["pads"],
        dilations=attrs.get("dilations", (1, 1)),
        group=c,
    )
    y = {
        None: lambda v: v,
        "Relu": lambda v: np.maximum(v, 0),
        "Sigmoid": lambda v: 1 / (1 + np.exp(-v)),
        "Clip": lambda v: np.clip(v, -0.5, 0.5),
        "HardSigmoid": lambda v: np.clip(0.3 * v + 0.4, 0, 1),
        "HardSwish": lambda v: v * np.clip(v / 6 + 0.5, 0, 1),
        "Tanh": np.tanh,
        "SiLU": lambda v: v / (1 + np.exp(-v)),
        "LeakyRelu": lambda v: np.where(v >= 0, v, 0.1 * v),
    }[act](y)
    want = y * scale[None, :, None, None] + shift[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("xs", [(2, 37, 6, 6), (1, 48, 9, 9)])
def test_depthwise_lanes_in_one_thread_or_split_give_the_same_bits(xs, monkeypatch):
    """A depthwise lanes step runs its jobs in one thread below
    ``DEPTHWISE_SPLIT_WORK`` of work a thread, else in ranges over the threads (two
    buffers' padding zeroed): the same bits either way, naive's values, and the one
    thread leaves no trace of the previous step's plane in its padding."""
    from runtime import kernel_table
    from runtime.ops.nn import conv_call

    c = xs[1]
    x, w, b = _rand(*xs), _rand(c, 1, 3, 3), _rand(c)
    monkeypatch.setattr(kernel_table, "DEPTHWISE_LANES_PIXELS", 10**9)
    got = []
    for split in (10**9, 1, 10**9):  # one thread, split, one thread after the split
        monkeypatch.setattr(kernel_table, "DEPTHWISE_SPLIT_WORK", split)
        call = conv_call(xs, w, b, group=c, pads=[1, 1, 1, 1], activation="Relu")
        assert "_lanes16_" in call.choice.algorithm
        got.append(call(x))
        other = conv_call((1, 16, 11, 11), _rand(16, 1, 3, 3), None, group=16)
        other(_rand(1, 16, 11, 11) + 5.0)  # another plane in the same buffers
    assert np.array_equal(got[0], got[1]) and np.array_equal(got[0], got[2])
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=c)
    want = np.maximum(y, 0)
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


def test_depthwise_lanes_buffers_start_on_a_vector_wherever_the_scratch_starts():
    """The lanes kernel starts its threads' buffers on the scratch array's first vector
    boundary (``buffers_floats``' slack): from each of WIDTH starting floats, two threads'
    buffers give naive's values and nothing outside the array is written."""
    from runtime.kernels import depthwise as dk
    from runtime.kernels.simd import WIDTH

    c, hw, k = 20, 6, 3  # two jobs of WIDTH channels at most
    x, w, b = _rand(1, c, hw, hw), _rand(c, 1, k, k), _rand(c)
    one, zero = np.ones(c, np.float32), np.zeros(c, np.float32)
    geo = (hw, hw, (1, 1), (hw, hw), (k, k), (1, 1), (1, 1))
    hp, wp, floats = dk.lanes_geometry(*geo)
    table = dk.lanes_tables(*geo, wp)
    packed = dk.pack_lanes(w, b, one, zero)
    size = dk.buffers_floats(2, floats)
    y = naive.conv2d(x, w, b, strides=(1, 1), pads=(1, 1, 1, 1), dilations=(1, 1), group=c)
    for start in range(WIDTH):
        guarded = np.full(size + WIDTH, 7.0, np.float32)
        planes = guarded[start : start + size]
        out = np.empty((1, c, hw, hw), np.float32)
        lanes = (table, k * k, hp * wp * WIDTH, floats, 1, np.float32(0), np.float32(0))
        dk.depthwise2d_lanes(x, *packed, out, *lanes, planes, 10**6, 1)  # split: 2 threads
        assert (guarded[:start] == 7.0).all() and (guarded[start + size :] == 7.0).all()
        np.testing.assert_allclose(out, np.maximum(y, 0), rtol=1e-4, atol=1e-5)


def test_gemm_rows_refuses_more_rows_than_one_block():
    """gemm_rows reads A's first block of MR rows: a caller with more gets a ValueError,
    not a product of the first MR rows."""
    from runtime.kernels import gemm

    m = gemm.MR + 1
    a, b = _rand(1, m, 5), _rand(1, 5, 9)
    out = np.zeros((1, m, 9), np.float32)
    with pytest.raises(ValueError, match=f"m = {m} rows, expected at most {gemm.MR}"):
        gemm.gemm_rows(gemm.pack_a(a), gemm.pack_b(b), out, m, 9)


def test_vector_activations_match_the_scalar_ones():
    """The GEMM store's vector Tanh is the scalar ``_tanh`` (the same bits, both
    compiled without contraction); its Sigmoid (from it, 0 below -16) is within 2e-7
    of the exact one, SiLU within 2e-7 of |x| of it; LeakyRelu (a slope in [0, 1]) as
    the scalar; a NaN stays NaN."""
    from runtime.kernels import activation, gemm, simd

    w = simd.WIDTH

    @numba.njit
    def lanes(x, out, alpha):
        for i in range(0, x.size, w):
            v = simd.vload(x, i)
            simd.vstore(out, i, gemm.vtanh(v))
            simd.vstore(out, x.size + i, gemm.vsigmoid(v))
            simd.vstore(out, 2 * x.size + i, gemm.activate_vector(v, 8, 0.0, 0.0, 1.0, 0.0))
            simd.vstore(out, 3 * x.size + i, gemm.activate_vector(v, 2, alpha, 0.0, 1.0, 0.0))

    @numba.njit
    def scalar_tanh(x, out):
        for i in range(x.size):
            out[i] = activation._tanh(x[i])

    x = np.concatenate([np.linspace(-30, 30, 16 * 60 - 16), _rand(15) * 3, [np.nan]])
    x = x.astype(np.float32)
    out = np.empty(4 * x.size, np.float32)
    lanes(x, out, np.float32(0.1))
    want_tanh = np.empty_like(x)
    scalar_tanh(x, want_tanh)
    n = x.size
    np.testing.assert_array_equal(out[:n], want_tanh)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    np.testing.assert_allclose(out[n : 2 * n], exact, rtol=0, atol=2e-7)
    silu_err = np.abs(out[2 * n : 3 * n] - x * exact)[:-1]
    assert (silu_err <= 2e-7 * np.abs(x[:-1]) + 1e-7).all(), silu_err.max()
    np.testing.assert_array_equal(out[3 * n :], np.where(x >= 0, x, x * np.float32(0.1)))
    assert np.isnan(out[n - 1 :: n]).all()
    # Large inputs, where exp's result would be subnormal: Sigmoid 1, SiLU the input; and
    # their negatives: 0 and -0 (the true values are subnormal), SiLU(-inf) NaN
    big = np.array([80, 87.5, 88.5, 100, 1e4, 1e30, np.inf] + [90] * 9, np.float32)
    out = np.empty(4 * big.size, np.float32)
    lanes(big, out, np.float32(0.1))
    n = big.size
    np.testing.assert_array_equal(out[n : 2 * n], np.ones(n, np.float32))
    np.testing.assert_array_equal(out[2 * n : 3 * n], big)
    lanes(-big, out, np.float32(0.1))
    np.testing.assert_allclose(out[n], 1 / (1 + np.exp(80.0)), rtol=1e-6)  # 1.8e-35
    assert (out[n + 1 : 2 * n] == 0).all()  # from -87.5 down
    assert (out[2 * n + 1 : 2 * n + 6] == 0).all() and np.isnan(out[2 * n + 6])  # -inf * 0
    small = out[n : 3 * n][out[n : 3 * n] != 0]
    assert not (np.abs(small) < np.finfo(np.float32).tiny).any()  # no subnormal lanes
