"""Small ONNX graphs made in the tests, for parity and error cases."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def single_node_model(
    op: str,
    inputs: dict[str, np.ndarray],
    *,
    initializers: dict[str, np.ndarray] | None = None,
    n_outputs: int = 1,
    opset: int = 18,
    **attrs,
) -> tuple[bytes, dict[str, np.ndarray]]:
    """One node reading ``inputs`` (graph inputs) and ``initializers``; returns (model, feeds)."""
    initializers = initializers or {}
    names = list(inputs) + list(initializers)
    outs = [f"y{i}" for i in range(n_outputs)]
    node = helper.make_node(op, names, outs, name=f"{op.lower()}_node", **attrs)
    graph = helper.make_graph(
        [node],
        f"{op}_graph",
        [
            helper.make_tensor_value_info(
                k, helper.np_dtype_to_tensor_dtype(v.dtype), list(v.shape)
            )
            for k, v in inputs.items()
        ],
        [onnx.ValueInfoProto(name=o) for o in outs],  # types left to inference
        [numpy_helper.from_array(v, k) for k, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString(), inputs


def run_ort(model: bytes, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def chain_model(nodes, inputs, outputs, initializers=(), opset=18) -> bytes:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def small_classifier(
    dims: list,
    classes: int = 5,
    *,
    layout: str = "NCHW",
    seed: int = 0,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """A little image classifier as a user brings one: Conv 3x3 -> Relu ->
    GlobalAveragePool -> Flatten -> Gemm, logits (N, classes), no metadata unless
    given. ``dims``: the input's, symbolic ones as names ("N", "H", "W"); NHWC inputs
    go through a Transpose first. Any height and width work (the pooling is global)."""
    rng = np.random.default_rng(seed)
    channels = dims[1] if layout == "NCHW" else dims[3]
    w = (rng.standard_normal((8, channels, 3, 3)) / 3).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32) * 0.1
    fc = rng.standard_normal((classes, 8)).astype(np.float32)
    fc_b = rng.standard_normal(classes).astype(np.float32)
    nodes = []
    x = "input"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("Conv", [x, "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "small_classifier",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, [dims[0], classes])],
        [
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(fc, "fc"),
            numpy_helper.from_array(fc_b, "fc_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for k, v in (metadata or {}).items():
        model.metadata_props.add(key=k, value=v)
    return model.SerializeToString()


def small_segmenter(seed: int = 0) -> bytes:
    """Input (N, 3, H, W), all but the channels symbolic -> (N, 4, H, W): two 3x3 convs."""
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((6, 3, 3, 3)) / 3).astype(np.float32)
    w2 = (rng.standard_normal((4, 6, 3, 3)) / 3).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Conv", ["r", "w2"], ["mask"], pads=[1, 1, 1, 1]),
    ]
    graph = helper.make_graph(
        nodes,
        "small_segmenter",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("mask", onnx.TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def dft_model() -> bytes:
    """(N, 16, 1) -> DFT (N, 16, 2): onnxruntime runs it, the numba engine does not."""
    graph = helper.make_graph(
        [helper.make_node("DFT", ["input"], ["spectrum"], axis=1)],
        "dft",
        [helper.make_tensor_value_info("input", onnx.TensorProto.FLOAT, ["N", 16, 1])],
        [helper.make_tensor_value_info("spectrum", onnx.TensorProto.FLOAT, ["N", 16, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


__all__ = [
    "chain_model",
    "dft_model",
    "onnx",
    "run_ort",
    "single_node_model",
    "small_classifier",
    "small_segmenter",
]
