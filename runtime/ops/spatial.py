"""Spatial ops: Resize, Upsample, ConvTranspose, DepthToSpace, SpaceToDepth.

Resize computes, once per call, the taps of each resized axis (input indices and
weights for every output position, from the coordinate transformation, the mode
and its options); float32 tensors that resize only their last two axes then run the
parallel kernel ``kernels/resize.resize_planes``, everything else applies the taps
axis by axis in NumPy (float64, cast back). ConvTranspose is a GEMM per image and
group (``kernel_table.matmul``) and a parallel col2im (``kernels/col2im``) for
float32; other float types run the same arithmetic in NumPy. DepthToSpace and
SpaceToDepth are reshapes and transposes (NumPy).
"""

from __future__ import annotations

import numpy as np

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.kernel_table import matmul
from runtime.kernels.col2im import col2im_planes
from runtime.kernels.resize import resize_planes
from runtime.memory import check_size
from runtime.ops.nn import AUTO_PADS, _to3d, kernel_constant
from runtime.ops.registry import register

RESIZE = ("resize.resize_planes",)  # the float32 separable kernel
GEMM = (
    "gemm._pack_a",
    "gemm._pack_b",
    "gemm._gemm_f32_tiles",
    "gemm._gemm_f32_rows",
)  # kernel_table.matmul

# ----------------------------------------------------------------------------- Resize

MODES = ("nearest", "linear", "cubic")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
COORDS_11 = (
    "half_pixel",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_half_pixel_for_nn",
    "tf_crop_and_resize",
)
COORDS_18 = tuple(c for c in COORDS_11 if c != "tf_half_pixel_for_nn")
COORDS_19 = (*COORDS_18, "half_pixel_symmetric")
POLICIES = ("stretch", "not_larger", "not_smaller")


def _source(coord, y, scale, n_in, n_out, roi):
    """Input coordinate of each output index ``y`` (float64), and the extrapolated ones."""
    width = scale * n_in  # the reference's float output length
    outside = None
    if coord == "half_pixel":
        x = (y + 0.5) / scale - 0.5
    elif coord == "half_pixel_symmetric":
        offset = n_in / 2 * (1 - n_out / width)
        x = offset + (y + 0.5) / scale - 0.5
    elif coord == "pytorch_half_pixel":
        x = (y + 0.5) / scale - 0.5 if width != 1 else np.full(n_out, -0.5)
    elif coord == "align_corners":
        x = y * (n_in - 1) / (width - 1) if width != 1 else np.zeros(n_out)
    elif coord == "asymmetric":
        x = y / scale
    elif coord == "tf_half_pixel_for_nn":
        x = (y + 0.5) / scale
    else:  # tf_crop_and_resize
        start, end = roi
        if width != 1:
            x = y * (end - start) * (n_in - 1) / (width - 1)
        else:
            x = np.full(n_out, (end - start) * (n_in - 1) / 2)
        x = x + start * (n_in - 1)
        outside = (x < 0) | (x > n_in - 1)
    return x, outside


def _cubic(r, a):
    """Four cubic-convolution weights for neighbours at -1, 0, 1, 2 (r in (0, 1])."""
    s, t = r + 1, 1 - r
    return np.stack(
        [
            ((a * s - 5 * a) * s + 8 * a) * s - 4 * a,
            ((a + 2) * r - (a + 3)) * r * r + 1,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
        ],
        axis=1,
    )


def _antialias(r, scale, support, kernel):
    """Weights of a filter widened by 1/scale when downsampling, normalised."""
    sc = min(scale, 1.0)
    start = int(np.floor(-support / sc) + 1)
    offsets = np.arange(start, 2 - start)
    w = kernel((offsets[None, :] - r[:, None]) * sc)
    return w / w.sum(axis=1, keepdims=True)


