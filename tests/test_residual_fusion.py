"""A residual Add fused into a conv (``passes.fuse_conv_residual_add``) whose other
operand is not shaped as the conv's output: broadcast either way, or of another layout."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_helpers import chain_model
from parity import compare

from runtime import InferenceSession


@pytest.mark.parametrize("k", [1, 3])  # a pointwise GEMM, Winograd
@pytest.mark.parametrize("other", ["wider", "narrower", "strided"])
def test_residual_of_another_shape_or_layout_is_added_apart(k, other):
    """A residual Add whose other operand broadcasts (the conv's 1x1 output over a
    global pool against the planes: the Add's output wider than the conv's; or one
    plane of channels against the conv's output) runs the conv alone, then the Add and
    the Relu after it; a strided view (a feed of another layout) is copied, then
    fused. As onnxruntime, on the second run into buffers too."""
    rng = np.random.default_rng(22)
    node = helper.make_node
    w = (rng.standard_normal((32, 32, k, k)) / np.sqrt(32 * k * k)).astype(np.float32)
    src = {"wider": "p", "narrower": "x", "strided": "x"}[other]
    res = {"wider": "x", "narrower": "m", "strided": "x"}[other]
    nodes = [
        node("GlobalAveragePool", ["x"], ["p"]),
        node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=1),
        node("Conv", [src, "w"], ["c"], pads=[k // 2] * 4),
        node("Add", ["c", res], ["s"]),
        node("Relu", ["s"], ["y"]),
        node("Add", ["p", "m"], ["z"]),  # the pool and the mean: outputs, so both stay
    ]
    vi = helper.make_tensor_value_info
    model = chain_model(
        nodes,
        [vi("x", TensorProto.FLOAT, ["N", 32, 6, 7])],
        [vi("y", TensorProto.FLOAT, None), vi("z", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w")],
        opset=17,
    )
    steps = [(s.op, s.fused) for s in InferenceSession(model).describe().steps]
    assert ("Conv", ("Add (residual)", "Relu")) in steps
    for n in (1, 2):
        x = rng.standard_normal((n, 32, 6, 7)).astype(np.float32)
        if other == "strided":
            x = rng.standard_normal((n, 32, 6, 14)).astype(np.float32)[..., ::2]
        compare(model, {"x": x}, atol=1e-4)
