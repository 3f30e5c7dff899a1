"""ONNX protobuf -> an immutable, validated graph the engine can plan.

What is checked here, before any op runs: the file is a real ONNX model; every
tensor is defined before use and there is no cycle (nodes come out topologically
sorted); the default-domain opset is one this runtime implements and no other
domain is imported; external data lies inside the model's folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from runtime.errors import (
    ExternalDataError,
    GraphError,
    ModelLoadError,
    ModelNotFoundError,
    UnsupportedOpsetError,
)

MIN_OPSET = 7
MAX_OPSET = onnx.defs.onnx_opset_version()  # what the installed onnx knows
DEFAULT_DOMAINS = ("", "ai.onnx")
_SUB_BYTE = {  # types packed several to a byte in raw_data
    getattr(onnx.TensorProto, name)
    for name in ("INT4", "UINT4", "FLOAT4E2M1", "INT2", "UINT2", "FLOAT6E2M3", "FLOAT6E3M2")
    if hasattr(onnx.TensorProto, name)
}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    elem_type: int  # onnx.TensorProto.DataType
    shape: tuple[int | str | None, ...] | None  # None: rank unknown; str: symbolic dim

    @property
    def type_string(self) -> str:
        """onnxruntime's spelling, e.g. ``tensor(float)``."""
        return f"tensor({onnx.TensorProto.DataType.Name(self.elem_type).lower()})"

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(self.elem_type))


