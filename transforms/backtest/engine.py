"""Vectorised backtests: one strategy over every (symbol, parameter combination) at once.

Implements: the execution kernel (:func:`run_backtest`), the strategy rules it understands, the
accumulators it reduces each series to (turned into metrics by :mod:`alphapulse.transforms.backtest.metrics`), and
the input preparation: :func:`compact_bars` (each symbol's own bars) and :func:`indicator_bank`
(a plan's indicator series, in the memory layout the kernel reads fastest).

Execution semantics
-------------------
- Bars are each symbol's own bars (compacted: a missing bar is skipped, a late listing starts at
  its first bar), as in :mod:`alphapulse.transforms.indicators.registry`.
- A signal is evaluated at the close of bar ``t`` from indicators known at that close, and trades
  at bar ``t+1``: at its open (``trade_on="open"``, the default) or its close (``"close"``).
  Never on bar ``t`` itself.
- Signals are levels, not events: each bar the rule says whether the long (short) entry and exit
  conditions hold; a flat position enters when its entry condition holds, an open position exits
  when its exit condition holds. Indicators still in their lookback (NaN) make every condition
  false.
- ``direction``: "long" (long-only), "short" (short-only) or "both" (a long exits before a short
  enters on the same bar: a reversal, two fills at one price).
- Sizing: on entry, ``size_fraction`` of the cash buys (or shorts) ``q = size_fraction * cash /
  (fill * (1 + commission))`` shares at ``fill = price * (1 +/- slippage)`` (``price`` the open
  or the close), so that cost plus commission is ``size_fraction`` of the cash; commission is a
  fraction of traded value on every fill, slippage moves every fill against the trade
  (``commission_bps`` and ``slippage_bps`` are in basis points). A short receives its proceeds
  in cash and owes the shares. Equity (cash + shares * close) starts at 1 and is marked to
  market at each close.
- Ruin: equity that reaches zero stops trading. When an exit leaves no cash, or a close marks
  the equity at or below zero (a short that more than doubled), the position is closed there
  (at the close, without costs), the loss beyond the equity is not booked (the trade loses what
  the series had), and the series stays flat with equity 0 from then on: that bar's return is
  -1, later ones 0, whatever the rule says.
- Stops (optional, fractions of the entry fill price): while a position is open, a bar whose low
  (high) reaches the long stop-loss price exits there (with slippage), or at the open if the bar
  gapped through it; take-profit likewise on the other side; if both are reached in one bar the
  stop-loss is assumed first. When trading on the open, the entry bar's own range after the
  open can stop the new position; a fill on a signal at the open comes before the bar's stops.
  After a stop the position is flat until the rule enters again (at the next bar at the
  earliest: a level that still holds re-enters then).
- Trade statistics count round trips; the trade still open at the end is marked to the last
  close (no exit costs). A trade's return is ``PnL / (shares * entry fill)``, PnL net of both
  commissions.

Agreement with the reference libraries (``tests/transforms/backtest/test_backtest.py``)
---------------------------------------------------------------------------
- vectorbt 1.2 ``Portfolio.from_signals``, given our conditions shifted one bar as
  entries/exits (and ``short_entries``/``short_exits``), ``price`` = open or close, ``fees``,
  ``slippage``, ``init_cash=1`` and ``size=np.inf`` (our ``size_fraction=1``) or ``size=f,
  size_type="percent"`` (our ``size_fraction=f``, one direction: vectorbt refuses percent sizes
  on reversals): the same equity curve, to ~1e-14. With stops (``sl_stop``/``tp_stop``,
  ``stop_entry_price="fillprice"``, ``stop_exit_price="stopmarket"``) too when trading on the
  close. Trading on the open, vectorbt arms a stop only after the entry bar and so misses a stop
  hit within the entry bar; we follow backtesting.py, which checks it (an order's protective stop
  exists from its fill): that is the one difference.
- backtesting.py 0.6.6 (next-open fills, relative commission, fractional ``size``): the same
  trades and equity (to its whole-unit rounding), with and without stops. The exception is its
  order of events when an exit signal and an intrabar stop fall in the same bar: backtesting.py
  processes the stop order first even when the exit at the open comes first in time; we exit at
  the open.

Strategy rules
--------------
Every built-in strategy is one of two rule kinds over a series ``x`` and four levels
(``long_in, long_out, short_in, short_out``), each either an indicator series or a constant:

- ``FOLLOW`` (trend, breakout, crosses): long entry ``x > long_in``, long exit ``x < long_out``,
  short entry ``x < short_in``, short exit ``x > short_out``. A cross (SMA, EMA, MACD) is FOLLOW
  with all four levels the slow line.
- ``FADE`` (mean reversion): long entry ``x < long_in``, long exit ``x > long_out``, short entry
  ``x > short_in``, short exit ``x < short_out``.
- ``TARGET``: a user's target positions (-1, 0, +1; NaN keeps the current one) per bar, symbol
  and combination; a side that ``direction`` forbids is flat (long-only: -1 means out).

Accumulators (per series; see ``ACC``): what the metrics need, reduced on the device in one pass.
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.kernels import compact, lengths, series_kernel, series_order, valid_mask

FOLLOW, FADE, TARGET = 0, 1, 2
DIRECTIONS = {"long": 0, "short": 1, "both": 2}
TRADE_ON = {"open": 0, "close": 1}

ACC = ("bars", "returns", "sum_r", "sum_r2", "sum_down2", "sum_log1p", "final_equity", "max_drawdown",
       "max_drawdown_bars", "trades", "wins", "gross_profit", "gross_loss", "sum_trade_return",
       "bars_in_market", "traded_value", "sum_equity", "sum_win_return", "sum_loss_return", "sum_log_trade",
       "open_trades", "open_trade_return", "closed_trade_bars", "position", "next_position", "state_bar")
"""Per-series accumulators, in column order of the kernel's output.

