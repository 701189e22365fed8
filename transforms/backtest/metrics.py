"""Performance metrics of backtested series, from the kernel's accumulators.

Implements, per series: total return, CAGR, annualised return and volatility, Sharpe, Sortino,
Calmar, max drawdown and its duration, number of trades, win rate, profit factor, average trade,
exposure, turnover. Two sets of definitions (``definitions=``), each checked against its library
in ``tests/transforms/backtest/test_backtest.py``:

``"alphapulse"`` (the default): vectorbt 1.2's definitions, risk-free rate 0. With equity ``E``
starting at 1 and ``P`` periods a year, the returns are ``r_t = E_t / E_{t-1} - 1`` over the
series' ``N = bars`` periods, the first from the initial cash to the first close (``r = 0``: no
trade fills on the first bar), as vectorbt's ``Portfolio.returns()``:

- total_return = E_end - 1; cagr = E_end ** (P / N) - 1 (vectorbt's ``annualized_return``)
- ann_return = mean(r) * P; ann_volatility = std(r, ddof=1) * sqrt(P)
- sharpe = mean(r) / std(r, ddof=1) * sqrt(P)
- sortino = mean(r) / sqrt(mean(min(r, 0)^2)) * sqrt(P)
- max_drawdown = min_t(E_t / max_{s<=t} E_s - 1) (<= 0); calmar = cagr / |max_drawdown|
- trades: round trips, the open one at the end included, marked to the last close without exit
  costs (vectorbt's ``trades``, open ones included); win_rate: share with PnL > 0;
  profit_factor: gross PnL of winners / gross PnL of losers; avg_trade: mean trade return
  (``PnL / (shares * entry price)``, PnL net of commissions)
- exposure: share of bars closing with a position (vectorbt's ``position_coverage``)

``"backtesting.py"``: backtesting.py 0.6.6's ``compute_stats`` on the same series, with its
default ``finalize_trades=False``. Returns are the ``N = bars - 1`` bar-to-bar returns, ``g``
their geometric mean:

- ann_return = (1 + g) ** P - 1; ann_volatility = sqrt((var(r, ddof=1) + (1 + g)^2) ** P -
  (1 + g) ** (2P)); sharpe = ann_return / ann_volatility
- sortino = ann_return / (sqrt(mean(min(r, 0)^2)) * sqrt(P)); calmar = ann_return / |max_drawdown|
- trades, win_rate, profit_factor, avg_trade over *closed* trades only (the one still open at
  the end is left out, as backtesting.py leaves it out); profit_factor = sum of winning trade
  returns / |sum of losing trade returns|; avg_trade = geometric mean of trade returns (0 when a
  trade lost 100 % or more, as backtesting.py's)
- exposure: bars from each closed trade's entry bar to its exit bar (both included) / bars
- cagr = E_end ** (P / N) - 1 with its N: backtesting.py's own CAGR counts calendar days, which
  the accumulators do not see.

In both: max_drawdown_bars is the longest run of bars below a previous peak; turnover is traded
value / average equity, per year. Undefined ratios (no trades, zero volatility, no drawdown,
equity that reached zero) are NaN, never an error.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.backtest.engine import ACC

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
    acc : float64 array of shape (n_series, len(ACC)) from ``alphapulse.transforms.backtest.engine.run_backtest``
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
    vbt = definitions == "alphapulse"
    # vectorbt counts a first period, from the initial cash to the first close (return 0);
    # backtesting.py counts the bar-to-bar returns only.
    n = a["bars"] if vbt else a["returns"]
    mean = _div(xp, a["sum_r"], n)
    var = _div(xp, a["sum_r2"] - a["sum_r"] * mean, n - 1)
    std = xp.sqrt(xp.maximum(var, 0.0))
    downside = xp.sqrt(_div(xp, a["sum_down2"], n))
    final = a["final_equity"]
    max_dd = a["max_drawdown"]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cagr = xp.where(n > 0, final ** _div(xp, xp.full_like(n, ppy), n) - 1.0, xp.nan)
    out = {
        "total_return": final - 1.0,
        "cagr": cagr,
        "max_drawdown": max_dd,
        "max_drawdown_bars": a["max_drawdown_bars"],
        "turnover": _div(xp, a["traded_value"] * ppy, _div(xp, a["sum_equity"], a["bars"]) * a["returns"]),
    }
    if vbt:
        trades = a["trades"]
        out["trades"] = trades
        out["win_rate"] = _div(xp, a["wins"], trades)
        out["exposure"] = _div(xp, a["bars_in_market"], a["bars"])
        out["ann_return"] = mean * ppy
        out["ann_volatility"] = std * np.sqrt(ppy)
        out["sharpe"] = _div(xp, mean, std) * np.sqrt(ppy)
        out["sortino"] = _div(xp, mean, downside) * np.sqrt(ppy)
        out["calmar"] = _div(xp, cagr, xp.abs(max_dd))
        out["profit_factor"] = _div(xp, a["gross_profit"], a["gross_loss"])
        out["avg_trade"] = _div(xp, a["sum_trade_return"], trades)
    else:
        # closed trades only: take the trade still open at the end back out
        is_open = a["open_trades"] > 0
        open_ret = xp.where(is_open, a["open_trade_return"], 0.0)
        trades = a["trades"] - a["open_trades"]
        wins = a["wins"] - xp.where(open_ret > 0, 1.0, 0.0)
        win_ret = a["sum_win_return"] - xp.maximum(open_ret, 0.0)
        loss_ret = a["sum_loss_return"] - xp.minimum(open_ret, 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            log_trade = a["sum_log_trade"] - xp.log1p(open_ret)
            g = xp.exp(_div(xp, a["sum_log1p"], n)) - 1.0
            avg_trade = xp.exp(_div(xp, log_trade, trades)) - 1.0
            ann_return = (1.0 + g) ** ppy - 1.0
            ann_vol = xp.sqrt((var + (1.0 + g) ** 2) ** ppy - (1.0 + g) ** (2 * ppy))
        out["trades"] = trades
        out["win_rate"] = _div(xp, wins, trades)
        out["exposure"] = _div(xp, a["closed_trade_bars"], a["bars"])
        out["ann_return"] = ann_return
        out["ann_volatility"] = ann_vol
        out["sharpe"] = _div(xp, ann_return, ann_vol)
        out["sortino"] = _div(xp, ann_return, downside * np.sqrt(ppy))
        out["calmar"] = _div(xp, ann_return, xp.abs(max_dd))
        out["profit_factor"] = _div(xp, win_ret, xp.abs(loss_ret))
        # backtesting.py's geometric mean is 0 when a trade lost 100 % or more
        out["avg_trade"] = xp.where(trades > 0, xp.where(xp.isfinite(log_trade), avg_trade, 0.0), xp.nan)
    return {k: out[k] for k in METRICS}
