import numpy as np
import pytest

from alphapulse.pipelines.runtime.backend import BackendError, choose_backend, probe_gpu
from alphapulse.pipelines.config import parse_config

NO_GPU = lambda device: (None, "no CUDA device (test)")  # noqa: E731
ONE_GPU = lambda device: (0 if device == "auto" else device, "Test GPU")  # noqa: E731


def gpu_cfg(**gpu):
    return parse_config({"gpu": gpu}).gpu


def test_override_cpu():
    b = choose_backend(gpu_cfg(), override="cpu", probe=ONE_GPU)
    assert b.name == "cpu" and "--backend cpu" in b.reason and b.xp is np


def test_disabled_gpu_gives_cpu():
    b = choose_backend(gpu_cfg(enabled=False), probe=ONE_GPU)
    assert b.name == "cpu" and "gpu.enabled is false" in b.reason


def test_fallback_reason_and_precision():
    b = choose_backend(gpu_cfg(operations={"precision": "float32"}), probe=NO_GPU)
    assert b.name == "cpu" and "cpu_fallback is true" in b.reason and "no CUDA device" in b.reason
    assert b.dtype == np.float32
    assert b.panel_order == "F"


def test_no_fallback_is_an_error():
    with pytest.raises(BackendError, match="cpu_fallback is false"):
        choose_backend(gpu_cfg(fallback={"cpu_fallback": False}), probe=NO_GPU)


def test_gpu_demanded_but_missing():
    with pytest.raises(BackendError, match="--backend gpu requested but no usable GPU"):
        choose_backend(gpu_cfg(), override="gpu", probe=NO_GPU)


def test_gpu_chosen_when_probe_finds_one():
    b = choose_backend(gpu_cfg(device_selection=0), probe=ONE_GPU)
    assert b.name == "gpu" and b.device == 0 and b.device_name == "Test GPU" and b.panel_order == "C"
    assert b.record()["name"] == "gpu"


def test_real_probe_never_raises_here():
    device, why = probe_gpu("auto")
    try:
        import cupy

        has_gpu = cupy.is_available()
    except Exception:
        has_gpu = False
    assert (device is not None) == has_gpu
    assert isinstance(why, str) and why
