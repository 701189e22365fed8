"""The front door (``import alphapulse as ap``) on in-memory frames: the same numbers as the
pipelines that write report folders, the loader's rules on bad rows, and errors that name what is
wrong."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import alphapulse as ap
from alphapulse.pipelines.config import ConfigError
from alphapulse.pipelines.config.grid import GridError
from alphapulse.pipelines.errors import ArgumentError
from alphapulse.transforms.backtest.strategies import custom_strategy
from alphapulse.pipelines.data.load import DataError, load_frame
from alphapulse.pipelines.data.panel import bars_to_panel
from tests.pipelines.conftest import ROOT, SAMPLE, SP500_COLUMNS

COLUMNS = {"data": {"columns": SP500_COLUMNS}}


@pytest.fixture(scope="module")
def bars():
    return pd.read_parquet(SAMPLE)


@pytest.fixture(scope="module")
def config():
    return ap.load_config(overrides=COLUMNS)


def test_import_is_light():
    """``import alphapulse`` loads no room until a name is used (a notebook pays for what it calls)."""
    code = ("import sys, alphapulse as ap; heavy = [m for m in sys.modules if (m.startswith('alphapulse.') "
            "or m in ('numba', 'dask', 'prefect')) and m != 'alphapulse._exports']; print(heavy); "
            "assert not heavy, heavy; "
            "assert callable(ap.indicators) and 'alphapulse.research' in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_indicators_equal_the_daily_report(bars, config, tmp_path):
    report = ap.run("daily", data=SAMPLE, out=tmp_path / "daily", config=config, backend="cpu")
    want = pd.read_parquet(tmp_path / "daily" / "indicators.parquet")
    got = ap.indicators(bars, config=config, backend="cpu", rejected="keep")
    assert report.manifest["output"]["rows"] == len(got)
    # the symbol column's string storage differs once read back from parquet; the values may not
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want.reset_index(drop=True), check_exact=True,
                                  check_dtype=False)
    assert (got.dtypes.iloc[2:] == want.dtypes.iloc[2:]).all()
    rejected = got.attrs["rejected"]
    assert len(rejected) == report.manifest["input"]["rows_rejected"] == 16
    assert set(rejected["reason"]) == set(report.manifest["input"]["rejected_by_reason"])


def test_an_indicators_block_in_the_config_vocabulary(bars, config):
    got = ap.indicators(bars, {"sma": [5, 20], "macd": [{"fast": 3, "slow": 10, "signal": 4}]}, config=config,
                        backend="cpu", rejected="keep")
    assert list(got.columns) == ["timestamp", "symbol", "sma_5", "sma_20", "macd_3_10_4", "macd_signal_3_10_4",
                                 "macd_hist_3_10_4"]
    one = got[got["symbol"] == "AAPL"]
    close = bars[bars["Name"] == "AAPL"].sort_values("date")["close"].to_numpy()
    np.testing.assert_allclose(one["sma_5"].to_numpy()[4:], np.convolve(close, np.ones(5) / 5, "valid"), rtol=1e-12)


def test_bad_rows_raise_by_default_naming_the_first(bars, config):
    with pytest.raises(DataError, match=r"bars: 16 of 58,100 rows break a rule .*first: row \d+ symbol '\w+': "):
        ap.indicators(bars, {"sma": [20]}, config=config, backend="cpu")
    with pytest.raises(ValueError, match="rejected must be 'raise' or 'keep'"):
        ap.indicators(bars, {"sma": [20]}, config=config, rejected="drop")


def test_frames_with_the_wrong_columns_are_one_line_errors(bars):
    with pytest.raises(DataError, match=r"missing column\(s\) 'timestamp' \(mapped from 'date'\), 'symbol' "
                                        r"\(mapped from 'Name'\); found"):
        ap.indicators(bars.rename(columns={"date": "when", "Name": "ticker"}), {"sma": [20]}, backend="cpu")
    with pytest.raises(DataError, match="expected a DataFrame of bars, got ndarray"):
        ap.indicators(np.zeros((3, 7)), {"sma": [20]})
    with pytest.raises(DataError, match=r"unexpected column\(s\) \['extra'\]"):
        ap.indicators(bars.assign(extra=1.0), {"sma": [20]}, backend="cpu")


def test_config_overrides_and_their_errors(config):
    assert config.data.columns == SP500_COLUMNS
    tighter = ap.load_config(config, overrides={"portfolio": {"max_weight": 0.2}})
    assert tighter.portfolio.max_weight == 0.2 and tighter.data.columns == SP500_COLUMNS
    with pytest.raises(ConfigError, match="portfolio.max_wieght"):
        ap.load_config(overrides={"portfolio": {"max_wieght": 0.2}})
    with pytest.raises(ConfigError):
        ap.indicators(pd.DataFrame(), {"sma": [0]})


def _returns(bars, config) -> pd.DataFrame:
    """Per-bar simple returns of the validated bars' closes, wide (as the portfolio pipeline sees them)."""
    loaded = load_frame(bars, columns=config.data.columns)
    panel = bars_to_panel(loaded.bars, fields=("close",), dtype=np.float64, order="C")
    close = panel.fields["close"]
    r = close[1:] / close[:-1] - 1.0
    return pd.DataFrame(r, index=pd.DatetimeIndex(panel.timestamps[1:]), columns=[str(s) for s in panel.symbols])


