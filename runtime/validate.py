"""Every node checked against its op's ONNX schema at the model's opset, before anything runs.

``check_node`` is the one place every op goes through: the engine calls it for each
node when it builds its steps (``steps.make_step``), so an op added to the registry
is checked without doing anything itself. It reads the schema that ONNX itself
defines (``onnx.defs.get_schema(op, max_inclusive_version=opset)``) and checks

* the number of inputs and outputs (the schema's min and max; an omitted optional
  one is given as ''), and that every required one is named;
* every attribute: known to the schema, of the schema's kind (INT, INTS, FLOAT,
  STRING, TENSOR...), and every required one present;
* ranges that hold for every op that has the attribute: ``kernel_shape``,
  ``strides``, ``dilations`` >= 1, ``group`` >= 1, the ``pads`` of a window >= 0 and
  not given beside an ``auto_pad`` other than NOTSET, ``auto_pad`` one of its four
  values; and lengths that must agree with each other and with the number of
  spatial axes where it is known (from ``kernel_shape``, or from the rank of input 0
  when a graph input or initializer fixes it);
* the element types of the inputs whose types are known (graph inputs,
  initializers, and what the schema's type constraints give the outputs of earlier
  nodes): each one allowed by its constraint, and the inputs that share a type
  parameter (Gemm's A, B and C are all T) of one type.

What depends on the shapes of the tensors is left to the ops, which check it when
they run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import onnx
from onnx.defs import OpSchema

from runtime.errors import GraphError, InvalidAttributeError
from runtime.graph import Node, TensorInfo

AUTO_PADS = ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID")
POSITIVE = {"kernel_shape": "size", "strides": "stride", "dilations": "dilation"}  # >= 1
PER_SPATIAL_AXIS = ("kernel_shape", "strides", "dilations", "output_padding", "output_shape")
_SINGLE = OpSchema.FormalParameterOption.Single
_VARIADIC = OpSchema.FormalParameterOption.Variadic


def _kind(kind: int) -> str:
    try:
        return onnx.AttributeProto.AttributeType.Name(kind)
    except ValueError:
        return f"unknown kind {kind}"


@lru_cache(maxsize=4096)
def schema(op_type: str, opset: int) -> OpSchema | None:
    """ONNX's schema of ``op_type`` in the default domain at ``opset``, or None."""
    try:
        return onnx.defs.get_schema(op_type, max_inclusive_version=opset, domain="")
    except onnx.defs.SchemaError:
        return None


@dataclass
class Known:
    """What is known of tensors before anything runs: ranks (graph inputs,
    initializers) and element types as ONNX spells them (``tensor(float)``), which
    ``check_node`` extends with the types of the outputs it can tell."""

    ranks: dict[str, int] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of(cls, initializers: Mapping[str, np.ndarray], inputs: Iterable[TensorInfo] = ()) -> Known:
        """From a graph's initializers and its inputs (``graph.TensorInfo``)."""
        known = cls()
        for name, array in initializers.items():
            known.ranks[name] = array.ndim
            spelled = type_string(array.dtype)
            if spelled:
                known.types[name] = spelled
        for info in inputs:
            if info.shape is not None:
                known.ranks[info.name] = len(info.shape)
            if info.elem_type:
                known.types[info.name] = _spell(info.elem_type)
        return known


def _spell(elem_type: int) -> str:
    try:
        return f"tensor({onnx.TensorProto.DataType.Name(elem_type).lower()})"
    except ValueError:
        return ""


def type_string(dtype: np.dtype) -> str:
    """``tensor(float)`` for float32, as ONNX's type constraints spell it ('' if none)."""
    try:
        return _spell(onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    except (KeyError, TypeError, ValueError):
        return ""


def check_node(node: Node, opset: int, known: Known | None = None) -> None:
    """Raise GraphError (inputs, outputs, their types) or InvalidAttributeError
    (attributes) for a node that its schema at ``opset`` does not allow; ``known``
    (ranks and types of tensors) learns the types of the node's outputs."""
    known = Known() if known is None else known
    found = schema(node.op_type, opset)
    if found is None:
        raise GraphError(
            f"{node.describe()}: ONNX defines no {node.op_type} in the default domain "
            f"at opset {opset}"
        )
    where = f"{node.describe()} ({node.op_type}-{found.since_version}, model opset {opset})"
    _check_arity(node, found, where)
    _check_attributes(node, found, where)
    _check_ranges(node, found, where, known.ranks)
    _check_types(node, found, where, known.types)


def _check_types(node: Node, s: OpSchema, where: str, types: dict[str, str]) -> None:
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in s.type_constraints}
    bound: dict[str, tuple[str, str]] = {}  # type parameter -> (type, the input that set it)
    for i, name in enumerate(node.inputs):
        got = types.get(name) if name else None
        if not got or not s.inputs:
            continue
        formal = s.inputs[min(i, len(s.inputs) - 1)]
        param = formal.type_str
        if got not in allowed.get(param, {param}):
            raise GraphError(
                f"{where}: input {i} ({formal.name}) {name!r} is {got}: expected one of "
                f"{sorted(allowed.get(param, {param}))}"
            )
        shared = param in allowed and formal.is_homogeneous  # Loop's, for one, are not
        if shared and param in bound and bound[param][0] != got:
            raise GraphError(
                f"{where}: input {i} ({formal.name}) {name!r} is {got}, but {bound[param][1]!r} "
                f"is {bound[param][0]}: expected one type for both ({param})"
            )
        bound.setdefault(param, (got, name))
    for i, name in enumerate(node.outputs):
        if not name or not s.outputs:
            continue
        param = s.outputs[min(i, len(s.outputs) - 1)].type_str
        choices = allowed.get(param, {param})
        if param in bound:
            types[name] = bound[param][0]
        elif len(choices) == 1 and next(iter(choices)).startswith("tensor("):
            types[name] = next(iter(choices))
        elif isinstance(node.attrs.get("to"), int) and _spell(node.attrs["to"]) in choices:
            types[name] = _spell(node.attrs["to"])  # Cast: the type is the attribute's


