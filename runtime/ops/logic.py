"""Comparison and logic: Equal, Less, LessOrEqual, Greater, GreaterOrEqual, Not, And, Or,
Xor, with NumPy broadcasting (opset 7 on). Plain NumPy: the ufuncs are vectorised.

Comparisons take two inputs of one type and give bool; the logic ops take bool.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import ShapeError
from runtime.ops.broadcast import broadcast, same_type
from runtime.ops.registry import register


def _bool(op: str, x: np.ndarray) -> None:
    if x.dtype != np.bool_:
        raise ShapeError(f"{op}: inputs must be bool, received {x.dtype}")


def _binary(op_type: str, since: int, ufunc: np.ufunc, logic: bool) -> None:
    def op(a, b):
        same_type(op_type, a, b)
        broadcast(op_type, a, b, dtype=np.bool_)
        if logic:
            _bool(op_type, a)
        elif a.dtype.kind in "OSU" and op_type == "Equal":
            return np.asarray(ufunc(a, b), dtype=bool)  # strings, from opset 19
        elif a.dtype.kind not in "biuf":
            raise ShapeError(f"{op_type}: inputs must be numeric or bool, received {a.dtype}")
        return ufunc(a, b)

    op.__name__ = op_type.lower()
    op.__doc__ = f"ONNX {op_type}: numpy.{ufunc.__name__}, broadcasting."
    register(op_type, since=since)(op)


for _op, _since, _ufunc, _logic in (
    ("Equal", 7, np.equal, False),
    ("Less", 7, np.less, False),
    ("Greater", 7, np.greater, False),
    ("LessOrEqual", 12, np.less_equal, False),
    ("GreaterOrEqual", 12, np.greater_equal, False),
    ("And", 7, np.logical_and, True),
    ("Or", 7, np.logical_or, True),
    ("Xor", 7, np.logical_xor, True),
):
    _binary(_op, _since, _ufunc, _logic)


@register("Not", since=1)
def not_(x):
    _bool("Not", x)
    return np.logical_not(x)