- ``bars``: the series' bars; ``returns``: its bar returns (``bars - 1``: none on the first bar);
  ``sum_r``, ``sum_r2``, ``sum_down2``: sums of ``r``, ``r**2`` and ``min(r, 0)**2`` over them;
  ``sum_log1p``: ``sum(log1p(r)) = log(final_equity)`` (NaN after a ruin: equity reached 0);
  ``final_equity`` (starts at 1); ``max_drawdown`` (<= 0) and ``max_drawdown_bars`` (the longest
  run of bars below a previous peak);
- trades, the one still open at the end included (marked to the last close, no exit costs):
  ``trades``, ``wins`` (PnL > 0), ``gross_profit`` / ``gross_loss`` (sums of PnL > 0 / of -PnL
  <= 0, in units of the initial equity), ``sum_trade_return``, ``sum_win_return``,
  ``sum_loss_return``, ``sum_log_trade`` (sums of the trade return, of those > 0, of those <= 0, of
  ``log1p``); a trade's return is ``PnL / (shares * entry fill price)`` (PnL net of both
  commissions; the denominator without them), as vectorbt and backtesting.py define it;
- ``bars_in_market``: bars that close with a position; ``traded_value``: sum of fills' values;
  ``sum_equity``: sum of the closing equity;
- ``open_trades`` (0 or 1) and ``open_trade_return``: the trade open at the end (0 when flat), so
  that metrics can leave it out as backtesting.py does; ``closed_trade_bars``: bars from a closed
  trade's entry bar to its exit bar, both included, over the closed trades (backtesting.py's exposure);
- ``position`` (held at the last close), ``next_position`` (asked for by the signal at that close,
  held after the next bar's fill) and ``state_bar`` (the bar the held position, or flatness, began
  on: 0 if never traded): the daily signals (:mod:`alphapulse.transforms.backtest.signals`).
