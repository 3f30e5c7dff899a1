"""The one input-shape resolver of every command that feeds a model (summary,
describe, compare, bench, bisect, profile).

A model's input dimension is one of three kinds:

* fixed: a positive ``dim_value``;
* named symbolic: a ``dim_param`` such as ``N``, ``height`` (the same name on two
  axes is one size);
* unnamed symbolic: no value, an empty or ``?`` ``dim_param``, or a negative
  ``dim_value`` (Paddle2ONNX writes ``[-1, 3, '?', '?']``).

Sizes come from ``--dim NAME=SIZE`` (named dimensions; an unknown name is refused,
listing the model's names) or ``--shape`` (one input's whole shape; the only way to
size an unnamed axis other than the first). A symbolic first axis is the batch: the
command's batch size unless ``--dim`` or ``--shape`` fixes it. Any other dimension
still without a size is an error naming it and the option that gives it, unless the
command assumes a size (``cnn summary``), which :attr:`Resolved.notes` then says.

    resolved = resolve(model_inputs(path), parse_dims(["H=48", "W=192"]), batch=1)
    resolved.concrete()   # {'x': (1, 3, 48, 192)}
    resolved.line()       # "x [1, 3, 48, 192] (axis 0 the batch; H=48, W=192 from --dim)"
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Dim = int | str | None


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: np.dtype
    dims: tuple  # int (fixed), str (symbolic, named) or None (symbolic, unnamed)


@dataclass(frozen=True)
class ModelInfo:
    inputs: tuple[InputSpec, ...]
    metadata: dict[str, str]


def normalize_dim(value: int | str | None) -> Dim:
    """A dimension as the resolver reads it: a fixed size, a name, or None (unnamed:
    a negative size, ``?`` or an empty name)."""
    if isinstance(value, int | np.integer):
        return int(value) if value >= 0 else None
    if isinstance(value, str) and value.strip() not in ("", "?", "-1"):
        return value
    return None


def _dims_of(value_info) -> tuple:
    return tuple(
        normalize_dim(d.dim_value if d.HasField("dim_value") else d.dim_param)
        for d in value_info.type.tensor_type.shape.dim
    )


def proto_inputs(model) -> tuple[InputSpec, ...]:
    """The real inputs (initializers left out) of an ``onnx.ModelProto``."""
    from onnx import helper

    inits = {i.name for i in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        elem = vi.type.tensor_type.elem_type
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(elem)) if elem else np.dtype(np.float32)
        inputs.append(InputSpec(vi.name, dtype, _dims_of(vi)))
    return tuple(inputs)


def model_info(path: str | os.PathLike | bytes) -> ModelInfo:
    """The graph's real inputs and metadata, from the file alone (no session)."""
    import onnx

    from runtime.errors import ModelLoadError, ModelNotFoundError

    if isinstance(path, bytes):
        model = onnx.load_from_string(path)
    else:
        if not Path(path).is_file():
            raise ModelNotFoundError(f"model file {path} not found")
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and friends
            raise ModelLoadError(f"{path}: not an ONNX model ({type(exc).__name__})") from None
    return ModelInfo(proto_inputs(model), {p.key: p.value for p in model.metadata_props})


def model_inputs(path: str | os.PathLike | bytes) -> tuple[InputSpec, ...]:
    return model_info(path).inputs


def parse_dims(items: Sequence[str] | None) -> dict[str, int]:
    """``--dim NAME=SIZE`` options as a mapping (ValueError on a malformed one)."""
    given: dict[str, int] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        if not name.strip() or not value.strip().isdigit():
            raise ValueError(f"--dim {item!r}: expected NAME=SIZE, for example N=8")
        if int(value) < 1:
            raise ValueError(f"--dim {item!r}: expected a size of 1 or more")
        given[name.strip()] = int(value)
    return given


def symbolic_names(inputs: Sequence[InputSpec]) -> list[str]:
    """The model's named symbolic dimensions, in order of appearance."""
    return list(dict.fromkeys(d for s in inputs for d in s.dims if isinstance(d, str)))


def show(dims: Sequence) -> str:
    """``[batch, 3, 48, 192]``-style: an open first axis is the batch, another ``?``."""
    return "[" + ", ".join(str(d) if d is not None else "?" for d in dims) + "]"


