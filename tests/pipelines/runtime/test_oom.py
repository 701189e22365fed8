"""GPU out-of-memory handling, tested by injecting real OOM-typed errors into a chunked computation.

The chunk function below computes a real result (rolling sums of a panel's columns) and raises
an out-of-memory error when a chunk is larger than a threshold, on the GPU path only, as a device
that fills up would. Results must equal an uninjected run's exactly.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest

from alphapulse.pipelines.runtime.oom import GpuOutOfMemory, is_gpu_oom, register_oom_type, run_chunks
from alphapulse.pipelines.runtime.stages import RunTracker


@register_oom_type
class InjectedOOM(MemoryError):
    """Out of device memory, as the allocator would raise it (registered like a new library's type)."""


def _class_at(module: str, name: str, base=Exception):
    """An exception class whose path is ``module.name``: how the recogniser sees the GPU
    libraries' classes without importing them."""
    return type(name, (base,), {"__module__": module})


def test_recogniser():
    assert is_gpu_oom(InjectedOOM("x"))
    assert is_gpu_oom(_class_at("cupy.cuda.memory", "OutOfMemoryError")("Out of memory allocating 8 bytes"))
    assert is_gpu_oom(_class_at("rmm._lib.memory_resource", "MemoryError", MemoryError)("std::bad_alloc"))
    assert is_gpu_oom(MemoryError("std::bad_alloc: out_of_memory: RMM failure at: arena.hpp"))
    assert is_gpu_oom(_class_at("cudf.core.column", "MemoryError", MemoryError)("x"))
    cuda_err = _class_at("numba.cuda.cudadrv.driver", "CudaAPIError")
    e = cuda_err("[2] Call to cuMemAlloc results in CUDA_ERROR_OUT_OF_MEMORY")
    e.code = 2
    assert is_gpu_oom(e)
    other = cuda_err("[700] CUDA_ERROR_ILLEGAL_ADDRESS")
    other.code = 700
    assert not is_gpu_oom(other)
    assert not is_gpu_oom(MemoryError())  # host memory: not the GPU's
    assert not is_gpu_oom(MemoryError("Unable to allocate 8.00 GiB for an array with shape (1073741824,)"))
    assert not is_gpu_oom(ValueError("out of memory"))  # the text alone is not enough
    assert not is_gpu_oom(_class_at("cupy.cuda.memory", "OutOfMemoryErrorX")("x"))


def _panel():
    return np.random.default_rng(3).normal(size=(300, 37))


class Chunks:
    """Cumulative sums of columns a:b; raises InjectedOOM on the GPU path above ``limit`` columns."""

    def __init__(self, x, limit=None):
        self.x, self.limit, self.calls = x, limit, []

    def __call__(self, a, b, on_gpu):
        self.calls.append((a, b, on_gpu))
        if on_gpu and self.limit is not None and b - a > self.limit:
            raise InjectedOOM(f"Out of memory allocating {(b - a) * 8 * 300:,} bytes")
        return np.cumsum(self.x[:, a:b], axis=0)


SPANS = [(0, 16), (16, 32), (32, 37)]


def _run(chunks, **kw):
    return np.concatenate(run_chunks(SPANS, chunks, **kw), axis=1)


def test_halving_gives_identical_results_and_alerts():
    x = _panel()
    want = _run(Chunks(x), tracker=RunTracker())
    tracker = RunTracker()
    chunks = Chunks(x, limit=5)
    got = _run(chunks, tracker=tracker, stage="indicators")
    np.testing.assert_array_equal(got, want)
    # 16 -> 8 -> 4 (two halvings per big chunk); the last chunk 5 fits
    gpu_sizes = [b - a for a, b, g in chunks.calls if g]
    assert gpu_sizes[:4] == [16, 8, 4, 4] and 5 in gpu_sizes
    assert not any(not g for _, _, g in chunks.calls)  # never needed the CPU
    assert all(a["kind"] == "gpu_oom" and a["stage"] == "indicators" for a in tracker.alerts)
    assert [a["batch_size"] for a in tracker.alerts] == [16, 8, 8, 16, 8, 8]
    assert "retrying as two chunks of 8 and 8" in tracker.alerts[0]["action"]


def test_cpu_fallback_at_the_floor(caplog):
    x = _panel()
    want = _run(Chunks(x), tracker=RunTracker())
    tracker = RunTracker()
    chunks = Chunks(x, limit=0)  # the device can hold nothing
    with caplog.at_level(logging.WARNING, logger="alphapulse.pipelines.runtime.oom"):
        got = _run(chunks, tracker=tracker, min_batch=4, cpu_fallback=True)
    np.testing.assert_array_equal(got, want)
    cpu = [(a, b) for a, b, g in chunks.calls if not g]
    assert cpu and all(b - a < 8 for a, b in cpu)  # below twice the floor: not split further
    assert sum(b - a for a, b in cpu) == 37  # every column computed once on the CPU
    assert any("on the CPU" in a["action"] for a in tracker.alerts)
    assert "GPU out of memory" in caplog.text


def test_no_fallback_raises_one_clear_error():
    tracker = RunTracker()
    with pytest.raises(GpuOutOfMemory, match="gpu.fallback.cpu_fallback is false"):
        _run(Chunks(_panel(), limit=0), tracker=tracker, min_batch=8, cpu_fallback=False)
    assert tracker.alerts[-1]["action"].startswith("failing")


def test_merge_and_no_alerts_when_off():
    x = _panel()
    tracker = RunTracker()
    parts = run_chunks([(0, 37)], Chunks(x, limit=10), tracker=tracker, alert=False,
                       merge=lambda p: np.concatenate(p, axis=1))
    assert len(parts) == 1  # the halves merged back into the span's one result
    np.testing.assert_array_equal(parts[0], np.cumsum(x, axis=0))
    assert tracker.alerts == []


def test_other_errors_and_cpu_runs_are_not_retried():
    def bad(a, b, on_gpu):
        raise ValueError("a real bug")

    with pytest.raises(ValueError, match="a real bug"):
        run_chunks(SPANS, bad, tracker=RunTracker())
    chunks = Chunks(_panel(), limit=0)
    run_chunks(SPANS, chunks, on_gpu=False, tracker=RunTracker())  # the CPU path never raises the OOM
    assert [c[2] for c in chunks.calls] == [False, False, False]


def test_chunked_columns_on_injected_indicators():
    """The indicators' column chunking: the GPU path's logic on NumPy arrays, an OOM injected
    above 7 columns: identical outputs, halvings recorded."""
    from alphapulse.pipelines.runtime.oom import chunked_columns
    from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators

    rng = np.random.default_rng(5)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (400, 23)), axis=0))
    close[:150, ::5] = np.nan  # late listings
    fields = {"close": np.asfortranarray(close), "high": np.asfortranarray(close * 1.01),
              "low": np.asfortranarray(close * 0.99)}
    specs = [IndicatorSpec("rsi", {"period": 14}), IndicatorSpec("atr", {"period": 14}),
             IndicatorSpec("macd", {"fast": 12, "slow": 26, "signal": 9})]
    want = compute_indicators(fields, specs)
    widths = []

    def injected(part):
        widths.append(part["close"].shape[1])
        if part["close"].shape[1] > 7:
            raise InjectedOOM("out of memory")
        return compute_indicators(part, specs)

    tracker = RunTracker()
    got = chunked_columns(fields, injected, on_gpu=True, tracker=tracker, stage="indicators")
    assert widths[:3] == [23, 11, 5]
    assert set(got) == set(want)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
    assert [a["batch_size"] for a in tracker.alerts] == [23, 11, 12]  # 23 -> 11 + 12 -> 5 + 6 + 6 + 6


