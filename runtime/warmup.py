"""Compile every numba kernel ahead of time: ``cnn warmup``.

The kernels see one type signature whatever the model (float32, C-contiguous,
fixed ranks), so running one small graph that uses each of them fills numba's
cache, and the first real call of any model in any later process loads compiled
code instead of compiling.
"""

from __future__ import annotations

import time

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from runtime.engine import NumbaEngine
from runtime.graph import load_graph


def _warmup_model() -> bytes:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 2, 3, 3)).astype(np.float32), "w")
    w2 = numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "w2")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    # Two convs, because numba types a read-only array apart from a writable one: a
    # bias from the model's initializers is read-only, a missing bias becomes zeros.
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c0"], pads=[1, 1, 1, 1]),
        helper.make_node("Conv", ["c0", "w2"], ["c"]),
        helper.make_node("Tanh", ["c"], ["t"]),  # fused: the conv epilogue
        helper.make_node("MaxPool", ["t"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["m"], ["a"], kernel_shape=[2, 2]),
        helper.make_node("GlobalAveragePool", ["a"], ["g1"]),
        helper.make_node("GlobalMaxPool", ["a"], ["g2"]),
    ]
    vi = helper.make_tensor_value_info
    graph = helper.make_graph(
        nodes,
        "warmup",
        [vi("x", TensorProto.FLOAT, [1, 2, 8, 8])],
        [vi("g1", TensorProto.FLOAT, [1, 4, 1, 1]), vi("g2", TensorProto.FLOAT, [1, 4, 1, 1])],
        [w, w2, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def warmup() -> float:
    """Compile (or load from the cache) every kernel; returns the seconds it took."""
    t0 = time.perf_counter()
    engine = NumbaEngine(load_graph(_warmup_model()))
    x = np.zeros((1, 2, 8, 8), np.float32)
    engine.run({"x": x}, engine.output_names)  # traced
    engine.run({"x": x}, engine.output_names)  # planned: the buffer-writing paths
    return time.perf_counter() - t0
