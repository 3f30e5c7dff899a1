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

import inspect
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from runtime import errors
from runtime.graph import Graph, Node
from runtime.kernels import winograd
from runtime.ops import resolve, supported_ops
from runtime.ops.nn import bn_scale_shift, conv, conv_forward, gemm_call
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
MAX_PLANS = 16  # input shapes whose plans and buffers a session keeps
WINOGRAD_MIN_CHANNELS = 32


@dataclass(frozen=True)
class Step:
    node: Node  # the (first) original node, for error messages and bisection
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: Mapping[str, Any] = field(default_factory=dict)

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


def _signature(fn: Callable) -> tuple[set[str] | None, set[str], bool]:
    """(attribute names, or None when it takes any; required ones; wants _num_outputs)."""
    params = list(inspect.signature(fn).parameters.values())
    kw = {p.name for p in params if p.kind == p.KEYWORD_ONLY and not p.name.startswith("_")}
    required = {
        p.name
        for p in params
        if p.kind == p.KEYWORD_ONLY and p.default is p.empty and not p.name.startswith("_")
    }
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    return (None if takes_any else kw), required, any(p.name == "_num_outputs" for p in params)


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
    kw, required, wants_n = _signature(version.fn)
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
    return Step(node, version.fn, node.inputs, node.outputs, attrs)


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


def _bn_params(step: Step, constants: Mapping[str, np.ndarray], channels: int | None):
    """A BatchNormalization's (scale, shift) per channel, when its four vectors are
    constants of ``channels`` floats each; None leaves the step to check them itself."""
    names = step.inputs[1:5]
    if len(names) != 4 or not all(n in constants for n in names) or channels is None:
        return None
    if step.attrs.get("training_mode", 0) or step.attrs.get("spatial", 1) != 1:
        return None
    vectors = [constants[n] for n in names]
    if any(v.shape != (channels,) or v.dtype.kind != "f" for v in vectors):
        return None
    return bn_scale_shift(*vectors, step.attrs.get("epsilon", 1e-5))


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


def _conv_fn(x, w, b=None, u=None, u_small=None, _out=None, **attrs):
    return conv_forward(x, w, b, u, u_small, _out=_out, **attrs)


class _Bound:
    """A step's call laid out once for its plan's input shapes (``_bind``): the step's
    other inputs, constants, and its attributes are inside it."""

    def __init__(self, call: Callable[[np.ndarray, np.ndarray | None], np.ndarray]) -> None:
        self.call = call

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
        len(outs) == 1 and outs[0].size == x.size and outs[0].dtype == x.dtype
        and x.flags.c_contiguous and outs[0].flags.c_contiguous
        and outs[0].__array_interface__["data"][0] == x.__array_interface__["data"][0]
    )  # fmt: skip


def _reshape_to(shape: tuple[int, ...]) -> Callable[[np.ndarray, np.ndarray | None], np.ndarray]:
    def reshape(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return x.reshape(shape)

    return reshape


def _gemm_relu(a, b, c=None, _out=None, **attrs):
    return gemm_call(a.shape, a.dtype, b, c, relu=True, **attrs)(a, _out and _out[0])


_conv_fn.prepare = conv.prepare
_gemm_relu.prepare = lambda x, args, attrs: gemm_call(x.shape, x.dtype, *args, relu=True, **attrs)


def _writes_out(fn: Callable) -> bool:
    return "_out" in inspect.signature(fn).parameters


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
        if step.op_type == "Conv" and step.fn is not _conv_fn:
            steps[i] = step = replace(step, fn=_conv_fn)
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
                and (ab := _bn_params(nxt, constants, m)) is not None
            ):
                a, c = ab
                bias = constants[b_name] if b_name else np.zeros(w.shape[0], np.float32)
                wf, bf = f"{w_name}::bnfold{i}", f"{w_name}::bnbias{i}"
                constants[wf] = (w * a.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
                constants[bf] = (bias * a + c).astype(np.float32)
                fused = replace(step, inputs=(step.inputs[0], wf, bf), outputs=nxt.outputs)
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
                and (ab := _bn_params(nxt, constants, m)) is not None
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
                steps[i] = fused
                del steps[j]
                continue  # try to fuse the next one into the same conv
        if step.op_type == "Gemm" and nxt is not None and nxt.op_type == "Relu":
            steps[i] = replace(step, fn=_gemm_relu, outputs=nxt.outputs)
            del steps[j]
            continue
        i += 1
    return steps


def _winograd(steps: list[Step], constants: dict[str, np.ndarray]) -> list[Step]:
    """Give each Winograd-worthy conv its transformed weights, as a fourth input (and
    for 3x3 kernels a fifth: F(2x2, 3x3)'s, for small batches).

    Worthy: 2-D, square kernel, dilation 1, group 1, constant weights, equal strides
    s, a kernel of ceil(k/s) in ``winograd.TILE``, and at least
    ``WINOGRAD_MIN_CHANNELS`` channels in (C*s*s) and out, so that the a*a products
    fill the micro-kernel's panels of 32 output channels (``packed_gemm``). A stride
    above 1 runs as the stride-1 convolution of the space-to-depth input (AlexNet's
    11x11/4 conv1: 3x3 over 48 channels).
    """
    for i, step in enumerate(steps):
        if step.op_type != "Conv" or step.fn is not _conv_fn:
            continue
        w = constants.get(step.inputs[1])
        attrs = step.attrs
        strides = list(attrs.get("strides") or [1, 1])
        if (
            w is None
            or w.ndim != 4
            or w.dtype != np.float32
            or w.shape[2] != w.shape[3]
            or len(set(strides)) != 1
            or attrs.get("group", 1) != 1
            or any(d != 1 for d in attrs.get("dilations") or [1])
        ):
            continue
        s = strides[0]
        kk = -(-w.shape[2] // s)
        if kk not in winograd.TILE or min(w.shape[0], w.shape[1] * s * s) < WINOGRAD_MIN_CHANNELS:
            continue
        ws = winograd.space_to_depth_weights(w, s) if s > 1 else w
        names = []
        for tile in (winograd.TILE[kk], winograd.SMALL_TILE.get(kk)):
            if tile:
                names.append(f"{step.inputs[1]}::winograd{i}_{tile}")
                constants[names[-1]] = winograd.transform_weights(ws, tile)
        bias = step.inputs[2] if len(step.inputs) > 2 else ""
        steps[i] = replace(step, inputs=(step.inputs[0], step.inputs[1], bias, *names))
    return steps


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
            steps = _winograd(steps, constants)
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

    def _build_plan(self, feeds: Mapping[str, np.ndarray]) -> tuple[Plan, dict]:
        """Run once, marking shape-only tensors; they become the plan's constants."""
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
        if program is not None and list(output_names) == [program.output_name]:
            return [program.run(feeds[program.input_name])]
        arena = self._arena(key, plan)
        env = {**plan.constants, **feeds}
        with around_steps():
            for step, dead, slots in zip(plan.steps, plan.release, plan.out_slots, strict=True):
                out = None if slots is None else tuple(arena[s] if s is not None else None
                                                       for s in slots)  # fmt: skip
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

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> list[tuple[Step, dict]]:
        """Every step with the tensors it produced, in order (for bisection)."""
        env: dict[str, np.ndarray] = {**self.constants, **feeds}
        trace = []
        for step in self.steps:
            results = call_step(step, env)
            _store(step, results, env)
            trace.append((step, {o: r for o, r in zip(step.outputs, results, strict=False) if o}))
        return trace
