"""Shared helpers for the indicator tests: long bars -> panel, synthetic bars, the TA-Lib oracle."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

FIELDS = ("open", "high", "low", "close", "volume")

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"
# The full S&P 500 file lives in shared/ beside the checkout (not in the repository).
SP500_CSV = Path(os.environ.get("ALPHAPULSE_SP500_CSV",
                                ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"))


def clean_bars(long: pd.DataFrame) -> pd.DataFrame:
    """Drop rows the loader rejects: any NaN field, or OHLC that are inconsistent
    (high below open/close/low, or low above open/close/high)."""
    long = long.dropna(subset=list(FIELDS))
    top = long[["open", "close", "low"]].max(axis=1)
    bottom = long[["open", "close", "high"]].min(axis=1)
    return long[(long["high"] >= top) & (long["low"] <= bottom)]


def to_panel(long: pd.DataFrame, dtype=np.float64) -> tuple[list[str], dict[str, np.ndarray]]:
    """Long bars (``timestamp, symbol, open, high, low, close, volume``) -> time x symbols arrays.

    Rows are the union of timestamps (sorted), columns the symbols (sorted); a symbol without a
    bar at a timestamp is NaN there. Arrays are Fortran-ordered (column-contiguous), as the CPU
    pipeline hands them to the indicators.
    """
    panels = {}
    symbols = None
    for name in FIELDS:
        wide = long.pivot(index="timestamp", columns="symbol", values=name).sort_index()
        wide = wide.reindex(sorted(wide.columns), axis=1)
        symbols = list(wide.columns)
        panels[name] = np.asfortranarray(wide.to_numpy(dtype=np.float64).astype(dtype))
    return symbols, panels


def load_sp500(path: Path) -> pd.DataFrame | None:
    """An S&P 500 file in the source's columns (``date, open, high, low, close, volume, Name``;
    CSV or parquet) as long bars, loader-cleaned; None when the file is not there."""
    if not path.exists():
        return None
    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    raw = raw.rename(columns={"date": "timestamp", "Name": "symbol"})
    return clean_bars(raw)


def synthetic_long(n_symbols: int = 30, n_bars: int = 320, seed: int = 20240229) -> pd.DataFrame:
    """Seeded OHLCV random walks with the shapes real panels have.

    - prices on a cent grid (ties between highs/lows/closes happen, as in real data), levels from
      about 0.05 to 3000 (float32 cannot hold cents exactly above 2**24 / 100);
    - late listings and early delistings (leading / trailing missing bars);
    - interior gaps: NaN rows, dropped by :func:`clean_bars` as the loader drops them;
    - flat stretches (open = high = low = close for 25 bars): zero ranges, zero true ranges,
      no price change -- the guarded branches of STOCH, WILLR, CCI, RSI and ADX;
    - a symbol shorter than every lookback and one with only a handful of bars after its gaps.
    """
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_bars)
    frames = []
    for k in range(n_symbols):
        level = float(np.exp(rng.uniform(np.log(0.05), np.log(3000.0))))
        sigma = rng.uniform(0.004, 0.04)
        close = level * np.exp(np.cumsum(rng.normal(0.0, sigma, n_bars)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, sigma / 3, n_bars))
        spread = np.abs(rng.normal(0.0, sigma, (2, n_bars)))
        high = np.maximum(open_, close) * (1 + spread[0])
        low = np.minimum(open_, close) * (1 - spread[1])
        if k % 5 == 1:  # a flat stretch
            at = rng.integers(40, n_bars - 60)
            open_[at:at + 25] = high[at:at + 25] = low[at:at + 25] = close[at:at + 25] = close[at]
        cents = lambda x: np.maximum(np.round(x, 2), 0.01)  # noqa: E731
        open_, high, low, close = cents(open_), cents(high), cents(low), cents(close)
        high = np.maximum.reduce([high, open_, close, low])
        low = np.minimum.reduce([low, open_, close, high])
        volume = np.round(np.exp(rng.normal(13.0, 1.5, n_bars)))
        frame = pd.DataFrame({"timestamp": dates, "symbol": f"S{k:03d}", "open": open_, "high": high,
                              "low": low, "close": close, "volume": volume})
        start = int(rng.integers(1, 150)) if k % 3 == 0 else 0  # late listing
        stop = n_bars - int(rng.integers(1, 80)) if k % 7 == 3 else n_bars  # delisting
        if k == n_symbols - 1:
            start, stop = 0, 6  # shorter than every lookback
        if k == n_symbols - 2:
            start, stop = 100, 140
        frame = frame.iloc[start:stop].copy()
        gaps = rng.choice(len(frame), size=min(len(frame) // 25, 8), replace=False) if k % 2 == 0 else []
        frame.iloc[list(gaps), frame.columns.get_loc("close")] = np.nan  # a NaN row the loader drops
        frames.append(frame)
    return clean_bars(pd.concat(frames, ignore_index=True))


# ---------------------------------------------------------------------------------------------
# The TA-Lib oracle: one call per registry indicator, outputs in registry order.
# ---------------------------------------------------------------------------------------------


def talib_outputs(name: str, params: dict, high, low, close, volume) -> tuple[np.ndarray, ...]:
    import talib

    p = params
    if name == "sma":
        return (talib.SMA(close, p["period"]),)
    if name == "ema":
        return (talib.EMA(close, p["period"]),)
    if name == "rsi":
        return (talib.RSI(close, p["period"]),)
    if name == "macd":
        return tuple(talib.MACD(close, p["fast"], p["slow"], p["signal"]))
    if name == "bbands":
        return tuple(talib.BBANDS(close, p["period"], p["nbdev"], p["nbdev"], 0))
    if name == "atr":
        return (talib.ATR(high, low, close, p["period"]),)
    if name == "natr":
        return (talib.NATR(high, low, close, p["period"]),)
    if name == "stoch":
        return tuple(talib.STOCH(high, low, close, p["fastk_period"], p["slowk_period"], 0,
                                 p["slowd_period"], 0))
    if name == "adx":
        return (talib.ADX(high, low, close, p["period"]),)
    if name == "cci":
        return (talib.CCI(high, low, close, p["period"]),)
    if name == "willr":
        return (talib.WILLR(high, low, close, p["period"]),)
    if name == "obv":
        return (talib.OBV(close, volume),)
    if name == "roc":
        return (talib.ROC(close, p["period"]),)
    raise KeyError(name)


def talib_panel(name: str, params: dict, panel: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    """TA-Lib run symbol by symbol on each symbol's own bars (its rows where ``close`` is
    present), scattered back into NaN panels of the input's shape (float64)."""
    close = panel["close"]
    outs = None
    for j in range(close.shape[1]):
        rows = ~np.isnan(close[:, j])
        if not rows.any():
            continue
        cols = [np.ascontiguousarray(panel[f][rows, j], dtype=np.float64) for f in ("high", "low", "close", "volume")]
        values = talib_outputs(name, params, *cols)
        if outs is None:
            outs = tuple(np.full(close.shape, np.nan) for _ in values)
        for out, v in zip(outs, values):
            out[rows, j] = v
    return outs


