"""The rewrite passes: named graph-to-graph rewrites, applied at load in the order of
``PASSES``.

Each pass takes a ``StepGraph`` (the steps, the constants, the graph's output names)
and returns the rewritten one; it has one job, said by its name and docstring. The
engine applies ``PASSES`` in order when it optimises (``NumbaEngine(optimize=True)``,
always for a session) and keeps the names it applied, which ``describe()`` prints.
The order matters: constants fold first, so that a fusion sees folded weights; a
conv's epilogue is filled in the order it runs (activation, then scale and shift,
then the pool); the algorithm is chosen last, on the conv that will run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from runtime import kernel_table
from runtime.ops.nn import bn_affine, fused_conv, fused_gemm
from runtime.steps import Step, call_step, consumers, store

REMOVABLE = ("Identity", "Dropout")  # Dropout at inference passes its input through


@dataclass(frozen=True)
class StepGraph:
    """What a pass rewrites. ``constants`` is never changed in place: a pass that adds
    constants returns a new dict."""

    steps: tuple[Step, ...]
    constants: dict[str, np.ndarray]
    outputs: frozenset[str]  # the graph's outputs: never fused away or renamed


@dataclass(frozen=True)
class Pass:
    name: str
    fn: Callable[[StepGraph], StepGraph]


def fold_constants(g: StepGraph) -> StepGraph:
    """Run, once, every step whose inputs are all constants; its outputs become constants."""
    constants = dict(g.constants)
    kept = []
    for step in g.steps:
        if all(not n or n in constants for n in step.inputs):
            store(step, call_step(step, constants), constants)
        else:
            kept.append(step)
    return replace(g, steps=tuple(kept), constants=constants)


def remove_identities(g: StepGraph) -> StepGraph:
    """Drop Identity and inference Dropout; their readers read the input instead."""
    rename: dict[str, str] = {}
    kept = []
    for step in g.steps:
        if any(n in rename for n in step.inputs):
            step = replace(step, inputs=tuple(rename.get(n, n) for n in step.inputs))
        extra_used = any(o for o in step.outputs[1:])  # Dropout's mask output is read
        if step.op_type in REMOVABLE and step.outputs[0] not in g.outputs and not extra_used:
            rename[step.outputs[0]] = step.inputs[0]
            continue
        kept.append(step)
    return replace(g, steps=tuple(kept))


def use_fused_conv(g: StepGraph) -> StepGraph:
    """Every Conv runs as ``nn.fused_conv``: the conv whose epilogue takes what the
    passes below fuse into it (and whose weights ``choose_conv_algorithms`` reads)."""
    steps = tuple(
        replace(s, fn=fused_conv) if s.op_type == "Conv" and s.fn is not fused_conv else s
        for s in g.steps
    )
    return replace(g, steps=steps)


def _only_user(steps: list[Step], i: int, outputs: frozenset[str]) -> int | None:
    """Index of the single step that reads step i's single output, if fusing is safe."""
    out = steps[i].outputs
    if len([o for o in out if o]) != 1 or out[0] in outputs:
        return None
    users = consumers(steps).get(out[0], [])
    return users[0] if len(users) == 1 else None


FuseRule = Callable[[Step, Step, int, dict], "Step | None"]


def _fuse_pairs(g: StepGraph, head: str, rule: FuseRule) -> StepGraph:
    """Fuse into each ``head`` step the single reader of its output while ``rule``
    returns the fused step (rule(step, reader, index, constants); it may add constants).
    A fused step records the reader's op in ``Step.fused`` unless the rule did."""
    steps = list(g.steps)
    constants = dict(g.constants)
    i = 0
    while i < len(steps):
        step = steps[i]
        j = _only_user(steps, i, g.outputs) if step.op_type == head else None
        fused = None if j is None else rule(step, steps[j], i, constants)
        if fused is None:
            i += 1
            continue
        if len(fused.fused) == len(step.fused):
            fused = replace(fused, fused=(*step.fused, steps[j].op_type))
        steps[i] = fused
        del steps[j]  # and try to fuse the next one into the same step
    return replace(g, steps=tuple(steps), constants=constants)


def _out_channels(step: Step, constants: dict) -> int | None:
    w = constants.get(step.inputs[1])
    return w.shape[0] if w is not None and w.ndim >= 3 else None


