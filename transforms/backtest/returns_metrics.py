"""Performance metrics of return series, and the equal-weight portfolio of many series.

Implements:

- :func:`metrics_from_returns`: total return, CAGR, annualised return and volatility, Sharpe,
  Sortino, Calmar, max drawdown and its duration of each column of a bar-return array, in the
  definitions of :mod:`alphapulse.transforms.backtest.metrics` (``"alphapulse"`` or ``"backtesting.py"``). The series
  is reduced to the same accumulators as the backtest kernel's (``alphapulse.transforms.backtest.engine.ACC``), in
  the same order of operations, and :func:`alphapulse.transforms.backtest.metrics.metrics_from_acc` turns them into
  metrics: one definition of every formula, so a single symbol's strategy returns give the
  metrics of its backtest (to rounding).
- :func:`equal_weight_accumulate` and :func:`equal_weight_returns`: the equal-weight portfolio of
  the symbols of each parameter combination, rebalanced every bar: its return at a timestamp is
  the mean of the returns of the symbols that have one there. Accumulated as a running sum and
  count per (timestamp, combination), so symbols can arrive in chunks.

NaN semantics: a NaN return is "no bar" (not listed yet, a gap, a series' first bar): it is
skipped, as the backtest kernel skips missing bars. Equity starts at 1 before the first return;
drawdown durations count return bars, not calendar time. A series with no return has NaN metrics.
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.backtest.engine import ACC
from alphapulse.transforms.kernels import series_kernel
from alphapulse.transforms.backtest.metrics import metrics_from_acc

RETURN_METRICS = ("total_return", "cagr", "ann_return", "ann_volatility", "sharpe", "sortino", "calmar",
                  "max_drawdown", "max_drawdown_bars")
"""The metrics a return series defines (the trade statistics need the trades themselves)."""

_FIELDS = ("returns", "sum_r", "sum_r2", "sum_down2", "sum_log1p", "final_equity", "max_drawdown",
           "max_drawdown_bars")


@series_kernel
def _returns_accumulators(j, returns, out):
    # Column j of returns (n_bars, n_series): the backtest kernel's return accumulators, in its order.
    eq = 1.0
    peak = 1.0
    peak_bar = 0
    max_dd = 0.0
    max_dd_bars = 0
    k = 0
    sum_r = 0.0
    sum_r2 = 0.0
    sum_down2 = 0.0
    sum_log = 0.0
    for i in range(returns.shape[0]):
        r = np.float64(returns[i, j])
        if r != r:  # NaN: no bar
            continue
        k += 1
        sum_r += r
        sum_r2 += r * r
        if r < 0.0:
            sum_down2 += r * r
        sum_log += math.log1p(r)
        eq = eq * (1.0 + r)
        if eq >= peak:
            peak = eq
            peak_bar = k
        else:
            dd = eq / peak - 1.0
            if dd < max_dd:
                max_dd = dd
        if k - peak_bar > max_dd_bars:
            max_dd_bars = k - peak_bar
    out[j, 0] = k
    out[j, 1] = sum_r
    out[j, 2] = sum_r2
    out[j, 3] = sum_down2
    out[j, 4] = sum_log
    out[j, 5] = eq
    out[j, 6] = max_dd
    out[j, 7] = max_dd_bars


def returns_accumulators(returns):
    """The backtest kernel's accumulators (``alphapulse.transforms.backtest.engine.ACC`` columns) of return series.

    Parameters
    ----------
    returns : float array of shape (n_bars, n_series); NaN = no bar

    Returns
    -------
    float64 array of shape (n_series, len(ACC)): the return accumulators filled (``bars`` is the
    number of returns + 1, the first bar having none), the trade accumulators NaN.
    """
    xp = namespace(returns)
    if returns.ndim != 2:
        raise ValueError(f"returns must be 2-D (n_bars, n_series), got shape {returns.shape}")
    n_series = returns.shape[1]
    part = xp.zeros((n_series, len(_FIELDS)), dtype=xp.float64)
    _returns_accumulators(n_series, returns, part)
    acc = xp.full((n_series, len(ACC)), xp.nan, dtype=xp.float64)
    for k, name in enumerate(_FIELDS):
        acc[:, ACC.index(name)] = part[:, k]
    acc[:, ACC.index("bars")] = part[:, 0] + 1.0
    return acc


def metrics_from_returns(returns, *, periods_per_year: float = 252.0, definitions: str = "alphapulse") -> dict:
    """Return-based metrics of each series (see the module docstring and :mod:`alphapulse.transforms.backtest.metrics`).

    Parameters
    ----------
    returns : float array of shape (n_bars, n_series) of simple bar returns; NaN = no bar
    periods_per_year : bars per year (252 for daily bars)
    definitions : "alphapulse" or "backtesting.py"

    Returns
    -------
    dict of metric name (:data:`RETURN_METRICS`) to float64 array of shape (n_series,)
    """
    metrics = metrics_from_acc(returns_accumulators(returns), periods_per_year=periods_per_year,
                               definitions=definitions)
    return {k: metrics[k] for k in RETURN_METRICS}


@series_kernel
def _equal_weight_column(c, returns, n_symbols, offset, sums, counts):
    # Combination c of a chunk: its symbols are columns c * n_symbols .. + n_symbols - 1 of returns,
    # added in symbol order to the running totals of combination offset + c.
    col = offset + c
    for t in range(returns.shape[0]):
        total = sums[t, col]
        k = counts[t, col]
        for s in range(n_symbols):
            r = np.float64(returns[t, c * n_symbols + s])
            if r == r:
                total += r
                k += 1
        sums[t, col] = total
        counts[t, col] = k


def equal_weight_accumulate(returns, *, n_symbols: int, sums, counts, offset: int = 0) -> None:
    """Add a chunk's symbol returns to the equal-weight portfolio totals, in place.

    Parameters
    ----------
    returns : float array of shape (n_bars, n_combinations_in_chunk * n_symbols): column
        ``c * n_symbols + s`` is symbol ``s`` of the chunk's combination ``c`` (the layout of
        ``alphapulse.transforms.backtest.engine.run_backtest``'s returns); NaN = no return
    n_symbols : symbols in the chunk
    sums : float64 array of shape (n_bars, n_combinations): running sums, updated in place
    counts : int64 array of the same shape: running counts of returns, updated in place
    offset : the chunk's first combination in ``sums``/``counts``

    Symbols are added one at a time in column order, so totals built over any split of a fixed
    symbol sequence into chunks are bit-identical.
    """
    if returns.shape[1] % max(n_symbols, 1):
        raise ValueError(f"returns has {returns.shape[1]} columns, not a multiple of n_symbols={n_symbols}")
    n_comb = returns.shape[1] // n_symbols if n_symbols else 0
    if offset < 0 or offset + n_comb > sums.shape[1] or sums.shape != counts.shape \
            or sums.shape[0] != returns.shape[0]:
        raise ValueError("sums/counts do not fit the returns chunk and offset")
    _equal_weight_column(n_comb, returns, int(n_symbols), int(offset), sums, counts)


def equal_weight_returns(sums, counts):
    """Portfolio returns from :func:`equal_weight_accumulate`'s totals: ``sums / counts``, NaN where
    no symbol has a return.

    Parameters
    ----------
    sums, counts : arrays of shape (n_bars, n_combinations)

    Returns
    -------
    float64 array of shape (n_bars, n_combinations)
    """
    xp = namespace(sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.where(counts > 0, sums / xp.where(counts > 0, counts, 1), xp.nan)