def assert_matches(ours: np.ndarray, ref: np.ndarray, *, rtol: float, atol_scale: float, label: str,
                   from_row: np.ndarray | None = None) -> None:
    """NaN positions identical; values within ``rtol * |ref| + atol_scale * scale``, where
    ``scale`` is the largest ``|ref|`` of the column (per symbol). Compares rows from
    ``from_row[j]`` on when given (warm-up excluded), NaN positions everywhere."""
    ours = np.asarray(ours, dtype=np.float64)
    nan_ours, nan_ref = np.isnan(ours), np.isnan(ref)
    if not np.array_equal(nan_ours, nan_ref):
        i, j = np.argwhere(nan_ours != nan_ref)[0]
        raise AssertionError(f"{label}: NaN positions differ, first at row {i} column {j} "
                             f"(ours {ours[i, j]!r}, TA-Lib {ref[i, j]!r})")
    with np.errstate(invalid="ignore"):
        scale = np.nanmax(np.abs(ref), axis=0, initial=0.0)
    tol = rtol * np.abs(ref) + atol_scale * scale[None, :]
    bad = ~nan_ref & (np.abs(ours - ref) > tol)
    if from_row is not None:
        bad &= np.arange(ref.shape[0])[:, None] >= np.asarray(from_row)[None, :]
    if bad.any():
        i, j = np.argwhere(bad)[0]
        err = np.abs(ours - ref)[bad] / np.maximum(np.abs(ref[bad]), 1e-300)
        raise AssertionError(f"{label}: {int(bad.sum())} values off, first at row {i} column {j}: ours "
                             f"{ours[i, j]!r}, TA-Lib {ref[i, j]!r} (largest relative error {err.max():.3g})")
