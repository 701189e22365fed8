"""The budget's estimates against what the pipelines really hold, and its one-line refusals.

Memory: each pipeline runs through the CLI under tracemalloc on a small input whose largest
part dominates; the peak after the check (what was loaded before it is still held, and counted)
must not exceed the estimate, and the estimate not 2.5 times the peak. Python's and numpy's
allocations are traced; Arrow's are not, and the estimates count the report table's copy for
parquet (up to half of the daily and backtest estimates at these sizes), hence 2.5 and not 2.
The refusals themselves, at the hostile sizes, are in ``test_hostile_inputs.py``.
"""
from __future__ import annotations

import json
import tracemalloc

import numpy as np
import pandas as pd
import pytest
import yaml

import alphapulse.pipelines.runtime.budget as budget
from alphapulse.flows.cli.dispatch import main
from alphapulse.pipelines.runtime.budget import BudgetError, Need, check, models_needs, size_text
from alphapulse.pipelines.config import BudgetConfig, parse_config
from alphapulse.pipelines.models.pipeline import feature_names


def bars(n_symbols: int, n_bars: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    c = 50 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_symbols, n_bars)), axis=1)).ravel()
    return pd.DataFrame({"timestamp": np.tile(pd.bdate_range("2015-01-01", periods=n_bars), n_symbols),
                         "symbol": np.repeat([f"S{i:04d}" for i in range(n_symbols)], n_bars),
                         "open": c, "high": c * 1.01, "low": c * 0.99, "close": c, "volume": 1e6})


@pytest.fixture
def traced(monkeypatch, tmp_path):
    """Run ``alphapulse cmd`` on ``frame``: (estimated peak, traced peak after the check, manifest)."""
    seen = []
    real = budget.check

    def spy(needs, config, *, pipeline):
        seen.extend(needs)
        tracemalloc.reset_peak()  # what was allocated before the check is not the plan's
        return real(needs, config, pipeline=pipeline)

    monkeypatch.setattr(budget, "check", spy)

    def run(cmd, frame, text, *args):
        frame.to_parquet(tmp_path / "bars.parquet", index=False)
        (tmp_path / "c.yaml").write_text(text)
        seen.clear()
        tracemalloc.start()
        try:
            rc = main([cmd, "--data", str(tmp_path / "bars.parquet"), "--out", str(tmp_path / "out"), "--config",
                       str(tmp_path / "c.yaml"), "--backend", "cpu", "--no-prefect", "-q", *args])
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert rc == 0
        return max(n.bytes for n in seen), peak, json.loads((tmp_path / "out" / "manifest.json").read_text())
    return run


def assert_bounds(estimate, peak):
    assert peak <= estimate <= 2.5 * peak, (size_text(estimate), size_text(peak))


def test_daily_estimate_bounds_its_peak(traced):
    estimate, peak, _ = traced("daily", bars(100, 500), "indicators:\n  sma: [" +
                               ", ".join(str(p) for p in range(2, 202)) + "]\n")
    assert_bounds(estimate, peak)


def test_backtest_estimate_bounds_its_peak(traced):
    estimate, peak, _ = traced("backtest", bars(64, 300), "indicators: {sma: [5]}\n", "--strategy", "sma_cross",
                               "--grid", "fast=1:30,slow=31:130")
    assert_bounds(estimate, peak)


def test_portfolio_estimate_bounds_its_peak(traced):
    """400 symbols: the regimes' daily correlation matrices are the peak."""
    estimate, peak, _ = traced("portfolio", bars(400, 300),
                               "portfolio:\n  lookback_bars: 250\n  min_history_bars: 200\n"
                               "  correlation_lookback_bars: 21\n  monte_carlo: {n_paths: 1000}\n")
    assert_bounds(estimate, peak)


def test_monte_carlo_estimate_bounds_its_peak(traced):
    estimate, peak, _ = traced("portfolio", bars(3, 300), "portfolio:\n  lookback_bars: 250\n  min_history_bars: 200\n"
                               "  monte_carlo: {n_paths: 2000000, models: [normal]}\n")
    assert_bounds(estimate, peak)


def test_models_estimate_bounds_its_peak(traced):
    estimate, peak, _ = traced("models", bars(50, 600), "models:\n  features: {return_lags: 100}\n"
                               "  walk_forward: {train_bars: 300, test_bars: 100}\n"
                               "  models: [{kind: ridge}, {kind: knn, n_neighbors: 200}]\n"
                               "  ensemble: {methods: [mean]}\n")
    assert_bounds(estimate, peak)


def test_time_estimates_are_lower_bounds(traced):
    """The forest's and the KMeans restarts' estimates stay below what they take here."""
    text = ("models:\n  walk_forward: {train_bars: 200, test_bars: 50}\n"
            "  models: [{kind: random_forest, scope: pooled, n_estimators: 20}]\n  ensemble: {methods: [mean]}\n")
    _, _, manifest = traced("models", bars(20, 400), text)
    mc = parse_config(yaml.safe_load(text)).models
    forest = [n for n in models_needs(mc, bars=400, symbols=20, features=len(feature_names(mc)))
              if "n_estimators" in n.what]
    assert 0 < forest[0].seconds < manifest["stages"]["walk_forward"]
    from sklearn.cluster import KMeans
    import time

    x = np.random.default_rng(0).normal(size=(1000, 5))
    start = time.perf_counter()
    KMeans(3, n_init=20, random_state=0).fit(x)
    assert 20 * budget.KMEANS_FIT_S < time.perf_counter() - start


def test_the_refusal_names_the_largest_need_and_the_means(monkeypatch):
    monkeypatch.setattr(budget, "available_bytes", lambda: 8 * 2**30)
    needs = [Need("a.small = 1", 2**20, "small"), Need("a.big = 7", 5 * 2**30, "big x 8 B")]
    with pytest.raises(BudgetError) as e:
        check(needs, BudgetConfig(memory_fraction=0.5), pipeline="test")
    assert str(e.value) == ("a.big = 7 needs ~5.0 GiB (big x 8 B); this machine has 8.0 GiB available, of which "
                            "budget.memory_fraction 0.5 allows 4.0 GiB")
    check(needs, BudgetConfig(memory_fraction=0.75), pipeline="test")  # 6 GiB allowed: no error
    slow = [Need("b.n = 3", seconds=3600, time_formula="n x 20 min"), Need("b.m = 1", seconds=3600)]
    with pytest.raises(BudgetError, match=r"^b.n = 3 plans at least ~60 min \(n x 20 min, ~2.0 h in all\); "
                                          r"budget.max_hours is 1.5$"):
        check(slow, BudgetConfig(max_hours=1.5), pipeline="test")


def test_available_memory_is_psutils():
    import psutil

    assert abs(budget.available_bytes() - psutil.virtual_memory().available) < 2**30  # other processes move it


@pytest.mark.parametrize("nbytes, text", [(512, "512 B"), (1536, "1.5 KiB"), (21 * 2**30, "21 GiB"),
                                          (72.4 * 2**30, "72 GiB"), (3 * 2**50, "3.0 PiB")])
def test_size_text(nbytes, text):
    assert size_text(nbytes) == text
