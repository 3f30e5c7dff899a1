"""``kernel``: ``numba.njit(cache=True, ...)`` that survives having nowhere to cache.

Numba caches compiled kernels beside their source (``__pycache__``) and, when the
installed package folder is read-only, in the user cache folder (``~/.cache`` or
``$NUMBA_CACHE_DIR``): a second process then loads them instead of compiling.
When no location is writable, numba raises at import ("cannot cache function").
Then this decorator compiles without caching and says so once, in one line.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numba

_warned = False
# IEEE results for a division by zero instead of Python's exception: the exception's
# branch keeps LLVM from vectorising any loop that divides (tanh's rational form went
# from 3.9 to 0.33 ns an element). "contract" lets a multiply and an add fuse into
# one FMA instruction, which rounds once instead of twice.
_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}


def kernel(**options) -> Callable[[Callable], Callable]:
    def decorate(fn: Callable) -> Callable:
        global _warned
        try:
            return numba.njit(cache=True, **{**_OPTIONS, **options})(fn)
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
