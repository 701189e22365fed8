"""Strategies of one's own: the protocol's signal path gives the built-in rule's numbers, a
strategy is found by module reference, by the config and by entry point, and one that breaks the
protocol (looks ahead, wrong shape, raises) is a one-line error naming it."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from alphapulse.pipelines.backtest import prepare_backtest, resolve_strategy, run_backtest_pipeline
from alphapulse.pipelines.config import parse_config
from alphapulse.pipelines.errors import GridError
from alphapulse.transforms.backtest.strategies import STRATEGIES, StrategyError, check_strategy, signal_strategy
from tests.pipelines.conftest import ROOT, SAMPLE, SP500_COLUMNS

GRID = "fast=5:20:5,slow=30:60:30"
TABLES = ("backtest_metrics.parquet", "backtest_summary.parquet", "equity.parquet", "best_equity_by_symbol.parquet",
          "walk_forward.parquet")


def _run(tmp_path, name, strategy, **backtest):
    cfg = parse_config({"data": {"columns": SP500_COLUMNS}, "backtest": {"direction": "both", **backtest}})
    request = prepare_backtest(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / name), strategy=strategy,
                               grid=GRID, backend="cpu", cluster=None)
    return run_backtest_pipeline(request)


def test_a_signal_strategy_equal_to_sma_cross_gives_its_report(tmp_path):
    """The built-in rule through the fused kernel and the same rule written as a signal (the
    example's ``sma_cross_signal``) trade alike: every table equal, but for the strategy's name."""
    rule = _run(tmp_path, "rule", "sma_cross", walk_forward={"train_bars": 504, "test_bars": 252})
    signal = _run(tmp_path, "signal", "examples.strategies:sma_cross_signal",
                  walk_forward={"train_bars": 504, "test_bars": 252})
    assert signal.manifest["strategy"] == "sma_cross_signal"
    for name in TABLES:
        a = pd.read_parquet(rule.out_dir / name)
        b = pd.read_parquet(signal.out_dir / name)
        if "strategy" in a:
            assert set(a.pop("strategy")) == {"sma_cross"} and set(b.pop("strategy")) == {"sma_cross_signal"}
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=name)


def test_a_user_rule_equal_to_sma_cross_gives_byte_identical_tables(tmp_path):
    """``examples.strategies:sma_cross_rule`` is ``sma_cross`` written by a user with the protocol."""
    builtin = _run(tmp_path, "builtin", "sma_cross", walk_forward={"train_bars": 504, "test_bars": 252})
    mine = _run(tmp_path, "mine", "examples.strategies:sma_cross_rule",
                walk_forward={"train_bars": 504, "test_bars": 252})
    assert mine.manifest["strategy_ref"] == "examples.strategies:sma_cross_rule"
    for name in (*TABLES, "sharpe_heatmap.png"):
        assert (builtin.out_dir / name).read_bytes() == (mine.out_dir / name).read_bytes(), name


def test_the_example_strategy_runs_from_the_cli_and_the_config(tmp_path, capsys):
    from alphapulse.flows.cli.dispatch import main

    argv = ["backtest", "--data", str(SAMPLE), "--out", str(tmp_path / "cli"), "--backend", "cpu", "--no-prefect",
            "--strategy", "examples.strategies:trend_pullback", "--grid", "trend=50:150:50,entry=30,40"]
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"data": {"columns": SP500_COLUMNS}}))
    assert main([*argv, "--config", str(cfg)]) == 0, capsys.readouterr().err
    summary = pd.read_parquet(tmp_path / "cli" / "backtest_summary.parquet")
    assert len(summary) == 6 and set(summary["strategy"]) == {"trend_pullback"}
    assert summary["total_trades"].sum() > 0 and summary["portfolio_sharpe"].notna().sum() >= 5  # one never trades
    # the config names it, with its grid
    cfg.write_text(json.dumps({"data": {"columns": SP500_COLUMNS},
                               "backtest": {"strategy": "examples.strategies:trend_pullback",
                                            "grid": {"trend": [100], "entry": "30:40:10"}}}))
    assert main(["backtest", "--data", str(SAMPLE), "--out", str(tmp_path / "cfg"), "--backend", "cpu",
                 "--no-prefect", "--config", str(cfg)]) == 0
    manifest = json.loads((tmp_path / "cfg" / "manifest.json").read_text())
    assert manifest["grid"]["source"] == "config" and manifest["grid"]["size"] == 2


@pytest.mark.parametrize("ref, message", [
    ("examples.strategies:peeking", "strategy peeking: looks ahead: its position at bar 60"),
    ("examples.strategies:nothing", "module 'examples.strategies' has no 'nothing'"),
    ("no_such_package.mod:thing", "cannot import 'no_such_package.mod'"),
    ("sma_cros", "unknown strategy 'sma_cros' (did you mean 'sma_cross'?)"),
    ("examples.strategies:_cross", "is not a Strategy"),
])
def test_a_strategy_that_breaks_the_protocol_is_one_line(ref, message, tmp_path, capsys):
    from alphapulse.flows.cli.dispatch import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"data": {"columns": SP500_COLUMNS}}))
    assert main(["backtest", "--data", str(SAMPLE), "--out", str(tmp_path / "r"), "--no-prefect", "--config",
                 str(cfg), "--strategy", ref]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alphapulse: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()


def test_signal_errors_name_the_strategy_and_the_combination():
    shape = signal_strategy("short", lambda panel, k: panel["close"][:-1], params={"k": int}, defaults={"k": 1})
    with pytest.raises(StrategyError, match=r"strategy short: its signal returned shape \(179, 3\) on \{'k': 1\}"):
        check_strategy(shape)
    boom = signal_strategy("boom", lambda panel: panel["nope"], params={})
    with pytest.raises(StrategyError, match="strategy boom: its signal raised on {}: KeyError: 'nope'"):
        check_strategy(boom)
    no_default = signal_strategy("nd", lambda panel, k: panel["close"], params={"k": int})
    with pytest.raises(StrategyError, match=r"no default for parameter\(s\) \['k'\]"):
        check_strategy(no_default)
    bad_indicator = signal_strategy("bi", lambda panel: panel["close"], params={},
                                    indicators=lambda c: {"x": ("smaa", {"period": 5}, "sma")})
    with pytest.raises(StrategyError, match="unknown indicator 'smaa'"):
        check_strategy(bad_indicator)
    with pytest.raises(GridError, match="grid parameter 'k': not a parameter of sma_cross"):
        prepare_backtest(parse_config({"data": {"columns": SP500_COLUMNS}}), data_path=str(SAMPLE), out_dir="x",
                         strategy=STRATEGIES["sma_cross"], grid={"k": [1]})


def test_the_built_ins_keep_the_protocol_and_resolve_to_themselves():
    for name, strategy in STRATEGIES.items():
        assert check_strategy(strategy) is strategy and resolve_strategy(name) is strategy


def test_a_signal_runs_on_the_arrays_namespace(xp):
    """The example's signal is the same function on NumPy and CuPy (the panels' namespace)."""
    from examples.strategies import trend_pullback

    from tests.conftest import host

    rng = np.random.default_rng(3)
    close = 100 + np.cumsum(rng.normal(size=(50, 4)), axis=0)
    panel = {"close": xp.asarray(close), "trend": xp.asarray(close - 1.0), "rsi": xp.asarray(np.full((50, 4), 35.0))}
    out = host(trend_pullback.targets(panel, trend=10, rsi_period=14, entry=40.0))
    np.testing.assert_array_equal(out, np.ones((50, 4)))


def test_an_entry_point_strategy_is_found_in_a_fresh_process(tmp_path):
    """A package registering ``[alphapulse.strategies] pullback = examples.strategies:trend_pullback``:
    ``--strategy pullback`` finds it (real importlib.metadata, a real dist-info on sys.path)."""
    dist = tmp_path / "site" / "my_strategies-0.1.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-strategies\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[alphapulse.strategies]\npullback = examples.strategies:trend_pullback\n")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"data": {"columns": SP500_COLUMNS}, "backtest": {"strategy": "pullback"}}))
    env = {"PYTHONPATH": f"{tmp_path / 'site'}:{ROOT}", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    argv = [sys.executable, "-m", "alphapulse.flows.cli.dispatch", "backtest", "--data", str(SAMPLE),
            "--out", str(tmp_path / "r"), "--no-prefect", "-q", "--backend", "cpu", "--config", str(cfg)]
    proc = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "r" / "manifest.json").read_text())["strategy"] == "trend_pullback"