@dataclass(frozen=True)
class Node:
    name: str
    op_type: str
    domain: str
    inputs: tuple[str, ...]  # "" marks an omitted optional input
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    # onnx.AttributeProto.AttributeType of each attribute (INT, INTS, FLOAT...): the
    # parsed values alone cannot tell an empty INTS from an empty FLOATS
    attr_kinds: Mapping[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return f"{self.op_type} node {self.name!r}"


@dataclass(frozen=True)
class Graph:
    nodes: tuple[Node, ...]  # topologically sorted
    initializers: Mapping[str, np.ndarray]  # read-only arrays
    inputs: tuple[TensorInfo, ...]  # graph inputs that are not initializers
    outputs: tuple[TensorInfo, ...]
    opset: int  # of the default domain
    metadata: Mapping[str, str]
    producer: str = ""
    # the rest of the model's header, for get_modelmeta()
    graph_name: str = ""
    domain: str = ""
    doc_string: str = ""
    graph_doc_string: str = ""
    model_version: int | None = None  # None: not set


# ------------------------------------------------------------------------- reading


def _read_bytes(source: str | os.PathLike | bytes) -> tuple[bytes, Path | None, str]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None, "<bytes>"
    path = Path(source)
    if not path.exists():
        raise ModelNotFoundError(f"model file {path} not found")
    if not path.is_file():
        raise ModelNotFoundError(f"model path {path} is not a file")
    return path.read_bytes(), path.parent, str(path)


def parse_model(source: str | os.PathLike | bytes) -> tuple[onnx.ModelProto, Path | None, str]:
    """Read and parse; an empty, truncated or non-ONNX file raises ModelLoadError."""
    data, folder, label = _read_bytes(source)
    if not data:
        raise ModelLoadError(f"{label}: empty file, expected an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError, and RuntimeWarning-ish variants
        raise ModelLoadError(f"{label}: not an ONNX model (protobuf parse failed: {exc})") from None
    # Arbitrary bytes can parse as an all-unknown-fields message: insist on the basics.
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.output:
        raise ModelLoadError(
            f"{label}: not an ONNX model: expected ir_version > 0 and a graph with outputs, "
            f"received ir_version {model.ir_version}, {len(model.graph.output)} outputs"
        )
    return model, folder, label


def _external_array(tensor: onnx.TensorProto, folder: Path | None, label: str) -> np.ndarray:
    info = {e.key: e.value for e in tensor.external_data}
    location = info.get("location", "")
    if folder is None:
        raise ExternalDataError(
            f"{label}: tensor {tensor.name!r} keeps its data in {location!r}, "
            "but the model was given as bytes: load it from its file instead"
        )
    rel = Path(location)
    if not location or rel.is_absolute() or ".." in rel.parts:
        raise ExternalDataError(
            f"{label}: tensor {tensor.name!r}: external data location {location!r} "
            "must be a relative path inside the model's folder (no absolute path, no '..')"
        )
    base = folder.resolve()
    target = (base / rel).resolve()
    if not target.is_relative_to(base):
        raise ExternalDataError(
            f"{label}: tensor {tensor.name!r}: {location!r} resolves to {target}, "
            f"outside the model's folder {base}"
        )
    if not target.is_file():
        raise ExternalDataError(f"{label}: tensor {tensor.name!r}: data file {target} not found")
    offset = int(info.get("offset", 0))
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    count = int(np.prod(tensor.dims, dtype=np.int64))
    length = int(info.get("length", count * dtype.itemsize))
    if length != count * dtype.itemsize or offset + length > target.stat().st_size:
        raise ExternalDataError(
            f"{label}: tensor {tensor.name!r}: expected {count * dtype.itemsize} bytes at "
            f"offset {offset} of {target} ({target.stat().st_size} bytes), "
            f"received length {length}"
        )
    with target.open("rb") as fh:
        fh.seek(offset)
        raw = fh.read(length)
    return np.frombuffer(raw, dtype=dtype).reshape(tuple(tensor.dims)).copy()


def _dtype(tensor: onnx.TensorProto, label: str) -> np.dtype:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    except (KeyError, TypeError, ValueError):
        raise ModelLoadError(
            f"{label}: tensor {tensor.name!r} has data_type {tensor.data_type}, "
            "not an ONNX tensor type"
        ) from None


def to_array(tensor: onnx.TensorProto, folder: Path | None = None, label: str = "") -> np.ndarray:
    dims = tuple(tensor.dims)
    if any(d < 0 for d in dims):
        raise ModelLoadError(
            f"{label}: tensor {tensor.name!r} has dims {list(dims)}: expected >= 0"
        )
    dtype = _dtype(tensor, label)
    if tensor.data_location == onnx.TensorProto.EXTERNAL:
        array = _external_array(tensor, folder, label)
    else:
        count = int(np.prod(dims, dtype=object))
        sub_byte = tensor.data_type in _SUB_BYTE
        if tensor.HasField("raw_data") and dtype.kind not in "OSU" and not sub_byte:
            need = count * dtype.itemsize
            if len(tensor.raw_data) != need:
                raise ModelLoadError(
                    f"{label}: tensor {tensor.name!r}: dims {list(dims)} of "
                    f"{onnx.TensorProto.DataType.Name(tensor.data_type)} need {need} bytes, "
                    f"raw_data has {len(tensor.raw_data)}"
                )
        try:
            array = numpy_helper.to_array(tensor)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise ModelLoadError(
                f"{label}: tensor {tensor.name!r} (dims {list(dims)}, "
                f"{onnx.TensorProto.DataType.Name(tensor.data_type)}) cannot be read: {exc}"
            ) from None
    array = np.asarray(array, order="C")  # ascontiguousarray would make a scalar 1-D
    array.setflags(write=False)
    return array


def _attr_value(attr: onnx.AttributeProto, folder: Path | None, label: str) -> Any:
    kind = attr.type
    attr_types = onnx.AttributeProto
    if kind == attr_types.FLOAT:
        return float(attr.f)
    if kind == attr_types.INT:
        return int(attr.i)
    if kind == attr_types.STRING:
        return attr.s.decode("utf-8", errors="replace")
    if kind == attr_types.TENSOR:
        return to_array(attr.t, folder, label)
    if kind == attr_types.FLOATS:
        return tuple(float(v) for v in attr.floats)
    if kind == attr_types.INTS:
        return tuple(int(v) for v in attr.ints)
    if kind == attr_types.STRINGS:
        return tuple(s.decode("utf-8", errors="replace") for s in attr.strings)
    return attr  # graphs, sparse tensors, type protos: kept raw; no supported op reads them


def _tensor_info(vi: onnx.ValueInfoProto) -> TensorInfo:
    tt = vi.type.tensor_type
    shape: tuple[int | str | None, ...] | None = None
    if tt.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim
        )
    return TensorInfo(vi.name, tt.elem_type, shape)


# ----------------------------------------------------------------------- validating


def _opset(model: onnx.ModelProto, label: str, strict: bool) -> int:
    version = None
    others = []
    # A domain imported but used by no node is no obstacle (exporters add ai.onnx.ml or
    # their own domain by habit; onnxruntime runs such models): only used ones count.
    used = {node.domain for node in model.graph.node}
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            version = int(entry.version)
        elif entry.domain in used:
            others.append(f"{entry.domain} v{entry.version}")
    if others and strict:
        raise UnsupportedOpsetError(
            f"{label}: imports opset domain(s) {', '.join(others)}: this runtime implements "
            f"only the default ONNX domain, opsets {MIN_OPSET} to {MAX_OPSET}"
        )
    if version is None:
        version = 1  # the ONNX spec's default when the import is missing
    if strict and not MIN_OPSET <= version <= MAX_OPSET:
        raise UnsupportedOpsetError(
            f"{label}: default-domain opset {version}: expected {MIN_OPSET} to {MAX_OPSET}"
        )
    return version


def _toposort(nodes: list[Node], available: set[str], label: str) -> tuple[Node, ...]:
    """Kahn's algorithm; reports an undefined tensor or the nodes caught in a cycle."""
    producer: dict[str, int] = {}
    for i, node in enumerate(nodes):
        for out in node.outputs:
            if not out:
                continue
            if out in producer or out in available:
                raise GraphError(f"{label}: tensor {out!r} is produced twice ({node.describe()})")
            producer[out] = i
    waiting = []
    users: dict[int, list[int]] = {i: [] for i in range(len(nodes))}
    for i, node in enumerate(nodes):
        deps = set()
        for name in node.inputs:
            if not name or name in available:
                continue
            if name not in producer:
                raise GraphError(
                    f"{label}: {node.describe()} reads tensor {name!r}, which no graph input, "
                    "initializer or node defines"
                )
            deps.add(producer[name])
        waiting.append(len(deps))
        for d in deps:
            users[d].append(i)
    ready = [i for i, n in enumerate(waiting) if n == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for u in users[i]:
            waiting[u] -= 1
            if waiting[u] == 0:
                ready.append(u)
    if len(order) != len(nodes):
        stuck = [nodes[i].name or nodes[i].op_type for i in range(len(nodes)) if waiting[i] > 0]
        raise GraphError(f"{label}: the graph has a cycle through node(s) {stuck}")
    return tuple(nodes[i] for i in order)


def load_graph(source: str | os.PathLike | bytes, *, strict_opset: bool = True) -> Graph:
    """Parse, read initializers (external data only from inside the model's folder), validate.

    ``strict_opset=False`` accepts any opset and domain (onnxruntime judges those itself).
    """
    model, folder, label = parse_model(source)
    opset = _opset(model, label, strict_opset)
    g = model.graph
    initializers = {t.name: to_array(t, folder, label) for t in g.initializer}
    inputs = tuple(_tensor_info(vi) for vi in g.input if vi.name not in initializers)
    outputs = tuple(_tensor_info(vi) for vi in g.output)
    nodes = []
    for i, n in enumerate(g.node):
        name = n.name or f"{n.op_type}_{i}"
        attrs = MappingProxyType({a.name: _attr_value(a, folder, label) for a in n.attribute})
        kinds = MappingProxyType({a.name: int(a.type) for a in n.attribute})
        nodes.append(Node(name, n.op_type, n.domain, tuple(n.input), tuple(n.output), attrs, kinds))
    available = set(initializers) | {i.name for i in inputs}
    ordered = _toposort(nodes, available, label)
    defined = available | {o for n in nodes for o in n.outputs}
    for out in outputs:
        if out.name not in defined:
            raise GraphError(f"{label}: graph output {out.name!r} is never computed")
    metadata = MappingProxyType({p.key: p.value for p in model.metadata_props})
    return Graph(
        ordered,
        MappingProxyType(initializers),
        inputs,
        outputs,
        opset,
        metadata,
        model.producer_name,
        g.name,
        model.domain,
        model.doc_string,
        g.doc_string,
        model.model_version if model.HasField("model_version") else None,
    )
