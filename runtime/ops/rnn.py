"""The recurrent ops: RNN, GRU and LSTM, one layer each, every direction.

Each is registered twice: opset 7, and opset 14, which adds ``layout`` (1: X, Y and
the states batch-first). Opset 22 only adds bfloat16, so a model at 22 runs the 14
function. A node's checks run here; the compute is the input projection of every
time step as one GEMM (``X @ W^T``, all directions at once), then the recurrence
over time in ``kernels.rnn``. float32 runs the engine's GEMM (``kernels.gemm``, W
packed once per plan) and float64 numpy's; both run the recurrence kernel in their
own type. float16 runs as float32 and rounds the outputs.

Where the spec leaves room, the choices are onnxruntime's:

* ``activations`` are matched without case; ``activation_alpha`` and
  ``activation_beta`` are consumed in order by the functions that take them
  (Affine, LeakyRelu, ThresholdedRelu, ScaledTanh, HardSigmoid, Elu), and a
  function with none left takes its ONNX operator's default (ScaledTanh, which has
  none, takes 1 and 1). A forward RNN may list RNN's schema default, two functions:
  the first is used.
* A batch row whose ``sequence_lens`` is 0 gets zeros in Y_h and Y_c (as
  onnxruntime's GRU and LSTM); Y is zero past each row's length, and a reverse
  direction reads each row from its own last step.
* ``clip`` bounds the inputs of the gate activations, not the cell state that h()
  reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from runtime import kernel_table
from runtime.errors import InvalidAttributeError, ShapeError
from runtime.kernel_table import Choice
from runtime.kernels import rnn as kernels
from runtime.kernels.gemm import PackedGemm
from runtime.memory import check_size
from runtime.ops.registry import register

_FLOATS = (np.float16, np.float32, np.float64)
_DIRECTIONS = {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}
_CODES = {name.lower(): code for code, name in enumerate(kernels.ACTIVATIONS)}
# (alpha, beta) of the functions that take them (None: not taken), defaulting as the
# ONNX operators of the same name do.
_PARAMETERS = {
    "affine": (1.0, 0.0),
    "leakyrelu": (0.01, None),
    "thresholdedrelu": (1.0, None),
    "scaledtanh": (1.0, 1.0),
    "hardsigmoid": (0.2, 0.5),
    "elu": (1.0, None),
}


@dataclass(frozen=True)
class Cell:
    """What sets one recurrent op apart: its gates per hidden unit and its default
    activation functions (per direction)."""

    op: str
    gates: int
    activations: tuple[str, ...]
    kernel: str  # its recurrence ("module.function" in runtime/kernels)


RNN = Cell("RNN", 1, ("Tanh",), "rnn.rnn_recurrence")
GRU = Cell("GRU", 3, ("Sigmoid", "Tanh"), "rnn.gru_recurrence")
LSTM = Cell("LSTM", 4, ("Sigmoid", "Tanh", "Tanh"), "rnn.lstm_recurrence")
# The kernels a node may run: the GEMM's entries (float32), then its recurrence.
_GEMM_KERNELS = tuple(dict.fromkeys(k for e in kernel_table.gemm_entries() for k in e.runs))


def activation_table(
    cell: Cell,
    activations: tuple[str, ...] | None,
    alpha: tuple[float, ...] | None,
    beta: tuple[float, ...] | None,
    directions: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes, alphas, betas), each (directions, functions per direction)."""
    op, per = cell.op, len(cell.activations)
    names = list(activations) if activations else list(cell.activations) * directions
    if cell is RNN and directions == 1 and len(names) == 2:
        names = names[:1]  # RNN's schema default lists two
    if len(names) != per * directions:
        raise InvalidAttributeError(
            f"{op}: activations {names}: expected {per * directions} function(s) "
            f"({per} per direction, {directions} direction(s)), received {len(names)}"
        )
    alphas, betas = list(alpha or ()), list(beta or ())
    codes, a_out, b_out = [], [], []
    for name in names:
        key = name.lower()
        if key not in _CODES:
            raise InvalidAttributeError(
                f"{op}: activation {name!r}: expected one of {', '.join(kernels.ACTIVATIONS)}"
            )
        default_a, default_b = _PARAMETERS.get(key, (None, None))
        a = (alphas.pop(0) if alphas else default_a) if default_a is not None else 0.0
        b = (betas.pop(0) if betas else default_b) if default_b is not None else 0.0
        codes.append(_CODES[key])
        a_out.append(a)
        b_out.append(b)
    shape = (directions, per)
    return (
        np.array(codes, np.int64).reshape(shape),
        np.array(a_out, np.float64).reshape(shape),
        np.array(b_out, np.float64).reshape(shape),
    )


