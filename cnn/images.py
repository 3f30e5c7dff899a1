"""Image files -> a model's input tensor: the preprocessing recipe and the reader.

Where the recipe comes from (:func:`resolve_recipe`), field by field:

1. a flag given on the command line (``--size``, ``--mean``, ``--std``, ``--layout``,
   ``--resize``), which wins;
2. the model's ``preprocessing`` metadata (written by training/preprocess.py: grey
   or RGB, size, bilinear resize, pixel / 255, and ``mean``/``std`` if it has them);
3. a default read from the input's shape, said in one note line:

   - layout NCHW, unless the shape's last axis holds the 1 or 3 channels and axis 1
     does not (NHWC);
   - grey for 1 channel, RGB for 3, the size the shape fixes, else 224x224;
   - 3 channels: ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225),
     the shorter side resized to 256/224 of the crop (256 for 224), then a center crop;
   - 1 channel: pixel / 255 and a bilinear resize to the size, as the datasets are.

Pillow is imported lazily: only reading image files needs it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from runtime.errors import ModelLoadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = (224, 224)
CROP_RATIO = 256 / 224  # ImageNet evaluation: resize the shorter side to 256, crop 224
LAYOUTS = ("NCHW", "NHWC")
RESIZES = ("stretch", "crop")


@dataclass(frozen=True)
class Recipe:
    """How one image file becomes one sample of the input (the input without its batch axis).

    ``resize``: "stretch" resizes bilinearly to ``size``; "crop" resizes the shorter
    side to ``crop_from`` (aspect kept), then cuts the center ``size``.
    Pixels: value / 255, then (value - mean[c]) / std[c] per channel.
    """

    color: str  # "grayscale" or "rgb"
    channels: int
    size: tuple[int, int]  # (H, W)
    resize: str = "stretch"
    crop_from: int = 0  # the shorter side before the center crop (resize "crop")
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str = "NCHW"

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str], input_shape: Sequence) -> Recipe:
        """The recipe of the ``preprocessing`` metadata, else the default of the input shape."""
        return resolve_recipe(metadata, input_shape)[0]

    def describe(self) -> str:
        """One line: what happens to each image."""
        if self.resize == "crop":
            how = f"shorter side resized to {self.crop_from}, center crop {self._hw()}"
        else:
            how = f"resized to {self._hw()}"
        color = "grey" if self.color == "grayscale" else "RGB"
        if self.color == "grayscale" and self.channels > 1:
            color += f" repeated to {self.channels} channels"
        norm = "pixel / 255"
        if any(m != 0.0 for m in self.mean) or any(s != 1.0 for s in self.std):
            norm += f", mean {_floats(self.mean)}, std {_floats(self.std)}"
        return f"{color}, {how}, {norm}, {self.layout}"

    def _hw(self) -> str:
        return f"{self.size[0]}x{self.size[1]}"

    def to_input(self, pixels: np.ndarray) -> np.ndarray:
        """float32 pixels in [0, 1], (H, W) grey or (H, W, 3) RGB -> one sample,
        (C, H, W) for NCHW or (H, W, C) for NHWC, normalized."""
        # (H, W, C): grey repeated to every channel, or RGB as it is
        x = np.repeat(pixels[:, :, None], self.channels, axis=2) if pixels.ndim == 2 else pixels
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        if mean.any() or (std != 1.0).any():
            x = (x - mean) / std  # broadcast over the channel axis
        if self.layout == "NCHW":
            x = x.transpose(2, 0, 1)  # (C, H, W)
        return np.ascontiguousarray(x, dtype=np.float32)


def _floats(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


def guess_layout(input_shape: Sequence) -> str:
    """NHWC when the last axis is 1 or 3 and axis 1 is not, else NCHW."""
    if len(input_shape) == 4:
        c_first, c_last = input_shape[1], input_shape[3]
        if c_last in (1, 3) and c_first not in (1, 3):
            return "NHWC"
    return "NCHW"


@dataclass(frozen=True)
class RecipeFlags:
    """Preprocessing asked for on the command line; None: not given."""

    size: tuple[int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str | None = None
    resize: str | None = None

    def any(self) -> bool:
        return any(
            v is not None for v in (self.size, self.mean, self.std, self.layout, self.resize)
        )


def resolve_recipe(
    metadata: Mapping[str, str], input_shape: Sequence, flags: RecipeFlags | None = None
) -> tuple[Recipe, str | None]:
    """(recipe, note): flags over the model's ``preprocessing`` metadata over the default
    read from ``input_shape`` (the input's dims, batch axis first). ``note`` is None
    when the metadata or flags gave the whole recipe, else the one line that says
    which defaults were taken."""
    flags = flags or RecipeFlags()
    raw = metadata.get("preprocessing")
    try:
        spec = json.loads(raw) if raw else None
    except ValueError as exc:
        raise ModelLoadError(f"model metadata 'preprocessing' is not JSON: {exc}") from None
    if spec is not None and not isinstance(spec, dict):
        raise ModelLoadError(
            f"model metadata 'preprocessing': expected a JSON object, received {raw[:80]!r}"
        )
    shape = list(input_shape)
    if len(shape) != 4:
        raise ValueError(
            f"input shape {shape}: images are read into 4-dim inputs "
            f"(N, C, H, W or N, H, W, C), this one has {len(shape)} dims"
        )
    if spec is not None:
        return _from_spec(spec, shape, flags), None
    layout = flags.layout or guess_layout(shape)
    c_axis, hw_axes = (1, (2, 3)) if layout == "NCHW" else (3, (1, 2))
    channels = shape[c_axis] if isinstance(shape[c_axis], int) else 3
    if channels not in (1, 3):
        raise ValueError(
            f"input shape {shape} ({layout}): {channels} channels; images are read as grey "
            "(1 channel) or RGB (3)"
        )
    fixed = [shape[a] for a in hw_axes]
    if flags.size is not None:
        size = flags.size
    elif all(isinstance(d, int) for d in fixed):
        size = (int(fixed[0]), int(fixed[1]))
    else:
        size = DEFAULT_SIZE
    rgb = channels == 3
    resize = flags.resize or ("crop" if rgb else "stretch")
    recipe = Recipe(
        color="rgb" if rgb else "grayscale",
        channels=channels,
        size=size,
        resize=resize,
        crop_from=round(min(size) * CROP_RATIO) if resize == "crop" else 0,
        mean=_per_channel(flags.mean, IMAGENET_MEAN if rgb else (0.0,), channels, "--mean"),
        std=_per_channel(flags.std, IMAGENET_STD if rgb else (1.0,), channels, "--std"),
        layout=layout,
    )
    defaulted = [
        name
        for name, given in (
            ("size", flags.size is not None or all(isinstance(d, int) for d in fixed)),
            ("mean", flags.mean is not None),
            ("std", flags.std is not None),
            ("layout", flags.layout is not None or shape[1] in (1, 3) or shape[3] in (1, 3)),
            ("channels", isinstance(shape[c_axis], int)),
            ("resize", flags.resize is not None),
        )
        if not given
    ]
    if not defaulted:
        return recipe, None
    note = (
        f"no preprocessing metadata in the model; default for a {channels}-channel input "
        f"({', '.join(defaulted)}): {recipe.describe()} "
        "(--size, --mean, --std, --layout, --resize change it)"
    )
    return recipe, note


def _from_spec(spec: Mapping, shape: list, flags: RecipeFlags) -> Recipe:
    """The metadata's recipe (training/preprocess.py's fields), flags over it."""
    layout = flags.layout or str(spec.get("layout", "NCHW")).upper()
    if layout not in LAYOUTS:
        raise ModelLoadError(
            f"model metadata 'preprocessing': layout {layout!r}, expected one of {LAYOUTS}"
        )
    c_axis, hw_axes = (1, (2, 3)) if layout == "NCHW" else (3, (1, 2))
    channels = int(spec.get("channels", shape[c_axis] if isinstance(shape[c_axis], int) else 1))
    fixed = [shape[a] for a in hw_axes]
    default_size = fixed if all(isinstance(d, int) for d in fixed) else (28, 28)
    size = flags.size or tuple(int(v) for v in spec.get("size", default_size))
    color = str(spec.get("color", "grayscale")).lower()
    if color not in ("grayscale", "rgb"):
        raise ModelLoadError(
            f"model metadata 'preprocessing': color {color!r}, expected 'grayscale' or 'rgb'"
        )
    resize = flags.resize or ("crop" if spec.get("crop_from") else "stretch")
    crop_from = int(spec.get("crop_from") or round(min(size) * CROP_RATIO))
    return Recipe(
        color=color,
        channels=channels,
        size=(size[0], size[1]),
        resize=resize,
        crop_from=crop_from if resize == "crop" else 0,
        mean=_per_channel(flags.mean, tuple(spec.get("mean", (0.0,))), channels, "--mean"),
        std=_per_channel(flags.std, tuple(spec.get("std", (1.0,))), channels, "--std"),
        layout=layout,
    )


def _per_channel(
    given: Sequence[float] | None, default: Sequence[float], channels: int, what: str
) -> tuple[float, ...]:
    values = tuple(float(v) for v in (given if given is not None else default))
    if len(values) == 1:
        values = values * channels
    if len(values) != channels:
        raise ValueError(f"{what}: expected 1 or {channels} values, received {len(values)}")
    if what == "--std" and any(v == 0.0 for v in values):
        raise ValueError(f"{what}: a standard deviation of 0 divides by zero")
    return values


def load_image(path: str | os.PathLike, recipe: Recipe, *, invert: bool = False) -> np.ndarray:
    """One file -> one float32 sample, (C, H, W) or (H, W, C) as ``recipe.layout`` says.
    Raises OSError or ValueError, naming the file, for a file that is not an image."""
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError:
        raise ImportError("reading images needs Pillow: pip install pillow") from None
    try:
        with Image.open(path) as img:
            img.load()
            mode = "L" if recipe.color == "grayscale" else "RGB"
            img = img.convert(mode)
            h, w = recipe.size
            if recipe.resize == "crop":
                scale = recipe.crop_from / min(img.width, img.height)
                size = (max(w, round(img.width * scale)), max(h, round(img.height * scale)))
                img = img.resize(size, Image.Resampling.BILINEAR)
                left, top = (img.width - w) // 2, (img.height - h) // 2
                img = img.crop((left, top, left + w, top + h))
            else:
                img = img.resize((w, h), Image.Resampling.BILINEAR)
            pixels = np.asarray(img, dtype=np.float32) / 255.0  # (H, W) or (H, W, 3)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not an image Pillow can read") from None
    except FileNotFoundError:
        raise ValueError(f"image file {path} not found") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt files
        raise ValueError(f"{path}: unreadable image ({exc})") from None
    if invert:
        pixels = 1.0 - pixels
    return recipe.to_input(pixels)


def check_input(name: str, dims: Sequence, recipe: Recipe) -> list[int]:
    """An image's dims past the batch as ``recipe`` makes it, checked against the
    input's fixed ones before any image is read (``--layout NHWC`` on an NCHW model)."""
    h, w = recipe.size
    want = [recipe.channels, h, w] if recipe.layout == "NCHW" else [h, w, recipe.channels]
    if len(dims) != 1 + len(want):
        raise ValueError(
            f"input {name!r} has {len(dims)} dims {list(dims)}: images make 4 ({recipe.layout})"
        )
    for axis, (d, v) in enumerate(zip(dims[1:], want, strict=True), start=1):
        if isinstance(d, int) and d > 0 and d != v:
            raise ValueError(
                f"input {name!r} fixes axis {axis} at {d}; the preprocessing makes {v} "
                f"({recipe.describe()})"
            )
    return want


def image_files(items: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """The files named, a folder's files (sorted, recursively, hidden ones left out) in
    its place. Everything in a folder is yielded: a non-image gets its error when read."""
    for item in items:
        path = Path(item)
        if path.is_dir():
            for sub in sorted(path.rglob("*")):
                rel = sub.relative_to(path).parts
                if sub.is_file() and not any(part.startswith(".") for part in rel):
                    yield sub
        else:
            yield path
