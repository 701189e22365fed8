"""The daily run's signals and breadth (``alphapulse.pipelines.daily.signals``), end to end on the
bundled S&P 500 sample.

- Signals against the engine: the daily run over the sample without its last day says, for each
  symbol and parameter set, the position the backtest engine holds at that last day when it runs
  over the whole sample (``run_backtest(positions_out=...)``, the report's execution settings).
- From a backtest report: its top combinations by rank, its execution settings, and each symbol's
  record equal to what its parquet files hold.
- A partitioned run, a store run and a rerun give the same tables; bad ``signals:`` blocks are
  one-line config errors; the page shows the sections, escaped.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml

from alphapulse.pipelines.backtest import prepare_backtest, run_backtest_pipeline
from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from alphapulse.pipelines.daily.report import _chart_svg
from alphapulse.pipelines.data.load import inspect_input, load_bars
from alphapulse.pipelines.data.panel import bars_to_panel
from alphapulse.pipelines.errors import ConfigError
from alphapulse.transforms.backtest.engine import compact_bars, indicator_bank, run_backtest
from alphapulse.transforms.backtest.strategies import PRICES, STRATEGIES
from tests.pipelines.conftest import ROOT, SAMPLE

BASE = yaml.safe_load((ROOT / "pipelines" / "config" / "default_config.yaml").read_text())


def _config(**signals):
    return parse_config({**BASE, "signals": {**BASE["signals"], **signals}})


def _daily(tmp_path, name, config=None, data=SAMPLE, **kw):
    return run_daily(prepare_daily(config or load_config(), data_path=str(data), out_dir=str(tmp_path / name),
                                   backend="cpu", **kw))


@pytest.fixture(scope="module")
def sample_bars():
    config = load_config()
    return load_bars(inspect_input(str(SAMPLE), columns=config.data.columns), lib=pd).bars


@pytest.fixture(scope="module")
def without_last_day(tmp_path_factory):
    raw = pd.read_parquet(SAMPLE)
    path = tmp_path_factory.mktemp("cut") / "bars.parquet"
    raw[raw["date"] < raw["date"].max()].to_parquet(path, index=False)
    return path


@pytest.fixture(scope="module")
def backtest_report(tmp_path_factory):
    cfg = {**BASE, "backtest": {**BASE["backtest"], "strategy": "sma_cross", "grid": {"fast": [5, 10, 20],
                                                                                     "slow": [30, 50]},
                                "direction": "both", "commission_bps": 5.0,
                                "walk_forward": {"train_bars": 504, "test_bars": 126}}}
    out = tmp_path_factory.mktemp("bt") / "report"
    run_backtest_pipeline(prepare_backtest(parse_config(cfg), data_path=str(SAMPLE), out_dir=str(out), backend="cpu"))
    return out


def _engine_positions(bars: pd.DataFrame, strategy: str, combo: dict, engine: dict) -> pd.Series:
    """The engine's position at each symbol's last bar over ``bars`` (the oracle)."""
    panel = bars_to_panel(bars, fields=PRICES, order="F")
    prices, n, rows = compact_bars(panel.fields, fields=PRICES)
    plan = STRATEGIES[strategy].plan([combo])
    bank = indicator_bank(plan.bank, prices, n)
    n_rows, n_sym = panel.shape
    held = np.full((n_rows, n_sym), np.nan)
    run_backtest(prices, n, bank=bank, legs=plan.legs, levels=plan.levels, mode=plan.mode, rows=rows,
                 n_rows_out=n_rows, positions_out=held, **engine)
    last = rows[n - 1, np.arange(n_sym)]
    return pd.Series(held[last, np.arange(n_sym)], index=np.asarray(panel.symbols, dtype=object))


def test_signals_are_what_the_engine_holds_after_the_next_bar(tmp_path, without_last_day, sample_bars):
    result = _daily(tmp_path, "cut", data=without_last_day)
    signals = result.signals
    last_day = sample_bars["timestamp"].max()
    trading = set(sample_bars.loc[sample_bars["timestamp"] == last_day, "symbol"])
    engine = {"direction": "long", "trade_on": "open", "size_fraction": 1.0, "commission_bps": 0.0,
              "slippage_bps": 0.0, "stop_loss": 0.0, "take_profit": 0.0}
    compared = 0
    for entry in BASE["signals"]["strategies"]:
        strategy = entry["strategy"]
        combo = {k: STRATEGIES[strategy].params[k](v) for k, v in {**STRATEGIES[strategy].defaults,
                                                                   **entry["params"]}.items()}
        oracle = _engine_positions(sample_bars, strategy, combo, engine)
        ours = signals[signals["strategy"] == strategy].set_index("symbol")
        for sym in sorted(trading & set(ours.index)):
            assert ours.loc[sym, "position"] == oracle[sym], (strategy, sym)
            compared += 1
        acts = ours["action"]
        now = (acts == "hold") | (acts == "exit")
        assert ((ours["position"] != 0) == acts.isin(["enter", "hold"])).all()
        assert (ours.loc[acts == "enter", "since"] == ours.loc[acts == "enter", "timestamp"]).all()
        assert (ours.loc[now, "since"] <= ours.loc[now, "timestamp"]).all()
    assert compared >= 90
    assert set(signals["action"]) >= {"hold", "flat"}
    assert list(signals.columns[:4]) == ["timestamp", "symbol", "strategy", "combo"]
    assert {"fast", "slow", "period", "lower", "upper", "position", "action", "since"} <= set(signals.columns)
    assert str(signals["fast"].dtype) == "Int64" and str(signals["lower"].dtype) == "Float64"


def test_from_a_backtest_report_its_top_combinations_and_their_record(tmp_path, backtest_report):
    config = _config(strategies=[], from_report=str(backtest_report), top=3)
    result = _daily(tmp_path, "rep", config)
    signals, manifest = result.signals, result.manifest
    bt = json.loads((backtest_report / "manifest.json").read_text())
    summary = pd.read_parquet(backtest_report / "backtest_summary.parquet").sort_values("rank").head(3)
    assert manifest["signals"]["report"]["run_id"] == bt["run_id"]
    assert manifest["signals"]["report"]["execution"]["direction"] == "both"
    assert manifest["signals"]["sets"][0]["report_combo_ids"] == summary["combo_id"].tolist()
    assert sorted(signals["report_rank"].unique()) == [1, 2, 3] and set(signals["source"]) == {"report"}
    assert (signals["position"] == -1).any()  # the report's direction (both), not the config's (long)
    metrics = pd.read_parquet(backtest_report / "backtest_metrics.parquet")
    wf = pd.read_parquet(backtest_report / "walk_forward.parquet")
    for (_, row), rank in zip(summary.iterrows(), (1, 2, 3)):
        ours = signals[signals["report_rank"] == rank].set_index("symbol")
        assert (ours["fast"] == row["fast"]).all() and (ours["slow"] == row["slow"]).all()
        mine = metrics[metrics["combo_id"] == row["combo_id"]].set_index("symbol")
        np.testing.assert_array_equal(ours["bt_sharpe"].to_numpy(), mine.loc[ours.index, "sharpe"].to_numpy())
        chosen = wf[wf["combo_id"] == row["combo_id"]]
        for sym, g in chosen.groupby("symbol"):
            assert ours.loc[sym, "oos_windows"] == len(g)
            np.testing.assert_allclose(ours.loc[sym, "oos_total_return"], np.prod(1 + g["oos_total_return"]) - 1,
                                       rtol=1e-12)
            np.testing.assert_allclose(ours.loc[sym, "oos_sharpe"], g["oos_sharpe"].mean(), rtol=1e-12)
        assert (ours.loc[~ours.index.isin(chosen["symbol"]), "oos_windows"] == 0).all()
    md = (result.out_dir / "summary.md").read_text()
    assert bt["run_id"] in md


def test_the_cli_takes_a_report_folder(tmp_path, backtest_report):
    from alphapulse.flows.cli.dispatch import main

    assert main(["daily", "--no-prefect", "-q", "--data", str(SAMPLE), "--out", str(tmp_path / "r"),
                 "--signals-from", str(backtest_report)]) == 0
    m = json.loads((tmp_path / "r" / "manifest.json").read_text())
    assert m["config"]["signals"]["from_report"] == str(backtest_report)
    assert {s["source"] for s in m["signals"]["sets"]} == {"config", "report"}


def test_partitions_store_and_reruns_give_the_same_tables(tmp_path, without_last_day):
    whole = _daily(tmp_path, "whole")
    again = _daily(tmp_path, "again")
    for name in ("signals.parquet", "breadth.parquet"):
        assert (whole.out_dir / name).read_bytes() == (again.out_dir / name).read_bytes(), name
    parts = _daily(tmp_path, "parts", parse_config({**BASE, "data": {**BASE["data"], "bars_per_partition": 20000}}))
    assert parts.manifest["output"]["partitions"] > 1
    pd.testing.assert_frame_equal(parts.signals, whole.signals)
    pd.testing.assert_frame_equal(parts.breadth, whole.breadth)
    store = tmp_path / "store"
    _daily(tmp_path, "s1", data=without_last_day, store=store)
    stored = _daily(tmp_path, "s2", store=store)  # the whole history again: the last day appended
    pd.testing.assert_frame_equal(stored.signals, whole.signals)


def test_a_store_run_given_only_the_day_signals_from_the_stored_bars(tmp_path, without_last_day):
    """The scheduled case: the input holds the new day only. The signals and breadth read each symbol's
    history from the store's bars and equal the whole run's, in groups of whole symbols as small as
    the config's partitions."""
    raw = pd.read_parquet(SAMPLE)
    day = tmp_path / "day.parquet"
    raw[raw["date"] == raw["date"].max()].to_parquet(day, index=False)
    whole = _daily(tmp_path, "whole")
    small = parse_config({**BASE, "data": {**BASE["data"], "bars_per_partition": 20000}})  # 50 symbols: 4 groups
    for config, name in ((None, "default"), (small, "small")):
        store = tmp_path / f"store-{name}"
        _daily(tmp_path, f"{name}-1", config, data=without_last_day, store=store)
        result = _daily(tmp_path, f"{name}-2", config, data=day, store=store)
        assert result.manifest["incremental"]["bars_computed"] == 50
        assert result.manifest["signals"]["skipped"] == {}
        pd.testing.assert_frame_equal(result.signals, whole.signals)
        pd.testing.assert_frame_equal(result.breadth, whole.breadth)
        assert (result.out_dir / "signals.parquet").read_bytes() == (whole.out_dir / "signals.parquet").read_bytes()


