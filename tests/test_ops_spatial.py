"""The ops of ``runtime/ops/spatial.py``.

Resize, Upsample, ConvTranspose, DepthToSpace and SpaceToDepth: single nodes against
onnxruntime, typed errors that name the node and results over the size limit refused
before allocating, from the spatial rows of the shared tables in ``tests/op_cases.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from onnx_helpers import run_ort, single_node_model
from op_cases import cases_of, errors_of, too_large_of

from runtime import InferenceSession


@pytest.mark.parametrize("case", cases_of("spatial"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("spatial"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()


@pytest.mark.parametrize("too_large", too_large_of("spatial"))
def test_too_large_outputs_are_refused_before_allocating(too_large, monkeypatch):
    too_large.check(monkeypatch)


@pytest.mark.parametrize("scales", [[1, 1, 2, 2], [1, 1, 0.5, 0.5], [1, 1, 1.5, 3]])
def test_resize_linear_uint8_truncates_as_onnxruntime(scales):
    """Integer outputs are truncated (rounding would differ in about half of them); a
    sum that lands on an integer (weights 1/3, 2/3) can truncate to either side of
    it in float32 against float64, hence one level, rarely."""
    x = np.random.default_rng(0).integers(0, 256, (1, 2, 6, 6)).astype(np.uint8)
    roi, s = np.array([], np.float32), np.array(scales, np.float32)
    model, feeds = single_node_model(
        "Resize", {"x": x}, initializers={"roi": roi, "s": s}, mode="linear"
    )
    (want,) = run_ort(model, feeds)
    (got,) = InferenceSession(model).run(None, feeds)
    assert got.shape == want.shape and got.dtype == want.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= 1
    assert (diff == 0).mean() >= 0.9