# ---------------------------------------------------------------------------------------------
# The pipelines' wiring: an OOM injected into the real computation, on the CPU backend
# ---------------------------------------------------------------------------------------------


def _sample_config(**extra):
    from alphapulse.pipelines.config import parse_config

    return parse_config({"data": {"columns": {"timestamp": "date", "symbol": "Name"}}, "gpu": {"enabled": False},
                         "indicators": {"sma": [20], "rsi": [14], "atr": [14]}, **extra})


def test_daily_indicators_unchanged_under_injected_oom(tmp_path, monkeypatch):
    import json

    import pandas as pd

    import alphapulse.pipelines.daily.pipeline as daily
    from tests.pipelines.portfolio.test_portfolio_pipeline import SAMPLE

    cfg = _sample_config()
    want = daily.run_daily(daily.prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "a")))
    real = daily.compute_indicators
    widths = []

    def injected(fields, specs):
        widths.append(fields["close"].shape[1])
        if fields["close"].shape[1] > 20:
            raise InjectedOOM("out of memory allocating the indicator outputs")
        return real(fields, specs)

    monkeypatch.setattr(daily, "compute_indicators", injected)
    got = daily.run_daily(daily.prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "b")))
    assert widths[:3] == [50, 25, 12]  # 50 symbols -> 25 + 25 -> 12 + 13 ...
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "b" / "indicators.parquet"),
                                  pd.read_parquet(tmp_path / "a" / "indicators.parquet"))
    alerts = json.loads((tmp_path / "b" / "manifest.json").read_text())["alerts"]
    assert [a["batch_size"] for a in alerts] == [50, 25, 25] and all(a["stage"] == "indicators" for a in alerts)
    assert got.manifest["alerts"] == alerts
    assert want.manifest["alerts"] == []
    assert "gpu_oom" in (tmp_path / "b" / "summary.md").read_text()


