"""Every output that sees the same inputs and weights gets the same bits, on every path.

Output channels with equal filters, fed inputs whose channels are equal, must come out
equal whatever their position in a block of rows, a panel, a tile or a thread's share;
so must images that are equal at different positions of a batch; and a run on one
thread must give the bits of a run on two. BLAS kernels break the first: OpenBLAS's
Haswell sgemm computes edge rows in another order than full blocks, and the light
SqueezeNet of ONNX's suite, whose logits reach 1e10, then fails its softmax.

Channel counts leave tails on purpose: 37 = 32 + 5 Winograd rows (4 * 8 + 5 direct
rows), 13 = 2 * 6 + 1 GEMM rows, 7 = 4 + 2 + 1 channels of the compiled program's
blocks; batches of 5 and 7 leave a partial group of images.
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model

from runtime.engine import NumbaEngine
from runtime.graph import load_graph

RNG = np.random.default_rng(7)
F = TensorProto.FLOAT


def _model(nodes, x_shape, weights) -> bytes:
    vi = helper.make_tensor_value_info
    inits = [numpy_helper.from_array(v, k) for k, v in weights.items()]
    return chain_model(nodes, [vi("x", F, ["n", *x_shape])], [vi("y", F, None)], inits)


def _equal_images(n: int, shape: tuple[int, ...]) -> np.ndarray:
    """n equal images whose channels are all equal: (n, C, ...)."""
    one = RNG.standard_normal((1, 1, *shape[1:])).astype(np.float32)
    return np.ascontiguousarray(np.broadcast_to(one, (n, *shape)))


def _conv_model(c: int, m: int, k: int, hw, group=1, **attrs) -> bytes:
    w = np.broadcast_to(RNG.standard_normal((1, c // group, k, k)), (m, c // group, k, k))
    b = np.full(m, 0.25, np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], group=group, **attrs)
    return _model([node], (c, *hw), {"w": w.astype(np.float32), "b": b})


def _runs(
    model: bytes, x: np.ndarray, compile_plans: bool = True
) -> tuple[NumbaEngine, list[np.ndarray]]:
    """The output on two threads and on one (twice each: the first call builds the plan)."""
    engine = NumbaEngine(load_graph(model), compile_plans=compile_plans)
    before = numba.get_num_threads()
    outs = []
    try:
        for threads in (min(2, numba.config.NUMBA_NUM_THREADS), 1):
            numba.set_num_threads(threads)
            for _ in range(2):
                outs.append(engine.run({"x": x}, engine.output_names)[0])
    finally:
        numba.set_num_threads(before)
    return engine, outs


def _uses_winograd(engine: NumbaEngine) -> bool:
    return any("winograd" in a for a in engine.describe().algorithms("Conv"))


def _compiled(engine: NumbaEngine) -> bool:
    return engine.describe().compiled


def _assert_invariant(outs: list[np.ndarray], channel_axis: int = 1) -> None:
    y = outs[0]
    for other in outs[1:]:
        np.testing.assert_array_equal(other, y)  # threads, and a second call
    np.testing.assert_array_equal(y, np.broadcast_to(y[:1], y.shape))  # batch positions
    first = np.take(y, [0], axis=channel_axis)
    np.testing.assert_array_equal(y, np.broadcast_to(first, y.shape))  # channels


CONVS = [
    # (id, C, M, k, (H, W), group, attrs, path)
    ("winograd-3x3", 96, 37, 3, (9, 9), 1, {"pads": [1, 1, 1, 1]}, "winograd"),
    # 1184 channel pairs: the direct kernel (kernel_table.DIRECT_3X3_MAX_PAIRS)
    ("direct-3x3-32", 32, 37, 3, (9, 9), 1, {"pads": [1, 1, 1, 1]}, "direct"),
    ("winograd-5x5", 32, 35, 5, (10, 10), 1, {"pads": [2, 2, 2, 2]}, "winograd"),
    ("winograd-11x11/4", 3, 33, 11, (31, 31), 1, {"strides": [4, 4]}, "winograd"),
    ("im2col-3x3", 3, 13, 3, (9, 8), 1, {"pads": [1, 1, 1, 1]}, "im2col"),
    ("im2col-1x1", 8, 19, 1, (7, 7), 1, {}, "im2col"),
    ("im2col-grouped", 8, 14, 3, (6, 6), 2, {"pads": [1, 0, 1, 0]}, "im2col"),
    ("im2col-dilated", 4, 7, 3, (11, 11), 1, {"strides": [2, 1], "dilations": [2, 2]}, "im2col"),
    ("direct-3x3", 3, 13, 3, (9, 16), 1, {"pads": [1, 1, 1, 1]}, "direct"),
    ("direct-grouped/2", 8, 14, 3, (7, 28), 2, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "direct"),
    # 6x6 outputs of 48 channels (two blocks of 32, the second half full): the pixels
    # tiles with AVX-512 (kernel_table.PIXELS_MAX_SHARE), the direct kernel with AVX2
    ("pixels-3x3/2", 16, 48, 3, (12, 12), 1, {"pads": [1, 1, 1, 1], "strides": [2, 2]}, "pixels"),
    ("depthwise", 13, 13, 3, (9, 9), 13, {"pads": [1, 1, 1, 1]}, "depthwise"),
    ("depthwise-x2", 7, 14, 5, (10, 9), 7, {"pads": [2, 2, 2, 2], "strides": [2, 2]}, "depthwise"),
    ("patch-4x4/4", 3, 37, 4, (17, 18), 1, {"strides": [4, 4]}, "patch"),
    ("patch-grouped-2x2/2", 8, 26, 2, (9, 11), 2, {"strides": [2, 2]}, "patch"),
]


@pytest.mark.parametrize("compile_plans", [False, True], ids=["steps", "program"])
@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize(
    ("c", "m", "k", "hw", "group", "attrs", "path"),
    [pytest.param(*case[1:], id=case[0]) for case in CONVS],
)
def test_conv_output_channels_equal(c, m, k, hw, group, attrs, path, batch, compile_plans):
    """Step by step, each conv runs its path; a plan that compiles runs the program's
    direct conv instead."""
    model = _conv_model(c, m, k, hw, group, **attrs)
    engine, outs = _runs(model, _equal_images(batch, (c, *hw)), compile_plans)
    if not compile_plans:
        algorithms = engine.describe().algorithms("Conv")
        assert _uses_winograd(engine) == (path == "winograd")
        assert (len(algorithms) == 1 and "depthwise" in algorithms[0]) == (path == "depthwise")
        assert (len(algorithms) == 1 and "_patch_" in algorithms[0]) == (path == "patch")
    _assert_invariant(outs)


@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("m", [7, 13])
def test_compiled_program_conv_channels_equal(m, batch):
    """A small chain runs as one compiled program (blocks of 4, 2, 1 channels)."""
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[2, 2, 2, 2]),
        helper.make_node("Tanh", ["c"], ["y"]),
    ]
    w = np.broadcast_to(RNG.standard_normal((1, 1, 5, 5)), (m, 1, 5, 5)).astype(np.float32)
    model = _model(nodes, (1, 12, 12), {"w": w, "b": np.full(m, 0.1, np.float32)})
    engine, outs = _runs(model, _equal_images(batch, (1, 12, 12)))
    assert _compiled(engine)
    _assert_invariant(outs)


def _gemm_model(k: int, n: int, relu: bool) -> bytes:
    w = np.broadcast_to(RNG.standard_normal((k, 1)), (k, n)).astype(np.float32)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["g" if relu else "y"])]
    if relu:
        nodes.append(helper.make_node("Relu", ["g"], ["y"]))
    return _model(nodes, (k,), {"w": w, "b": np.full(n, -0.5, np.float32)})


@pytest.mark.parametrize("batch", [1, 5, 23])
@pytest.mark.parametrize(("k", "n"), [(64, 10), (400, 37), (33, 120)])
def test_gemm_output_columns_equal(k, n, batch):
    """Gemm (fused with ReLU or not) as a step and, for the plain chain, as a program."""
    x = _equal_images(batch, (k,))
    for relu in (False, True):
        _, outs = _runs(_gemm_model(k, n, relu), x)
        _assert_invariant(outs)


@pytest.mark.parametrize("batch", [1, 9])
def test_matmul_output_columns_equal(batch):
    k, n = 50, 29
    w = np.broadcast_to(RNG.standard_normal((k, 1)), (k, n)).astype(np.float32)
    model = _model([helper.make_node("MatMul", ["x", "w"], ["y"])], (3, k), {"w": w})
    _, outs = _runs(model, _equal_images(batch, (3, k)))
    _assert_invariant(outs, channel_axis=2)
