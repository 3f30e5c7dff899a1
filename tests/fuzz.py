"""A fuzzer: seeded mutations of real models, each run in its own process against onnxruntime.

    python -m tests.fuzz --cases 2000 --seed 0        # the summary table of outcomes
    python -m tests.fuzz --seed 0 --case 137 -v       # one case again, with what it did
    python -m tests.fuzz --cases 80 --edges           # the edge cases first (indices < 0)

Models: LeNet-5 (``exported/lenet5.onnx``) and the SqueezeNet that ships with onnx
(``light_squeezenet.onnx``, its constant weights replaced by seeded random ones, some
biases left as ConstantOfShape nodes, at 1x3x64x64). Mutations (one to three per
case): attribute values, kinds, absent and extra attributes; initializer shapes,
values, bytes and types; op types; wiring (inputs renamed, dropped, duplicated,
swapped, cycles, extra outputs); feed shapes and dtypes; inserted nodes
(BatchNormalization, broadcasts, Pad, Concat, Gather, Reshape, ConstantOfShape...).
Edge cases (``--edges``; indices -1, -2, ...): each base model unchanged but fed an
empty batch, and a 1x1 image, its input's dims declared symbolic.

Each case runs in a forked child under a memory cap (RLIMIT_AS) and a time limit,
the engine's size limit below the cap. Outcomes:

* typed: the engine raised one of ``runtime.errors`` (counted apart when onnxruntime
  ran the model, and when the typed error is the engine's catch-all conversion of a
  ValueError, TypeError or IndexError inside an op);
* match: both ran and every output agrees (shape, dtype, values to 1e-4 of scale);
* ort-refused: the engine ran the model, onnxruntime refused it (or died on it).

Failures: crash (the child died from a signal), hang (over the time limit),
untyped (any other exception), mismatch (a result that differs from onnxruntime's).

The parent imports the runtime and onnxruntime, then forks: a child costs a fork,
not an interpreter start. It runs no numba kernel itself (GNU OpenMP refuses a fork
after its first parallel region); a first child compiles or loads the kernels and
fills numba's cache, and each case loads them from it.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import select
import signal
import sys
import time
import traceback
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import runtime
import runtime.memory
from runtime import errors

ROOT = Path(__file__).resolve().parents[1]
LENET = ROOT / "exported" / "lenet5.onnx"
SQUEEZENET = Path(onnx.__file__).parent / "backend/test/data/light/light_squeezenet.onnx"
TYPED = tuple(v for v in vars(errors).values() if isinstance(v, type) and issubclass(v, Exception))
FAILURES = ("crash", "hang", "untyped", "mismatch")
OUTCOMES = ("typed", "typed-ort-ran", "match", "ort-refused", *FAILURES)
TENSOR_LIMIT = 1 << 30  # the engine's size limit in a child, well below its memory cap
F = TensorProto.FLOAT


# ----------------------------------------------------------------------- base models


@dataclass
class Base:
    name: str
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    shapes: dict[str, tuple]  # inferred shapes of the base model's tensors


def _shapes(model: onnx.ModelProto) -> dict[str, tuple]:
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    out = {}
    for vi in [*g.input, *g.value_info, *g.output]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else 2 for d in dims)
    for t in g.initializer:
        out[t.name] = tuple(t.dims)
    return out


def lenet() -> Base:
    model = onnx.load(LENET)
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    return Base("lenet5", model, {"input": x}, _shapes(model))


def squeezenet(size: int = 64) -> Base:
    """The light SqueezeNet with seeded He-normal weights, biases half initializers,
    half ConstantOfShape nodes of a random value, at 1x3xSIZExSIZE."""
    model = onnx.load(SQUEEZENET)
    g = model.graph
    rng = np.random.default_rng(2)
    shape_of = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes, inits = [], [t for t in g.initializer if not t.name.endswith("__SHAPE")]
    for n in g.node:
        if n.op_type != "ConstantOfShape":
            nodes.append(n)
            continue
        dims = tuple(int(d) for d in shape_of[n.input[0]])
        if len(dims) == 4:  # weights
            fan_in = int(np.prod(dims[1:]))
            w = rng.standard_normal(dims).astype(np.float32) * np.float32(np.sqrt(2 / fan_in))
            inits.append(numpy_helper.from_array(w, n.output[0]))
        elif rng.random() < 0.5:
            b = (rng.standard_normal(dims) * 0.05).astype(np.float32)
            inits.append(numpy_helper.from_array(b, n.output[0]))
        else:
            value = np.array([rng.standard_normal() * 0.05], np.float32)
            inits.append(numpy_helper.from_array(np.array(dims, np.int64), n.input[0]))
            nodes.append(
                helper.make_node(
                    "ConstantOfShape",
                    list(n.input),
                    list(n.output),
                    value=numpy_helper.from_array(value),
                )
            )
    del g.node[:]
    g.node.extend(nodes)
    del g.initializer[:]
    g.initializer.extend(inits)
    data = onnx.ValueInfoProto()
    data.CopyFrom(next(i for i in g.input if i.name == "data_0"))
    dims = data.type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = size
    del g.input[:]  # IR 3 listed every initializer as an input too
    g.input.append(data)
    model.ir_version = 8
    del g.output[0].type.tensor_type.shape.dim[:]  # (1, 1000, 1, 1): left to inference
    x = rng.standard_normal((1, 3, size, size)).astype(np.float32)
    return Base("squeezenet", model, {data.name: x}, _shapes(model))


# ------------------------------------------------------------------------ mutations


@dataclass
class Case:
    model: onnx.ModelProto
    feeds: dict[str, np.ndarray]
    shapes: dict[str, tuple]
    rng: np.random.Generator
    done: list[str] = field(default_factory=list)

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    def pick(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def tensors_before(self, index: int) -> list[str]:
        """Tensors a node at ``index`` may read: inputs, initializers, earlier outputs."""
        g = self.graph
        names = [i.name for i in g.input] + [t.name for t in g.initializer]
        for n in g.node[:index]:
            names.extend(o for o in n.output if o)
        return names


INT_VALUES = (0, 1, -1, 2, 3, 5, 1000, 1 << 31, -(1 << 31), 1 << 40)
FLOAT_VALUES = (0.0, -1.0, 0.5, 2.0, float("nan"), float("inf"), 1e30, 1e-30)
STRINGS = (
    "NOTSET",
    "SAME_UPPER",
    "SAME_LOWER",
    "VALID",
    "SAME",
    "constant",
    "reflect",
    "edge",
    "wrap",
    "",
    "bogus",
)
OP_TYPES = (
    "Relu",
    "Tanh",
    "Sigmoid",
    "LeakyRelu",
    "Add",
    "Mul",
    "Sub",
    "Div",
    "Sum",
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Gemm",
    "MatMul",
    "Softmax",
    "LogSoftmax",
    "Flatten",
    "Reshape",
    "Transpose",
    "Concat",
    "Identity",
    "Dropout",
    "BatchNormalization",
    "LRN",
    "Clip",
    "Pad",
    "Gather",
    "Squeeze",
    "Unsqueeze",
    "Shape",
    "Cast",
    "ConstantOfShape",
    "Split",
    "Slice",
    "Expand",
    "Tile",
    "Erf",
    "HardSwish",
)
DTYPES = (
    TensorProto.DOUBLE,
    TensorProto.FLOAT16,
    TensorProto.INT64,
    TensorProto.INT32,
    TensorProto.UINT8,
    TensorProto.BOOL,
    TensorProto.INT8,
)


def _random_attr_value(c: Case, name: str, kind: int):
    if kind == onnx.AttributeProto.INT:
        return helper.make_attribute(name, int(c.pick(INT_VALUES)))
    if kind == onnx.AttributeProto.INTS:
        n = int(c.rng.integers(0, 7))
        return helper.make_attribute(
            name, [int(c.pick(INT_VALUES[:6])) for _ in range(n)], attr_type=kind
        )
    if kind == onnx.AttributeProto.FLOAT:
        return helper.make_attribute(name, float(c.pick(FLOAT_VALUES)))
    if kind == onnx.AttributeProto.FLOATS:
        return helper.make_attribute(name, [float(c.pick(FLOAT_VALUES))], attr_type=kind)
    if kind == onnx.AttributeProto.STRING:
        return helper.make_attribute(name, c.pick(STRINGS))
    if kind == onnx.AttributeProto.TENSOR:
        dims = tuple(int(c.rng.integers(0, 3)) for _ in range(int(c.rng.integers(0, 3))))
        dtype = c.pick((np.float32, np.int64, np.float64))
        value = c.rng.standard_normal(dims).astype(dtype)
        return helper.make_attribute(name, numpy_helper.from_array(value))
    return helper.make_attribute(name, 1)


def _nodes_with_attrs(c: Case) -> list[onnx.NodeProto]:
    return [n for n in c.graph.node if n.attribute]


def m_attr_value(c: Case) -> None:
    nodes = _nodes_with_attrs(c)
    if not nodes:
        return
    node = c.pick(nodes)
    i = int(c.rng.integers(len(node.attribute)))
    a = node.attribute[i]
    if a.type == onnx.AttributeProto.INTS and len(a.ints) and c.rng.random() < 0.7:
        values = list(a.ints)
        how = c.pick(("set", "drop", "append"))
        if how == "set":
            values[int(c.rng.integers(len(values)))] = int(c.pick(INT_VALUES))
        elif how == "drop":
            values.pop()
        else:
            values.append(int(c.pick(INT_VALUES[:6])))
        new = helper.make_attribute(a.name, values, attr_type=onnx.AttributeProto.INTS)
    else:
        new = _random_attr_value(c, a.name, a.type)
    node.attribute[i].CopyFrom(new)
    c.done.append(f"attr {node.name or node.op_type}.{a.name} = {helper.get_attribute_value(new)}")


def m_attr_kind(c: Case) -> None:
    nodes = _nodes_with_attrs(c)
    if not nodes:
        return
    node = c.pick(nodes)
    i = int(c.rng.integers(len(node.attribute)))
    a = node.attribute[i]
    kinds = [k for k in (1, 2, 3, 4, 6, 7) if k != a.type]
    kind = int(c.pick(kinds))
    value = helper.get_attribute_value(a)
    first = value[0] if isinstance(value, (list, tuple)) and value else value
    try:
        if kind == onnx.AttributeProto.INT:
            new = helper.make_attribute(a.name, int(float(first)) if _numeric(first) else 2)
        elif kind == onnx.AttributeProto.INTS:
            new = helper.make_attribute(a.name, [int(float(first)) if _numeric(first) else 2] * 2)
        elif kind == onnx.AttributeProto.FLOAT:
            new = helper.make_attribute(a.name, float(first) + 0.5 if _numeric(first) else 1.5)
        elif kind == onnx.AttributeProto.FLOATS:
            new = helper.make_attribute(a.name, [1.5, 2.0])
        elif kind == onnx.AttributeProto.STRING:
            new = helper.make_attribute(a.name, str(first))
        else:
            new = helper.make_attribute(a.name, numpy_helper.from_array(np.array([2], np.int64)))
    except (TypeError, ValueError, OverflowError):
        new = helper.make_attribute(a.name, 2)
    node.attribute[i].CopyFrom(new)
    c.done.append(f"attr kind {node.name or node.op_type}.{a.name}: {a.type} -> {new.type}")


def _numeric(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v)


def m_attr_drop(c: Case) -> None:
    nodes = _nodes_with_attrs(c)
    if not nodes:
        return
    node = c.pick(nodes)
    i = int(c.rng.integers(len(node.attribute)))
    c.done.append(f"attr drop {node.name or node.op_type}.{node.attribute[i].name}")
    del node.attribute[i]


def m_attr_add(c: Case) -> None:
    node = c.pick(list(c.graph.node))
    opset = c.model.opset_import[0].version
    try:
        schema = onnx.defs.get_schema(node.op_type, max_inclusive_version=opset, domain="")
        names = [n for n in schema.attributes if n not in {a.name for a in node.attribute}]
    except onnx.defs.SchemaError:
        names = []
    if names and c.rng.random() < 0.85:
        name = c.pick(names)
        kind = int(schema.attributes[name].type)
        if c.rng.random() < 0.2:
            kind = int(c.pick((2, 7, 1, 3)))
    else:
        name, kind = "bogus", 2
    node.attribute.append(_random_attr_value(c, name, kind))
    c.done.append(f"attr add {node.name or node.op_type}.{name} = {node.attribute[-1]}"[:160])


def _initializer(c: Case) -> onnx.TensorProto | None:
    return c.pick(list(c.graph.initializer)) if c.graph.initializer else None


def _like(c: Case, dims: tuple, dtype: np.dtype, original: np.ndarray) -> np.ndarray:
    if np.issubdtype(dtype, np.integer):
        return c.rng.integers(-2, 8, dims).astype(dtype)
    std = float(np.std(original)) if original.size else 1.0
    return (c.rng.standard_normal(dims) * (std or 1.0)).astype(dtype)


def m_init_shape(c: Case) -> None:
    t = _initializer(c)
    if t is None:
        return
    a = numpy_helper.to_array(t)
    dims = list(a.shape)
    how = c.pick(("grow", "shrink", "one", "zero", "drop", "add", "swap"))
    if how in ("grow", "shrink", "one", "zero") and dims:
        k = int(c.rng.integers(len(dims)))
        dims[k] = {"grow": dims[k] + 1, "shrink": max(dims[k] - 1, 0), "one": 1, "zero": 0}[how]
    elif how == "drop" and dims:
        dims.pop(int(c.rng.integers(len(dims))))
    elif how == "swap" and len(dims) > 1:
        dims = dims[::-1]
    else:
        dims.insert(int(c.rng.integers(len(dims) + 1)), int(c.pick((1, 2))))
    if int(np.prod(dims)) > 4_000_000:
        return
    new = _like(c, tuple(dims), a.dtype, a)
    t.CopyFrom(numpy_helper.from_array(new, t.name))
    c.done.append(f"init shape {t.name}: {list(a.shape)} -> {dims}")


def m_init_values(c: Case) -> None:
    ints = [t for t in c.graph.initializer if t.data_type in (TensorProto.INT64, TensorProto.INT32)]
    t = c.pick(ints) if ints and c.rng.random() < 0.7 else _initializer(c)
    if t is None:
        return
    a = numpy_helper.to_array(t).copy()
    if a.size == 0:
        return
    k = int(c.rng.integers(a.size))
    if np.issubdtype(a.dtype, np.integer):
        a.reshape(-1)[k] = int(c.pick((-2, -1, 0, 1, 2, 7, 400, 1 << 20, 1 << 31)))
    else:
        a.reshape(-1)[k] = c.pick(FLOAT_VALUES)
    t.CopyFrom(numpy_helper.from_array(a, t.name))
    c.done.append(f"init value {t.name}[{k}] = {a.reshape(-1)[k]}")


def m_init_bytes(c: Case) -> None:
    t = _initializer(c)
    if t is None:
        return
    a = numpy_helper.to_array(t)
    how = c.pick(("flip", "truncate", "extend", "retype", "convert"))
    raw = bytearray(a.tobytes())
    if how == "flip" and raw:
        for _ in range(int(c.rng.integers(1, 5))):
            raw[int(c.rng.integers(len(raw)))] ^= int(c.rng.integers(1, 256))
        t.raw_data = bytes(raw)
    elif how == "truncate":
        t.raw_data = bytes(raw[: max(len(raw) - int(c.rng.integers(1, 9)), 0)])
    elif how == "extend":
        t.raw_data = bytes(raw) + bytes(int(c.rng.integers(1, 9)))
    elif how == "retype":
        t.raw_data = bytes(raw)
        t.data_type = int(c.pick(DTYPES))
    else:
        dtype = helper.tensor_dtype_to_np_dtype(int(c.pick(DTYPES)))
        t.CopyFrom(numpy_helper.from_array(a.astype(dtype), t.name))
    for f in ("float_data", "int64_data", "int32_data", "double_data"):
        if how != "convert":
            t.ClearField(f)
    c.done.append(f"init bytes {t.name}: {how}")


def m_op_type(c: Case) -> None:
    node = c.pick(list(c.graph.node))
    old = node.op_type
    node.op_type = c.pick(OP_TYPES)
    if c.rng.random() < 0.5:
        del node.attribute[:]
    c.done.append(f"op {node.name or old}: {old} -> {node.op_type}")


def m_wiring(c: Case) -> None:
    g = c.graph
    index = int(c.rng.integers(len(g.node)))
    node = g.node[index]
    how = c.pick(("rename", "drop", "dup", "other", "swap", "cycle", "empty", "output"))
    inputs = list(node.input)
    if how == "rename" and inputs:
        inputs[int(c.rng.integers(len(inputs)))] = "ghost"
    elif how == "drop" and inputs:
        inputs.pop(int(c.rng.integers(len(inputs))))
    elif how == "dup" and inputs:
        inputs.append(c.pick(inputs))
    elif how == "other" and inputs:
        inputs[int(c.rng.integers(len(inputs)))] = c.pick(c.tensors_before(index))
    elif how == "swap" and len(inputs) > 1:
        i, j = c.rng.choice(len(inputs), 2, replace=False)
        inputs[i], inputs[j] = inputs[j], inputs[i]
    elif how == "cycle" and inputs and index + 1 < len(g.node):
        later = g.node[int(c.rng.integers(index + 1, len(g.node)))]
        inputs[int(c.rng.integers(len(inputs)))] = later.output[0]
    elif how == "empty" and inputs:
        inputs[int(c.rng.integers(len(inputs)))] = ""
    elif how == "output":
        name = c.pick([o for o in node.output if o] or ["ghost"])
        g.output.append(onnx.ValueInfoProto(name=name))
    del node.input[:]
    node.input.extend(inputs)
    c.done.append(f"wire {how} {node.name or node.op_type}: {inputs}")


def m_feed_shape(c: Case) -> None:
    name, x = next(iter(c.feeds.items()))
    dims = list(x.shape)
    how = c.pick(("batch", "spatial", "rank", "tiny"))
    if how == "batch":
        dims[0] = int(c.pick((0, 1, 3, 5)))
    elif how == "spatial":
        k = int(c.rng.integers(2, len(dims)))
        dims[k] = int(c.pick((1, 2, dims[k] - 1, dims[k] + 1, dims[k] * 2, dims[k] // 2)))
    elif how == "rank":
        if c.rng.random() < 0.5:
            dims.pop(int(c.rng.integers(len(dims))))
        else:
            dims.insert(int(c.rng.integers(len(dims) + 1)), 1)
    else:
        dims = [1, dims[1]] + [int(c.pick((1, 3, 5)))] * (len(dims) - 2)
    c.feeds[name] = c.rng.standard_normal(dims).astype(x.dtype)
    vi = next(i for i in c.graph.input if i.name == name)
    if c.rng.random() < 0.85:  # declare it, else the feed is refused against the declaration
        shape = vi.type.tensor_type.shape
        del shape.dim[:]
        for k, d in enumerate(dims):
            entry = shape.dim.add()
            if k == 0 or c.rng.random() < 0.5:
                entry.dim_param = f"d{k}"
            else:
                entry.dim_value = d
    c.done.append(f"feed shape {name}: {list(x.shape)} -> {dims}")


def m_feed_dtype(c: Case) -> None:
    name, x = next(iter(c.feeds.items()))
    kind = int(c.pick(DTYPES))
    dtype = helper.tensor_dtype_to_np_dtype(kind)
    c.feeds[name] = (x * 4).astype(dtype) if dtype != np.bool_ else x > 0
    if c.rng.random() < 0.9:
        next(i for i in c.graph.input if i.name == name).type.tensor_type.elem_type = kind
    c.done.append(f"feed dtype {name}: {x.dtype} -> {np.dtype(dtype)}")


def _const(c: Case, value: np.ndarray, stem: str) -> str:
    name = f"fz_{stem}_{len(c.graph.initializer)}"
    c.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def m_insert(c: Case) -> None:
    """A node after a tensor t, its consumers then read the new node's output."""
    g = c.graph
    index = int(c.rng.integers(len(g.node)))
    t = c.pick([o for o in g.node[index].output if o])
    shape = c.shapes.get(t, (1, 4, 2, 2))
    rank = len(shape)
    ch = shape[1] if rank > 1 else 1
    op = c.pick(
        (
            "BatchNormalization",
            "Add",
            "Mul",
            "Pad",
            "Concat",
            "Gather",
            "Reshape",
            "Transpose",
            "Slice",
            "Softmax",
            "MaxPool",
            "AveragePool",
            "Flatten",
            "Cast",
            "Unsqueeze",
            "Clip",
            "ConstantOfShape",
            "LeakyRelu",
            "MatMul",
            "Split",
            "Expand",
            "Tile",
            "LRN",
        )
    )
    out = f"fz_{op.lower()}_{index}"
    opset = c.model.opset_import[0].version
    attrs: dict = {}
    inputs = [t]
    ints = lambda *v: np.array(v, np.int64)  # noqa: E731
    if op == "BatchNormalization":
        n = ch if c.rng.random() < 0.5 else int(c.pick((1, ch + 1, 7, 1000)))
        inputs += [
            _const(c, c.rng.random(n).astype(np.float32) + 0.5, "bn"),
            _const(c, c.rng.standard_normal(n).astype(np.float32), "bn"),
            _const(c, c.rng.standard_normal(n).astype(np.float32), "bn"),
            _const(c, c.rng.random(n).astype(np.float32) + 0.5, "bn"),
        ]
    elif op in ("Add", "Mul", "MatMul"):
        bshape = c.pick(
            [
                (ch,),
                (1, ch, 1, 1),
                (ch, 1, 1),
                (7, 1, 1, 1, 1),
                (1000, 1, 1, 1, 1),
                (1 << 12, 1 << 12, 1, 1, 1),
                shape[-1:],
                (*shape[-1:], 3),
            ]
        )
        if int(np.prod(bshape)) > 1 << 24:
            inputs.append(_const(c, ints(*bshape), "shape"))
            g.node.insert(
                index + 1,
                helper.make_node(
                    "ConstantOfShape",
                    [inputs[-1]],
                    [f"{out}_b"],
                    value=numpy_helper.from_array(np.ones(1, np.float32)),
                ),
            )
            index += 1
            inputs[-1] = f"{out}_b"
        else:
            inputs.append(_const(c, c.rng.standard_normal(bshape).astype(np.float32), "b"))
    elif op == "Pad":
        pads = [int(c.pick((0, 1, 2, -1, 1 << 20))) for _ in range(2 * rank)]
        if opset >= 11:
            inputs.append(_const(c, ints(*pads), "pads"))
        else:
            attrs["pads"] = pads
        attrs["mode"] = c.pick(("constant", "reflect", "edge", "wrap"))
    elif op == "Concat":
        inputs.append(c.pick([t, *c.tensors_before(index + 1)]))
        attrs["axis"] = int(c.rng.integers(-rank - 1, rank + 1))
    elif op == "Gather":
        inputs.append(_const(c, c.rng.integers(-3, 4, int(c.rng.integers(0, 4))), "idx"))
        attrs["axis"] = int(c.rng.integers(-rank, rank + 1))
    elif op == "Reshape":
        dims = [int(c.pick((-1, 0, 1, 2, ch, 4 * ch))) for _ in range(int(c.rng.integers(1, 5)))]
        inputs.append(_const(c, ints(*dims), "shape"))
    elif op == "Transpose":
        attrs["perm"] = [int(v) for v in c.rng.permutation(rank + int(c.rng.random() < 0.2))]
    elif op == "Slice":
        k = int(c.rng.integers(1, rank + 1))
        given = {
            "starts": c.rng.integers(-4, 4, k),
            "ends": c.rng.integers(-4, 8, k),
            "axes": c.rng.permutation(rank)[:k] - int(c.rng.random() < 0.3),
            "steps": c.pick((1, 2, -1)) * np.ones(k, np.int64),
        }
        if opset >= 10:
            inputs += [_const(c, v, name) for name, v in given.items()]
        else:
            attrs.update({name: [int(v) for v in given[name]] for name in given if name != "steps"})
    elif op in ("Softmax", "Flatten"):
        attrs["axis"] = int(c.rng.integers(-rank - 1, rank + 1))
    elif op in ("MaxPool", "AveragePool"):
        k = max(rank - 2, 1)
        attrs["kernel_shape"] = [int(c.pick((1, 2, 3))) for _ in range(k)]
        attrs["strides"] = [int(c.pick((1, 2, 3))) for _ in range(k)]
        attrs["pads"] = [int(c.pick((0, 1))) for _ in range(2 * k)]
        if c.rng.random() < 0.4:
            attrs["ceil_mode"] = 1
        if c.rng.random() < 0.3:
            attrs["dilations"] = [int(c.pick((1, 2))) for _ in range(k)]
    elif op == "Cast":
        attrs["to"] = int(c.pick((*DTYPES, TensorProto.FLOAT)))
    elif op == "Unsqueeze":
        axes = ints(int(c.rng.integers(-rank - 1, rank + 2)))
        if opset >= 13:
            inputs.append(_const(c, axes, "axes"))
        else:
            attrs["axes"] = [int(v) for v in axes]
    elif op == "Clip":
        if opset >= 11:
            inputs += [_const(c, np.float32(-0.5), "lo"), _const(c, np.float32(0.5), "hi")]
        else:
            attrs.update(min=-0.5, max=0.5)
    elif op == "ConstantOfShape":
        dims = c.pick(((2,), (1 << 20, 1 << 20, 1 << 10), (3, 0), (1 << 16, 1 << 16)))
        inputs = [_const(c, ints(*dims), "shape")]
        out_cos = f"{out}_c"
        g.node.insert(index + 1, helper.make_node("ConstantOfShape", inputs, [out_cos]))
        index += 1
        inputs, op = [t, out_cos], "Add"
    elif op == "LeakyRelu":
        attrs["alpha"] = float(c.pick(FLOAT_VALUES))
    elif op == "Split":
        attrs["axis"] = int(c.rng.integers(-rank, rank + 1))
        parts = int(c.pick((1, 2, 3)))
        if opset >= 18:
            attrs["num_outputs"] = parts
    elif op in ("Expand", "Tile"):
        inputs.append(_const(c, ints(*c.pick(((1 << 20, 1 << 20), (2,) * rank))), "reps"))
    elif op == "LRN":
        attrs["size"] = int(c.pick((1, 3, 5, 0)))
    for n in g.node[index + 1 :]:
        for k, name in enumerate(n.input):
            if name == t:
                n.input[k] = out
    for o in g.output:
        if o.name == t:
            o.name = out
    outputs = [out] if op != "Split" else [out] + [f"{out}_{k}" for k in range(1, parts)]
    g.node.insert(index + 1, helper.make_node(op, inputs, outputs, **attrs))
    c.done.append(f"insert {op} after {t} {attrs}"[:160])