def _dim_name(spec: InputSpec, axis: int) -> str:
    d = spec.dims[axis]
    return f"{d} (axis {axis})" if isinstance(d, str) else f"axis {axis} (unnamed)"


@dataclass(frozen=True)
class Resolved:
    """Each input's dims: ints where known, None for a first axis left to the batch."""

    inputs: tuple[InputSpec, ...]
    shapes: dict[str, list]
    notes: list[str] = field(default_factory=list)  # where the sizes came from

    def __getitem__(self, name: str) -> list:
        return self.shapes[name]

    def concrete(self, batch: int | None = None) -> dict[str, tuple[int, ...]]:
        """Every shape with an open batch set to ``batch`` (ValueError when one is open
        and ``batch`` is None)."""
        out = {}
        for name, dims in self.shapes.items():
            if any(d is None for d in dims):
                if batch is None:
                    raise ValueError(f"input {name!r} {show(dims)}: the batch has no size")
                dims = [batch if d is None else d for d in dims]
            out[name] = tuple(int(d) for d in dims)
        return out

    def text(self) -> str:
        """Each input's shape: ``x [1, 3, 48, 192]`` (an open batch as ``batch``)."""
        return "; ".join(
            f"{name} " + show(["batch" if d is None else d for d in dims])
            for name, dims in self.shapes.items()
        )

    def line(self) -> str:
        """One line: each input's shape, then where the sizes came from."""
        return self.text() + (f" ({'; '.join(self.notes)})" if self.notes else "")


def resolve(
    inputs: Sequence[InputSpec],
    dims: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
    *,
    batch: int | None = None,
    assume: int | None = None,
    required: bool = True,
) -> Resolved:
    """Each input's dims with ``--dim`` and ``--shape`` applied (module docstring).

    ``batch``: the size of a symbolic first axis nothing else fixes (None leaves it
    open). ``assume``: the size of any other dimension still without one (a note
    says so). ``required``: otherwise raise ValueError naming each such dimension
    and the option that gives it (else it stays None)."""
    inputs = tuple(inputs)
    dims = dict(dims or {})
    names = symbolic_names(inputs)
    unknown = [n for n in dims if n not in names]
    if unknown:
        given = ", ".join(f"{n}={dims[n]}" for n in unknown)
        has = (
            f"its symbolic dimensions are {', '.join(names)}"
            if names
            else "it has no named symbolic dimension"
        )
        unnamed = any(d is None for s in inputs for d in s.dims[1:])
        raise ValueError(
            f"--dim {given}: the model has no dimension named "
            f"{', '.join(repr(n) for n in unknown)}; {has}"
            + ("; unnamed ones take --shape" if unnamed else "")
        )
    notes: list[str] = []
    if shape is not None:
        if dims:
            raise ValueError("give --dim or --shape, not both")
        if len(inputs) != 1:
            listed = ", ".join(i.name for i in inputs)
            raise ValueError(
                f"--shape gives one input's shape; this model has {len(inputs)} ({listed}): "
                "use --dim NAME=SIZE"
            )
        (spec,) = inputs
        text = ",".join(map(str, shape))
        if len(shape) != len(spec.dims):
            raise ValueError(
                f"--shape {text}: input {spec.name!r} has {len(spec.dims)} dims "
                f"{show(spec.dims)}, received {len(shape)}"
            )
        for axis, (d, s) in enumerate(zip(spec.dims, shape, strict=True)):
            if isinstance(d, int) and d != s:
                raise ValueError(
                    f"--shape {text}: input {spec.name!r} fixes axis {axis} at {d}, received {s}"
                )
        return Resolved(inputs, {spec.name: [int(s) for s in shape]}, ["from --shape"])
    resolved: dict[str, list] = {}
    missing: list[tuple[InputSpec, int]] = []
    assumed: dict[str, None] = {}
    batch_note = False
    for spec in inputs:
        out: list = []
        for axis, d in enumerate(spec.dims):
            if isinstance(d, int):
                out.append(d)
            elif isinstance(d, str) and d in dims:
                out.append(dims[d])
            elif axis == 0:
                out.append(batch)  # the batch
                batch_note = True
            elif assume is not None:
                out.append(assume)
                assumed[d if isinstance(d, str) else f"{spec.name} axis {axis}"] = None
            else:
                out.append(None)
                missing.append((spec, axis))
        resolved[spec.name] = out
    if missing and required:
        per_input: dict[str, list[str]] = {}
        for spec, axis in missing:
            per_input.setdefault(spec.name, []).append(_dim_name(spec, axis))
        where = "; ".join(f"input {k!r}: {', '.join(v)}" for k, v in per_input.items())
        named = dict.fromkeys(s.dims[a] for s, a in missing if isinstance(s.dims[a], str))
        hint = " ".join(f"--dim {n}=SIZE" for n in named)
        raise ValueError(
            f"symbolic dimensions without a size: {where}; give "
            + (f"{hint}, or the whole shape with --shape" if hint else "the shape with --shape")
        )
    if batch_note:
        notes.append("axis 0 the batch" if batch is None else f"axis 0 the batch, {batch}")
    if dims:
        notes.append(", ".join(f"{k}={v}" for k, v in dims.items()) + " from --dim")
    if assumed:
        notes.append(
            f"assumed {assume} for {', '.join(assumed)}: give --dim NAME=SIZE or --shape "
            "for the real size"
        )
    return Resolved(inputs, resolved, notes)


