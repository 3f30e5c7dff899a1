"""Find the first node where two backends disagree.

Both backends run the same graph on the same input, node by node: ours without
fusion (one step per node), onnxruntime with every node output exposed as a graph
output. The first node whose output differs by more than ``atol`` is reported.

    cnn bisect exported/lenet5.onnx --backends numba,onnxruntime
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from runtime.errors import BackendUnavailableError
from runtime.graph import Graph, load_graph


@dataclass(frozen=True)
class NodeDiff:
    index: int
    node: str
    op_type: str
    output: str
    shape: tuple[int, ...]
    max_abs_diff: float  # inf when shapes or dtypes differ

    @property
    def row(self) -> str:
        return f"{self.index:4d}  {self.node:<28} {self.op_type:<20} {self.max_abs_diff:.3g}"


@dataclass(frozen=True)
class BisectReport:
    backends: tuple[str, str]
    atol: float
    nodes: list[NodeDiff]

    @property
    def first_bad(self) -> NodeDiff | None:
        return next((d for d in self.nodes if not d.max_abs_diff <= self.atol), None)


def example_feeds(graph: Graph, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Uniform [0, 1) inputs; symbolic dimensions become ``batch``."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for info in graph.inputs:
        shape = [d if isinstance(d, int) and d > 0 else batch for d in (info.shape or [])]
        feeds[info.name] = rng.random(shape).astype(info.dtype)
    return feeds


def _numba_trace(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    from runtime.engine import NumbaEngine

    values: dict[str, np.ndarray] = {}
    for _, produced in NumbaEngine(graph, optimize=False).run_all(feeds):
        values.update(produced)
    return values


def _ort_trace(source: bytes, graph: Graph, feeds: Mapping[str, np.ndarray]):
    import onnxruntime as ort

    model = onnx.load_from_string(source)
    present = {o.name for o in model.graph.output}
    for node in graph.nodes:
        for name in node.outputs:
            if name and name not in present:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    options = ort.SessionOptions()
    # Fusions would make some intermediate tensors vanish from onnxruntime's results.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, dict(feeds)), strict=True))


TRACEABLE = ("numba", "onnxruntime")


def bisect_backends(
    model: str | os.PathLike | bytes,
    backends: Sequence[str] = ("numba", "onnxruntime"),
    *,
    feeds: Mapping[str, np.ndarray] | None = None,
    atol: float = 1e-4,
    batch: int = 1,
    seed: int = 0,
) -> BisectReport:
    """Compare every node's outputs between two backends; see ``report.first_bad``."""
    if len(backends) != 2 or any(b not in TRACEABLE for b in backends):
        raise BackendUnavailableError(
            f"bisect compares two of {list(TRACEABLE)}, received {list(backends)}"
        )
    source = model if isinstance(model, bytes) else open(model, "rb").read()  # noqa: SIM115
    graph = load_graph(model)
    feeds = dict(feeds) if feeds is not None else example_feeds(graph, batch, seed)
    traces = []
    for backend in backends:
        if backend == "numba":
            traces.append(_numba_trace(graph, feeds))
        else:
            traces.append(_ort_trace(source, graph, feeds))
    rows = []
    for i, node in enumerate(graph.nodes):
        for name in node.outputs:
            if not name or name not in traces[0] or name not in traces[1]:
                continue
            a, b = np.asarray(traces[0][name]), np.asarray(traces[1][name])
            if a.shape != b.shape or a.dtype != b.dtype:
                diff = float("inf")
            elif a.size == 0 or a.dtype == bool:
                diff = float(np.any(a != b))
            else:
                diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
            rows.append(NodeDiff(i, node.name, node.op_type, name, a.shape, diff))
    return BisectReport((backends[0], backends[1]), atol, rows)
