"""Array-namespace dispatch: NumPy on the CPU, CuPy on the GPU, chosen by the input's type.

CuPy is never imported here: an array is recognised as CuPy by its type's module, so a CPU
machine runs every transform without CuPy installed.
"""
from __future__ import annotations

import numpy as np


def is_cupy(x) -> bool:
    """True when ``x`` is a CuPy array."""
    return type(x).__module__.split(".", 1)[0] == "cupy"


def namespace(*arrays):
    """The array module (``numpy`` or ``cupy``) of ``arrays``; mixing the two is an error."""
    kinds = {is_cupy(a) for a in arrays if a is not None}
    if kinds == {True}:
        import cupy

        return cupy
    if kinds == {True, False}:
        raise TypeError("mixed NumPy and CuPy arrays: move data to one device at a named boundary first")
    return np


def float_dtype(x):
    """``x``'s dtype when it is float32/float64, else float64 (integers, e.g. volume, compute in float64)."""
    return x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)


def to_host(x) -> np.ndarray:
    """``x`` as a NumPy array (a CuPy array is copied from the device; anything else as is)."""
    return x.get() if is_cupy(x) else np.asarray(x)
