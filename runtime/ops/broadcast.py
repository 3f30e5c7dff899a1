"""NumPy-style broadcasting checks for the elementwise ops of ``math``, ``logic`` and
``activations``: inputs of one type, shapes that broadcast, and an output within the
size limit, checked before NumPy allocates it."""

from __future__ import annotations

import numpy as np

from runtime.memory import check_size
from runtime.ops.elementwise import _same_type, broadcast_shape


def same_type(op: str, *arrays: np.ndarray) -> None:
    """ShapeError unless every array has the first one's type."""
    for x in arrays[1:]:
        _same_type(op, arrays[0], x)


def broadcast(op: str, *arrays: np.ndarray, dtype: np.dtype | type | None = None) -> tuple:
    """The shape the arrays broadcast to: a ShapeError if they do not, a
    TensorTooLargeError if an output of that shape (of ``dtype``, else the first
    array's) would pass the size limit."""
    shape = broadcast_shape(op, *arrays)  # a ShapeError, or the inputs' type within the limit
    if dtype is not None:
        check_size(shape, dtype, f"{op} output")
    return shape
