"""The engine's allocations: the size check every large one goes through before it
happens, and arrays that start on a cache line (``aligned_empty``): ``scratch`` and
the engine's planned buffers (``runtime/buffers.py``) always, ``allocate`` from
``ALIGNED_FROM`` bytes up."""

from __future__ import annotations

import ctypes
import os
import threading
from functools import lru_cache

import numpy as np

from runtime.errors import TensorTooLargeError

ENV_LIMIT = "CNN_RUNTIME_MAX_TENSOR_BYTES"
# Arrays start on this many bytes: a cache line, and the width of an AVX-512 vector.
# NumPy starts them on 16, so a kernel's vector loads and stores straddled two cache
# lines; 64 made depthwise steps 25 to 30% faster (session 13's measurement).
ALIGN = 64
# ``allocate`` aligns arrays from this size up (a fresh output: the user's, most often).
# Below it, NumPy's own: aligning is a few more Python calls, 2 us on a quiet loop but
# 25 us in a network's run, its caches cold after the kernels (MobileNetV3-Small's
# 100-float logits: a 40 us step took 65), more than a small array's kernel gains.
ALIGNED_FROM = 1 << 18


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


def check_size(shape: tuple[int, ...], dtype: np.dtype | type, what: str) -> int:
    """The bytes of an array of ``shape`` and ``dtype``, or TensorTooLargeError naming
    ``what`` when they are over ``max_tensor_bytes``."""
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
    return need


def aligned_empty(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An uninitialised C-contiguous array whose first element is on an ``ALIGN``-byte
    boundary: a view into a byte buffer ``ALIGN`` bytes longer than the data, which the
    view keeps alive. The caller checks the size (``check_size``)."""
    dtype = np.dtype(dtype)
    need = dtype.itemsize
    for d in shape:
        need *= int(d)
    raw = np.empty(need + ALIGN, np.uint8)
    # the address through ctypes: a third of the time of ``raw.ctypes.data``
    start = -ctypes.addressof(ctypes.c_char.from_buffer(raw)) % ALIGN
    return raw[start : start + need].view(dtype).reshape(shape)


def allocate(
    shape: tuple[int, ...], dtype: np.dtype | type, what: str, out: np.ndarray | None = None
) -> np.ndarray:
    """A new array, or ``out`` (a planned buffer) when it has this shape and dtype; a new
    one of ``ALIGNED_FROM`` bytes or more starts on a cache line."""
    if out is not None and out.shape == tuple(shape) and out.dtype == np.dtype(dtype):
        return out
    if check_size(shape, dtype, what) >= ALIGNED_FROM:
        return aligned_empty(shape, dtype)
    return np.empty(shape, dtype)


_scratch = threading.local()


def scratch(key: str, shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """A per-thread work array kept between calls, so repeated runs allocate none; it
    starts on an ``ALIGN``-byte boundary. The
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
        flat = store[key] = aligned_empty((need,), np.uint8)
        for stale in [k for k in views if k[0] == key]:
            del views[stale]  # views of the key's old buffer: let it go
    view = flat[:need].view(dtype).reshape(shape)
    views[(key, shape, dtype)] = (flat, view)
    return view