"""

_f64 = np.float64  # read every stored value as float64 (float32 panels compute in float64)


@series_kernel
def _backtest_series(j, n_sym, open_, high, low, close, n, bank, legs, levels, targets, mode, direction,
                     on_close, size_fraction, commission, slippage, stop_loss, take_profit, acc,
                     rows, returns, equity, positions):
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
    use_stops = stop_loss > 0.0 or take_profit > 0.0
    want_returns = returns.shape[0] > 1  # an unwanted output is a 1 x 1 placeholder
    want_equity = equity.shape[0] > 1
    want_positions = positions.shape[0] > 1

    cash = 1.0
    shares = 0.0
    pos = 0  # current position: -1, 0, +1
    desired = 0  # decided at the previous close, executed this bar
    entry_px = 0.0  # entry fill price (slippage included): the stops' reference
    entry_cost = 0.0  # cash paid (long) or received (short) at entry, commission included
    entry_gross = 0.0  # shares * entry fill price: the denominator of the trade's return
    entry_bar = state_bar = 0  # the entry's bar; the bar the current position (or flatness) began on
    last_counted = -1  # last bar counted in closed_trade_bars
    prev_eq = 1.0
    ruined = False
    peak = 1.0
    peak_bar = 0
    max_dd = 0.0
    max_dd_bars = 0
    n_ret = 0
    sum_r = 0.0
    sum_r2 = 0.0
    sum_down2 = 0.0
    trades = 0
    wins = 0
    gross_profit = 0.0
    gross_loss = 0.0
    sum_trade_ret = 0.0
    win_ret = 0.0
    loss_ret = 0.0
    log_trade = 0.0
    closed_bars = 0
    in_market = 0
    traded = 0.0
    sum_eq = 0.0

    for i in range(m):
        cl = _f64(close[i, s])
        if i > 0 and (desired != pos or (use_stops and pos != 0)):
            # Three moments of a bar: 0 the open (fills when trading on the open), 1 intrabar
            # (stops, on the position held after the open), 2 the close (fills when trading on
            # the close).
            for phase in range(3):
                do_exit = False
                do_entry = False
                px = 0.0
                if phase == 1:
                    if use_stops and pos != 0:
                        o = _f64(open_[i, s])
                        hi = _f64(high[i, s])
                        lo = _f64(low[i, s])
                        # a gap through the level fills at the open; the stop-loss first
                        if pos == 1:
                            if stop_loss > 0.0 and lo <= entry_px * (1.0 - stop_loss):
                                do_exit = True
                                px = min(o, entry_px * (1.0 - stop_loss))
                            elif take_profit > 0.0 and hi >= entry_px * (1.0 + take_profit):
                                do_exit = True
                                px = max(o, entry_px * (1.0 + take_profit))
                        else:
                            if stop_loss > 0.0 and hi >= entry_px * (1.0 + stop_loss):
                                do_exit = True
                                px = max(o, entry_px * (1.0 + stop_loss))
                            elif take_profit > 0.0 and lo <= entry_px * (1.0 - take_profit):
                                do_exit = True
                                px = min(o, entry_px * (1.0 - take_profit))
                        if do_exit:
                            desired = 0
                elif phase == 2 * on_close and desired != pos:
                    px = _f64(open_[i, s]) if phase == 0 else cl
                    do_exit = pos != 0
                    do_entry = desired != 0
                if do_exit:
                    if pos == 1:
                        fill = px * (1.0 - slippage)
                        value = shares * fill
                        fee = value * commission
                        cash += value - fee
                        pnl = value - fee - entry_cost
                    else:
                        fill = px * (1.0 + slippage)
                        value = -shares * fill
                        fee = value * commission
                        cash -= value + fee
                        pnl = entry_cost - value - fee
                    traded += value
                    if cash <= 0.0:  # ruin: the trade loses what the series had, not more
                        pnl -= cash
                        cash = 0.0
                        ruined = True
                        desired = 0
                        do_entry = False
                    trades += 1
                    ret = pnl / entry_gross
                    if pnl > 0.0:
                        wins += 1
                        gross_profit += pnl
                        win_ret += ret
                    else:
                        gross_loss -= pnl
                        loss_ret += ret
                    sum_trade_ret += ret
                    log_trade += math.log1p(ret) if ret > -1.0 else -math.inf
                    closed_bars += i - entry_bar + (0 if entry_bar == last_counted else 1)
                    last_counted = i
                    shares = 0.0
                    pos, state_bar = 0, i
                if do_entry:
                    if desired == 1:
                        fill = px * (1.0 + slippage)
                        q = size_fraction * cash / (fill * (1.0 + commission))
                        value = q * fill
                        fee = value * commission
                        cash -= value + fee
                        shares = q
                        entry_cost = value + fee
                    else:
                        fill = px * (1.0 - slippage)
                        q = size_fraction * cash / (fill * (1.0 + commission))
                        value = q * fill
                        fee = value * commission
                        cash += value - fee
                        shares = -q
                        entry_cost = value - fee
                    traded += value
                    entry_px = fill
                    entry_gross = value
                    entry_bar = state_bar = i
                    pos = desired

        # mark to market at the close
        eq = cash + shares * cl
        if eq <= 0.0 and not (ruined and pos == 0):
            # ruin: close the position at this close; it loses the equity it started from
            if pos != 0:
                pnl = (shares * cl - entry_cost if pos == 1 else entry_cost + shares * cl) - eq
                traded += abs(shares) * cl
                trades += 1
                ret = pnl / entry_gross
                if pnl > 0.0:
                    wins += 1
                    gross_profit += pnl
                    win_ret += ret
                else:
                    gross_loss -= pnl
                    loss_ret += ret
                sum_trade_ret += ret
                log_trade += math.log1p(ret) if ret > -1.0 else -math.inf
                closed_bars += i - entry_bar + (0 if entry_bar == last_counted else 1)
                last_counted = i
                shares = 0.0
                pos, state_bar = 0, i
            cash = 0.0
            eq = 0.0
            ruined = True
            desired = 0
        if pos != 0:
            in_market += 1
        sum_eq += eq
        if i > 0:
            r = eq / prev_eq - 1.0 if prev_eq > 0.0 else 0.0
            n_ret += 1
            sum_r += r
            sum_r2 += r * r
            if r < 0.0:
                sum_down2 += r * r
            if want_returns:
                returns[rows[i, s], j] = r
        if want_equity:
            equity[rows[i, s], j] = eq
        if want_positions:
            positions[rows[i, s], j] = pos
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
            t = _f64(targets[c, i, s])
            if t == t:  # not NaN
                d = 1 if t > 0 else (-1 if t < 0 else 0)
                if (d == 1 and not allow_long) or (d == -1 and not allow_short):
                    d = 0  # a side the direction forbids means flat
                desired = d
        else:
            x = cl if xi < 0 else _f64(bank[xi, i, s])
            l0 = levels[c, 0] if li0 < 0 else _f64(bank[li0, i, s])
            l1 = levels[c, 1] if li1 < 0 else _f64(bank[li1, i, s])
            l2 = levels[c, 2] if li2 < 0 else _f64(bank[li2, i, s])
            l3 = levels[c, 3] if li3 < 0 else _f64(bank[li3, i, s])
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
        if ruined:
            desired = 0

    open_ret = 0.0
    if pos != 0:
        # the open trade, marked to market at the last close (no exit costs)
        last = _f64(close[m - 1, s])
        if pos == 1:
            pnl = shares * last - entry_cost
        else:
            pnl = entry_cost + shares * last
        open_ret = pnl / entry_gross
        trades += 1
        if pnl > 0.0:
            wins += 1
            gross_profit += pnl
            win_ret += open_ret
        else:
            gross_loss -= pnl
            loss_ret += open_ret
        sum_trade_ret += open_ret
        log_trade += math.log1p(open_ret)

    acc[j, 0] = m
    acc[j, 1] = n_ret
    acc[j, 2] = sum_r
    acc[j, 3] = sum_r2
    acc[j, 4] = sum_down2
    acc[j, 5] = math.nan if ruined else (math.log(prev_eq) if m > 0 else 0.0)
    acc[j, 6] = prev_eq
    acc[j, 7] = max_dd
    acc[j, 8] = max_dd_bars
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
    acc[j, 20] = 1.0 if pos != 0 else 0.0
    acc[j, 21] = open_ret
    acc[j, 22] = closed_bars
    acc[j, 23] = pos
    acc[j, 24] = desired
    acc[j, 25] = state_bar


def run_backtest(prices: dict, n, *, bank, legs, levels, mode: int, targets=None, direction: str = "long",
                 trade_on: str = "open", size_fraction: float = 1.0, commission_bps: float = 0.0,
                 slippage_bps: float = 0.0, stop_loss: float = 0.0, take_profit: float = 0.0,
                 rows=None, n_rows_out: int = 0, want_returns: bool = False, want_equity: bool = False,
                 positions_out=None):
    """Backtest every (symbol, combination) of a chunk in one kernel launch.

    Parameters
    ----------
    prices : dict with ``open``, ``high``, ``low``, ``close``: compacted arrays of shape
        (n_bars, n_symbols) (valid bars first in each column: :func:`compact_bars`); float32 or
        float64, computed in float64
    n : int array of shape (n_symbols,), valid bars per symbol
    bank : array of shape (n_series_in_bank, n_bars, n_symbols): the indicator series the rules
        read (compacted like ``prices``; :func:`indicator_bank` builds it in the fast layout)
    legs : int array of shape (n_combinations, 5): bank rows of ``x, long_in, long_out, short_in,
        short_out`` per combination; -1 means ``close`` for ``x`` and the constant in ``levels``
        for a level
    levels : float array of shape (n_combinations, 4): constant levels where ``legs`` is -1
    mode : FOLLOW, FADE or TARGET
    targets : array of shape (n_combinations, n_bars, n_symbols) for TARGET, else None
    direction, trade_on, size_fraction, commission_bps, slippage_bps, stop_loss, take_profit :
        see the module docstring; stops are fractions (0.05 = 5 %), 0 = off
    rows : int array of shape (n_bars, n_symbols): the output row (timestamp) of each compacted
        bar; needed with ``want_returns``/``want_equity``/``positions_out``
    n_rows_out : number of timestamps in the returns/equity outputs
    positions_out : optional float array of shape (n_rows_out, n_series), filled in place with the
        position held at each close (1, -1 or 0) where the symbol has a bar (other rows are left
        as they are)

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
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {list(DIRECTIONS)}, got {direction!r}")
    if trade_on not in TRADE_ON:
        raise ValueError(f"trade_on must be one of {list(TRADE_ON)}, got {trade_on!r}")
    if not 0.0 < size_fraction <= 1.0:
        raise ValueError(f"size_fraction must be in (0, 1], got {size_fraction!r}")
    if min(commission_bps, slippage_bps, stop_loss, take_profit) < 0:
        raise ValueError("commission_bps, slippage_bps, stop_loss and take_profit must be >= 0")
    acc = xp.zeros((n_series, len(ACC)), dtype=xp.float64)
    # Outputs not wanted are 1 x 1 placeholders (the kernel tests for more than one row), so a
    # wanted output gets at least 2 rows and is cut back to n_rows_out.
    dummy = xp.zeros((1, 1), dtype=xp.float64)
    n_alloc = max(int(n_rows_out), 2)
    returns = xp.full((n_alloc, n_series), xp.nan) if want_returns else dummy
    equity = xp.full((n_alloc, n_series), xp.nan) if want_equity else dummy
    if positions_out is not None and positions_out.shape != (n_rows_out, n_series):
        raise ValueError(f"positions_out must have shape {(n_rows_out, n_series)}, got {positions_out.shape}")
    if (want_returns or want_equity or positions_out is not None) and rows is None:
        raise ValueError("per-bar outputs need rows (the output row of each compacted bar)")
    positions = dummy
    if positions_out is not None:
        positions = positions_out if n_rows_out > 1 else xp.concatenate([positions_out, positions_out])
    if rows is None:
        rows = xp.zeros((1, 1), dtype=xp.int64)
    if targets is None:
        targets = xp.zeros((1, 1, 1), dtype=close.dtype)
    _backtest_series(n_series, n_sym, prices["open"], prices["high"], prices["low"], close, n, bank,
                     legs, levels, targets, int(mode), DIRECTIONS[direction], TRADE_ON[trade_on],
                     float(size_fraction), commission_bps * 1e-4, slippage_bps * 1e-4, float(stop_loss),
                     float(take_profit), acc, rows, returns, equity, positions)
    if positions_out is not None and positions is not positions_out:
        positions_out[...] = positions[:n_rows_out]
    if n_alloc != n_rows_out:
        returns, equity = returns[:n_rows_out], equity[:n_rows_out]
    return acc, (returns if want_returns else None), (equity if want_equity else None)


