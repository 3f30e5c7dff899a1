"""The benchmark zoo: ONNX's light models (``onnx/backend/test/data/light``, shipped
in the onnx package: ResNet-50, DenseNet-121, Inception v1 and v2, ShuffleNet,
SqueezeNet, VGG-19, ZFNet-512, AlexNet) with seeded random weights.

Their shipped weights are constants (``ConstantOfShape`` nodes), under which logits
grow to 1e10 and outputs say nothing; here each weight of two or more dimensions gets
normal values scaled by 1/sqrt(fan-in), so activations keep their scale through the
network, and each vector values in [0.5, 1.5], so BatchNormalization variances stay
positive. Graph inputs that are initializers (IR 3 lists them all) are dropped, so
each model has its one real input. The files are written once into a cache
folder (through a temp file and a rename) and reused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FORMAT = "v2"  # in the cached file's name: v1 files kept the IR-3 weight inputs

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


def _random(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if len(shape) >= 2:  # weights: 1/sqrt(fan-in) keeps the activations' scale
        return (rng.standard_normal(shape) / np.sqrt(int(np.prod(shape[1:])))).astype(np.float32)
    return rng.uniform(0.5, 1.5, shape).astype(np.float32)  # BN scales and variances > 0


def randomize(model, seed: int = 0):
    """``model`` (an onnx ModelProto) with seeded random weights, in place: float
    initializers are replaced, and so are the light models' ``ConstantOfShape`` nodes
    that make a weight from a constant shape (they become initializers)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    inits = {i.name: i for i in model.graph.initializer}
    for init in model.graph.initializer:
        a = numpy_helper.to_array(init)
        if a.dtype == np.float32:
            init.CopyFrom(numpy_helper.from_array(_random(rng, a.shape), init.name))
    kept = []
    for node in model.graph.node:
        shape = inits.get(node.input[0]) if node.op_type == "ConstantOfShape" else None
        if shape is None:
            kept.append(node)
            continue
        dims = tuple(int(d) for d in numpy_helper.to_array(shape))
        model.graph.initializer.append(numpy_helper.from_array(_random(rng, dims), node.output[0]))
    del model.graph.node[:]
    model.graph.node.extend(kept)
    used = {name for node in kept for name in node.input} | {o.name for o in model.graph.output}
    unused = [i for i in model.graph.initializer if i.name not in used]
    for init in unused:  # the shapes the ConstantOfShape nodes read
        model.graph.initializer.remove(init)
    # IR 3 lists every initializer among the graph's inputs too, so a session asked
    # for the inputs returned the *_SHAPE tensors (left without values above) and
    # every weight as inputs to feed. From IR 4 on, initializers need not be inputs:
    # only the inputs that nodes read and no initializer holds stay, the real ones.
    kept_inits = {i.name for i in model.graph.initializer}
    real = [i for i in model.graph.input if i.name in used and i.name not in kept_inits]
    del model.graph.input[:]
    model.graph.input.extend(real)
    model.ir_version = max(model.ir_version, 4)
    return model


def light_model(name: str, seed: int = 0, folder: Path | None = None) -> Path:
    """The path of light model ``name`` with random weights (made on first use)."""
    import onnx

    from dataio.files import atomic_write_bytes

    if name not in LIGHT:
        raise ValueError(f"zoo model {name!r}: expected one of {', '.join(LIGHT)}")
    folder = folder or cache_dir()
    path = folder / f"{name}_random{seed}_{FORMAT}.onnx"
    if not path.is_file():
        model = randomize(onnx.load(str(light_dir() / f"light_{name}.onnx")), seed)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, model.SerializeToString())
    return path


def zoo(seed: int = 0, folder: Path | None = None) -> list[tuple[str, Path]]:
    """(name, path) of every zoo model."""
    return [(name, light_model(name, seed, folder)) for name in LIGHT]
