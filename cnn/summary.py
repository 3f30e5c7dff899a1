"""A Keras-style summary of an ONNX graph: layer, op, output shape, parameters, MACs.

Read from the graph alone, at a concrete input size: cnn/shapes.py resolves the
inputs (``--dim``, ``--shape``; the batch 1; a symbolic size nothing gives is
assumed, :data:`ASSUMED_SIZE`, and said), then ``onnx.shape_inference`` runs on that
size, so every shape is a number. An axis that follows the batch shows as ``N``
(it is inferred a second time at batch 2); one inference cannot size shows as ``?``.

Parameters are the weights wherever they live: float initializers, float
``Constant`` nodes, and integer weights a ``DequantizeLinear`` reads, each counted
once, at the first node that reads it, directly or through nodes that only compute
constants (a ``Reshape`` of two ``Constant`` s is a folded weight). BatchNorm
statistics count as Keras counts them; integer shapes and axes do not, nor do the
settings of Resize, Clip, Pad and the like (:data:`SETTINGS_INPUTS`). Nodes that
only produce constants at the resolved size (weights, and shape computations from
``Shape``) are hidden unless asked (``constants=True``). Shapes inference cannot
follow (a ``Reshape`` to a computed shape) come from one onnxruntime run.

MACs are per image, at the resolved size: Conv ``out_elements x C_in/group x
kernel``, ConvTranspose ``in_elements x C_out/group x kernel``, Gemm and MatMul
``out_elements x K``, their quantized forms (ConvInteger, QLinearConv, MatMulInteger,
QLinearMatMul) alike; other ops count none.

    cnn summary exported/lenet5.onnx
    cnn summary yolov8n.onnx --dim height=640 --dim width=640
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from cnn import shapes as shp
from runtime.graph import parse_model

ASSUMED_SIZE = 224  # a symbolic size no option gives (said in the notes)
FLOAT_TYPES = (
    onnx.TensorProto.FLOAT,
    onnx.TensorProto.DOUBLE,
    onnx.TensorProto.FLOAT16,
    onnx.TensorProto.BFLOAT16,
)

# Ops whose inputs past the first are settings, not weights: Resize's scales, Clip's
# bounds, Pad's value.
SETTINGS_INPUTS = frozenset(
    {"Resize", "Upsample", "Clip", "Pad", "Range", "Slice", "Reshape", "Expand", "Tile"}
)

# Ops whose output is not a function of their inputs alone, or that read outer scopes.
NOT_FOLDABLE = frozenset(
    {
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "If",
        "Loop",
        "Scan",
    }
)


def constant_outputs(
    nodes: Sequence[tuple[str, Sequence[str], Sequence[str]]], initializers: set[str]
) -> set[str]:
    """The outputs of nodes that only produce constants at a given input size:
    ``Constant``, ``Shape`` and ``Size`` nodes, and nodes every input of which is an
    initializer or such an output (``nodes``: (op type, inputs, outputs) in
    topological order)."""
    known = set(initializers)
    out: set[str] = set()
    for op_type, inputs, outputs in nodes:
        if op_type in NOT_FOLDABLE:
            continue
        if op_type in ("Shape", "Size") or all(not name or name in known for name in inputs):
            real = [o for o in outputs if o]
            known.update(real)
            out.update(real)
    return out


@dataclass(frozen=True)
class LayerRow:
    name: str
    op_type: str
    output_shape: tuple  # ints; "N" for the batch, "?" where inference could not size it
    params: int
    macs: int
    constant: bool = False  # the node only produces a constant


@dataclass(frozen=True)
class Summary:
    rows: list[LayerRow]  # every node, constant-producing ones included
    metadata: dict[str, str]
    shapes: str = ""  # the input shapes the MACs are counted at
    input_line: str = ""  # the same, with where each size came from (cnn/shapes.py)
    notes: list[str] = field(default_factory=list)
    show_constants: bool = False

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def shown(self) -> list[LayerRow]:
        return [r for r in self.rows if self.show_constants or not r.constant]

    def table(self) -> str:
        header = ("Layer", "Op", "Output shape", "Param #", "MACs")
        body = [
            (
                r.name,
                r.op_type,
                "(" + ", ".join(map(str, r.output_shape)) + ")",
                f"{r.params:,}",
                f"{r.macs:,}",
            )
            for r in self.shown
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(5)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        rule = "=" * (sum(widths) + 8)
        out = [rule, line.format(*header).rstrip(), rule]
        out += [line.format(*row).rstrip() for row in body]
        hidden = len(self.rows) - len(self.shown)
        out += [rule]
        if hidden:
            out.append(
                f"{hidden} constant-producing nodes hidden (their weights are counted at the "
                "layer that reads them; --constants lists them)"
            )
        out += [
            f"Total params: {self.total_params:,}",
            f"Total MACs per image: {self.total_macs:,} (input {self.shapes})",
            *self.notes,
            rule,
        ]
        return "\n".join(out)


def _concrete_model(proto: onnx.ModelProto, sizes: Mapping[str, Sequence[int]]) -> onnx.ModelProto:
    """A copy with every real input at ``sizes`` and no stale intermediate shapes."""
    model = onnx.ModelProto()
    model.CopyFrom(proto)
    for vi in model.graph.input:
        if vi.name in sizes:
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for size in sizes[vi.name]:
                shape.dim.add().dim_value = int(size)
    for vi in model.graph.output:  # declared output shapes would hide the inferred ones
        vi.type.tensor_type.ClearField("shape")
    del model.graph.value_info[:]
    return model


def _inferred_shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    """Each tensor's dims after shape inference: ints, None where unknown."""
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    g = inferred.graph
    out = {t.name: tuple(int(d) for d in t.dims) for t in g.initializer}
    for vi in [*g.input, *g.value_info, *g.output]:
        if not vi.type.tensor_type.HasField("shape"):
            continue
        out[vi.name] = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value >= 0 else None
            for d in vi.type.tensor_type.shape.dim
        )
    return out


