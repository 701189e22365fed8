"""The daily pipeline end to end, without Prefect, on the bundled real data."""
import json

import numpy as np
import pandas as pd
import pytest
import talib

from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from tests.pipelines.conftest import SAMPLE

REQUIRED = ["sma_20", "sma_50", "ema_12", "ema_26", "rsi_14", "macd_12_26_9", "macd_signal_12_26_9",
            "macd_hist_12_26_9", "bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2", "atr_14"]


@pytest.fixture(scope="module")
def daily_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("daily") / "report"
    result = run_daily(prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(out), backend="cpu"))
    return result


def test_report_files_and_manifest(daily_run):
    out = daily_run.out_dir
    assert sorted(p.name for p in out.iterdir()) == ["breadth.parquet", "indicators.parquet", "manifest.json",
                                                     "rejected.parquet", "signals.parquet",
                                                     "summary.html", "summary.md"]
    m = json.loads((out / "manifest.json").read_text())
    assert m["backend"]["name"] == "cpu" and m["backend"]["reason"]
    assert m["config_hash"] == load_config().hash()
    assert (m["input"]["rows_read"], m["input"]["rows_accepted"], m["input"]["rows_rejected"]) == (58100, 58084, 16)
    assert m["files"]["rejected.parquet"]["rows"] == 16
    assert m["files"]["indicators.parquet"]["rows"] == 58084
    assert set(m["stages"]) == {"backend", "plan", "load_validate", "indicators", "signals", "write_part"}
    assert {"numpy", "pandas", "prefect", "dask", "numba"} <= set(m["versions"])
    # APTV has 44 bars: fewer than SMA-50 needs, so it is listed, not silently NaN
    assert m["short_history"] == {"APTV": 44}
    summary = (out / "summary.md").read_text()
    assert "16 rejected" in summary and "APTV (44 bars)" in summary


def test_indicator_columns(daily_run):
    ind = pd.read_parquet(daily_run.out_dir / "indicators.parquet")
    assert list(ind.columns[:2]) == ["timestamp", "symbol"]
    for col in REQUIRED:
        assert col in ind.columns
    assert ind["sma_50"][ind.symbol == "APTV"].isna().all()


@pytest.mark.parametrize("symbol", ["AAPL", "DHR", "PYPL"])  # full history; rejected bars inside; late listing
def test_end_to_end_equals_talib_on_each_symbols_own_bars(daily_run, symbol):
    ind = pd.read_parquet(daily_run.out_dir / "indicators.parquet")
    raw = pd.read_parquet(SAMPLE)
    rejected = pd.read_parquet(daily_run.out_dir / "rejected.parquet")
    own = raw[raw.Name == symbol].drop(index=rejected.source_row[rejected.symbol == symbol], errors="ignore")
    own = own.sort_values("date")
    got = ind[ind.symbol == symbol].reset_index(drop=True)
    assert len(got) == len(own)
    hi, lo, c = (own[k].to_numpy(float) for k in ("high", "low", "close"))
    checks = {"sma_50": talib.SMA(c, 50), "ema_26": talib.EMA(c, 26), "rsi_14": talib.RSI(c, 14),
              "macd_signal_12_26_9": talib.MACD(c, 12, 26, 9)[1], "bb_lower_20_2": talib.BBANDS(c, 20, 2, 2)[2],
              "atr_14": talib.ATR(hi, lo, c, 14)}
    for col, ref in checks.items():
        np.testing.assert_allclose(got[col].to_numpy(), ref, rtol=1e-9, atol=1e-12, equal_nan=True, err_msg=col)


def test_rerun_is_identical_and_replaces_the_report(daily_run, tmp_path):
    out = tmp_path / "again"
    req = prepare_daily(load_config(), data_path=str(SAMPLE), out_dir=str(out), backend="cpu")
    run_daily(req)
    first = (out / "indicators.parquet").read_bytes()
    run_daily(req)
    assert (out / "indicators.parquet").read_bytes() == first
    assert first == (daily_run.out_dir / "indicators.parquet").read_bytes()


def test_float32_precision_close_to_float64(daily_run, tmp_path):
    cfg = parse_config({**load_config().model_dump(mode="json"),
                        "gpu": {"operations": {"precision": "float32"}}})
    res = run_daily(prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "f32"), backend="cpu"))
    assert res.manifest["backend"]["dtype"] == "float32"
    f32 = pd.read_parquet(res.out_dir / "indicators.parquet")
    f64 = pd.read_parquet(daily_run.out_dir / "indicators.parquet")
    assert f32["sma_20"].dtype == np.float32
    # after a warm-up of 10x the window, float32 storage stays within 1e-4 relative
    warm = f64.groupby("symbol").cumcount() >= 500
    for col in ("sma_50", "ema_26", "rsi_14", "bb_upper_20_2", "atr_14"):
        np.testing.assert_allclose(f32[col][warm], f64[col][warm], rtol=1e-4, err_msg=col)


def test_prepare_rejects_bad_requests(tmp_path):
    cfg = load_config()
    with pytest.raises(ValueError, match="unknown backend"):
        prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "o"), backend="tpu")
    empty = parse_config({"indicators": {}})
    with pytest.raises(ValueError, match="no indicators configured"):
        prepare_daily(empty, data_path=str(SAMPLE), out_dir=str(tmp_path / "o"))
