"""The Numba backend: a validated graph becomes a list of steps, optimised once, then
specialised and cached per input shape.

At load (shape-free):
  * every op is looked up for the model's opset; all unsupported ops are reported
    together; each node is held against its op's ONNX schema (``runtime/validate.py``:
    input and output counts, attribute names, kinds and ranges), and unknown or
    missing attributes are errors naming the node;
  * constant folding: nodes whose inputs are all constants run once, here;
  * Identity and inference Dropout are removed;
  * Conv + BatchNormalization folds BN into the conv's weights; Conv + activation,
    and a BatchNormalization after that activation (as in the article's AlexNet),
    fuse into the conv kernel's epilogue, and so does a MaxPool after them (the
    Winograd output transform pools each plane while it is in cache); Gemm + Relu fuses.

Per input shape (first run with that shape, cached): tensors that depend only on
shapes (``Shape`` and what is computed from it) fold into constants, so shape
subgraphs vanish from the steps that repeated runs execute. Intermediate tensors
are released after their last use. Each Conv, Gemm and Softmax is checked and laid
out for that shape once, and reshapes become plain reshapes (``_bind``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from runtime import dispatch, errors
from runtime.description import Description, StepInfo
from runtime.graph import Graph, Node
from runtime.memory import check_size
from runtime.ops import resolve, supported_ops
from runtime.ops.nn import bn_affine, fused_conv, fused_gemm, gemm_shape, pool_setup
from runtime.ops.registry import contract
from runtime.program import NotCompilableError, Program, compile_program
from runtime.validate import Known, check_node, check_outputs

TYPED_ERRORS = (
    errors.ShapeError,
    errors.InvalidAttributeError,
    errors.TensorTooLargeError,
    errors.UnsupportedOpError,
)
ACTIVATION_OPS = ("Relu", "LeakyRelu", "Tanh", "Sigmoid")
REMOVABLE = ("Identity", "Dropout")
# the ops a compiled program runs (``runtime/program.py``)
PROGRAM_OPS = (
    "Conv",
    "MaxPool",
    "AveragePool",
    "Gemm",
    "MatMul",
    "Relu",
    "LeakyRelu",
    "Tanh",
    "Sigmoid",
    "BatchNormalization",
    "Reshape",
    "Flatten",
    "Softmax",
    "LogSoftmax",
)
# ops whose steps run numba kernels (the others: NumPy), for ``describe``
KERNEL_OPS = (
    "Conv",
    "MaxPool",
    "AveragePool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "Gemm",
    "MatMul",
    "Softmax",
    "LogSoftmax",
)
MAX_PLANS = 16  # input shapes whose plans and buffers a session keeps


@dataclass(frozen=True)
class Step:
    node: Node  # the (first) original node, for error messages and bisection
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)
    since: int = 1  # the opset version whose semantics ``fn`` implements
    choice: dispatch.Choice | None = None  # the algorithm chosen at load, and why
    fused: tuple[str, ...] = ()  # the ops the rewrite passes fused into this step

    @property
    def op_type(self) -> str:
        return self.node.op_type


@dataclass
class Plan:
    steps: list[Step]
    constants: dict[str, np.ndarray]
    release: list[tuple[str, ...]]  # after step i, drop these tensors
    out_slots: list[tuple[int | None, ...] | None]  # step i writes output j into slot k
    slot_specs: list[tuple[tuple[int, ...], np.dtype]]  # shape and dtype of each slot
    program: Program | None = None  # the whole plan as one compiled call, when it qualifies
    not_compiled: str = ""  # why not, otherwise


# ------------------------------------------------------------------ building steps


def check_supported(graph: Graph) -> None:
    missing = [n for n in graph.nodes if n.domain not in ("", "ai.onnx") or
               resolve(n.op_type, graph.opset) is None]  # fmt: skip
    if missing:
        listed = "; ".join(
            f"{n.op_type} (domain {n.domain or 'ai.onnx'!r}, node {n.name!r})" for n in missing
        )
        raise errors.UnsupportedOpError(
            f"the numba backend does not implement {len(missing)} node(s) of this graph "
            f"(opset {graph.opset}): {listed}. Supported ops: {', '.join(supported_ops())}. "
            "Use backend='onnxruntime' (cnn: --backend onnxruntime) for this model."
        )


def _make_step(node: Node, opset: int, known: Known | None = None) -> Step:
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
    except TYPED_ERRORS as exc:
        raise type(exc)(f"{step.node.describe()}: {exc}") from None
    except (ValueError, TypeError, IndexError) as exc:
        raise errors.ShapeError(f"{step.node.describe()}: {exc}") from None
    return result if isinstance(result, tuple) else (result,)


def _store(step: Step, results: tuple[np.ndarray, ...], env: dict[str, np.ndarray]) -> None:
    for name, value in zip(step.outputs, results, strict=False):
        if name:
            env[name] = value


# ---------------------------------------------------------------- graph rewriting


def _consumers(steps: Sequence[Step]) -> dict[str, list[int]]:
    users: dict[str, list[int]] = {}
    for i, s in enumerate(steps):
        for name in s.inputs:
            if name:
                users.setdefault(name, []).append(i)
    return users


def _fold_constants(steps: list[Step], constants: dict[str, np.ndarray]) -> list[Step]:
    kept = []
    for step in steps:
        if all(not n or n in constants for n in step.inputs):
            _store(step, call_step(step, constants), constants)
        else:
            kept.append(step)
    return kept


def _remove_identities(steps: list[Step], outputs: set[str]) -> list[Step]:
    rename: dict[str, str] = {}
    kept = []
    for step in steps:
        step = replace(step, inputs=tuple(rename.get(n, n) for n in step.inputs))
        extra_used = any(o for o in step.outputs[1:])  # Dropout's mask output is read
        if step.op_type in REMOVABLE and step.outputs[0] not in outputs and not extra_used:
            rename[step.outputs[0]] = step.inputs[0]
            continue
        kept.append(step)
    return kept


def _only_user(steps: list[Step], i: int, outputs: set[str]) -> int | None:
    """Index of the single step that reads step i's single output, if fusing is safe."""
    out = steps[i].outputs
    if len([o for o in out if o]) != 1 or out[0] in outputs:
        return None
    users = _consumers(steps).get(out[0], [])
    return users[0] if len(users) == 1 else None


