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


__all__ = ["chain_model", "onnx", "run_ort", "single_node_model"]
