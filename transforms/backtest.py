"""Vectorised backtests: one strategy over every (symbol, parameter combination) at once.

Implements: the execution kernel (:func:`run_backtest`), the strategy rules it understands, and
the accumulators it reduces each series to (turned into metrics by :mod:`transforms.metrics`).

Execution semantics
-------------------
- Bars are each symbol's own bars (compacted: a missing bar is skipped, a late listing starts at
  its first bar), as in :mod:`transforms.indicators`.
- A signal is evaluated at the close of bar ``t`` from indicators known at that close, and trades
  at bar ``t+1``: at its open (``trade_on="open"``, the default) or its close (``"close"``).
  Never on bar ``t`` itself.
- Signals are levels, not events: each bar the rule says whether the long (short) entry and exit
  conditions hold; a flat position enters when its entry condition holds, an open position exits
  when its exit condition holds. (Equal to vectorbt's ``from_signals`` given the same boolean
  arrays.) Indicators still in their lookback (NaN) make every condition false.
- ``direction``: "long" (long-only), "short" (short-only) or "both" (a long exits before a short
  enters on the same bar).
- Sizing: on entry, ``size_fraction`` of the cash buys (or shorts) ``q = size_fraction * cash /
  (price * (1 + commission))`` shares at ``price = open * (1 +/- slippage)``; commission is a
  fraction of traded value on every fill (``commission_bps`` and ``slippage_bps`` are in basis
  points). Equity starts at 1 and is marked to market at each close.
- Stops (optional, fractions of the entry price): while a position is open, a bar whose low
  (high) reaches the long stop-loss price exits at that price, or at the open if the bar gapped
  through it; take-profit likewise on the other side; if both are reached in one bar the stop-loss
  is assumed first. After a stop the position is flat until the rule enters again.

Strategy rules
--------------
Every built-in strategy is one of two rule kinds over a series ``x`` and four levels
(``long_in, long_out, short_in, short_out``), each either an indicator series or a constant:

- ``FOLLOW`` (trend, breakout, crosses): long entry ``x > long_in``, long exit ``x < long_out``,
  short entry ``x < short_in``, short exit ``x > short_out``. A cross (SMA, EMA, MACD) is FOLLOW
  with all four levels the slow line.
- ``FADE`` (mean reversion): long entry ``x < long_in``, long exit ``x > long_out``, short entry
  ``x > short_in``, short exit ``x < short_out``.
- ``TARGET``: a user's target positions (-1, 0, +1) per bar, symbol and combination.

Accumulators (per series; see ``ACC``): what the metrics need, reduced on the device in one pass.
"""
from __future__ import annotations

import math

import numpy as np

from transforms._array import namespace
from transforms.kernels import series_kernel

FOLLOW, FADE, TARGET = 0, 1, 2
DIRECTIONS = {"long": 0, "short": 1, "both": 2}
TRADE_ON = {"open": 0, "close": 1}

ACC = ("bars", "returns", "sum_r", "sum_r2", "sum_down2", "sum_log1p", "final_equity", "max_drawdown",
       "max_drawdown_bars", "trades", "wins", "gross_profit", "gross_loss", "sum_trade_return",
       "bars_in_market", "traded_value", "sum_equity", "sum_win_return", "sum_loss_return", "sum_log_trade")
"""Per-series accumulators, in column order of the kernel's output."""
(A_BARS, A_RETURNS, A_SUM_R, A_SUM_R2, A_SUM_DOWN2, A_SUM_LOG1P, A_FINAL, A_MAX_DD, A_MAX_DD_BARS, A_TRADES,
 A_WINS, A_GROSS_PROFIT, A_GROSS_LOSS, A_SUM_TRADE_RET, A_IN_MARKET, A_TRADED, A_SUM_EQUITY, A_SUM_WIN_RET,
 A_SUM_LOSS_RET, A_SUM_LOG_TRADE) = range(len(ACC))


