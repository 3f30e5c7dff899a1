"""Tiny models shaped like the ones users bring from the wild (issue 25), made with
onnx.helper: Paddle2ONNX's ``[-1, 3, '?', '?']`` input, weights in ``Constant`` nodes
(and one folded from two constants), a symbolic size named twice."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node(
        "Constant", [], [name], name=f"Constant_{name}", value=numpy_helper.from_array(array)
    )


def _model(nodes, inputs, outputs, initializers=(), opset: int = 13) -> bytes:
    graph = helper.make_graph(nodes, "wild", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    return model.SerializeToString()


def paddle_detector(seed: int = 0) -> bytes:
    """x [-1, 3, ?, ?] -> Conv 3x3 (8) -> Relu -> MaxPool 2 -> Conv 1x1 (1) -> Sigmoid,
    every weight in a Constant node; the 1x1 weight is a Reshape of two Constants."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, 3, 3, 3)) / 3).astype(np.float32)
    b1 = (rng.standard_normal(8) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal(8) / 3).astype(np.float32)
    nodes = [
        _const("w1", w1),
        _const("b1", b1),
        _const("w2_flat", w2),
        _const("w2_shape", np.array([1, 8, 1, 1], np.int64)),
        helper.make_node("Reshape", ["w2_flat", "w2_shape"], ["w2"], name="Reshape_w2"),
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node(
            "MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]
        ),
        helper.make_node("Conv", ["p1", "w2"], ["c2"], name="conv2"),
        helper.make_node("Sigmoid", ["c2"], ["maps"], name="sigmoid"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [-1, 3, "?", "?"])
    y = helper.make_tensor_value_info("maps", onnx.TensorProto.FLOAT, [-1, 1, "?", "?"])
    return _model(nodes, [x], [y])


def paddle_classifier(classes: int = 4, seed: int = 0, dims: list | None = None) -> bytes:
    """x [-1, 3, ?, ?] -> Conv 3x3 (6) -> Relu -> MaxPool 2 -> GlobalAveragePool ->
    Flatten -> MatMul -> Add: logits [-1, classes], weights in Constant nodes."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((6, 3, 3, 3)) / 3).astype(np.float32)
    fc = rng.standard_normal((6, classes)).astype(np.float32)
    fc_b = rng.standard_normal(classes).astype(np.float32)
    nodes = [
        _const("w", w),
        _const("fc", fc),
        _const("fc_b", fc_b),
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("GlobalAveragePool", ["p"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
        helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
        helper.make_node("Add", ["m", "fc_b"], ["logits"], name="fc_bias"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, dims or [-1, 3, "?", "?"])
    y = helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [-1, classes])
    return _model(nodes, [x], [y])


def named_square(seed: int = 0) -> bytes:
    """images [batch, 3, size, size] (one name for height and width) -> Conv 3x3 (4)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 3, 3, 3)) / 3).astype(np.float32)
    nodes = [helper.make_node("Conv", ["images", "w"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    x = helper.make_tensor_value_info(
        "images", onnx.TensorProto.FLOAT, ["batch", 3, "size", "size"]
    )
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 4, "size", "size"])
    return _model(nodes, [x], [y], [numpy_helper.from_array(w, "w")])


def unnamed_dims() -> bytes:
    """x [?, 3, (no value, no name)] -> Relu: an axis only --shape can size."""
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [None, 3, None])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [None, 3, None])
    return _model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [x], [y])


def reshaped_by_shape(seed: int = 0) -> bytes:
    """x [N, 3, H, W] -> Conv 3x3 (4) -> Reshape to (N, 4, H*W) by a shape computed
    from Shape, Slice and Concat (as exporters write a flatten) -> MatMul by a
    (H*W)-independent (4, 4) weight on the transposed maps."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 3, 3, 3)) / 3).astype(np.float32)
    q = rng.standard_normal((4, 4)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        _const("starts", np.array([0], np.int64)),
        _const("ends", np.array([2], np.int64)),
        _const("minus_one", np.array([-1], np.int64)),
        helper.make_node("Slice", ["s", "starts", "ends"], ["nc"], name="slice"),
        helper.make_node("Concat", ["nc", "minus_one"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["flat"], name="flatten"),
        helper.make_node("Transpose", ["flat"], ["t"], name="transpose", perm=[0, 2, 1]),
        _const("q", q),
        helper.make_node("MatMul", ["t", "q"], ["y"], name="mix"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", "HW", 4])
    return _model(nodes, [x], [y], [numpy_helper.from_array(w, "w")])


def quantized_weights() -> bytes:
    """x [N, 8] -> MatMul by DequantizeLinear(int8 (8, 4) weights, scale): y [N, 4]."""
    w = np.arange(32, dtype=np.int8).reshape(8, 4)
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "scale"], ["w"], name="dequantize"),
        helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 8])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    inits = [numpy_helper.from_array(w, "wq"), numpy_helper.from_array(np.float32(0.1), "scale")]
    return _model(nodes, [x], [y], inits)


def upsampler(seed: int = 0) -> onnx.ModelProto:
    """x [N, 3, H, W] -> Conv 3x3 (4, bias) -> Resize x2 (nearest, float scales):
    as torch's exporter writes it (the proto, to save with external data)."""
    rng = np.random.default_rng(seed)
    w = (rng.standard_normal((4, 3, 3, 3)) / 3).astype(np.float32)
    b = (rng.standard_normal(4) * 0.1).astype(np.float32)
    scales = np.array([1, 1, 2, 2], np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Resize", ["c", "", "scales"], ["y"], name="up", mode="nearest"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4, "2*H", "2*W"])
    inits = [numpy_helper.from_array(a, n) for a, n in ((w, "w"), (b, "b"), (scales, "scales"))]
    graph = helper.make_graph(nodes, "upsampler", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def fixed_reshape() -> bytes:
    """x [1, 3, H, W] -> Conv 3x3 (4) -> Reshape to (N, 4, 64), N read by Shape: it runs
    only where H * W = 64, as models made for one size do."""
    w = np.ones((4, 3, 3, 3), np.float32) / 27
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Shape", ["c"], ["s"], name="shape"),
        _const("starts", np.array([0], np.int64)),
        _const("ends", np.array([1], np.int64)),
        _const("rest", np.array([4, 64], np.int64)),
        helper.make_node("Slice", ["s", "starts", "ends"], ["n"], name="slice"),
        helper.make_node("Concat", ["n", "rest"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["c", "target"], ["y"], name="flatten"),
    ]
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, "H", "W"])
    y = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 64])
    return _model(nodes, [x], [y], [numpy_helper.from_array(w, "w")])
