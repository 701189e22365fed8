"""Indicators on a whole panel: AlphaPulse vs TA-Lib per symbol vs the pandas idiom, one process.

    python benchmarks/indicators.py [--data PATH] [--repeat 20]
    python benchmarks/indicators.py --symbols 2000 --bars 2520 --dtype float32

The 12 default outputs: sma_20, sma_50, ema_12, ema_26, rsi_14, macd_12_26_9 (x3),
bb_*_20_2 (x3), atr_14.

(a) AlphaPulse: ``compute_indicators`` on the time x symbols panel (F-ordered, NaN where a symbol
    has no bar), compaction and expansion included.
(b) TA-Lib, lean: a Python loop over the panel's columns, each symbol's valid bars extracted, the
    eight TA-Lib calls, the results scattered back into panels (the same output as (a)).
(b') TA-Lib, the common idiom: a loop over ``long.groupby('symbol')``, the eight calls per group,
    the outputs gathered into one long frame.
(c) pandas: the long frame, ``groupby('symbol')`` with ``rolling``/``ewm`` (approximate formulas:
    ewm seeding differs from TA-Lib's SMA seed; a speed reference only).

Each is timed best of ``--repeat`` after a warm-up run (numba compiles or loads its cached
kernels in the warm-up). Data: the S&P 500 file in shared/ when present, else the bundled
50-symbol sample; or synthetic random walks with ``--symbols``/``--bars``.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import LoadGuard, cpu_model  # benchmarks/ is the script folder, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"
SAMPLE = ROOT / "data" / "sp500_sample.parquet"
FIELDS = ["open", "high", "low", "close", "volume"]


def load_long(path: Path) -> pd.DataFrame:
    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    raw = raw.rename(columns={"date": "timestamp", "Name": "symbol"}).dropna(subset=FIELDS)
    ok = ((raw["high"] >= raw[["open", "close", "low"]].max(axis=1))
          & (raw["low"] <= raw[["open", "close", "high"]].min(axis=1)))
    return raw[ok].sort_values(["symbol", "timestamp"]).reset_index(drop=True)


def synthetic_long(n_symbols: int, n_bars: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, n_symbols)), axis=0))
    spread = rng.uniform(0, 0.02, (2, n_bars, n_symbols))
    frame = pd.DataFrame({
        "timestamp": np.repeat(pd.bdate_range("2000-01-03", periods=n_bars).values[None, :], n_symbols, 0).ravel(),
        "symbol": np.repeat([f"S{k:05d}" for k in range(n_symbols)], n_bars),
        "open": close.T.ravel(), "high": (close * (1 + spread[0])).T.ravel(),
        "low": (close * (1 - spread[1])).T.ravel(), "close": close.T.ravel(),
        "volume": rng.integers(1_000, 1_000_000, n_bars * n_symbols).astype(np.float64)})
    # Late listings for a tenth of the symbols, as in real panels.
    late = frame["symbol"].isin([f"S{k:05d}" for k in range(0, n_symbols, 10)])
    first = frame.groupby("symbol")["timestamp"].transform("min")
    return frame[~late | (frame["timestamp"] > first + pd.Timedelta(days=200))].reset_index(drop=True)


def to_panel(long: pd.DataFrame, dtype) -> dict[str, np.ndarray]:
    return {f: np.asfortranarray(long.pivot(index="timestamp", columns="symbol", values=f).to_numpy(np.float64)
                                 .astype(dtype)) for f in ("high", "low", "close")}


def best_of(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def alphapulse(panel):
    from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators

    specs = [IndicatorSpec("sma", {"period": 20}), IndicatorSpec("sma", {"period": 50}),
             IndicatorSpec("ema", {"period": 12}), IndicatorSpec("ema", {"period": 26}),
             IndicatorSpec("rsi", {"period": 14}), IndicatorSpec("macd"), IndicatorSpec("bbands"),
             IndicatorSpec("atr", {"period": 14})]
    return compute_indicators(panel, specs)


def talib_loop(panel):
    import talib

    close, high, low = panel["close"], panel["high"], panel["low"]
    names = ["sma_20", "sma_50", "ema_12", "ema_26", "rsi_14", "macd_12_26_9", "macd_signal_12_26_9",
             "macd_hist_12_26_9", "bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2", "atr_14"]
    out = {name: np.full(close.shape, np.nan, dtype=close.dtype, order="F") for name in names}
    for j in range(close.shape[1]):
        rows = ~np.isnan(close[:, j])
        c = close[rows, j].astype(np.float64)
        h = high[rows, j].astype(np.float64)
        lo = low[rows, j].astype(np.float64)
        values = (talib.SMA(c, 20), talib.SMA(c, 50), talib.EMA(c, 12), talib.EMA(c, 26), talib.RSI(c, 14),
                  *talib.MACD(c, 12, 26, 9), *talib.BBANDS(c, 20, 2.0, 2.0, 0), talib.ATR(h, lo, c, 14))
        for name, v in zip(names, values):
            out[name][rows, j] = v
    return out


def talib_groupby(long: pd.DataFrame) -> pd.DataFrame:
    import talib

    parts = []
    for _, group in long.groupby("symbol", sort=False):
        c, h, lo = (group[f].to_numpy(np.float64) for f in ("close", "high", "low"))
        macd, signal, hist = talib.MACD(c, 12, 26, 9)
        upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
        parts.append(pd.DataFrame({
            "sma_20": talib.SMA(c, 20), "sma_50": talib.SMA(c, 50), "ema_12": talib.EMA(c, 12),
            "ema_26": talib.EMA(c, 26), "rsi_14": talib.RSI(c, 14), "macd_12_26_9": macd,
            "macd_signal_12_26_9": signal, "macd_hist_12_26_9": hist, "bb_upper_20_2": upper,
            "bb_middle_20_2": middle, "bb_lower_20_2": lower, "atr_14": talib.ATR(h, lo, c, 14)}, index=group.index))
    return pd.concat(parts)


def pandas_idiom(long: pd.DataFrame) -> pd.DataFrame:
    g = long.groupby("symbol", sort=False)
    close = long["close"]
    out = pd.DataFrame(index=long.index)
    out["sma_20"] = g["close"].rolling(20).mean().reset_index(level=0, drop=True)
    out["sma_50"] = g["close"].rolling(50).mean().reset_index(level=0, drop=True)
    ema = lambda span: g["close"].transform(lambda s: s.ewm(span=span, adjust=False).mean())  # noqa: E731
    out["ema_12"], out["ema_26"] = ema(12), ema(26)
    delta = g["close"].diff()
    frame = pd.DataFrame({"symbol": long["symbol"], "up": delta.clip(lower=0), "down": -delta.clip(upper=0)})
    gd = frame.groupby("symbol", sort=False)
    wilder = lambda col: gd[col].transform(lambda s: s.ewm(alpha=1 / 14, adjust=False).mean())  # noqa: E731
    up, down = wilder("up"), wilder("down")
    out["rsi_14"] = 100 * up / (up + down)
    out["macd"] = out["ema_12"] - out["ema_26"]
    out["macd_signal"] = out.groupby(long["symbol"], sort=False)["macd"].transform(
        lambda s: s.ewm(span=9, adjust=False).mean())
    out["macd_hist"] = out["macd"] - out["macd_signal"]
    std = g["close"].rolling(20).std(ddof=0).reset_index(level=0, drop=True)
    out["bb_middle"] = out["sma_20"]
    out["bb_upper"] = out["sma_20"] + 2 * std
    out["bb_lower"] = out["sma_20"] - 2 * std
    prev_close = g["close"].shift()
    tr = pd.concat([long["high"] - long["low"], (long["high"] - prev_close).abs(), (long["low"] - prev_close).abs()],
                   axis=1).max(axis=1)
    out["atr_14"] = tr.groupby(long["symbol"], sort=False).transform(lambda s: s.ewm(alpha=1 / 14, adjust=False).mean())
    del close
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED if SHARED.exists() else SAMPLE))
    ap.add_argument("--symbols", type=int, help="synthetic panel with this many symbols")
    ap.add_argument("--bars", type=int, default=2520, help="synthetic panel length (with --symbols)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--repeat", type=int, default=20, help="timed runs of (a) and (b); (b') and (c) get a quarter")
    ap.add_argument("--no-pandas", action="store_true", help="skip the (slow) pandas peer")
    args = ap.parse_args()

    if args.symbols:
        long = synthetic_long(args.symbols, args.bars)
        source = f"synthetic random walks ({args.symbols} symbols x {args.bars} bars, a tenth listed late)"
    else:
        long = load_long(Path(args.data))
        source = args.data
    dtype = np.dtype(args.dtype)
    panel = to_panel(long, dtype)
    n_bars, n_symbols = panel["close"].shape
    import numba

    print(f"data: {source}")
    print(f"panel: {n_bars} bars x {n_symbols} symbols, {dtype}, F-ordered; {len(long):,} bars present")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, numba threads {numba.config.NUMBA_NUM_THREADS}")

    ours = alphapulse(panel)
    reference = talib_loop(panel)
    worst = max(float(np.nanmax(np.abs(ours[k].astype(np.float64) - reference[k].astype(np.float64))
                                / np.maximum(np.abs(reference[k].astype(np.float64)), 1e-12), initial=0.0))
                for k in reference)
    same_nan = all(np.array_equal(np.isnan(ours[k]), np.isnan(reference[k])) for k in reference)
    print(f"check: 12 outputs vs TA-Lib: NaN positions identical: {same_nan}; largest relative difference {worst:.2g}")

    t_ours = best_of(lambda: alphapulse(panel), args.repeat)
    t_talib = best_of(lambda: talib_loop(panel), args.repeat)
    long_sorted = long.sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    t_groupby = best_of(lambda: talib_groupby(long_sorted), max(1, args.repeat // 4))
    print(f"(a)  AlphaPulse compute_indicators:       {t_ours * 1e3:9.1f} ms")
    print(f"(b)  TA-Lib, loop over panel columns:     {t_talib * 1e3:9.1f} ms   ({t_talib / t_ours:.1f}x (a))")
    print(f"(b') TA-Lib, loop over groupby('symbol'): {t_groupby * 1e3:9.1f} ms   ({t_groupby / t_ours:.1f}x (a))")
    if not args.no_pandas:
        t_pandas = best_of(lambda: pandas_idiom(long_sorted), max(1, args.repeat // 4))
        print(f"(c)  pandas groupby + rolling/ewm:        {t_pandas * 1e3:9.1f} ms   ({t_pandas / t_ours:.1f}x (a))")


if __name__ == "__main__":
    with LoadGuard():
        main()