def compact_bars(bars: dict, *, fields=("open", "high", "low", "close")):
    """A panel with missing bars as the engine wants it: each symbol's own bars, in order.

    Parameters
    ----------
    bars : dict of str to array of shape (n_bars, n_symbols), NaN where a symbol has no bar
        (``close`` decides, as in :func:`alphapulse.transforms.indicators.registry.compute_indicators`)
    fields : the entries to compact (at least open, high, low, close; add ``volume`` for
        indicators that read it)

    Returns
    -------
    prices : dict of field to compacted array of shape (n_bars, n_symbols), in
        :func:`series_order`, float dtype of ``close``
    n : int64 array of shape (n_symbols,): bars per symbol
    rows : int64 array of shape (n_bars, n_symbols): the panel row (timestamp) of each compacted
        bar, -1 below the symbol's last bar (``run_backtest``'s ``rows``)
    """
    close = bars["close"]
    xp = namespace(close, *(bars[k] for k in fields))  # a host field would be copied over silently
    order = series_order(xp)
    dtype = float_dtype(close)
    valid = valid_mask(close)
    n = lengths(valid)
    prices = {k: compact(xp.asarray(bars[k], dtype=dtype, order=order), valid) for k in fields}
    n_bars, n_sym = close.shape
    index = xp.empty((n_bars, n_sym), dtype=xp.float64, order=order)
    index[...] = xp.arange(n_bars, dtype=xp.float64)[:, None]
    index = compact(index, valid)
    rows = xp.where(xp.isnan(index), -1, index).astype(xp.int64)
    return prices, n, rows


