"""Op implementations, one module per family; importing this package fills the registry."""

from runtime.ops import elementwise, indexing, nn, spatial, tensor  # noqa: F401  (registration side effects)
from runtime.ops.registry import OPS, register, resolve, supported_ops

__all__ = ["OPS", "register", "resolve", "supported_ops"]
