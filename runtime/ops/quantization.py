"""Quantization ops: QuantizeLinear, DequantizeLinear (per tensor, per axis, blocked),
DynamicQuantizeLinear, QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger.

Correct before fast: plain NumPy. Integer products accumulate exactly: the integer
operands (zero points subtracted) are multiplied as float64 through BLAS, exact for
sums below 2**53, far above any int8/uint8/int16 convolution, then cast to int32.
Requantization follows the ONNX reference arithmetic (the multiplier
``x_scale * w_scale / y_scale`` in the scales' type, round half to even, saturate).
Float8 and 4/2-bit types go through ``onnx.numpy_helper.saturate_cast`` and
ml_dtypes, as the reference does.
"""

from __future__ import annotations

import numpy as np
import onnx
from numpy.lib.stride_tricks import sliding_window_view
from onnx import TensorProto

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.ops.nn import _spatial
from runtime.ops.registry import register

INTEGER_RANGES = {
    TensorProto.UINT8: (0, 255),
    TensorProto.INT8: (-128, 127),
    TensorProto.UINT16: (0, 65535),
    TensorProto.INT16: (-32768, 32767),
    TensorProto.INT32: (-(2**31), 2**31 - 1),
    TensorProto.UINT4: (0, 15),
    TensorProto.INT4: (-8, 7),
    TensorProto.UINT2: (0, 3),
    TensorProto.INT2: (-2, 1),
}
FLOAT8 = (
    TensorProto.FLOAT8E4M3FN,
    TensorProto.FLOAT8E4M3FNUZ,
    TensorProto.FLOAT8E5M2,
    TensorProto.FLOAT8E5M2FNUZ,
)
FLOAT4 = (TensorProto.FLOAT4E2M1,)


