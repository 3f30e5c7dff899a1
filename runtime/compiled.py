"""Compile a plan into one op table that numba runs over groups of images (``kernels/chain``).

A plan qualifies when it is a chain over one float32 input whose every step keeps
the batch axis first and is one of: Conv (2-D, group 1, with its fused activation
and scale/shift), MaxPool and AveragePool (2-D), Gemm and MatMul against constant
weights, Relu, LeakyRelu, Tanh, Sigmoid, an unfused BatchNormalization, Reshape and
Flatten that keep the batch axis, and Softmax or LogSoftmax over each image. A group
of ``config.PROGRAM_IMAGES_PER_GROUP`` images' activations (fewer if they do not fit,
one at least) must fit ``config.PROGRAM_WORKSPACE_FLOATS`` and the weights
``config.PROGRAM_WEIGHTS_FLOATS``:
this path is for small networks, whose per-call overhead and cache traffic decide
their speed (LeNet-5). Anything else runs step by step, unchanged. ``compile_program``
says in one line why a plan does not qualify.

It shares the step path's epilogue (``activation.activate``), dense pooling
(``pool.pool_dense``), tap sums (``taps.taps``), GEMM micro-kernels
(``gemm.gemm_f32_6x16_tile``, ``gemm_f32_6x32_tile``) and ``softmax_row``; its conv,
padded pooling and pool over the conv's rows stay its own because it runs each group
of images inside one parallel region (``run_images``), from which numba cannot start
the step path's parallel kernels (im2col, GEMM, pool planes), and its unrolled pool
over the conv's rows is faster on LeNet-5 than ``pool.pool_dense`` (1.44 against
1.77 ms at batch 64, one thread, a shared 2-core Xeon).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numba
import numpy as np

from runtime import kernel_table
from runtime.config import (
    PROGRAM_CHUNKS_PER_THREAD,
    PROGRAM_IMAGES_PER_GROUP,
    PROGRAM_WEIGHTS_FLOATS,
    PROGRAM_WORKSPACE_FLOATS,
)
from runtime.kernel_table import Choice
from runtime.kernels import chain as k
from runtime.kernels import gemm
from runtime.kernels.activation import ACTIVATIONS
from runtime.memory import scratch
from runtime.ops import nn
from runtime.passes import activation_of

assert PROGRAM_IMAGES_PER_GROUP <= gemm.MR  # a group's vectors are one row block of the GEMM


# The ops ``compile_program`` has a compiled form for, and the only ones it takes (the
# plan gives each an empty output of its shape before compiling: ``plan.shapes_only``).
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


class NotCompilableError(Exception):
    """Why a plan stays step by step."""


@dataclass(frozen=True)
class Program:
    code: np.ndarray  # (ops, REC) int64
    ipool: np.ndarray  # int64: tap offsets
    fpool: np.ndarray  # float32: weights, biases, scales, alphas
    ws_size: int  # floats of workspace per thread
    image_stride: int  # floats between one image's activations and the next one's
    group: int  # images run together (kernels/chain._run_group)
    input_name: str
    output_name: str
    output_shape: tuple[int, ...]
    choices: tuple[Choice, ...] = ()  # per step of the plan: its row's kernel, and why

    def run(self, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        out = np.empty(self.output_shape, np.float32)
        threads = numba.get_num_threads()
        ws = scratch("program.ws", (threads, self.ws_size), np.float32)
        args = (
            x.reshape(n, -1),
            out.reshape(n, -1),
            self.code,
            self.ipool,
            self.fpool,
            ws,
            self.image_stride,
            self.group,
        )
        if n <= self.group or threads == 1:
            k.run_images_serial(*args)
        else:
            with numba.parallel_chunksize(1):
                k.run_images(*args, min(-(-n // self.group), PROGRAM_CHUNKS_PER_THREAD * threads))
        return out


class _Builder:
    """Collects op rows, parameter pools and workspace regions."""

    def __init__(self, in_size: int) -> None:
        self.rows: list[np.ndarray] = []
        self.floats: list[np.ndarray] = [np.zeros(1, np.float32)]  # offset 0: alpha 0
        self.nfloat = 1
        self.ints: list[np.ndarray] = []
        self.nint = 0
        self.act_size = in_size  # the largest activation, per image
        self.scratch_size = 0  # conv padding / columns
        self.acc_size = 0  # conv accumulators
        self.cur = 0  # which of the two activation regions holds the current tensor

    def floats_at(self, values: np.ndarray) -> int:
        values = np.ascontiguousarray(values, np.float32).ravel()
        self.floats.append(values)
        self.nfloat += values.size
        return self.nfloat - values.size

    def ints_at(self, values: np.ndarray) -> int:
        values = np.ascontiguousarray(values, np.int64).ravel()
        self.ints.append(values)
        self.nint += values.size
        return self.nint - values.size

    def row(self, op: int, out_size: int, in_place: bool = False) -> np.ndarray:
        """A new row reading the current region and writing the other (or the same)."""
        r = np.zeros(k.REC, np.int64)
        r[k.F_OP] = op
        r[k.F_SRC] = self.cur  # region index for now; offsets are set in finish()
        if not in_place:
            self.cur = 1 - self.cur
        r[k.F_DST] = self.cur
        self.act_size = max(self.act_size, out_size)
        self.rows.append(r)
        return r

    def finish(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int, int]:
        """The table, pools, workspace size, image stride and group size: as many
        images as fit the workspace limit, up to PROGRAM_IMAGES_PER_GROUP."""
        a = self.act_size
        group = PROGRAM_IMAGES_PER_GROUP
        while (
            group > 1
            and 2 * group * a + self.scratch_size + self.acc_size > PROGRAM_WORKSPACE_FLOATS
        ):
            group //= 2
        pad, acc = 2 * group * a, 2 * group * a + self.scratch_size
        code = np.stack(self.rows)
        code[:, k.F_SRC] *= group * a  # region 0 at 0, region 1 at group*a
        code[:, k.F_DST] *= group * a
        conv = code[:, k.F_OP] == k.OP_CONV
        code[conv, k.C_PAD] = pad
        code[code[:, k.F_OP] == k.OP_POOL, k.P_TMP] = pad
        code[conv, k.C_ACC] = acc
        ws = acc + self.acc_size
        fpool = np.concatenate(self.floats)
        ipool = np.concatenate(self.ints) if self.ints else np.zeros(1, np.int64)
        if ws > PROGRAM_WORKSPACE_FLOATS:
            raise NotCompilableError(
                f"needs {ws} floats of workspace per image (limit {PROGRAM_WORKSPACE_FLOATS})"
            )
        if fpool.size > PROGRAM_WEIGHTS_FLOATS:
            raise NotCompilableError(
                f"has {fpool.size} floats of weights (limit {PROGRAM_WEIGHTS_FLOATS})"
            )
        return code, ipool, fpool, ws, a, group


def _add_conv(
    b: _Builder, attrs: Mapping, x: np.ndarray, w: np.ndarray, bias, pool: str = ""
) -> tuple[np.ndarray, Choice]:
    """Append the conv's row; return a stand-in (no memory) of the conv's output shape,
    and the table's choice (``kernel_table.choose_chain_conv``)."""
    if x.ndim != 4 or attrs.get("group", 1) != 1:
        raise NotCompilableError("Conv: only 2-D convolutions with group 1")
    _, cin, H, W = x.shape
    cout, _, kh, kw = w.shape
    (oh, ow), begin, _, st, dil = nn._spatial(
        "Conv",
        x.shape[2:],
        (kh, kw),
        auto_pad=attrs.get("auto_pad", "NOTSET"),
        pads=attrs.get("pads"),
        strides=attrs.get("strides"),
        dilations=attrs.get("dilations"),
    )
    y = np.broadcast_to(np.float32(0), (x.shape[0], cout, oh, ow))
    flat, choice = kernel_table.choose_chain_conv(st, dil, pool)
    T = cin * kh * kw
    if flat:
        hp, wp = oh + kh - 1, ow + kw - 1
        c, ky, kx = np.meshgrid(np.arange(cin), np.arange(kh), np.arange(kw), indexing="ij")
        taps = (c * hp + ky) * wp + kx
        b.scratch_size = max(b.scratch_size, cin * hp * wp)
        b.acc_size = max(b.acc_size, cout * oh * wp)
    else:
        hp = wp = 0
        taps = np.arange(T) * (oh * ow)
        b.scratch_size = max(b.scratch_size, T * oh * ow)
        b.acc_size = max(b.acc_size, cout * oh * ow)
    scale, shift = attrs.get("post_scale"), attrs.get("post_shift")
    r = b.row(k.OP_CONV, y[0].size)
    r[k.C_CIN : k.C_ACT] = (cin, H, W, cout, kh, kw, *st, *begin, *dil, oh, ow)
    r[k.C_ACT] = ACTIVATIONS[attrs.get("activation")]
    r[k.C_WOFF] = b.floats_at(w.reshape(cout, T))
    r[k.C_BOFF] = b.floats_at(np.zeros(cout) if bias is None else bias)
    r[k.C_SCALE] = -1 if scale is None else b.floats_at(scale)
    r[k.C_SHIFT] = -1 if shift is None else b.floats_at(shift)
    r[k.C_ALPHA] = b.floats_at(np.array([attrs.get("alpha", 0.01), attrs.get("beta", 0.0)]))
    r[k.C_TAPS] = b.ints_at(taps)
    r[k.C_FLAT], r[k.C_HP], r[k.C_WP] = int(flat), hp, wp
    return y, choice


