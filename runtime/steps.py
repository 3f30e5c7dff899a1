"""Steps: a graph's nodes as calls the engine runs, and how one step runs.

A ``Step`` is a node with its op's function for the model's opset and its checked
attributes (``make_step``: ``validate.check_node`` holds the node against its op's
ONNX schema, then the op's registered contract names the attributes it takes).
``call_step`` runs one step and gives any error the node's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime import errors, kernel_table
from runtime.graph import Graph, Node
from runtime.ops import resolve, supported_ops
from runtime.validate import Known, check_node

TYPED_ERRORS = (
    errors.ShapeError,
    errors.InvalidAttributeError,
    errors.TensorTooLargeError,
    errors.UnsupportedOpError,
)


@dataclass(frozen=True)
class Step:
    node: Node  # the (first) original node, for error messages and bisection
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    since: int = 1  # the opset version whose semantics ``fn`` implements
    choice: kernel_table.Choice | None = None  # the algorithm chosen at load, and why
    fused: tuple[str, ...] = ()  # the ops the rewrite passes fused into this step
    fused_nodes: tuple[Node, ...] = ()  # their nodes, for error messages

    @property
    def op_type(self) -> str:
        return self.node.op_type


def check_supported(graph: Graph) -> None:
    """Every node's op exists for the graph's opset, or one error listing all that do not."""
    missing = [
        n
        for n in graph.nodes
        if n.domain not in ("", "ai.onnx") or resolve(n.op_type, graph.opset) is None
    ]
    if missing:
        listed = "; ".join(
            f"{n.op_type} (domain {n.domain or 'ai.onnx'!r}, node {n.name!r})" for n in missing
        )
        raise errors.UnsupportedOpError(
            f"the numba backend does not implement {len(missing)} node(s) of this graph "
            f"(opset {graph.opset}): {listed}. Supported ops: {', '.join(supported_ops())}. "
            "Use backend='onnxruntime' (cnn: --backend onnxruntime) for this model."
        )


def make_step(node: Node, opset: int, known: Known | None = None) -> Step:
    """The node as a step, once ``validate.check_node`` has held it against its op's
    ONNX schema (``known``: ranks and types of the tensors known before it runs)."""
    version = resolve(node.op_type, opset)
    assert version is not None  # check_supported ran first
    check_node(node, opset, known)
    c = version.contract
    kw, required, wants_n = c.attributes, c.required, c.counts_outputs
    unknown = [] if kw is None else sorted(set(node.attrs) - kw)
    if unknown:
        raise errors.InvalidAttributeError(
            f"{node.describe()}: unknown attribute(s) {unknown} for {node.op_type} "
            f"at opset {opset}; expected among {sorted(kw)}"
        )
    absent = sorted(required - set(node.attrs))
    if absent:
        raise errors.InvalidAttributeError(
            f"{node.describe()}: missing required attribute(s) {absent}"
        )
    attrs = dict(node.attrs)
    if wants_n:
        attrs["_num_outputs"] = len(node.outputs)
    return Step(node, version.fn, node.inputs, node.outputs, attrs, version.since)


def call_step(
    step: Step, env: Mapping[str, np.ndarray], out: tuple | None = None
) -> tuple[np.ndarray, ...]:
    """Run one step on ``env`` (``out``: planned buffers); errors get the node's name."""
    args = [env[name] if name else None for name in step.inputs]
    while args and args[-1] is None:
        args.pop()
    try:
        if out is None:
            result = step.fn(*args, **step.attrs)
        else:
            result = step.fn(*args, **step.attrs, _out=out)
    except RUN_ERRORS as exc:
        raise node_error(step, exc) from None
    return result if isinstance(result, tuple) else (result,)


RUN_ERRORS = (*TYPED_ERRORS, ValueError, TypeError, IndexError)  # what ``node_error`` names


def node_error(step: Step, exc: Exception) -> Exception:
    """``exc`` (one of ``RUN_ERRORS``) from ``step``'s call as the error that names its
    node (``_blamed``): a typed error keeps its type, the others become a ShapeError."""
    kind = type(exc) if isinstance(exc, TYPED_ERRORS) else errors.ShapeError
    return kind(_blamed(step, str(exc)))


def _blamed(step: Step, message: str) -> str:
    """``message`` with the node it belongs to: a node fused into the step when the
    message is its op's (``MaxPool: window 2 ...`` from a conv's fused pooling), else
    the step's own node, without the op name the message may start with."""
    for node in step.fused_nodes:
        prefix = f"{node.op_type}: "
        if message.startswith(prefix):
            where = f"{node.describe()} (fused into {step.node.describe()})"
            return f"{where}: {message[len(prefix) :]}"
    own = f"{step.node.op_type}: "  # the op's own prefix: the node's description names it
    if message.startswith(own):
        message = message[len(own) :]
    return f"{step.node.describe()}: {message}"


def store(step: Step, results: tuple[np.ndarray, ...], env: dict[str, np.ndarray]) -> None:
    """Put a step's results into ``env`` under its output names (an empty name: unused)."""
    for name, value in zip(step.outputs, results, strict=False):
        if name:
            env[name] = value


def consumers(steps: Sequence[Step]) -> dict[str, list[int]]:
    """For each tensor, the indices of the steps that read it."""
    users: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        for name in s.inputs:
            if name:
                users.setdefault(name, []).append(i)
    return users
