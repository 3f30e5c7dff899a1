"""What ``cnn compare`` feeds the backends, in this order of preference:

1. the test set the model's metadata names (``dataset``, or ``--dataset``), made for
   the model's input as its ``preprocessing`` metadata says; labels give accuracy;
2. ``--inputs PATH``: a folder of images (read as ``cnn predict`` reads them), a
   ``.npy`` file (one input: the stacked samples, or one call's tensor) or a
   ``.npz`` file (an array per input name; one array for a one-input model);
3. seeded random data of the input's shape, uniform in [0, 1) (small integers for
   integer inputs), 16 samples unless ``--limit`` says otherwise.

The input shapes come from cnn/shapes.py's resolver: the first axis of every input
is the batch when it is symbolic; every other symbolic dimension needs a size:
``--dim NAME=SIZE`` or the whole shape with ``--shape``. A first axis fixed by the
model, ``--dim`` or ``--shape`` fixes the batch: every call then has that many
samples.

A :class:`Samples` is what a backend worker (cnn/worker.py) can rebuild from
:meth:`Samples.spec`: arrays saved in a file, the dataset made again lazily (10,000
AlexNet inputs would be 6 GB), or seeded random data made again from its seed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from cnn.images import Recipe
from cnn.shapes import (  # ModelInfo and model_info lived here: kept for their callers
    InputSpec,
    ModelInfo,  # noqa: F401
    model_info,  # noqa: F401
    random_feeds,
    resolve,
    show,
)

DEFAULT_RANDOM_SAMPLES = 16
CALL_FLOATS = 4_000_000  # agreement calls of at most this many input floats (16 MB)


def resolve_shapes(
    inputs: Sequence[InputSpec],
    dims: Mapping[str, int] | None = None,
    shape: Sequence[int] | None = None,
    *,
    required: bool = True,
) -> dict[str, list]:
    """cnn/shapes.py's :func:`~cnn.shapes.resolve` as a plain mapping (the batch open)."""
    return resolve(inputs, dims, shape, required=required).shapes


def call_batch(inputs: Sequence[InputSpec], resolved: Mapping[str, list]) -> tuple[int | None, int]:
    """(fixed batch or None, floats per sample) of the resolved shapes. Raises when the
    inputs' first axes disagree (one batched, another fixed)."""
    scalars = [s.name for s in inputs if not resolved[s.name]]
    if scalars:
        raise ValueError(
            f"input(s) {scalars} have no dims: cnn compare batches inputs along their first axis"
        )
    firsts = {s.name: resolved[s.name][0] for s in inputs}
    values = set(firsts.values())
    if len(values) > 1:
        shown = ", ".join(f"{k}: {'batch' if v is None else v}" for k, v in firsts.items())
        raise ValueError(
            f"the inputs' first axes differ ({shown}): "
            "cnn compare batches every input along its first axis"
        )
    fixed = next(iter(values)) if values else None
    per_sample = sum(int(np.prod(resolved[s.name][1:], dtype=np.int64)) for s in inputs)
    return fixed, max(1, per_sample)


def chunk_size(fixed: int | None, per_sample: int) -> int:
    """Samples per agreement call: the fixed batch, else as many as fit CALL_FLOATS."""
    if fixed is not None:
        return fixed
    return max(1, min(256, CALL_FLOATS // per_sample))


class Samples:
    """Inputs for the agreement calls: ``n`` samples, ``batch(start, stop)`` the feeds
    of samples start..stop, ``labels`` when the source has them."""

    n: int
    labels: np.ndarray | None = None
    description: str = ""

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def head(self, size: int) -> dict[str, np.ndarray]:
        """The first ``size`` samples, repeated when there are fewer."""
        feeds = self.batch(0, size)
        have = len(next(iter(feeds.values())))
        if have < size:
            feeds = {k: np.resize(v, (size, *v.shape[1:])) for k, v in feeds.items()}
        return feeds

    def calls(self, chunk: int, pad: bool) -> Iterator[tuple[dict[str, np.ndarray], int]]:
        """(feeds, real samples) per call of ``chunk``; ``pad``: the last call filled
        up to ``chunk`` by repeating its samples (a fixed batch)."""
        for start in range(0, self.n, chunk):
            feeds = self.batch(start, min(start + chunk, self.n))
            real = len(next(iter(feeds.values())))
            if pad and real < chunk:
                feeds = {k: np.resize(v, (chunk, *v.shape[1:])) for k, v in feeds.items()}
            yield feeds, real

    def spec(self, folder: Path) -> dict:
        """What a worker needs to rebuild these samples (files written into ``folder``)."""
        raise NotImplementedError


class ArraySamples(Samples):
    def __init__(
        self, arrays: dict[str, np.ndarray], description: str, labels: np.ndarray | None = None
    ) -> None:
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"the inputs' sample counts differ: {sorted(lengths)}")
        self.arrays = arrays
        self.n = lengths.pop()
        self.description = description
        self.labels = labels

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v[start:stop]) for k, v in self.arrays.items()}

    def spec(self, folder: Path) -> dict:
        path = folder / "samples.npz"
        if not path.is_file():
            np.savez(path, **{f"input{i}": a for i, a in enumerate(self.arrays.values())})
        return {"kind": "arrays", "path": str(path), "names": list(self.arrays)}