def _run_shapes(
    model: onnx.ModelProto,
    inputs: Sequence[shp.InputSpec],
    sizes: Mapping[str, Sequence[int]],
    folder: Path | None,
) -> dict[str, tuple]:
    """Every node output's shape from one onnxruntime run on seeded random inputs: for
    the shapes inference cannot follow (a Reshape to a shape computed from Shape)."""
    import onnxruntime as ort

    model = _concrete_model(model, sizes)
    if folder is not None:  # weights in a .data file beside the model
        from onnx.external_data_helper import load_external_data_for_model

        load_external_data_for_model(model, str(folder))
    present = {o.name for o in model.graph.output}
    for node in model.graph.node:
        for name in node.output:
            if name and name not in present:
                model.graph.output.append(onnx.ValueInfoProto(name=name))
                present.add(name)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.log_severity_level = 3  # no VerifyOutputSizes warnings against declared shapes
    sess = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    names = [o.name for o in sess.get_outputs()]
    values = sess.run(names, shp.random_feeds(inputs, sizes))
    return {n: tuple(np.shape(v)) for n, v in zip(names, values, strict=True)}


def _shown_shape(one: tuple | None, two: tuple | None) -> tuple:
    """The output shape at batch 1, its batch-following axes as N (or kN)."""
    if one is None:
        return ("?",)
    dims: list = []
    for axis, d in enumerate(one):
        d2 = two[axis] if two is not None and len(two) == len(one) else d
        if d is None:
            dims.append("?")
        elif d2 is not None and d2 != d and d2 == 2 * d:
            dims.append("N" if d == 1 else f"{d}N")
        else:
            dims.append(d)
    return tuple(dims)


def _float_elements(tensor: onnx.TensorProto) -> int:
    return int(np.prod(tensor.dims, dtype=np.int64)) if tensor.data_type in FLOAT_TYPES else 0


def _macs(node: onnx.NodeProto, shape: Mapping[str, tuple]) -> int:
    """Multiply-accumulates of one node at batch 1 (0 when a shape is unknown)."""

    def known(name: str) -> tuple | None:
        dims = shape.get(name)
        return dims if dims is not None and all(d is not None for d in dims) else None

    out = known(node.output[0]) if node.output else None
    if out is None or len(node.input) < 2:
        return 0
    elements = int(np.prod(out, dtype=np.int64))
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        w = known(node.input[3 if node.op_type == "QLinearConv" else 1])
        return elements * int(np.prod(w[1:], dtype=np.int64)) if w else 0
    if node.op_type == "ConvTranspose":
        x, w = known(node.input[0]), known(node.input[1])
        if x is None or w is None:
            return 0
        return int(np.prod(x, dtype=np.int64)) * int(np.prod(w[1:], dtype=np.int64))
    if node.op_type in ("Gemm", "MatMul", "MatMulInteger", "QLinearMatMul"):
        a = known(node.input[0])
        if not a:
            return 0
        trans_a = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
        k = a[0] if trans_a and len(a) == 2 else a[-1]
        return elements * int(k)
    return 0