MUTATIONS = (  # (weight, mutation)
    (3, m_attr_value),
    (2, m_attr_kind),
    (1, m_attr_drop),
    (2, m_attr_add),
    (2, m_init_shape),
    (2, m_init_values),
    (2, m_init_bytes),
    (2, m_op_type),
    (3, m_wiring),
    (2, m_feed_shape),
    (1, m_feed_dtype),
    (5, m_insert),
)


EDGES = ("empty batch", "1x1 image")


def edge_indices(bases: list[Base]) -> list[int]:
    return [-1 - k for k in range(len(bases) * len(EDGES))]


def _edge(c: Case, which: str) -> None:
    """The first input fed an empty batch or a 1x1 image, its dims declared symbolic."""
    name, x = next(iter(c.feeds.items()))
    dims = [0, *x.shape[1:]] if which == "empty batch" else [1, x.shape[1]] + [1] * (x.ndim - 2)
    c.feeds[name] = c.rng.standard_normal(dims).astype(x.dtype)
    shape = next(i for i in c.graph.input if i.name == name).type.tensor_type.shape
    for k, entry in enumerate(shape.dim):
        if k == 0 or k >= 2:
            entry.dim_param = f"d{k}"
    c.done.append(f"edge: {which}, feed {name} {dims}")


def make_case(bases: list[Base], seed: int, index: int) -> tuple[bytes, dict, str, list[str]]:
    """The mutated model of case ``index`` of run ``seed``: (bytes, feeds, base, mutations);
    a negative ``index`` is an edge case (:data:`EDGES`), the base unmutated."""
    rng = np.random.default_rng([seed, abs(index)])
    edge = -1 - index
    base = bases[index % len(bases)] if index >= 0 else bases[(edge // len(EDGES)) % len(bases)]
    model = onnx.ModelProto()
    model.CopyFrom(base.model)
    c = Case(model, {k: v.copy() for k, v in base.feeds.items()}, base.shapes, rng)
    if index < 0:
        _edge(c, EDGES[edge % len(EDGES)])
        return model.SerializeToString(), c.feeds, base.name, c.done
    weights = np.array([w for w, _ in MUTATIONS], float)
    for _ in range(int(rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]))):
        mutate = MUTATIONS[int(rng.choice(len(MUTATIONS), p=weights / weights.sum()))][1]
        try:
            mutate(c)
        except Exception as exc:  # a mutation that cannot read what an earlier one made
            c.done.append(f"{mutate.__name__} skipped: {type(exc).__name__}")
    return model.SerializeToString(), c.feeds, base.name, c.done


