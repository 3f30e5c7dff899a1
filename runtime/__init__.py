"""Torch-free inference over exported ONNX graphs, one API over two backends.

    import runtime
    sess = runtime.InferenceSession("exported/lenet5.onnx", providers=["NumbaExecutionProvider"])
    probs, = sess.run(None, {sess.get_inputs()[0].name: x})   # x: float32 (N, 1, 28, 28)

onnxruntime's API: a script written for it runs with ``import runtime as ort``
(``SessionOptions``, ``RunOptions``, ``GraphOptimizationLevel``, ``ExecutionMode``,
``get_available_providers``, ``get_device``; runtime/options.py). Providers, or ``backend=``:
"NumbaExecutionProvider" ("numba", our engine, the default), "CPUExecutionProvider"
("onnxruntime"), "CUDAExecutionProvider" ("onnxruntime-cuda").
Nothing in this package imports torch; onnxruntime is imported only when used.

numba's parallel kernels run on GNU OpenMP. Unless the environment says otherwise,
its idle threads spin 300,000 times before they sleep (``GOMP_SPINCOUNT``, the
libgomp default when it does not throttle): LeNet-5 at batch 64 ran in 8 ms instead
of 0.9 ms when libgomp chose to throttle its spinning in a process that also runs
onnxruntime, waking sleeping threads (and idle virtual CPUs) for every call. This
must be set before the first parallel region starts, hence here, at import.
"""

import os

os.environ.setdefault("GOMP_SPINCOUNT", "300000")

from runtime.errors import (
    BackendUnavailableError,
    ExternalDataError,
    GraphError,
    InputFeedError,
    InvalidAttributeError,
    ModelLoadError,
    ModelNotFoundError,
    SessionOptionError,
    ShapeError,
    TensorTooLargeError,
    UnsupportedOpError,
    UnsupportedOpsetError,
)
from runtime.options import (
    ExecutionMode,
    GraphOptimizationLevel,
    RunOptions,
    SessionOptions,
    get_available_providers,
    get_device,
)
from runtime.session import BACKENDS, InferenceSession, ModelMetadata, NodeArg

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "ExecutionMode",
    "ExternalDataError",
    "GraphError",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InputFeedError",
    "InvalidAttributeError",
    "ModelLoadError",
    "ModelMetadata",
    "ModelNotFoundError",
    "NodeArg",
    "RunOptions",
    "SessionOptionError",
    "SessionOptions",
    "ShapeError",
    "TensorTooLargeError",
    "UnsupportedOpError",
    "UnsupportedOpsetError",
    "get_available_providers",
    "get_device",
]