def _broadcast_param(op, name, value, shape, axis, block_size):
    """A scale or zero point shaped to broadcast against x: scalar, per axis or blocked."""
    v = np.asarray(value)
    if v.size == 1:
        return v.reshape(())
    rank = len(shape)
    if not -rank <= axis < rank:
        raise InvalidAttributeError(f"{op}: axis {axis} out of range for rank {rank}")
    ax = axis % rank
    if not block_size:
        if v.ndim != 1 or v.size != shape[ax]:
            raise ShapeError(
                f"{op}: {name} must be a scalar or 1-D of length {shape[ax]} (axis {ax}), "
                f"received shape {v.shape}"
            )
        return v.reshape([-1 if i == ax else 1 for i in range(rank)])
    if block_size < 0:
        raise InvalidAttributeError(f"{op}: block_size {block_size}: expected >= 0")
    want = tuple(-(-d // block_size) if i == ax else d for i, d in enumerate(shape))
    if v.shape != want:
        raise ShapeError(
            f"{op}: blocked {name} must have shape {want} for block_size {block_size}, "
            f"received {v.shape}"
        )
    return np.repeat(v, block_size, axis=ax).take(range(shape[ax]), axis=ax)


def _type_of(dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _quantize(
    x, y_scale, y_zero_point, *, axis=1, saturate=1, block_size=0, output_dtype=0, precision=0
):
    op = "QuantizeLinear"
    to = output_dtype or (
        _type_of(y_zero_point.dtype) if y_zero_point is not None else TensorProto.UINT8
    )
    if y_zero_point is not None and output_dtype and _type_of(y_zero_point.dtype) != output_dtype:
        raise InvalidAttributeError(
            f"{op}: output_dtype {output_dtype} differs from the zero point's type "
            f"{y_zero_point.dtype}"
        )
    if to not in INTEGER_RANGES and to not in FLOAT8 + FLOAT4:
        raise InvalidAttributeError(
            f"{op}: output type {TensorProto.DataType.Name(to)} is not a quantized type"
        )
    scale = _broadcast_param(op, "y_scale", y_scale, x.shape, axis, block_size)
    if precision:
        work = onnx.helper.tensor_dtype_to_np_dtype(precision)
        q = x.astype(work) / scale.astype(work)
    else:
        q = x / scale
    dtype = onnx.helper.tensor_dtype_to_np_dtype(to)
    zp = None
    if y_zero_point is not None:
        zp = _broadcast_param(op, "y_zero_point", y_zero_point, x.shape, axis, block_size)
    if to in INTEGER_RANGES:
        lo, hi = INTEGER_RANGES[to]
        qi = np.rint(q).astype(np.float64)
        if zp is not None:
            qi = qi + zp.astype(np.float64)
        return np.clip(qi, lo, hi).astype(np.int64).astype(dtype)
    if to in FLOAT4:
        return (q if zp is None else q + zp.astype(np.float32)).astype(dtype)
    if saturate:
        return onnx.numpy_helper.saturate_cast(q, dtype)
    return q.astype(dtype)


@register("QuantizeLinear", since=10)
def quantize_linear_10(x, y_scale, y_zero_point=None):
    return _quantize(x, y_scale, y_zero_point)


@register("QuantizeLinear", since=13)
def quantize_linear_13(x, y_scale, y_zero_point=None, *, axis=1):
    return _quantize(x, y_scale, y_zero_point, axis=axis)


@register("QuantizeLinear", since=19)
def quantize_linear_19(x, y_scale, y_zero_point=None, *, axis=1, saturate=1):
    return _quantize(x, y_scale, y_zero_point, axis=axis, saturate=saturate)


@register("QuantizeLinear", since=21)
def quantize_linear_21(
    x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0, saturate=1
):
    return _quantize(
        x,
        y_scale,
        y_zero_point,
        axis=axis,
        saturate=saturate,
        block_size=block_size,
        output_dtype=output_dtype,
    )


@register("QuantizeLinear", since=23)
def quantize_linear_23(
    x, y_scale, y_zero_point=None, *, axis=1, block_size=0, output_dtype=0, precision=0, saturate=1
):
    return _quantize(
        x,
        y_scale,
        y_zero_point,
        axis=axis,
        saturate=saturate,
        block_size=block_size,
        output_dtype=output_dtype,
        precision=precision,
    )


def _dequantize(x, x_scale, x_zero_point, *, axis=1, block_size=0, output_dtype=0):
    op = "DequantizeLinear"
    xt = _type_of(x.dtype)
    dx = x.astype(np.float32)
    if x_zero_point is not None:
        if xt in FLOAT8:
            if np.any(x_zero_point.astype(np.float32) != 0):
                raise ShapeError(f"{op}: a float8 input takes a zero point of 0")
        elif xt not in FLOAT4:
            if x_zero_point.dtype != x.dtype:
                raise ShapeError(
                    f"{op}: x_zero_point must have x's type {x.dtype}, received "
                    f"{x_zero_point.dtype}"
                )
            zp = _broadcast_param(op, "x_zero_point", x_zero_point, x.shape, axis, block_size)
            dx = dx - zp.astype(np.float32)
    scale = _broadcast_param(op, "x_scale", x_scale, x.shape, axis, block_size)
    out = onnx.helper.tensor_dtype_to_np_dtype(output_dtype) if output_dtype else x_scale.dtype
    return (dx * scale).astype(out)


@register("DequantizeLinear", since=10)
def dequantize_linear_10(x, x_scale, x_zero_point=None):
    return _dequantize(x, x_scale, x_zero_point)


@register("DequantizeLinear", since=13)
def dequantize_linear_13(x, x_scale, x_zero_point=None, *, axis=1):
    return _dequantize(x, x_scale, x_zero_point, axis=axis)


@register("DequantizeLinear", since=21)
def dequantize_linear_21(x, x_scale, x_zero_point=None, *, axis=1, block_size=0):
    return _dequantize(x, x_scale, x_zero_point, axis=axis, block_size=block_size)


@register("DequantizeLinear", since=23)
def dequantize_linear_23(x, x_scale, x_zero_point=None, *, axis=1, block_size=0, output_dtype=0):
    return _dequantize(
        x, x_scale, x_zero_point, axis=axis, block_size=block_size, output_dtype=output_dtype
    )


@register("DynamicQuantizeLinear", since=11)
def dynamic_quantize_linear(x):
    if x.dtype != np.float32:
        raise ShapeError(f"DynamicQuantizeLinear: x must be float32, received {x.dtype}")
    hi = np.float32(max(0.0, float(np.max(x)))) if x.size else np.float32(0)
    lo = np.float32(min(0.0, float(np.min(x)))) if x.size else np.float32(0)
    scale = np.float32(1.0 if hi == lo else hi - lo) / np.float32(255)
    zp = np.rint(np.clip(np.float32(0) - lo / scale, 0, 255))
    y = np.clip(np.rint(x / scale) + zp, 0, 255).astype(np.uint8)
    return y, np.array(scale, np.float32), np.array(zp, np.uint8)


def _centered(op, name, v, zero_point, axis_len=None):
    """An integer tensor minus its zero point, as float64 (exact)."""
    if v.dtype.kind not in "iu":
        raise ShapeError(f"{op}: input {name} must be an integer type, received {v.dtype}")
    out = v.astype(np.float64)
    if zero_point is None:
        return out
    zp = np.asarray(zero_point)
    if zp.dtype != v.dtype:
        raise ShapeError(f"{op}: the zero point of {name} must be {v.dtype}, received {zp.dtype}")
    if zp.size == 1:
        return out - float(zp.reshape(-1)[0])
    if axis_len is None or zp.ndim != 1 or zp.size != axis_len:
        raise ShapeError(
            f"{op}: zero point of {name} has shape {zp.shape}, expected a scalar"
            + (f" or ({axis_len},)" if axis_len else "")
        )
    return out - zp.astype(np.float64).reshape(-1, *([1] * (v.ndim - 1)))


def _conv_exact(op, x, w, *, auto_pad, dilations, group, kernel_shape, pads, strides):
    """Convolution of float64 tensors holding integers, exactly (float64 GEMM)."""
    if x.ndim < 3 or w.ndim != x.ndim:
        raise ShapeError(f"{op}: expected X and W of one rank >= 3, received {x.shape} {w.shape}")
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    if group < 1 or c % group or m % group or cg * group != c:
        raise ShapeError(
            f"{op}: X has {c} channels, W {w.shape} with group {group} needs {cg * group}"
        )
    kernel = w.shape[2:]
    if kernel_shape is not None and tuple(kernel_shape) != kernel:
        raise ShapeError(f"{op}: kernel_shape {list(kernel_shape)} but W has {list(kernel)}")
    out_sp, begin, end, st, dil = _spatial(
        op, x.shape[2:], kernel, auto_pad=auto_pad, pads=pads, strides=strides, dilations=dilations
    )
    nd = x.ndim - 2
    xp = np.pad(x, [(0, 0), (0, 0), *zip(begin, end, strict=True)])
    span = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    win = sliding_window_view(xp, span, axis=tuple(range(2, 2 + nd)))
    steps = tuple(slice(None, (o - 1) * s + 1, s) for o, s in zip(out_sp, st, strict=True))
    taps = tuple(slice(None, None, d) for d in dil)
    win = win[(slice(None), slice(None), *steps, *taps)]  # (N, C, *out, *kernel)
    win = win.reshape(n, group, cg, *out_sp, *kernel)
    win = np.moveaxis(win, 2, 2 + nd)  # (N, G, *out, C/G, *kernel)
    length = int(np.prod(out_sp))
    cols = win.reshape(n, group, length, -1)  # (N, G, L, C/G*K)
    wg = w.reshape(group, m // group, -1)  # (G, M/G, C/G*K)
    y = np.einsum("nglk,gmk->ngml", cols, wg, optimize=True)
    return y.reshape(n, m, *out_sp)


@register("ConvInteger", since=10)
def conv_integer(
    x,
    w,
    x_zero_point=None,
    w_zero_point=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
):
    xc = _centered("ConvInteger", "x", x, x_zero_point)
    wc = _centered("ConvInteger", "w", w, w_zero_point, w.shape[0])
    y = _conv_exact(
        "ConvInteger",
        xc,
        wc,
        auto_pad=auto_pad,
        dilations=dilations,
        group=group,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
    )
    return y.astype(np.int32)


def _requantize(acc, multiplier, y_zero_point, fallback_dtype):
    """round(acc * multiplier) + zero point, saturated to the output type. With float32
    scales the product is float32, as onnxruntime's kernels compute it (float64 rounds
    a few values to the other level, and a one-level step in an activation moves a
    later layer's output by several levels)."""
    multiplier = np.asarray(multiplier)
    work = np.float32 if multiplier.dtype == np.float32 else np.float64
    r = acc.astype(work) * multiplier.astype(work)
    dtype = fallback_dtype if y_zero_point is None else y_zero_point.dtype
    if y_zero_point is not None:
        r = r + y_zero_point.astype(work)
    info = np.iinfo(dtype)
    return np.clip(np.rint(r), info.min, info.max).astype(dtype)


def _scalar_param(op, name, v):
    v = np.asarray(v)
    if v.size != 1:
        raise ShapeError(f"{op}: {name} must be a scalar, received shape {v.shape}")
    return v.reshape(())


@register("QLinearConv", since=10)
def qlinear_conv(
    x,
    x_scale,
    x_zero_point,
    w,
    w_scale,
    w_zero_point,
    y_scale,
    y_zero_point,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    pads=None,
    strides=None,
):
    op = "QLinearConv"
    xc = _centered(op, "x", x, x_zero_point)
    wc = _centered(op, "w", w, w_zero_point, w.shape[0])
    acc = _conv_exact(
        op,
        xc,
        wc,
        auto_pad=auto_pad,
        dilations=dilations,
        group=group,
        kernel_shape=kernel_shape,
        pads=pads,
        strides=strides,
    )
    m = w.shape[0]
    if b is not None:
        if b.shape != (m,) or b.dtype != np.int32:
            raise ShapeError(f"{op}: B must be int32 of shape ({m},), received {b.dtype} {b.shape}")
        acc = acc + b.astype(np.float64).reshape(1, m, *([1] * (x.ndim - 2)))
    acc = acc.astype(np.int32).astype(np.float64)
    ws = np.asarray(w_scale)
    if ws.size > 1:
        if ws.ndim != 1 or ws.size != m:
            raise ShapeError(f"{op}: w_scale must be a scalar or ({m},), received {ws.shape}")
        ws = ws.reshape(1, m, *([1] * (x.ndim - 2)))
    else:
        ws = ws.reshape(())
    xs, ys = _scalar_param(op, "x_scale", x_scale), _scalar_param(op, "y_scale", y_scale)
    zp = None if y_zero_point is None else _scalar_param(op, "y_zero_point", y_zero_point)
    return _requantize(acc, xs * ws / ys, zp, x.dtype)


def _matmul_exact(op, a, b):
    if a.ndim < 1 or b.ndim < 1:
        raise ShapeError(f"{op}: scalars are not allowed, received {a.shape} and {b.shape}")
    ka, kb = a.shape[-1], (b.shape[0] if b.ndim == 1 else b.shape[-2])
    if ka != kb:
        raise ShapeError(f"{op}: inner dimensions differ: A {a.shape}, B {b.shape}")
    try:
        return np.matmul(a, b)
    except ValueError as exc:
        raise ShapeError(f"{op}: A {a.shape} and B {b.shape}: {exc}") from None


def _row_zero_point(op, name, v, zero_point, axis):
    """v minus a zero point that is a scalar or one value per row (A) / column (B)."""
    if v.dtype.kind not in "iu":
        raise ShapeError(f"{op}: input {name} must be an integer type, received {v.dtype}")
    out = v.astype(np.float64)
    if zero_point is None:
        return out
    zp = np.asarray(zero_point)
    if zp.size == 1:
        return out - float(zp.reshape(-1)[0])
    n = v.shape[axis]
    if zp.shape[-1:] != (n,) and zp.shape != (n, 1):
        raise ShapeError(
            f"{op}: zero point of {name} has shape {zp.shape}, expected scalar or {n} values"
        )
    zp = zp.astype(np.float64).reshape(-1)
    return out - (zp.reshape(-1, 1) if axis == v.ndim - 2 else zp)


@register("MatMulInteger", since=10)
def matmul_integer(a, b, a_zero_point=None, b_zero_point=None):
    op = "MatMulInteger"
    ac = _row_zero_point(op, "A", a, a_zero_point, max(a.ndim - 2, 0))
    bc = _row_zero_point(op, "B", b, b_zero_point, b.ndim - 1)
    return _matmul_exact(op, ac, bc).astype(np.int32)


@register("QLinearMatMul", since=10)
def qlinear_matmul(a, a_scale, a_zero_point, b, b_scale, b_zero_point, y_scale, y_zero_point):
    op = "QLinearMatMul"
    ac = _row_zero_point(op, "a", a, a_zero_point, max(a.ndim - 2, 0))
    bc = _row_zero_point(op, "b", b, b_zero_point, b.ndim - 1)
    acc = _matmul_exact(op, ac, bc).astype(np.int32).astype(np.float64)
    multiplier = np.asarray(a_scale) * np.asarray(b_scale) / np.asarray(y_scale)
    return _requantize(acc, multiplier, y_zero_point, a.dtype)