def _expect(op: str, name: str, t: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> None:
    if t.shape != shape:
        raise ShapeError(f"{op}: input {name} must have shape {shape}, received {t.shape}")
    if t.dtype != dtype:
        raise ShapeError(f"{op}: input {name} must be {dtype} as X is, received {t.dtype}")


def _state(op, name, t, layout, shape, dtype, compute) -> np.ndarray:
    """An initial state (D, N, H) in the compute type, writable and C-contiguous."""
    if t is None:
        return np.zeros(shape, compute)
    d_n, n_n, h_n = shape
    _expect(op, name, t, (n_n, d_n, h_n) if layout else shape, dtype)
    return np.array(t.transpose(1, 0, 2) if layout else t, compute, order="C")


@dataclass(frozen=True, eq=False)
class Layer:
    """A recurrent node laid out for one input shape (``layer``): its checks done and
    its weights in the kernel's layout, so that a call runs only the input
    projection (one GEMM) and the recurrence. The engine binds one per plan."""

    cell: Cell
    x_shape: tuple[int, ...]
    x_dtype: np.dtype
    layout: int
    wt: np.ndarray  # (I, D*G*H): W^T, every direction's gates side by side
    packed: PackedGemm | None  # float32: W^T packed for the engine's GEMM
    choice: Choice  # what runs and why, for describe()
    rt: np.ndarray  # (D, H, G*H): R^T
    bias: np.ndarray  # (D, 2*G*H)
    h0: np.ndarray  # (D, N, H)
    c0: np.ndarray  # (D, N, H), LSTM
    peepholes: np.ndarray  # (D, 3*H), LSTM
    lengths: np.ndarray  # (N,) int64
    reverse: np.ndarray  # (D,) bool
    codes: np.ndarray
    alphas: np.ndarray
    betas: np.ndarray
    clip: float
    linear_before_reset: bool
    input_forget: bool

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """(Y, Y_h) for RNN and GRU, (Y, Y_h, Y_c) for LSTM, for an X of the shape and
        type the layer was laid out for."""
        assert x.shape == self.x_shape and x.dtype == self.x_dtype  # internal: per plan
        compute = self.rt.dtype
        xs = x.transpose(1, 0, 2) if self.layout else x  # (T, N, I)
        t_n, n_n, i_n = xs.shape
        d_n, h_n, _ = self.rt.shape
        rows = xs.reshape(t_n * n_n, i_n).astype(compute, copy=False)
        xw = np.empty((t_n * n_n, self.wt.shape[1]), compute)  # (T*N, D*G*H)
        if self.packed is None:
            np.matmul(rows, self.wt, out=xw)
        elif len(rows):
            self.packed(rows, xw)
        xw = xw.reshape(t_n, n_n, self.wt.shape[1])  # (T, N, D*G*H)
        y = np.empty((t_n, d_n, n_n, h_n), compute)
        y_h = np.empty((d_n, n_n, h_n), compute)
        common = (self.codes, self.alphas, self.betas, self.clip)
        if self.cell is RNN:
            kernels.rnn_recurrence(xw, self.rt, self.bias, self.h0, self.lengths,
                                   self.reverse, *common, y, y_h)  # fmt: skip
            results = [y, y_h]
        elif self.cell is GRU:
            kernels.gru_recurrence(xw, self.rt, self.bias, self.h0, self.lengths,
                                   self.reverse, self.linear_before_reset, *common, y,
                                   y_h)  # fmt: skip
            results = [y, y_h]
        else:
            y_c = np.empty((d_n, n_n, h_n), compute)
            kernels.lstm_recurrence(xw, self.rt, self.bias, self.peepholes, self.h0,
                                    self.c0, self.lengths, self.reverse, self.input_forget,
                                    *common, y, y_h, y_c)  # fmt: skip
            results = [y, y_h, y_c]
        if self.layout:
            results[0] = results[0].transpose(2, 0, 1, 3)  # (N, T, D, H)
            results[1:] = [s.transpose(1, 0, 2) for s in results[1:]]  # (N, D, H)
        return tuple(np.ascontiguousarray(a, self.x_dtype) for a in results)


def layer(
    cell: Cell,
    x: np.ndarray,
    w: np.ndarray,
    r: np.ndarray,
    b: np.ndarray | None = None,
    sequence_lens: np.ndarray | None = None,
    initial_h: np.ndarray | None = None,
    initial_c: np.ndarray | None = None,
    p: np.ndarray | None = None,
    *,
    activation_alpha: tuple[float, ...] | None = None,
    activation_beta: tuple[float, ...] | None = None,
    activations: tuple[str, ...] | None = None,
    clip: float | None = None,
    direction: str = "forward",
    hidden_size: int | None = None,
    layout: int = 0,
    linear_before_reset: int = 0,
    input_forget: int = 0,
) -> Layer:
    """The node's checks, and its weights laid out for X's shape (a ``Layer``)."""
    op, gates = cell.op, cell.gates
    if direction not in _DIRECTIONS:
        raise InvalidAttributeError(
            f"{op}: direction {direction!r}: expected one of {', '.join(_DIRECTIONS)}"
        )
    reverse = np.array(_DIRECTIONS[direction], np.bool_)
    d_n = len(reverse)
    if layout not in (0, 1):
        raise InvalidAttributeError(f"{op}: layout {layout}: expected 0 or 1")
    if clip is not None and not clip > 0:
        raise InvalidAttributeError(f"{op}: clip {clip}: expected a threshold > 0")
    codes, alphas, betas = activation_table(
        cell, activations, activation_alpha, activation_beta, d_n
    )
    if x.dtype not in _FLOATS:
        raise ShapeError(f"{op}: X must be float16, float32 or float64, received {x.dtype}")
    if x.ndim != 3:
        raise ShapeError(
            f"{op}: X must have rank 3 "
            f"({'[batch, seq, input]' if layout else '[seq, batch, input]'}), "
            f"received shape {x.shape}"
        )
    t_n, n_n, i_n = (x.shape[1], x.shape[0], x.shape[2]) if layout else x.shape
    if hidden_size is None:
        if r.ndim != 3:
            raise ShapeError(f"{op}: R must have rank 3, received shape {r.shape}")
        h_n = r.shape[2]
    elif hidden_size < 1:
        raise InvalidAttributeError(f"{op}: hidden_size {hidden_size}: expected >= 1")
    else:
        h_n = hidden_size
    g_n = gates * h_n
    _expect(op, "W", w, (d_n, g_n, i_n), x.dtype)
    _expect(op, "R", r, (d_n, g_n, h_n), x.dtype)
    compute = np.float64 if x.dtype == np.float64 else np.float32
    if b is None:
        bias = np.zeros((d_n, 2 * g_n), compute)
    else:
        _expect(op, "B", b, (d_n, 2 * g_n), x.dtype)
        bias = np.array(b, compute, order="C")
    if sequence_lens is None:
        lengths = np.full(n_n, t_n, np.int64)
    else:
        if sequence_lens.dtype.kind not in "iu" or sequence_lens.shape != (n_n,):
            raise ShapeError(
                f"{op}: input sequence_lens must be int32 of shape ({n_n},), "
                f"received {sequence_lens.dtype} {sequence_lens.shape}"
            )
        lengths = sequence_lens.astype(np.int64)
        bad = np.flatnonzero((lengths < 0) | (lengths > t_n))
        if bad.size:
            raise ShapeError(
                f"{op}: sequence_lens[{bad[0]}] is {lengths[bad[0]]}: expected 0 to "
                f"{t_n} (the sequence length of X)"
            )
    state = (d_n, n_n, h_n)
    h0 = _state(op, "initial_h", initial_h, layout, state, x.dtype, compute)
    c0 = _state(op, "initial_c", initial_c, layout, state, x.dtype, compute)
    if p is None:
        peepholes = np.zeros((d_n, 3 * h_n), compute)
    else:
        _expect(op, "P", p, (d_n, 3 * h_n), x.dtype)
        peepholes = np.array(p, compute, order="C")
    check_size((t_n, n_n, d_n * g_n), compute, f"{op} input projection")
    check_size((t_n, d_n, n_n, h_n), compute, f"{op} output Y")
    wt = np.ascontiguousarray(w.reshape(d_n * g_n, i_n).T, compute)  # (I, D*G*H)
    steps = f"then the recurrence, a job per direction and block of {kernels.ROWS} batch rows"
    recurrence = cell.kernel.split(".")[1]
    if compute == np.float32:
        entry, gemm = kernel_table.choose_gemm(t_n * n_n, "X @ W^T for every step at once")
        packed = PackedGemm(wt, few_rows=entry.few_rows)
        choice = Choice(f"{gemm.algorithm} + {recurrence}", f"{gemm.reason}; {steps}",
                        (*gemm.runs, cell.kernel))  # fmt: skip
    else:
        packed = None
        gemm = kernel_table.numpy_gemm(x.dtype, x.dtype)
        choice = Choice(f"{gemm.algorithm} + {recurrence}", f"{gemm.reason}; {steps}",
                        (cell.kernel,))  # fmt: skip
    return Layer(
        cell=cell,
        x_shape=x.shape,
        x_dtype=x.dtype,
        layout=layout,
        wt=wt,
        packed=packed,
        choice=choice,
        rt=np.ascontiguousarray(r.transpose(0, 2, 1), compute),  # (D, H, G*H)
        bias=bias,
        h0=h0,
        c0=c0,
        peepholes=peepholes,
        lengths=lengths,
        reverse=reverse,
        codes=codes,
        alphas=alphas,
        betas=betas,
        clip=math.inf if clip is None else float(clip),
        linear_before_reset=bool(linear_before_reset),
        input_forget=bool(input_forget),
    )


def recurrent(cell: Cell, x: np.ndarray, *inputs: np.ndarray | None, **attrs) -> tuple:
    """One recurrent layer: (Y, Y_h) for RNN and GRU, (Y, Y_h, Y_c) for LSTM."""
    return layer(cell, x, *inputs, **attrs)(x)


def _prepare(cell: Cell):
    """``fn.prepare(x, constants, attrs)`` (see ``registry``): the node's ``Layer`` for
    x's shape, when its other inputs are constants."""

    def prepare(x: np.ndarray, args: list, attrs: dict) -> Layer:
        return layer(cell, x, *args, **attrs)

    return prepare


@register("RNN", since=7, kernels=(*_GEMM_KERNELS, RNN.kernel))
def rnn_7(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
          activation_beta=None, activations=None, clip=None, direction="forward",
          hidden_size=None):  # fmt: skip
    return recurrent(RNN, x, w, r, b, sequence_lens, initial_h,
                     activation_alpha=activation_alpha, activation_beta=activation_beta,
                     activations=activations, clip=clip, direction=direction,
                     hidden_size=hidden_size)  # fmt: skip


@register("RNN", since=14, kernels=(*_GEMM_KERNELS, RNN.kernel))
def rnn_14(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
           activation_beta=None, activations=None, clip=None, direction="forward",
           hidden_size=None, layout=0):  # fmt: skip
    return recurrent(RNN, x, w, r, b, sequence_lens, initial_h,
                     activation_alpha=activation_alpha, activation_beta=activation_beta,
                     activations=activations, clip=clip, direction=direction,
                     hidden_size=hidden_size, layout=layout)  # fmt: skip


@register("GRU", since=7, kernels=(*_GEMM_KERNELS, GRU.kernel))
def gru_7(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
          activation_beta=None, activations=None, clip=None, direction="forward",
          hidden_size=None, linear_before_reset=0):  # fmt: skip
    return recurrent(GRU, x, w, r, b, sequence_lens, initial_h,
                     activation_alpha=activation_alpha, activation_beta=activation_beta,
                     activations=activations, clip=clip, direction=direction,
                     hidden_size=hidden_size, linear_before_reset=linear_before_reset)  # fmt: skip


@register("GRU", since=14, kernels=(*_GEMM_KERNELS, GRU.kernel))
def gru_14(x, w, r, b=None, sequence_lens=None, initial_h=None, *, activation_alpha=None,
           activation_beta=None, activations=None, clip=None, direction="forward",
           hidden_size=None, layout=0, linear_before_reset=0):  # fmt: skip
    return recurrent(GRU, x, w, r, b, sequence_lens, initial_h,
                     activation_alpha=activation_alpha, activation_beta=activation_beta,
                     activations=activations, clip=clip, direction=direction,
                     hidden_size=hidden_size, layout=layout,
                     linear_before_reset=linear_before_reset)  # fmt: skip


@register("LSTM", since=7, kernels=(*_GEMM_KERNELS, LSTM.kernel))
def lstm_7(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
           activation_alpha=None, activation_beta=None, activations=None, clip=None,
           direction="forward", hidden_size=None, input_forget=0):  # fmt: skip
    return recurrent(LSTM, x, w, r, b, sequence_lens, initial_h, initial_c, p,
                     activation_alpha=activation_alpha, activation_beta=activation_beta,
                     activations=activations, clip=clip, direction=direction,
                     hidden_size=hidden_size, input_forget=input_forget)  # fmt: skip


@register("LSTM", since=14, kernels=(*_GEMM_KERNELS, LSTM.kernel))
def lstm_14(x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None, *,
            activation_alpha=None, activation_beta=None, activations=None, clip=None,
            direction="forward", hidden_size=None, input_forget=0, layout=0):  # fmt: skip
    return recurrent(LSTM, x, w, r, b, sequence_lens, initial_h, initial_c, p,
                     activation_alpha=activation_alpha, activation_beta=activation_beta,
                     activations=activations, clip=clip, direction=direction,
                     hidden_size=hidden_size, layout=layout,
                     input_forget=input_forget)  # fmt: skip


for _fn, _cell in ((rnn_7, RNN), (rnn_14, RNN), (gru_7, GRU), (gru_14, GRU), (lstm_7, LSTM),
                   (lstm_14, LSTM)):  # fmt: skip
    _fn.prepare = _prepare(_cell)
