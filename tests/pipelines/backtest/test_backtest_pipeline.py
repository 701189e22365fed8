"""The backtest pipeline: requests, chunking and sharding (results identical whatever the split),
the equal-weight portfolio, walk-forward without look-ahead, and the report."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from alphapulse.pipelines import backtest as bp
from alphapulse.pipelines.backtest import sweep
from alphapulse.pipelines.runtime.backend import cpu_backend
from alphapulse.pipelines.runtime.cluster import open_client
from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.config.grid import GridError
from tests.pipelines.conftest import SAMPLE
from alphapulse.transforms.backtest.metrics import METRICS
from alphapulse.transforms.backtest.strategies import custom_strategy
from alphapulse.transforms.backtest.walk_forward import choose_combinations

CPU = cpu_backend("tests")
SMALL_GRID = "fast=5:20:5,slow=30:60:10"  # 16 combinations, all valid


def make_config(*, data_columns=None, gpu=None, **backtest):
    base = load_config().model_dump(mode="json")
    base["backtest"].update(backtest)
    if data_columns is not None:
        base["data"]["columns"] = data_columns
    if gpu:
        base["gpu"]["operations"].update(gpu)
    return parse_config(base)


def make_request(tmp_path, grid=SMALL_GRID, *, data=SAMPLE, strategy=None, cluster=None, **kw):
    return bp.prepare_backtest(make_config(**kw), data_path=str(data), out_dir=str(tmp_path / "out"),
                               strategy=strategy, grid=grid, backend="cpu", cluster=cluster)


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """The bundled sample, loaded and compacted once: (loaded bars, prepared panel)."""
    request = make_request(tmp_path_factory.mktemp("s"))
    loaded = bp.load_stage(request, CPU)
    return loaded, bp.panel_stage(loaded.bars, CPU)


def assert_same(a: bp.SweepResult, b: bp.SweepResult):
    for m in METRICS:
        np.testing.assert_array_equal(a.metrics[m], b.metrics[m], err_msg=m)
    np.testing.assert_array_equal(a.portfolio_returns, b.portfolio_returns)
    np.testing.assert_array_equal(a.portfolio_counts, b.portfolio_counts)
    for m in a.portfolio_metrics:
        np.testing.assert_array_equal(a.portfolio_metrics[m], b.portfolio_metrics[m], err_msg=m)


# --- requests ----------------------------------------------------------------------------------

def test_invalid_combinations_are_skipped_and_counted(tmp_path):
    request = make_request(tmp_path, "fast=10:30:10,slow=10:30:10")
    assert request.grid_size == 9
    assert [c for c in request.plan.combos] == [{"fast": 10, "slow": 20}, {"fast": 10, "slow": 30},
                                                {"fast": 20, "slow": 30}]
    assert len(request.plan.skipped) == 6 and {why for _, why in request.plan.skipped} == {"fast >= slow"}


def test_requests_that_cannot_run(tmp_path):
    with pytest.raises(GridError, match=r"all 1 combinations are invalid \(fast >= slow: 1\)"):
        make_request(tmp_path, "fast=50;slow=20")
    with pytest.raises(GridError, match="rsi_reversion: .*period"):
        make_request(tmp_path, "period=1", strategy="rsi_reversion")
    with pytest.raises(ValueError, match=r"unknown strategy 'sma_crosss' \(did you mean 'sma_cross'\?\)"):
        make_request(tmp_path, strategy="sma_crosss")
    with pytest.raises(ValueError, match="cluster must be"):
        make_request(tmp_path, cluster="yarn")


def test_grid_sources(tmp_path):
    assert make_request(tmp_path, None).grid_source == "config"
    assert len(make_request(tmp_path, None).plan.combos) == 174  # the default config's grid
    other = make_request(tmp_path, None, strategy="ema_cross")
    assert other.grid_source == "strategy defaults" and other.plan.combos == [{"fast": 12, "slow": 26}]
    sampled = make_request(tmp_path, None, random_sample=20, seed=3)
    assert len(sampled.plan.combos) + len(sampled.plan.skipped) == 20
    assert sampled.plan.combos == make_request(tmp_path, None, random_sample=20, seed=3).plan.combos


# --- chunking and sharding ---------------------------------------------------------------------

def test_chunk_sizes_respect_the_budget():
    for budget in (10**4, 10**6, 10**8):
        subs, full, window = bp.chunk_sizes(n_bars=1259, n_symbols=500, n_combinations=300, n_bank=25,
                                            budget=budget, portfolio=True, target=False, window_bars=126)
        if budget >= (2 * 25 + 6) * 1259:
            assert subs * (2 * 25 + 6) * 1259 <= budget
            assert subs * full * (1259 + 20) <= budget
        assert subs >= 1 and full >= 1 and window >= full


def test_chunked_equals_unchunked(sample, tmp_path):
    _, prepared = sample
    runs = []
    for batch in (10**9, 200_000, 20_000):
        request = make_request(tmp_path, gpu={"batch_size": batch})
        runs.append(bp.sweep_stage(prepared, request, CPU))
    assert runs[0].chunks["launches"] == 1 and runs[2].chunks["launches"] > runs[1].chunks["launches"] > 1
    assert runs[2].chunks["symbols_per_sub_block"] == 1
    for other in runs[1:]:
        assert_same(runs[0], other)
    assert np.isfinite(runs[0].portfolio_metrics["sharpe"]).all()


def test_task_partition_does_not_change_results(sample, tmp_path, monkeypatch):
    _, prepared = sample
    monkeypatch.setattr(sweep, "FOLD_GROUP_SYMBOLS", 8)
    runs = [bp.sweep_stage(prepared, make_request(tmp_path, symbols_per_chunk=size), CPU) for size in (8, 24, "auto")]
    assert [r.chunks["tasks"] for r in runs] == [7, 3, 1]
    assert runs[0].chunks["fold_groups"] == 7
    for other in runs[1:]:
        assert_same(runs[0], other)
    blocks = bp.make_blocks(prepared, 20, host=False)  # whole groups: 24, 24 and 2 symbols
    assert [(b.start, b.n_symbols, len(b.groups)) for b in blocks] == [(0, 24, 3), (24, 24, 3), (48, 2, 1)]


def test_groups_and_sub_blocks_never_hold_a_single_symbol():
    assert bp.fold_groups(65) == [(0, 65)] and bp.fold_groups(130)[-1] == (128, 130)
    assert bp.sub_blocks(0, 50, 14) == [(0, 12), (12, 25), (25, 37), (37, 50)]
    assert bp.sub_blocks(0, 7, 1) == [(0, 2), (2, 4), (4, 7)]
    assert bp.sub_blocks(3, 4, 1) == [(3, 4)]


@pytest.mark.parametrize("kind", ["processes", "local"])
def test_local_cluster_equals_in_process(sample, tmp_path, monkeypatch, kind):
    """A real distributed.LocalCluster with 2 workers: same numbers as the in-process run."""
    _, prepared = sample
    monkeypatch.setattr(sweep, "FOLD_GROUP_SYMBOLS", 8)
    request = make_request(tmp_path, symbols_per_chunk=16,
                           walk_forward={"train_bars": 400, "test_bars": 200})
    alone = bp.sweep_stage(prepared, request, CPU)
    wf_alone = bp.walk_forward_stage(prepared, request, CPU)
    with open_client(kind, workers=2) as (client, info):
        assert info["workers"] == (2 if kind == "processes" else 1)
        sharded = bp.sweep_stage(prepared, request, CPU, client)
        wf_sharded = bp.walk_forward_stage(prepared, request, CPU, client)
    assert sharded.chunks["tasks"] == 4
    assert_same(alone, sharded)
    np.testing.assert_array_equal(wf_alone.chosen, wf_sharded.chosen)
    for m in METRICS:
        np.testing.assert_array_equal(wf_alone.out_of_sample[m], wf_sharded.out_of_sample[m])


def test_symbols_per_task_auto():
    one = bp.symbols_per_task(n_symbols=50, n_bars=1259, work_per_symbol=1259 * 174, setting="auto", threads=1)
    assert one == 50
    many = bp.symbols_per_task(n_symbols=5000, n_bars=2520, work_per_symbol=2520 * 1000, setting="auto", threads=1)
    assert many % bp.fold_group_size(5000) == 0 and many < 5000
    spread = bp.symbols_per_task(n_symbols=5000, n_bars=2520, work_per_symbol=2520 * 10, setting="auto", threads=8)
    assert spread <= 5000 / 16 + bp.fold_group_size(5000)
    assert bp.fold_group_size(50) == 64 and bp.fold_group_size(100_000) == 1563


# --- the portfolio -----------------------------------------------------------------------------

def hand_bars(tmp_path):
    """3 symbols: B starts late, C misses bar 2; each bar opens at the previous close."""
    closes = {"A": [10.0, 11.0, 12.1, 11.0, 12.0], "B": [None, None, 20.0, 21.0, 19.95],
              "C": [5.0, 5.5, None, 6.05, 6.0]}
    ts = pd.date_range("2024-01-01", periods=5, freq="D")
    rows = []
    for sym, cs in closes.items():
        prev = None
        for t, c in zip(ts, cs):
            if c is None:
                continue
            o = prev if prev is not None else c
            rows.append({"timestamp": t, "symbol": sym, "open": o, "high": max(o, c) * 1.01,
                         "low": min(o, c) * 0.99, "close": c, "volume": 1000.0})
            prev = c
    path = tmp_path / "hand.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path, closes


ALWAYS_LONG = custom_strategy("always_long", lambda panel: np.ones_like(panel["close"]), params={})


def test_portfolio_return_is_the_mean_of_symbol_returns(tmp_path):
    """Always long from bar 1's open (= bar 0's close): each symbol's strategy return is its close
    to close return over its own bars, and the portfolio's is their mean at each timestamp."""
    path, closes = hand_bars(tmp_path)
    request = make_request(tmp_path, {}, data=path, strategy=ALWAYS_LONG, data_columns={})
    loaded = bp.load_stage(request, CPU)
    prepared = bp.panel_stage(loaded.bars, CPU)
    sweep = bp.sweep_stage(prepared, request, CPU)
    a, b, c = (np.array(closes[s], dtype=float) for s in "ABC")
    expected = [np.nan,
                np.mean([a[1] / a[0] - 1, c[1] / c[0] - 1]),
                np.mean([a[2] / a[1] - 1]),                       # B's first bar, C's gap
                np.mean([a[3] / a[2] - 1, b[3] / b[2] - 1, c[3] / c[1] - 1]),
                np.mean([a[4] / a[3] - 1, b[4] / b[3] - 1, c[4] / c[3] - 1])]
    np.testing.assert_allclose(sweep.portfolio_returns[:, 0], expected, rtol=1e-12)
    assert sweep.portfolio_counts[:, 0].tolist() == [0, 2, 1, 3, 3]
    total = np.prod(1 + np.array(expected[1:])) - 1
    assert sweep.portfolio_metrics["total_return"][0] == pytest.approx(total, rel=1e-12)
    np.testing.assert_allclose(sweep.metrics["total_return"][0], [a[4] / a[0] - 1, b[4] / b[2] - 1, c[4] / c[0] - 1],
                               rtol=1e-12)
    # the same through a window: bars 1..3 only, a fresh start at bar 1
    wf_request = replace(request, config=make_config(data_columns={}, walk_forward={
        "train_bars": 3, "test_bars": 2}))
    wf = bp.walk_forward_stage(prepared, wf_request, CPU)
    assert wf.windows == [(0, 3, 3, 5)]
    np.testing.assert_allclose(wf.out_of_sample["total_return"][0, 0], [a[4] / a[3] - 1, b[4] / b[3] - 1,
                                                                         c[4] / c[3] - 1], rtol=1e-12)


