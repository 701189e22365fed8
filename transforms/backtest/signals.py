"""Signals: what a strategy holds after the next bar, for every symbol and parameter set at once.

Implements :func:`latest_signals` (the engine run over each symbol's whole history, read at its
last bar), :func:`signal_actions` (position now and next -> enter / exit / hold / flat) and
:data:`ACTIONS`.

A signal is the engine's own decision, not a second implementation of the rules: the kernel's
``position``, ``next_position`` and ``state_bar`` accumulators
(:mod:`alphapulse.transforms.backtest.engine`) are the position held at the last close, the one the
signal at that close asks for (traded at the next bar, on its open or its close as the execution
says; stops and the ruin rule included), and the bar the held position began on. Run over bars up
to ``t`` they equal the positions the engine holds when run over bars up to ``t + 1``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.backtest.engine import ACC, TARGET, compact_bars, indicator_bank, run_backtest
from alphapulse.transforms.backtest.strategies import PRICES, Plan, Strategy, target_positions
from alphapulse.transforms.kernels import expand, valid_mask

ACTIONS = ("enter", "exit", "hold", "flat")
"""``enter``: flat (or the other side) now, a position next; ``exit``: a position now, flat next;
``hold``: the same position now and next; ``flat``: flat now and next. A reversal (long now, short
next) is an ``enter`` of the new side."""


@dataclass(frozen=True)
class Signals:
    """The signals of a plan's combinations over a panel (NumPy or CuPy arrays, as the panel).

    Attributes
    ----------
    position : float array of shape (n_combinations, n_symbols): held at each symbol's last close
    next_position : float array of the same shape: held after the next bar's fill
    since_row : int array of the same shape: the panel row the held position (or flatness) began on
    last_row : int array of shape (n_symbols,): each symbol's last bar (-1: no bar)
    tail_positions : float array of shape (n_combinations, tail_bars, n_symbols): the position held
        at each close over the panel's last ``tail_bars`` rows (NaN where the symbol has no bar)
    tail_series : float array of shape (n_bank, tail_bars, n_symbols): the plan's indicator series
        (``plan.bank`` order) over the same rows, at the panel's rows (NaN where no bar)
    acc : float64 array of shape (n_combinations * n_symbols, len(ACC)): the engine's accumulators
        of each whole history (series ``c * n_symbols + s``), for its metrics
        (:func:`~alphapulse.transforms.backtest.metrics.metrics_from_acc`)
    """

    position: object
    next_position: object
    since_row: object
    last_row: object
    tail_positions: object
    tail_series: object
    acc: object


def latest_signals(bars: dict, *, strategy: Strategy, plan: Plan, engine: dict, tail_bars: int = 0) -> Signals:
    """Every combination of ``plan`` over every symbol of the panel ``bars``, read at each symbol's
    last bar.

    Parameters
    ----------
    bars : dict of ``open, high, low, close`` (and ``volume`` where an indicator or a signal reads
        it): arrays of shape (n_bars, n_symbols), NaN where a symbol has no bar
    strategy : the strategy that made ``plan`` (its signal function, for a signal strategy)
    plan : ``strategy.plan(combos)``
    engine : the execution keywords of :func:`~alphapulse.transforms.backtest.engine.run_backtest`
        (``direction``, ``trade_on``, ``size_fraction``, ``commission_bps``, ``slippage_bps``,
        ``stop_loss``, ``take_profit``)
    tail_bars : rows at the end of the panel for which positions and indicator series are returned
        (charts); 0 for none
    """
    close = bars["close"]
    xp = namespace(close)
    n_rows, n_sym = close.shape
    if n_sym == 1:
        # a one-column panel is both C- and F-contiguous, a layout Numba would compile the engine
        # again for (seconds): run the symbol twice and keep one
        twice = {k: xp.concatenate([v, v], axis=1) for k, v in bars.items()}
        s = latest_signals(twice, strategy=strategy, plan=plan, engine=engine, tail_bars=tail_bars)
        keep = xp.arange(len(plan.combos)) * 2  # series c * 2 + 0 of each combination
        return Signals(s.position[:, :1], s.next_position[:, :1], s.since_row[:, :1], s.last_row[:1],
                       s.tail_positions[:, :, :1], s.tail_series[:, :, :1], s.acc[keep])
    fields = tuple(k for k in PRICES if k in bars)
    prices, n, rows = compact_bars(bars, fields=fields)
    bank = indicator_bank(plan.bank, prices, n)
    legs, levels = xp.asarray(plan.legs), xp.asarray(plan.levels)
    tail = min(int(tail_bars), n_rows)
    n_comb = len(plan.combos)
    position = xp.zeros((n_comb, n_sym), dtype=xp.float64)
    next_position = xp.zeros_like(position)
    state_bar = xp.zeros((n_comb, n_sym), dtype=xp.int64)
    tail_positions = xp.full((n_comb, tail, n_sym), np.nan)
    accs = xp.empty((n_comb * n_sym, len(ACC)), dtype=xp.float64)
    # one combination a launch: the positions output is one (n_bars, n_symbols) panel, not one per combination
    for c in range(n_comb):
        targets = target_positions(strategy, plan, prices, bank, c, c + 1) if plan.mode == TARGET else None
        held = xp.full((n_rows, n_sym), np.nan) if tail else None
        acc, _, _ = run_backtest(prices, n, bank=bank, legs=legs[c:c + 1], levels=levels[c:c + 1], mode=plan.mode,
                                 targets=targets, rows=rows, n_rows_out=n_rows, positions_out=held, **engine)
        accs[c * n_sym:(c + 1) * n_sym] = acc
        position[c] = acc[:, ACC.index("position")]
        next_position[c] = acc[:, ACC.index("next_position")]
        state_bar[c] = acc[:, ACC.index("state_bar")].astype(xp.int64)
        if tail:
            tail_positions[c] = held[n_rows - tail:]
    last = xp.where(n > 0, n - 1, 0)
    last_row = xp.where(n > 0, rows[last, xp.arange(n_sym)], -1)
    since_row = rows[state_bar, xp.arange(n_sym)[None, :]]
    valid = valid_mask(close)
    tail_series = xp.full((len(plan.bank), tail, n_sym), np.nan)
    for k in range(len(plan.bank)):
        if tail:
            tail_series[k] = expand(bank[k], valid)[n_rows - tail:]
    return Signals(position, next_position, since_row, last_row, tail_positions, tail_series, accs)


def signal_actions(position, next_position):
    """The action of each (now, next) position pair (:data:`ACTIONS`), as an object array."""
    now, nxt = np.asarray(position), np.asarray(next_position)
    out = np.full(now.shape, "flat", dtype=object)
    out[(now != 0) & (nxt == now)] = "hold"
    out[(now != 0) & (nxt == 0)] = "exit"
    out[(nxt != 0) & (nxt != now)] = "enter"
    return out
