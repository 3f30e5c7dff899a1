"""Which algorithm each Conv and Gemm runs, decided in one place, with the reason.

The engine asks here twice: at load (``conv_at_load``: can this conv run as
Winograd at all, from its weights and attributes) and per input shape, when a plan
binds its steps (``conv_at_shape``: which Winograd tile, from the number of tiles;
``gemm_at_shape``). A plan that compiles into one chain program runs none of these:
``Plan.not_compiled`` says why a plan did not compile. Each answer is a ``Choice``,
kept with the step and printed by ``describe`` (``InferenceSession.describe()``,
``cnn describe``). Weights are transformed only for the algorithm that runs
(``WinogradWeights`` transforms on first use).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runtime.config import WINOGRAD_MIN_CHANNELS, WINOGRAD_SMALL_TILES
from runtime.kernels import gemm, winograd


@dataclass(frozen=True)
class Choice:
    """An algorithm and why it was chosen (or why a faster one was not)."""

    algorithm: str
    reason: str


def winograd_weights(w: np.ndarray, stride: int = 1, tile: int | None = None) -> WinogradWeights:
    """``WinogradWeights`` for a conv's weights at ``stride``."""
    return WinogradWeights(w, stride, -(-w.shape[2] // stride), tile)


@dataclass(eq=False)
class WinogradWeights:
    """A conv's weights for Winograd, transformed (and packed) per tile on first use:
    ``u(tile)`` -> ``winograd.transform_weights`` of the (space-to-depth) weights."""

    w: np.ndarray  # (M, C, k, k), float32
    stride: int
    kernel: int  # the kernel after space-to-depth: ceil(k / stride)
    tile: int | None = None  # a fixed tile (tests, tuning); None: ``conv_at_shape`` picks
    _cache: dict[int, np.ndarray] = field(default_factory=dict, repr=False)

    def u(self, tile: int) -> np.ndarray:
        if tile not in self._cache:
            ws = winograd.space_to_depth_weights(self.w, self.stride) if self.stride > 1 else self.w
            self._cache[tile] = winograd.transform_weights(ws, tile)
        return self._cache[tile]


IM2COL = "im2col + packed GEMM"


def conv_at_load(w: np.ndarray | None, attrs: Mapping[str, Any]) -> tuple[Choice, Any]:
    """(choice, WinogradWeights or None) for a Conv with constant weights ``w`` (None:
    the weights are computed at run time)."""
    strides = list(attrs.get("strides") or [1, 1])
    group = attrs.get("group", 1)

    def im2col(why: str) -> tuple[Choice, None]:
        return Choice(IM2COL, why), None

    if w is None:
        return im2col("weights are not constants")
    if w.ndim != 4 or w.dtype != np.float32:
        return im2col(f"not a 2-D float32 conv (W {w.shape})")
    if group > 1 and w.shape[1] == 1:  # nn.conv_call's test, with the input's channels
        return Choice("depthwise direct", f"group {group} = input channels: a plane a job"), None
    pads = attrs.get("pads") or [0]
    plain = attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID") and not any(pads)
    if w.shape[2:] == (1, 1) and set(strides) == {1} and plain:
        return Choice(
            "pointwise packed GEMM", "1x1 at stride 1: the input planes are the columns"
        ), None
    if w.shape[2] != w.shape[3] or len(set(strides)) != 1:
        return im2col("kernel or strides not square")
    if group != 1:
        return im2col(f"group {group}")
    if any(d != 1 for d in attrs.get("dilations") or [1]):
        return im2col("dilated")
    s = strides[0]
    kk = -(-w.shape[2] // s)
    if kk not in winograd.TILE:
        return im2col(
            f"kernel {w.shape[2]}x{w.shape[3]} at stride {s}: no Winograd tile for {kk}x{kk}"
        )
    channels = min(w.shape[0], w.shape[1] * s * s)
    if channels < WINOGRAD_MIN_CHANNELS:
        return im2col(f"{channels} channels (Winograd from {WINOGRAD_MIN_CHANNELS})")
    how = f"{kk}x{kk}" + (f" over the space-to-depth input (stride {s})" if s > 1 else "")
    return Choice("winograd", how), WinogradWeights(w, s, kk)


def conv_at_shape(weights: WinogradWeights, tiles_at_default: int) -> tuple[Choice, int]:
    """(choice, tile m of F(m x m, k x k)) for a Winograd conv whose output has
    ``tiles_at_default`` tiles of the default size."""
    kk = weights.kernel
    if weights.tile is not None:
        m = weights.tile
        return Choice(f"winograd F({m}x{m}, {kk}x{kk})", "tile fixed by the caller"), m
    tile = winograd.TILE[kk]
    small = winograd.SMALL_TILE.get(kk)
    if small and tiles_at_default < WINOGRAD_SMALL_TILES:
        why = f"{tiles_at_default} tiles of {tile}x{tile}, fewer than {WINOGRAD_SMALL_TILES}"
        return Choice(f"winograd F({small}x{small}, {kk}x{kk})", why), small
    return Choice(f"winograd F({tile}x{tile}, {kk}x{kk})", "enough tiles"), tile


def gemm_at_shape(a_dtype: np.dtype, b_dtype: np.dtype, fused: bool) -> Choice:
    """The Gemm and MatMul ops' algorithm."""
    if a_dtype == b_dtype == np.float32:
        width = gemm.nr()
        epilogue = "bias and ReLU in the store" if fused else "bias/alpha applied after"
        return Choice(f"packed GEMM {gemm.MR}x{width}", epilogue)
    return Choice("numpy dot", f"{np.dtype(a_dtype)} x {np.dtype(b_dtype)}: not float32")
