"""The ops of ``runtime/ops/reduce.py``.

The reductions, ArgMax/ArgMin, TopK and CumSum: single nodes against onnxruntime and
typed errors that name the node, from the reduce rows of the shared tables in
``tests/op_cases.py``.
"""

from __future__ import annotations

import pytest
from op_cases import cases_of, errors_of


@pytest.mark.parametrize("case", cases_of("reduce"))
def test_single_node_matches_onnxruntime(case):
    case.check()


@pytest.mark.parametrize("bad", errors_of("reduce"))
def test_bad_input_is_a_typed_error_naming_the_node(bad):
    bad.check()


@pytest.mark.parametrize(
    ("axes", "keepdims", "bound"),
    [([2, 3], 1, True), ([-2, -1], 0, True), ([1, 2, 3], 1, True), ([1, 2], 1, False)],
)
def test_reduce_mean_over_the_last_axes_is_a_global_average_pool(axes, keepdims, bound):
    """A float32 ReduceMean over the last axes (MNASNet's, ShuffleNetV2's global mean)
    is laid out at load as the global average pool's kernel; over other axes it stays
    the reduction's. Planned and unplanned runs as onnxruntime, batch 3."""
    import numpy as np
    from onnx_helpers import run_ort, single_node_model

    from runtime import InferenceSession

    x = np.random.default_rng(3).standard_normal((3, 6, 5, 7)).astype(np.float32)
    model, feeds = single_node_model(
        "ReduceMean", {"x": x}, initializers={"axes": np.array(axes, np.int64)},
        keepdims=keepdims, opset=18,
    )  # fmt: skip
    sess = InferenceSession(model, compile_plans=False)
    (step,) = sess.describe(feeds).steps
    assert step.bound == bound
    assert step.algorithm.startswith("global_pool") == bound, step.algorithm
    (want,) = run_ort(model, feeds)
    for _ in range(2):
        (got,) = sess.run(None, feeds)
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