# ------------------------------------------------------------------ running a case


def _tolerance(dtype: np.dtype) -> float:
    return max(1e-4, 4 * float(np.finfo(dtype).eps)) if dtype.kind == "f" else 0.0


def compare(ours: list[np.ndarray], theirs: list[np.ndarray]) -> str:
    """'' when every output agrees (shape, then dtype, then values), else what differs."""
    if len(ours) != len(theirs):
        return f"{len(ours)} outputs, onnxruntime gave {len(theirs)}"
    for k, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        b = np.asarray(b)
        if a.shape != b.shape:
            return f"output {k}: shape {a.shape}, onnxruntime {b.shape}"
        if a.dtype != b.dtype:
            return f"output {k}: dtype {a.dtype}, onnxruntime {b.dtype}"
        tol = _tolerance(a.dtype)
        finite = np.abs(b[np.isfinite(b)]) if b.dtype.kind == "f" else np.abs(b)
        scale = max(1.0, float(finite.max())) if finite.size else 1.0
        try:
            np.testing.assert_allclose(a, b, rtol=tol, atol=tol * scale)
        except AssertionError as exc:
            return f"output {k}: {str(exc).strip().splitlines()[2:5]}"
    return ""


def _ours(model: bytes, feeds: dict) -> tuple[dict, list | None]:
    try:
        outs = runtime.InferenceSession(model).run(None, feeds)
        return {"kind": "ran"}, outs
    except TYPED as exc:
        ctx = exc.__context__
        converted = exc.__suppress_context__ and ctx is not None and not isinstance(ctx, TYPED)
        return {
            "kind": "typed",
            "error": type(exc).__name__,
            "message": str(exc)[:300],
            "converted": type(ctx).__name__ if converted else "",
        }, None
    except BaseException as exc:
        return {
            "kind": "untyped",
            "error": type(exc).__name__,
            "message": str(exc)[:300],
            "trace": "".join(traceback.format_exc().splitlines(keepends=True)[-8:]),
        }, None


