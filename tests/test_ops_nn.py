"""The ops of ``runtime/ops/nn.py``.

Conv, the pools, LRN, BatchNormalization, Gemm, MatMul, Softmax and LogSoftmax: single
nodes against onnxruntime, from the nn rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model
from op_cases import cases_of
from parity import compare

from runtime import InferenceSession

RNG = np.random.default_rng(1)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("case", cases_of("nn"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("opset", [11, 12])
def test_softmax_before_opset_13_flattens(opset):
    x = _r(2, 3, 4)
    model, feeds = single_node_model("Softmax", {"x": x}, axis=1, opset=opset)
    (got,) = InferenceSession(model).run(None, feeds)
    flat = x.reshape(2, 12)
    want = (np.exp(flat) / np.exp(flat).sum(1, keepdims=True)).reshape(x.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    compare(model, feeds)


@pytest.mark.parametrize(
    ("xs", "k", "stride", "pads", "lanes"),
    [
        ((1, 24, 9, 9), 3, 1, [1, 1, 1, 1], True),  # channels past one vector
        ((2, 19, 7, 7), 5, 2, [2, 2, 2, 2], True),  # strided 5x5, a short group, batch 2
        ((1, 40, 15, 13), 5, 1, [2, 1, 2, 3], True),  # odd sizes, uneven pads
        ((1, 8, 37, 33), 3, 2, [1, 1, 0, 0], False),  # 18x16 outputs: phased planes
        ((1, 6, 35, 37), 5, 1, [2, 2, 2, 2], False),
    ],
)
@pytest.mark.parametrize("act", [None, "Relu", "Clip", "HardSwish", "SiLU"])
def test_depthwise_conv_and_its_activation_match_onnxruntime(xs, k, stride, pads, lanes, act):
    """MobileNet's and EfficientNet's depthwise convs (3x3 and 5x5, strides 1 and 2)
    with the activation fused into them (Clip as ReLU6, SiLU as Sigmoid then Mul) on
    both depthwise kernels: channels in lanes (small planes) and phased planes."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    from runtime.ops.nn import conv_call

    c = xs[1]
    w, b = _r(c, 1, k, k), _r(c)
    attrs = {"group": c, "pads": pads, "strides": [stride, stride]}
    assert ("_lanes16_" in conv_call(xs, w, b, **attrs).choice.algorithm) == lanes
    node = helper.make_node
    conv_out = "y" if act is None else "c"
    nodes = [node("Conv", ["x", "w", "b"], [conv_out], **attrs)]
    inits = {"w": w, "b": b}
    if act == "Clip":
        inits |= {"lo": np.float32(0), "hi": np.float32(6)}
        nodes.append(node("Clip", ["c", "lo", "hi"], ["y"]))
    elif act == "SiLU":
        nodes += [node("Sigmoid", ["c"], ["s"]), node("Mul", ["c", "s"], ["y"])]
    elif act is not None:
        nodes.append(node(act, ["c"], ["y"]))
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    plan = InferenceSession(model).describe()
    assert [s.op for s in plan.steps] == ["Conv"]  # the activation fused into the conv
    compare(model, {"x": 3 * _r(*xs)})


@pytest.mark.parametrize(
    ("xs", "m", "k", "group", "bias"),
    [
        ((2, 3, 35, 33), 24, 4, 1, True),  # ConvNeXt's stem, odd sizes: the last rows dropped
        ((1, 24, 16, 16), 48, 2, 1, False),  # its downsampling, no bias
        ((3, 12, 9, 13), 18, 2, 3, True),  # grouped, a batch of 3
        ((1, 3, 224, 224), 192, 16, 1, True),  # ViT's patch embedding
    ],
)
@pytest.mark.parametrize("act", [None, "Relu", "SiLU"])
def test_patchify_conv_and_its_activation_match_onnxruntime(xs, m, k, group, bias, act):
    """Convs whose kernel equals their stride (ConvNeXt's stem and downsampling, ViT's
    16x16/16 patch embedding) run the patch entry, the activation fused into them."""
    from onnx import TensorProto, helper, numpy_helper
    from onnx_helpers import chain_model

    from runtime.ops.nn import conv_call

    w = _r(m, xs[1] // group, k, k) / np.float32(np.sqrt(xs[1] // group * k * k))
    b = _r(m) if bias else None
    attrs = {"group": group, "strides": [k, k]}
    assert "_patch_pointwise_gemm_" in conv_call(xs, w, b, **attrs).choice.algorithm
    node = helper.make_node
    conv_out = "y" if act is None else "c"
    inits = {"w": w, **({"b": b} if bias else {})}
    nodes = [node("Conv", ["x", *inits], [conv_out], **attrs)]
    if act == "SiLU":
        nodes += [node("Sigmoid", ["c"], ["s"]), node("Mul", ["c", "s"], ["y"])]
    elif act is not None:
        nodes.append(node(act, ["c"], ["y"]))
    model = chain_model(
        nodes,
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, xs)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), n) for n, v in inits.items()],
    )
    feeds = {"x": _r(*xs)}
    described = InferenceSession(model).describe(feeds)
    assert [s.op for s in described.steps] == ["Conv"]  # the activation fused into the conv
    if not described.compiled:  # small chains compile into one program (runtime/compiled)
        assert "_patch_pointwise_gemm_" in described.steps[0].algorithm
    compare(model, feeds)


@pytest.mark.parametrize("rank", [1, 2, 3])
def test_max_pool_windows_wholly_in_padding_give_the_lowest_float(rank):
    """Pads as wide as a 1-wide window (onnxruntime refuses them; the engine takes them):
    each border window holds no tap of the input and gives the lowest float32, as
    onnxruntime's empty (dilated) windows do, never -inf; the others the input. Run
    twice: the op, then the step bound to its shape (the 2-D vector kernel)."""
    sp = (3, 4, 2)[:rank] if rank < 3 else (2, 3, 4)
    x = _r(2, 3, *sp)
    model, feeds = single_node_model(
        "MaxPool", {"x": x}, kernel_shape=[1] * rank, pads=[1] * (2 * rank)
    )
    sess = InferenceSession(model)
    inner = (slice(None), slice(None), *[slice(1, -1)] * rank)
    for _ in range(2):
        (y,) = sess.run(None, feeds)
        assert y.shape == (2, 3, *(s + 2 for s in sp))
        np.testing.assert_array_equal(y[inner], x)
        border = np.ones(y.shape, bool)
        border[inner] = False
        assert (y[border] == np.finfo(np.float32).min).all()


def test_empty_windows_marks_each_window_without_a_tap_inside():
    from runtime.ops.nn import empty_windows

    # contiguous windows that overlap the input: none, told without building a mask
    assert empty_windows((5, 7), (3, 3), (1, 1), (3, 3), (2, 2), (1, 1)) is None
    # a 1-wide window, pad 2 before and 1 after a 3-wide axis: windows at -2, -1, 0..2, 3
    mask = empty_windows((3,), (6,), (2,), (1,), (1,), (1,))
    np.testing.assert_array_equal(mask, [True, True, False, False, False, True])
    # dilation 3 over 2 rows, pad 1: taps -1 and 2, none inside; the columns do not matter
    mask = empty_windows((2, 9), (1, 3), (1, 0), (2, 2), (1, 3), (3, 1))
    np.testing.assert_array_equal(mask, np.ones((1, 3), bool))
