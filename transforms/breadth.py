"""Market breadth: how many symbols take part in a move, per bar, as counts that add up across panels.

Implements :func:`breadth_counts` and :data:`BREADTH_COUNTS`. Counts, not shares, so that a market
split into partitions of symbols gives the same figures summed (exact integers, in any order);
:func:`breadth_shares` turns the summed counts into the shares a page shows.

Per bar, over the symbols with a bar there (each symbol's series computed on its own bars, as
every indicator here):

- ``above_sma50`` / ``sma50``: closes above their 50-bar simple average / symbols with one;
  ``above_sma200`` / ``sma200`` likewise for 200 bars;
- ``rsi_lt30``, ``rsi_30_50``, ``rsi_50_70``, ``rsi_ge70`` / ``rsi``: the 14-bar RSI's distribution
  (four buckets) / symbols with an RSI;
- ``new_high`` / ``new_low`` / ``range252``: closes at the highest high / the lowest low of the last
  252 bars (Williams %R(252) at 0 / at -100) / symbols with 252 bars;
- ``symbols``: symbols with a bar.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators

BREADTH_COUNTS = ("symbols", "sma50", "above_sma50", "sma200", "above_sma200", "rsi", "rsi_lt30", "rsi_30_50",
                  "rsi_50_70", "rsi_ge70", "range252", "new_high", "new_low")

_SPECS = [IndicatorSpec("sma", {"period": 50}), IndicatorSpec("sma", {"period": 200}),
          IndicatorSpec("rsi", {"period": 14}), IndicatorSpec("willr", {"period": 252})]


def breadth_counts(high, low, close) -> dict:
    """Breadth counts per bar (see the module docstring).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols), NumPy or CuPy, NaN where a symbol has
        no bar

    Returns
    -------
    dict of :data:`BREADTH_COUNTS` name -> int64 array of shape (n_bars,), in the inputs' namespace
    """
    xp = namespace(close, high, low)
    out = compute_indicators({"high": high, "low": low, "close": close}, _SPECS)
    sma50, sma200, rsi, willr = out["sma_50"], out["sma_200"], out["rsi_14"], out["willr_252"]

    def count(mask):
        return mask.sum(axis=1).astype(xp.int64)

    has = ~xp.isnan(rsi)
    return {
        "symbols": count(~xp.isnan(close)),
        "sma50": count(~xp.isnan(sma50)), "above_sma50": count(close > sma50),
        "sma200": count(~xp.isnan(sma200)), "above_sma200": count(close > sma200),
        "rsi": count(has), "rsi_lt30": count(has & (rsi < 30)), "rsi_30_50": count((rsi >= 30) & (rsi < 50)),
        "rsi_50_70": count((rsi >= 50) & (rsi < 70)), "rsi_ge70": count(rsi >= 70),
        "range252": count(~xp.isnan(willr)), "new_high": count(willr >= 0), "new_low": count(willr <= -100),
    }


def breadth_shares(counts) -> dict:
    """Shares (0..1, NaN where no symbol qualifies) from summed counts (a mapping of name -> array,
    e.g. a pandas frame): ``above_sma50``, ``above_sma200``, ``rsi_lt30`` .. ``rsi_ge70``,
    ``new_high``, ``new_low`` over their denominators."""
    def share(num, den):
        den = np.asarray(counts[den], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, np.asarray(counts[num], dtype=np.float64) / den, np.nan)

    out = {"above_sma50": share("above_sma50", "sma50"), "above_sma200": share("above_sma200", "sma200")}
    for k in ("rsi_lt30", "rsi_30_50", "rsi_50_70", "rsi_ge70"):
        out[k] = share(k, "rsi")
    out["new_high"] = share("new_high", "range252")
    out["new_low"] = share("new_low", "range252")
    return out
