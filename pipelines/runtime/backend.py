"""The compute backend, decided once per run from the config and what the machine has.

GPU when ``gpu.enabled`` and CuPy and cuDF import and ``cupy.is_available()`` and the selected
device exists (an RMM pool is then set up from ``gpu.memory_management``); else the CPU when
``gpu.fallback.cpu_fallback`` allows it; else :class:`BackendError`. ``--backend cpu|gpu``
overrides the choice. The decision and its reason are logged and recorded in the report.

A successful ``import cudf`` is not a GPU check: on a machine without a GPU the import works and
only first use fails, so the probe asks ``cupy.is_available()`` after the imports.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from alphapulse.pipelines.config.schema import GpuConfig, parse_size
from alphapulse.pipelines.errors import BackendError
from alphapulse.transforms.kernels import series_order

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """Where a run computes, and why.

    Attributes
    ----------
    name : "cpu" or "gpu"
    reason : why this backend was chosen (for the log and the report)
    dtype : compute dtype of the panels (``gpu.operations.precision``)
    device : CUDA device id on the GPU, None on the CPU
    device_name : the device's name, None on the CPU
    """

    name: Literal["cpu", "gpu"]
    reason: str
    dtype: np.dtype = field(default_factory=lambda: np.dtype(np.float64))
    device: int | None = None
    device_name: str | None = None

    @property
    def is_gpu(self) -> bool:
        return self.name == "gpu"

    @property
    def xp(self):
        """The array module: NumPy or CuPy."""
        if self.is_gpu:
            import cupy

            return cupy
        return np

    @property
    def frames(self):
        """The dataframe module: pandas or cuDF."""
        if self.is_gpu:
            import cudf

            return cudf
        import pandas

        return pandas

    @property
    def panel_order(self) -> str:
        """Memory order of time x symbols panels: the series kernels'
        (``alphapulse.transforms.kernels.series_order``)."""
        return "C" if self.is_gpu else series_order(np)

    def record(self) -> dict:
        """What the report's manifest says about the backend."""
        return {"name": self.name, "reason": self.reason, "dtype": str(self.dtype),
                "device": self.device, "device_name": self.device_name}


def cpu_backend(reason: str, *, precision: str = "float64") -> Backend:
    return Backend("cpu", reason, np.dtype(precision))


def probe_gpu(device_selection: int | Literal["auto"] = "auto") -> tuple[int | None, str]:
    """``(device id, description)`` of a usable GPU, or ``(None, why not)``. Never raises."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken CUDA install raising on import
        return None, f"CuPy does not import ({type(e).__name__}: {e}); install the 'gpu' extra"
    try:
        import cudf  # noqa: F401
    except Exception as e:
        return None, f"cuDF does not import ({type(e).__name__}: {e}); install the 'gpu' extra"
    try:
        if not cupy.is_available():
            return None, "cupy.is_available() is False (no CUDA device or driver)"
        count = cupy.cuda.runtime.getDeviceCount()
        device = 0 if device_selection == "auto" else int(device_selection)
        if device >= count:
            return None, f"gpu.device_selection is {device} but only {count} device(s) exist"
        props = cupy.cuda.runtime.getDeviceProperties(device)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return device, name
    except Exception as e:
        return None, f"CUDA query failed ({type(e).__name__}: {e})"


def _setup_memory_pool(device: int, gpu: GpuConfig) -> None:
    """RMM pool on ``device`` sized by ``gpu.memory_management``; CuPy allocates from it."""
    import cupy
    import rmm
    from rmm.allocators.cupy import rmm_cupy_allocator

    cupy.cuda.Device(device).use()
    mm = gpu.memory_management
    if mm.pool_size == "auto":
        free, _total = cupy.cuda.runtime.memGetInfo()
        initial = (free // 2) // 256 * 256
    else:
        initial = parse_size(mm.pool_size) // 256 * 256
    maximum = initial if mm.growth_mode == "fixed" else None
    rmm.reinitialize(pool_allocator=True, initial_pool_size=initial, maximum_pool_size=maximum,
                     devices=device)
    cupy.cuda.set_allocator(rmm_cupy_allocator)


def choose_backend(gpu: GpuConfig, *, override: Literal["auto", "cpu", "gpu"] = "auto",
                   probe=probe_gpu) -> Backend:
    """Decide the run's backend (see the module docstring); logs the decision and its reason.

    Parameters
    ----------
    gpu : the config's ``gpu`` block
    override : ``--backend``: "auto" follows the config, "cpu" forces the CPU, "gpu" demands a GPU
    probe : the GPU probe (a parameter so tests can stand in a machine with a GPU)
    """
    precision = gpu.operations.precision
    if override not in ("auto", "cpu", "gpu"):
        raise BackendError(f"unknown backend {override!r}: expected auto, cpu or gpu")
    if override == "cpu":
        backend = cpu_backend("--backend cpu requested", precision=precision)
    elif override == "auto" and not gpu.enabled:
        backend = cpu_backend("gpu.enabled is false", precision=precision)
    else:
        device, detail = probe(gpu.device_selection)
        if device is not None:
            if probe is probe_gpu:
                _setup_memory_pool(device, gpu)
            why = "--backend gpu requested" if override == "gpu" else "gpu.enabled and a usable GPU"
            backend = Backend("gpu", f"{why}: device {device} ({detail})", np.dtype(precision), device, detail)
        elif override == "gpu":
            raise BackendError(f"--backend gpu requested but no usable GPU: {detail}")
        elif gpu.fallback.cpu_fallback:
            backend = cpu_backend(f"no usable GPU ({detail}); gpu.fallback.cpu_fallback is true",
                                  precision=precision)
        else:
            raise BackendError(f"no usable GPU ({detail}) and gpu.fallback.cpu_fallback is false")
    log.info("backend: %s (%s), dtype %s", backend.name, backend.reason, backend.dtype)
    return backend
