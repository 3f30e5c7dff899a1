"""Sampling and detection ops: GridSample, RoiAlign, NonMaxSuppression.

Cold in classification and segmentation nets (they run once per image on small
tensors, in detection heads); plain NumPy, vectorised over output positions,
computing in float64 and returning the input's type.
"""

from __future__ import annotations

import itertools

import numpy as np

from runtime.errors import InvalidAttributeError, ShapeError
from runtime.ops.registry import register

# ------------------------------------------------------------------------ GridSample


def _reflect(x, lo, hi):
    """Reflect x into [lo, hi] by the nearer border, as often as it takes."""
    rng = hi - lo
    if rng <= 0:
        return np.full_like(x, lo)
    below, above = x < lo, x > hi
    dx = np.where(below, lo - x, x - hi)
    n = np.trunc(dx / rng)
    r = dx - n * rng
    even = n % 2 == 0
    return np.where(
        below, np.where(even, lo + r, hi - r), np.where(above, np.where(even, hi - r, lo + r), x)
    )


def _cubic_weights(t, a=-0.75):
    """Keys' cubic weights of neighbours -1, 0, 1, 2 at fraction t in [0, 1)."""
    s, u = t + 1, 1 - t
    return [
        ((a * s - 5 * a) * s + 8 * a) * s - 4 * a,
        ((a + 2) * t - (a + 3)) * t * t + 1,
        ((a + 2) * u - (a + 3)) * u * u + 1,
        ((a * (u + 1) - 5 * a) * (u + 1) + 8 * a) * (u + 1) - 4 * a,
    ]


def _grid_sample(x, grid, mode, padding_mode, align_corners):
    modes = ("nearest", "linear", "cubic")
    if mode not in modes:
        raise InvalidAttributeError(f"GridSample: mode {mode!r}: expected one of {modes}")
    pads = ("zeros", "border", "reflection")
    if padding_mode not in pads:
        raise InvalidAttributeError(
            f"GridSample: padding_mode {padding_mode!r}: expected one of {pads}"
        )
    nd = x.ndim - 2
    if nd < 1 or grid.ndim != x.ndim or grid.shape[0] != x.shape[0] or grid.shape[-1] != nd:
        raise ShapeError(
            f"GridSample: grid must be (N, *out, {nd}) for X {x.shape}, received {grid.shape}"
        )
    n, c = x.shape[:2]
    dims = x.shape[2:]
    out_sp = grid.shape[1:-1]
    g = grid.astype(np.float64)
    per_axis = []  # (indices, weights, valid) lists per spatial axis of x
    for d, size in enumerate(dims):
        u = g[..., nd - 1 - d]  # the grid lists coordinates last axis first
        if align_corners:
            v, lo, hi = (u + 1) / 2 * (size - 1), 0.0, size - 1.0
        else:
            v, lo, hi = ((u + 1) * size - 1) / 2, -0.5, size - 0.5
        if mode == "nearest":
            v = np.rint(v)
        out = (v < lo) | (v > hi)
        # Nearest and linear move an outside coordinate in; cubic pads each of its taps
        # instead (below), as PyTorch and onnxruntime do.
        if padding_mode == "border" and mode != "cubic":
            v = np.where(out, np.clip(v, 0, size - 1), v)
        elif padding_mode == "reflection" and mode != "cubic":
            v = np.where(out, _reflect(v, lo, hi), v)
        if mode == "nearest":
            taps = [(np.trunc(v), np.ones_like(v))]
        else:
            base = np.floor(v)
            t = v - base
            if mode == "linear":
                taps = [(base, 1 - t), (base + 1, t)]
            else:
                taps = [(base + k - 1, w) for k, w in enumerate(_cubic_weights(t))]
        fixed = []
        for i, w in taps:
            if padding_mode == "zeros":
                valid = (i >= 0) & (i < size)
            else:
                if padding_mode == "reflection":
                    i = np.trunc(_reflect(i, lo, hi))
                valid = np.ones(i.shape, bool)
            fixed.append((np.clip(i, 0, size - 1).astype(np.intp), w, valid))
        per_axis.append(fixed)
    batch = np.arange(n).reshape((n,) + (1,) * len(out_sp))
    y = np.zeros((n, *out_sp, c))
    for combo in itertools.product(*per_axis):
        w = np.ones(g.shape[:-1])
        valid = np.ones(g.shape[:-1], bool)
        for _, wt, ok in combo:
            w = w * wt
            valid &= ok
        vals = x[(batch, slice(None), *(i for i, _, _ in combo))]  # (N, *out, C)
        y += np.where(valid, w, 0.0)[..., None] * vals
    return np.moveaxis(y, -1, 1).astype(x.dtype)


