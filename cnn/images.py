"""Image files -> the exported graph's input, following the model's ``preprocessing``
metadata (written by training/preprocess.py): grey or RGB, resize, scale to [0, 1].

Pillow is imported here, lazily: only ``cnn predict`` needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from runtime.errors import ModelLoadError

DEFAULT_RECIPE = {"color": "grayscale", "channels": 1, "size": [28, 28], "resize": "bilinear"}


@dataclass(frozen=True)
class Recipe:
    color: str  # "grayscale" or "rgb"
    channels: int
    size: tuple[int, int]  # (H, W)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], input_shape: list) -> Recipe:
        raw = metadata.get("preprocessing")
        try:
            spec = json.loads(raw) if raw else dict(DEFAULT_RECIPE)
        except ValueError as exc:
            raise ModelLoadError(f"model metadata 'preprocessing' is not JSON: {exc}") from None
        dims = [d for d in input_shape[1:] if isinstance(d, int)]
        channels = int(spec.get("channels", dims[0] if len(dims) == 3 else 1))
        size = tuple(spec.get("size", dims[1:3] if len(dims) == 3 else (28, 28)))
        return cls(str(spec.get("color", "grayscale")).lower(), channels, (size[0], size[1]))


def load_image(path: str | os.PathLike, recipe: Recipe, *, invert: bool = False) -> np.ndarray:
    """One file -> float32 (C, H, W) in [0, 1]. Raises OSError/ValueError for a bad file."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as img:
            img.load()
            mode = "L" if recipe.color == "grayscale" else "RGB"
            img = img.convert(mode).resize(
                (recipe.size[1], recipe.size[0]), Image.Resampling.BILINEAR
            )
            pixels = np.asarray(img, dtype=np.float32) / 255.0
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None
    if invert:
        pixels = 1.0 - pixels
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[None], recipe.channels, axis=0)  # (C, H, W), grey repeated
    else:
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels, dtype=np.float32)
