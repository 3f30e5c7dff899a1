"""A plan: what runs for one set of input shapes, and how it is built.

Per input shape (the first run with that shape; ``NumbaEngine`` caches the plan),
tensors that depend only on shapes (``Shape`` and what is computed from it) fold
into constants, so shape subgraphs vanish from the steps that repeated runs
execute. A plan that qualifies becomes one compiled program, built from shapes
alone (``shapes_only``: the program's ops only report their output shapes);
otherwise it runs step by step, its intermediate tensors released after their last
use and written into planned buffers (``runtime/buffers.py``), each step bound to
its shapes (``runtime/bind.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from runtime import errors
from runtime.bind import bind
from runtime.buffers import Slots, SlotSpecs, plan_buffers, release_after
from runtime.compiled import PROGRAM_OPS, NotCompilableError, Program, compile_program
from runtime.memory import check_size
from runtime.ops.nn import gemm_shape, pool_setup
from runtime.steps import Step, call_step, store


@dataclass
class Plan:
    steps: list[Step]
    constants: dict[str, np.ndarray]
    release: list[tuple[str, ...]]  # after step i, drop these tensors
    out_slots: Slots  # step i writes output j into slot k
    slot_specs: SlotSpecs  # shape and dtype of each slot
    program: Program | None = None  # the whole plan as one compiled call, when it qualifies
    not_compiled: str = ""  # why not, otherwise
    slot_offsets: list[int] = field(default_factory=list)  # each slot's bytes in the arena


class _ShapesOnlyError(Exception):
    """A plan that is better built by running it (``shapes_only``)."""


def _outside_programs(steps: Sequence[Step]) -> str | None:
    """Why ``steps`` cannot be one compiled program though their ops may: a conv with a
    residual Add fused into it (the program's conv rows take no second tensor)."""
    for step in steps:
        if step.attrs.get("residual"):
            return f"{step.node.describe()}: a residual Add fused into it has no compiled form"
    return None


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


def shapes_only(
    steps: Sequence[Step], constants: Mapping[str, np.ndarray], feeds: Mapping[str, np.ndarray]
) -> tuple[list[Step], dict, set] | None:
    """The plan's steps and tensors of its shapes, without running its heavy ops:
    shape arithmetic and constants run for real, each op a compiled program can
    take gets an empty output of its shape (``PROGRAM_OPS``). None when another op
    is in the way (the plan could not compile) or anything fails (the real run then
    raises the typed error)."""
    env: dict[str, np.ndarray] = {**constants, **feeds}
    static = set(constants)
    kept: list[Step] = []
    try:
        with np.errstate(all="ignore"):
            for step in steps:
                if step.op_type == "Shape" or all(not n or n in static for n in step.inputs):
                    store(step, call_step(step, env), env)
                    static.update(o for o in step.outputs if o)
                    continue
                if step.op_type not in PROGRAM_OPS or any(step.outputs[1:]):
                    return None
                try:
                    store(step, (_empty_output(step, env),), env)
                except errors.TensorTooLargeError as exc:
                    raise type(exc)(f"{step.node.describe()}: {exc}") from None
                kept.append(step)
    except errors.TensorTooLargeError:
        raise
    except Exception:  # the real run reports it, with its node (_ShapesOnlyError too)
        return None
    return kept, env, static


def compiled_plan(
    steps: Sequence[Step],
    constants: Mapping[str, np.ndarray],
    feeds: Mapping[str, np.ndarray],
    output_names: Sequence[str],
) -> Plan | None:
    """A plan that is one compiled program, made from shapes alone, or None."""
    if _outside_programs(steps) is not None:
        return None
    found = shapes_only(steps, constants, feeds)
    if found is None:
        return None
    kept, env, static = found
    consts = {n: env[n] for n in static if n in env}
    try:
        program = compile_program(kept, env, consts, feeds, output_names)
    except NotCompilableError:
        return None
    except Exception:  # bad weights the shapes-only run did not check: the real
        return None  # run raises the op's typed error, naming its node
    return Plan(kept, consts, [() for _ in kept], [None for _ in kept], [], program)


def build_plan(
    steps: Sequence[Step],
    constants: Mapping[str, np.ndarray],
    feeds: Mapping[str, np.ndarray],
    output_names: Sequence[str],
    *,
    compile_plans: bool,
    bind_steps: bool,
) -> tuple[Plan, dict]:
    """The plan for ``feeds``' shapes, and the tensors of the run that built it (empty
    for a compiled program). A compiled program when the plan qualifies (nothing runs
    step by step, so only the program's kernels compile); otherwise run once, marking
    shape-only tensors, which become the plan's constants. ``bind_steps``: lay each
    step out for the shapes (``bind``)."""
    if compile_plans:
        plan = compiled_plan(steps, constants, feeds, output_names)
        if plan is not None:
            return plan, {}
    env: dict[str, np.ndarray] = {**constants, **feeds}
    static = set(constants)
    kept: list[Step] = []
    for step in steps:
        results = call_step(step, env)
        store(step, results, env)
        if step.op_type == "Shape" or all(not n or n in static for n in step.inputs):
            static.update(o for o in step.outputs if o)
        else:
            kept.append(step)
    consts = {n: env[n] for n in static if n in env}
    wanted = set(output_names)
    fixed = set(consts) | set(feeds)
    release = release_after(kept, fixed, wanted)
    out_slots, specs, offsets = plan_buffers(kept, env, fixed, wanted)
    plan = Plan(kept, consts, release, out_slots, specs, slot_offsets=offsets)
    if compile_plans:
        try:
            why = _outside_programs(kept)
            if why is not None:
                raise NotCompilableError(why)
            plan.program = compile_program(kept, env, consts, feeds, output_names)
        except NotCompilableError as exc:
            plan.not_compiled = str(exc)
    if bind_steps:
        plan.steps = bind(kept, env, consts)
    return plan, env