def summarize(
    model: str | os.PathLike | bytes,
    *,
    dims: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
    constants: bool = False,
) -> Summary:
    """The table's rows, the MACs counted at the input size cnn/shapes.py resolves from
    ``dims`` and ``shape`` (the batch 1 when symbolic; any other size no option gives
    assumed :data:`ASSUMED_SIZE`, said in ``notes``). ``constants``: the table lists
    the constant-producing nodes too."""
    proto, folder, _ = parse_model(model)
    g = proto.graph
    inputs = shp.proto_inputs(proto)
    shape_two = None
    if shape is not None and len(inputs) == 1 and inputs[0].dims and inputs[0].dims[0] is None:
        shape, shape_two = [1, *shape[1:]], [2, *shape[1:]]  # per image: the batch at 1
    resolved = shp.resolve(inputs, dims, shape, batch=1, assume=ASSUMED_SIZE)
    batched = shp.resolve(inputs, dims, shape_two or shape, batch=2, assume=ASSUMED_SIZE)
    notes = []
    try:
        shape_of = _inferred_shapes(_concrete_model(proto, resolved.concrete(1)))
        at_two = _inferred_shapes(_concrete_model(proto, batched.concrete(2)))
    except Exception:  # onnx's InferenceError, an op of a domain it does not know
        shape_of, at_two = {}, {}
    unknown = [
        o
        for n in g.node
        for o in n.output
        if o and (shape_of.get(o) is None or None in shape_of[o])
    ]
    if unknown:  # what inference could not follow, one run can
        try:
            shape_of.update(_run_shapes(proto, inputs, resolved.concrete(1), folder))
            at_two.update(_run_shapes(proto, inputs, batched.concrete(2), folder))
        except Exception as exc:  # the model does not run here: those shapes stay unknown
            text = " ".join(str(exc).split())
            node = re.search(r"running (\w+ node\. Name:'[^']*')", text)
            reason = re.search(r"(?<![:\w/])[A-Z][a-z]+ [a-z][^()]*$", text)  # past the source
            text = ", ".join(m.group(1) if m.lastindex else m.group(0) for m in (node, reason) if m)
            notes.append(
                f"{len(unknown)} output shapes unknown at this size, their MACs not counted "
                f"(onnxruntime: {text[:200]}): give the model's real size with --dim or --shape"
            )

    inits = {t.name: t for t in g.initializer}
    # Where each weight lives: a float initializer, a Constant node's tensor, or integer
    # weights a DequantizeLinear reads.
    weights: dict[str, int] = {n: _float_elements(t) for n, t in inits.items()}
    for node in g.node:
        if node.op_type == "DequantizeLinear" and node.input and node.input[0] in inits:
            weights[node.input[0]] = int(np.prod(inits[node.input[0]].dims, dtype=np.int64))
        if node.op_type == "Constant" and node.output:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            weights[node.output[0]] = _float_elements(value) if value is not None else 0
    folded = constant_outputs([(n.op_type, n.input, n.output) for n in g.node], set(inits))
    sources: dict[str, set[str]] = {n: {n} for n in weights}  # a tensor's weights
    counted: set[str] = set()
    rows = []
    for i, node in enumerate(g.node):
        constant = bool(node.output) and all(o in folded for o in node.output if o)
        reads: set[str] = set()
        for k, name in enumerate(node.input):
            if k == 0 or constant or node.op_type not in SETTINGS_INPUTS:
                reads |= sources.get(name, set())
        params = 0
        if constant:
            for o in node.output:
                sources[o] = sources.get(o, set()) | reads
        else:
            for name in sorted(reads - counted):
                counted.add(name)
                params += weights.get(name, 0)
        out = node.output[0] if node.output else ""
        rows.append(
            LayerRow(
                node.name or f"{node.op_type}_{i}",
                node.op_type,
                _shown_shape(shape_of.get(out), at_two.get(out)),
                params,
                0 if constant else _macs(node, shape_of),
                constant,
            )
        )
    if resolved.notes and any(n.startswith("assumed") for n in resolved.notes):
        notes.append(next(n for n in resolved.notes if n.startswith("assumed")))
    return Summary(
        rows,
        {p.key: p.value for p in proto.metadata_props},
        resolved.text(),
        resolved.line(),
        notes,
        constants,
    )