@pytest.mark.parametrize("method", ["min_variance", "hrp", "risk_parity"])
def test_optimise_equals_the_portfolio_pipeline(bars, config, tmp_path, method):
    cfg = ap.load_config(config, overrides={"portfolio": {"methods": [method], "max_weight": 0.1}})
    report = ap.run("portfolio", data=SAMPLE, out=tmp_path / method, config=cfg, backend="cpu")
    table = report.tables["weights.parquet"] if "weights.parquet" in report.tables else pd.read_parquet(
        tmp_path / method / "weights.parquet")
    want = table[table["method"] == method].set_index("symbol")["weight"]
    got = ap.optimise(_returns(bars, config), method=method, config=config, max_weight=0.1, backend="cpu")
    assert got.method_used == method and not got.fell_back
    pd.testing.assert_series_equal(got.weights.sort_index(), want.sort_index(), check_names=False, rtol=1e-12)
    assert got.weights.sum() == pytest.approx(1.0, abs=1e-12) and got.weights.max() <= 0.1 + 1e-12
    assert list(got.covariance.index) == list(got.weights.index)


def test_optimise_reports_the_chain_when_it_falls_back(bars, config):
    """An infeasible target return: efficient_return fails and the chain's next method answers."""
    got = ap.optimise(_returns(bars, config), method="efficient_return", target_return=50.0, config=config,
                      backend="cpu")
    assert got.fell_back and got.method_used != "efficient_return"
    assert got.chain.loc[0, "tried"] == "efficient_return" and got.chain.loc[0, "status"] != "ok"
    assert got.weights.sum() == pytest.approx(1.0, abs=1e-9)


def test_optimise_refuses_what_it_cannot_use(bars, config):
    with pytest.raises(ValueError, match="one column per symbol"):
        ap.optimise(pd.DataFrame({"A": [0.01, 0.02]}))
    r = _returns(bars, config).iloc[:, :3].copy()
    r.iloc[5, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        ap.optimise(r, config=config)
    with pytest.raises(ValueError, match="qualify for the common window"):
        ap.optimise(r.iloc[:10].replace(np.inf, 0.0), config=config)


ALWAYS_LONG = custom_strategy("always_long", lambda panel: np.ones_like(panel["close"]), params={})
BACKTESTS = {
    "sma_cross": ("sma_cross", "fast=5:20:5,slow=30:60:10",
                  {"walk_forward": {"train_bars": 504, "test_bars": 126}, "commission_bps": 5}),
    "custom": (ALWAYS_LONG, None, {"direction": "long", "slippage_bps": 2}),
}


@pytest.mark.parametrize("case", list(BACKTESTS))
def test_backtest_equals_the_backtest_report(bars, config, tmp_path, case):
    strategy, grid, settings = BACKTESTS[case]
    cfg = ap.load_config(config, overrides={"backtest": settings})
    report = ap.run("backtest", data=SAMPLE, out=tmp_path / case, config=cfg, backend="cpu", strategy=strategy,
                    grid=grid)
    got = ap.backtest(bars, strategy=strategy, grid=grid, config=config, backend="cpu", rejected="keep", **settings)
    files = {"summary": "backtest_summary.parquet", "metrics": "backtest_metrics.parquet",
             "equity": "equity.parquet", "symbol_equity": "best_equity_by_symbol.parquet",
             "walk_forward": "walk_forward.parquet"}
    for name, file in files.items():
        frame = getattr(got, name)
        if not (tmp_path / case / file).exists():
            assert frame is None, name
            continue
        want = pd.read_parquet(tmp_path / case / file)
        # string columns come back from parquet with another storage; values and numbers may not differ
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), want, check_exact=True, check_dtype=False,
                                      obj=name)
    assert (got.walk_forward is not None) == (case == "sma_cross")
    assert got.strategy == report.manifest["strategy"] and len(got.rejected) == 16
    assert got.best["combo_id"] == got.summary.loc[got.summary["rank"] == 1, "combo_id"].iloc[0]
    assert len(got.metrics) == len(got.summary) * report.manifest["input"]["symbols"]


