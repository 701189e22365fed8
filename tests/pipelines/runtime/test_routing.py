"""Routing by measured speedup: the pure decision on made-up measurements, the per-device cache,
and the decision a CPU machine makes in a real pipeline run."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alphapulse.pipelines.runtime.backend import Backend, cpu_backend
from alphapulse.pipelines.config import parse_config
from alphapulse.pipelines.runtime.routing import (cache_path, decide, device_key, interpolated_speedup, load_speedups,
                               record_speedups, route)
from alphapulse.pipelines.runtime.stages import RunTracker

MEASURED = {"indicators": [[10_000, 0.4], [100_000, 2.0], [1_000_000, 30.0]], "covariance": [[100, 0.8]]}


def test_interpolation_is_linear_in_log_size():
    pts = MEASURED["indicators"]
    assert interpolated_speedup(pts, 10_000) == 0.4
    assert interpolated_speedup(pts, 100_000) == 2.0
    assert interpolated_speedup(pts, 31_623) == pytest.approx(1.2, abs=1e-5)  # 10**4.5: half-way in log
    assert interpolated_speedup(pts, 10) == 0.4 and interpolated_speedup(pts, 10**9) == 30.0  # clamped ends
    assert interpolated_speedup([], 5) is None
    assert interpolated_speedup([[100, float("nan")]], 5) is None


@pytest.mark.parametrize("size, min_speedup, backend, speedup", [
    (10_000, 1.0, "cpu", 0.4),
    (100_000, 1.0, "gpu", 2.0),
    (100_000, 2.0, "gpu", 2.0),      # at least min_speedup: the bar is inclusive
    (100_000, 2.5, "cpu", 2.0),
    (5_000_000, 25.0, "gpu", 30.0),
])
def test_decision_on_measurements(size, min_speedup, backend, speedup):
    d = decide("indicators", size, gpu=True, min_speedup=min_speedup, measurements=MEASURED)
    assert d["backend"] == backend and d["speedup"] == pytest.approx(speedup)
    assert d["min_speedup"] == min_speedup and d["size"] == size
    assert d["reason"].startswith(f"{backend}: measured speedup")


def test_decision_without_measurements_and_without_gpu():
    d = decide("backtest", 10, gpu=True, min_speedup=1.0, measurements=MEASURED)
    assert d["backend"] == "gpu" and d["speedup"] is None and "no measured speedup" in d["reason"]
    d = decide("backtest", 10, gpu=True, min_speedup=1.5, measurements=None)
    assert d["backend"] == "cpu" and "--refresh-routing" in d["reason"]
    d = decide("indicators", 10**6, gpu=False, min_speedup=0.0, measurements=MEASURED, no_gpu_reason="no GPU (x)")
    assert d == {"operation": "indicators", "size": 10**6, "backend": "cpu", "speedup": None, "min_speedup": 0.0,
                 "reason": "cpu: no GPU (x)"}


def test_cache_path(monkeypatch, tmp_path):
    monkeypatch.setenv("ALPHAPULSE_CACHE_DIR", str(tmp_path / "c"))
    assert cache_path() == tmp_path / "c" / "speedups.json"
    assert cache_path(str(tmp_path / "x.json")) == tmp_path / "x.json"
    monkeypatch.delenv("ALPHAPULSE_CACHE_DIR")
    assert cache_path().parts[-3:] == (".cache", "alphapulse", "speedups.json")


def _bench(op, rows):
    return pd.DataFrame([{"operation": op, "size": s, "speedup": x, "agree": a} for s, x, a in rows])


def test_record_and_refresh(tmp_path):
    path = tmp_path / "speedups.json"
    assert load_speedups(path) == {}
    record_speedups(_bench("covariance", [(100, 0.5, True), (1000, 3.0, True), (5000, float("nan"), None)]),
                    key="devA", path=path)
    record_speedups(_bench("indicators", [(10, 2.0, True), (20, 9.0, False)]), key="devA", path=path)
    data = load_speedups(path)
    assert data["devA"]["operations"] == {"covariance": [[100, 0.5], [1000, 3.0]], "indicators": [[10, 2.0]]}
    record_speedups(_bench("backtest", [(50, 4.0, True)]), key="devA", path=path, replace=True)
    assert set(load_speedups(path)["devA"]["operations"]) == {"backtest"}  # a refresh replaces the device's entry
    record_speedups(_bench("backtest", [(50, 1.0, True)]), key="devB", path=path)
    assert set(load_speedups(path)) == {"devA", "devB"}
    assert not list(tmp_path.glob(".speedups.json.*"))  # the atomic write left no temporary file
    path.write_text("{not json")
    assert load_speedups(path) == {}


def test_device_key_from_a_status():
    status = {"available": True, "driver_version": "580.1", "cuda_version": "13.0",
              "devices": [{"name": "NVIDIA H100 80GB HBM3"}], "rapids": {"cupy-cuda13x": "13.6.0"}}
    key = device_key(status)
    assert key.startswith("NVIDIA H100 80GB HBM3|driver 580.1|cuda 13.0|cupy 13.6.0|alphapulse ")
    assert device_key({"available": False, "devices": []}) is None


def test_route_on_a_cpu_backend_records_the_decision():
    tracker = RunTracker()
    be = cpu_backend("gpu.enabled is false")
    gpu = parse_config({"gpu": {"fallback": {"min_speedup": 0.5}}}).gpu
    with tracker.track("indicators"):
        got = route("indicators", 1234, be, gpu, tracker=tracker)
    assert got is be
    assert tracker.routing == [{"operation": "indicators", "size": 1234, "backend": "cpu", "speedup": None,
                                "min_speedup": 0.5, "reason": "cpu: no GPU (gpu.enabled is false)",
                                "stage": "indicators"}]


def test_a_cpu_pipeline_run_routes_to_the_cpu(tmp_path):
    from alphapulse.pipelines.backtest import prepare_backtest, run_backtest_pipeline
    from tests.pipelines.portfolio.test_portfolio_pipeline import SAMPLE

    cfg = parse_config({"data": {"columns": {"timestamp": "date", "symbol": "Name"}},
                        "gpu": {"enabled": False}, "backtest": {"grid": {"fast": [5, 10], "slow": [20, 30]}}})
    res = run_backtest_pipeline(prepare_backtest(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "bt")))
    m = res.manifest
    (d,) = m["routing"]
    assert d["operation"] == "backtest" and d["backend"] == "cpu" and d["stage"] == "sweep"
    assert d["size"] == 4 * m["input"]["symbols"] and d["reason"] == "cpu: no GPU (gpu.enabled is false)"
    on_disk = json.loads((tmp_path / "bt" / "manifest.json").read_text())
    assert on_disk["routing"] == m["routing"] and on_disk["alerts"] == []
    assert "## Routing" in (tmp_path / "bt" / "summary.md").read_text()


def test_route_on_a_gpu_backend_reads_the_device_cache(tmp_path):
    """The plumbing of a GPU run (cache file, device key, interpolation, the CPU backend handed
    back), with made-up measurements under a made-up device key: no GPU work is done."""
    path = tmp_path / "speedups.json"
    record_speedups(_bench("covariance", [(10, 0.5, True), (1000, 8.0, True)]), key="devX", path=path)
    record_speedups(_bench("covariance", [(10, 50.0, True)]), key="devY", path=path)
    gpu = parse_config({"gpu": {"fallback": {"min_speedup": 2.0, "speedup_cache": str(path)},
                                "operations": {"precision": "float32"}}}).gpu
    be = Backend("gpu", "test", np.dtype("float32"), 0, "devX")
    tracker = RunTracker()
    assert route("covariance", 5000, be, gpu, tracker=tracker, key="devX") is be
    small = route("covariance", 10, be, gpu, tracker=tracker, key="devX")
    assert small.name == "cpu" and small.dtype == np.float32 and "measured speedup 0.50x < 2" in small.reason
    unknown = route("covariance", 10, be, gpu, tracker=tracker, key="devZ")  # no entry: min_speedup 2 > 1
    assert unknown.name == "cpu"
    assert [(d["backend"], d["speedup"]) for d in tracker.routing] == [("gpu", 8.0), ("cpu", 0.5), ("cpu", None)]


@pytest.mark.gpu
def test_routing_picks_the_gpu_where_measured_faster(tmp_path, monkeypatch):
    from alphapulse.pipelines.gpu.status import gpu_status

    status = gpu_status()
    if not status["available"]:
        pytest.skip(f"no GPU: {status['reason']}")
    key = device_key(status)
    path = tmp_path / "speedups.json"
    record_speedups(_bench("covariance", [(10, 0.5, True), (1000, 8.0, True)]), key=key, path=path)
    gpu = parse_config({"gpu": {"fallback": {"min_speedup": 2.0, "speedup_cache": str(path)}}}).gpu
    be = Backend("gpu", "test", np.dtype("float64"), 0, status["devices"][0]["name"])
    tracker = RunTracker()
    assert route("covariance", 5000, be, gpu, tracker=tracker) is be
    small = route("covariance", 10, be, gpu, tracker=tracker)
    assert small.name == "cpu" and "measured speedup 0.50x < 2" in small.reason
    assert [d["backend"] for d in tracker.routing] == ["gpu", "cpu"]