def indicator_bank(bank: list, prices: dict, n, *, dtype=None):
    """The indicator series a plan's rules read, computed on compacted bars, in the engine's layout.

    Parameters
    ----------
    bank : list of (IndicatorSpec, output column name): ``Plan.bank`` (``alphapulse.transforms.backtest.strategies``)
    prices : compacted inputs from :func:`compact_bars` (those the indicators read)
    n : bars per symbol, from :func:`compact_bars`
    dtype : float dtype of the bank (default: that of ``prices["close"]``)

    Returns
    -------
    array of shape (max(len(bank), 2), n_bars, n_symbols) (a NaN row pads a one-row bank; a
    plan without indicators gets a (2, 2, 2) placeholder), each (row, symbol) series contiguous in time
    on the CPU and symbol-adjacent on the GPU (see :func:`series_order`); NaN over each
    indicator's lookback and below each symbol's last bar. A multi-output indicator (Bollinger
    bands) is computed once for all of its outputs in the bank.
    """
    close = prices["close"]
    xp = namespace(close)
    dtype = float_dtype(close) if dtype is None else np.dtype(dtype)
    n_bars, n_sym = close.shape
    if not bank:  # the rules read no indicator (TARGET, or close vs constants)
        return xp.full((2, 2, 2), np.nan, dtype=dtype)
    # At least two rows: a one-row bank is both C- and F-contiguous, which Numba types as another
    # layout and compiles the whole engine again for (5-10 s on first use).
    rows = max(len(bank), 2)
    if series_order(xp) == "F":
        out = xp.full((rows, n_sym, n_bars), np.nan, dtype=dtype).transpose(0, 2, 1)
    else:
        out = xp.full((rows, n_bars, n_sym), np.nan, dtype=dtype)
    by_spec = {}
    for row, (spec, column) in enumerate(bank):
        by_spec.setdefault((spec.name, tuple(sorted(spec.resolved_params().items()))), []).append((row, spec, column))
    for entries in by_spec.values():
        spec = entries[0][1]
        ind = spec.indicator
        outputs = ind.compute(*(prices[name] for name in ind.inputs), n, **spec.resolved_params())
        names = spec.column_names()
        for row, _, column in entries:
            out[row] = outputs[names.index(column)]
    return out
