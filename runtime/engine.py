"""The Numba backend: a validated graph becomes a list of steps, optimised once, then
planned per input shape; the plans are cached, and runs execute them.

At load (shape-free):
  * every op is looked up for the model's opset; all unsupported ops are reported
    together; each node is held against its op's ONNX schema and becomes a step
    (``runtime/steps.py``);
  * the rewrite passes run in the order of ``passes.PASSES`` (``runtime/passes.py``):
    constant folding, Identity and Dropout removal, the conv epilogue fusions
    (BatchNormalization into the weights, a per-channel Add into the bias,
    activation, BatchNormalization after it, MaxPool), squeeze-and-excitation blocks
    as one step, Gemm + Relu, and each Conv's load-time algorithm.

Per input shape (first run with that shape): a plan (``runtime/plan.py``): one
compiled program, or steps bound to the shapes (``runtime/bind.py``) writing into
planned buffers (``runtime/buffers.py``). This module keeps the plans, at most
``config.MAX_PLANS`` of them, and each thread's buffers, and runs them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import numpy as np

from runtime import kernel_table
from runtime.bind import Bound
from runtime.buffers import slot_buffers
from runtime.config import MAX_PLANS
from runtime.description import Description, StepInfo
from runtime.graph import Graph
from runtime.ops import resolve
from runtime.passes import StepGraph, apply_passes
from runtime.plan import Plan, build_plan
from runtime.steps import (
    RUN_ERRORS,
    Step,
    call_step,
    check_supported,
    make_step,
    node_error,
    store,
)
from runtime.validate import Known, check_outputs


def _info(step: Step, choice: kernel_table.Choice | None = None) -> StepInfo:
    """A step for ``describe``: the bound call's choice, else the load-time one."""
    choice = choice or getattr(step.fn, "choice", None) or step.choice
    if choice is None:  # the kernels its op declares (``register``), else NumPy
        version = resolve(step.op_type, step.since)
        kernels = version.kernels if version is not None else ()
        what = "numba " + ", ".join(k.split(".")[1].lstrip("_") for k in kernels)
        choice = kernel_table.Choice(what if kernels else "numpy", "", kernels)
    bound = isinstance(step.fn, Bound)
    return StepInfo(
        step.node.name,
        step.op_type,
        step.fused,
        choice.algorithm,
        choice.reason,
        bound,
        choice.runs,
    )


def _runners(plan: Plan, buffers: list[np.ndarray]) -> list[tuple]:
    """Each step of a step-by-step plan as what ``NumbaEngine.run`` calls, worked out
    once per plan and thread: (bound, call, input names, attributes, planned buffers,
    output names, tensors to drop after it). A bound step with one input tensor
    (``bind.Bound`` without a residual) is its call on that tensor and its buffer
    (bound True; the input and the output then one name each); any other step is its
    function on its inputs, trailing omitted ones left off as ``call_step`` does. The
    loop then makes no per-step lookups of slots, tuples of buffers or ``Bound`` call:
    Python that a plan of hundreds of small steps paid on every call."""
    runners: list[tuple] = []
    for step, dead, slots in zip(plan.steps, plan.release, plan.out_slots, strict=True):
        out = None if slots is None else tuple(buffers[s] if s is not None else None for s in slots)
        fn = step.fn
        single = len(step.outputs) == 1 and bool(step.outputs[0])
        if isinstance(fn, Bound) and not fn.residual and single and step.inputs[0]:
            runners.append(
                (True, fn.call, step.inputs[0], None, out and out[0], step.outputs[0], dead)
            )
            continue
        names = list(step.inputs)
        while names and not names[-1]:
            names.pop()
        runners.append((False, fn, tuple(names), step.attrs, out, step.outputs, dead))
    return runners


@dataclass(frozen=True)
class CacheInfo:
    """What ``NumbaEngine.cache_info`` reports."""

    plans: int  # input shapes with a plan now
    max_plans: int  # the most it keeps (``config.MAX_PLANS``): the oldest goes first
    buffers: int  # plans with buffers allocated for the calling thread


