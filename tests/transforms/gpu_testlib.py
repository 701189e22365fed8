"""What the GPU-side tests of transforms share."""
import pytest

FLOAT32_OPS = ("add.f32", "sub.f32", "mul.f32", "div.rn.f32", "fma.rn.f32")


def cupy_or_skip():
    """CuPy with a usable GPU, or skip the test."""
    cupy = pytest.importorskip("cupy")
    try:
        available = cupy.is_available()
    except Exception:  # a broken CUDA install: no usable GPU either way
        available = False
    if not available:
        pytest.skip("no usable GPU for CuPy")
    return cupy


def float32_arithmetic(ptx: str) -> list[str]:
    """PTX lines doing float32 arithmetic (kernels must accumulate in float64)."""
    return [line for line in ptx.splitlines() if any(op in line for op in FLOAT32_OPS)]
