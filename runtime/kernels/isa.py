"""What the machine numba compiles for offers: the vector width kernels are blocked by.

Read once from LLVM's view of the host CPU, or from ``NUMBA_CPU_NAME`` /
``NUMBA_CPU_FEATURES`` when they are set (``NUMBA_CPU_NAME=haswell`` compiles for an
AVX2-only CPU on any x86 machine, and then the kernels must be blocked for AVX2 too).
"""

from __future__ import annotations

from functools import lru_cache

# LLVM CPU names whose default features include AVX-512F.
_AVX512_CPUS = (
    "skylake-avx512",
    "cascadelake",
    "cooperlake",
    "cannonlake",
    "icelake-client",
    "icelake-server",
    "tigerlake",
    "rocketlake",
    "sapphirerapids",
    "emeraldrapids",
    "graniterapids",
    "graniterapids-d",
    "znver4",
    "znver5",
    "x86-64-v4",
    "knl",
    "knm",
)


@lru_cache(maxsize=1)
def has_avx512() -> bool:
    """Whether compiled kernels may use 512-bit vectors (AVX-512F)."""
    from numba.core import config

    features = config.CPU_FEATURES
    if features:
        return "+avx512f" in features.split(",")
    name = config.CPU_NAME
    if name and name != "host":
        return name in _AVX512_CPUS
    import llvmlite.binding as llvm

    return bool(llvm.get_host_cpu_features().get("avx512f", False))


def describe() -> str:
    """One line for people: the ISA the kernels are blocked for."""
    return "AVX-512" if has_avx512() else "AVX2 (256-bit)"
