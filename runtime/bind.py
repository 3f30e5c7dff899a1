"""Per-shape binding: a plan's steps laid out once for its input shapes.

A bound step (``Bound``) holds a call made for the plan's shapes, with the step's
other inputs (constants) and its attributes inside it, so that a run calls it with
the tensor alone and runs little Python: after a kernel has swept megabytes through
the caches, every line of Python costs several times its usual time.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import numpy as np

from runtime import kernel_table
from runtime.steps import Step

BoundCall = Callable[[np.ndarray, "np.ndarray | None"], np.ndarray]


class Bound:
    """A step's call laid out once for its plan's input shapes (``bind``). With
    ``residual``, the step's last input is a tensor of the run (the other operand of a
    residual Add fused into a conv), passed to the call as ``call(x, out, res)``."""

    def __init__(self, call: BoundCall, residual: bool = False) -> None:
        self.call = call
        self.residual = residual
        self.choice: kernel_table.Choice | None = getattr(call, "choice", None)

    def __call__(self, x: np.ndarray, *inputs: np.ndarray, _out=None) -> np.ndarray:
        if self.residual:
            return self.call(x, _out and _out[0], inputs[-1])  # type: ignore[call-arg]
        return self.call(x, _out and _out[0])


def bind(
    steps: list[Step], env: Mapping[str, np.ndarray], constants: Mapping[str, np.ndarray]
) -> list[Step]:
    """Steps laid out for the plan's shapes (``env``: the tensors of a run with them):
    each op with a ``prepare`` (Conv, Gemm, Softmax: see the end of ``ops/nn.py``)
    whose other inputs are constants (but for a fused residual Add's operand, the
    conv's last input), and each step whose output is its input reshaped."""
    bound = []
    for step in steps:
        x = env.get(step.inputs[0]) if step.inputs else None
        residual = bool(step.attrs.get("residual"))
        rest = step.inputs[1:-1] if residual else step.inputs[1:]
        if x is None or not all(not n or n in constants for n in rest):
            bound.append(step)
            continue
        args = [constants[n] if n else None for n in rest]
        prepare = getattr(step.fn, "prepare", None)
        call = None if prepare is None else prepare(x, args, step.attrs)
        if call is None and _is_view(x, [env[o] for o in step.outputs if o]):
            call = _reshape_to(env[step.outputs[0]].shape)
        if call is not None:  # the attributes are in it
            step = replace(step, fn=Bound(call, residual), attrs={})
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


def _reshape_to(shape: tuple[int, ...]) -> BoundCall:
    def reshape(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        return x.reshape(shape)

    return reshape