# --- walk-forward ------------------------------------------------------------------------------

def test_walk_forward_never_uses_out_of_sample_data_to_choose(sample, tmp_path):
    _, prepared = sample
    request = make_request(tmp_path, walk_forward={"train_bars": 300, "test_bars": 150})
    before = bp.walk_forward_stage(prepared, request, CPU)
    assert len(before.windows) == 6
    cut = before.windows[0][1]  # end of the first in-sample window
    rng = np.random.default_rng(0)
    later = prepared.rows >= cut
    factor = rng.uniform(0.8, 1.25, prepared.rows.shape)
    prices = {k: (np.where(later, v * factor, v) if k != "volume" else v) for k, v in prepared.prices.items()}
    perturbed = replace(prepared, prices={k: np.asfortranarray(v) for k, v in prices.items()})
    after = bp.walk_forward_stage(perturbed, request, CPU)
    for select in ("per_symbol", "median"):
        metric = before.in_sample["sharpe"][:1]
        np.testing.assert_array_equal(choose_combinations(metric, select=select),
                                      choose_combinations(after.in_sample["sharpe"][:1], select=select))
    np.testing.assert_array_equal(before.chosen[0], after.chosen[0])
    for m in METRICS:
        np.testing.assert_array_equal(before.in_sample[m][0], after.in_sample[m][0])
    assert not np.array_equal(before.out_of_sample["total_return"][0], after.out_of_sample["total_return"][0],
                              equal_nan=True)


