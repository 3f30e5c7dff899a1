"""Numba kernels: ``@njit`` functions that only compute. Callers check shapes first."""
