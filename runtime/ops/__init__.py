"""Op implementations, one module per family; importing this package fills the registry."""

from runtime.ops import (  # noqa: F401  (registration side effects)
    activations,
    detection,
    elementwise,
    indexing,
    logic,
    math,
    nn,
    normalization,
    quantization,
    reduce,
    rnn,
    spatial,
    tensor,
    windows,
)
from runtime.ops.registry import OPS, register, resolve, supported_ops

__all__ = ["OPS", "register", "resolve", "supported_ops"]
