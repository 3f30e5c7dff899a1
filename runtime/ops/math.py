"""Elementwise math: Abs, Neg, Exp, Log, Sqrt, Reciprocal, Floor, Ceil, Round, Sign, Erf,
the trigonometric and hyperbolic functions, Pow, Mod, Max, Min, Mean, IsNaN, IsInf,
BitShift and the Bitwise ops.

Plain NumPy (NumPy's ufuncs are already vectorised loops), except Erf, which NumPy
lacks: it runs the parallel ``kernels.unary.unary`` kernel (see ``activations``).
Versions registered apart where the semantics changed: Pow 12 takes an exponent of
another type than the base; Max, Min and Mean broadcast from 8 (equal shapes
before); Mod 28 allows the floored modulo (``fmod=0``) of floats, which 10 refuses;
BitShift 28 shifts signed types (arithmetically) and defines shifts outside
0..bits-1, where 11 takes unsigned types only.
"""

from __future__ import annotations

import numpy as np

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.ops.activations import VECTOR, pointwise
from runtime.ops.broadcast import broadcast, same_type
from runtime.ops.registry import register


def _kinds(op: str, x: np.ndarray, kinds: str, what: str) -> None:
    if x.dtype.kind not in kinds:
        raise ShapeError(f"{op}: input must be {what}, received {x.dtype}")


def _unary(op_type: str, since: int, ufunc: np.ufunc, kinds: str = "fiu") -> None:
    what = {"f": "a float tensor", "fi": "a signed numeric tensor"}.get(kinds, "numeric")

    def op(x):
        _kinds(op_type, x, kinds, what)
        with np.errstate(all="ignore"):  # NaN and inf are the answers, as in IEEE
            return ufunc(x)

    op.__name__ = op_type.lower()
    op.__doc__ = f"ONNX {op_type}: numpy.{ufunc.__name__}, elementwise."
    register(op_type, since=since)(op)


for _op, _since, _ufunc, _kinds_ in (
    ("Abs", 6, np.abs, "fiu"),
    ("Neg", 6, np.negative, "fi"),
    ("Exp", 6, np.exp, "f"),
    ("Log", 6, np.log, "f"),
    ("Sqrt", 6, np.sqrt, "f"),
    ("Reciprocal", 6, np.reciprocal, "f"),
    ("Floor", 6, np.floor, "f"),
    ("Ceil", 6, np.ceil, "f"),
    ("Round", 11, np.round, "f"),  # half to even, as the spec says
    ("Sign", 9, np.sign, "fiu"),
    ("Sin", 7, np.sin, "f"),
    ("Cos", 7, np.cos, "f"),
    ("Tan", 7, np.tan, "f"),
    ("Asin", 7, np.arcsin, "f"),
    ("Acos", 7, np.arccos, "f"),
    ("Atan", 7, np.arctan, "f"),
    ("Sinh", 9, np.sinh, "f"),
    ("Cosh", 9, np.cosh, "f"),
    ("Asinh", 9, np.arcsinh, "f"),
    ("Acosh", 9, np.arccosh, "f"),
    ("Atanh", 9, np.arctanh, "f"),
):
    _unary(_op, _since, _ufunc, _kinds_)


@register("Erf", since=9, kernels=VECTOR)
def erf(x, *, _out=None):
    if x.dtype.kind in "iu":  # the spec's integer types: erf in float64, then truncated
        return pointwise("Erf", x.astype(np.float64), "Erf").astype(x.dtype)
    return pointwise("Erf", x, "Erf", out=_out and _out[0])


def _power(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    broadcast("Pow", x, y)
    _kinds("Pow", x, "fiu", "numeric")
    _kinds("Pow", y, "fiu", "numeric")
    with np.errstate(all="ignore"):
        if x.dtype.kind == "f" and y.dtype == x.dtype:
            return np.power(x, y)
        if x.dtype.kind in "iu" and y.dtype.kind in "iu" and not np.any(y < 0):
            return np.power(x, y.astype(x.dtype))
        # mixed types: compute in float64, then the base's type (onnxruntime's rule)
        z = np.power(x.astype(np.float64), y.astype(np.float64))
        if x.dtype.kind in "iu":
            z = np.trunc(np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0))
        return z.astype(x.dtype)


@register("Pow", since=7)
def pow_7(x, y):
    same_type("Pow", x, y)
    return _power(x, y)


@register("Pow", since=12)
def pow_12(x, y):
    return _power(x, y)


def _mod(a: np.ndarray, b: np.ndarray, fmod: int, floats_floor: bool) -> np.ndarray:
    same_type("Mod", a, b)
    broadcast("Mod", a, b)
    if fmod not in (0, 1):
        raise InvalidAttributeError(f"Mod: fmod {fmod}: expected 0 or 1")
    _kinds("Mod", a, "fiu", "numeric")
    if a.dtype.kind == "f" and fmod == 0 and not floats_floor:
        raise InvalidAttributeError(
            f"Mod: fmod=0 on {a.dtype} inputs: before opset 28 floats need fmod=1"
        )
    with np.errstate(all="ignore"):
        if fmod:
            return np.fmod(a, b)
        return np.mod(a, b)