def test_a_store_without_bars_says_which_symbols_have_no_signal(tmp_path, without_last_day):
    """A store written before it kept bars (simulated: its bar files taken out of the manifest) cannot
    complete a history: those symbols are listed with the reason, never dropped silently."""
    raw = pd.read_parquet(SAMPLE)
    day = tmp_path / "day.parquet"
    raw[raw["date"] == raw["date"].max()].to_parquet(day, index=False)
    store = tmp_path / "store"
    _daily(tmp_path, "s1", data=without_last_day, store=store)
    manifest_path = store / "data" / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest.pop("bars"):
        (store / "data" / entry["path"]).unlink()
    manifest_path.write_text(json.dumps(manifest))
    result = _daily(tmp_path, "s2", data=day, store=store)
    skipped = result.manifest["signals"]["skipped"]
    assert len(skipped) == 50 and "the store holds 1 of its" in next(iter(skipped.values()))
    assert len(result.signals) == 0
    assert "without one" in " ".join(__import__("alphapulse.pipelines.daily.report", fromlist=["x"])
                                     .cli_lines(result.manifest, result.out_dir))


@pytest.mark.parametrize("signals, match", [
    ({"strategies": [{"strategy": "sma_cross", "params": {"fast": 50, "slow": 20}}]}, "fast >= slow"),
    ({"strategies": [{"strategy": "sma_cross", "params": {"fst": 5}}]}, "no parameter 'fst'"),
    ({"strategies": [{"strategy": "sma_crosss"}]}, "did you mean 'sma_cross'"),
    ({"strategies": [{"strategy": "examples.strategies:peeking"}]}, "looks ahead"),
    ({"strategies": [{"strategy": "sma_cross"}] * 99, "from_report": "x", "top": 3}, "at most 100"),
    ({"from_report": "/nonexistent/report"}, "no manifest.json"),
])
def test_bad_signals_blocks_are_one_line_errors(tmp_path, signals, match):
    with pytest.raises(ConfigError, match=match) as err:
        prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(tmp_path / "r"), backend="cpu",
                      signals=signals)
    assert "\n" not in str(err.value) and "signals" in str(err.value)


