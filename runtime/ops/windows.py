"""Window ops beside Conv and the pools: LpPool, MaxUnpool, Col2Im, CenterCropPad.

Cold in CNNs; plain NumPy in the input's type (LpPool sums in float64). Col2Im
shares ConvTranspose's col2im (``ops/spatial``).
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.memory import check_size
from runtime.ops.nn import _spatial, _to3d
from runtime.ops.registry import register
from runtime.ops.spatial import _col2im_numpy
from runtime.ops.tensor import _axis, _ints


def _lp_pool(x, *, p, kernel_shape, auto_pad, pads, strides, dilations=None, ceil_mode=0):
    if x.ndim < 3 or x.dtype.kind != "f":
        raise ShapeError(f"LpPool: expected a float X of rank >= 3, received {x.dtype} {x.shape}")
    if kernel_shape is None or len(kernel_shape) != x.ndim - 2:
        raise InvalidAttributeError(
            f"LpPool: kernel_shape {list(kernel_shape or [])}: expected {x.ndim - 2} sizes "
            f"for X {x.shape}"
        )
    if p <= 0:
        raise InvalidAttributeError(f"LpPool: p {p}: expected > 0")
    out_sp, begin, end, st, dil = _spatial(
        "LpPool",
        x.shape[2:],
        tuple(kernel_shape),
        auto_pad=auto_pad,
        pads=pads,
        strides=strides,
        dilations=dilations,
        ceil_mode=ceil_mode,
        pool=True,
    )
    nd = x.ndim - 2
    if 0 in out_sp:  # a window larger than the padded input: no output, as onnxruntime
        return np.zeros((*x.shape[:2], *out_sp), x.dtype)
    extra = [
        max(0, (o - 1) * s + (k - 1) * d + 1 - (i + b + e))
        for o, s, k, d, i, b, e in zip(
            out_sp, st, kernel_shape, dil, x.shape[2:], begin, end, strict=True
        )
    ]
    power = np.abs(x.astype(np.float64)) ** p
    width = [(0, 0), (0, 0)] + [(b, e + t) for b, e, t in zip(begin, end, extra, strict=True)]
    padded = np.pad(power, width)
    span = [(k - 1) * d + 1 for k, d in zip(kernel_shape, dil, strict=True)]
    win = sliding_window_view(padded, span, axis=tuple(range(2, 2 + nd)))
    taps = tuple(slice(None, None, d) for d in dil)
    steps = tuple(slice(None, (o - 1) * s + 1, s) for o, s in zip(out_sp, st, strict=True))
    win = win[(slice(None), slice(None), *steps, *taps)]
    total = win.sum(axis=tuple(range(2 + nd, 2 + 2 * nd)))
    return (total ** (1.0 / p)).astype(x.dtype)


@register("LpPool", since=1)
def lp_pool_1(x, *, auto_pad="NOTSET", kernel_shape=None, p=2, pads=None, strides=None):
    return _lp_pool(
        x, p=p, kernel_shape=kernel_shape, auto_pad=auto_pad, pads=pads, strides=strides
    )


@register("LpPool", since=18)
def lp_pool_18(
    x,
    *,
    auto_pad="NOTSET",
    ceil_mode=0,
    dilations=None,
    kernel_shape=None,
    p=2,
    pads=None,
    strides=None,
):
    return _lp_pool(
        x,
        p=p,
        kernel_shape=kernel_shape,
        auto_pad=auto_pad,
        pads=pads,
        strides=strides,
        dilations=dilations,
        ceil_mode=ceil_mode,
    )


@register("MaxUnpool", since=9)
def max_unpool(x, indices, output_shape=None, *, kernel_shape, pads=None, strides=None):
    nd = x.ndim - 2
    if nd < 1 or len(kernel_shape) != nd:
        raise InvalidAttributeError(
            f"MaxUnpool: kernel_shape {list(kernel_shape)}: expected {nd} sizes for X {x.shape}"
        )
    st = [1] * nd if strides is None else list(strides)
    pd = [0] * (2 * nd) if pads is None else list(pads)
    if len(st) != nd or len(pd) != 2 * nd or min(st) < 1 or min(pd) < 0:
        raise InvalidAttributeError(f"MaxUnpool: strides {st}, pads {pd}: bad values for {nd}-D")
    idx = np.asarray(indices)
    if idx.shape != x.shape or idx.dtype.kind not in "iu":
        raise ShapeError(
            f"MaxUnpool: I must be integers shaped like X {x.shape}, received "
            f"{idx.dtype} {idx.shape}"
        )
    sizes = zip(x.shape[2:], st, kernel_shape, strict=True)
    inferred = [*x.shape[:2]] + [
        (i - 1) * s - pd[j] - pd[j + nd] + k for j, (i, s, k) in enumerate(sizes)
    ]
    shape = inferred if output_shape is None else _ints(output_shape, "MaxUnpool", "output_shape")
    if len(shape) != x.ndim or any(s < i for s, i in zip(shape, inferred, strict=True)):
        raise ShapeError(f"MaxUnpool: output_shape {shape}: expected at least {inferred}")
    total = int(np.prod(inferred))
    if idx.size and (idx.min() < 0 or idx.max() >= total):
        raise ShapeError(
            f"MaxUnpool: indices range {idx.min()}..{idx.max()}: expected 0..{total - 1}"
        )
    check_size(tuple(shape), x.dtype, "MaxUnpool output")
    flat = np.zeros(total, x.dtype)
    flat[idx.reshape(-1)] = x.reshape(-1)
    out = np.zeros(shape, x.dtype)
    out[tuple(slice(0, i) for i in inferred)] = flat.reshape(inferred)
    return out


@register("Col2Im", since=18)
def col2im(x, image_shape, block_shape, *, dilations=None, pads=None, strides=None):
    image = _ints(image_shape, "Col2Im", "image_shape")
    block = _ints(block_shape, "Col2Im", "block_shape")
    nd = len(image)
    if len(block) != nd or nd not in (1, 2, 3):
        raise ShapeError(f"Col2Im: image_shape {image} and block_shape {block}: 1 to 3 values each")
    if x.ndim != 3:
        raise ShapeError(f"Col2Im: expected input (N, C*prod(block), L), received {x.shape}")
    kk = int(np.prod(block))
    if x.shape[1] % kk:
        raise ShapeError(f"Col2Im: dimension 1 ({x.shape[1]}) is not a multiple of {kk}")
    dil = [1] * nd if dilations is None else list(dilations)
    st = [1] * nd if strides is None else list(strides)
    pd = [0] * (2 * nd) if pads is None else list(pads)
    blocks = [
        (i + pd[j] + pd[j + nd] - ((k - 1) * d + 1)) // s + 1
        for j, (i, k, d, s) in enumerate(zip(image, block, dil, st, strict=True))
    ]
    if int(np.prod(blocks)) != x.shape[2] or min(blocks) < 1:
        raise ShapeError(f"Col2Im: the input has {x.shape[2]} blocks, the geometry gives {blocks}")
    n, c = x.shape[0], x.shape[1] // kk
    cols = x.reshape(n * c, *_to3d(block, 1), *_to3d(blocks, 1))
    out = np.empty((n * c, *_to3d(image, 1)), x.dtype)
    _col2im_numpy(
        cols, np.zeros(1, x.dtype), out, *_to3d(st, 1), *_to3d(dil, 1), *_to3d(pd[:nd], 0)
    )
    return out.reshape(n, c, *image)


@register("CenterCropPad", since=18)
def center_crop_pad(x, shape, *, axes=None):
    target = _ints(shape, "CenterCropPad", "shape")
    ax = list(range(x.ndim)) if axes is None else [_axis(a, x.ndim, "CenterCropPad") for a in axes]
    if len(target) != len(ax):
        raise ShapeError(f"CenterCropPad: shape {target} needs one value per axis of {ax}")
    out_shape = list(x.shape)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    for a, t in zip(ax, target, strict=True):
        d = x.shape[a]
        out_shape[a] = t
        if t < d:
            s = (d - t) // 2
            src[a] = slice(s, s + t)
        elif t > d:
            s = (t - d) // 2
            dst[a] = slice(s, s + d)
    check_size(tuple(out_shape), x.dtype, "CenterCropPad output")
    out = np.zeros(out_shape, x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out