def _cubic_kernel(a):
    def k(x):
        x = np.abs(x)
        near = ((a + 2) * x - (a + 3)) * x * x + 1
        far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
        return np.where(x <= 1, near, np.where(x < 2, far, 0.0))

    return k


def axis_taps(
    n_in: int,
    n_out: int,
    scale: float,
    *,
    mode: str,
    coord: str,
    nearest_mode: str,
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    antialias: int = 0,
    roi: tuple[float, float] = (0.0, 1.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(indices (n_out, T) int64, weights (n_out, T) float64, extrapolated (n_out,) or
    None) for one axis. Indices are clamped into the input (edge padding)."""
    y = np.arange(n_out, dtype=np.float64)
    x, outside = _source(coord, y, scale, n_in, n_out, roi)
    if mode == "nearest":
        # Rounded in float32, as onnxruntime does: a scale such as 2.3 is 2.29999995 in
        # float32, and float64 arithmetic then moves exact ties (4.5) off their value.
        x32, _ = _source(coord, y.astype(np.float32), np.float32(scale), n_in, n_out, roi)
        x = x32.astype(np.float64)
        if nearest_mode == "round_prefer_floor":
            i = np.ceil(x - 0.5)
        elif nearest_mode == "round_prefer_ceil":
            i = np.floor(x + 0.5)
        elif nearest_mode == "floor":
            i = np.floor(x)
        elif nearest_mode == "ceil":
            i = np.ceil(x)
        else:  # "simple", before opset 11: floor upsampling, ceil downsampling
            i = np.ceil(x) if scale < 1 else np.floor(x)
        idx = np.clip(i, 0, n_in - 1).astype(np.int64)[:, None]
        return idx, np.ones((n_out, 1)), outside
    base = np.floor(x)
    whole = x == base
    r = np.where(whole, 1.0, x - base)  # in (0, 1]: the left neighbour is preferred
    if mode == "linear":
        if antialias:
            w = _antialias(r, scale, 1, lambda t: np.clip(1 - np.abs(t), 0, 1))
        else:
            w = np.stack([1 - r, r], axis=1)
    elif antialias:
        w = _antialias(r, scale, 2, _cubic_kernel(cubic_coeff_a))
    else:
        w = _cubic(r, cubic_coeff_a)
    n = w.shape[1]
    start = base + np.where(whole, -(n // 2), -(n // 2) + 1)
    idx = (start[:, None] + np.arange(n)[None, :]).astype(np.int64)
    if exclude_outside:
        w = np.where((idx < 0) | (idx >= n_in), 0.0, w)
        total = w.sum(axis=1, keepdims=True)
        w = w / np.where(total == 0, 1.0, total)
    return np.clip(idx, 0, n_in - 1), w, outside


def _apply_axis(x, axis, idx, w):
    """x resampled along ``axis`` by taps (float64)."""
    g = np.take(x, idx.reshape(-1), axis=axis)
    shape = x.shape[:axis] + idx.shape + x.shape[axis + 1 :]
    g = g.reshape(shape)
    wshape = (1,) * axis + w.shape + (1,) * (x.ndim - axis - 1)
    return (g * w.reshape(wshape)).sum(axis=axis + 1)


def _floats(op, name, v):
    arr = np.asarray(v)
    if arr.dtype.kind != "f":
        raise ShapeError(f"{op}: input {name} must be float, received {arr.dtype}")
    return [float(t) for t in arr.reshape(-1)]


def resize(
    x: np.ndarray,
    roi: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    *,
    antialias: int = 0,
    axes: list[int] | None = None,
    coordinate_transformation_mode: str = "half_pixel",
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    extrapolation_value: float = 0.0,
    keep_aspect_ratio_policy: str = "stretch",
    mode: str = "nearest",
    nearest_mode: str = "round_prefer_floor",
    _coords: tuple[str, ...] = COORDS_19,
    _op: str = "Resize",
) -> np.ndarray:
    """Resize (every opset: the registered versions narrow the attributes)."""
    op, coord = _op, coordinate_transformation_mode
    for what, value, allowed in (
        ("mode", mode, MODES),
        ("coordinate_transformation_mode", coord, _coords),
        ("nearest_mode", nearest_mode, (*NEAREST_MODES, "simple")),
        ("keep_aspect_ratio_policy", keep_aspect_ratio_policy, POLICIES),
    ):
        if value not in allowed:
            raise InvalidAttributeError(f"{op}: {what} {value!r}: expected one of {allowed}")
    if antialias not in (0, 1) or exclude_outside not in (0, 1):
        raise InvalidAttributeError(
            f"{op}: antialias {antialias} and exclude_outside {exclude_outside}: expected 0 or 1"
        )
    rank = x.ndim
    ax = list(range(rank)) if axes is None else [a + rank if a < 0 else a for a in axes]
    if any(not 0 <= a < rank for a in ax) or len(set(ax)) != len(ax):
        raise InvalidAttributeError(f"{op}: axes {axes}: expected distinct axes of rank {rank}")
    has_scales = scales is not None and np.asarray(scales).size > 0
    has_sizes = sizes is not None and np.asarray(sizes).size > 0
    if has_scales == has_sizes:
        raise ShapeError(f"{op}: give exactly one of scales and sizes (non-empty)")
    n_in = [x.shape[a] for a in ax]
    if has_scales:
        sc = _floats(op, "scales", scales)
        if len(sc) != len(ax):
            raise ShapeError(f"{op}: scales has {len(sc)} values, expected {len(ax)}")
        if any(s <= 0 for s in sc):
            raise ShapeError(f"{op}: scales {sc}: expected every scale > 0")
        n_out = [int(s * n) for s, n in zip(sc, n_in, strict=True)]
    else:
        n_out = [int(v) for v in np.asarray(sizes).reshape(-1)]
        if len(n_out) != len(ax) or any(v < 0 for v in n_out):
            raise ShapeError(f"{op}: sizes {n_out}: expected {len(ax)} values >= 0")
        sc = [o / i for o, i in zip(n_out, n_in, strict=True)]
        if keep_aspect_ratio_policy != "stretch":
            s = min(sc) if keep_aspect_ratio_policy == "not_larger" else max(sc)
            sc = [s] * len(ax)
            n_out = [int(s * n + 0.5) for n in n_in]
    box = [(0.0, 1.0)] * len(ax)
    if coord == "tf_crop_and_resize":
        rv = _floats(op, "roi", roi if roi is not None else [])
        if len(rv) == 2 * rank and len(ax) != rank:
            rv = [rv[a] for a in ax] + [rv[rank + a] for a in ax]
        if len(rv) != 2 * len(ax):
            raise ShapeError(f"{op}: roi has {len(rv)} values, expected {2 * len(ax)}")
        box = list(zip(rv[: len(ax)], rv[len(ax) :], strict=True))
    out_shape = list(x.shape)
    for a, o in zip(ax, n_out, strict=True):
        out_shape[a] = o
    check_size(tuple(out_shape), x.dtype, f"{op} output")
    taps = {}
    for a, i, o, s, b in zip(ax, n_in, n_out, sc, box, strict=True):
        if o == i and s == 1.0 and b == (0.0, 1.0):
            continue  # this axis is unchanged
        taps[a] = axis_taps(
            i,
            o,
            s,
            mode=mode,
            coord=coord,
            nearest_mode=nearest_mode,
            cubic_coeff_a=cubic_coeff_a,
            exclude_outside=exclude_outside,
            antialias=antialias and mode != "nearest",
            roi=b,
        )
    if not taps:
        return x.copy()
    if 0 in out_shape or x.size == 0:
        return np.zeros(out_shape, x.dtype)
    if x.dtype == np.float32 and x.ndim >= 2 and set(taps) <= {rank - 2, rank - 1}:
        y = _resize_planes(x, taps, out_shape)
    else:
        y = x.astype(np.float64)
        for a, (idx, w, _) in taps.items():
            y = _apply_axis(y, a, idx, w)
    for a, (_, _, outside) in taps.items():
        if outside is not None and outside.any():
            mask = outside.reshape((1,) * a + (-1,) + (1,) * (rank - a - 1))
            y = np.where(mask, extrapolation_value, y)
    if x.dtype.kind in "iu":  # saturated, then truncated, as onnxruntime and the reference
        info = np.iinfo(x.dtype)
        y = np.clip(y, info.min, info.max)
    return y.astype(x.dtype, copy=False)


def _identity_taps(n):
    return np.arange(n, dtype=np.int64)[:, None], np.ones((n, 1)), None


def _resize_planes(x, taps, out_shape):
    """The float32 kernel on the last two axes (an unchanged one gets identity taps)."""
    h, w = x.shape[-2:]
    oh, ow = out_shape[-2:]
    iy, wy, _ = taps.get(x.ndim - 2) or _identity_taps(h)
    ix, wx, _ = taps.get(x.ndim - 1) or _identity_taps(w)
    planes = x.reshape(-1, h, w)
    out = np.empty((planes.shape[0], oh, ow), np.float32)
    resize_planes(
        np.ascontiguousarray(planes),
        np.ascontiguousarray(iy),
        wy.astype(np.float32),
        np.ascontiguousarray(ix),
        wx.astype(np.float32),
        out,
    )
    return out.reshape(out_shape)


@register("Resize", since=10, kernels=RESIZE)
def resize_10(x, scales, *, mode="nearest"):
    coord = "asymmetric"
    return resize(
        x,
        None,
        scales,
        None,
        mode=mode,
        coordinate_transformation_mode=coord,
        nearest_mode="simple",
        _coords=(coord,),
    )


def _resize_11(
    x,
    roi=None,
    scales=None,
    sizes=None,
    *,
    coordinate_transformation_mode="half_pixel",
    cubic_coeff_a=-0.75,
    exclude_outside=0,
    extrapolation_value=0.0,
    mode="nearest",
    nearest_mode="round_prefer_floor",
):
    if nearest_mode not in NEAREST_MODES:
        raise InvalidAttributeError(
            f"Resize: nearest_mode {nearest_mode!r}: expected one of {NEAREST_MODES}"
        )
    coord = coordinate_transformation_mode
    return resize(
        x,
        roi,
        scales,
        sizes,
        coordinate_transformation_mode=coord,
        cubic_coeff_a=cubic_coeff_a,
        exclude_outside=exclude_outside,
        extrapolation_value=extrapolation_value,
        mode=mode,
        nearest_mode=nearest_mode,
        _coords=COORDS_11,
    )


register("Resize", since=11, kernels=RESIZE)(_resize_11)
register("Resize", since=13, kernels=RESIZE)(_resize_11)  # roi and scales became optional


def _resize_18(coords):
    def resize_18(
        x,
        roi=None,
        scales=None,
        sizes=None,
        *,
        antialias=0,
        axes=None,
        coordinate_transformation_mode="half_pixel",
        cubic_coeff_a=-0.75,
        exclude_outside=0,
        extrapolation_value=0.0,
        keep_aspect_ratio_policy="stretch",
        mode="nearest",
        nearest_mode="round_prefer_floor",
    ):
        if nearest_mode not in NEAREST_MODES:
            raise InvalidAttributeError(
                f"Resize: nearest_mode {nearest_mode!r}: expected one of {NEAREST_MODES}"
            )
        return resize(
            x,
            roi,
            scales,
            sizes,
            antialias=antialias,
            axes=axes,
            coordinate_transformation_mode=coordinate_transformation_mode,
            cubic_coeff_a=cubic_coeff_a,
            exclude_outside=exclude_outside,
            extrapolation_value=extrapolation_value,
            keep_aspect_ratio_policy=keep_aspect_ratio_policy,
            mode=mode,
            nearest_mode=nearest_mode,
            _coords=coords,
        )

    return resize_18


register("Resize", since=18, kernels=RESIZE)(_resize_18(COORDS_18))
register("Resize", since=19, kernels=RESIZE)(_resize_18(COORDS_19))  # half_pixel_symmetric


def _upsample(x, scales, mode):
    if mode not in ("nearest", "linear", "bilinear"):
        raise InvalidAttributeError(
            f"Upsample: mode {mode!r}: expected 'nearest', 'linear' or 'bilinear'"
        )
    sc = _floats("Upsample", "scales", scales)
    if len(sc) != x.ndim or any(s < 1 for s in sc):
        raise ShapeError(f"Upsample: scales {sc}: expected {x.ndim} values >= 1")
    return resize(
        x,
        None,
        np.array(sc, np.float32),
        None,
        mode="linear" if mode == "bilinear" else mode,
        coordinate_transformation_mode="asymmetric",
        nearest_mode="simple",
        _coords=("asymmetric",),
        _op="Upsample",
    )


@register("Upsample", since=7, kernels=RESIZE)
def upsample_7(x, *, mode="nearest", scales):
    return _upsample(x, scales, mode)


@register("Upsample", since=9, kernels=RESIZE)
def upsample_9(x, scales, *, mode="nearest"):
    return _upsample(x, scales, mode)


# ---------------------------------------------------------------------- ConvTranspose


def conv_transpose_geometry(
    in_sp: tuple[int, ...],
    kernel: tuple[int, ...],
    *,
    auto_pad: str,
    dilations: list[int] | None,
    output_padding: list[int] | None,
    output_shape: list[int] | None,
    pads: list[int] | None,
    strides: list[int] | None,
) -> tuple[list[int], list[int], list[int], list[int]]:
    """(output spatial shape, pads at the start, strides, dilations) of a ConvTranspose,
    as the spec says: ``output_shape`` or SAME_* pads split the total padding."""
    nd = len(in_sp)
    st = [1] * nd if strides is None else list(strides)
    dil = [1] * nd if dilations is None else list(dilations)
    opad = [0] * nd if output_padding is None else list(output_padding)
    if len(st) != nd or len(dil) != nd or len(opad) != nd:
        raise InvalidAttributeError(
            f"ConvTranspose: strides {st}, dilations {dil}, output_padding {opad}: "
            f"expected {nd} values each"
        )
    if min(st) < 1 or min(dil) < 1:
        raise InvalidAttributeError(f"ConvTranspose: strides {st}, dilations {dil}: expected >= 1")
    if any(not 0 <= p < max(s, d) for p, s, d in zip(opad, st, dil, strict=True)):
        raise InvalidAttributeError(
            f"ConvTranspose: output_padding {opad}: expected below the stride or dilation"
        )
    if auto_pad not in AUTO_PADS:
        raise InvalidAttributeError(
            f"ConvTranspose: auto_pad {auto_pad!r}: expected one of {AUTO_PADS}"
        )
    eff = [(k - 1) * d + 1 for k, d in zip(kernel, dil, strict=True)]
    full = [s * (i - 1) + p + e for s, i, p, e in zip(st, in_sp, opad, eff, strict=True)]
    if output_shape is not None or auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        if output_shape is not None:
            out = list(output_shape)[-nd:]
            if len(out) != nd:
                raise InvalidAttributeError(
                    f"ConvTranspose: output_shape {list(output_shape)}: expected {nd} values"
                )
        else:
            out = [i * s for i, s in zip(in_sp, st, strict=True)]
        total = [f - o for f, o in zip(full, out, strict=True)]
        upper = auto_pad == "SAME_UPPER"  # the extra pad at the end, else at the start
        # A negative total (an output longer than the full result) adds zeros at the
        # end, whatever auto_pad says, as onnxruntime does.
        begin = [0 if t < 0 else t // 2 if upper else t - t // 2 for t in total]
        return out, begin, st, dil
    if auto_pad == "VALID":
        pads = None
    p = [0] * (2 * nd) if pads is None else list(pads)
    if len(p) != 2 * nd or min(p) < 0:
        raise InvalidAttributeError(f"ConvTranspose: pads {p}: expected {2 * nd} values >= 0")
    out = [f - p[i] - p[i + nd] for i, f in enumerate(full)]
    if min(out) < 1:
        raise ShapeError(f"ConvTranspose: pads {p} leave an empty output {out}")
    return out, p[:nd], st, dil


@register("ConvTranspose", since=1, kernels=(*GEMM, "col2im.col2im_planes"))
def conv_transpose(
    x,
    w,
    b=None,
    *,
    auto_pad="NOTSET",
    dilations=None,
    group=1,
    kernel_shape=None,
    output_padding=None,
    output_shape=None,
    pads=None,
    strides=None,
):
    if x.ndim not in (3, 4, 5) or w.ndim != x.ndim:
        raise ShapeError(
            f"ConvTranspose: expected X and W of one rank among 3, 4, 5, received X {x.shape} "
            f"and W {w.shape}"
        )
    if x.dtype.kind != "f" or w.dtype != x.dtype:
        raise ShapeError(
            f"ConvTranspose: X and W must share a float type, received {x.dtype} and {w.dtype}"
        )
    n, c = x.shape[:2]
    if group < 1 or c % group or w.shape[0] != c:
        raise ShapeError(
            f"ConvTranspose: W {w.shape} needs {c} input channels (dimension 0) and group "
            f"{group} must divide them"
        )
    mg = w.shape[1]
    m = mg * group
    kernel = w.shape[2:]
    if kernel_shape is not None and tuple(kernel_shape) != kernel:
        raise ShapeError(f"ConvTranspose: kernel_shape {list(kernel_shape)} but W has {kernel}")
    if b is not None and b.shape != (m,):
        raise ShapeError(f"ConvTranspose: B must have shape ({m},), received {b.shape}")
    out_sp, begin, st, dil = conv_transpose_geometry(
        x.shape[2:],
        kernel,
        auto_pad=auto_pad,
        dilations=dilations,
        output_padding=output_padding,
        output_shape=output_shape,
        pads=pads,
        strides=strides,
    )
    check_size((n, m, *out_sp), x.dtype, "ConvTranspose output")
    cg = c // group
    kk = int(np.prod(kernel))
    length = int(np.prod(x.shape[2:]))
    wt = w.reshape(group, cg, mg * kk).transpose(0, 2, 1)  # (G, M/G*K, C/G)
    check_size((n, group, mg * kk, length), x.dtype, "ConvTranspose columns")
    cols = np.empty((n, group, mg * kk, length), x.dtype)
    xg = x.reshape(n, group, cg, length)
    for i in range(n):
        if x.dtype == np.float32:
            matmul(wt, np.ascontiguousarray(xg[i]), cols[i])
        else:
            np.matmul(wt, xg[i], out=cols[i])
    bias = np.zeros(m, x.dtype) if b is None else b
    in3, k3 = _to3d(list(x.shape[2:]), 1), _to3d(list(kernel), 1)
    out = np.empty((n, m, *out_sp), x.dtype)
    geometry = (*_to3d(st, 1), *_to3d(dil, 1), *_to3d(begin, 0))
    cols = cols.reshape(n * m, *k3, *in3)  # (N*M, KD, KH, KW, ID, IH, IW)
    if x.dtype == np.float32:
        col2im_planes(cols, kernel_constant(bias), out.reshape(n * m, *_to3d(out_sp, 1)), *geometry)
    else:
        _col2im_numpy(cols, bias, out.reshape(n * m, *_to3d(out_sp, 1)), *geometry)
    return out


def _col2im_numpy(cols, bias, out, sd, sh, sw, dd, dh, dw, pd, ph, pw):
    """``kernels/col2im.col2im_planes`` in NumPy: one strided add per kernel tap."""
    _, kd_, kh_, kw_, id_, ih_, iw_ = cols.shape
    od_, oh_, ow_ = out.shape[1:]
    m = bias.shape[0]
    full = [
        (i - 1) * s + (k - 1) * d + 1
        for i, s, k, d in ((id_, sd, kd_, dd), (ih_, sh, kh_, dh), (iw_, sw, kw_, dw))
    ]
    lo = [min(-pd, 0), min(-ph, 0), min(-pw, 0)]
    hi = [max(f, o + p) for f, o, p in zip(full, (od_, oh_, ow_), (pd, ph, pw), strict=True)]
    acc = np.zeros((out.shape[0], *(h - lo_ for h, lo_ in zip(hi, lo, strict=True))), np.float64)
    for a in range(kd_):
        for b in range(kh_):
            for e in range(kw_):
                z, y, v = a * dd - lo[0], b * dh - lo[1], e * dw - lo[2]
                acc[
                    :,
                    z : z + (id_ - 1) * sd + 1 : sd,
                    y : y + (ih_ - 1) * sh + 1 : sh,
                    v : v + (iw_ - 1) * sw + 1 : sw,
                ] += cols[:, a, b, e]
    z, y, v = pd - lo[0], ph - lo[1], pw - lo[2]
    region = acc[:, z : z + od_, y : y + oh_, v : v + ow_]
    out[...] = region + np.tile(bias, out.shape[0] // m).reshape(-1, 1, 1, 1)


# ------------------------------------------------------------- DepthToSpace, SpaceToDepth


def _depth_to_space(x, blocksize, mode):
    if mode not in ("DCR", "CRD"):
        raise InvalidAttributeError(f"DepthToSpace: mode {mode!r}: expected 'DCR' or 'CRD'")
    if x.ndim != 4:
        raise ShapeError(f"DepthToSpace: expected a 4-D input, received shape {x.shape}")
    b = blocksize
    n, c, h, w = x.shape
    if b < 1 or c % (b * b):
        raise ShapeError(f"DepthToSpace: {c} channels are not divisible by blocksize^2 = {b * b}")
    if mode == "DCR":
        t = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        t = x.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return np.ascontiguousarray(t).reshape(n, c // (b * b), h * b, w * b)


@register("DepthToSpace", since=1)
def depth_to_space_1(x, *, blocksize):
    return _depth_to_space(x, blocksize, "DCR")


@register("DepthToSpace", since=11)
def depth_to_space_11(x, *, blocksize, mode="DCR"):
    return _depth_to_space(x, blocksize, mode)


def _space_to_depth(x, blocksize, mode):
    if mode not in ("DCR", "CRD"):
        raise InvalidAttributeError(f"SpaceToDepth: mode {mode!r}: expected 'DCR' or 'CRD'")
    if x.ndim != 4:
        raise ShapeError(f"SpaceToDepth: expected a 4-D input, received shape {x.shape}")
    b = blocksize
    n, c, h, w = x.shape
    if b < 1 or h % b or w % b:
        raise ShapeError(f"SpaceToDepth: H {h} and W {w} must be divisible by blocksize {b}")
    t = x.reshape(n, c, h // b, b, w // b, b)
    t = t.transpose(0, 3, 5, 1, 2, 4) if mode == "DCR" else t.transpose(0, 1, 3, 5, 2, 4)
    return np.ascontiguousarray(t).reshape(n, c * b * b, h // b, w // b)


@register("SpaceToDepth", since=1)
def space_to_depth_1(x, *, blocksize):
    return _space_to_depth(x, blocksize, "DCR")


@register("SpaceToDepth", since=28)
def space_to_depth_28(x, *, blocksize, mode="DCR"):
    return _space_to_depth(x, blocksize, mode)