@pytest.mark.parametrize("cluster", [None, "local"])
def test_backtest_unchanged_under_injected_oom(tmp_path, monkeypatch, cluster):
    """In-process and on a (threaded) Dask cluster, whose tasks carry their alerts back."""
    import pandas as pd

    from alphapulse.pipelines import backtest as bt
    from alphapulse.transforms.backtest import engine
    from tests.pipelines.portfolio.test_portfolio_pipeline import SAMPLE

    cfg = _sample_config(backtest={"grid": {"fast": [5, 10, 15], "slow": [20, 30, 40, 50]}})
    want = bt.run_backtest_pipeline(bt.prepare_backtest(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "a")))
    real = engine.run_backtest
    launches = []

    def injected(prices, n, *, legs, **kw):
        launches.append(legs.shape[0])
        if legs.shape[0] > 3:
            raise InjectedOOM("out of memory allocating the returns buffer")
        return real(prices, n, legs=legs, **kw)

    monkeypatch.setattr(engine, "run_backtest", injected)
    got = bt.run_backtest_pipeline(bt.prepare_backtest(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "b"),
                                                       cluster=cluster))
    assert launches[:3] == [12, 6, 3]
    for name in ("backtest_metrics.parquet", "backtest_summary.parquet", "equity.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "b" / name), pd.read_parquet(tmp_path / "a" / name))
    sizes = [a["batch_size"] for a in got.manifest["alerts"]]
    assert sizes[:2] == [12, 6] and all(a["stage"] == "sweep" for a in got.manifest["alerts"])
    assert got.manifest["chunks"]["launches"] > want.manifest["chunks"]["launches"]
    assert "alerts" not in got.manifest["chunks"]


@pytest.mark.gpu
def test_real_gpu_oom_is_halved_then_falls_back():
    """On a device: fill the memory but ~40 MB, then compute indicators whose outputs need ~100 MB:
    CuPy's own OutOfMemoryError must be recognised, the columns halved (and, when even a small
    chunk does not fit, run on the CPU), and the outputs equal the CPU's."""
    from tests.transforms.gpu_testlib import cupy_or_skip

    cupy = cupy_or_skip()
    from alphapulse.pipelines.runtime.oom import chunked_columns
    from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators

    rng = np.random.default_rng(1)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (1000, 4000)), axis=0))
    host = {"close": close, "high": close * 1.01, "low": close * 0.99}
    specs = [IndicatorSpec("sma", {"period": 20}), IndicatorSpec("rsi", {"period": 14}),
             IndicatorSpec("atr", {"period": 14})]
    want = compute_indicators({k: np.asfortranarray(v) for k, v in host.items()}, specs)
    fields = {k: cupy.asarray(v, order="C") for k, v in host.items()}
    pool = cupy.get_default_memory_pool()
    pool.free_all_blocks()
    free, _ = cupy.cuda.runtime.memGetInfo()
    blocker = cupy.empty(max(0, free - 40 * 2**20), dtype=cupy.uint8)
    try:
        tracker = RunTracker()
        got = chunked_columns(fields, lambda f: compute_indicators(f, specs), on_gpu=True, min_columns=256,
                              cpu_fallback=True, tracker=tracker, stage="indicators")
        got = {k: v if isinstance(v, np.ndarray) else cupy.asnumpy(v) for k, v in got.items()}
    finally:
        del blocker
        pool.free_all_blocks()
    assert tracker.alerts and tracker.alerts[0]["batch_size"] == 4000
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-9, equal_nan=True)
