"""Plans compiled into one op-table program (runtime/compiled.py) against the step path
and onnxruntime, the refusals, and the taps kernel against its naive twin."""

from __future__ import annotations

from pathlib import Path

import naive
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model, run_ort

from runtime.engine import NumbaEngine
from runtime.graph import load_graph
from runtime.kernels import chain as k
from runtime.kernels.taps import taps
from runtime.plan import Plan

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
F = TensorProto.FLOAT


def _w(*shape) -> np.ndarray:
    return (RNG.standard_normal(shape) * 0.3).astype(np.float32)


def _engines(model: bytes) -> tuple[NumbaEngine, NumbaEngine]:
    graph = load_graph(model)
    return NumbaEngine(graph), NumbaEngine(graph, compile_plans=False)


def _check_program(model: bytes, shape: tuple[int, ...], batches=(1, 6)) -> list[Plan]:
    """Compiled and step-by-step runs agree to 1e-5 and with onnxruntime to 1e-4; the
    plan of each batch size. Batch 6 runs a group of four images and one of two
    (config.PROGRAM_IMAGES_PER_GROUP)."""
    compiled, steps = _engines(model)
    name = compiled.graph.inputs[0].name
    plans = []
    for n in batches:
        feeds = {name: RNG.standard_normal((n, *shape)).astype(np.float32)}
        (want,) = run_ort(model, feeds)
        for _ in range(2):  # the first call builds the plan
            (got,) = compiled.run(feeds, compiled.output_names)
            (ref,) = steps.run(feeds, steps.output_names)
            assert got.shape == want.shape == ref.shape
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        plans.append(compiled.plan(feeds))
        assert not steps.describe(feeds).compiled
    assert all(p.program is not None for p in plans), [p.not_compiled for p in plans]
    return plans


def _chain(nodes, shape, out_shape, weights, opset=18) -> bytes:
    inits = [numpy_helper.from_array(v, n) for n, v in weights.items()]
    vi = helper.make_tensor_value_info
    return chain_model(
        nodes, [vi("x", F, ["n", *shape])], [vi("y", F, ["n", *out_shape])], inits, opset=opset
    )


def test_lenet_runs_as_one_program_and_matches():
    _check_program((ROOT / "exported" / "lenet5.onnx").read_bytes(), (1, 28, 28), (1, 2, 17))


CONVS = [
    # attrs of a 3x3 conv over (3, 11, 9): padded flat, strided columns, dilated, asymmetric
    {"pads": [1, 1, 1, 1]},
    {"pads": [0, 0, 0, 0]},
    {"pads": [1, 2, 0, 1], "strides": [2, 1]},
    {"pads": [2, 2, 2, 2], "dilations": [2, 2]},
    {"auto_pad": "SAME_UPPER", "strides": [2, 2]},
]


@pytest.mark.parametrize("attrs", CONVS)
@pytest.mark.parametrize("act", ["Relu", "LeakyRelu", "Tanh", "Sigmoid", None])
@pytest.mark.parametrize("cout", [1, 2, 3, 4, 7])  # channel blocks of 4, 2 and 1
def test_conv_chain_matches(attrs, act, cout):
    node = helper.make_node
    nodes = [node("Conv", ["x", "w", "b"], ["c"], **attrs)]
    if act:
        extra = {"alpha": 0.2} if act == "LeakyRelu" else {}
        nodes.append(node(act, ["c"], ["a"], **extra))
    nodes.append(node("Flatten", [nodes[-1].output[0]], ["y"]))
    graph_x = np.zeros((1, 3, 11, 9), np.float32)
    (probe,) = run_ort(
        _chain(
            [*nodes[:1], node("Identity", ["c"], ["y"])],
            (3, 11, 9),
            [cout, "h", "w"],
            {"w": _w(cout, 3, 3, 3), "b": _w(cout)},
        ),
        {"x": graph_x},
    )
    model = _chain(
        nodes, (3, 11, 9), [int(np.prod(probe.shape[1:]))], {"w": _w(cout, 3, 3, 3), "b": _w(cout)}
    )
    _check_program(model, (3, 11, 9))


def test_conv_bn_after_relu_and_pools():
    """The article's AlexNet pattern at LeNet size: Conv, ReLU, BN in the epilogue, pools."""
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], pads=[2, 2, 2, 2]),
        node("Relu", ["c"], ["r"]),
        node("BatchNormalization", ["r", "s", "sh", "mu", "var"], ["bn"]),
        node(
            "MaxPool",
            ["bn"],
            ["m"],
            kernel_shape=[3, 3],
            strides=[2, 2],
            pads=[1, 1, 1, 1],
            ceil_mode=1,
        ),
        node(
            "AveragePool", ["m"], ["a"], kernel_shape=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1
        ),
        node("BatchNormalization", ["a", "s", "sh", "mu", "var"], ["bn2"]),  # unfused
        node("LeakyRelu", ["bn2"], ["l"], alpha=0.1),
        node("Reshape", ["l", "shape"], ["f"]),
        node("Gemm", ["f", "fc", "fcb"], ["g"], transB=1, alpha=0.5, beta=2.0),
        node("Relu", ["g"], ["gr"]),
        node("MatMul", ["gr", "mm"], ["z"]),
        node("LogSoftmax", ["z"], ["y"], axis=1),
    ]
    var = (RNG.random(4) + 0.5).astype(np.float32)
    weights = {
        "w": _w(4, 2, 5, 5),
        "b": _w(4),
        "s": _w(4),
        "sh": _w(4),
        "mu": _w(4),
        "var": var,
        "shape": np.array([0, -1], np.int64),
        "fc": _w(12, 4 * 8 * 8),
        "fcb": _w(1, 12),
        "mm": _w(12, 6),
    }
    _check_program(_chain(nodes, (2, 15, 15), [6], weights), (2, 15, 15))