@register("Mod", since=10)
def mod_10(a, b, *, fmod=0):
    return _mod(a, b, fmod, floats_floor=False)


@register("Mod", since=28)
def mod_28(a, b, *, fmod=0):
    return _mod(a, b, fmod, floats_floor=True)


def _variadic(op: str, inputs: tuple, combine, broadcasts: bool) -> np.ndarray:
    if not inputs:
        raise ShapeError(f"{op}: expected at least one input, received none")
    same_type(op, *inputs)
    if broadcasts:
        broadcast(op, *inputs)
    elif any(x.shape != inputs[0].shape for x in inputs):
        shapes = ", ".join(str(x.shape) for x in inputs)
        raise ShapeError(f"{op}: before opset 8 inputs must have one shape, received {shapes}")
    out = np.array(inputs[0], copy=True) if len(inputs) == 1 else combine(inputs[0], inputs[1])
    for x in inputs[2:]:
        out = combine(out, x)
    return out


def _mean(inputs: tuple, broadcasts: bool) -> np.ndarray:
    x0 = inputs[0] if inputs else None
    total = _variadic("Mean", inputs, np.add, broadcasts)
    if x0.dtype.kind == "f":
        return (total / x0.dtype.type(len(inputs))).astype(x0.dtype)
    return (total // len(inputs)).astype(x0.dtype)


for _op, _fn in (("Max", np.maximum), ("Min", np.minimum)):

    def _register(op=_op, fn=_fn) -> None:
        @register(op, since=6)
        def equal_shapes(*inputs):
            return _variadic(op, inputs, fn, broadcasts=False)

        @register(op, since=8)
        def broadcasting(*inputs):
            return _variadic(op, inputs, fn, broadcasts=True)

    _register()


@register("Mean", since=6)
def mean_6(*inputs):
    return _mean(inputs, broadcasts=False)


@register("Mean", since=8)
def mean_8(*inputs):
    return _mean(inputs, broadcasts=True)


@register("IsNaN", since=9)
def isnan(x):
    _kinds("IsNaN", x, "f", "a float tensor")
    return np.isnan(x)


@register("IsInf", since=10)
def isinf(x, *, detect_negative=1, detect_positive=1):
    _kinds("IsInf", x, "f", "a float tensor")
    return np.isinf(x) & (((x > 0) & bool(detect_positive)) | ((x < 0) & bool(detect_negative)))


def _bitshift(x: np.ndarray, y: np.ndarray, direction: str) -> np.ndarray:
    """x shifted by y bits; a shift outside 0..bits-1 gives what the sign fill alone
    gives (-1 for a right shift of a negative x, else 0), as opset 28 defines."""
    if direction not in ("LEFT", "RIGHT"):
        raise InvalidAttributeError(f"BitShift: direction {direction!r}: expected LEFT or RIGHT")
    same_type("BitShift", x, y)
    broadcast("BitShift", x, y)
    x, y = np.broadcast_arrays(x, y)
    bits = x.dtype.itemsize * 8
    unsigned = np.dtype(f"u{x.dtype.itemsize}")
    inside = (y >= 0) & (y < bits)
    s = np.where(inside, y, 0).astype(unsigned)
    if direction == "LEFT":
        z = np.left_shift(x.view(unsigned), s).view(x.dtype)
        fill = np.zeros((), x.dtype)
    else:
        z = np.right_shift(x, s.astype(x.dtype))
        fill = np.where(x < 0, -1, 0).astype(x.dtype) if x.dtype.kind == "i" else 0
    return np.where(inside, z, fill).astype(x.dtype)


@register("BitShift", since=11)
def bitshift_11(x, y, *, direction):
    _kinds("BitShift", x, "u", "an unsigned integer tensor (signed ones from opset 28)")
    return _bitshift(x, y, direction)


@register("BitShift", since=28)
def bitshift_28(x, y, *, direction):
    _kinds("BitShift", x, "iu", "an integer tensor")
    return _bitshift(x, y, direction)


def _bitwise(op_type: str, ufunc: np.ufunc) -> None:
    def op(a, b):
        same_type(op_type, a, b)
        broadcast(op_type, a, b)
        _kinds(op_type, a, "iu", "an integer tensor")
        return ufunc(a, b)

    op.__name__ = op_type.lower()
    register(op_type, since=18)(op)


for _op, _ufunc in (
    ("BitwiseAnd", np.bitwise_and),
    ("BitwiseOr", np.bitwise_or),
    ("BitwiseXor", np.bitwise_xor),
):
    _bitwise(_op, _ufunc)


@register("BitwiseNot", since=18)
def bitwise_not(x):
    _kinds("BitwiseNot", x, "iu", "an integer tensor")
    return np.invert(x)
