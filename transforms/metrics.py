"""Performance metrics of backtested series, from the kernel's accumulators.

Implements, per series: total return, CAGR, annualised return and volatility, Sharpe, Sortino,
Calmar, max drawdown and its duration, number of trades, win rate, profit factor, average trade,
exposure, turnover. Two sets of definitions (``definitions=``):

``"alphapulse"`` (the default; vectorbt's conventions, risk-free rate 0). With bar returns
``r_t = E_t / E_{t-1} - 1`` over the series' N = bars - 1 return periods and ``P`` periods a year:

- total_return = E_end - 1 (equity starts at 1); cagr = E_end ** (P / N) - 1
- ann_return = mean(r) * P; ann_volatility = std(r, ddof=1) * sqrt(P)
- sharpe = mean(r) / std(r, ddof=1) * sqrt(P)
- sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)
- max_drawdown = min_t(E_t / max_{s<=t} E_s - 1) (<= 0); max_drawdown_bars: the longest time, in
  bars, spent below a previous peak; calmar = cagr / |max_drawdown|
- trades: round trips, the open one at the end marked to the last close; win_rate: share with
  PnL > 0; profit_factor: gross PnL of winners / gross PnL of losers; avg_trade: mean trade return
  (PnL / entry value, commissions included)
- exposure: share of bars in the market; turnover: traded value / average equity, per year

``"backtesting.py"``: backtesting.py's ``compute_stats`` formulas on the same series: geometric
annual return ``(1 + gmean(r)) ** P - 1``; its annual volatility
``sqrt((var(r) + (1 + g)^2) ** P - (1 + g) ** (2P))``; Sharpe = ann_return / ann_volatility;
Sortino = ann_return / (sqrt(mean(min(r, 0)^2)) * sqrt(P)); Calmar = ann_return / |max_drawdown|;
profit factor = sum of winning trade returns / |sum of losing trade returns|; avg trade = geometric
mean of trade returns.

Undefined ratios (no trades, zero volatility, no drawdown) are NaN, never an error.
"""
from __future__ import annotations

import numpy as np

from transforms._array import namespace
from transforms.backtest import ACC

METRICS = ("total_return", "cagr", "ann_return", "ann_volatility", "sharpe", "sortino", "calmar",
           "max_drawdown", "max_drawdown_bars", "trades", "win_rate", "profit_factor", "avg_trade",
           "exposure", "turnover")


def _div(xp, a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return xp.where(b != 0, a / xp.where(b != 0, b, 1.0), xp.nan)


def metrics_from_acc(acc, *, periods_per_year: float = 252.0, definitions: str = "alphapulse") -> dict:
    """Metrics of each series from its accumulators.

    Parameters
    ----------
    acc : float64 array of shape (n_series, len(ACC)) from ``transforms.backtest.run_backtest``
    periods_per_year : bars per year (252 for daily bars)
    definitions : "alphapulse" or "backtesting.py" (see the module docstring)

    Returns
    -------
    dict of metric name (``METRICS``) to float64 array of shape (n_series,)
    """
    if definitions not in ("alphapulse", "backtesting.py"):
        raise ValueError(f"unknown definitions {definitions!r}: expected 'alphapulse' or 'backtesting.py'")
    xp = namespace(acc)
    a = {name: acc[:, i] for i, name in enumerate(ACC)}
    ppy = float(periods_per_year)
    n = a["returns"]
    mean = _div(xp, a["sum_r"], n)
    var = _div(xp, a["sum_r2"] - a["sum_r"] * mean, n - 1)
    std = xp.sqrt(xp.maximum(var, 0.0))
    downside = xp.sqrt(_div(xp, a["sum_down2"], n))
    final = a["final_equity"]
    max_dd = a["max_drawdown"]
    trades = a["trades"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cagr = xp.where(n > 0, final ** _div(xp, xp.full_like(n, ppy), n) - 1.0, xp.nan)
    out = {
        "total_return": final - 1.0,
        "cagr": cagr,
        "max_drawdown": max_dd,
        "max_drawdown_bars": a["max_drawdown_bars"],
        "trades": trades,
        "win_rate": _div(xp, a["wins"], trades),
        "exposure": _div(xp, a["bars_in_market"], a["bars"]),
        "turnover": _div(xp, a["traded_value"] * ppy, _div(xp, a["sum_equity"], a["bars"]) * n),
    }
    if definitions == "alphapulse":
        out["ann_return"] = mean * ppy
        out["ann_volatility"] = std * np.sqrt(ppy)
        out["sharpe"] = _div(xp, mean, std) * np.sqrt(ppy)
        out["sortino"] = _div(xp, mean, downside) * np.sqrt(ppy)
        out["calmar"] = _div(xp, cagr, xp.abs(max_dd))
        out["profit_factor"] = _div(xp, a["gross_profit"], a["gross_loss"])
        out["avg_trade"] = _div(xp, a["sum_trade_return"], trades)
    else:
        g = xp.exp(_div(xp, a["sum_log1p"], n)) - 1.0
        ann_return = (1.0 + g) ** ppy - 1.0
        with np.errstate(invalid="ignore"):
            ann_vol = xp.sqrt((var + (1.0 + g) ** 2) ** ppy - (1.0 + g) ** (2 * ppy))
        out["ann_return"] = ann_return
        out["ann_volatility"] = ann_vol
        out["sharpe"] = _div(xp, ann_return, ann_vol)
        out["sortino"] = _div(xp, ann_return, downside * np.sqrt(ppy))
        out["calmar"] = _div(xp, ann_return, xp.abs(max_dd))
        out["profit_factor"] = _div(xp, a["sum_win_return"], xp.abs(a["sum_loss_return"]))
        out["avg_trade"] = xp.where(trades > 0, xp.exp(_div(xp, a["sum_log_trade"], trades)) - 1.0, xp.nan)
    return {k: out[k] for k in METRICS}
