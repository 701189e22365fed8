"""``alphapulse gpu status|utilization|benchmark`` through the real command line entry point."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from alphapulse.flows.cli.dispatch import main
from alphapulse.pipelines.gpu.status import gpu_status

STATUS = gpu_status()


def test_status(capsys):
    assert main(["gpu", "status"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("available: ")
    assert "RAPIDS: " in out
    if not STATUS["available"]:
        assert out.startswith("available: no (NVML")
    assert main(["gpu", "status", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["available"] == STATUS["available"] and "rapids" in data


def test_utilization(capsys, tmp_path):
    png = tmp_path / "t.png"
    assert main(["gpu", "utilization", "--seconds", "0.3", "--interval", "0.05", "--png", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [ln for ln in lines if ln.strip() and ln.split()[0].replace(".", "").isdigit()]
    assert len(rows) >= 4 and png.read_bytes()[:4] == b"\x89PNG"
    assert main(["gpu", "utilization", "--seconds", "0.1", "--interval", "0.05", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["samples"]) >= 2


def test_benchmark_writes_the_report(capsys, tmp_path):
    out = tmp_path / "bench"
    assert main(["gpu", "benchmark", "--op", "covariance", "--size", "5", "30", "--repeats", "1", "--out", str(out),
                 "-q"]) == 0
    text = capsys.readouterr().out
    assert "crossover covariance:" in text and f"report: {out}" in text
    frame = pd.read_parquet(out / "benchmark.parquet")
    assert list(frame["size"]) == [5, 30] and frame["cpu_check"].all()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["benchmark"]["operations"] == ["covariance"]
    assert "## covariance" in (out / "summary.md").read_text()


def test_benchmark_errors(capsys):
    assert main(["gpu", "benchmark", "--op", "covariance", "--size", "0"]) == 2
    assert "out of bounds" in capsys.readouterr().err
    assert main(["gpu", "benchmark"]) == 2
    assert "give --op" in capsys.readouterr().err
    assert main(["gpu", "benchmark", "--op", "covariance", "--op", "backtest", "--size", "5"]) == 2
    assert "one --op" in capsys.readouterr().err


def test_refresh_routing_without_gpu(capsys, tmp_path, monkeypatch):
    if STATUS["available"]:
        pytest.skip("this machine has a GPU (the GPU case is test_routing's)")
    monkeypatch.setenv("ALPHAPULSE_CACHE_DIR", str(tmp_path))
    assert main(["gpu", "benchmark", "--refresh-routing"]) == 0
    assert "nothing to measure: no GPU" in capsys.readouterr().out
    assert not (tmp_path / "speedups.json").exists()