# --- the report --------------------------------------------------------------------------------

def test_report_files_are_present_and_consistent(tmp_path):
    request = make_request(tmp_path, "fast=5:25:10;slow=20:60:20", top_n=3, commission_bps=5,
                           walk_forward={"train_bars": 504, "test_bars": 252, "select": "median"})
    result = bp.run_backtest_pipeline(request)
    out = result.out_dir
    assert sorted(p.name for p in out.iterdir()) == sorted([
        "backtest_metrics.parquet", "backtest_summary.parquet", "equity.parquet", "best_equity_by_symbol.parquet",
        "sharpe_heatmap.png", "walk_forward.parquet", "rejected.parquet", "manifest.json", "summary.md",
        "summary.html"])
    manifest = json.loads((out / "manifest.json").read_text())
    n_comb = len(request.plan.combos)
    assert manifest["grid"]["size"] == 9 and manifest["grid"]["skipped"] == 9 - n_comb
    assert manifest["grid"]["skipped_by_reason"] == {"fast >= slow": 9 - n_comb}
    assert manifest["pipeline"] == "backtest" and manifest["config_hash"] == request.config.hash()
    assert manifest["input"]["rows_rejected"] == 16 and manifest["input"]["symbols"] == 50
    assert manifest["chunks"]["tasks"] >= 1 and manifest["cluster"]["kind"] == "in-process"
    assert {"load_validate", "panel", "sweep", "walk_forward", "report_tables"} <= set(manifest["stages"])
    assert manifest["files"]["sharpe_heatmap.png"]["bytes"] > 1000
    assert (out / "sharpe_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    metrics = pd.read_parquet(out / "backtest_metrics.parquet")
    summary = pd.read_parquet(out / "backtest_summary.parquet")
    assert list(metrics.columns[:5]) == ["symbol", "strategy", "combo_id", "fast", "slow"]
    assert list(metrics.columns[5:]) == list(METRICS)
    assert len(metrics) == 50 * n_comb and len(summary) == n_comb
    by_combo = metrics.groupby("combo_id")
    np.testing.assert_allclose(summary["median_sharpe"], by_combo["sharpe"].median(), rtol=1e-12)
    np.testing.assert_allclose(summary["total_trades"], by_combo["trades"].sum())
    assert sorted(summary["rank"]) == list(range(1, n_comb + 1))
    best = summary.sort_values("rank").iloc[0]
    assert best["portfolio_sharpe"] == summary["portfolio_sharpe"].max()

    equity = pd.read_parquet(out / "equity.parquet")
    assert sorted(equity["rank"].unique()) == [1, 2, 3] and len(equity) == 3 * manifest["input"]["timestamps"]
    last = equity.groupby("combo_id")["portfolio_equity"].last()
    for combo_id, value in last.items():
        row = summary.set_index("combo_id").loc[combo_id]
        assert value == pytest.approx(1 + row["portfolio_total_return"], rel=1e-12)
    per_symbol = pd.read_parquet(out / "best_equity_by_symbol.parquet")
    assert (per_symbol["combo_id"] == best["combo_id"]).all() and per_symbol["symbol"].nunique() == 50
    final = per_symbol.groupby("symbol")["equity"].last()
    ret = metrics[metrics["combo_id"] == best["combo_id"]].set_index("symbol")["total_return"]
    np.testing.assert_allclose(final.sort_index(), 1 + ret.sort_index(), rtol=1e-12)

    wf = pd.read_parquet(out / "walk_forward.parquet")
    assert len(wf) == 50 * manifest["walk_forward"]["windows"] == 50 * 2
    assert wf.groupby("window")["combo_id"].nunique().max() == 1  # median: one combination a window
    assert {"is_sharpe", "oos_sharpe", "is_total_return", "oos_total_return"} <= set(wf.columns)
    assert (wf["oos_start"] > wf["is_end"]).all()

    text = (out / "summary.md").read_text()
    assert "Top combinations" in text and "skipped as invalid (fast >= slow" in text and "Walk-forward" in text