class DatasetSamples(Samples):
    """A test split, made for the model's input per call (never all at once)."""

    def __init__(
        self,
        input_name: str,
        recipe: Recipe,
        dataset: str,
        data_dir: str | None,
        limit: int | None,
        log=print,
    ) -> None:
        from dataio.datasets import load_dataset  # numpy-only: no torch

        data = load_dataset(dataset, data_dir, log=log)
        self.input_name = input_name
        self.recipe = recipe
        self.dataset, self.data_dir, self.limit = dataset, data_dir, limit
        self.images = data.test.images[:limit]  # uint8 (n, 28, 28)
        self.labels = data.test.labels[:limit]
        self.n = len(self.labels)
        self.description = f"the {dataset} test set ({self.n} images; {recipe.describe()})"

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        images = self.images[start:stop]
        if tuple(images.shape[1:]) == self.recipe.size:
            grey = images.astype(np.float32) / 255.0  # (n, H, W)
        else:
            from PIL import Image

            size = self.recipe.size[::-1]  # PIL takes (W, H)
            grey = (
                np.stack(
                    [
                        np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BILINEAR))
                        for img in images
                    ]
                ).astype(np.float32)
                / 255.0
            )  # (n, H, W)
        x = np.stack([self.recipe.to_input(g) for g in grey]) if len(grey) else grey
        return {self.input_name: np.ascontiguousarray(x, dtype=np.float32)}

    def spec(self, folder: Path) -> dict:
        return {
            "kind": "dataset",
            "input": self.input_name,
            "recipe": asdict(self.recipe),
            "dataset": self.dataset,
            "data_dir": self.data_dir,
            "limit": self.limit,
        }


def random_spec(
    inputs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]], seed: int
) -> dict:
    """The spec of :class:`RandomSamples` (what a worker makes them from), without
    making them here."""
    return {
        "kind": "random",
        "inputs": [
            [s.name, np.dtype(s.dtype).name, [int(d) for d in shapes[s.name]]] for s in inputs
        ],
        "seed": int(seed),
    }


class RandomSamples(ArraySamples):
    """Seeded random samples (cnn/shapes.py's :func:`~cnn.shapes.random_feeds`) of
    ``shapes``, the first axis the samples; a worker makes them again from the seed."""

    def __init__(
        self,
        inputs: Sequence[InputSpec],
        shapes: Mapping[str, Sequence[int]],
        seed: int,
        description: str = "",
    ) -> None:
        self.recipe = random_spec(inputs, shapes, seed)
        super().__init__(random_feeds(inputs, shapes, seed), description)

    def spec(self, folder: Path) -> dict:
        return self.recipe


def from_spec(spec: Mapping) -> Samples:
    """The samples :meth:`Samples.spec` described (in a worker process)."""
    if spec["kind"] == "random":
        inputs = [
            InputSpec(name, np.dtype(dtype), tuple(dims)) for name, dtype, dims in spec["inputs"]
        ]
        shapes = {name: dims for name, _, dims in spec["inputs"]}
        return RandomSamples(inputs, shapes, spec["seed"])
    if spec["kind"] == "arrays":
        with np.load(spec["path"]) as data:
            arrays = {name: data[f"input{i}"] for i, name in enumerate(spec["names"])}
        return ArraySamples(arrays, "")
    recipe = dict(spec["recipe"])
    for key in ("size", "mean", "std"):
        recipe[key] = tuple(recipe[key])
    return DatasetSamples(
        spec["input"],
        Recipe(**recipe),
        spec["dataset"],
        spec["data_dir"],
        spec["limit"],
        log=lambda *a: None,
    )