def check_outputs(outputs: Iterable[TensorInfo], known: Known) -> None:
    """Each graph output (``graph.TensorInfo``) declared with an element type must
    have the type its node gives it, where that is known."""
    for info in outputs:
        got = known.types.get(info.name)
        want = _spell(info.elem_type) if info.elem_type else ""
        if got and want and got != want:
            raise GraphError(f"graph output {info.name!r} is declared {want}, its node gives {got}")


def _check_arity(node: Node, s: OpSchema, where: str) -> None:
    for what, names, low, high, formals in (
        ("input", node.inputs, s.min_input, s.max_input, s.inputs),
        ("output", node.outputs, s.min_output, s.max_output, s.outputs),
    ):
        if not low <= len(names) <= high:
            expected = f"{low}" if low == high else f"{low} to {high}"
            if high >= 1 << 30:
                expected = f"at least {low}"
            raise GraphError(
                f"{where}: expected {expected} {what}s "
                f"({', '.join(f.name for f in formals)}), received {len(names)} {list(names)}"
            )
        for i, name in enumerate(names):
            formal = formals[min(i, len(formals) - 1)]
            if not name and formal.option in (_SINGLE, _VARIADIC):
                raise GraphError(
                    f"{where}: {what} {i} ({formal.name}) is required, received an empty name"
                )


def _check_attributes(node: Node, s: OpSchema, where: str) -> None:
    known = s.attributes
    unknown = sorted(set(node.attrs) - set(known))
    if unknown:
        raise InvalidAttributeError(
            f"{where}: unknown attribute(s) {unknown}; expected among {sorted(known)}"
        )
    absent = sorted(n for n, a in known.items() if a.required and n not in node.attrs)
    if absent:
        raise InvalidAttributeError(f"{where}: missing required attribute(s) {absent}")
    for name in node.attrs:
        want = int(known[name].type)
        got = node.attr_kinds.get(name)
        if got is not None and got != want:
            raise InvalidAttributeError(
                f"{where}: attribute {name!r} must be {_kind(want)}, received {_kind(got)} "
                f"{node.attrs[name]!r}"
            )


def _check_ranges(node: Node, s: OpSchema, where: str, ranks: Mapping[str, int]) -> None:
    attrs = node.attrs
    for name, each in POSITIVE.items():
        values = attrs.get(name)
        if values is not None and any(v < 1 for v in values):
            raise InvalidAttributeError(
                f"{where}: attribute {name!r} {list(values)}: expected every {each} >= 1"
            )
    if attrs.get("group", 1) < 1:
        raise InvalidAttributeError(f"{where}: attribute 'group' {attrs['group']}: expected >= 1")
    if "auto_pad" in attrs and attrs["auto_pad"] not in AUTO_PADS:
        raise InvalidAttributeError(
            f"{where}: auto_pad {attrs['auto_pad']!r}: expected one of {AUTO_PADS}"
        )
    windowed = "kernel_shape" in s.attributes or "strides" in s.attributes
    if not windowed:
        return  # Pad's pads, for one, may be negative
    pads = attrs.get("pads")
    if pads is not None and any(p < 0 for p in pads):
        raise InvalidAttributeError(
            f"{where}: attribute 'pads' {list(pads)}: expected every pad >= 0"
        )
    if pads is not None and attrs.get("auto_pad", "NOTSET") != "NOTSET":
        raise InvalidAttributeError(
            f"{where}: attribute 'pads' {list(pads)} beside auto_pad {attrs['auto_pad']!r}: "
            "expected one of the two (auto_pad computes the pads)"
        )
    # The number of spatial axes: kernel_shape's length, else that of the (N, C, ...)
    # input 0 where its rank is known, else that of the first attribute given.
    axes, source = None, ""
    if "kernel_shape" in attrs:
        axes, source = len(attrs["kernel_shape"]), "kernel_shape"
    x = node.inputs[0] if node.inputs else ""
    if "kernel_shape" in s.attributes and x in ranks:
        x_axes = ranks[x] - 2
        if x_axes < 1:
            raise InvalidAttributeError(
                f"{where}: input {x!r} has rank {ranks[x]}: expected (N, C, spatial...), "
                "rank 3 or more"
            )
        if axes is not None and axes != x_axes:
            raise InvalidAttributeError(
                f"{where}: attribute 'kernel_shape' {list(attrs['kernel_shape'])} has {axes} "
                f"values: expected {x_axes}, one per spatial axis of input {x!r} "
                f"(rank {ranks[x]})"
            )
        axes, source = x_axes, f"the spatial axes of input {x!r} (rank {ranks[x]})"
    for name in (*PER_SPATIAL_AXIS, "pads"):
        if name not in attrs:
            continue
        count = len(attrs[name]) // 2 if name == "pads" else len(attrs[name])
        if name == "pads" and len(attrs[name]) % 2:
            raise InvalidAttributeError(
                f"{where}: attribute 'pads' {list(attrs[name])}: expected an even number "
                "of values (begins, then ends)"
            )
        if axes is None:
            axes, source = count, name
        elif count != axes:
            expected = f"{2 * axes}" if name == "pads" else f"{axes}"
            raise InvalidAttributeError(
                f"{where}: attribute {name!r} {list(attrs[name])}: expected {expected} "
                f"values, as {source} gives {axes} spatial axes"
            )