def shape_option(text: str) -> list[int]:
    """``--shape 1,3,224,224`` (argparse type): sizes >= 1."""
    import argparse

    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected sizes like 1,3,224,224, received {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive sizes, received {text!r}")
    return values


def add_shape_options(parser, *, batch: str = "the batch") -> None:
    """``--dim`` and ``--shape`` on a subcommand's parser, worded alike everywhere."""
    parser.add_argument(
        "--dim",
        action="append",
        metavar="NAME=SIZE",
        help=f"a size for a named symbolic dimension (on the first axis it fixes {batch})",
    )
    parser.add_argument(
        "--shape",
        type=shape_option,
        default=None,
        help="the input's whole shape, e.g. 1,3,224,224 (sizes -1, ? and unnamed axes too)",
    )


def from_args(
    command: str,
    model: str | os.PathLike | bytes,
    dim: Sequence[str] | None = None,
    shape: Sequence[int] | None = None,
    *,
    batch: int | None = None,
    assume: int | None = None,
    inputs: Sequence[InputSpec] | None = None,
) -> Resolved:
    """:func:`resolve` on a command's ``--dim`` and ``--shape``, the result printed in
    one line on stderr (:func:`print_line`)."""
    specs = tuple(inputs) if inputs is not None else model_inputs(model)
    resolved = resolve(specs, parse_dims(dim), shape, batch=batch, assume=assume)
    print_line(command, resolved)
    return resolved


def print_line(command: str, line: str | Resolved) -> None:
    """The resolved input shapes, one line on stderr (every command the same way)."""
    import sys

    text = line.line() if isinstance(line, Resolved) else line
    print(f"cnn {command}: input shape: {text}", file=sys.stderr)


def random_feeds(
    inputs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]], seed: int = 0
) -> dict[str, np.ndarray]:
    """The one random-input generator of every command (compare, bench and its worker
    processes, profile, bisect, describe, summary): seeded inputs of ``shapes`` (the
    resolver's, e.g. ``Resolved.concrete(batch)``), each of its input's dtype: uniform
    [0, 1) floats, 0/1 booleans, integers in [0, 4). The same seed and shapes give the
    same arrays in every process."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in inputs:
        shape = tuple(int(d) for d in shapes[spec.name])
        kind = np.dtype(spec.dtype).kind
        if kind == "f":
            feeds[spec.name] = rng.random(shape).astype(spec.dtype)
        elif kind == "b":
            feeds[spec.name] = rng.integers(0, 2, shape).astype(bool)
        elif kind in "iu":
            feeds[spec.name] = rng.integers(0, 4, shape).astype(spec.dtype)
        else:
            raise ValueError(
                f"input {spec.name!r} is {np.dtype(spec.dtype)}: expected a float, integer "
                "or bool input to make random data for"
            )
    return feeds