def test_a_daily_report_is_not_a_backtest_report(tmp_path):
    daily = _daily(tmp_path, "d")
    with pytest.raises(ConfigError, match="not a backtest report"):
        prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(tmp_path / "r"),
                      signals_from=str(daily.out_dir))


def test_the_page_leads_with_signals_and_breadth(tmp_path):
    result = _daily(tmp_path, "page", _config(charts=5))
    page = (result.out_dir / "summary.html").read_text()
    first = {k: page.index(k) for k in ("Signals for the bar after", "Market breadth", "Indicator snapshot")}
    assert first["Signals for the bar after"] < first["Market breadth"] < first["Indicator snapshot"]
    moves = result.signals[result.signals["action"].isin(["enter", "exit"])]
    charts = min(5, len(moves))
    assert charts and page.count("<h3>The top") == 1
    # breadth's three; per chart the closes and, for an indicator out of the price's range (RSI), a strip
    assert 3 + charts <= page.count("<svg") <= 3 + 2 * charts
    assert 'href="signals.parquet"' in page and 'href="indicators.parquet"' in page
    md = (result.out_dir / "summary.md").read_text()
    assert "## Signals for the bar after" in md and "## Market breadth" in md


def test_charts_escape_what_they_show():
    chart = {"symbol": "<script>x</script>", "strategy": "s&p", "combo": 'a="1"', "action": "enter",
             "timestamps": pd.date_range("2024-01-01", periods=5).values, "close": np.arange(5.0) + 10,
             "held": np.array([0, 0, 1, 1, 0.0]), "position": 1, "record": 0.5,
             "lines": [("<b>sma</b>", "sma", np.arange(5.0) + 9.5),
                       ("rsi_14", "rsi", np.array([np.nan, 40, 50, 60, 70.0]))]}
    svg = _chart_svg(chart)
    assert "<script" not in svg and "<b>" not in svg and "&lt;script&gt;" in svg
    assert svg.count("<svg") == 2  # the price panel, and the RSI below it (not in the price's range)
    assert "enter long" in svg and "exit" in svg