def random_samples(
    inputs: Sequence[InputSpec], resolved: Mapping[str, list], count: int, seed: int
) -> RandomSamples:
    """``count`` samples per input (one call's worth for a fixed batch, repeated)."""
    shapes = {}
    for spec in inputs:
        dims = resolved[spec.name]
        shapes[spec.name] = (count, *dims[1:]) if dims else (count,)
    shown = ", ".join(f"{s.name} {show(resolved[s.name])}" for s in inputs)
    return RandomSamples(
        inputs, shapes, seed, f"{count} seeded random samples (seed {seed}) of {shown}"
    )


def file_samples(
    path: str | os.PathLike,
    inputs: Sequence[InputSpec],
    resolved: Mapping[str, list],
    limit: int | None,
) -> ArraySamples:
    """Arrays from a .npy or .npz file, checked against the inputs: each array is the
    stacked samples (the input's rank) or one sample (one dim fewer: a batch of one)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file or folder {path} not found (--inputs)")
    if path.suffix == ".npy":
        if len(inputs) != 1:
            raise ValueError(
                f"--inputs {path}: a .npy file feeds one input; this model has {len(inputs)} "
                f"({', '.join(i.name for i in inputs)}): give a .npz with an array per name"
            )
        raw = {inputs[0].name: np.load(path, allow_pickle=False)}
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            stored = {k: data[k] for k in data.files}
        if len(inputs) == 1 and len(stored) == 1:
            raw = {inputs[0].name: next(iter(stored.values()))}
        else:
            missing = [i.name for i in inputs if i.name not in stored]
            if missing:
                raise ValueError(
                    f"--inputs {path}: no array for input(s) {missing}; the file holds "
                    f"{sorted(stored)}"
                )
            raw = {i.name: stored[i.name] for i in inputs}
    else:
        raise ValueError(f"--inputs {path}: expected a folder of images, a .npy or a .npz file")
    arrays = {}
    for spec in inputs:
        a = raw[spec.name]
        dims = resolved.get(spec.name) or list(spec.dims)
        if a.ndim == len(dims) - 1:
            a = a[None]  # one sample
        if a.ndim != len(dims):
            raise ValueError(
                f"--inputs {path}: input {spec.name!r} has {len(dims)} dims {show(dims)}, "
                f"the array {a.ndim} {list(a.shape)}"
            )
        for axis, d in enumerate(dims):
            if axis > 0 and d is not None and a.shape[axis] != d:
                raise ValueError(
                    f"--inputs {path}: input {spec.name!r} axis {axis} must be {d}, "
                    f"the array has {a.shape[axis]} ({list(a.shape)})"
                )
        if a.dtype != spec.dtype:
            if a.dtype.kind != spec.dtype.kind:
                raise ValueError(
                    f"--inputs {path}: input {spec.name!r} is {spec.dtype}, the array {a.dtype}"
                )
            a = a.astype(spec.dtype)
        arrays[spec.name] = a[:limit]
    n = len(next(iter(arrays.values())))
    return ArraySamples(arrays, f"{n} samples from {path}")


def image_samples(
    folder: str | os.PathLike,
    input_name: str,
    recipe: Recipe,
    limit: int | None,
    error=print,
) -> ArraySamples:
    """Every image file in ``folder`` (up to ``limit``), read as cnn predict reads them;
    a file that is not an image gets its line through ``error`` and is left out."""
    from cnn.images import image_files, load_image

    samples = []
    for path in image_files([folder]):
        if limit is not None and len(samples) >= limit:
            break
        try:
            samples.append(load_image(path, recipe))
        except (OSError, ValueError) as exc:
            error(str(exc))
    if not samples:
        raise ValueError(f"--inputs {folder}: no image Pillow can read in it")
    return ArraySamples(
        {input_name: np.stack(samples)},
        f"{len(samples)} images from {folder} ({recipe.describe()})",
    )
