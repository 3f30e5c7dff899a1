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
from runtime.ops.activations import gelu
from runtime.ops.nn import (
    SQUEEZE_EXCITE,
    bn_affine,
    fused_batch_norm,
    fused_conv,
    fused_gemm,
    fused_matmul,
    fused_squeeze_excite,
)
from runtime.ops.nn import conv as conv_op
from runtime.ops.normalization import CHANNELS, layer_norm_channels
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
    A fused step records the reader's op in ``Step.fused`` unless the rule did, and
    its node in ``Step.fused_nodes`` (an error in the fused part names that node)."""
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
        if len(fused.fused_nodes) == len(step.fused_nodes):
            reader = steps[j]
            fused = replace(
                fused, fused_nodes=(*step.fused_nodes, reader.node, *reader.fused_nodes)
            )
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


def _per_channel(value: np.ndarray | None, m: int, rank: int) -> np.ndarray | None:
    """``value`` as m float32 values, one per channel, when it is a float32 constant that
    broadcasts onto a (N, m, ...) tensor of ``rank`` along the channel axis alone (a
    scalar, (m, 1, 1), (1, m, 1, 1)...) without changing its shape; else None."""
    if value is None or value.dtype != np.float32 or value.ndim > rank:
        return None
    shape = (1,) * (rank - value.ndim) + value.shape
    if any(d != 1 for k, d in enumerate(shape) if k != 1) or shape[1] not in (1, m):
        return None
    return np.broadcast_to(value.reshape(-1), (m,)).astype(np.float32)


def _channel_operand(step: Step, nxt: Step, constants: dict) -> np.ndarray | None:
    """The per-channel constant (``_per_channel``) that ``nxt``, an Add or a Mul of conv
    step's output and a constant, combines it with; None for any other step."""
    y = step.outputs[0]
    w = constants.get(step.inputs[1])
    if nxt.op_type not in ("Add", "Mul") or w is None or w.ndim < 3:
        return None
    if len(nxt.inputs) != 2 or nxt.inputs.count(y) != 1:
        return None
    return _per_channel(constants.get(nxt.inputs[1 - nxt.inputs.index(y)]), w.shape[0], w.ndim)


