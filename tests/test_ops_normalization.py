"""The ops of ``runtime/ops/normalization.py``.

The normalizations (Layer, Group, Instance, RMS, Lp, MVN): single nodes against
onnxruntime and typed errors that name the node, from the normalization rows of the
shared tables in ``tests/op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import single_node_model
from op_cases import cases_of, errors_of

from runtime import InferenceSession

RNG = np.random.default_rng(5)


def _r(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("case", cases_of("normalization"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("normalization"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()


def test_group_normalization_18_scales_per_group():
    """Opset 18's scale and bias have one value per group (onnxruntime dropped this
    version, so the check is against the formula)."""
    x, scale, bias = _r(2, 6, 3, 3), _r(3), _r(3)
    model, feeds = single_node_model(
        "GroupNormalization",
        {"x": x},
        initializers={"s": scale, "b": bias},
        num_groups=3,
        epsilon=1e-4,
        opset=18,
    )
    (got,) = InferenceSession(model).run(None, feeds)
    g = x.reshape(2, 3, -1).astype(np.float64)
    norm = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-4)
    want = norm * scale[:, None] + bias[:, None]
    np.testing.assert_allclose(got, want.reshape(x.shape), rtol=1e-5, atol=1e-5)