@pytest.mark.parametrize(
    "pool",
    [{"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},  # ResNet's stem
     {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},  # SqueezeNet's
     {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},  # same size
     {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "dilations": [2, 2]}],  # scalar loop
)  # fmt: skip
def test_padded_max_pools_in_a_program(pool):
    """A program's max pools whose windows reach past the plane: in registers as the
    step path's (``pool.max_pool_by_lanes``), planes of several vectors a row."""
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        node("MaxPool", ["c"], ["m"], **pool),
        node("Flatten", ["m"], ["f"]),
        node("Gemm", ["f", "fc"], ["y"], transB=1),
    ]
    pooled = naive.pool2d(
        np.zeros((1, 3, 21, 37), np.float32),
        kernel=pool["kernel_shape"],
        strides=pool.get("strides", [1, 1]),
        pads=pool.get("pads", [0, 0, 0, 0]),
        dilations=pool.get("dilations", [1, 1]),
        ceil_mode=pool.get("ceil_mode", 0),
        mode="max",
    )
    weights = {"w": _w(3, 2, 3, 3), "fc": _w(5, pooled.size)}
    _check_program(_chain(nodes, (2, 21, 37), [5], weights), (2, 21, 37))


def test_softmax_over_the_whole_image_at_opset_11():
    node = helper.make_node
    nodes = [node("Conv", ["x", "w"], ["c"]), node("Softmax", ["c"], ["y"], axis=1)]
    _check_program(_chain(nodes, (1, 6, 6), [2, 4, 4], {"w": _w(2, 1, 3, 3)}, opset=11), (1, 6, 6))


def test_a_group_shrinks_to_fit_the_workspace():
    """Four images' activations would pass PROGRAM_WORKSPACE_FLOATS: two at a time fit."""
    from runtime import config

    node = helper.make_node
    nodes = [node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]), node("Relu", ["c"], ["y"])]
    model = _chain(nodes, (4, 64, 64), [8, 64, 64], {"w": _w(8, 4, 3, 3)})
    groups = {p.program.group for p in _check_program(model, (4, 64, 64))}
    assert groups == {2} and config.PROGRAM_IMAGES_PER_GROUP == 4


def _not_compiled(model: bytes, shape) -> str:
    compiled, _ = _engines(model)
    x = np.zeros((2, *shape), np.float32)
    compiled.run({"x": x}, compiled.output_names)
    plan = compiled.describe({"x": x})
    assert not plan.compiled and plan.not_compiled
    return plan.not_compiled


def test_plans_that_do_not_qualify_say_why_and_still_run():
    node = helper.make_node
    concat = _chain(
        [node("Relu", ["x"], ["r"]), node("Concat", ["x", "r"], ["y"], axis=1)],
        (2, 4, 4),
        [4, 4, 4],
        {},
    )
    assert "not a chain" in _not_compiled(concat, (2, 4, 4))
    softmax = _chain([node("Softmax", ["x"], ["y"], axis=1)], (3, 4, 4), [3, 4, 4], {})
    assert "over part of an image" in _not_compiled(softmax, (3, 4, 4))
    big = _chain(
        [node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        (8, 96, 96),
        [8, 96, 96],
        {"w": _w(8, 8, 3, 3)},
    )
    assert "workspace" in _not_compiled(big, (8, 96, 96))
    grouped = _chain(
        [node("Conv", ["x", "w"], ["y"], group=2)], (4, 5, 5), [4, 3, 3], {"w": _w(4, 2, 3, 3)}
    )
    assert "group 1" in _not_compiled(grouped, (4, 5, 5))


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5, 6, 9])
@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 8, 11])
def test_taps_matches_naive(m, t):
    length = 37
    src = RNG.standard_normal(200).astype(np.float32)
    offs = RNG.integers(0, 200 - length, size=t).astype(np.int64)
    w = RNG.standard_normal(m * t).astype(np.float32)
    stride = length + 5
    acc = np.full(m * stride, np.nan, np.float32)
    taps(src, w, offs, acc, m, t, length, stride)
    got = np.stack([acc[i * stride : i * stride + length] for i in range(m)])
    np.testing.assert_allclose(got, naive.taps(src, w, offs, m, t, length), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("op", "kernel"), [("MaxPool", 2), ("AveragePool", 2), ("MaxPool", 3), ("AveragePool", 3)]
)
def test_tiling_pool_fused_into_the_conv(op, kernel):
    """A pool whose windows tile the conv output runs inside the conv's epilogue."""
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        node("Tanh", ["c"], ["t"]),
        node(op, ["t"], ["p"], kernel_shape=[kernel, kernel], strides=[kernel, kernel]),
        node("Flatten", ["p"], ["y"]),
    ]
    size = 6 * kernel  # the conv keeps it; the windows tile it exactly
    model = _chain(nodes, (2, size, size), [3 * 36], {"w": _w(3, 2, 3, 3), "b": _w(3)})
    plan = _check_program(model, (2, size, size))[0]
    conv = plan.program.code[0]
    assert conv[k.C_POOL] == (k.POOL_MAX if op == "MaxPool" else k.POOL_AVG)
    assert len(plan.program.code) == 1  # no separate pooling op
