"""The ops of ``runtime/ops/tensor.py``.

The shape and layout ops (Reshape, Transpose, Concat, Slice, Pad, Split, Dropout, ...):
single nodes against onnxruntime, from the tensor rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model
from op_cases import cases_of

from runtime import InferenceSession, errors

RNG = np.random.default_rng(5)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("case", cases_of("tensor"))
def test_single_node_matches_onnxruntime(case):
    case.check()


def test_dropout_in_training_mode_with_ratio_zero_is_identity():
    x = _r(3, 4)
    inits = {"r": np.array(0.0, np.float32), "t": np.array(True)}
    model, feeds = single_node_model("Dropout", {"x": x}, initializers=inits, n_outputs=2)
    y, mask = InferenceSession(model).run(None, feeds)
    np.testing.assert_array_equal(y, x)
    assert mask.dtype == np.bool_ and mask.all()
    inits["r"] = np.array(0.5, np.float32)
    model, feeds = single_node_model("Dropout", {"x": x}, initializers=inits, n_outputs=2)
    with pytest.raises(errors.InvalidAttributeError, match="nonzero ratio"):
        InferenceSession(model).run(None, feeds)