def _plain_max_pool(step: Step, w: np.ndarray | None) -> tuple[int, int, int, int] | None:
    """(kh, kw, sh, sw) of a MaxPool that a 2-D conv (weights ``w``) can apply to its own
    output: no padding, dilation or ceil mode, and no indices wanted."""
    a = step.attrs
    kernel = list(a.get("kernel_shape") or [])
    strides = list(a.get("strides") or [1] * len(kernel))
    plain = (
        w is not None
        and w.ndim == 4
        and len(kernel) == 2
        and len(strides) == 2
        and not any(step.outputs[1:])
        and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and not any(a.get("pads") or [0])
        and all(d == 1 for d in a.get("dilations") or [1])
        and not a.get("ceil_mode", 0)
        and min(kernel + strides) >= 1
    )
    return (*kernel, *strides) if plain else None


class _Bound:
    """A step's call laid out once for its plan's input shapes (``_bind``): the step's
    other inputs, constants, and its attributes are inside it."""

    def __init__(self, call: Callable[[np.ndarray, np.ndarray | None], np.ndarray]) -> None:
        self.call = call
        self.choice: dispatch.Choice | None = getattr(call, "choice", None)

    def __call__(self, x: np.ndarray, *constants: np.ndarray, _out=None) -> np.ndarray:
        return self.call(x, _out and _out[0])


def _bind(steps: list[Step], env: Mapping[str, np.ndarray], constants: Mapping[str, np.ndarray]
          ) -> list[Step]:  # fmt: skip
    """Steps laid out for the plan's shapes, so that a call runs little Python (after a
    kernel has swept megabytes through the caches, every line of it costs several
    times its usual time): each op with a ``prepare`` (Conv, Gemm, Softmax: see the end
    of ``ops/nn.py``) whose other inputs are constants, and each step whose output is
    its input reshaped."""
    bound = []
    for step in steps:
        x = env.get(step.inputs[0]) if step.inputs else None
        if x is None or not all(not n or n in constants for n in step.inputs[1:]):
            bound.append(step)
            continue
        args = [constants[n] if n else None for n in step.inputs[1:]]
        prepare = getattr(step.fn, "prepare", None)
        call = None if prepare is None else prepare(x, args, step.attrs)
        if call is None and _is_view(x, [env[o] for o in step.outputs if o]):
            call = _reshape_to(env[step.outputs[0]].shape)
        if call is not None:
            step = replace(step, fn=_Bound(call), attrs={})  # the attributes are in it
        bound.append(step)
    return bound