@register("GridSample", since=16)
def grid_sample_16(x, grid, *, align_corners=0, mode="bilinear", padding_mode="zeros"):
    names = {"bilinear": "linear", "bicubic": "cubic", "nearest": "nearest"}
    if mode not in names:
        raise InvalidAttributeError(f"GridSample: mode {mode!r}: expected one of {list(names)}")
    if x.ndim != 4:
        raise ShapeError(f"GridSample: expected a 4-D X before opset 20, received {x.shape}")
    return _grid_sample(x, grid, names[mode], padding_mode, align_corners)


@register("GridSample", since=20)
def grid_sample_20(x, grid, *, align_corners=0, mode="linear", padding_mode="zeros"):
    return _grid_sample(x, grid, mode, padding_mode, align_corners)


# -------------------------------------------------------------------------- RoiAlign


def _bilinear_axis(coord, size):
    """(low, high, weight of low, weight of high, valid) of sample coordinates on one axis."""
    valid = (coord >= -1.0) & (coord <= size)
    v = np.maximum(coord, 0.0)
    low = np.trunc(v).astype(np.intp)
    edge = low >= size - 1
    low = np.where(edge, size - 1, low)
    high = np.where(edge, size - 1, low + 1)
    v = np.where(edge, low, v)
    frac = v - low
    return low, high, 1.0 - frac, frac, valid


def _roi_align(
    x,
    rois,
    batch_indices,
    *,
    mode,
    output_height,
    output_width,
    sampling_ratio,
    spatial_scale,
    half_pixel,
):
    if mode not in ("avg", "max"):
        raise InvalidAttributeError(f"RoiAlign: mode {mode!r}: expected 'avg' or 'max'")
    if x.ndim != 4:
        raise ShapeError(f"RoiAlign: expected X (N, C, H, W), received {x.shape}")
    if rois.ndim != 2 or rois.shape[1] != 4:
        raise ShapeError(f"RoiAlign: expected rois (R, 4), received {rois.shape}")
    idx = np.asarray(batch_indices).reshape(-1)
    if idx.shape[0] != rois.shape[0]:
        raise ShapeError(f"RoiAlign: {idx.shape[0]} batch indices for {rois.shape[0]} rois")
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[0]):
        raise ShapeError(f"RoiAlign: batch_indices outside 0..{x.shape[0] - 1}")
    ph_, pw_ = output_height, output_width
    if ph_ < 1 or pw_ < 1:
        raise InvalidAttributeError(f"RoiAlign: output size {ph_}x{pw_}: expected >= 1")
    c, h, w = x.shape[1:]
    out = np.empty((rois.shape[0], c, ph_, pw_), np.float64)
    offset = 0.5 if half_pixel else 0.0
    for r, (box, b) in enumerate(zip(rois.astype(np.float64), idx, strict=True)):
        x0, y0, x1, y1 = box * spatial_scale - offset
        rw, rh = x1 - x0, y1 - y0
        if not half_pixel:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / ph_, rw / pw_
        gh = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rh / ph_))
        gw = sampling_ratio if sampling_ratio > 0 else int(np.ceil(rw / pw_))
        count = max(gh * gw, 1)
        ys = y0 + np.arange(ph_)[:, None] * bh + (np.arange(gh)[None, :] + 0.5) * bh / gh
        xs = x0 + np.arange(pw_)[:, None] * bw + (np.arange(gw)[None, :] + 0.5) * bw / gw
        yl, yh, wyl, wyh, vy = _bilinear_axis(ys, h)  # (PH, GH)
        xl, xh, wxl, wxh, vx = _bilinear_axis(xs, w)  # (PW, GW)
        ok = (vy[:, :, None, None] & vx[None, None]).astype(np.float64)
        f = x[b].astype(np.float64)  # (C, H, W)

        def term(yi, xi, wy, wx, f=f, ok=ok):
            vals = f[:, yi[:, :, None, None], xi[None, None]]  # (C, PH, GH, PW, GW)
            return vals * (wy[:, :, None, None] * wx[None, None] * ok)

        terms = [
            term(yl, xl, wyl, wxl),
            term(yl, xh, wyl, wxh),
            term(yh, xl, wyh, wxl),
            term(yh, xh, wyh, wxh),
        ]
        if mode == "avg":
            out[r] = sum(terms).sum(axis=(2, 4)) / count
        else:
            out[r] = np.maximum.reduce(terms).max(axis=(2, 4))
    return out.astype(x.dtype)