def _theirs(model: bytes, feeds: dict) -> tuple[str, list | None]:
    import onnxruntime as ort

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.log_severity_level = 4
        sess = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return "", sess.run(None, feeds)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc)[:200]}", None


def _child(write_fd: int, bases: list[Base], seed: int, index: int, mem_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
    os.environ[runtime.memory.ENV_LIMIT] = str(min(TENSOR_LIMIT, mem_bytes // 4))
    warnings.simplefilter("ignore")  # NaN and overflow in mutated weights, by the thousand

    def send(message: dict) -> None:
        data = pickle.dumps(message)
        os.write(write_fd, len(data).to_bytes(8, "little") + data)

    model, feeds, base, done = make_case(bases, seed, index)
    send({"base": base, "mutations": done})
    ours, outs = _ours(model, feeds)
    send({"ours": ours})
    refused, theirs = _theirs(model, feeds)
    diff = compare(outs, theirs) if outs is not None and theirs is not None else ""
    send({"ort": refused, "diff": diff})


def _read(fd: int, deadline: float) -> tuple[list[dict], bool]:
    """Messages from a child until it closes the pipe; (messages, timed out)."""
    buf, messages = b"", []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return messages, True
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return messages, False
        buf += chunk
        while len(buf) >= 8 and len(buf) >= 8 + int.from_bytes(buf[:8], "little"):
            size = int.from_bytes(buf[:8], "little")
            messages.append(pickle.loads(buf[8 : 8 + size]))
            buf = buf[8 + size :]


def run_case(bases: list[Base], seed: int, index: int, timeout: float, mem_bytes: int) -> dict:
    read_fd, write_fd = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(read_fd)
        code = 0
        try:
            _child(write_fd, bases, seed, index, mem_bytes)
        except BaseException:
            traceback.print_exc()
            code = 3
        finally:
            os._exit(code)
    os.close(write_fd)
    messages, timed_out = _read(read_fd, start + timeout)
    os.close(read_fd)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    info: dict = {"case": index, "seconds": round(time.monotonic() - start, 3)}
    for m in messages:
        info.update(m)
    ours = info.get("ours")
    if ours is None:
        if timed_out:
            info["outcome"] = "hang"
        elif os.WIFSIGNALED(status):
            info["outcome"], info["signal"] = "crash", os.WTERMSIG(status)
        else:
            info["outcome"] = "crash"  # the child failed before the engine answered
            info["exit"] = os.WEXITSTATUS(status)
        return info
    ort_ran = "ort" in info and not info["ort"]
    if ours["kind"] == "untyped":
        info["outcome"] = "untyped"
    elif ours["kind"] == "typed":
        info["outcome"] = "typed-ort-ran" if ort_ran else "typed"
    elif not ort_ran:
        info["outcome"] = "ort-refused"  # refused, died or hung on a model the engine ran
        if "ort" not in info:
            info["ort"] = "died or hung" if not timed_out else "hung"
    else:
        info["outcome"] = "mismatch" if info.get("diff") else "match"
    return info


def _dispatchers() -> dict[str, object]:
    """Every numba kernel of the runtime, by module and name."""
    from numba.core.registry import CPUDispatcher

    found = {}
    for module in list(sys.modules.values()):
        if getattr(module, "__name__", "").startswith("runtime"):
            for name, obj in list(vars(module).items()):
                if isinstance(obj, CPUDispatcher):
                    found.setdefault(f"{module.__name__}.{name}", obj)
    return found


def warm_up(bases: list[Base], preload: bool) -> None:
    """Compile or load every kernel the base models use, in a child (numba writes its
    cache), and check that each base model matches onnxruntime before any mutation.

    ``preload``: then load those kernels into this process too, without running them,
    so that a case's child inherits them instead of loading them again (3 s of
    SqueezeNet's 3.5). Only a threading layer that survives a fork allows it:
    loading a parallel kernel starts the layer, and GNU OpenMP refuses a fork after that.
    """
    import runtime.engine  # noqa: F401  (every kernel module)

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            diffs = []
            for b in bases:
                model = b.model.SerializeToString()
                ours, outs = _ours(model, b.feeds)
                _, theirs = _theirs(model, b.feeds)
                diff = compare(outs, theirs) if outs and theirs else str(ours)
                if diff:
                    diffs.append(f"{b.name}: {diff}")
            signatures: dict[str, list] = {}
            for key, dispatcher in _dispatchers().items():
                for sig in dispatcher.signatures:
                    try:
                        pickle.dumps(sig)
                    except (pickle.PicklingError, TypeError, AttributeError):
                        continue  # a type numba cannot pickle: the child loads it itself
                    signatures.setdefault(key, []).append(sig)
            data = pickle.dumps((diffs, signatures))
            os.write(write_fd, len(data).to_bytes(8, "little") + data)
        finally:
            os._exit(0)
    os.close(write_fd)
    messages, _ = _read(read_fd, time.monotonic() + 1200)
    os.close(read_fd)
    os.waitpid(pid, 0)
    if not messages or messages[0][0]:
        raise SystemExit(f"the base models do not run or do not match onnxruntime: {messages}")
    if preload:
        dispatchers = _dispatchers()
        for key, sigs in messages[0][1].items():
            for sig in sigs:
                dispatchers[key].compile(sig)


def summarize(results: list[dict], seconds: float) -> dict:
    counts = Counter(r["outcome"] for r in results)
    converted = Counter(
        r["ours"]["converted"] for r in results if r.get("ours", {}).get("converted")
    )
    errors_seen = Counter(
        r["ours"]["error"] for r in results if r.get("ours", {}).get("kind") == "typed"
    )
    return {
        "cases": len(results),
        "seconds": round(seconds, 1),
        "outcomes": {k: counts.get(k, 0) for k in OUTCOMES},
        "failures": sum(counts.get(k, 0) for k in FAILURES),
        "typed_errors": dict(errors_seen.most_common()),
        "converted_in_ops": dict(converted.most_common()),
        "failed_cases": [r for r in results if r["outcome"] in FAILURES],
        "ort_refused_cases": [_brief(r) for r in results if r["outcome"] == "ort-refused"],
        "typed_ort_ran_cases": [_brief(r) for r in results if r["outcome"] == "typed-ort-ran"],
    }


def _brief(r: dict) -> dict:
    ours = r.get("ours", {})
    return {
        "case": r["case"],
        "mutations": r.get("mutations"),
        "ours": f"{ours.get('error', 'ran')}: {ours.get('message', '')}"[:240],
        "ort": str(r.get("ort"))[:240],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=100, help="number of cases")
    parser.add_argument("--seed", type=int, default=0, help="run seed (cases are seed, index)")
    parser.add_argument("--first", type=int, default=0, help="index of the first case")
    parser.add_argument("--case", type=int, default=None, help="run this one case only")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per case")
    parser.add_argument("--mem-gib", type=float, default=4.0, help="memory cap per case (GiB)")
    parser.add_argument("--json", type=Path, default=None, help="write the summary here")
    parser.add_argument(
        "--threading-layer",
        default="workqueue",
        choices=("workqueue", "omp"),
        help="numba's threading layer in the cases: workqueue survives a fork, so the parent "
        "loads the kernels once; omp (the runtime's default) makes every case load them",
    )
    parser.add_argument(
        "--edges", action="store_true", help="run the edge cases first (empty batch, 1x1 image)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case")
    args = parser.parse_args(argv)
    mem = int(args.mem_gib * 2**30)
    import numba

    numba.config.THREADING_LAYER = args.threading_layer  # read when the layer starts
    bases = [lenet(), squeezenet()]
    indices = [args.case] if args.case is not None else range(args.first, args.first + args.cases)
    if args.edges and args.case is None:
        indices = [*edge_indices(bases), *indices]
    start = time.monotonic()
    warm_up(bases, preload=args.threading_layer != "omp")
    results = []
    for i in indices:
        r = run_case(bases, args.seed, i, args.timeout, mem)
        results.append(r)
        if args.verbose or r["outcome"] in FAILURES:
            print(json.dumps(r, default=str)[:1500], flush=True)
    summary = summarize(results, time.monotonic() - start)
    summary["threading_layer"] = args.threading_layer
    print(
        f"\n{summary['cases']} cases (seed {args.seed}, numba threading layer "
        f"{args.threading_layer}) in {summary['seconds']} s"
    )
    print(f"{'outcome':<16}{'cases':>8}")
    for k, v in summary["outcomes"].items():
        print(f"{k:<16}{v:>8}" + ("   (failure)" if k in FAILURES else ""))
    print(f"typed errors: {summary['typed_errors']}")
    print(
        f"of them an op's ValueError/TypeError/IndexError made ShapeError by the engine: "
        f"{summary['converted_in_ops']}"
    )
    for key in ("ort_refused_cases", "typed_ort_ran_cases"):
        for r in summary[key]:
            print(f"{key[:-6]}: {json.dumps(r)[:600]}")
    if args.json:
        args.json.write_text(json.dumps(summary, default=str, indent=1))
    return 1 if summary["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
