"""The ops of ``runtime/ops/quantization.py``.

The quantized ops (QuantizeLinear, DequantizeLinear, QLinearConv, ...): single nodes
against onnxruntime and typed errors that name the node, from the quantization rows of
the shared tables in ``tests/op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model
from op_cases import cases_of, errors_of

from runtime import InferenceSession


@pytest.mark.parametrize("case", cases_of("quantization"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("quantization"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()


def test_matmul_integer_is_exact_over_the_full_int8_range():
    """onnxruntime adds uint8 x int8 product pairs in saturating int16 (AVX2); we add
    exactly, as the spec asks (int32)."""
    a = np.random.default_rng(9).integers(0, 256, (3, 64)).astype(np.uint8)
    b = np.random.default_rng(10).integers(-128, 128, (64, 5)).astype(np.int8)
    model, feeds = single_node_model("MatMulInteger", {"a": a}, initializers={"b": b})
    (got,) = InferenceSession(model).run(None, feeds)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, a.astype(np.int64) @ b.astype(np.int64))