def _is_view(x: np.ndarray, outs: list[np.ndarray]) -> bool:
    """Whether a step's single output is ``x`` reshaped (Reshape, Flatten, Squeeze...):
    the same elements in the same order, and so, for this plan's shapes, a reshape."""
    return (
        len(outs) == 1
        and outs[0].size == x.size
        and outs[0].dtype == x.dtype
        and x.flags.c_contiguous
        and outs[0].flags.c_contiguous
        and outs[0].__array_interface__["data"][0] == x.__array_interface__["data"][0]
    )


def _reshape_to(shape: tuple[int, ...]) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    def reshape(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return x.reshape(shape)

    return reshape


def _writes_out(fn: Callable) -> bool:
    return isinstance(fn, _Bound) or contract(fn).writes_out


def _plan_buffers(
    steps: list[Step], env: Mapping[str, np.ndarray], fixed: set[str], wanted: set[str]
) -> tuple[list[tuple[int | None, ...] | None], list[tuple[tuple[int, ...], np.dtype]]]:
    """Give each intermediate tensor a reusable buffer slot, by liveness.

    A tensor that is a view of another (Reshape, Flatten...) shares its root's
    buffer, which then lives until the view's last use. Roots behind a graph output,
    a feed or a constant are never planned: outputs are fresh arrays for the caller.
    """
    root: dict[str, str] = {}
    for step in steps:
        for o in step.outputs:
            if not o:
                continue
            root[o] = o
            for i in step.inputs:
                if i and i in env and np.shares_memory(env[o], env[i]):
                    root[o] = root.get(i, i)
    last: dict[str, int] = {}
    for k, step in enumerate(steps):
        for i in step.inputs:
            if i:
                last[root.get(i, i)] = k
    blocked = {root.get(n, n) for n in wanted} | fixed
    free: dict[tuple, list[int]] = {}
    specs: list[tuple[tuple[int, ...], np.dtype]] = []
    slot_of: dict[str, int] = {}
    out_slots: list[tuple[int | None, ...] | None] = []
    for k, step in enumerate(steps):
        for name, slot in list(slot_of.items()):
            if last.get(name, -1) < k:  # died before this step: its slot is free again
                free.setdefault(specs[slot], []).append(slot)
                del slot_of[name]
        if not _writes_out(step.fn):
            out_slots.append(None)
            continue
        row: list[int | None] = []
        for o in step.outputs:
            if not o or root.get(o) != o or o in blocked or o not in last:
                row.append(None)
                continue
            spec = (env[o].shape, env[o].dtype)
            pool = free.get(spec)
            if pool:
                slot = pool.pop()
            else:
                slot = len(specs)
                specs.append(spec)
            slot_of[o] = slot
            row.append(slot)
        out_slots.append(tuple(row) if any(s is not None for s in row) else None)
    return out_slots, specs


def _fuse(steps: list[Step], constants: dict[str, np.ndarray], outputs: set[str]) -> list[Step]:
    """Conv+BN weight folding, Conv+activation(+BN)(+MaxPool) epilogues, Gemm+Relu."""
    i = 0
    while i < len(steps):
        step = steps[i]
        j = _only_user(steps, i, outputs)
        nxt = steps[j] if j is not None else None
        if step.op_type == "Conv" and step.fn is not fused_conv:
            steps[i] = step = replace(step, fn=fused_conv)
        if step.op_type == "Conv" and nxt is not None:
            attrs = dict(step.attrs)
            fused = None
            w_name = step.inputs[1]
            b_name = step.inputs[2] if len(step.inputs) > 2 else ""
            w = constants.get(w_name)
            m = w.shape[0] if w is not None and w.ndim >= 3 else None  # output channels
            consts_ok = m is not None and (
                not b_name or (b_name in constants and constants[b_name].shape == (m,))
            )
            if "max_pool" in attrs:
                pass  # the pool ends the conv's epilogue
            elif (
                nxt.op_type == "BatchNormalization"
                and nxt.inputs[0] == step.outputs[0]
                and "activation" not in attrs
                and consts_ok
                and (ab := bn_affine(nxt.inputs, nxt.attrs, constants, m)) is not None
            ):
                a, c = ab
                bias = constants[b_name] if b_name else np.zeros(w.shape[0], np.float32)
                wf, bf = f"{w_name}::bnfold{i}", f"{w_name}::bnbias{i}"
                constants[wf] = (w * a.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
                constants[bf] = (bias * a + c).astype(np.float32)
                fused = replace(
                    step,
                    inputs=(step.inputs[0], wf, bf),
                    outputs=nxt.outputs,
                    fused=(*step.fused, "BatchNormalization (in the weights)"),
                )
            elif (
                nxt.op_type in ACTIVATION_OPS
                and "activation" not in attrs
                and "post_scale" not in attrs
            ):
                attrs["activation"] = nxt.op_type
                if nxt.op_type == "LeakyRelu":
                    attrs["alpha"] = nxt.attrs.get("alpha", 0.01)
                fused = replace(step, attrs=attrs, outputs=nxt.outputs)
            elif (
                nxt.op_type == "BatchNormalization"
                and nxt.inputs[0] == step.outputs[0]
                and "activation" in attrs
                and "post_scale" not in attrs
                and (ab := bn_affine(nxt.inputs, nxt.attrs, constants, m)) is not None
            ):
                attrs["post_scale"], attrs["post_shift"] = ab
                fused = replace(step, attrs=attrs, outputs=nxt.outputs)
            elif (
                nxt.op_type == "MaxPool"
                and (pool := _plain_max_pool(nxt, constants.get(w_name))) is not None
            ):
                attrs["max_pool"] = pool
                fused = replace(step, attrs=attrs, outputs=nxt.outputs[:1])
            if fused is not None:
                if len(fused.fused) == len(step.fused):
                    fused = replace(fused, fused=(*step.fused, nxt.op_type))
                steps[i] = fused
                del steps[j]
                continue  # try to fuse the next one into the same conv
        if (
            step.op_type == "Gemm"
            and "activation" not in step.attrs
            and nxt is not None
            and nxt.op_type == "Relu"
        ):
            attrs = {**step.attrs, "activation": "Relu"}
            steps[i] = replace(
                step, fn=fused_gemm, attrs=attrs, outputs=nxt.outputs, fused=(*step.fused, "Relu")
            )
            del steps[j]
            continue
        i += 1
    return steps


def _choose_conv_algorithms(steps: list[Step], constants: dict[str, np.ndarray]) -> list[Step]:
    """Each Conv's load-time algorithm (``dispatch.conv_at_load``), recorded on its step;
    a Winograd-worthy one gets its ``WinogradWeights``, transformed on first use."""
    for i, step in enumerate(steps):
        if step.op_type != "Conv" or step.fn is not fused_conv:
            continue
        choice, weights = dispatch.conv_at_load(constants.get(step.inputs[1]), step.attrs)
        attrs = dict(step.attrs)
        if weights is not None:
            attrs["winograd"] = weights
        steps[i] = replace(step, attrs=attrs, choice=choice)
    return steps


class _ShapesOnlyError(Exception):
    """A plan that is better built by running it (``NumbaEngine._shapes_only``)."""


def _empty_output(step: Step, env: Mapping[str, np.ndarray]) -> np.ndarray:
    """An uninitialised output of the shape and type ``step`` would produce (one of
    ``PROGRAM_OPS``), computed from its attributes and input shapes."""
    x = env[step.inputs[0]]
    op = step.op_type
    if op in ("Reshape", "Flatten"):
        return call_step(step, env)[0]  # a view: nothing computed
    if op == "Conv":  # checked and shaped as im2col would run it: no Winograd transform
        attrs = {k: v for k, v in step.attrs.items() if k != "winograd"}
        args = [env[n] if n else None for n in step.inputs[1:]]
        try:
            shape = step.fn.prepare(x, args, attrs).out_shape
        except errors.TensorTooLargeError:  # im2col's work arrays: the real run decides
            raise _ShapesOnlyError from None
    elif op == "Gemm":  # checked as gemm_call checks, without packing the weights
        a = step.attrs
        c = env[step.inputs[2]] if len(step.inputs) > 2 and step.inputs[2] else None
        shape = gemm_shape(
            x.shape, env[step.inputs[1]].shape, None if c is None else c.shape,
            beta=a.get("beta", 1.0), transA=a.get("transA", 0), transB=a.get("transB", 0),
        )  # fmt: skip
    elif op == "MatMul":
        w = env[step.inputs[1]]
        if x.ndim != 2 or w.ndim != 2 or x.shape[1] != w.shape[0]:
            raise _ShapesOnlyError  # the real run checks (or runs) it
        shape = (x.shape[0], w.shape[1])
    elif op in ("MaxPool", "AveragePool"):
        a = step.attrs
        _, out_sp, *_ = pool_setup(
            op,
            x,
            a.get("kernel_shape"),
            a.get("auto_pad", "NOTSET"),
            a.get("pads"),
            a.get("strides"),
            a.get("dilations"),
            a.get("ceil_mode", 0),
        )
        shape = (*x.shape[:2], *out_sp)
    else:  # the elementwise and per-image ops keep their input's shape
        shape = x.shape
    check_size(shape, np.float32, f"{op} output")
    return np.empty(shape, np.float32)


def _info(step: Step, choice: dispatch.Choice | None = None) -> StepInfo:
    """A step for ``describe``: the bound call's choice, else the load-time one."""
    choice = choice or getattr(step.fn, "choice", None) or step.choice
    if choice is None:
        choice = dispatch.Choice("numpy" if step.op_type not in KERNEL_OPS else "kernel", "")
    return StepInfo(step.node.name, step.op_type, step.fused, choice.algorithm, choice.reason)


# ------------------------------------------------------------------------ the engine


class NumbaEngine:
    """Executes one graph. Thread-safe: runs share only immutable plans and constants."""

    def __init__(self, graph: Graph, *, optimize: bool = True, compile_plans: bool = True) -> None:
        """``optimize=False`` keeps one step per node (bisection compares every node);
        ``compile_plans=False`` runs every plan step by step (see ``runtime/program.py``)."""
        check_supported(graph)
        self.graph = graph
        self.output_names = tuple(o.name for o in graph.outputs)
        outputs = set(self.output_names)
        constants = dict(graph.initializers)
        known = Known.of(graph.initializers, graph.inputs)
        steps = [_make_step(n, graph.opset, known) for n in graph.nodes]
        check_outputs(graph.outputs, known)
        if optimize:
            steps = _fold_constants(steps, constants)
            steps = _remove_identities(steps, outputs)
            steps = _fuse(steps, constants, outputs)
            steps = _choose_conv_algorithms(steps, constants)
        self.optimize = optimize
        self.compile_plans = optimize and compile_plans
        self.steps: tuple[Step, ...] = tuple(steps)
        self.constants = constants
        self._plans: dict[tuple, Plan] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    # A plan is specific to the shapes of the feeds.
    def _key(self, feeds: Mapping[str, np.ndarray]) -> tuple:
        return tuple((name, feeds[name].shape, feeds[name].dtype.str) for name in sorted(feeds))

    def _shapes_only(self, feeds: Mapping[str, np.ndarray]) -> tuple[list[Step], dict, set] | None:
        """The plan's steps and tensors of its shapes, without running its heavy ops:
        shape arithmetic and constants run for real, each op a compiled program can
        take gets an empty output of its shape (``PROGRAM_OPS``). None when another op
        is in the way (the plan could not compile) or anything fails (the real run then
        raises the typed error)."""
        env: dict[str, np.ndarray] = {**self.constants, **feeds}
        static = set(self.constants)
        kept: list[Step] = []
        try:
            with np.errstate(all="ignore"):
                for step in self.steps:
                    if step.op_type == "Shape" or all(not n or n in static for n in step.inputs):
                        _store(step, call_step(step, env), env)
                        static.update(o for o in step.outputs if o)
                        continue
                    if step.op_type not in PROGRAM_OPS or any(step.outputs[1:]):
                        return None
                    try:
                        _store(step, (_empty_output(step, env),), env)
                    except errors.TensorTooLargeError as exc:
                        raise type(exc)(f"{step.node.describe()}: {exc}") from None
                    kept.append(step)
        except errors.TensorTooLargeError:
            raise
        except Exception:  # the real run reports it, with its node (_ShapesOnlyError too)
            return None
        return kept, env, static

    def _compiled_plan(self, feeds: Mapping[str, np.ndarray]) -> Plan | None:
        """A plan that is one compiled program, made from shapes alone, or None."""
        found = self._shapes_only(feeds)
        if found is None:
            return None
        kept, env, static = found
        constants = {n: env[n] for n in static if n in env}
        try:
            program = compile_program(kept, env, constants, feeds, self.output_names)
        except NotCompilableError:
            return None
        except Exception:  # bad weights the shapes-only run did not check: the real
            return None  # run raises the op's typed error, naming its node
        return Plan(kept, constants, [() for _ in kept], [None for _ in kept], [], program)

    def _build_plan(self, feeds: Mapping[str, np.ndarray]) -> tuple[Plan, dict]:
        """A compiled program when the plan qualifies (nothing runs step by step, so only
        the program's kernels compile); otherwise run once, marking shape-only tensors,
        which become the plan's constants."""
        if self.compile_plans:
            plan = self._compiled_plan(feeds)
            if plan is not None:
                return plan, {}
        env: dict[str, np.ndarray] = {**self.constants, **feeds}
        static = set(self.constants)
        kept: list[Step] = []
        for step in self.steps:
            results = call_step(step, env)
            _store(step, results, env)
            if step.op_type == "Shape" or all(not n or n in static for n in step.inputs):
                static.update(o for o in step.outputs if o)
            else:
                kept.append(step)
        constants = {n: env[n] for n in static if n in env}
        wanted = set(self.output_names)
        last_use: dict[str, int] = {}
        for i, step in enumerate(kept):
            for n in step.inputs:
                if n and n not in constants and n not in feeds:
                    last_use[n] = i
        release: list[list[str]] = [[] for _ in kept]
        for name, i in last_use.items():
            if name not in wanted:
                release[i].append(name)
        out_slots, specs = _plan_buffers(kept, env, set(constants) | set(feeds), wanted)
        plan = Plan(kept, constants, [tuple(r) for r in release], out_slots, specs)
        if self.compile_plans:
            try:
                plan.program = compile_program(kept, env, constants, feeds, self.output_names)
            except NotCompilableError as exc:
                plan.not_compiled = str(exc)
        if self.optimize:
            plan.steps = _bind(kept, env, constants)
        return plan, env

    def run(
        self,
        feeds: Mapping[str, np.ndarray],
        output_names: Sequence[str],
        around_steps: Callable[[], AbstractContextManager] = nullcontext,
    ) -> list[np.ndarray]:
        """``around_steps``: a context entered while steps run one by one (the session
        limits BLAS threads there); a compiled program runs without it."""
        key = self._key(feeds)
        plan = self._plans.get(key)
        if plan is None:
            with around_steps():
                plan, env = self._build_plan(feeds)
            with self._lock:
                if len(self._plans) >= MAX_PLANS:  # many shapes: keep the newest ones
                    self._plans.pop(next(iter(self._plans)))
                self._plans.setdefault(key, plan)
            if plan.program is None:
                return [env[n] for n in output_names]
        # A compiled program also answers the first call: every call gives the same bits.
        program = plan.program
        if program is not None:  # the graph's one output: the names are that, or none
            y = program.run(feeds[program.input_name])
            return [y for _ in output_names]
        arena = self._arena(key, plan)
        env = {**plan.constants, **feeds}
        with around_steps():
            for step, dead, slots in zip(plan.steps, plan.release, plan.out_slots, strict=True):
                out = (
                    None
                    if slots is None
                    else tuple(arena[s] if s is not None else None for s in slots)
                )
                _store(step, call_step(step, env, out), env)
                for name in dead:
                    env.pop(name, None)
        return [env[n] for n in output_names]

    def _arena(self, key: tuple, plan: Plan) -> list[np.ndarray]:
        """This thread's buffers for ``plan``: threads never share a buffer."""
        arenas = getattr(self._local, "arenas", None)
        if arenas is None:
            arenas = self._local.arenas = {}
        arena = arenas.get(key)
        if arena is None:
            for stale in [k for k in arenas if k not in self._plans]:
                del arenas[stale]  # the plan was evicted: so are its buffers
            arena = arenas[key] = [np.empty(shape, dtype) for shape, dtype in plan.slot_specs]
        return arena

    def describe(self, feeds: Mapping[str, np.ndarray] | None = None) -> Description:
        """Each step of the plan for ``feeds`` (built now if needed; None: the newest
        plan, or the load-time choices when nothing ran yet)."""
        plan = None
        if feeds is not None:
            key = self._key(feeds)
            if key not in self._plans:
                self.run(feeds, self.output_names)
            plan = self._plans.get(key)
        elif self._plans:
            key, plan = next(reversed(self._plans.items()))
        if plan is None:
            return Description(None, False, "no plan yet", tuple(_info(s) for s in self.steps))
        shapes = {name: shape for name, shape, _ in key}
        if plan.program is not None:
            info = tuple(
                _info(s, dispatch.Choice("compiled program", "the plan is one chain program"))
                for s in plan.steps
            )
            return Description(shapes, True, "", info)
        return Description(shapes, False, plan.not_compiled, tuple(_info(s) for s in plan.steps))

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> list[tuple[Step, dict]]:
        """Every step with the tensors it produced, in order (for bisection)."""
        env: dict[str, np.ndarray] = {**self.constants, **feeds}
        trace = []
        for step in self.steps:
            results = call_step(step, env)
            _store(step, results, env)
            trace.append((step, {o: r for o, r in zip(step.outputs, results, strict=False) if o}))
        return trace
