"""Market breadth against pandas and TA-Lib, per symbol on its own bars; counts add up across panels.

Oracles: pandas' rolling mean and max/min over each symbol's own bars (the 50- and 200-bar
averages, the 252-bar highest high and lowest low) and TA-Lib's RSI, on the bundled S&P 500 sample
(50 symbols, 1,259 bars, real gaps and a late listing). A close within 1e-9 (relative) of its average
could fall either side between two float64 sums (flat stretches make a few), so a bar with such a
tie may differ by the number of its ties, and every other bar must be equal.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from tests.transforms.indicator_testlib import SAMPLE, load_sp500, to_panel
from alphapulse.transforms.breadth import BREADTH_COUNTS, breadth_counts, breadth_shares


@pytest.fixture(scope="module")
def sample():
    symbols, panel = to_panel(load_sp500(SAMPLE), np.float64)
    return symbols, panel


def _own_bars(panel, fn):
    """``fn(series of one symbol's own bars)`` per symbol, put back at the panel's rows."""
    close = panel["close"]
    out = np.full(close.shape, np.nan)
    for s in range(close.shape[1]):
        rows = np.flatnonzero(~np.isnan(close[:, s]))
        out[rows, s] = fn(s, rows)
    return out


def test_counts_equal_pandas_and_talib(xp, sample):
    talib = pytest.importorskip("talib")
    _, panel = sample
    close, high, low = panel["close"], panel["high"], panel["low"]
    got = host(breadth_counts(*device(xp, (panel["high"], panel["low"], panel["close"]))))

    def sma(p):
        return _own_bars(panel, lambda s, r: pd.Series(close[r, s]).rolling(p).mean().to_numpy())

    for p in (50, 200):
        avg = sma(p)
        with np.errstate(invalid="ignore"):
            tie = np.abs(close - avg) <= 1e-9 * np.abs(close)
        np.testing.assert_array_equal(got[f"sma{p}"], (~np.isnan(avg)).sum(axis=1))
        expected, ties = np.nansum(close > avg, axis=1), tie.sum(axis=1)
        assert (np.abs(got[f"above_sma{p}"] - expected) <= ties).all()
        np.testing.assert_array_equal(got[f"above_sma{p}"][ties == 0], expected[ties == 0])
        assert ties.sum() < 20  # a few flat stretches, not a wrong comparison
    rsi = _own_bars(panel, lambda s, r: talib.RSI(np.ascontiguousarray(close[r, s]), 14))
    with np.errstate(invalid="ignore"):
        buckets = {"rsi_lt30": rsi < 30, "rsi_30_50": (rsi >= 30) & (rsi < 50), "rsi_50_70": (rsi >= 50) & (rsi < 70),
                   "rsi_ge70": rsi >= 70}
    for k, mask in buckets.items():
        np.testing.assert_array_equal(got[k], mask.sum(axis=1), err_msg=k)
    np.testing.assert_array_equal(got["rsi"], (~np.isnan(rsi)).sum(axis=1))
    hh = _own_bars(panel, lambda s, r: pd.Series(high[r, s]).rolling(252).max().to_numpy())
    ll = _own_bars(panel, lambda s, r: pd.Series(low[r, s]).rolling(252).min().to_numpy())
    np.testing.assert_array_equal(got["range252"], (~np.isnan(hh)).sum(axis=1))
    np.testing.assert_array_equal(got["new_high"], np.nansum(close >= hh, axis=1))
    np.testing.assert_array_equal(got["new_low"], np.nansum(close <= ll, axis=1))
    np.testing.assert_array_equal(got["symbols"], (~np.isnan(close)).sum(axis=1))
    assert got["new_high"].sum() > 0 and got["new_low"].sum() > 0 and got["rsi_ge70"].sum() > 0


def test_counts_of_a_split_market_add_up(xp, sample):
    _, panel = sample
    whole = host(breadth_counts(*device(xp, (panel["high"], panel["low"], panel["close"]))))
    parts = [host(breadth_counts(*device(xp, tuple(np.ascontiguousarray(panel[k][:, cols])
                                                   for k in ("high", "low", "close")))))
             for cols in (slice(0, 17), slice(17, 50))]
    for k in BREADTH_COUNTS:
        np.testing.assert_array_equal(parts[0][k] + parts[1][k], whole[k], err_msg=k)
        assert whole[k].dtype == np.int64


def test_shares():
    counts = {k: np.array([0, 4]) for k in BREADTH_COUNTS}
    counts["above_sma50"] = np.array([0, 1])
    shares = breadth_shares(counts)
    assert np.isnan(shares["above_sma50"][0]) and shares["above_sma50"][1] == 0.25
    assert set(shares) == {"above_sma50", "above_sma200", "rsi_lt30", "rsi_30_50", "rsi_50_70", "rsi_ge70",
                           "new_high", "new_low"}
