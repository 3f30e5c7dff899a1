"""The numba engine against onnxruntime: the one ``compare`` the parity tests use.

``compare(model, feeds)`` runs a model on both and checks, output by output, the
shape, then the dtype, then the values (``np.testing.assert_allclose``). The numba
session runs twice: the first run traces and plans, the second runs the cached plan
with its buffers, so both paths are held to onnxruntime.
"""

from __future__ import annotations

import numpy as np
from onnx_helpers import run_ort

from runtime import InferenceSession


def compare(model: bytes, feeds: dict[str, np.ndarray], rtol=1e-5, atol=1e-5) -> None:
    """``model`` on the numba engine gives onnxruntime's outputs on ``feeds``."""
    want = run_ort(model, feeds)
    sess = InferenceSession(model, backend="numba")
    for _ in range(2):  # traced and planned, then the cached plan with its buffers
        got = sess.run(None, feeds)
        assert len(got) == len(want)
        for g, w in zip(got, want, strict=True):
            assert g.shape == w.shape
            assert g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)


def allocated_per_run(sess: InferenceSession, feeds: dict[str, np.ndarray]) -> int:
    """Peak bytes allocated by one warm run (numpy reports its buffers to tracemalloc)."""
    import tracemalloc

    sess.run(None, feeds)  # traces and plans
    sess.run(None, feeds)  # allocates this thread's buffers for the plan
    tracemalloc.start()
    try:
        sess.run(None, feeds)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
