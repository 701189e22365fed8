"""GPU status, utilisation snapshots and the sampler: real NVML/psutil readings, no mocks.

On a machine without a GPU the status must say so with a reason and never raise; the sampler's
process readings (CPU %, RSS) are real there too. The GPU-marked tests need a device.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

from alphapulse.pipelines.gpu.status import (UtilizationSampler, gpu_status, sample_for, timeline_png,
                                             utilization_snapshot)

STATUS = gpu_status()
no_gpu = pytest.mark.skipif(STATUS["available"], reason="this machine has a GPU")


def _busy(seconds: float) -> None:
    """Use ``seconds`` of CPU time (not wall time: the machine may be shared)."""
    end = time.process_time() + seconds
    x = np.random.default_rng(0).normal(size=200_000)
    while time.process_time() < end:
        np.sort(x)


def test_status_shape():
    st = gpu_status()
    assert set(st) >= {"available", "reason", "driver_version", "cuda_version", "devices", "rapids"}
    assert isinstance(st["available"], bool)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in st["rapids"].items())
    assert "nvidia-ml-py" in st["rapids"]  # a dependency of the project: the listing works


@no_gpu
def test_status_without_gpu_says_why():
    st = gpu_status()
    assert st["available"] is False
    assert st["reason"] and "NVML" in st["reason"]
    assert st["devices"] == [] and st["driver_version"] is None
    import sys

    assert "cupy" not in sys.modules  # a CPU machine never imports CuPy


def test_snapshot_never_raises_and_reads_the_process():
    snap = utilization_snapshot()
    assert snap["timestamp"].endswith("+00:00")
    assert snap["available"] == bool(snap["devices"])
    assert snap["process"]["rss_bytes"] > 10 * 2**20
    assert snap["process"]["cpu_pct"] >= 0
    if not snap["available"]:
        assert snap["reason"]


def test_sampler_tags_stages_and_peaks():
    with UtilizationSampler(0.05) as s:
        s.mark("busy")
        _busy(0.4)
        s.mark("idle")
        time.sleep(0.3)
        s.mark(None)
    samples = s.samples
    assert len(samples) >= 8  # 0.7 s at 0.05 s, with slack for a loaded machine
    assert [x["t"] for x in samples] == sorted(x["t"] for x in samples)
    stages = {x["stage"] for x in samples}
    assert {"busy", "idle"} <= stages
    peaks = s.stage_peaks()
    assert peaks["busy"]["rss_bytes"] > 0
    # sorting in a loop keeps a core busy: the busy stage's peak CPU exceeds the idle stage's
    assert peaks["busy"]["cpu_pct"] > peaks["idle"]["cpu_pct"]
    rec = s.record()
    assert rec["interval_s"] == 0.05 and rec["samples"] == samples
    if not STATUS["available"]:
        assert all(x["gpu_util_pct"] is None and x["gpu_mem_used_bytes"] is None for x in samples)
        assert rec["gpu_reason"]


@pytest.mark.parametrize("interval", [0, -1, 0.01, 3601, float("inf"), 1e308, float("nan")])
def test_sampler_rejects_a_bad_interval(interval):
    """inf and 1e308 were accepted and crashed the thread (Event.wait overflows); nothing starts."""
    with pytest.raises(ValueError, match="expected 0.05 to 3600 seconds"):
        UtilizationSampler(interval)


def test_sample_for_and_timeline_png():
    s = sample_for(0.2, 0.05)
    assert not s.running and len(s.samples) >= 3
    png = timeline_png(s.record())
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert timeline_png({"samples": []}) is None


@pytest.mark.gpu
def test_status_with_a_device():
    if not STATUS["available"]:
        pytest.skip(f"no GPU: {STATUS['reason']}")
    st = gpu_status()
    d = st["devices"][0]
    assert d["memory_total_bytes"] > d["memory_free_bytes"] > 0
    assert "." in d["compute_capability"] and st["driver_version"] and st["cuda_version"]
    assert d["multiprocessors"] > 0 and st["cupy_cuda_runtime"]
    with UtilizationSampler(0.05) as s:
        import cupy

        x = cupy.random.default_rng(0).standard_normal((4096, 4096))
        for _ in range(20):
            x = x @ x / 4096
        cupy.cuda.Device().synchronize()
    assert all(v["gpu_mem_used_bytes"] > 0 for v in s.samples)
    assert max(v["gpu_util_pct"] for v in s.samples) > 0
