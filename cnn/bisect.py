"""Find the first node where two backends disagree.

Both backends run the same graph on the same input, node by node: ours without
fusion (one step per node), onnxruntime with every node output exposed as a graph
output. The first node whose output differs by more than ``atol + rtol x max
|output|`` is reported (the relative part: float32 rounding on activations of
thousands, as in PP-OCR's detector, is not a difference).
The input is seeded random data of the shape cnn/shapes.py resolves (``--dim``,
``--shape``, the batch ``--batch``). Nodes that only produce constants (``Constant``
and nodes of constants alone: weights Paddle2ONNX writes as nodes) are compared but
not listed unless asked (``--all``).

    cnn bisect exported/lenet5.onnx --backends numba,onnxruntime
    cnn bisect det.onnx --dim height=640 --dim width=640
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from cnn import shapes as shp
from cnn.summary import constant_outputs
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
    constant: bool = False  # the node only produces a constant
    scale: float = 0.0  # max |output| of the second backend

    @property
    def row(self) -> str:
        return f"{self.index:4d}  {self.node:<28} {self.op_type:<20} {self.max_abs_diff:.3g}"


@dataclass(frozen=True)
class BisectReport:
    backends: tuple[str, str]
    atol: float
    nodes: list[NodeDiff]
    shapes: str = ""  # the resolved input shapes, one line
    rtol: float = 0.0

    def shown(self, constants: bool = False) -> list[NodeDiff]:
        """The rows to list: constant-producing ones only with ``constants``."""
        return [d for d in self.nodes if constants or not d.constant]

    @property
    def first_bad(self) -> NodeDiff | None:
        return next(
            (d for d in self.nodes if not d.max_abs_diff <= self.atol + self.rtol * d.scale),
            None,
        )


def example_feeds(
    graph: Graph,
    batch: int = 1,
    seed: int = 0,
    *,
    dims: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> tuple[dict[str, np.ndarray], shp.Resolved]:
    """Seeded inputs (uniform [0, 1) floats) of the resolved shapes: a symbolic first
    axis is ``batch``, other symbolic dimensions come from ``dims`` or ``shape``."""
    inputs = [
        shp.InputSpec(i.name, i.dtype, tuple(shp.normalize_dim(d) for d in (i.shape or ())))
        for i in graph.inputs
    ]
    resolved = shp.resolve(inputs, dims, shape, batch=batch)
    return shp.random_feeds(inputs, resolved.concrete(batch), seed), resolved


def _numba_trace(graph: Graph, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    from runtime.engine import NumbaEngine

    values: dict[str, np.ndarray] = {}
    for _, produced in NumbaEngine(graph, optimize=False).run_all(feeds):
        values.update(produced)
    return values


def _ort_trace(
    source: bytes, graph: Graph, feeds: Mapping[str, np.ndarray], folder: str | None = None
):
    import onnxruntime as ort

    from cnn.backends import quiet_onnxruntime

    quiet_onnxruntime()
    model = onnx.load_from_string(source)
    if folder is not None:  # weights in a .data file beside the model (torch's exporter)
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, folder)
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
    rtol: float = 1e-5,
    batch: int = 1,
    seed: int = 0,
    dims: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
) -> BisectReport:
    """Compare every node's outputs between two backends; see ``report.first_bad``."""
    if len(backends) != 2 or any(b not in TRACEABLE for b in backends):
        raise BackendUnavailableError(
            f"bisect compares two of {list(TRACEABLE)}, received {list(backends)}"
        )
    graph = load_graph(model)  # a missing file: ModelNotFoundError
    source = model if isinstance(model, bytes) else open(model, "rb").read()  # noqa: SIM115
    shown = ""
    if feeds is None:
        feeds, resolved = example_feeds(graph, batch, seed, dims=dims, shape=shape)
        shown = resolved.line()
    else:
        feeds = dict(feeds)
        shown = "; ".join(f"{k} {list(np.shape(v))} (given)" for k, v in feeds.items())
    constants = constant_outputs(
        [(n.op_type, n.inputs, n.outputs) for n in graph.nodes], set(graph.initializers)
    )
    traces = []
    for backend in backends:
        if backend == "numba":
            traces.append(_numba_trace(graph, feeds))
        else:
            folder = None if isinstance(model, bytes) else str(Path(model).resolve().parent)
            traces.append(_ort_trace(source, graph, feeds, folder))
    rows = []
    for i, node in enumerate(graph.nodes):
        for name in node.outputs:
            if not name or name not in traces[0] or name not in traces[1]:
                continue
            a, b = np.asarray(traces[0][name]), np.asarray(traces[1][name])
            scale = 0.0
            if a.shape != b.shape or a.dtype != b.dtype:
                diff = float("inf")
            elif a.size == 0 or a.dtype == bool:
                diff = float(np.any(a != b))
            else:
                diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
                scale = float(np.max(np.abs(b.astype(np.float64))))
            constant = name in constants
            rows.append(NodeDiff(i, node.name, node.op_type, name, a.shape, diff, constant, scale))
    return BisectReport((backends[0], backends[1]), atol, rows, shown, rtol)
