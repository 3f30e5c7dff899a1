"""Torch-free inference over exported ONNX graphs, one API over two backends.

    import runtime
    sess = runtime.InferenceSession("exported/lenet5.onnx", backend="numba")
    probs, = sess.run(None, {sess.get_inputs()[0].name: x})   # x: float32 (N, 1, 28, 28)

Backends: "numba" (our engine), "onnxruntime" (CPU), "onnxruntime-cuda".
Nothing in this package imports torch; onnxruntime is imported only when used.
"""

from runtime.errors import (
    BackendUnavailableError,
    ExternalDataError,
    GraphError,
    InputFeedError,
    InvalidAttributeError,
    ModelLoadError,
    ModelNotFoundError,
    ShapeError,
    TensorTooLargeError,
    UnsupportedOpError,
    UnsupportedOpsetError,
)
from runtime.session import BACKENDS, InferenceSession, ModelMetadata, NodeArg

__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "ExternalDataError",
    "GraphError",
    "InferenceSession",
    "InputFeedError",
    "InvalidAttributeError",
    "ModelLoadError",
    "ModelMetadata",
    "ModelNotFoundError",
    "NodeArg",
    "ShapeError",
    "TensorTooLargeError",
    "UnsupportedOpError",
    "UnsupportedOpsetError",
]