@register("RoiAlign", since=10)
def roi_align_10(
    x,
    rois,
    batch_indices,
    *,
    mode="avg",
    output_height=1,
    output_width=1,
    sampling_ratio=0,
    spatial_scale=1.0,
):
    return _roi_align(
        x,
        rois,
        batch_indices,
        mode=mode,
        output_height=output_height,
        output_width=output_width,
        sampling_ratio=sampling_ratio,
        spatial_scale=spatial_scale,
        half_pixel=False,
    )


@register("RoiAlign", since=16)
def roi_align_16(
    x,
    rois,
    batch_indices,
    *,
    coordinate_transformation_mode="half_pixel",
    mode="avg",
    output_height=1,
    output_width=1,
    sampling_ratio=0,
    spatial_scale=1.0,
):
    modes = ("half_pixel", "output_half_pixel")
    if coordinate_transformation_mode not in modes:
        raise InvalidAttributeError(
            f"RoiAlign: coordinate_transformation_mode {coordinate_transformation_mode!r}: "
            f"expected one of {modes}"
        )
    return _roi_align(
        x,
        rois,
        batch_indices,
        mode=mode,
        output_height=output_height,
        output_width=output_width,
        sampling_ratio=sampling_ratio,
        spatial_scale=spatial_scale,
        half_pixel=coordinate_transformation_mode == "half_pixel",
    )


# ----------------------------------------------------------------- NonMaxSuppression


def _corners(boxes, center_point_box):
    """(y1, x1, y2, x2) with y1 <= y2 and x1 <= x2, from either box format."""
    if center_point_box:
        xc, yc, bw, bh = (boxes[..., i] for i in range(4))
        return yc - bh / 2, xc - bw / 2, yc + bh / 2, xc + bw / 2
    a, b, c, d = (boxes[..., i] for i in range(4))
    return np.minimum(a, c), np.minimum(b, d), np.maximum(a, c), np.maximum(b, d)


@register("NonMaxSuppression", since=10)
def non_max_suppression(
    boxes,
    scores,
    max_output_boxes_per_class=None,
    iou_threshold=None,
    score_threshold=None,
    *,
    center_point_box=0,
):
    if center_point_box not in (0, 1):
        raise InvalidAttributeError(
            f"NonMaxSuppression: center_point_box {center_point_box}: expected 0 or 1"
        )
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise ShapeError(f"NonMaxSuppression: expected boxes (B, N, 4), received {boxes.shape}")
    if scores.ndim != 3 or scores.shape[0] != boxes.shape[0] or scores.shape[2] != boxes.shape[1]:
        raise ShapeError(
            f"NonMaxSuppression: expected scores (B, C, {boxes.shape[1]}) for boxes "
            f"{boxes.shape}, received {scores.shape}"
        )

    def scalar(v, default):
        return default if v is None or np.asarray(v).size == 0 else np.asarray(v).reshape(-1)[0]

    limit = int(scalar(max_output_boxes_per_class, 0))
    iou_max = float(scalar(iou_threshold, 0.0))
    floor = scalar(score_threshold, None)
    y1, x1, y2, x2 = _corners(boxes.astype(np.float64), center_point_box)
    area = (y2 - y1) * (x2 - x1)
    picked = []
    for b, k in itertools.product(range(scores.shape[0]), range(scores.shape[1])):
        s = scores[b, k]
        cand = np.arange(s.size) if floor is None else np.nonzero(s > floor)[0]
        order = cand[np.lexsort((cand, -s[cand]))]  # best score first, then lower index
        kept: list[int] = []
        for i in order:
            if len(kept) >= limit:
                break
            if kept:
                j = np.array(kept)
                ih = np.minimum(y2[b, i], y2[b, j]) - np.maximum(y1[b, i], y1[b, j])
                iw = np.minimum(x2[b, i], x2[b, j]) - np.maximum(x1[b, i], x1[b, j])
                inter = np.where((ih > 0) & (iw > 0), ih * iw, 0.0)
                union = area[b, i] + area[b, j] - inter
                ok = (inter > 0) & (area[b, i] > 0) & (area[b, j] > 0) & (union > 0)
                iou = np.where(ok, inter / np.where(union > 0, union, 1.0), 0.0)
                if np.any(iou > iou_max):
                    continue
            kept.append(int(i))
            picked.append((b, k, int(i)))
    return np.array(picked, dtype=np.int64).reshape(-1, 3)