@series_kernel
def _backtest_series(j, n_sym, open_, high, low, close, n, bank, legs, levels, targets, mode, direction,
                     on_close, size_fraction, commission, slippage, stop_loss, take_profit, acc,
                     rows, returns, equity):
    # One (symbol, combination) series: s is the symbol's column, c the combination's row.
    s = j % n_sym
    c = j // n_sym
    m = n[s]
    xi = legs[c, 0]
    li0 = legs[c, 1]
    li1 = legs[c, 2]
    li2 = legs[c, 3]
    li3 = legs[c, 4]
    allow_long = direction != 1
    allow_short = direction != 0
    want_returns = returns.shape[0] > 1
    want_equity = equity.shape[0] > 1

    cash = 1.0
    shares = 0.0
    pos = 0  # current position: -1, 0, +1
    desired = 0  # decided at the previous close, executed this bar
    entry_px = 0.0
    entry_value = 0.0  # cash paid (long) or received (short) at entry, commission included
    prev_eq = 1.0
    peak = 1.0
    peak_bar = 0
    max_dd = 0.0
    max_dd_bars = 0
    n_ret = 0
    sum_r = 0.0
    sum_r2 = 0.0
    sum_down2 = 0.0
    sum_log = 0.0
    trades = 0
    wins = 0
    gross_profit = 0.0
    gross_loss = 0.0
    sum_trade_ret = 0.0
    win_ret = 0.0
    loss_ret = 0.0
    log_trade = 0.0
    in_market = 0
    traded = 0.0
    sum_eq = 0.0

    for i in range(m):
        o = open_[i, s]
        hi = high[i, s]
        lo = low[i, s]
        cl = close[i, s]
        for phase in range(2):
            # phase 0: the open (fills on open, then intrabar stops); phase 1: the close (fills on close).
            if i > 0 and desired != pos and ((phase == 0 and on_close == 0) or (phase == 1 and on_close == 1)):
                px = o if phase == 0 else cl
                if pos != 0:
                    # close the open position
                    if pos == 1:
                        fill = px * (1.0 - slippage)
                        value = shares * fill
                        fee = value * commission
                        cash += value - fee
                        pnl = value - fee - entry_value
                    else:
                        fill = px * (1.0 + slippage)
                        value = -shares * fill
                        fee = value * commission
                        cash -= value + fee
                        pnl = entry_value - value - fee
                    traded += value
                    trades += 1
                    if pnl > 0:
                        wins += 1
                        gross_profit += pnl
                        win_ret += pnl / entry_value
                    else:
                        gross_loss -= pnl
                        loss_ret += pnl / entry_value
                    sum_trade_ret += pnl / entry_value
                    log_trade += math.log1p(pnl / entry_value)
                    shares = 0.0
                    pos = 0
                if desired != 0:
                    if desired == 1:
                        fill = px * (1.0 + slippage)
                        q = size_fraction * cash / (fill * (1.0 + commission))
                        value = q * fill
                        fee = value * commission
                        cash -= value + fee
                        shares = q
                        entry_value = value + fee
                    else:
                        fill = px * (1.0 - slippage)
                        q = size_fraction * cash / (fill * (1.0 + commission))
                        value = q * fill
                        fee = value * commission
                        cash += value - fee
                        shares = -q
                        entry_value = value - fee
                    traded += value
                    entry_px = fill
                    pos = desired
            if phase == 0 and i > 0 and pos != 0 and (stop_loss > 0.0 or take_profit > 0.0):
                # intrabar stops on this bar's range; a gap through the level fills at the open
                hit = False
                fill = 0.0
                if pos == 1:
                    if stop_loss > 0.0 and lo <= entry_px * (1.0 - stop_loss):
                        hit = True
                        fill = min(o, entry_px * (1.0 - stop_loss))
                    elif take_profit > 0.0 and hi >= entry_px * (1.0 + take_profit):
                        hit = True
                        fill = max(o, entry_px * (1.0 + take_profit))
                else:
                    if stop_loss > 0.0 and hi >= entry_px * (1.0 + stop_loss):
                        hit = True
                        fill = max(o, entry_px * (1.0 + stop_loss))
                    elif take_profit > 0.0 and lo <= entry_px * (1.0 - take_profit):
                        hit = True
                        fill = min(o, entry_px * (1.0 - take_profit))
                if hit:
                    if pos == 1:
                        fill = fill * (1.0 - slippage)
                        value = shares * fill
                        fee = value * commission
                        cash += value - fee
                        pnl = value - fee - entry_value
                    else:
                        fill = fill * (1.0 + slippage)
                        value = -shares * fill
                        fee = value * commission
                        cash -= value + fee
                        pnl = entry_value - value - fee
                    traded += value
                    trades += 1
                    if pnl > 0:
                        wins += 1
                        gross_profit += pnl
                        win_ret += pnl / entry_value
                    else:
                        gross_loss -= pnl
                        loss_ret += pnl / entry_value
                    sum_trade_ret += pnl / entry_value
                    log_trade += math.log1p(pnl / entry_value)
                    shares = 0.0
                    pos = 0
                    desired = 0

        # mark to market at the close
        eq = cash + shares * cl
        if pos != 0:
            in_market += 1
        sum_eq += eq
        if i > 0:
            r = eq / prev_eq - 1.0
            n_ret += 1
            sum_r += r
            sum_r2 += r * r
            if r < 0.0:
                sum_down2 += r * r
            sum_log += math.log1p(r)
            if want_returns:
                returns[rows[i, s], j] = r
        if want_equity:
            equity[rows[i, s], j] = eq
        if eq >= peak:
            peak = eq
            peak_bar = i
        else:
            dd = eq / peak - 1.0
            if dd < max_dd:
                max_dd = dd
        if i - peak_bar > max_dd_bars:
            max_dd_bars = i - peak_bar
        prev_eq = eq

        # the signal at this close decides the next bar's position
        if mode == 2:
            t = targets[c, i, s]
            if t == t:  # not NaN
                d = 1 if t > 0 else (-1 if t < 0 else 0)
                if (d == 1 and allow_long) or (d == -1 and allow_short) or d == 0:
                    desired = d
        else:
            x = close[i, s] if xi < 0 else bank[xi, i, s]
            l0 = levels[c, 0] if li0 < 0 else bank[li0, i, s]
            l1 = levels[c, 1] if li1 < 0 else bank[li1, i, s]
            l2 = levels[c, 2] if li2 < 0 else bank[li2, i, s]
            l3 = levels[c, 3] if li3 < 0 else bank[li3, i, s]
            if mode == 0:
                long_in = x > l0
                long_out = x < l1
                short_in = x < l2
                short_out = x > l3
            else:
                long_in = x < l0
                long_out = x > l1
                short_in = x > l2
                short_out = x < l3
            d = pos
            if d == 1 and long_out:
                d = 0
            if d == -1 and short_out:
                d = 0
            if d == 0:
                if allow_long and long_in:
                    d = 1
                elif allow_short and short_in:
                    d = -1
            desired = d

    acc[j, 0] = m
    acc[j, 1] = n_ret
    acc[j, 2] = sum_r
    acc[j, 3] = sum_r2
    acc[j, 4] = sum_down2
    acc[j, 5] = sum_log
    acc[j, 6] = prev_eq
    acc[j, 7] = max_dd
    acc[j, 8] = max_dd_bars
    if pos != 0:
        # the open trade, marked to market at the last close
        if pos == 1:
            pnl = shares * close[m - 1, s] - entry_value
        else:
            pnl = entry_value + shares * close[m - 1, s]
        trades += 1
        if pnl > 0:
            wins += 1
            gross_profit += pnl
            win_ret += pnl / entry_value
        else:
            gross_loss -= pnl
            loss_ret += pnl / entry_value
        sum_trade_ret += pnl / entry_value
        log_trade += math.log1p(pnl / entry_value)
    acc[j, 9] = trades
    acc[j, 10] = wins
    acc[j, 11] = gross_profit
    acc[j, 12] = gross_loss
    acc[j, 13] = sum_trade_ret
    acc[j, 14] = in_market
    acc[j, 15] = traded
    acc[j, 16] = sum_eq
    acc[j, 17] = win_ret
    acc[j, 18] = loss_ret
    acc[j, 19] = log_trade


