"""A Keras-style summary of an ONNX graph: layer, op, output shape, parameters, MACs.

Read from the graph alone (``onnx.shape_inference`` gives the shapes). Parameters
are the float initializers a node reads, counted once, BatchNorm statistics
included as Keras counts them; integer initializers (shapes, axes) are not
parameters. MACs are per image: Conv ``out_elements x C_in/group x kernel``,
Gemm/MatMul ``out_elements x K``; other ops count none.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from runtime.graph import parse_model


@dataclass(frozen=True)
class LayerRow:
    name: str
    op_type: str
    output_shape: tuple  # batch shown as "N"
    params: int
    macs: int


@dataclass(frozen=True)
class Summary:
    rows: list[LayerRow]
    metadata: dict[str, str]

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

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
            for r in self.rows
        ]
        widths = [max(len(row[i]) for row in [header, *body]) for i in range(5)]
        line = "  ".join(f"{{:<{w}}}" for w in widths)
        rule = "=" * (sum(widths) + 8)
        out = [rule, line.format(*header).rstrip(), rule]
        out += [line.format(*row).rstrip() for row in body]
        out += [
            rule,
            f"Total params: {self.total_params:,}",
            f"Total MACs per image: {self.total_macs:,}",
            rule,
        ]
        return "\n".join(out)


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
    """The outputs of nodes that only produce constants: ``Constant`` nodes and nodes
    every input of which is an initializer or such an output (``nodes``: (op type,
    inputs, outputs) in topological order)."""
    known = set(initializers)
    out: set[str] = set()
    for op_type, inputs, outputs in nodes:
        if op_type in NOT_FOLDABLE:
            continue
        if all(not name or name in known for name in inputs):
            real = [o for o in outputs if o]
            known.update(real)
            out.update(real)
    return out


def _shape_of(vi: onnx.ValueInfoProto, batch_names: set[str]) -> tuple:
    dims = []
    for i, d in enumerate(vi.type.tensor_type.shape.dim):
        if d.HasField("dim_value"):
            dims.append(d.dim_value)
        else:
            dims.append("N" if i == 0 or d.dim_param in batch_names else (d.dim_param or "?"))
    return tuple(dims)


def summarize(model: str | os.PathLike | bytes) -> Summary:
    proto, _, _ = parse_model(model)
    inferred = onnx.shape_inference.infer_shapes(proto)
    g = inferred.graph
    batch_names = {
        vi.type.tensor_type.shape.dim[0].dim_param
        for vi in g.input
        if vi.type.tensor_type.shape.dim and vi.type.tensor_type.shape.dim[0].dim_param
    }
    shapes = {vi.name: _shape_of(vi, batch_names) for vi in [*g.value_info, *g.output, *g.input]}
    floats = {
        t.name: int(np.prod(t.dims, dtype=np.int64))
        for t in g.initializer
        if t.data_type
        in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16)
    }
    dims_of = {t.name: tuple(t.dims) for t in g.initializer}
    counted: set[str] = set()
    rows = []
    for i, node in enumerate(g.node):
        params = 0
        for name in node.input:
            if name in floats and name not in counted:
                counted.add(name)
                params += floats[name]
        out_shape = shapes.get(node.output[0], ())
        per_image = int(np.prod([d for d in out_shape[1:] if isinstance(d, int)], dtype=np.int64))
        macs = 0
        if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in dims_of:
            w = dims_of[node.input[1]]
            macs = per_image * int(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul") and node.input[1] in dims_of:
            w = dims_of[node.input[1]]
            trans_b = any(a.name == "transB" and a.i for a in node.attribute)
            k = w[1] if (node.op_type == "Gemm" and trans_b) else w[0]
            macs = per_image * int(k)
        rows.append(
            LayerRow(node.name or f"{node.op_type}_{i}", node.op_type, out_shape, params, macs)
        )
    return Summary(rows, {p.key: p.value for p in proto.metadata_props})
