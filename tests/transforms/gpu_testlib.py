"""What the transform tests share to run one test on NumPy and on CuPy (the ``xp`` fixture of
``tests/conftest.py``), and the PTX checks of the CUDA kernels."""
import numpy as np
import pytest

from tests.conftest import usable_cupy

FLOAT32_OPS = ("add.f32", "sub.f32", "mul.f32", "div.rn.f32", "fma.rn.f32")


def cupy_or_skip():
    """CuPy with a usable GPU, or skip the test."""
    cupy, why = usable_cupy()
    if cupy is None:
        pytest.skip(why)
    return cupy


def device(xp, x):
    """``x`` (an array, or a dict or tuple of them) on ``xp``'s device.

    NumPy: the array itself, untouched (no copy, its own layout), so that the NumPy case of an
    xp test runs on exactly the data it always ran on. CuPy: a C-ordered device copy, the layout
    the pipelines give the GPU kernels (adjacent threads, one per symbol, read adjacent addresses).
    """
    if isinstance(x, dict):
        return {k: device(xp, v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(device(xp, v) for v in x)
    if xp is np:
        return np.asarray(x)
    return xp.asarray(x, order="C")


def assert_on_device(xp, x, dtype=None) -> None:
    """``x`` (an array, or a dict or tuple of them) is an ``xp`` array (a transform never moves its
    result to another device), of ``dtype`` when given."""
    values = x.values() if isinstance(x, dict) else (x if isinstance(x, tuple) else (x,))
    for v in values:
        assert isinstance(v, xp.ndarray), f"{type(v).__module__}.{type(v).__name__}, expected {xp.__name__}.ndarray"
        if dtype is not None:
            assert v.dtype == dtype, f"dtype {v.dtype}, expected {np.dtype(dtype)}"


class DeviceArrayStandIn:
    """Recognised as a CuPy array by ``alphapulse.transforms.arrays.is_cupy`` (by its type's module), on a
    machine without CuPy: for the checks that refuse mixing host and device arrays, which must
    fire before anything touches CuPy. (Only a type, not an array: the CuPy cases themselves run
    on the CPU on the CuPy stand-in of :mod:`tests.cupy_standin`.)"""


DeviceArrayStandIn.__module__ = "cupy._core.core"


def float32_arithmetic(ptx: str) -> list[str]:
    """PTX lines doing float32 arithmetic (kernels must accumulate in float64)."""
    return [line for line in ptx.splitlines() if any(op in line for op in FLOAT32_OPS)]
