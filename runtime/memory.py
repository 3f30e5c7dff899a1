"""The size check every large allocation goes through, before it happens."""

from __future__ import annotations

import os
import threading
from functools import lru_cache

import numpy as np

from runtime.errors import TensorTooLargeError

ENV_LIMIT = "CNN_RUNTIME_MAX_TENSOR_BYTES"


@lru_cache(maxsize=1)
def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 40


def max_tensor_bytes() -> int:
    """One tensor may use at most this: ``$CNN_RUNTIME_MAX_TENSOR_BYTES`` or physical memory."""
    env = os.environ.get(ENV_LIMIT)
    return int(env) if env else _physical_memory()


def check_size(shape: tuple[int, ...], dtype: np.dtype | type, what: str) -> None:
    count = 1
    for d in shape:
        count *= int(d)
    need = count * np.dtype(dtype).itemsize
    limit = max_tensor_bytes()
    if need > limit:
        raise TensorTooLargeError(
            f"{what}: shape {tuple(shape)} {np.dtype(dtype)} needs {need / 2**30:.2f} GiB, "
            f"expected at most {limit / 2**30:.2f} GiB (set {ENV_LIMIT} to change the limit)"
        )


def allocate(
    shape: tuple[int, ...], dtype: np.dtype | type, what: str, out: np.ndarray | None = None
) -> np.ndarray:
    """A new array, or ``out`` (a planned buffer) when it has this shape and dtype."""
    if out is not None and out.shape == tuple(shape) and out.dtype == np.dtype(dtype):
        return out
    check_size(shape, dtype, what)
    return np.empty(shape, dtype)


_scratch = threading.local()


def scratch(key: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A per-thread work array kept between calls, so repeated runs allocate none. The
    view made for a (key, shape, dtype) is kept too and handed out again while its
    buffer is the key's: a kernel's wrapper asks on every call, and making the view
    (a slice, a view and a reshape) cost a microsecond of each small step."""
    views = getattr(_scratch, "views", None)
    if views is None:
        views = _scratch.views = {}
        _scratch.arrays = {}
    store = _scratch.arrays
    try:
        made = views.get((key, shape, dtype))
    except TypeError:  # a shape given as a list
        shape = tuple(shape)
        made = views.get((key, shape, dtype))
    if made is not None and made[0] is store.get(key):
        return made[1]
    count = 1
    for d in shape:
        count *= int(d)
    need = count * np.dtype(dtype).itemsize
    flat = store.get(key)
    if flat is None or flat.nbytes < need:
        check_size(tuple(shape), dtype, key)
        flat = store[key] = np.empty(need, np.uint8)
        for stale in [k for k in views if k[0] == key]:
            del views[stale]  # views of the key's old buffer: let it go
    view = flat[:need].view(dtype).reshape(shape)
    views[(key, shape, dtype)] = (flat, view)
    return view
