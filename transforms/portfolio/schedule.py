"""A portfolio's holdings between rebalances: the schedule, the account's arithmetic and its costs.

Implements:

- :func:`rebalance_rows`: the bars a walk-forward rebalances at, every ``rebalance_bars`` bars or
  after each calendar month's or quarter's last bar (:data:`REBALANCE_RULES`; the ``band`` rule's
  dates depend on each portfolio's drift and are found by :func:`simulate_holdings`).
- :func:`holding_returns`: what a position earns each bar, from prices, carried across missing bars.
- :func:`simulate_holdings`: one portfolio's out-of-sample returns, turnover and costs, given its
  target weights at each rebalance, under one of two conventions (:data:`HOLDINGS`).

Conventions (one for every method of a walk-forward):

- **Rebalance row** ``d``: the first bar the new weights are held over. They are estimated from
  returns before ``d`` only (rows ``< d``) and traded at the close of bar ``d - 1``, so their first
  return is bar ``d``'s (``p[d] / p[d - 1] - 1``). This is skfolio's ``WalkForward`` split: train
  rows ``[d - train, d)``, test rows from ``d``, no purge. With ``month_end`` (``quarter_end``) the
  trade is at the close of the month's (quarter's) last bar and ``d`` is the next month's first bar.
- ``drift``: between rebalances the account holds shares, so weights move with prices (a real
  account). ``constant``: weights are reset to target every bar (skfolio's convention: a test
  period's return is ``X_test @ w`` each bar); the implicit daily resets are not charged.
- **Turnover** at a rebalance: ``sum_i |w_target_i - w_before_i|``, the value traded (buys plus
  sells) as a fraction of the portfolio's value before the trade; ``w_before`` are the drifted
  weights (``drift``), the previous targets (``constant``), or zero at the first rebalance (the
  account starts in cash, so the first trade buys in: turnover 1).
- **Cost**: ``turnover * cost_bps / 1e4`` of the value, paid at the trade; the rebalance bar's
  return is ``(1 - cost) (1 + R_d) - 1``.
- **Cash**: ``1 - sum(w)`` (a portfolio whose weights do not sum to one) earns
  ``cash_return`` a bar (the pipeline passes ``risk_free_rate / periods_per_year``).
- **Missing bars**: a held symbol without a price on a bar earns 0 that bar (carried at its last
  price) and books the whole move on its next priced bar (:func:`holding_returns`); before its
  first price it cannot be held (a target weight there is an error upstream, never happens with
  the common window's universe).

Backend: NumPy or CuPy (``xp = namespace(returns)``); weights and returns stay on the input's
device. The loop is over rebalances (and, for ``band``, blocks of :data:`BAND_BLOCK_BARS` bars),
never over symbols; a block's bars are one cumulative product.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from alphapulse.transforms.arrays import float_dtype, namespace

__all__ = ["REBALANCE_RULES", "HOLDINGS", "BAND_BLOCK_BARS", "rebalance_rows", "holding_returns", "Holdings",
           "simulate_holdings"]

REBALANCE_RULES = ("every", "month_end", "quarter_end", "band")
"""``every`` ``rebalance_bars`` bars; after each calendar month's / quarter's last bar; when a weight
drifts more than ``band`` from its target (``drift`` holdings only)."""

HOLDINGS = ("drift", "constant")
"""Holdings between rebalances: shares held (weights drift with prices), or weights reset every bar."""

BAND_BLOCK_BARS = 64
"""Bars the ``band`` rule simulates at once before looking for a breach (bounds its work per
rebalance to ``BAND_BLOCK_BARS x n_symbols`` whatever the band)."""


def rebalance_rows(timestamps, *, rule: str, first_row: int, rebalance_bars: int | None = None) -> np.ndarray:
    """The rebalance rows (first bar held, see the module docstring) of a schedule.

    Parameters
    ----------
    timestamps : pandas.DatetimeIndex of length n_bars
        The bars' times, increasing.
    rule : {"every", "month_end", "quarter_end", "band"}
        ``every``: ``first_row, first_row + rebalance_bars, ...``; ``month_end`` /
        ``quarter_end``: each bar that opens a new calendar month / quarter, from ``first_row``
        on; ``band``: ``[first_row]`` only (the later dates depend on the drift).
    first_row : int
        The first row a rebalance may happen at (the first with a full estimation window).
    rebalance_bars : int, optional
        For ``every``: bars between rebalances, at least 1.

    Returns
    -------
    rows : NumPy int64 array of shape (n_rebalances,), increasing, each ``< n_bars``
    """
    n = len(timestamps)
    if rule not in REBALANCE_RULES:
        raise ValueError(f"rule must be one of {REBALANCE_RULES}, got {rule!r}")
    if first_row < 1:
        raise ValueError(f"first_row must be at least 1 (row 0 has no return), got {first_row}")
    if first_row >= n:
        return np.zeros(0, dtype=np.int64)
    if rule == "every":
        if rebalance_bars is None or rebalance_bars < 1:
            raise ValueError(f"rebalance_bars must be a positive integer for rule 'every', got {rebalance_bars}")
        return np.arange(first_row, n, rebalance_bars, dtype=np.int64)
    if rule == "band":
        return np.array([first_row], dtype=np.int64)
    period = pd.DatetimeIndex(timestamps).to_period("M" if rule == "month_end" else "Q").asi8
    opens = np.flatnonzero(period[1:] != period[:-1]).astype(np.int64) + 1
    return opens[opens >= first_row]


def holding_returns(prices):
    """What a position in each symbol earns each bar, carried across missing bars.

    ``r[t] = p[t] / p[s] - 1`` with ``s < t`` the symbol's last bar with a price, on a bar ``t``
    with a price; 0 on a bar without one after its first price (the position is carried at its
    last price, and the move over the gap is booked on the next priced bar); NaN up to and
    including its first price (nothing can be held before). Where bars ``t - 1`` and ``t`` both
    have prices this is :func:`alphapulse.transforms.returns.simple_returns` bit for bit.

    Parameters
    ----------
    prices : array of shape (n_bars, n_symbols)
        Positive prices; NaN (or a non-positive value) where a symbol has no bar.

    Returns
    -------
    returns : array of shape (n_bars, n_symbols), the prices' float dtype, on their device
    """
    xp = namespace(prices)
    p = xp.asarray(prices)
    if p.ndim != 2:
        raise ValueError(f"prices must be 2-D (n_bars, n_symbols), got shape {p.shape}")
    p = p.astype(float_dtype(p), copy=False)
    n = p.shape[0]
    with np.errstate(invalid="ignore"):
        valid = xp.isfinite(p) & (p > 0)
    # The last priced bar at or before t, without a loop: sort each column's rows so that priced
    # rows come first in time order (unique keys, so no stable sort is needed), then bar t's last
    # price is the (count of priced bars up to t)-th of them.
    t = xp.arange(n)[:, None]
    order = xp.argsort(xp.where(valid, t, t + n), axis=0)
    compact = xp.take_along_axis(p, order, axis=0)
    count = xp.cumsum(valid, axis=0)
    last = xp.take_along_axis(compact, xp.maximum(count - 1, 0), axis=0)  # last price at or before t
    out = xp.full(p.shape, xp.nan, dtype=p.dtype)
    if n > 1:
        prev = last[:-1]
        held = count[:-1] > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            r = xp.where(valid[1:], p[1:] / xp.where(held, prev, 1) - 1, 0)
        out[1:] = xp.where(held, r, xp.nan)
    return out


@dataclass(frozen=True)
class Holdings:
    """One portfolio's walk-forward account (see :func:`simulate_holdings`).

    Attributes
    ----------
    returns : array of shape (n_bars,)
        Net returns a bar (costs included); NaN before the first rebalance.
    turnover : array of shape (n_bars,)
        Value traded over the value before the trade, at each rebalance row; 0 elsewhere.
    cost : array of shape (n_bars,)
        Costs paid as a fraction of the value before the trade, at each rebalance row; 0 elsewhere.
    rows : NumPy int64 array of shape (n_rebalances,)
        The rebalance rows taken (with ``band``, the ones the drift triggered).
    targets : list of arrays of shape (n_symbols,)
        The target weights at each of ``rows``.
    """

    returns: object
    turnover: object
    cost: object
    rows: np.ndarray
    targets: list


def simulate_holdings(asset_returns, *, target_at: Callable[[int], object], rows, holdings: str = "drift",
                      cost_bps: float = 0.0, cash_return: float = 0.0, band: float | None = None) -> Holdings:
    """One portfolio's out-of-sample account: rebalanced to targets, held in between, with costs.

    Parameters
    ----------
    asset_returns : array of shape (n_bars, n_symbols)
        What a position earns each bar (:func:`holding_returns`); NaN where a symbol cannot be
        held (a NaN return of a symbol the portfolio holds is an error).
    target_at : callable, row -> array of shape (n_symbols,)
        The target weights for rebalance row ``row``, estimated from rows ``< row`` only (zero
        for symbols outside that date's universe). Called once a rebalance, in row order.
    rows : sequence of int
        Rebalance rows (:func:`rebalance_rows`), increasing; with ``band``, only the first is used.
    holdings : {"drift", "constant"}
        See the module docstring.
    cost_bps : float, default 0
        Cost of trading, basis points of the value traded.
    cash_return : float, default 0
        What cash (``1 - sum(w)``) earns a bar.
    band : float, optional
        Rebalance when a drifted weight is more than ``band`` from its target (absolute weight,
        e.g. 0.05), at the bar after the breach; ``drift`` holdings only (constant weights never
        drift). The ``rows`` after the first are ignored.

    Returns
    -------
    Holdings
    """
    xp = namespace(asset_returns)
    r = xp.asarray(asset_returns)
    n_bars, n_sym = r.shape
    if holdings not in HOLDINGS:
        raise ValueError(f"holdings must be one of {HOLDINGS}, got {holdings!r}")
    if band is not None and holdings != "drift":
        raise ValueError("band rebalancing needs drift holdings: constant weights never drift")
    if band is not None and not band > 0:
        raise ValueError(f"band must be positive, got {band}")
    rows = [int(x) for x in rows]
    if any(b <= a for a, b in zip(rows, rows[1:])) or (rows and not 1 <= rows[0] < n_bars):
        raise ValueError("rows must be increasing rows within the bars, from 1")
    out = xp.full(n_bars, xp.nan, dtype=xp.float64)
    turnover = xp.zeros(n_bars, dtype=xp.float64)
    cost = xp.zeros(n_bars, dtype=xp.float64)
    taken, targets = [], []
    if not rows:
        return Holdings(out, turnover, cost, np.zeros(0, dtype=np.int64), targets)
    rate = cost_bps / 1e4
    scheduled = rows if band is None else rows[:1]
    held = xp.zeros(n_sym, dtype=xp.float64)  # weights before the trade (the account starts in cash)
    t = scheduled[0]
    k = 0
    rebalance = True
    while t < n_bars:
        if rebalance:
            target = xp.asarray(target_at(t), dtype=xp.float64)
            turn = xp.sum(xp.abs(target - held))
            turnover[t] = turn
            cost[t] = turn * rate
            value = 1.0 - turn * rate  # after paying the costs, of the value before the trade
            w, cash = target, 1.0 - xp.sum(target)
            taken.append(t)
            targets.append(target)
            k += 1
        else:
            value = 1.0
        stop = scheduled[k] if band is None and k < len(scheduled) else n_bars
        if band is not None:
            stop = min(t + BAND_BLOCK_BARS, n_bars)
        block = r[t:stop]
        missing = xp.isnan(block)
        if bool(missing[:, w != 0].any()):
            raise ValueError(f"a held symbol has no return between rows {t} and {stop - 1}")
        block = xp.where(missing, 0.0, block)  # symbols not held (not listed yet): 0 * NaN would be NaN
        bars = xp.arange(1, stop - t + 1, dtype=xp.float64)
        if holdings == "constant":
            gross = block @ w + cash * cash_return
            level = xp.cumprod(1.0 + gross)
            level = level * value
            held = w
        else:
            growth = xp.cumprod(1.0 + block, axis=0)  # (bars, n_symbols): a share's value over the block
            cash_growth = (1.0 + cash_return) ** bars
            level = value * (growth @ w + cash * cash_growth)  # the account's value, 1 before the block
            drifted = value * growth * w[None, :] / level[:, None]
            if band is not None:
                breach = xp.max(xp.abs(drifted - target[None, :]), axis=1) > band
                hit = int(xp.argmax(breach)) if bool(breach.any()) else -1
                if hit >= 0:
                    stop = t + hit + 1
                    level = level[:hit + 1]
                    drifted = drifted[:hit + 1]
                    bars = bars[:hit + 1]
            held = drifted[-1]
            cash = value * cash * cash_growth[-1] / level[-1]
            w = held
        prev = xp.concatenate([xp.ones(1, dtype=xp.float64), level[:-1]])
        out[t:stop] = level / prev - 1.0
        if band is not None:
            rebalance = stop < n_bars and bool(xp.max(xp.abs(held - target)) > band)
        else:
            rebalance = k < len(scheduled) and stop == scheduled[k]
        t = stop
    return Holdings(out, turnover, cost, np.asarray(taken, dtype=np.int64), targets)