class NumbaEngine:
    """Executes one graph. Thread-safe: runs share only immutable plans and constants."""

    def __init__(self, graph: Graph, *, optimize: bool = True, compile_plans: bool = True) -> None:
        """``optimize=False`` keeps one step per node (bisection compares every node);
        ``compile_plans=False`` runs every plan step by step (see ``runtime/compiled.py``)."""
        check_supported(graph)
        self.graph = graph
        self.output_names = tuple(o.name for o in graph.outputs)
        known = Known.of(graph.initializers, graph.inputs)
        steps = tuple(make_step(n, graph.opset, known) for n in graph.nodes)
        check_outputs(graph.outputs, known)
        g = StepGraph(steps, dict(graph.initializers), frozenset(self.output_names))
        self.passes: tuple[str, ...] = ()  # the rewrite passes that changed the steps
        if optimize:
            g, self.passes = apply_passes(g)
        self.optimize = optimize
        self.compile_plans = optimize and compile_plans
        self.steps: tuple[Step, ...] = g.steps
        self.constants = g.constants
        self._plans: dict[tuple, Plan] = {}
        self._lock = threading.Lock()
        self._local = threading.local()

    # A plan is specific to the shapes of the feeds.
    def _key(self, feeds: Mapping[str, np.ndarray]) -> tuple:
        return tuple((name, feeds[name].shape, feeds[name].dtype.str) for name in sorted(feeds))

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
            plan, env = self._new_plan(key, feeds, around_steps)
            if plan.program is None:
                return [env[n] for n in output_names]
        # A compiled program also answers the first call: every call gives the same bits.
        program = plan.program
        if program is not None:  # the graph's one output: the names are that, or none
            y = program.run(feeds[program.input_name])
            return [y for _ in output_names]
        runners = self._arena(key, plan)[1]
        env = {**plan.constants, **feeds}
        i = 0
        with around_steps():
            # ``call_step`` and ``store``, unrolled (``_runners`` says why); i names the
            # step that failed
            try:
                for i, (bound, call, names, attrs, out, outs, dead) in enumerate(runners):  # noqa: B007
                    if bound:  # a bound call: the tensor and the planned buffer
                        result = call(env[names], out)
                        # an op of several outputs (LSTM's Y, Y_h, Y_c) whose step
                        # keeps only the first
                        env[outs] = result[0] if type(result) is tuple else result
                    else:
                        args = [env[n] if n else None for n in names]
                        if out is None:
                            result = call(*args, **attrs)
                        else:
                            result = call(*args, **attrs, _out=out)
                        if type(result) is tuple:
                            for name, value in zip(outs, result, strict=False):
                                if name:
                                    env[name] = value
                        elif outs[0]:
                            env[outs[0]] = result
                    for name in dead:
                        env.pop(name, None)
            except RUN_ERRORS as exc:
                raise node_error(plan.steps[i], exc) from None
        return [env[n] for n in output_names]

    def step_calls(
        self, feeds: Mapping[str, np.ndarray]
    ) -> Iterator[tuple[Step, dict[str, np.ndarray], Callable[[], tuple[np.ndarray, ...]]]]:
        """The plan for ``feeds`` one step at a time, as ``run`` runs it: (step, the
        tensors so far, a call that runs the step into them and returns its results), in
        order; each call must be made before the next item is taken. Nothing for a
        compiled program (build the engine with ``compile_plans=False``). For timing
        steps: ``runtime/profile.py``."""
        key = self._key(feeds)
        plan = self.plan(feeds)
        if plan.program is not None:
            return
        arena = self._arena(key, plan)[0]
        env = {**plan.constants, **feeds}
        for step, dead, slots in zip(plan.steps, plan.release, plan.out_slots, strict=True):
            out = (
                None if slots is None else tuple(arena[s] if s is not None else None for s in slots)
            )

            def call(step: Step = step, out: tuple | None = out, dead: tuple = dead) -> tuple:
                results = call_step(step, env, out)
                store(step, results, env)
                for name in dead:
                    env.pop(name, None)
                return results

            yield step, env, call

    def _new_plan(
        self,
        key: tuple,
        feeds: Mapping[str, np.ndarray],
        around_steps: Callable[[], AbstractContextManager] = nullcontext,
    ) -> tuple[Plan, dict]:
        """Build and keep the plan for ``feeds``; also the tensors of the run that built
        it (none for a compiled program)."""
        with around_steps():
            plan, env = build_plan(
                self.steps,
                self.constants,
                feeds,
                self.output_names,
                compile_plans=self.compile_plans,
                bind_steps=self.optimize,
            )
        with self._lock:
            if len(self._plans) >= MAX_PLANS:  # many shapes: keep the newest ones
                self._plans.pop(next(iter(self._plans)))
            self._plans.setdefault(key, plan)
        return plan, env

    def _arena(self, key: tuple, plan: Plan) -> tuple[list[np.ndarray], list[tuple]]:
        """This thread's buffers for ``plan`` (threads never share a buffer), and its
        steps as ``_runners`` over them."""
        arenas = getattr(self._local, "arenas", None)
        if arenas is None:
            arenas = self._local.arenas = {}
        arena = arenas.get(key)
        if arena is None:
            for stale in [k for k in arenas if k not in self._plans]:
                del arenas[stale]  # the plan was evicted: so are its buffers
            buffers = slot_buffers(plan.slot_specs, plan.slot_offsets)
            arena = arenas[key] = (buffers, _runners(plan, buffers))
        return arena

    def plan(self, feeds: Mapping[str, np.ndarray]) -> Plan:
        """The plan for ``feeds``' shapes, built now (by a run) if it is not cached."""
        key = self._key(feeds)
        plan = self._plans.get(key)
        return plan if plan is not None else self._new_plan(key, feeds)[0]

    def cache_info(self) -> CacheInfo:
        """How many plans are kept, and for how many the calling thread holds buffers."""
        arenas = getattr(self._local, "arenas", {})
        return CacheInfo(len(self._plans), MAX_PLANS, len(arenas))

    def describe(self, feeds: Mapping[str, np.ndarray] | None = None) -> Description:
        """Each step of the plan for ``feeds`` (built now if needed; None: the newest
        plan, or the load-time choices when nothing ran yet)."""
        plan = None
        if feeds is not None:
            key = self._key(feeds)
            plan = self.plan(feeds)
        elif self._plans:
            key, plan = next(reversed(self._plans.items()))
        if plan is None:
            return Description(
                None, False, "no plan yet", tuple(_info(s) for s in self.steps), self.passes
            )
        shapes = {name: shape for name, shape, _ in key}
        if plan.program is not None:
            info = tuple(_info(s, c) for s, c in zip(plan.steps, plan.program.choices, strict=True))
            return Description(shapes, True, "", info, self.passes)
        info = tuple(_info(s) for s in plan.steps)
        return Description(shapes, False, plan.not_compiled, info, self.passes)

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> list[tuple[Step, dict]]:
        """Every step with the tensors it produced, in order (for bisection)."""
        env: dict[str, np.ndarray] = {**self.constants, **feeds}
        trace = []
        for step in self.steps:
            results = call_step(step, env)
            store(step, results, env)
            trace.append((step, {o: r for o, r in zip(step.outputs, results, strict=False) if o}))
        return trace