def _fold_bn(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    a = step.attrs
    if "max_pool" in a or "activation" in a or nxt.op_type != "BatchNormalization":
        return None
    w_name = step.inputs[1]
    b_name = step.inputs[2] if len(step.inputs) > 2 else ""
    m = _out_channels(step, constants)
    consts_ok = m is not None and (
        not b_name or (b_name in constants and constants[b_name].shape == (m,))
    )
    if not consts_ok or nxt.inputs[0] != step.outputs[0]:
        return None
    ab = bn_affine(nxt.inputs, nxt.attrs, constants, m)
    if ab is None:
        return None
    scale, shift = ab
    w = constants[w_name]
    bias = constants[b_name] if b_name else np.zeros(w.shape[0], np.float32)
    wf, bf = f"{w_name}::bnfold{i}", f"{w_name}::bnbias{i}"
    constants[wf] = (w * scale.reshape(-1, *([1] * (w.ndim - 1)))).astype(np.float32)
    constants[bf] = (bias * scale + shift).astype(np.float32)
    return replace(
        step,
        inputs=(step.inputs[0], wf, bf),
        outputs=nxt.outputs,
        fused=(*step.fused, "BatchNormalization (in the weights)"),
    )


def fuse_conv_bn(g: StepGraph) -> StepGraph:
    """Fold a BatchNormalization that reads a Conv's output into that conv's weights
    and bias (the conv has no activation yet; its weights and bias are constants)."""
    return _fuse_pairs(g, "Conv", _fold_bn)


FLOAT_MAX = float(np.finfo(np.float32).max)


def _scalar(step: Step, i: int, constants: dict) -> float | None:
    """Input i of ``step`` as a Python float: absent (None), or a one-value constant."""
    name = step.inputs[i] if len(step.inputs) > i else ""
    if not name:
        return None
    value = constants.get(name)
    if value is None or value.size != 1 or value.dtype.kind != "f":
        raise LookupError(name)  # not a constant scalar: not fusable
    return float(value.reshape(()))


def activation_of(step: Step, constants: dict) -> tuple[str, float, float] | None:
    """The epilogue activation (``kernels.activation.ACTIVATIONS``) with its alpha and
    beta that ``step`` computes, or None where a step is not one the epilogue applies."""
    op, a = step.op_type, step.attrs
    if op in ("Relu", "Tanh", "Sigmoid"):
        return op, 0.0, 0.0
    if op == "LeakyRelu":
        return op, float(a.get("alpha", 0.01)), 0.0
    if op == "HardSigmoid":
        return op, float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if op == "HardSwish":
        return op, 1.0 / 6.0, 0.5
    if op != "Clip":
        return None
    if step.since < 11:
        return op, float(a.get("min", -FLOAT_MAX)), float(a.get("max", FLOAT_MAX))
    try:
        lo, hi = _scalar(step, 1, constants), _scalar(step, 2, constants)
    except LookupError:
        return None
    return op, -np.inf if lo is None else lo, np.inf if hi is None else hi


def _activation(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    a = step.attrs
    if "max_pool" in a or "activation" in a or "post_scale" in a:
        return None
    found = activation_of(nxt, constants)
    if found is None or nxt.inputs[0] != step.outputs[0]:
        return None
    name, alpha, beta = found
    attrs = {**a, "activation": name, "alpha": alpha, "beta": beta}
    return replace(step, attrs=attrs, outputs=nxt.outputs)


def _silu(g: StepGraph) -> StepGraph:
    """Conv -> Sigmoid and Mul(conv, sigmoid): SiLU in the conv's epilogue."""
    steps = list(g.steps)
    i = 0
    while i < len(steps):
        step = steps[i]
        a = step.attrs
        if step.op_type != "Conv" or {"max_pool", "activation", "post_scale"} & set(a):
            i += 1
            continue
        y = step.outputs[0]
        users = consumers(steps)
        readers = users.get(y, [])
        sig = [j for j in readers if steps[j].op_type == "Sigmoid"]
        ok = len(readers) == 2 and len(sig) == 1 and y not in g.outputs
        if ok:
            s = steps[sig[0]]
            (m,) = [j for j in readers if j != sig[0]]
            mul = steps[m]
            ok = (
                mul.op_type == "Mul"
                and sorted(mul.inputs) == sorted((y, s.outputs[0]))
                and users.get(s.outputs[0], []) == [m]
                and s.outputs[0] not in g.outputs
            )
        if not ok:
            i += 1
            continue
        attrs = {**a, "activation": "SiLU", "alpha": 0.0, "beta": 0.0}
        steps[i] = replace(
            step, attrs=attrs, outputs=mul.outputs, fused=(*step.fused, "Sigmoid", "Mul")
        )
        for j in sorted((sig[0], m), reverse=True):
            del steps[j]
        i += 1
    return replace(g, steps=tuple(steps))


def fuse_conv_activation(g: StepGraph) -> StepGraph:
    """Apply the activation after a Conv in the conv's epilogue: Relu, LeakyRelu, Tanh,
    Sigmoid, Clip (Relu6) with constant bounds, HardSigmoid, HardSwish, and SiLU where
    an exporter writes it as Sigmoid then Mul (EfficientNet's Swish)."""
    return _fuse_pairs(_silu(g), "Conv", _activation)


def _post_bn(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    a = step.attrs
    if "max_pool" in a or "activation" not in a or "post_scale" in a:
        return None
    if nxt.op_type != "BatchNormalization" or nxt.inputs[0] != step.outputs[0]:
        return None
    ab = bn_affine(nxt.inputs, nxt.attrs, constants, _out_channels(step, constants))
    if ab is None:
        return None
    return replace(step, attrs={**a, "post_scale": ab[0], "post_shift": ab[1]}, outputs=nxt.outputs)


def fuse_conv_activation_bn(g: StepGraph) -> StepGraph:
    """Apply a BatchNormalization after a conv's fused activation (as in the article's
    AlexNet) as a per-channel scale and shift in the epilogue, after the activation."""
    return _fuse_pairs(g, "Conv", _post_bn)


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


def _max_pool(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    if "max_pool" in step.attrs or nxt.op_type != "MaxPool":
        return None
    pool = _plain_max_pool(nxt, constants.get(step.inputs[1]))
    if pool is None:
        return None
    return replace(step, attrs={**step.attrs, "max_pool": pool}, outputs=nxt.outputs[:1])


def fuse_conv_max_pool(g: StepGraph) -> StepGraph:
    """Pool a conv's output in its epilogue (a MaxPool without padding, dilation, ceil
    mode or indices; the Winograd output transform pools each plane while it is in
    cache). The pool ends the epilogue: nothing fuses after it."""
    return _fuse_pairs(g, "Conv", _max_pool)


def _gemm_relu(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    if "activation" in step.attrs or nxt.op_type != "Relu":
        return None
    attrs = {**step.attrs, "activation": "Relu"}
    return replace(step, fn=fused_gemm, attrs=attrs, outputs=nxt.outputs)


def fuse_gemm_relu(g: StepGraph) -> StepGraph:
    """Apply a Relu after a Gemm in the GEMM's store (``nn.fused_gemm``)."""
    return _fuse_pairs(g, "Gemm", _gemm_relu)


def choose_conv_algorithms(g: StepGraph) -> StepGraph:
    """Each Conv's load-time algorithm (``kernel_table.conv_at_load``), recorded on its step;
    a Winograd-worthy one gets its ``WinogradWeights``, transformed on first use."""
    steps = list(g.steps)
    for i, step in enumerate(steps):
        if step.op_type != "Conv" or step.fn is not fused_conv:
            continue
        choice, weights = kernel_table.conv_at_load(g.constants.get(step.inputs[1]), step.attrs)
        attrs = dict(step.attrs)
        if weights is not None:
            attrs["winograd"] = weights
        steps[i] = replace(step, attrs=attrs, choice=choice)
    return replace(g, steps=tuple(steps))


PASSES: tuple[Pass, ...] = (
    Pass("fold_constants", fold_constants),
    Pass("remove_identities", remove_identities),
    Pass("use_fused_conv", use_fused_conv),
    Pass("fuse_conv_bn", fuse_conv_bn),
    Pass("fuse_conv_activation", fuse_conv_activation),
    Pass("fuse_conv_activation_bn", fuse_conv_activation_bn),
    Pass("fuse_conv_max_pool", fuse_conv_max_pool),
    Pass("fuse_gemm_relu", fuse_gemm_relu),
    Pass("choose_conv_algorithms", choose_conv_algorithms),
)


def apply_passes(
    g: StepGraph, passes: tuple[Pass, ...] = PASSES
) -> tuple[StepGraph, tuple[str, ...]]:
    """``g`` rewritten by each pass in order, and the names of the passes that changed
    its steps."""
    changed = []
    for p in passes:
        before = g.steps
        g = p.fn(g)
        same = len(g.steps) == len(before) and all(
            a is b for a, b in zip(g.steps, before, strict=True)
        )
        if not same:
            changed.append(p.name)
    return g, tuple(changed)