def run_backtest(prices: dict, n, *, bank, legs, levels, mode: int, targets=None, direction: str = "long",
                 trade_on: str = "open", size_fraction: float = 1.0, commission_bps: float = 0.0,
                 slippage_bps: float = 0.0, stop_loss: float = 0.0, take_profit: float = 0.0,
                 rows=None, n_rows_out: int = 0, want_returns: bool = False, want_equity: bool = False):
    """Backtest every (symbol, combination) of a chunk in one kernel launch.

    Parameters
    ----------
    prices : dict with ``open``, ``high``, ``low``, ``close``: compacted arrays of shape
        (n_bars, n_symbols) (valid bars first in each column, see ``transforms.kernels.compact``)
    n : int array of shape (n_symbols,), valid bars per symbol
    bank : array of shape (n_series_in_bank, n_bars, n_symbols): the indicator windows the rules
        read (compacted like ``prices``)
    legs : int array of shape (n_combinations, 5): bank rows of ``x, long_in, long_out, short_in,
        short_out`` per combination; -1 means ``close`` for ``x`` and the constant in ``levels``
        for a level
    levels : float array of shape (n_combinations, 4): constant levels where ``legs`` is -1
    mode : FOLLOW, FADE or TARGET
    targets : array of shape (n_combinations, n_bars, n_symbols) for TARGET, else None
    direction, trade_on, size_fraction, commission_bps, slippage_bps, stop_loss, take_profit :
        see the module docstring; stops are fractions (0.05 = 5 %), 0 = off
    rows : int array of shape (n_bars, n_symbols): the output row (timestamp) of each compacted
        bar; needed with ``want_returns``/``want_equity``
    n_rows_out : number of timestamps in the returns/equity outputs

    Returns
    -------
    acc : float64 array of shape (n_combinations * n_symbols, len(ACC)); series ``j`` is symbol
        ``j % n_symbols`` of combination ``j // n_symbols``
    returns : float64 array of shape (n_rows_out, n_series) of bar returns (NaN where the symbol
        has no bar or on its first bar), or None
    equity : float64 array of the same shape of equity at each close, or None
    """
    close = prices["close"]
    xp = namespace(close)
    n_bars, n_sym = close.shape
    n_comb = legs.shape[0]
    n_series = n_comb * n_sym
    acc = xp.zeros((n_series, len(ACC)), dtype=xp.float64)
    dummy = xp.zeros((1, 1), dtype=xp.float64)
    returns = xp.full((n_rows_out, n_series), xp.nan) if want_returns else dummy
    equity = xp.full((n_rows_out, n_series), xp.nan) if want_equity else dummy
    if rows is None:
        rows = xp.zeros((1, 1), dtype=xp.int64)
    if targets is None:
        targets = xp.zeros((1, 1, 1), dtype=close.dtype)
    _backtest_series(n_series, n_sym, prices["open"], prices["high"], prices["low"], close, n, bank,
                     legs, levels, targets, int(mode), DIRECTIONS[direction], TRADE_ON[trade_on],
                     float(size_fraction), commission_bps * 1e-4, slippage_bps * 1e-4, float(stop_loss),
                     float(take_profit), acc, rows, returns, equity)
    return acc, (returns if want_returns else None), (equity if want_equity else None)
