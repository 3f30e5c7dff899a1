"""The benchmark zoo: ONNX's light models (``onnx/backend/test/data/light``, shipped
in the onnx package: ResNet-50, DenseNet-121, Inception v1 and v2, ShuffleNet,
SqueezeNet, VGG-19, ZFNet-512, AlexNet) with seeded random weights.

Their shipped weights are constants, under which logits grow to 1e10 and outputs say
nothing; here each float initializer of two or more dimensions gets normal values
scaled by 1/sqrt(fan-in), so activations keep their scale through the network, and
BatchNormalization variances stay positive. The files are written once into a cache
folder (through a temp file and a rename) and reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

LIGHT = (
    "resnet50",
    "densenet121",
    "inception_v1",
    "inception_v2",
    "shufflenet",
    "squeezenet",
    "vgg19",
    "zfnet512",
    "bvlc_alexnet",
)


def light_dir() -> Path:
    import onnx

    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnn" / "zoo"


def randomize(model, seed: int = 0):
    """``model`` (an onnx ModelProto) with seeded random weights, in place."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32:
            continue
        if a.ndim >= 2:
            fan_in = int(np.prod(a.shape[1:]))
            v = rng.standard_normal(a.shape) / np.sqrt(fan_in)
        else:  # biases, BN scales and shifts: near 1 for scales and variances
            v = rng.uniform(0.5, 1.5, a.shape)
        init.CopyFrom(numpy_helper.from_array(v.astype(np.float32), init.name))
    return model


def light_model(name: str, seed: int = 0, folder: Path | None = None) -> Path:
    """The path of light model ``name`` with random weights (made on first use)."""
    import onnx

    from dataio.files import atomic_write_bytes

    if name not in LIGHT:
        raise ValueError(f"zoo model {name!r}: expected one of {', '.join(LIGHT)}")
    folder = folder or cache_dir()
    path = folder / f"{name}_random{seed}.onnx"
    if not path.is_file():
        model = randomize(onnx.load(str(light_dir() / f"light_{name}.onnx")), seed)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, model.SerializeToString())
    return path


def zoo(seed: int = 0, folder: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of every zoo model."""
    return [(name, light_model(name, seed, folder)) for name in LIGHT]
