"""The rewrite passes (``runtime/passes.py``): each fusion and fold on a small graph,
what ``describe()`` says was fused and which passes ran (in ``PASSES`` order), and
the rewritten plan against onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model
from parity import compare, run_ort

from runtime import InferenceSession


def test_conv_then_batchnorm_folds_into_the_weights():
    rng = np.random.default_rng(4)
    inits = {
        "w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(4).astype(np.float32),
        "s": rng.uniform(0.5, 1.5, 4).astype(np.float32),
        "t": rng.standard_normal(4).astype(np.float32),
        "m": rng.standard_normal(4).astype(np.float32),
        "v": rng.uniform(0.5, 2.0, 4).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("BatchNormalization", ["c", "s", "t", "m", "v"], ["y"], epsilon=1e-3),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4, 8, 8])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    plan = InferenceSession(model).describe()
    assert [(s.op, s.fused) for s in plan.steps] == [
        ("Conv", ("BatchNormalization (in the weights)",))
    ]
    compare(model, {"x": rng.standard_normal((2, 3, 8, 8)).astype(np.float32)}, atol=1e-4)


def test_rewrite_passes_run_in_their_listed_order():
    """Identity removed; Conv, BN, ReLU, BN, MaxPool fused into one conv step; Gemm
    and Relu into one: ``describe().passes`` names the passes that did it, in the
    order of ``passes.PASSES``. Without optimisation, none ran."""
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph
    from runtime.passes import PASSES

    rng = np.random.default_rng(9)
    m = 4
    bn = {f"{p}{i}": rng.uniform(0.5, 1.5, m).astype(np.float32) for p in "stmv" for i in (1, 2)}
    inits = {
        "w": rng.standard_normal((m, 3, 3, 3)).astype(np.float32),
        "b": rng.standard_normal(m).astype(np.float32),
        "fc": rng.standard_normal((m * 3 * 3, 5)).astype(np.float32),
        **bn,
    }
    node = helper.make_node
    nodes = [
        node("Identity", ["x"], ["xi"]),
        node("Conv", ["xi", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        node("BatchNormalization", ["c", "s1", "t1", "m1", "v1"], ["n1"]),
        node("Relu", ["n1"], ["r"]),
        node("BatchNormalization", ["r", "s2", "t2", "m2", "v2"], ["n2"]),
        node("MaxPool", ["n2"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        node("Flatten", ["p"], ["f"]),
        node("Gemm", ["f", "fc"], ["g"]),
        node("Relu", ["g"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 6, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    plan = InferenceSession(model).describe()
    names = [p.name for p in PASSES]
    assert len(set(names)) == len(names)
    assert list(plan.passes) == [n for n in names if n in plan.passes]  # in PASSES order
    fusions = ("bn", "activation", "activation_bn", "max_pool")
    want = {"remove_identities", "fuse_gemm_relu", *(f"fuse_conv_{f}" for f in fusions)}
    assert want <= set(plan.passes), plan.passes
    assert [(s.op, s.fused) for s in plan.steps] == [
        ("Conv", ("BatchNormalization (in the weights)", "Relu", "BatchNormalization", "MaxPool")),
        ("Flatten", ()),
        ("Gemm", ("Relu",)),
    ]
    assert NumbaEngine(load_graph(model), optimize=False).describe().passes == ()
    compare(model, {"x": rng.standard_normal((2, 3, 6, 6)).astype(np.float32)}, atol=1e-4)


@pytest.mark.parametrize(
    ("pool_attrs", "fused"),
    [
        ({"kernel_shape": [3, 3], "strides": [2, 2]}, True),
        ({"kernel_shape": [2, 2], "strides": [2, 2]}, True),
        ({"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, False),
        ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, False),
    ],
)
@pytest.mark.parametrize("c", [32, 80])  # 32 x 40 channels: direct; 80 x 40: Winograd
def test_max_pool_fuses_into_the_conv_before_it(pool_attrs, fused, c):
    """The article's AlexNet block, Conv, ReLU, BN, MaxPool, on the direct kernel
    (then the pool) and on Winograd (pooling in its output transform): one step when
    the pool has no padding or ceil mode, two otherwise."""
    rng = np.random.default_rng(5)
    m = 40
    inits = {
        "w": (rng.standard_normal((m, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32),
        "b": rng.standard_normal(m).astype(np.float32),
        "s": rng.uniform(-1.5, 1.5, m).astype(np.float32),  # negative scales too
        "t": rng.standard_normal(m).astype(np.float32),
        "mu": rng.standard_normal(m).astype(np.float32),
        "v": rng.uniform(0.5, 2.0, m).astype(np.float32),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("BatchNormalization", ["r", "s", "t", "mu", "v"], ["n"]),
        helper.make_node("MaxPool", ["n"], ["y"], **pool_attrs),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 13, 13])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    epilogue = ("Relu", "BatchNormalization")
    assert steps == (
        [("Conv", (*epilogue, "MaxPool"))] if fused else [("Conv", epilogue), ("MaxPool", ())]
    )
    for n in (1, 3):
        compare(model, {"x": rng.standard_normal((n, c, 13, 13)).astype(np.float32)}, atol=1e-4)


@pytest.mark.parametrize("compile_plans", [True, False], ids=["program", "steps"])
@pytest.mark.parametrize(
    ("hw", "pool"),
    [
        (4, [3, 3, 2, 2]),  # the conv gives 2x2: onnxruntime's one window, the max of it
        (3, [2, 2, 2, 2]),  # 1x1 through a 2x2 window
        (4, [3, 2, 1, 2]),  # too tall only
        (4, [3, 3, 1, 1]),  # no window: an empty output
        (5, [5, 5, 2, 2]),  # 3x3 through 5x5 at stride 2: none either
    ],
)
def test_max_pool_window_larger_than_the_conv_output(hw, pool, compile_plans):
    """A MaxPool fused into a conv whose output is smaller than its window gives what
    onnxruntime gives (one output or none), on the step-by-step plan and the program."""
    from runtime.engine import NumbaEngine
    from runtime.graph import load_graph

    rng = np.random.default_rng(11)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=pool[:2], strides=pool[2:]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    x = rng.standard_normal((2, 3, hw, hw)).astype(np.float32)
    want = run_ort(model, {"x": x})[0]
    engine = NumbaEngine(load_graph(model), compile_plans=compile_plans)
    for _ in range(2):  # planned, then the cached plan
        (got,) = engine.run({"x": x}, ["y"])
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _activation_nodes(act: str, src: str, dst: str) -> list:
    if act == "SiLU":  # as torch exports nn.SiLU
        return [
            helper.make_node("Sigmoid", [src], [f"{dst}_sig"]),
            helper.make_node("Mul", [src, f"{dst}_sig"], [dst]),
        ]
    if act == "Relu6":  # Clip with constant bounds as inputs (opset 11 on)
        return [helper.make_node("Clip", [src, "lo", "hi"], [dst])]
    if act == "ClipMin":  # only a lower bound
        return [helper.make_node("Clip", [src, "lo"], [dst])]
    if act == "HardSigmoid":
        return [helper.make_node("HardSigmoid", [src], [dst], alpha=0.3, beta=0.4)]
    if act == "HardSigmoidMul":  # HardSwish as exported before opset 14
        return [
            helper.make_node("HardSigmoid", [src], [f"{dst}_hs"], alpha=1 / 6, beta=0.5),
            helper.make_node("Mul", [f"{dst}_hs", src], [dst]),
        ]
    if act == "PaddleHardSwish":  # x * clip(x + 3, 0, 6) / 6, as Paddle2ONNX writes it
        return [
            helper.make_node("Add", [src, "three"], [f"{dst}_a"]),
            helper.make_node("Clip", [f"{dst}_a", "zero", "six"], [f"{dst}_c"]),
            helper.make_node("Mul", [src, f"{dst}_c"], [f"{dst}_m"]),
            helper.make_node("Div", [f"{dst}_m", "six"], [dst]),
        ]
    if act == "HardSwishSixthFirst":  # x * (clip(x + 3, 0, 6) * (1/6))
        return [
            helper.make_node("Add", ["three", src], [f"{dst}_a"]),
            helper.make_node("Clip", [f"{dst}_a", "zero", "six"], [f"{dst}_c"]),
            helper.make_node("Mul", ["sixth", f"{dst}_c"], [f"{dst}_s"]),
            helper.make_node("Mul", [src, f"{dst}_s"], [dst]),
        ]
    return [helper.make_node(act, [src], [dst])]


GATED = ("SiLU", "HardSigmoidMul", "PaddleHardSwish", "HardSwishSixthFirst")


CONV_SHAPES = {  # (C, M, kernel, group): 3x3 direct and Winograd, a 1x1, a depthwise 3x3
    "3x3": (32, 40, 3, 1),
    "3x3-winograd": (80, 40, 3, 1),  # more than kernel_table.DIRECT_3X3_MAX_PAIRS
    "1x1": (24, 48, 1, 1),
    "depthwise": (24, 24, 3, 24),
}


@pytest.mark.parametrize("shape", list(CONV_SHAPES))
@pytest.mark.parametrize("act", ["Relu6", "ClipMin", "HardSigmoid", "HardSwish", *GATED])
def test_mobile_activations_fuse_into_the_conv(act, shape):
    """MobileNet's Relu6 (Clip) and HardSwish (also as HardSigmoid then Mul, and as
    Paddle's Add, Clip, Mul, Div), EfficientNet's SiLU (Sigmoid, Mul): after a Conv and
    its BatchNormalization, one step, on every conv path; as onnxruntime."""
    rng = np.random.default_rng(7)
    c, m, k, group = CONV_SHAPES[shape]
    inits = {
        "w": (rng.standard_normal((m, c // group, k, k)) / np.sqrt(k * k * c / group)),
        "s": rng.uniform(0.5, 1.5, m),
        "t": rng.standard_normal(m),
        "mu": rng.standard_normal(m) * 0.1,
        "v": rng.uniform(0.5, 2.0, m),
        "lo": np.array(-0.25),
        "hi": np.array(0.75),
        "three": np.array(3.0),
        "zero": np.array(0.0),
        "six": np.array(6.0),
        "sixth": np.array(1 / 6),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[k // 2] * 4, group=group),
        helper.make_node("BatchNormalization", ["c", "s", "t", "mu", "v"], ["n"]),
        *_activation_nodes(act, "n", "y"),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 14, 14])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )
    (step,) = InferenceSession(model).describe().steps
    assert step.op == "Conv" and step.fused[0] == "BatchNormalization (in the weights)"
    assert step.fused[1:] == tuple(n.op_type for n in nodes[2:])
    for n in (1, 3):
        compare(model, {"x": rng.standard_normal((n, c, 14, 14)).astype(np.float32)}, atol=1e-4)


def test_silu_is_not_fused_when_the_conv_output_has_another_reader():
    """Sigmoid and Mul fuse as SiLU only when they are the conv output's only readers."""
    rng = np.random.default_rng(8)
    w = rng.standard_normal((8, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        *_activation_nodes("SiLU", "c", "y"),
        helper.make_node("Add", ["y", "c"], ["z"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    assert steps == [("Conv", ()), ("Sigmoid", ()), ("Mul", ()), ("Add", ())]
    compare(model, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


def test_hard_swish_pattern_with_other_constants_is_not_fused():
    """Add 3, Clip to [0, 5], Mul, Div 6 is not HardSwish: it stays as its steps."""
    rng = np.random.default_rng(11)
    inits = {
        "w": rng.standard_normal((8, 4, 1, 1)),
        "three": np.array(3.0),
        "zero": np.array(0.0),
        "five": np.array(5.0),
        "six": np.array(6.0),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Add", ["c", "three"], ["a"]),
        helper.make_node("Clip", ["a", "zero", "five"], ["k"]),
        helper.make_node("Mul", ["c", "k"], ["m"]),
        helper.make_node("Div", ["m", "six"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )
    steps = [s.op for s in InferenceSession(model).describe().steps]
    assert steps == ["Conv", "Add", "Clip", "Mul", "Div"]
    compare(model, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


@pytest.mark.parametrize(
    ("bias", "add_shape", "fused"),
    [
        (True, (1, 8, 1, 1), True),  # Paddle's conv bias as its own Add
        (False, (8, 1, 1), True),
        (True, (), True),  # a scalar: the same value for every channel
        (False, (1, 8, 5, 5), False),  # not per channel
        (True, (1, 1, 1, 5), False),  # along the width
    ],
)
def test_per_channel_add_folds_into_the_conv_bias(bias, add_shape, fused):
    """Conv then Add of a per-channel constant: the Add goes into the conv's bias (and
    the Relu after it into its epilogue); other Adds stay steps."""
    rng = np.random.default_rng(12)
    inits = {
        "w": rng.standard_normal((8, 4, 3, 3)),
        "b": rng.standard_normal(8),
        "t": rng.standard_normal(add_shape),
    }
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"] if bias else ["x", "w"], ["c"], pads=[1] * 4),
        helper.make_node("Add", ["t", "c"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in inits.items()],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    if fused:
        assert steps == [("Conv", ("Add (in the bias)", "Relu"))]
    else:
        assert steps == [("Conv", ()), ("Add", ()), ("Relu", ())]
    for n in (1, 2):
        compare(model, {"x": rng.standard_normal((n, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


def test_add_of_a_computed_tensor_is_not_a_bias():
    """Conv then Add of another branch (here the input): not folded into the bias, but
    added in the conv's store (a residual)."""
    rng = np.random.default_rng(13)
    w = rng.standard_normal((4, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Add", ["c", "x"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    assert steps == [("Conv", ("Add (residual)",))]
    compare(model, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


def _se_model(style: str, c: int = 24, r: int = 8, gate_reader: bool = False) -> bytes:
    """A depthwise conv, then a squeeze-and-excitation block as ``style`` writes it:
    torch's MobileNetV3 (Relu, HardSigmoid), EfficientNet (SiLU as Sigmoid and Mul,
    Sigmoid), Paddle (biases as Adds, Relu, HardSigmoid); then a 1x1 conv.
    ``gate_reader``: the gate is also a graph output (then it cannot fuse)."""
    rng = np.random.default_rng(14)
    node = helper.make_node
    inits = {
        "wd": rng.standard_normal((c, 1, 3, 3)) / 3,
        "w1": rng.standard_normal((r, c, 1, 1)) / np.sqrt(c),
        "b1": rng.standard_normal(r),
        "w2": rng.standard_normal((c, r, 1, 1)) / np.sqrt(r),
        "b2": rng.standard_normal(c),
        "wp": rng.standard_normal((16, c, 1, 1)) / np.sqrt(c),
        "a1": rng.standard_normal((1, r, 1, 1)),
        "a2": rng.standard_normal((1, c, 1, 1)),
    }
    nodes = [
        node("Conv", ["x", "wd"], ["d"], group=c, pads=[1] * 4),
        node("GlobalAveragePool", ["d"], ["p"]),
    ]
    if style == "paddle":
        nodes += [
            node("Conv", ["p", "w1"], ["h0"]),
            node("Add", ["h0", "a1"], ["h1"]),
            node("Relu", ["h1"], ["h"]),
            node("Conv", ["h", "w2"], ["s0"]),
            node("Add", ["s0", "a2"], ["s1"]),
            node("HardSigmoid", ["s1"], ["s"], alpha=0.2, beta=0.5),
        ]
    elif style == "efficientnet":
        nodes += [
            node("Conv", ["p", "w1", "b1"], ["h0"]),
            node("Sigmoid", ["h0"], ["h1"]),
            node("Mul", ["h0", "h1"], ["h"]),
            node("Conv", ["h", "w2", "b2"], ["s0"]),
            node("Sigmoid", ["s0"], ["s"]),
        ]
    else:
        nodes += [
            node("Conv", ["p", "w1", "b1"], ["h0"]),
            node("Relu", ["h0"], ["h"]),
            node("Conv", ["h", "w2", "b2"], ["s0"]),
            node("HardSigmoid", ["s0"], ["s"], alpha=1 / 6, beta=0.5),
        ]
    nodes += [
        node("Mul", ["s", "d"] if style == "paddle" else ["d", "s"], ["e"]),
        node("Conv", ["e", "wp"], ["y"]),
    ]
    vi = helper.make_tensor_value_info
    outs = [vi("y", TensorProto.FLOAT, None)] + ([vi("s", TensorProto.FLOAT, None)] * gate_reader)
    return chain_model(
        nodes,
        [vi("x", TensorProto.FLOAT, ["N", c, 7, 9])],
        outs,
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )


@pytest.mark.parametrize("style", ["torch", "efficientnet", "paddle"])
def test_squeeze_excitation_is_one_step(style):
    """GlobalAveragePool, two 1x1 convs with their activations and the channel Mul: one
    step (the pool's node), saying what it fused; as onnxruntime at batch 1 (serially)
    and 5 (an image a job), and on a second run into the plan's buffers."""
    model = _se_model(style)
    sess = InferenceSession(model)
    steps = sess.describe().steps
    assert [s.op for s in steps] == ["Conv", "GlobalAveragePool", "Conv"]
    se = steps[1]
    acts = {
        "torch": (("Relu",), ("HardSigmoid",)),
        "efficientnet": (("Sigmoid", "Mul"), ("Sigmoid",)),
        "paddle": (("Add (in the bias)", "Relu"), ("Add (in the bias)", "HardSigmoid")),
    }[style]
    assert se.fused == ("Conv", *acts[0], "Conv", *acts[1], "Mul")
    assert se.algorithm == "squeeze_excite_nchw"
    rng = np.random.default_rng(15)
    for n in (1, 5):
        x = rng.standard_normal((n, 24, 7, 9)).astype(np.float32)
        shaped = sess.describe({"x": x}).steps[1]
        assert shaped.algorithm.startswith("squeeze_excite_nchw_")
        assert ("_serial_" in shaped.algorithm) == (n == 1)
        compare(model, {"x": x}, atol=1e-5)


@pytest.mark.parametrize("style", ["torch", "paddle"])
def test_squeeze_excitation_names_the_node_an_error_comes_from(style):
    """The fused step keeps the nodes it replaced (``Step.fused_nodes``), in the order of
    ``Step.fused``: an error from its Mul names the Mul node, not the pool's."""
    from runtime.steps import _blamed

    sess = InferenceSession(_se_model(style))
    se = next(s for s in sess._impl.engine.steps if s.op_type == "GlobalAveragePool")
    names = {
        "torch": ["Conv_2", "Relu_3", "Conv_4", "HardSigmoid_5", "Mul_6"],
        "paddle": ["Conv_2", "Add_3", "Relu_4", "Conv_5", "Add_6", "HardSigmoid_7", "Mul_8"],
    }[style]
    assert [n.name for n in se.fused_nodes] == names
    assert [n.op_type for n in se.fused_nodes] == [f.split(" ")[0] for f in se.fused]
    assert _blamed(se, "Mul: X has 3 channels, the gate 24") == (
        f"Mul node {names[-1]!r} (fused into GlobalAveragePool node 'GlobalAveragePool_1'): "
        "X has 3 channels, the gate 24"
    )


def test_squeeze_excitation_whose_gate_is_read_elsewhere_stays_apart():
    model = _se_model("torch", gate_reader=True)
    ops = [s.op for s in InferenceSession(model).describe().steps]
    assert ops == ["Conv", "GlobalAveragePool", "Conv", "Conv", "Mul", "Conv"]
    x = np.random.default_rng(16).standard_normal((2, 24, 7, 9)).astype(np.float32)
    compare(model, {"x": x}, atol=1e-5)


def _residual_model(conv: str, after: str | None, shape=(5, 7), c: int = 16) -> bytes:
    """x -> Conv 1x1 (+ Relu) -> a; a -> ``conv`` -> Add(a, .) (-> ``after``) -> y: a
    residual block. ``conv``: "pointwise" (1x1), "im2col" (3x3, too few channels for
    Winograd), "winograd" (3x3, more than ``DIRECT_3X3_MAX_PAIRS`` channel pairs: c=64),
    "depthwise"; ``after``: an op after the Add (Relu, SiLU, a 2x2 MaxPool)."""
    rng = np.random.default_rng(17)
    node = helper.make_node
    k, group = {"pointwise": (1, 1), "im2col": (3, 1), "winograd": (3, 1), "depthwise": (3, c)}[
        conv
    ]
    inits = {
        "w0": rng.standard_normal((c, 3, 1, 1)) / np.sqrt(3),
        "w": rng.standard_normal((c, c // group, k, k)) / np.sqrt(k * k * c / group),
        "b": rng.standard_normal(c),
    }
    nodes = [
        node("Conv", ["x", "w0"], ["c0"]),
        node("Relu", ["c0"], ["a"]),
        node("Conv", ["a", "w", "b"], ["c1"], pads=[k // 2] * 4, group=group),
        node("Add", ["a", "c1"], ["s"] if after else ["y"]),
    ]
    if after == "SiLU":
        nodes += _activation_nodes("SiLU", "s", "y")
    elif after == "MaxPool":
        nodes += [node("MaxPool", ["s"], ["y"], kernel_shape=[2, 2], strides=[2, 2])]
    elif after:
        nodes += [node(after, ["s"], ["y"])]
    vi = helper.make_tensor_value_info
    return chain_model(
        nodes,
        [vi("x", TensorProto.FLOAT, ["N", 3, *shape])],
        [vi("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )


@pytest.mark.parametrize(
    ("conv", "after", "shape"),
    [
        ("pointwise", None, (5, 7)),  # 35 columns: a full 32-wide tile and a partial one
        ("pointwise", "Relu", (12, 12)),  # ResNet's order: the Relu after the Add
        ("pointwise", "SiLU", (6, 6)),  # an activation stored by the scalar path
        ("im2col", None, (9, 11)),
        ("im2col", "MaxPool", (8, 8)),  # the pool after the conv's store
        ("winograd", "Relu", (9, 11)),  # ResNet's blocks: Winograd's output stage
        ("winograd", "SiLU", (6, 6)),
        ("winograd", "MaxPool", (8, 8)),  # added to the unpooled output, then pooled
    ],
)
def test_residual_add_fuses_into_the_conv_store(conv, after, shape):
    """A residual Add after a pointwise, im2col or Winograd conv is added in the conv's
    store, and an activation after it (or a pool) fuses after it; one step, not a
    compiled program, its Add's node among the step's fused nodes; as onnxruntime at
    batch 1 and 3, and on the second run into buffers."""
    winograd = conv == "winograd"
    model = _residual_model(conv, after, shape, c=64 if winograd else 16)
    description = InferenceSession(model).describe({"x": np.zeros((1, 3, *shape), np.float32)})
    fused = {None: (), "Relu": ("Relu",), "SiLU": ("Sigmoid", "Mul"), "MaxPool": ("MaxPool",)}
    assert [(s.op, s.fused) for s in description.steps] == [
        ("Conv", ("Relu",)),
        ("Conv", ("Add (residual)", *fused[after])),
    ]
    assert "the residual Add in the store" in description.steps[1].reason
    assert ("_winograd_" in description.steps[1].algorithm) == winograd
    assert not description.compiled and "residual" in description.not_compiled
    step = InferenceSession(model)._impl.engine.steps[-1]
    assert [n.op_type for n in step.fused_nodes][:1] == ["Add"]
    rng = np.random.default_rng(18)
    for n in (1, 3):
        x = rng.standard_normal((n, 3, *shape)).astype(np.float32)
        compare(model, {"x": x}, atol=1e-4 if winograd else 1e-5)


@pytest.mark.parametrize("conv", ["depthwise"])
def test_residual_add_stays_a_step_after_other_convs(conv):
    """The depthwise conv's store takes no residual: the Add stays."""
    model = _residual_model(conv, None, c=32)
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    assert steps[-1] == ("Add", ())
    x = np.random.default_rng(19).standard_normal((2, 3, 5, 7)).astype(np.float32)
    compare(model, {"x": x}, atol=1e-4)


def test_residual_add_of_a_later_tensor_fuses_into_the_later_conv():
    """Add(conv1(x), conv2(x)): conv1's output is not ready when conv1 runs; the Add
    fuses into conv2, whose other operand (conv1's output) is."""
    rng = np.random.default_rng(20)
    node = helper.make_node
    inits = {"w1": rng.standard_normal((8, 4, 1, 1)), "w2": rng.standard_normal((8, 4, 1, 1))}
    nodes = [
        node("Conv", ["x", "w1"], ["c1"]),
        node("Conv", ["x", "w2"], ["c2"]),
        node("Add", ["c1", "c2"], ["y"]),
    ]
    vi = helper.make_tensor_value_info
    model = chain_model(
        nodes,
        [vi("x", TensorProto.FLOAT, ["N", 4, 6, 5])],
        [vi("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    assert steps == [("Conv", ()), ("Conv", ("Add (residual)",))]
    compare(model, {"x": rng.standard_normal((2, 4, 6, 5)).astype(np.float32)}, atol=1e-5)


def test_a_step_reading_the_conv_output_twice_is_no_gate():
    """Conv then Mul(c, c): one reader reading the conv's output twice (no gated
    activation; it once failed the pass)."""
    rng = np.random.default_rng(21)
    w = rng.standard_normal((8, 4, 1, 1)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mul", ["c", "c"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
    )
    assert [s.op for s in InferenceSession(model).describe().steps] == ["Conv", "Mul"]
    compare(model, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


@pytest.mark.parametrize("shape", list(CONV_SHAPES))
def test_learnable_affine_blocks_fold_into_the_conv(shape):
    """PP-LCNetV3: Conv, Mul and Add of constants (into the weights and bias), an
    activation, Mul and Add of constants (the epilogue's scale and shift after it): one
    step on every conv path; as onnxruntime."""
    rng = np.random.default_rng(22)
    c, m, k, group = CONV_SHAPES[shape]
    inits = {
        "w": rng.standard_normal((m, c // group, k, k)) / np.sqrt(k * k * c / group),
        "s1": rng.uniform(0.5, 1.5, (1,)),
        "t1": rng.standard_normal((1, m, 1, 1)),
        "s2": rng.uniform(-1.5, 1.5, (m, 1, 1)),
        "t2": rng.standard_normal(()),
    }
    node = helper.make_node
    nodes = [
        node("Conv", ["x", "w"], ["c"], pads=[k // 2] * 4, group=group),
        node("Mul", ["s1", "c"], ["m1"]),
        node("Add", ["m1", "t1"], ["a1"]),
        node("Relu", ["a1"], ["r"]),
        node("Mul", ["r", "s2"], ["m2"]),
        node("Add", ["t2", "m2"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, 9, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v, np.float32), n) for n, v in inits.items()],
    )
    (step,) = InferenceSession(model).describe().steps
    assert step.fused == (
        "Mul (in the weights)",
        "Add (in the bias)",
        "Relu",
        "Mul (after the activation)",
        "Add (after the activation)",
    )
    for n in (1, 3):
        compare(model, {"x": rng.standard_normal((n, c, 9, 10)).astype(np.float32)}, atol=1e-4)


def test_mul_by_a_tensor_of_the_conv_s_shape_is_not_folded():
    rng = np.random.default_rng(23)
    inits = {"w": rng.standard_normal((8, 4, 1, 1)), "s": rng.standard_normal((1, 8, 5, 5))}
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node("Mul", ["c", "s"], ["y"]),
    ]
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4, 5, 5])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v.astype(np.float32), n) for n, v in inits.items()],
    )
    assert [s.op for s in InferenceSession(model).describe().steps] == ["Conv", "Mul"]
    compare(model, {"x": rng.standard_normal((2, 4, 5, 5)).astype(np.float32)}, atol=1e-5)


def _gelu_model(style: str, extra_reader: bool = False) -> bytes:
    """MatMul, then GELU written as exporters write it before opset 20 (``style``: the
    order of its products), then a Relu; ``extra_reader``: the Erf's output is also a
    graph output, so that the pattern must stay apart."""
    node = helper.make_node
    c = {
        "w": np.random.default_rng(6).standard_normal((8, 8)).astype(np.float32),
        "sqrt2": np.array(np.sqrt(2.0), np.float32),
        "inv_sqrt2": np.array(1 / np.sqrt(2.0), np.float32),
        "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
    }
    head = [node("MatMul", ["x", "w"], ["h"])]
    if style == "torch":  # x / sqrt(2), erf, + 1, x * that, * 0.5
        body = [
            node("Div", ["h", "sqrt2"], ["u"]),
            node("Erf", ["u"], ["e"]),
            node("Add", ["e", "one"], ["a"]),
            node("Mul", ["h", "a"], ["m"]),
            node("Mul", ["m", "half"], ["g"]),
        ]
    elif style == "half_first":  # x * 0.5 first, x * 1/sqrt(2), then the product
        body = [
            node("Mul", ["half", "h"], ["hh"]),
            node("Mul", ["h", "inv_sqrt2"], ["u"]),
            node("Erf", ["u"], ["e"]),
            node("Add", ["one", "e"], ["a"]),
            node("Mul", ["a", "hh"], ["g"]),
        ]
    else:  # (1 + erf) * 0.5, then x
        body = [
            node("Div", ["h", "sqrt2"], ["u"]),
            node("Erf", ["u"], ["e"]),
            node("Add", ["e", "one"], ["a"]),
            node("Mul", ["a", "half"], ["m"]),
            node("Mul", ["m", "h"], ["g"]),
        ]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 8])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("e", TensorProto.FLOAT, ["N", 8]))
    return chain_model(
        [*head, *body, node("Relu", ["g"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        outputs,
        [numpy_helper.from_array(v, k) for k, v in c.items()],
    )


@pytest.mark.parametrize("style", ["torch", "half_first", "half_last"])
def test_gelu_as_exported_is_one_step(style):
    model = _gelu_model(style)
    plan = InferenceSession(model).describe()
    assert "fuse_gelu" in plan.passes
    first = "Div" if style != "half_first" else "Mul"
    steps = [(s.op, tuple(sorted(s.fused))) for s in plan.steps]
    assert steps == [
        ("MatMul", ()),
        ("Gelu", tuple(sorted(("Add", first, "Erf", "Mul", "Mul")))),
        ("Relu", ()),
    ]
    x = (np.random.default_rng(7).standard_normal((3, 8)) * 3).astype(np.float32)
    compare(model, {"x": x}, atol=1e-5)


def test_gelu_whose_parts_are_read_elsewhere_stays_apart():
    model = _gelu_model("torch", extra_reader=True)
    plan = InferenceSession(model).describe()
    assert "Gelu" not in [s.op for s in plan.steps] and "Erf" in [s.op for s in plan.steps]
    compare(model, {"x": np.random.default_rng(8).standard_normal((2, 8)).astype(np.float32)})


def _linear_model(x_shape: list, bias_shape: tuple, constant_w: bool = True) -> bytes:
    """MatMul by W (8, 6), Add a bias, Relu: a Linear layer as exporters write it."""
    rng = np.random.default_rng(11)
    inits = [numpy_helper.from_array(rng.standard_normal(bias_shape).astype(np.float32), "c")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    w = rng.standard_normal((8, 6)).astype(np.float32)
    if constant_w:
        inits.append(numpy_helper.from_array(w, "w"))
    else:
        inputs.append(helper.make_tensor_value_info("w", TensorProto.FLOAT, [8, 6]))
    nodes = [
        helper.make_node("MatMul", ["x", "w"], ["h"]),
        helper.make_node("Add", ["c", "h"], ["a"]),
        helper.make_node("Relu", ["a"], ["y"]),
    ]
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    return chain_model(nodes, inputs, [y], inits)


@pytest.mark.parametrize(
    ("x_shape", "bias_shape", "fused"),
    [
        (["N", 5, 8], (6,), True),  # rank 3: every row of every image, one GEMM
        (["N", 2, 3, 8], (1, 6), True),  # rank 4 (ConvNeXt's channels-last Linear)
        (["N", 8], (6,), True),  # rank 2: the compiled chain program takes the bias too
        (["N", 5, 8], (5, 6), False),  # a bias per row: a tensor, not a row
        (["N", 5, 8], (1, 1, 6), False),  # rank 3 would raise a 2-D output's rank
    ],
)
def test_matmul_by_constant_weights_takes_the_bias_add(x_shape, bias_shape, fused):
    model = _linear_model(x_shape, bias_shape)
    plan = InferenceSession(model).describe()
    assert "fuse_matmul_bias" in plan.passes
    steps = [(s.op, s.fused) for s in plan.steps]
    assert steps[0] == ("MatMul", ("Add",) if fused else ()), steps
    rng = np.random.default_rng(12)
    for n in (1, 3):
        shape = [n if d == "N" else d for d in x_shape]
        compare(model, {"x": rng.standard_normal(shape).astype(np.float32)})


def test_matmul_by_a_tensor_of_the_run_stays_apart():
    model = _linear_model(["N", 8], (6,), constant_w=False)
    plan = InferenceSession(model).describe()
    assert [(s.op, s.fused) for s in plan.steps][:2] == [("MatMul", ()), ("Add", ())]
    rng = np.random.default_rng(13)
    feeds = {
        "x": rng.standard_normal((2, 8)).astype(np.float32),
        "w": rng.standard_normal((8, 6)).astype(np.float32),
    }
    compare(model, feeds)


def _convnext_model(variant: str = "block", c: int = 8) -> bytes:
    """ConvNeXt as torchvision exports it (opset 17): a 7x7 depthwise conv, Transpose to
    channels-last, LayerNormalization over the last axis, MatMul and Add, GELU (Div,
    Erf, Add, Mul, Mul), MatMul and Add, Mul by the layer scale, Transpose back, the
    residual Add; then a downsampling LayerNorm2d (Transpose, LayerNormalization,
    Transpose) and a 2x2 conv of stride 2. ``variant`` breaks one thing that the
    rewrite must see: ``perm`` (the last Transpose not the inverse), ``axis`` (the
    LayerNormalization over W and C), ``read`` (the first Transpose's output also a
    graph output), ``mean`` (the LayerNormalization's Mean output read)."""
    rng = np.random.default_rng(21)
    node = helper.make_node
    f = np.float32
    inits = {
        "dw": rng.standard_normal((c, 1, 7, 7)).astype(f) * 0.2,
        "dwb": rng.standard_normal(c).astype(f),
        "lns": rng.uniform(0.5, 1.5, c).astype(f),
        "lnb": rng.standard_normal(c).astype(f),
        "w1": rng.standard_normal((c, 4 * c)).astype(f) * 0.3,
        "b1": rng.standard_normal(4 * c).astype(f),
        "w2": rng.standard_normal((4 * c, c)).astype(f) * 0.2,
        "b2": rng.standard_normal(c).astype(f),
        "gamma": rng.uniform(0.1, 1.0, c).astype(f),
        "sqrt2": np.array(np.sqrt(2.0), f),
        "one": np.array(1.0, f),
        "half": np.array(0.5, f),
        "dns": rng.uniform(0.5, 1.5, c).astype(f),
        "dnb": rng.standard_normal(c).astype(f),
        "down": rng.standard_normal((2 * c, c, 2, 2)).astype(f) * 0.3,
    }
    last_perm = [0, 3, 2, 1] if variant == "perm" else [0, 3, 1, 2]
    ln_out = ["n", "mean"] if variant == "mean" else ["n"]
    nodes = [
        node("Conv", ["x", "dw", "dwb"], ["d"], group=c, pads=[3, 3, 3, 3]),
        node("Transpose", ["d"], ["t"], perm=[0, 2, 3, 1]),
        node(
            "LayerNormalization",
            ["t", "lns", "lnb"],
            ln_out,
            axis=-2 if variant == "axis" else -1,
            epsilon=1e-6,
        ),
        node("MatMul", ["n", "w1"], ["h"]),
        node("Add", ["b1", "h"], ["hb"]),
        node("Div", ["hb", "sqrt2"], ["u"]),
        node("Erf", ["u"], ["e"]),
        node("Add", ["e", "one"], ["a"]),
        node("Mul", ["hb", "a"], ["m"]),
        node("Mul", ["m", "half"], ["g"]),
        node("MatMul", ["g", "w2"], ["h2"]),
        node("Add", ["b2", "h2"], ["h2b"]),
        node("Mul", ["gamma", "h2b"], ["s"]),
        node("Transpose", ["s"], ["tb"], perm=last_perm),
        node("Add", ["x", "tb"], ["r"]),
        node("Transpose", ["r"], ["t2"], perm=[0, 2, 3, 1]),
        node("LayerNormalization", ["t2", "dns", "dnb"], ["n2"], epsilon=1e-6),
        node("Transpose", ["n2"], ["t3"], perm=[0, 3, 1, 2]),
        node("Conv", ["t3", "down"], ["y"], strides=[2, 2]),
    ]
    vi = helper.make_tensor_value_info
    outputs = [vi("y", TensorProto.FLOAT, None)]
    if variant == "read":
        outputs.append(vi("t", TensorProto.FLOAT, None))
    if variant == "mean":
        outputs.append(vi("mean", TensorProto.FLOAT, None))
    inputs = [vi("x", TensorProto.FLOAT, ["N", c, 6, 6])]
    return chain_model(
        nodes, inputs, outputs, [numpy_helper.from_array(v, k) for k, v in inits.items()], opset=17
    )


def test_convnext_block_runs_channels_first_without_its_transposes():
    """The block's Transpose, LayerNormalization, MatMul, Add, GELU, MatMul, Add, Mul,
    Transpose and residual Add: a LayerNormalization over channels, a 1x1 conv with
    its bias, the Gelu, a 1x1 conv with bias, layer scale and residual Add in its
    store; the downsampling LayerNorm2d one step. Equal to onnxruntime's at batch 1
    and 2 (and batch 0: nothing to compute)."""
    model = _convnext_model()
    plan = InferenceSession(model).describe()
    assert "channels_first_layer_norm" in plan.passes
    steps = [(s.op, s.fused, s.algorithm) for s in plan.steps]
    assert [s[:2] for s in steps] == [
        ("Conv", ()),
        ("LayerNormalization", ("Transpose", "Transpose")),
        ("Conv", ("MatMul (a 1x1 conv)", "Add (in the bias)")),
        ("Gelu", ("Div", "Erf", "Add", "Mul", "Mul")),
        (
            "Conv",
            ("MatMul (a 1x1 conv)", "Add (in the bias)", "Mul (in the weights)", "Add (residual)"),
        ),
        ("LayerNormalization", ("Transpose", "Transpose")),
        ("Conv", ()),
    ], steps
    assert steps[1][2] == steps[5][2] == "layer_norm_channels_nchw"
    assert "pointwise" in steps[2][2] and "pointwise" in steps[4][2]
    rng = np.random.default_rng(22)
    for n in (1, 2):
        x = rng.standard_normal((n, 8, 6, 6)).astype(np.float32)
        compare(model, {"x": x})


@pytest.mark.parametrize("variant", ["perm", "axis", "read", "mean"])
def test_channels_last_runs_that_differ_keep_their_transposes(variant):
    """The block's run is left as it is where its last Transpose is not the inverse of
    the first, its LayerNormalization is over more than the channels, the first
    Transpose's output is read elsewhere (a graph output), or the normalization's
    Mean is read; the LayerNorm2d after it (unchanged) still becomes one step."""
    model = _convnext_model(variant)
    plan = InferenceSession(model).describe()
    ops = [s.op for s in plan.steps]
    assert ops.count("Transpose") == 2, ops  # the block's two
    assert ops.count("MatMul") == 2 and ops.count("LayerNormalization") == 2, ops
    rng = np.random.default_rng(23)
    compare(model, {"x": rng.standard_normal((2, 8, 6, 6)).astype(np.float32)})


def test_layer_norm_over_channels_checks_what_it_is_given():
    """The step's function on inputs the pass did not lay out: a float64 X, a scale of
    one value, no bias, a non-contiguous X (the checked path), against the channels-last
    LayerNormalization it stands for; and a clear error for X of rank 1."""
    from runtime.errors import ShapeError
    from runtime.ops.normalization import layer_norm_channels, layer_normalization

    rng = np.random.default_rng(24)
    x = rng.standard_normal((2, 5, 3, 4))
    scale = rng.standard_normal(5)
    for xs, sc, b in (
        (x, scale, None),
        (x.astype(np.float32), np.float32([1.5]), None),
        (x.astype(np.float32)[:, :, :, ::2], scale.astype(np.float32), scale.astype(np.float32)),
    ):
        got = layer_norm_channels(xs, sc, b, epsilon=1e-3)
        last = np.ascontiguousarray(xs.transpose(0, 2, 3, 1))
        want = layer_normalization(last, sc, b, axis=-1, epsilon=1e-3)[0].transpose(0, 3, 1, 2)
        assert got.dtype == xs.dtype and got.shape == xs.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ShapeError, match="rank >= 2"):
        layer_norm_channels(np.zeros(3, np.float32), np.ones(1, np.float32))


def _bn_act_model(act: str, attrs: dict, dtype=TensorProto.FLOAT, extra_reader=False) -> bytes:
    """x -> BatchNormalization -> ``act`` -> y (and, with ``extra_reader``, the BN's
    output a graph output too: a second reader, so nothing fuses)."""
    rng = np.random.default_rng(11)
    np_type = np.float32 if dtype == TensorProto.FLOAT else np.float64
    c = 5
    inits = {
        "s": rng.uniform(-1.5, 1.5, c),
        "t": rng.standard_normal(c),
        "m": rng.standard_normal(c),
        "v": rng.uniform(0.5, 2.0, c),
        "lo": np.array(-0.3),
        "hi": np.array(0.8),
    }
    node = helper.make_node
    act_inputs = ["n", "lo", "hi"] if act == "Clip" else ["n"]
    nodes = [
        node("BatchNormalization", ["x", "s", "t", "m", "v"], ["n"], epsilon=1e-3),
        node(act, act_inputs, ["y"], **attrs),
    ]
    outputs = [helper.make_tensor_value_info("y", dtype, ["N", c, 7, 9])]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("n", dtype, ["N", c, 7, 9]))
    return chain_model(
        nodes,
        [helper.make_tensor_value_info("x", dtype, ["N", c, 7, 9])],
        outputs,
        [numpy_helper.from_array(v.astype(np_type), k) for k, v in inits.items()],
    )


@pytest.mark.parametrize(
    ("act", "attrs"),
    [("Relu", {}), ("LeakyRelu", {"alpha": 0.1}), ("Clip", {}), ("Sigmoid", {})],
)
def test_batchnorm_takes_the_activation_after_it(act, attrs):
    """DenseNet's pre-activation BatchNormalization then Relu (no conv before it to
    fold into): one step, the per-channel vector kernel with the activation in it;
    as onnxruntime at batch 1 and 3 with NaN and infinities in the input."""
    from onnx_helpers import run_ort

    model = _bn_act_model(act, attrs)
    steps = InferenceSession(model, compile_plans=False)  # the chain program: compare()
    plan = steps.describe({"x": np.zeros((3, 5, 7, 9), np.float32)})
    assert [(s.op, s.fused) for s in plan.steps] == [("BatchNormalization", (act,))]
    assert plan.steps[0].algorithm.startswith("scale_shift_planes_")
    assert "fuse_bn_activation" in plan.passes
    rng = np.random.default_rng(12)
    for n in (1, 3):
        x = (rng.standard_normal((n, 5, 7, 9)) * 3).astype(np.float32)
        x[0, 1, 2, 3], x[-1, 4, 6, 8], x[0, 0, 0, 0] = np.nan, np.inf, -np.inf
        (want,) = run_ort(model, {"x": x})
        for _ in range(2):  # planned, then into its planned buffer
            np.testing.assert_allclose(steps.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-6)
        compare(model, {"x": x}, atol=1e-6)


def test_batchnorm_activation_in_float64_and_with_two_readers():
    """A float64 BatchNormalization with its Relu fused runs NumPy (as onnxruntime); a
    BN output that a second reader wants keeps its Relu a step of its own."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal((2, 5, 7, 9))
    model = _bn_act_model("Relu", {}, TensorProto.DOUBLE)
    plan = InferenceSession(model).describe({"x": x})
    assert [(s.op, s.fused) for s in plan.steps] == [("BatchNormalization", ("Relu",))]
    compare(model, {"x": x})
    model = _bn_act_model("Relu", {}, extra_reader=True)
    plan = InferenceSession(model).describe()
    assert [(s.op, s.fused) for s in plan.steps] == [("BatchNormalization", ()), ("Relu", ())]
    compare(model, {"x": x.astype(np.float32)})
