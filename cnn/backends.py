"""The runtimes ``cnn compare`` puts side by side, one small class each, behind one
interface: ``available()`` (None, or the one line saying why not and how to install
it), ``load(model)`` -> a :class:`Loaded` runner, ``runner(feeds)`` -> the outputs
in the graph's order.

- ``numba``, ``onnxruntime``: this project's runtime (runtime.InferenceSession);
  always there.
- ``openvino-f32``: OpenVINO on the CPU with ``INFERENCE_PRECISION_HINT`` f32;
  ``openvino-default``: OpenVINO's own choice, which is bf16 on CPUs with AVX-512
  BF16 or AMX (the loaded runner says which: ``Loaded.precision``).
- ``tract`` (Sonos' Rust engine): the model is optimized for each input shape it
  meets, with that shape's input facts set, as tract is meant to be used.
- ``onnx-reference``: onnx's own ``onnx.reference.ReferenceEvaluator``, a slow
  NumPy interpreter of the spec: a correctness oracle, not a contender, so only
  run when named.

OpenVINO and tract come with ``pip install 'cnn-pipeline[compare]'``. Every import
of a backend's library happens in ``available()`` or ``load()``, not at import.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Feeds = dict[str, np.ndarray]
EXTRA = "pip install 'cnn-pipeline[compare]'"
ORT_LOG_ENV = "CNN_ORT_LOG_LEVEL"  # onnxruntime's severity: 0 verbose .. 3 errors .. 4 fatal
ORT_LOG_DEFAULT = 3  # errors only: no VerifyOutputSizes warning per call


def quiet_onnxruntime(level: int | None = None) -> None:
    """Set onnxruntime's default log severity for this process: ``level``, else
    $CNN_ORT_LOG_LEVEL, else errors only."""
    import onnxruntime as ort

    if level is None:
        text = os.environ.get(ORT_LOG_ENV, "")
        level = int(text) if text.strip().isdigit() else ORT_LOG_DEFAULT
    ort.set_default_logger_severity(min(max(level, 0), 4))


@dataclass(frozen=True)
class Loaded:
    """A model loaded on one backend: call it with feeds, get the outputs."""

    run: Callable[[Feeds], list[np.ndarray]]
    precision: str  # what the backend computes in: "fp32", "bf16", ...

    def __call__(self, feeds: Feeds) -> list[np.ndarray]:
        return self.run(feeds)


class Backend:
    """One runtime. Subclasses set the class attributes and ``load``."""

    name: str = ""
    module: str = ""  # the library ``available()`` imports
    install: str = ""  # how to get it
    default: bool = True  # in ``cnn compare``'s default selection
    summary: str = ""

    def available(self) -> str | None:
        """None when the library imports, else one line: what is missing and the fix."""
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            return f"{self.name}: not installed ({exc}); {self.install}"
        except Exception as exc:  # a broken install: an import that fails otherwise
            return f"{self.name}: {self.module} does not import ({type(exc).__name__}: {exc})"
        return None

    def load(self, model: str | os.PathLike, threads: int | None = None) -> Loaded:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<backend {self.name}>"


class NumbaBackend(Backend):
    name = "numba"
    module = "numba"
    install = "pip install numba"
    summary = "this project's Numba engine"

    def load(self, model: str | os.PathLike, threads: int | None = None) -> Loaded:
        from runtime import InferenceSession

        sess = InferenceSession(model, backend="numba", threads=threads)
        return Loaded(lambda feeds: sess.run(None, feeds), "fp32")


class OnnxruntimeBackend(Backend):
    name = "onnxruntime"
    module = "onnxruntime"
    install = "pip install onnxruntime"
    summary = "onnxruntime, CPU execution provider"

    def load(self, model: str | os.PathLike, threads: int | None = None) -> Loaded:
        from runtime import InferenceSession

        quiet_onnxruntime()
        sess = InferenceSession(model, backend="onnxruntime", threads=threads)
        return Loaded(lambda feeds: sess.run(None, feeds), "fp32")


class OpenVinoBackend(Backend):
    module = "openvino"
    install = f"{EXTRA} (or pip install openvino)"

    def __init__(self, name: str, hint: str | None) -> None:
        self.name = name
        self.hint = hint  # INFERENCE_PRECISION_HINT; None: OpenVINO's default
        self.summary = (
            f"OpenVINO CPU, INFERENCE_PRECISION_HINT {hint}"
            if hint
            else "OpenVINO CPU, its default precision"
        )

    def load(self, model: str | os.PathLike, threads: int | None = None) -> Loaded:
        import openvino as ov

        core = ov.Core()
        config: dict[str, object] = {}
        if self.hint:
            config["INFERENCE_PRECISION_HINT"] = self.hint
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = core.compile_model(core.read_model(str(model)), "CPU", config)
        precision = compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        request = compiled.create_infer_request()
        outputs = list(compiled.outputs)

        def run(feeds: Feeds) -> list[np.ndarray]:
            result = request.infer(feeds)  # copies the outputs (share_outputs=False)
            return [np.asarray(result[o]) for o in outputs]

        return Loaded(run, _PRECISIONS.get(str(precision), str(precision)))


_PRECISIONS = {"f32": "fp32", "f16": "fp16", "bf16": "bf16"}  # OpenVINO's names -> ours


class TractBackend(Backend):
    name = "tract"
    module = "tract"
    install = f"{EXTRA} (or pip install tract)"
    summary = "tract (Rust), optimized per input shape"

    def load(self, model: str | os.PathLike, threads: int | None = None) -> Loaded:
        import tempfile

        import onnx
        import tract

        # tract infers every shape itself from the input facts set per call shape; the
        # exporters' symbolic shape hints (value_info, output dims such as 2*((H+1)/2))
        # conflict with concrete facts, so a copy without them is what tract loads.
        proto = onnx.load(str(model))
        del proto.graph.value_info[:]
        for out in proto.graph.output:
            out.type.tensor_type.ClearField("shape")
        folder = tempfile.TemporaryDirectory(prefix="cnn-tract-")
        path = os.path.join(folder.name, "model.onnx")
        onnx.save(proto, path)
        probe = tract.onnx().load(path)
        names = [probe.input_name(i) for i in range(probe.input_count())]
        plans: dict[tuple, object] = {}

        def runnable(feeds: Feeds):
            key = tuple((feeds[n].shape, feeds[n].dtype.str) for n in names)
            if key not in plans:
                im = tract.onnx().load(path)
                for i, n in enumerate(names):
                    a = feeds[n]
                    im.set_input_fact(i, ",".join([*map(str, a.shape), _tract_type(a.dtype)]))
                plans[key] = im.into_model().into_runnable()
            return plans[key]

        def run(feeds: Feeds) -> list[np.ndarray]:
            missing = [n for n in names if n not in feeds]
            if missing:
                raise ValueError(f"tract: missing feeds {missing}; the model's inputs: {names}")
            outs = runnable(feeds).run([np.ascontiguousarray(feeds[n]) for n in names])
            return [t.to_numpy() for t in outs]

        run.folder = folder  # type: ignore[attr-defined]  # the copy lives as long as the runner
        return Loaded(run, "fp32")


_TRACT_TYPES = {
    "float32": "f32",
    "float64": "f64",
    "float16": "f16",
    "int64": "i64",
    "int32": "i32",
    "int8": "i8",
    "uint8": "u8",
    "bool": "bool",
}


def _tract_type(dtype: np.dtype) -> str:
    try:
        return _TRACT_TYPES[np.dtype(dtype).name]
    except KeyError:
        raise ValueError(
            f"tract: inputs of type {np.dtype(dtype).name} are not handled here; "
            f"expected one of {', '.join(_TRACT_TYPES)}"
        ) from None


class OnnxReferenceBackend(Backend):
    name = "onnx-reference"
    module = "onnx.reference"
    install = "pip install 'onnx>=1.13'"
    default = False  # pure NumPy: seconds per image on a ResNet
    summary = "onnx.reference.ReferenceEvaluator (NumPy, slow): the spec as code"

    def load(self, model: str | os.PathLike, threads: int | None = None) -> Loaded:
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(str(model))
        return Loaded(lambda feeds: list(evaluator.run(None, feeds)), "fp32")


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        NumbaBackend(),
        OnnxruntimeBackend(),
        OpenVinoBackend("openvino-f32", "f32"),
        OpenVinoBackend("openvino-default", None),
        TractBackend(),
        OnnxReferenceBackend(),
    )
}


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}: expected one of {', '.join(BACKENDS)} (or 'all')"
        ) from None


def select(spec: str | None) -> list[Backend]:
    """The backends a ``--backends`` value names, in its order; None: the default
    selection (every backend but onnx-reference), 'all': every one."""
    if spec is None:
        return [b for b in BACKENDS.values() if b.default]
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if names == ["all"]:
        return list(BACKENDS.values())
    if not names:
        raise ValueError(f"--backends {spec!r}: expected names like numba,onnxruntime")
    chosen = [get_backend(n) for n in names]
    seen = set()
    for b in chosen:
        if b.name in seen:
            raise ValueError(f"--backends {spec!r}: {b.name} is named twice")
        seen.add(b.name)
    return chosen
