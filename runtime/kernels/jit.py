"""``kernel``: ``numba.njit(cache=True, ...)`` that survives having nowhere to cache.

Numba caches compiled kernels beside their source (``__pycache__``) and, when the
installed package folder is read-only, in the user cache folder (``~/.cache`` or
``$NUMBA_CACHE_DIR``): a second process then loads them instead of compiling.
When no location is writable, numba raises at import ("cannot cache function").
Then this decorator compiles without caching and says so once, in one line.

numba marks a cached kernel stale when its own source file changes, not when a
module whose functions it inlines or whose constants it reads does (``simd``,
``gemm``'s epilogue, ``runtime/config.py``): a kernel could load code older than its
sources. So every kernel's cache stamp is the content hash of all of those files
(``sources_stamp``): a change to any of them recompiles every kernel once.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numba

_warned = False
# IEEE results for a division by zero instead of Python's exception: the exception's
# branch keeps LLVM from vectorising any loop that divides (tanh's rational form went
# from 3.9 to 0.33 ns an element). "contract" lets a multiply and an add fuse into
# one FMA instruction, which rounds once instead of twice.
_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}


def stamped_sources() -> list[Path]:
    """The kernels' sources: every module of ``runtime/kernels`` and
    ``runtime/config.py`` (the constants kernels read when they compile)."""
    here = Path(__file__).resolve().parent
    return [*sorted(here.glob("*.py")), here.parent / "config.py"]


@cache
def sources_stamp() -> str:
    """The content hash of ``stamped_sources``."""
    digest = hashlib.sha256()
    for path in stamped_sources():
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _stamped(dispatcher):
    """``dispatcher`` with its cache index keyed on ``sources_stamp`` as well as its own
    file's (numba's ``IndexDataCacheFile`` discards an index whose stamp differs)."""
    cache_file = getattr(getattr(dispatcher, "_cache", None), "_cache_file", None)
    if cache_file is not None and hasattr(cache_file, "_source_stamp"):
        cache_file._source_stamp = (cache_file._source_stamp, sources_stamp())
    return dispatcher


def kernel(**options) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        global _warned
        try:
            return _stamped(numba.njit(cache=True, **{**_OPTIONS, **options})(fn))
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            if not _warned:
                _warned = True
                warnings.warn(
                    "runtime: no writable numba cache location (set NUMBA_CACHE_DIR); "
                    "kernels compile in every process",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return numba.njit(cache=False, **{**_OPTIONS, **options})(fn)

    return decorate
