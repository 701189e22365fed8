"""Fixtures every test folder shares: the array namespace a transform test runs on.

``xp`` is NumPy always and CuPy where a usable GPU exists (the CuPy case carries the ``gpu``
marker and skips cleanly without one), as scikit-learn's array-API tests parametrise theirs. A
transform test that takes ``xp`` builds its inputs with ``xp.asarray``, calls the transform, and
brings the result back with :func:`tests.conftest.host` before comparing it with the oracle, so
the same assertion checks both backends. ``pytest -m gpu`` selects only the CuPy cases: that is
what the GPU check (``scripts/gpu_check.sh``) runs on the GPU host.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import settings

# CI gates a landing, so there every property test draws the same examples each run (a failure names
# a change, not an unlucky draw); elsewhere the draws vary from run to run and keep looking.
settings.register_profile("ci", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def usable_cupy():
    """``(cupy, None)`` when CuPy sees a usable GPU, else ``(None, why)``; never raises."""
    try:
        import cupy
    except Exception as exc:  # not installed, or a broken CUDA install
        return None, f"CuPy not importable ({type(exc).__name__}: {exc})"
    try:
        if cupy.is_available():
            return cupy, None
    except Exception as exc:
        return None, f"no usable GPU for CuPy ({type(exc).__name__}: {exc})"
    return None, "no usable GPU for CuPy"


def host(x):
    """A NumPy copy of ``x`` (a CuPy array is copied from the device; a dict or tuple item-wise)."""
    if isinstance(x, dict):
        return {k: host(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(host(v) for v in x)
    if type(x).__module__.split(".", 1)[0] == "cupy":
        return x.get()
    return x if x is None or np.isscalar(x) else np.asarray(x)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def xp(request):
    """The array module a transform test runs on: ``numpy``, or ``cupy`` (skipped without a GPU)."""
    if request.param == "numpy":
        return np
    cupy, why = usable_cupy()
    if cupy is None:
        pytest.skip(f"no GPU: {why}")
    return cupy