def test_backtest_errors_name_what_is_wrong(bars, config):
    with pytest.raises(ArgumentError, match="unknown strategy 'sma_cros' \\(did you mean 'sma_cross'\\?\\)"):
        ap.backtest(bars, strategy="sma_cros", config=config)
    with pytest.raises(GridError, match="sma_cross"):
        ap.backtest(bars, strategy="sma_cross", grid={"fast": [30], "slow": [10]}, config=config)
    with pytest.raises(ConfigError, match="backtest.comission_bps"):
        ap.backtest(bars, strategy="sma_cross", config=config, comission_bps=5)
    with pytest.raises(DataError, match="16 of 58,100 rows break a rule"):
        ap.backtest(bars, strategy="sma_cross", config=config, backend="cpu")


def test_run_knows_its_pipelines(tmp_path):
    with pytest.raises(ValueError, match="unknown pipeline 'dayly': expected one of daily, backtest"):
        ap.run("dayly", data=SAMPLE, out=tmp_path / "x")


def test_signals_equal_the_daily_report(bars, config, tmp_path):
    report = ap.run("daily", data=SAMPLE, out=tmp_path / "daily", config=config, backend="cpu")
    written = pd.read_parquet(report.out_dir / "signals.parquet")
    got = ap.signals(bars, config=config, backend="cpu", rejected="keep")
    pd.testing.assert_frame_equal(got, written, check_exact=True)
    assert len(got.attrs["rejected"]) == 16
    one = ap.signals(bars, [{"strategy": "sma_cross", "params": {"fast": 20, "slow": 50}}], config=config,
                     backend="cpu", rejected="keep")
    mine = written[written["strategy"] == "sma_cross"].reset_index(drop=True)
    pd.testing.assert_frame_equal(one, mine[one.columns].astype(one.dtypes.to_dict()), check_exact=True)
    with pytest.raises(ConfigError, match="fast >= slow"):
        ap.signals(bars, [{"strategy": "sma_cross", "params": {"fast": 50, "slow": 20}}], config=config,
                   rejected="keep")


def test_a_store_grown_by_two_runs_equals_the_indicators(bars, config, tmp_path):
    """``ap.run("daily", ..., store=DIR)`` twice (the history, then its last days): what
    ``pandas.read_parquet(DIR / "data")`` reads equals ``ap.indicators`` on every bar."""
    days = np.sort(bars["date"].unique())
    bars[bars["date"] < days[-5]].to_parquet(tmp_path / "history.parquet", index=False)
    bars[bars["date"] >= days[-5]].to_parquet(tmp_path / "week.parquet", index=False)
    store = tmp_path / "store"
    ap.run("daily", data=tmp_path / "history.parquet", out=tmp_path / "r1", config=config, backend="cpu", store=store)
    report = ap.run("daily", data=tmp_path / "week.parquet", out=tmp_path / "r2", config=config, backend="cpu",
                    store=store)
    assert report.manifest["incremental"]["bars_computed"] == 5 * bars["Name"].nunique()
    got = pd.read_parquet(store / "data").sort_values(["symbol", "timestamp"], ignore_index=True)
    want = ap.indicators(bars, config=config, backend="cpu", rejected="keep")
    want = want.sort_values(["symbol", "timestamp"], ignore_index=True)
    got["timestamp"] = got["timestamp"].astype(want["timestamp"].dtype)
    pd.testing.assert_frame_equal(got, want, check_exact=True, check_dtype=False)
