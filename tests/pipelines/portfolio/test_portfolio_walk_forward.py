"""The portfolio pipeline with ``portfolio.walk_forward`` set, end to end on the bundled sample:
the report's walk-forward tables, summary lines and HTML section, the config's errors, reruns."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from alphapulse.pipelines.config import parse_config
from alphapulse.pipelines.errors import ConfigError
from alphapulse.pipelines.portfolio.pipeline import prepare_portfolio, run_portfolio
from alphapulse.pipelines.portfolio.report import _weights_over_time
from alphapulse.transforms.backtest.returns_metrics import metrics_from_returns
from tests.pipelines.conftest import SAMPLE

FAST = {"regimes": {"n_init": 2}, "monte_carlo": {"n_paths": 1000, "models": ["normal"]},
        "lookback_bars": 504, "min_history_bars": 200}
WF = {"train_bars": 252, "rebalance": "quarter_end", "holdings": "drift", "cost_bps": 10, "top_holdings": 5}
WF_TABLES = ("rebalance_weights.parquet", "wf_returns.parquet", "wf_metrics.parquet", "wf_fallbacks.parquet")


def _config(wf=WF, **portfolio):
    base = yaml.safe_load(open(SAMPLE.parents[1] / "pipelines" / "config" / "default_config.yaml"))
    base["portfolio"] = {**base["portfolio"], **FAST, "walk_forward": wf, **portfolio}
    return parse_config(base)


def _run(out, **kw):
    return run_portfolio(prepare_portfolio(_config(**kw), data_path=str(SAMPLE), out_dir=str(out), backend="cpu"))


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("pwf") / "rep")


def test_walk_forward_tables_written(report):
    for name in WF_TABLES:
        assert (report.out_dir / name).exists(), name
    w = pd.read_parquet(report.out_dir / "rebalance_weights.parquet")
    assert list(w.columns) == ["date", "method", "symbol", "weight"]
    sums = w.groupby(["date", "method"])["weight"].sum()
    assert (sums.sub(1).abs() < 1e-12).all()
    methods = set(w["method"])
    assert methods == {"min_variance", "max_sharpe", "hrp", "risk_parity", "black_litterman", "ensemble",
                       "equal_weight", "buy_and_hold"}
    # quarter ends: each rebalance date opens a quarter
    dates = pd.DatetimeIndex(sorted(w.loc[w["method"] == "hrp", "date"].unique()))
    assert len(dates) > 5 and dates.to_period("Q").is_unique


def test_metrics_are_the_backtest_modules(report):
    r = pd.read_parquet(report.out_dir / "wf_returns.parquet")
    m = pd.read_parquet(report.out_dir / "wf_metrics.parquet").set_index("method")
    for method, g in r.groupby("method"):
        ref = metrics_from_returns(g["return"].to_numpy()[:, None], periods_per_year=252)
        for k in ("sharpe", "sortino", "cagr", "max_drawdown", "calmar", "ann_volatility"):
            assert m.loc[method, k] == pytest.approx(float(ref[k][0]), rel=1e-15, abs=1e-15), (method, k)
        assert m.loc[method, "turnover"] == pytest.approx(g["turnover"].sum(), rel=1e-15)
        assert m.loc[method, "costs_paid"] == pytest.approx(g["cost"].sum(), rel=1e-15)
        assert (g["cost"] - g["turnover"] * 10e-4).abs().max() < 1e-18
    assert m.loc["buy_and_hold", "rebalances"] == 1 and m.loc["buy_and_hold", "turnover"] == pytest.approx(1.0)


def test_summary_html_and_manifest(report):
    md = (report.out_dir / "summary.md").read_text()
    assert "## Walk-forward (out of sample, after costs)" in md and "quarter end" in md
    html = (report.out_dir / "summary.html").read_text()
    assert "Walk-forward: out of sample, after costs" in html and "walk-forward equity" in html
    man = json.loads((report.out_dir / "manifest.json").read_text())
    assert man["walk_forward"]["rebalance"] == "quarter_end" and "walk_forward" in man["stages"]
    assert man["walk_forward"]["best_method"] in {"min_variance", "max_sharpe", "hrp", "risk_parity",
                                                  "black_litterman", "ensemble"}
    fb = pd.read_parquet(report.out_dir / "wf_fallbacks.parquet")
    assert list(fb.columns) == ["date", "method", "step", "tried", "status", "reason"]
    assert (fb.groupby(["date", "method"])["status"].last() == "ok").all()


def test_existing_outputs_unchanged_without_walk_forward(report, tmp_path):
    plain = _run(tmp_path / "plain", wf=None)
    for name in WF_TABLES:
        assert not (plain.out_dir / name).exists()
    a = pd.read_parquet(plain.out_dir / "weights.parquet")
    b = pd.read_parquet(report.out_dir / "weights.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_rerun_is_byte_identical(report, tmp_path):
    again = _run(tmp_path / "again")
    for name in WF_TABLES:
        assert (again.out_dir / name).read_bytes() == (report.out_dir / name).read_bytes(), name


def test_weights_chart_groups_the_rest_as_other():
    w = pd.DataFrame({"date": np.repeat(pd.to_datetime(["2020-01-02", "2020-04-01"]), 500), "method": "hrp",
                      "symbol": np.tile([f"S{i:03d}" for i in range(500)], 2), "weight": 1 / 500})
    w.loc[w["symbol"] == "S007", "weight"] += 0.01
    area = _weights_over_time(w, "hrp", 10)
    assert area.shape == (2, 11) and area.columns[0] == "S007" and area.columns[-1] == "other"
    assert np.allclose(area.sum(axis=1), w.groupby("date")["weight"].sum().to_numpy())


@pytest.mark.parametrize("wf,key", [
    ({"train_bars": 1}, "train_bars"),
    ({"rebalance": "weekly"}, "rebalance"),
    ({"rebalance": "band", "holdings": "constant"}, "holdings"),
    ({"cost_bps": 5000}, "cost_bps"),
    ({"band": 0}, "band"),
    ({"rebalance_bars": 0}, "rebalance_bars"),
    ({"train_bars": 10 ** 9}, "train_bars"),
])
def test_bad_walk_forward_config_names_the_key(wf, key):
    with pytest.raises(ConfigError) as err:
        _config(wf=wf)
    msg = str(err.value)
    assert "\n" not in msg and f"portfolio.walk_forward.{key}" in msg


def test_train_bars_below_min_history_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="portfolio.walk_forward.train_bars"):
        prepare_portfolio(_config(wf={"train_bars": 100}), data_path=str(SAMPLE), out_dir=str(tmp_path / "x"),
                          backend="cpu")