def _bias_add(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    a = step.attrs
    if {"max_pool", "activation", "post_scale", "residual"} & set(a):
        return None
    value = _channel_operand(step, nxt, constants)
    w = constants.get(step.inputs[1])
    b_name = step.inputs[2] if len(step.inputs) > 2 else ""
    if value is None or w is None or w.dtype != np.float32:
        return None
    m = w.shape[0]
    bias = constants.get(b_name) if b_name else np.zeros(m, np.float32)
    if bias is None or bias.shape != (m,) or bias.dtype != np.float32:
        return None
    inputs = (step.inputs[0], step.inputs[1], f"{step.inputs[1]}::affinebias{i}")
    if nxt.op_type == "Add":
        constants[inputs[2]] = (bias + value).astype(np.float32)
        what = "Add (in the bias)"
    else:  # a Mul scales the weights and the bias
        inputs = (inputs[0], f"{step.inputs[1]}::affinew{i}", inputs[2])
        constants[inputs[1]] = (w * value.reshape(-1, *[1] * (w.ndim - 1))).astype(np.float32)
        constants[inputs[2]] = (bias * value).astype(np.float32)
        what = "Mul (in the weights)"
    return replace(step, inputs=inputs, outputs=nxt.outputs, fused=(*step.fused, what))


def fuse_conv_bias_add(g: StepGraph) -> StepGraph:
    """Fold an Add or a Mul of a per-channel constant after a Conv into the conv's bias,
    or weights and bias (a bias written as its own node, as Paddle exports its
    squeeze-and-excitation convs; the learnable scale and bias PP-LCNetV3 puts after
    each conv); the conv has no activation yet; its weights and bias are constants."""
    return _fuse_pairs(g, "Conv", _bias_add)


def fuse_conv_residual_add(g: StepGraph) -> StepGraph:
    """Add a Conv's output to a tensor computed before the conv (a residual connection:
    MobileNetV2's and PP-LCNet's inverted residuals, ResNet's blocks) in the conv's
    store, after the bias and before an activation fused later (ResNet's Relu after
    the Add): the Add's pass over both tensors goes. Only into a conv that runs
    Winograd or a GEMM in tiles at every shape (``kernel_table.residual_fits``), with
    no epilogue yet;
    the other operand is the conv's last input, and the step ``residual``."""
    steps = list(g.steps)
    constants = dict(g.constants)
    made = {o: k for k, s in enumerate(steps) for o in s.outputs if o}
    i = 0
    while i < len(steps):
        step = steps[i]
        j = _only_user(steps, i, g.outputs) if step.op_type == "Conv" else None
        add = None if j is None else steps[j]
        a = step.attrs
        if (
            add is None
            or add.op_type != "Add"
            or len(add.inputs) != 2
            or add.inputs.count(step.outputs[0]) != 1
            or step.fn is not fused_conv
            or {"max_pool", "activation", "post_scale", "residual"} & set(a)
            or not kernel_table.residual_fits(constants.get(step.inputs[1]), a)
        ):
            i += 1
            continue
        other = add.inputs[1 - add.inputs.index(step.outputs[0])]
        b_name = step.inputs[2] if len(step.inputs) > 2 else ""
        ready = other not in constants and made.get(other, -1) < i  # a feed, or made before
        if not ready or (b_name and b_name not in constants):
            i += 1
            continue
        if not b_name:
            w = constants[step.inputs[1]]
            b_name = f"{step.inputs[1]}::residualbias{i}"
            constants[b_name] = np.zeros(w.shape[0], np.float32)
        steps[i] = replace(
            step,
            inputs=(step.inputs[0], step.inputs[1], b_name, other),
            outputs=add.outputs,
            attrs={**a, "residual": True},
            fused=(*step.fused, "Add (residual)"),
            fused_nodes=(*step.fused_nodes, add.node, *add.fused_nodes),
        )
        del steps[j]
        made = {o: k for k, s in enumerate(steps) for o in s.outputs if o}
        i += 1
    return replace(g, steps=tuple(steps), constants=constants)


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


def _single_reader(users: dict[str, list[int]], name: str, outputs: frozenset[str]) -> int | None:
    """The index of the one step that reads ``name``, if it is not a graph output."""
    readers = users.get(name, [])
    return readers[0] if len(readers) == 1 and name not in outputs else None


def _other_scalar(step: Step, x: str, constants: dict) -> float | None:
    """The constant scalar that binary ``step`` combines with ``x`` (either side), or None."""
    if len(step.inputs) != 2 or step.inputs.count(x) != 1:
        return None
    try:
        return _scalar(step, 1 - step.inputs.index(x), constants)
    except LookupError:
        return None


def _is_sixth(step: Step, x: str, constants: dict) -> bool:
    """``step`` computes x / 6: Div(x, 6), or Mul by 1/6 (either side)."""
    if step.op_type == "Div":
        return step.inputs[0] == x and _other_scalar(step, x, constants) == 6.0
    value = _other_scalar(step, x, constants) if step.op_type == "Mul" else None
    return value is not None and abs(value - 1.0 / 6.0) < 1e-7


Gate = tuple[str, float, float, list[int], str]  # act, alpha, beta, its steps, its output
Gated = tuple[str, float, float, list[int], tuple[str, ...]]  # ..., the last step's outputs


def _gate(steps: list[Step], users: dict, j: int, y: str, g: StepGraph) -> Gate | None:
    """The gate that step j computes from y for a gated activation y * gate(y): Sigmoid
    (SiLU), HardSigmoid (HardSwish with its alpha and beta), or Add 3, Clip to [0, 6]
    and, optionally, a division by 6 (HardSwish as Paddle writes it; without the
    division the product is divided after the Mul)."""
    s = steps[j]
    if s.op_type in ("Sigmoid", "HardSigmoid") and s.inputs[0] == y:
        found = activation_of(s, g.constants)
        assert found is not None
        act = "SiLU" if s.op_type == "Sigmoid" else "HardSwish"
        return act, found[1] if act == "HardSwish" else 0.0, found[2], [j], s.outputs[0]
    if s.op_type != "Add" or _other_scalar(s, y, g.constants) != 3.0:
        return None
    c = _single_reader(users, s.outputs[0], g.outputs)
    clip = None if c is None else steps[c]
    if clip is None or clip.inputs[0] != s.outputs[0]:
        return None
    if activation_of(clip, g.constants) != ("Clip", 0.0, 6.0):
        return None
    d = _single_reader(users, clip.outputs[0], g.outputs)
    if d is not None and _is_sixth(steps[d], clip.outputs[0], g.constants):
        return "HardSwish", 1.0 / 6.0, 0.5, [j, c, d], steps[d].outputs[0]
    return "HardSwish/6", 1.0 / 6.0, 0.5, [j, c], clip.outputs[0]


def _gated(steps: list[Step], i: int, g: StepGraph) -> Gated | None:
    """The gated activation y * gate(y) read from conv step i's output y, as
    (act, alpha, beta, the steps it takes, the last one's outputs), or None. Its
    steps read only y and each other, and none of their tensors is read elsewhere."""
    y = steps[i].outputs[0]
    users = consumers(steps)
    readers = users.get(y, [])
    if len(readers) != 2 or readers[0] == readers[1] or y in g.outputs:
        return None  # two readers (one reading y twice, as Mul(y, y), is not a gate)
    for j in readers:
        (m,) = [r for r in readers if r != j]
        gate = _gate(steps, users, j, y, g)
        mul = steps[m]
        if gate is None or mul.op_type != "Mul" or sorted(mul.inputs) != sorted((y, gate[4])):
            continue
        act, alpha, beta, taken, z = gate
        if users.get(z, []) != [m] or z in g.outputs:
            continue
        taken = [*taken, m]
        if act == "HardSwish/6":  # Paddle: the product divided by 6 after the Mul
            d = _single_reader(users, mul.outputs[0], g.outputs)
            if d is None or not _is_sixth(steps[d], mul.outputs[0], g.constants):
                continue
            act, taken = "HardSwish", [*taken, d]
        return act, alpha, beta, taken, steps[taken[-1]].outputs
    return None


def _gated_activations(g: StepGraph) -> StepGraph:
    """A Conv's output y read by a gated activation y * gate(y) (``_gated``): SiLU as
    Sigmoid then Mul (EfficientNet's Swish), HardSwish as HardSigmoid then Mul
    (exports before opset 14) or as Add 3, Clip [0, 6], Mul, Div 6 (Paddle): the
    activation in the conv's epilogue."""
    steps = list(g.steps)
    i = 0
    while i < len(steps):
        step = steps[i]
        a = step.attrs
        if step.op_type != "Conv" or {"max_pool", "activation", "post_scale"} & set(a):
            i += 1
            continue
        found = _gated(steps, i, g)
        if found is None:
            i += 1
            continue
        act, alpha, beta, taken, outputs = found
        attrs = {**a, "activation": act, "alpha": alpha, "beta": beta}
        ops = tuple(steps[j].op_type for j in sorted(taken))
        steps[i] = replace(step, attrs=attrs, outputs=outputs, fused=(*step.fused, *ops))
        for j in sorted(taken, reverse=True):
            del steps[j]
        i += 1
    return replace(g, steps=tuple(steps))


def fuse_conv_activation(g: StepGraph) -> StepGraph:
    """Apply the activation after a Conv in the conv's epilogue: Relu, LeakyRelu, Tanh,
    Sigmoid, Clip (Relu6) with constant bounds, HardSigmoid, HardSwish, and the gated
    ones as exporters write them (``_gated_activations``: SiLU as Sigmoid then Mul,
    HardSwish as HardSigmoid then Mul or as Add, Clip, Mul, Div)."""
    return _fuse_pairs(_gated_activations(g), "Conv", _activation)


def _post_affine(step: Step, nxt: Step, constants: dict) -> Step | None:
    """An Add or a Mul of a per-channel constant after the conv's activation (and any
    scale and shift already after it), composed into its scale and shift."""
    a = step.attrs
    value = _channel_operand(step, nxt, constants)
    if value is None:
        return None
    m = value.shape[0]
    scale = a.get("post_scale", np.ones(m, np.float32))
    shift = a.get("post_shift", np.zeros(m, np.float32))
    if nxt.op_type == "Mul":
        scale, shift = scale * value, shift * value
    else:
        shift = shift + value
    attrs = {**a, "post_scale": scale.astype(np.float32), "post_shift": shift.astype(np.float32)}
    fused = (*step.fused, f"{nxt.op_type} (after the activation)")
    return replace(step, attrs=attrs, outputs=nxt.outputs, fused=fused)


def _post_bn(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    a = step.attrs
    if "max_pool" in a or "activation" not in a:
        return None
    if nxt.op_type in ("Add", "Mul"):
        return _post_affine(step, nxt, constants)
    if "post_scale" in a:
        return None
    if nxt.op_type != "BatchNormalization" or nxt.inputs[0] != step.outputs[0]:
        return None
    ab = bn_affine(nxt.inputs, nxt.attrs, constants, _out_channels(step, constants))
    if ab is None:
        return None
    return replace(step, attrs={**a, "post_scale": ab[0], "post_shift": ab[1]}, outputs=nxt.outputs)


def fuse_conv_activation_bn(g: StepGraph) -> StepGraph:
    """Apply a BatchNormalization after a conv's fused activation (as in the article's
    AlexNet) as a per-channel scale and shift in the epilogue, after the activation;
    so too Adds and Muls of per-channel constants there (PP-LCNetV3's learnable
    affine blocks after each activation)."""
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


def _pointwise_conv(step: Step, constants: dict) -> bool:
    """A Conv with constant 1x1 weights at stride 1, unpadded, group 1, whose epilogue
    holds at most an activation (what a squeeze-and-excitation block's convs are)."""
    w = constants.get(step.inputs[1])
    b_name = step.inputs[2] if len(step.inputs) > 2 else ""
    a = step.attrs
    return (
        step.op_type == "Conv"
        and step.fn is fused_conv
        and w is not None
        and w.dtype == np.float32
        and w.ndim >= 3
        and all(k == 1 for k in w.shape[2:])
        and (not b_name or b_name in constants)
        and a.get("group", 1) == 1
        and all(v == 1 for v in a.get("strides") or [1])
        and not any(a.get("pads") or [0])
        and a.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and not {"max_pool", "post_scale", "winograd", "residual"} & set(a)
    )


def _conv_act(step: Step) -> dict:
    a = step.attrs
    return {"act": a.get("activation"), "alpha": a.get("alpha", 0.01), "beta": a.get("beta", 0.0)}


def fuse_squeeze_excitation(g: StepGraph) -> StepGraph:
    """A squeeze-and-excitation block, GlobalAveragePool of x, a 1x1 Conv (and its
    fused activation), another, and Mul of x by that per-channel gate (MobileNetV3,
    EfficientNet, PP-LCNet), as one step (``nn.fused_squeeze_excite``): four small
    steps' calls and tensors become one step's. Each tensor between them has one
    reader and is not a graph output; the convs' weights and biases are constants."""
    steps = list(g.steps)
    constants = dict(g.constants)
    users = consumers(steps)
    k = 0
    while k < len(steps):
        mul = steps[k]
        found = None
        if mul.op_type == "Mul" and len(mul.inputs) == 2 and mul.inputs[0] != mul.inputs[1]:
            for side in (0, 1):
                found = _squeeze_excite_at(steps, users, k, side, constants, g.outputs)
                if found is not None:
                    break
        if found is None:
            k += 1
            continue
        fused, taken = found
        steps[k] = fused
        for j in sorted(taken, reverse=True):
            del steps[j]
        users = consumers(steps)
        k += 1 - len(taken)
    return replace(g, steps=tuple(steps), constants=constants)


def _producer(steps: list[Step], name: str) -> int | None:
    for j, s in enumerate(steps):
        if name in s.outputs:
            return j
    return None


def _squeeze_excite_at(
    steps: list[Step], users: dict, k: int, side: int, constants: dict, outputs: frozenset
) -> tuple[Step, list[int]] | None:
    """The fused step for the Mul at k, x * gate (the gate its input ``side``), and the
    indices of the pool and convs it replaces; None where the block does not match."""
    mul = steps[k]
    x, gate = mul.inputs[1 - side], mul.inputs[side]
    chain = []  # conv2, conv1, pool: each the single reader's producer
    name = gate
    for want in ("Conv", "Conv", "GlobalAveragePool"):
        j = _producer(steps, name)
        if j is None or steps[j].op_type != want or name in outputs:
            return None
        if users.get(name, []) != [chain[-1] if chain else k]:
            return None
        if want == "Conv" and not _pointwise_conv(steps[j], constants):
            return None
        chain.append(j)
        name = steps[j].inputs[0]
    if name != x or any(o for o in steps[chain[2]].outputs[1:]):
        return None
    conv2, conv1, pool = (steps[j] for j in chain)
    w1, w2 = constants[conv1.inputs[1]], constants[conv2.inputs[1]]
    if w1.shape[1] != w2.shape[0] or w2.shape[1] != w1.shape[0] or w1.ndim != w2.ndim:
        return None
    biases = []
    for conv, w in ((conv1, w1), (conv2, w2)):
        b_name = conv.inputs[2] if len(conv.inputs) > 2 else ""
        if not b_name:
            b_name = f"{conv.inputs[1]}::sebias"
            constants[b_name] = np.zeros(w.shape[0], np.float32)
        biases.append(b_name)
    a1, a2 = _conv_act(conv1), _conv_act(conv2)
    fused = Step(
        pool.node,
        fused_squeeze_excite,
        (x, conv1.inputs[1], biases[0], conv2.inputs[1], biases[1]),
        mul.outputs,
        {f"{k}{i}": v for i, a in ((1, a1), (2, a2)) for k, v in a.items()},
        pool.since,
        kernel_table.Choice(
            "squeeze_excite_nchw",
            "global pool, two 1x1 convs over it and the channel scale in one step; "
            "a kernel per input shape",
            SQUEEZE_EXCITE,
        ),
        ("Conv", *conv1.fused, "Conv", *conv2.fused, "Mul"),
        # an error in the fused part names its own node, not the pool's (steps._blamed)
        (conv1.node, *conv1.fused_nodes, conv2.node, *conv2.fused_nodes, mul.node),
    )
    return fused, sorted(chain)


def _packable_weights(step: Step, constants: dict) -> bool:
    """A MatMul by a constant, non-empty 2-D float32 W (``nn.fused_matmul`` packs it)."""
    w = constants.get(step.inputs[1])
    return w is not None and w.ndim == 2 and w.dtype == np.float32 and w.shape[1] > 0


def _matmul_bias(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    """The Add of a constant row of N values after a MatMul x @ W into its store (of
    rank 1 or 2: one of higher rank would raise the output's)."""
    y = step.outputs[0]
    if step.fn is not fused_matmul or len(step.inputs) > 2:
        return None
    if nxt.op_type != "Add" or nxt.inputs.count(y) != 1:
        return None
    bias = nxt.inputs[1 - nxt.inputs.index(y)]
    n = constants[step.inputs[1]].shape[1]
    c = constants.get(bias)
    if c is None or c.dtype != np.float32 or c.size != n or c.shape[-1] != n or c.ndim > 2:
        return None
    return replace(step, inputs=(*step.inputs, bias), outputs=nxt.outputs)


def fuse_matmul_bias(g: StepGraph) -> StepGraph:
    """A MatMul by a constant 2-D float32 W runs as ``nn.fused_matmul`` (W packed once
    for the engine's GEMM, not per call), with the Add of a bias row after it (a
    Linear layer as exporters write it for inputs of rank 3 and 4) in its store."""
    steps = tuple(
        replace(s, fn=fused_matmul)
        if s.op_type == "MatMul" and _packable_weights(s, g.constants)
        else s
        for s in g.steps
    )
    return _fuse_pairs(replace(g, steps=steps), "MatMul", _matmul_bias)


_SQRT2 = float(np.sqrt(2.0))


def _near(value: float | None, want: float) -> bool:
    return value is not None and abs(value - want) <= 1e-6 * want


def _gelu_input(step: Step, constants: dict) -> str | None:
    """The x of x / sqrt(2) that ``step`` computes (Div by sqrt 2, or Mul by its
    inverse on either side), or None."""
    if step.op_type == "Div" and _near(_other_scalar(step, step.inputs[0], constants), _SQRT2):
        return step.inputs[0]
    if step.op_type == "Mul":
        for x in step.inputs:
            if _near(_other_scalar(step, x, constants), 1.0 / _SQRT2):
                return x
    return None


def _gelu_at(steps: list[Step], users: dict, e: int, g: StepGraph) -> tuple[list[int], str] | None:
    """The steps of GELU, x / 2 (1 + erf(x / sqrt 2)), around the Erf at ``e`` as
    exporters write it: x / sqrt(2), Erf, + 1, then the product with x and with 1/2 in
    any order; their indices in order (the last writes the result) and x, or None.
    Each step's output is read by the next one only."""
    d = _producer(steps, steps[e].inputs[0])
    x = None if d is None else _gelu_input(steps[d], g.constants)
    if x is None or _single_reader(users, steps[d].outputs[0], g.outputs) != e:
        return None
    a = _single_reader(users, steps[e].outputs[0], g.outputs)
    add = None if a is None else steps[a]
    if (
        add is None
        or add.op_type != "Add"
        or _other_scalar(add, steps[e].outputs[0], g.constants) != 1.0
    ):
        return None
    h = add.outputs[0]
    m = _single_reader(users, h, g.outputs)
    if m is None or steps[m].op_type != "Mul":
        return None
    mul = steps[m]
    other = mul.inputs[1 - mul.inputs.index(h)] if mul.inputs.count(h) == 1 else None
    if other == x:  # x (1 + erf), then the half
        n = _single_reader(users, mul.outputs[0], g.outputs)
        if n is None or steps[n].op_type != "Mul":
            return None
        if _other_scalar(steps[n], mul.outputs[0], g.constants) != 0.5:
            return None
        return [d, e, a, m, n], x
    if other is not None and _other_scalar(mul, h, g.constants) == 0.5:  # (1 + erf) / 2, then x
        n = _single_reader(users, mul.outputs[0], g.outputs)
        last = None if n is None else steps[n]
        if (
            last is None
            or last.op_type != "Mul"
            or sorted(last.inputs) != sorted((x, mul.outputs[0]))
        ):
            return None
        return [d, e, a, m, n], x
    k = None if other is None else _producer(steps, other)  # x / 2 first, then (1 + erf)
    half = None if k is None else steps[k]
    if half is None or half.op_type != "Mul" or users.get(other, []) != [m]:
        return None
    if x not in half.inputs or _other_scalar(half, x, g.constants) != 0.5:
        return None
    return sorted([k, d, e, a, m]), x


def fuse_gelu(g: StepGraph) -> StepGraph:
    """GELU as exporters write it before opset 20 (``_gelu_at``: Div, Erf, Add, Mul, Mul)
    as one Gelu step (``activations.gelu``, float32 in vectors): five passes over the
    tensor, Erf's a scalar libm call an element, become one."""
    steps = list(g.steps)
    e = 0
    while e < len(steps):
        if steps[e].op_type != "Erf":
            e += 1
            continue
        found = _gelu_at(steps, consumers(steps), e, g)
        if found is None:
            e += 1
            continue
        taken, x = found
        last = steps[taken[-1]]
        node = replace(steps[e].node, op_type="Gelu", inputs=(x,), outputs=last.outputs, attrs={})
        nodes = tuple(steps[j].node for j in taken)
        fused = Step(
            node,
            gelu,
            (x,),
            last.outputs,
            {"approximate": "none"},
            20,
            fused=tuple(n.op_type for n in nodes),
            fused_nodes=nodes,
        )
        for j in sorted(taken, reverse=True):
            del steps[j]
        steps.insert(taken[0], fused)
        e = taken[0] + 1
    return replace(g, steps=tuple(steps))


TO_CHANNELS_LAST = (0, 2, 3, 1)  # NCHW -> NHWC
TO_CHANNELS_FIRST = (0, 3, 1, 2)  # NHWC -> NCHW
# ops that compute each element from that element alone: the same in either layout
ELEMENTWISE = ("Gelu", "Relu", "Sigmoid", "Tanh", "Erf", "HardSwish", "HardSigmoid", "LeakyRelu")
LAYER_NORM_CHANNELS = kernel_table.Choice(
    "layer_norm_channels_nchw",
    "LayerNormalization over the channels of NCHW planes: positions in vector lanes, "
    "the Transposes to channels-last and back dropped",
    CHANNELS,
)


def _perm(step: Step, perm: tuple[int, ...]) -> bool:
    return step.op_type == "Transpose" and tuple(step.attrs.get("perm") or ()) == perm


def _float32_const(constants: dict, name: str) -> np.ndarray | None:
    value = constants.get(name) if name else None
    return value if value is not None and value.dtype == np.float32 else None


def _channel_vector(value: np.ndarray | None, c: int | None) -> np.ndarray | None:
    """``value`` as its (C,) values, when it broadcasts onto a channels-last tensor of C
    channels along the last axis alone (shape (C,), (1, C), (1, 1, 1, C); one value
    repeated for any C); else None."""
    if value is None or value.ndim > 4 or any(d != 1 for d in value.shape[:-1]):
        return None
    if value.size != 1 and c is not None and value.size != c:
        return None
    return value.reshape(-1)


def _as_channels_first(
    step: Step, x: str, c: int | None, constants: dict, i: int
) -> tuple[Step, int | None] | None:
    """``step``, which reads the channels-last tensor ``x`` of ``c`` channels (None:
    not yet known), as the step that computes the same on the channels-first tensor,
    and the channels of its output; None where it has no such form."""
    op, a = step.op_type, step.attrs
    if op in ELEMENTWISE and step.inputs[:1] == (x,) and x not in step.inputs[1:]:
        return step, c
    if op == "LayerNormalization":
        sc = _channel_vector(_float32_const(constants, step.inputs[1]), c)
        b_name = step.inputs[2] if len(step.inputs) > 2 else ""
        b = _channel_vector(_float32_const(constants, b_name), c) if b_name else None
        if (
            step.inputs[0] != x
            or a.get("axis", -1) not in (-1, 3)
            or a.get("stash_type", 1) != 1
            or any(step.outputs[1:])
            or sc is None
            or (b_name and b is None)
        ):
            return None
        c = c if sc.size == 1 else sc.size
        b = np.zeros(sc.size, np.float32) if b is None else b
        names = [step.inputs[0]]
        for k, v in enumerate((sc, b)):  # as the kernel takes them (``_kernel_vector``)
            names.append(f"{step.node.name}::channels{k}")
            constants[names[-1]] = np.array(v, np.float32, order="C")
        ln = replace(
            step, fn=layer_norm_channels, inputs=tuple(names), outputs=step.outputs[:1],
            attrs={"epsilon": float(a.get("epsilon", 1e-5))}, choice=LAYER_NORM_CHANNELS,
        )  # fmt: skip
        return ln, c
    if op == "MatMul":
        w = _float32_const(constants, step.inputs[1])
        if step.inputs[0] != x or w is None or w.ndim != 2 or w.shape[1] == 0:
            return None
        if c is not None and w.shape[0] != c:
            return None
        w_name = f"{step.inputs[1]}::conv1x1_{i}"
        constants[w_name] = np.ascontiguousarray(w.T).reshape(*w.T.shape, 1, 1)  # (N, K, 1, 1)
        attrs = {"kernel_shape": [1, 1], "strides": [1, 1], "pads": [0, 0, 0, 0],
                 "dilations": [1, 1], "group": 1}  # fmt: skip
        node = replace(step.node, op_type="Conv", inputs=(x, w_name), attrs=attrs)
        made = Step(node, conv_op, (x, w_name), step.outputs, attrs, 1,
                    fused=("MatMul (a 1x1 conv)",), fused_nodes=(step.node,))  # fmt: skip
        return made, w.shape[1]
    if op in ("Add", "Mul") and len(step.inputs) == 2 and step.inputs.count(x) == 1:
        other = step.inputs[1 - step.inputs.index(x)]
        v = _channel_vector(_float32_const(constants, other), c)
        if v is None:
            return None
        name = f"{other}::channels_first{i}"
        constants[name] = v.reshape(-1, 1, 1).copy()  # (C, 1, 1): along NCHW's channel axis
        inputs = tuple(name if n == other else n for n in step.inputs)
        return replace(step, inputs=inputs), (c if v.size == 1 else v.size)
    return None


def _channels_last_run(
    steps: list[Step], t: int, users: dict, g: StepGraph, constants: dict
) -> tuple[list[int], list[Step], int] | None:
    """From the Transpose to channels-last at ``t``: the steps that read its output one
    after the other, each the single reader of the one before (no graph outputs among
    their tensors), up to a Transpose back to channels-first at the end, with the
    channels-first form of each (``_as_channels_first``); as (the indices of the run,
    its steps rewritten, the index of the last Transpose). None where a step of the run
    has no channels-first form or the run ends otherwise."""
    x = steps[t].outputs[0]
    c: int | None = None
    taken, rewritten = [], []
    while True:
        j = _single_reader(users, x, g.outputs)
        if j is None:
            return None
        step = steps[j]
        if _perm(step, TO_CHANNELS_FIRST):
            return (taken, rewritten, j) if taken else None
        found = _as_channels_first(step, x, c, constants, j)
        if found is None or len([o for o in step.outputs if o]) != 1:
            return None
        rewritten.append(found[0])
        c = found[1]
        taken.append(j)
        x = step.outputs[0]


def channels_first_layer_norm(g: StepGraph) -> StepGraph:
    """A run of steps between a Transpose of an NCHW tensor to channels-last and one
    back (ConvNeXt: Transpose, LayerNormalization over the last axis, Transpose; and
    its block's Transpose, LayerNormalization, MatMul, Add, Gelu, MatMul, Add, Mul,
    Transpose), computed on the NCHW tensor: the LayerNormalization over its channel
    axis (``normalization.layer_norm_channels``), a MatMul by constant weights as a 1x1
    Conv, an Add or Mul of a constant along the channels along NCHW's channel axis
    (the conv passes then fold them into the conv), elementwise ops as they are. Both
    Transposes go, and the convs take the conv passes' epilogues (bias, layer scale,
    the residual Add after the block). Each tensor of the run has one reader and is
    not a graph output; every step of it must have a channels-first form."""
    steps = list(g.steps)
    constants = dict(g.constants)
    t = 0
    while t < len(steps):
        if not _perm(steps[t], TO_CHANNELS_LAST) or steps[t].outputs[0] in g.outputs:
            t += 1
            continue
        trial = dict(constants)
        found = _channels_last_run(steps, t, consumers(steps), g, trial)
        if found is None:
            t += 1
            continue
        taken, rewritten, back = found
        constants = trial
        first, last = steps[t], steps[back]
        head = rewritten[0]  # reads the NCHW tensor itself
        inputs = tuple(first.inputs[0] if n == first.outputs[0] else n for n in head.inputs)
        rewritten[0] = replace(head, inputs=inputs)
        rewritten[-1] = replace(rewritten[-1], outputs=last.outputs)
        ln = [k for k, s in enumerate(rewritten) if s.fn is layer_norm_channels]
        k = ln[0] if ln else 0
        rewritten[k] = replace(
            rewritten[k],
            fused=(*rewritten[k].fused, "Transpose", "Transpose"),
            fused_nodes=(*rewritten[k].fused_nodes, first.node, last.node),
        )
        for j, s in zip(taken, rewritten, strict=True):
            steps[j] = s
        del steps[back]
        del steps[t]
    return replace(g, steps=tuple(steps), constants=constants)


def _gemm_relu(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    if "activation" in step.attrs or nxt.op_type != "Relu":
        return None
    attrs = {**step.attrs, "activation": "Relu"}
    return replace(step, fn=fused_gemm, attrs=attrs, outputs=nxt.outputs)


def fuse_gemm_relu(g: StepGraph) -> StepGraph:
    """Apply a Relu after a Gemm in the GEMM's store (``nn.fused_gemm``)."""
    return _fuse_pairs(g, "Gemm", _gemm_relu)


def _bn_activation(step: Step, nxt: Step, i: int, constants: dict) -> Step | None:
    found = activation_of(nxt, constants)
    if "activation" in step.attrs or found is None or nxt.inputs[0] != step.outputs[0]:
        return None
    name, alpha, beta = found
    attrs = {**step.attrs, "activation": name, "alpha": alpha, "beta": beta}
    return replace(step, fn=fused_batch_norm, attrs=attrs, outputs=nxt.outputs)


def fuse_bn_activation(g: StepGraph) -> StepGraph:
    """Apply the activation after a BatchNormalization that no conv took (DenseNet's
    pre-activation BatchNormalization, Relu, Conv) in the BN's kernel
    (``nn.fused_batch_norm``)."""
    return _fuse_pairs(g, "BatchNormalization", _bn_activation)


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
    Pass("fuse_gelu", fuse_gelu),  # before channels_first_layer_norm: a Gelu step there
    Pass("channels_first_layer_norm", channels_first_layer_norm),
    Pass("use_fused_conv", use_fused_conv),
    Pass("fuse_conv_bn", fuse_conv_bn),
    Pass("fuse_conv_bias_add", fuse_conv_bias_add),
    Pass("fuse_conv_residual_add", fuse_conv_residual_add),
    Pass("fuse_conv_activation", fuse_conv_activation),
    Pass("fuse_conv_activation_bn", fuse_conv_activation_bn),
    Pass("fuse_conv_max_pool", fuse_conv_max_pool),
    Pass("fuse_squeeze_excitation", fuse_squeeze_excitation),
    Pass("fuse_gemm_relu", fuse_gemm_relu),
    Pass("fuse_matmul_bias", fuse_matmul_bias),
    Pass("fuse_bn_activation", fuse_bn_activation),  # after the conv passes took theirs
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
