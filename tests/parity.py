"""The numba engine against onnxruntime: the one ``compare`` the parity tests use, and
``Case``, a single-node graph, the row of the shared table in ``tests/op_cases.py``.

``compare(model, feeds)`` runs a model on both and checks, output by output, the
shape, then the dtype, then the values (``np.testing.assert_allclose``). The numba
session runs twice: the first run traces and plans, the second runs the cached plan
with its buffers, so both paths are held to onnxruntime.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx_helpers import run_ort, single_node_model

from runtime import InferenceSession
from runtime.ops.registry import OpVersion, resolve


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


@dataclass(frozen=True)
class Case:
    """One single-node graph for ``compare``: ``op`` reading ``inputs`` (graph inputs,
    fed) and ``inits`` (initializers), with attributes ``attrs``, at ``opset``."""

    op: str
    inputs: dict[str, np.ndarray]
    inits: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, object] = field(default_factory=dict)
    opset: int = 18
    outputs: int = 1
    rtol: float = 1e-5
    atol: float = 1e-5

    def model(self) -> tuple[bytes, dict[str, np.ndarray]]:
        return single_node_model(
            self.op,
            self.inputs,
            initializers=self.inits,
            n_outputs=self.outputs,
            opset=self.opset,
            **self.attrs,
        )

    def version(self) -> OpVersion:
        """The registered implementation the case runs (the newest not after its opset)."""
        version = resolve(self.op, self.opset)
        assert version is not None, f"{self.op} is not registered at opset {self.opset}"
        return version

    def family(self) -> str:
        """The op's module in ``runtime/ops`` (``nn``, ``math``, ...)."""
        return self.version().fn.__module__.rsplit(".", 1)[1]

    def check(self) -> None:
        model, feeds = self.model()
        compare(model, feeds, rtol=self.rtol, atol=self.atol)
