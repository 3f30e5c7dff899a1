"""Every error the runtime raises on purpose.

Each is a subclass of ValueError, NotImplementedError or OSError, so callers can
catch the broad kind, and each message names the tensor, node or file and gives
what was expected against what was received.
"""

from __future__ import annotations


class ModelLoadError(ValueError):
    """The bytes are not a loadable ONNX model: empty, truncated, not protobuf, no graph."""


class ModelNotFoundError(FileNotFoundError):
    """The model path does not exist or is not a file."""


class ExternalDataError(OSError):
    """External tensor data outside the model's folder, or missing."""


class GraphError(ValueError):
    """The graph is malformed: a cycle, an undefined tensor, a duplicate output name."""


class UnsupportedOpError(NotImplementedError):
    """One or more ops have no implementation in this backend (all are listed)."""


class UnsupportedOpsetError(NotImplementedError):
    """An opset domain or version this backend does not implement."""


class InvalidAttributeError(ValueError):
    """A node attribute is out of range: a zero stride, negative pads, a bad mode."""


class ShapeError(ValueError):
    """Tensor shapes that do not fit together (for example a conv channel mismatch)."""


class TensorTooLargeError(ValueError):
    """A tensor that would need more memory than the limit; refused before allocating."""


class InputFeedError(ValueError):
    """A feed with a wrong name, dtype, rank or dimension, or a missing feed."""


class BackendUnavailableError(ValueError):
    """The requested backend or execution provider cannot run here."""


class SessionOptionError(ValueError):
    """A session or run option, or a provider's option, that is unknown, of the wrong
    kind, or that the chosen backend cannot honour (runtime/options.py)."""