def _add_pool(b: _Builder, op: str, attrs: Mapping, x: np.ndarray, y: np.ndarray) -> None:
    if x.ndim != 4:
        raise NotCompilableError(f"{op}: only 2-D pooling")
    _, C, H, W = x.shape
    kernel = tuple(attrs["kernel_shape"])
    _, begin, end, st, dil = nn._spatial(
        op,
        x.shape[2:],
        kernel,
        auto_pad=attrs.get("auto_pad", "NOTSET"),
        pads=attrs.get("pads"),
        strides=attrs.get("strides"),
        dilations=attrs.get("dilations"),
        ceil_mode=attrs.get("ceil_mode", 0),
        pool=True,
    )
    if not y.size or nn.empty_windows((H, W), y.shape[2:], begin, kernel, st, dil) is not None:
        raise NotCompilableError(f"{op}: no output, or a window with no tap inside the input")
    r = b.row(k.OP_POOL, y[0].size)
    b.scratch_size = max(b.scratch_size, H * y.shape[3])  # pool.pool_dense's row buffer
    r[k.P_C : k.P_EW + 1] = (
        C,
        H,
        W,
        *y.shape[2:],
        *kernel,
        *st,
        *begin,
        *dil,
        op == "MaxPool",
        attrs.get("count_include_pad", 0),
        H + begin[0] + end[0],
        W + begin[1] + end[1],
    )