def test_a_strategy_of_ones_own_signals_as_the_built_in_it_copies(tmp_path):
    """``examples.strategies:sma_cross_signal`` is ``sma_cross`` written as a signal: the same rows."""
    params = {"fast": 10, "slow": 30}
    config = _config(strategies=[{"strategy": "examples.strategies:sma_cross_signal", "params": params},
                                 {"strategy": "sma_cross", "params": params}])
    signals = _daily(tmp_path, "own", config).signals
    names = list(dict.fromkeys(signals["strategy"]))
    assert len(names) == 2 and names[1] == "sma_cross"
    cols = ["symbol", "combo", "position", "action", "since"]
    mine = signals[signals["strategy"] == names[0]][cols].reset_index(drop=True)
    builtin = signals[signals["strategy"] == "sma_cross"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(mine, builtin)
    assert (mine["position"] != 0).sum() > 10


def test_signals_and_breadth_can_be_off(tmp_path):
    only = _daily(tmp_path, "b", _config(strategies=[]))
    assert (only.out_dir / "breadth.parquet").exists() and not (only.out_dir / "signals.parquet").exists()
    assert "signals" not in only.manifest and "Market breadth" in (only.out_dir / "summary.html").read_text()
    neither = _daily(tmp_path, "n", _config(strategies=[], breadth=False))
    assert {p.name for p in neither.out_dir.iterdir()} == {"indicators.parquet", "rejected.parquet", "manifest.json",
                                                          "summary.md", "summary.html"}
    assert "signals" not in neither.manifest["stages"]


def test_a_fixed_set_s_record_is_its_backtest_over_the_same_bars(tmp_path):
    """Without a report, a fixed set ranks by its own record: the backtest pipeline's metrics of that
    set over the same input (in sample; ``record_source`` says so)."""
    daily = _daily(tmp_path, "d")
    cfg = parse_config({**BASE, "backtest": {**BASE["backtest"], "grid": {"fast": [20], "slow": [50]},
                                             "top_n": 0}})
    bt = run_backtest_pipeline(prepare_backtest(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "bt"),
                                                backend="cpu"))
    metrics = pd.read_parquet(bt.out_dir / "backtest_metrics.parquet").set_index("symbol")
    ours = daily.signals[daily.signals["strategy"] == "sma_cross"].set_index("symbol")
    assert set(ours["record_source"]) == {"this run"} and (ours["oos_windows"] == 0).all()
    for ours_col, theirs in (("bt_sharpe", "sharpe"), ("bt_total_return", "total_return"), ("bt_trades", "trades")):
        np.testing.assert_array_equal(ours[ours_col].to_numpy(), metrics.loc[ours.index, theirs].to_numpy())
    moves = daily.signals[daily.signals["action"].isin(["enter", "exit"])]
    if len(moves) > 1:  # best record first
        from alphapulse.pipelines.daily.signals import rank_actions, record_key

        keys = record_key(rank_actions(moves)).fillna(-np.inf).to_numpy()
        assert (np.diff(keys) <= 0).all()
