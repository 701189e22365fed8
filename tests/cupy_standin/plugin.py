"""pytest plugin: run the CuPy cases of the ``xp`` tests on the CuPy stand-in, on the CPU.

    python -m pytest -p tests.cupy_standin.plugin -m gpu tests/transforms

For this pytest run only, ``import cupy`` (and ``cupyx``) gives the stand-in of
:mod:`tests.cupy_standin` (``cupy.__version__ == "stand-in"``), so the ``xp`` fixture's CuPy case
runs instead of skipping, and a :class:`~alphapulse.transforms.kernels.SeriesKernel` launch on
device arrays runs the compiled CPU kernel on the device arrays' own memory (numba-cuda is never
used). The report header says "CuPy stand-in on the CPU (not CuPy)". A test that needs a real GPU
(numba-cuda on a device, PTX, cuML, NVML) still skips, with its own reason.

It refuses to load where a real CuPy was already imported: the GPU check on a GPU host never
loads it (``scripts/gpu_check.py`` adds it to the rehearsal only).
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

HEADER = "CuPy stand-in on the CPU (not CuPy)"
_saved: dict = {}


def _launch_on_cpu(self, n_cols, *args):
    """``SeriesKernel.gpu`` of the stand-in: the CPU kernel on the device arrays' memory, in place.

    The arrays are passed as they are on the "device" (the C-ordered panels the pipelines give the
    GPU kernels), never re-laid out as the CPU path would, and every write lands in them."""
    from tests.cupy_standin._core import StandInTypeError, ndarray

    host = []
    for a in args:
        if isinstance(a, ndarray):
            host.append(a._a)
        elif isinstance(a, np.ndarray):
            raise StandInTypeError(f"{self.__name__}: a NumPy array in a launch on device arrays")
        else:
            host.append(a)
    self.cpu(n_cols, *host)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    from tests.cupy_standin._core import modules

    present = sys.modules.get("cupy")
    if present is not None and getattr(present, "__version__", None) != "stand-in":
        raise pytest.UsageError("tests.cupy_standin.plugin: a real CuPy is already imported; the stand-in is for "
                                "machines without a GPU (drop -p tests.cupy_standin.plugin)")
    new = modules()
    _saved["modules"] = {name: sys.modules.get(name) for name in new}
    sys.modules.update(new)

    from alphapulse.transforms.kernels import SeriesKernel

    _saved["gpu"] = SeriesKernel.gpu
    SeriesKernel.gpu = _launch_on_cpu


def pytest_unconfigure(config):
    if "gpu" in _saved:
        from alphapulse.transforms.kernels import SeriesKernel

        SeriesKernel.gpu = _saved.pop("gpu")
    for name, module in _saved.pop("modules", {}).items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


def pytest_report_header(config):
    return HEADER