def _fuse_pool(
    b: _Builder, op: str, attrs: Mapping, x: np.ndarray, y: np.ndarray, conv: np.ndarray | None
) -> bool:
    """Fold a pooling whose windows tile the conv output just made into that conv."""
    kernel = list(attrs.get("kernel_shape") or [])
    if conv is None or conv[k.C_POOL] != k.POOL_NONE or x.ndim != 4 or len(kernel) != 2:
        return False
    plain = (
        attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")
        and not any(attrs.get("pads") or [0])
        and all(d == 1 for d in attrs.get("dilations") or [1])
        and list(attrs.get("strides") or [1, 1]) == kernel
    )
    if not plain or list(y.shape[2:]) != [x.shape[2] // kernel[0], x.shape[3] // kernel[1]]:
        return False
    if x.shape[2] % kernel[0] or x.shape[3] % kernel[1]:
        return False
    conv[k.C_POOL] = k.POOL_MAX if op == "MaxPool" else k.POOL_AVG
    conv[k.C_PKH], conv[k.C_PKW] = kernel
    return True


def _add_gemm(b: _Builder, wt: np.ndarray, bias: np.ndarray, act: int, alpha: float) -> None:
    K, N = wt.shape
    r = b.row(k.OP_GEMM, N)
    r[k.G_K], r[k.G_N] = K, N
    r[k.G_NR] = gemm.nr()
    r[k.G_WOFF] = b.floats_at(gemm.pack_b(wt[None]))  # (panels, K, NR)
    r[k.G_BOFF] = b.floats_at(np.broadcast_to(bias, (N,)))
    r[k.G_ACT] = act
    r[k.G_ALPHA] = b.floats_at(np.array([alpha, 0.0]))


def _refuse(step, why: str) -> NotCompilableError:
    return NotCompilableError(f"{step.node.describe()}: {why}")


def _const(step, i: int, constants: Mapping[str, np.ndarray]) -> np.ndarray | None:
    name = step.inputs[i] if len(step.inputs) > i else ""
    if not name:
        return None
    if name not in constants:
        raise _refuse(step, f"input {name!r} is not a constant")
    return constants[name]


def compile_program(
    steps: Sequence,
    env: Mapping[str, np.ndarray],
    constants: Mapping[str, np.ndarray],
    feeds: Mapping[str, np.ndarray],
    outputs: Sequence[str],
) -> Program:
    """The op table for ``steps`` (a plan's), or NotCompilableError with the reason."""
    if len(feeds) != 1 or len(outputs) != 1:
        raise NotCompilableError("only graphs with one input and one output")
    ((name, x0),) = feeds.items()
    if x0.dtype != np.float32 or x0.ndim < 2 or x0.shape[0] < 1:
        raise NotCompilableError("the input must be float32 with a batch axis")
    n = x0.shape[0]
    b = _Builder(x0[0].size)
    cur = name
    choices: list[Choice] = []
    for step in steps:
        op = step.op_type
        if not step.inputs or step.inputs[0] != cur:
            raise _refuse(step, "the graph is not a chain")
        if any(o for o in step.outputs[1:]):
            raise _refuse(step, "more than one output")
        x, y = env[cur], env[step.outputs[0]]
        if y.dtype != np.float32 or y.ndim < 1 or y.shape[0] != n:
            raise _refuse(step, "output is not float32 per image")
        attrs = step.attrs
        if op not in PROGRAM_OPS:
            raise _refuse(step, f"{op} has no compiled form")
        fusable = b.rows[-1] if b.rows and b.rows[-1][k.F_OP] == k.OP_CONV else None
        choice = kernel_table.chain_op(op, "a row of the chain program")
        if op == "Conv":
            w, bias = _const(step, 1, constants), _const(step, 2, constants)
            conv_y, choice = _add_conv(b, attrs, x, w, bias)
            if "max_pool" in attrs:  # the engine fused a MaxPool into the conv
                kh, kw, sh, sw = attrs["max_pool"]
                pool = {"kernel_shape": [kh, kw], "strides": [sh, sw]}
                if _fuse_pool(b, "MaxPool", pool, conv_y, y, b.rows[-1]):
                    how = "; the max pool in the conv's store"
                else:
                    _add_pool(b, "MaxPool", pool, conv_y, y)
                    how = "; the max pool its own row"
                choice = replace(choice, reason=choice.reason + how)
        elif op in ("MaxPool", "AveragePool"):
            if _fuse_pool(b, op, attrs, x, y, fusable):
                choice = kernel_table.chain_op(op, "in the previous conv's store")
                choices[-1] = replace(choices[-1], reason=choices[-1].reason + f"; {op} fused")
            else:
                _add_pool(b, op, attrs, x, y)
        elif op == "Gemm":
            w, c = _const(step, 1, constants), _const(step, 2, constants)
            if x.ndim != 2 or attrs.get("transA", 0):
                raise _refuse(step, "Gemm with transA or 3-D input")
            wt = (w.T if attrs.get("transB", 0) else w) * attrs.get("alpha", 1.0)
            bias = np.zeros(wt.shape[1]) if c is None else c * attrs.get("beta", 1.0)
            if bias.size not in (1, wt.shape[1]) or (bias.ndim > 1 and bias.shape[0] != 1):
                raise _refuse(step, "C varies per image")
            relu = attrs.get("activation") == "Relu"  # fused by the engine's passes
            _add_gemm(b, wt, bias.ravel(), ACTIVATIONS["Relu"] if relu else 0, 0.0)
        elif op == "MatMul":
            w, c = _const(step, 1, constants), _const(step, 2, constants)  # c: a fused bias
            if x.ndim != 2 or w.ndim != 2:
                raise _refuse(step, "MatMul other than (N, K) @ (K, M)")
            _add_gemm(b, w, np.zeros(w.shape[1]) if c is None else c.reshape(-1), 0, 0.0)
        elif (found := activation_of(step, constants)) is not None:
            act, alpha, beta = found
            r = b.row(k.OP_ACT, y[0].size, in_place=True)
            r[k.A_SIZE], r[k.A_ACT] = y[0].size, ACTIVATIONS[act]
            r[k.A_ALPHA] = b.floats_at(np.array([alpha, beta]))
        elif op == "BatchNormalization":
            ab = nn.bn_affine(step.inputs, attrs, constants, x.shape[1] if x.ndim >= 2 else None)
            if ab is None or x.ndim < 2:
                raise _refuse(
                    step, "BatchNormalization in training mode or with vectors of another length"
                )
            r = b.row(k.OP_AFFINE, y[0].size, in_place=True)
            r[k.B_C], r[k.B_S] = x.shape[1], x[0, 0].size
            r[k.B_SCALE], r[k.B_SHIFT] = b.floats_at(ab[0]), b.floats_at(ab[1])
            if attrs.get("activation"):  # fused by passes.fuse_bn_activation
                r = b.row(k.OP_ACT, y[0].size, in_place=True)
                r[k.A_SIZE], r[k.A_ACT] = y[0].size, ACTIVATIONS[attrs["activation"]]
                r[k.A_ALPHA] = b.floats_at(np.array([attrs["alpha"], attrs["beta"]]))
        elif op in ("Reshape", "Flatten"):  # the image's values keep their order
            choice = kernel_table.chain_op(op, "no row: the image's values keep their order")
        elif op in ("Softmax", "LogSoftmax"):
            flattens = step.since < 13  # before opset 13: over the axes from ``axis`` on
            axis = attrs.get("axis", 1 if flattens else -1)
            whole = axis == 1 if flattens else (x.ndim == 2 and axis in (1, -1))
            if not whole:
                raise _refuse(step, f"{op} over part of an image")
            r = b.row(k.OP_SOFTMAX, y[0].size, in_place=True)
            r[k.S_SIZE], r[k.S_LOG] = y[0].size, op == "LogSoftmax"
        else:
            raise _refuse(step, f"{op} has no compiled form")
        choices.append(choice)
        cur = step.outputs[0]
    if cur != outputs[0] or not b.rows:
        raise NotCompilableError("the chain does not end at the graph's output")
    code, ipool, fpool, ws, stride, group = b.finish()
    return Program(
        code, ipool, fpool, ws, stride, group, name, outputs[0], env[cur].shape, tuple(choices)
    )
