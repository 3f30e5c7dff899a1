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
