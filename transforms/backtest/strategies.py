"""Strategies for the backtest engine, built from the shared indicators.

Implements: ``sma_cross``, ``ema_cross``, ``rsi_reversion``, ``bb_reversion``, ``bb_breakout``,
``macd_cross`` and :func:`custom_strategy` (a user's function of the indicator panel returning
target positions).

A strategy turns a list of parameter combinations into a :class:`Plan`: the indicator series the
sweep needs (each window once, however many combinations use it: the *bank*), and, per
combination, which bank rows and constants the engine's rule compares (see
``alphapulse.transforms.backtest.engine``). Invalid combinations (``fast >= slow``, ``lower >= upper``) are skipped
and counted, never silently run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from alphapulse.transforms.backtest.engine import FADE, FOLLOW, TARGET
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec


@dataclass(frozen=True)
class Plan:
    """What the engine needs for a list of combinations.

    Attributes
    ----------
    bank : list of (IndicatorSpec, output column name): the indicator series, in bank-row order
    legs : int array of shape (n_valid, 5): bank rows of x, long_in, long_out, short_in, short_out
        (-1: close for x, a constant from ``levels`` for a level)
    levels : float array of shape (n_valid, 4)
    combos : the valid combinations, in the order of ``legs``
    skipped : the invalid combinations, with the reason
    mode : FOLLOW, FADE or TARGET
    """

    bank: list
    legs: np.ndarray
    levels: np.ndarray
    combos: list
    skipped: list
    mode: int


@dataclass(frozen=True)
class Strategy:
    """A rule over indicator series; see the module docstring.

    ``legs(combo)`` returns five entries, each an ``(indicator name, params, output)`` triple, the
    string ``"close"`` (x only), or a float constant (levels only); ``check(combo)`` returns None or
    why the combination is invalid.
    """

    name: str
    params: dict  # parameter -> type
    defaults: dict
    mode: int
    legs: Callable
    check: Callable = lambda combo: None
    targets: Callable | None = None  # TARGET strategies: fn(panel, **combo) -> array (n_bars, n_symbols)

    def plan(self, combos: list[dict]) -> Plan:
        bank, index, legs, levels, valid, skipped = [], {}, [], [], [], []
        for combo in combos:
            full = {**self.defaults, **combo}
            unknown = set(combo) - set(self.params)
            if unknown:
                raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {list(self.params)}")
            why = self.check(full)
            if why:
                skipped.append((full, why))
                continue
            row, lev = [], []
            for k, leg in enumerate(self.legs(full) if self.mode != TARGET else ["close"] * 5):
                if isinstance(leg, tuple):
                    name, params, output = leg
                    spec = IndicatorSpec(name, {**INDICATORS[name].defaults, **params})
                    column = spec.column_names()[INDICATORS[name].outputs.index(output)]
                    if column not in index:
                        index[column] = len(bank)
                        bank.append((spec, column))
                    row.append(index[column])
                    if k:
                        lev.append(0.0)
                elif leg == "close":
                    row.append(-1)
                    if k:
                        lev.append(0.0)
                else:
                    row.append(-1)
                    lev.append(float(leg))
            legs.append(row)
            levels.append(lev)
            valid.append(full)
        return Plan(bank, np.array(legs, dtype=np.int64).reshape(-1, 5),
                    np.array(levels, dtype=np.float64).reshape(-1, 4), valid, skipped, self.mode)


def _fast_below_slow(combo):
    return None if combo["fast"] < combo["slow"] else "fast >= slow"


def _cross(indicator):
    def legs(c):
        fast, slow = (indicator, {"period": c["fast"]}, indicator), (indicator, {"period": c["slow"]}, indicator)
        return [fast, slow, slow, slow, slow]
    return legs


def _bands(c, *outputs):
    return [("bbands", {"period": c["period"], "nbdev": float(c["nbdev"])}, o) for o in outputs]


STRATEGIES: dict[str, Strategy] = {
    "sma_cross": Strategy("sma_cross", {"fast": int, "slow": int}, {"fast": 10, "slow": 50}, FOLLOW,
                          _cross("sma"), _fast_below_slow),
    "ema_cross": Strategy("ema_cross", {"fast": int, "slow": int}, {"fast": 12, "slow": 26}, FOLLOW,
                          _cross("ema"), _fast_below_slow),
    "rsi_reversion": Strategy(
        "rsi_reversion", {"period": int, "lower": float, "upper": float}, {"period": 14, "lower": 30.0, "upper": 70.0},
        FADE, lambda c: [("rsi", {"period": c["period"]}, "rsi"), c["lower"], c["upper"], c["upper"], c["lower"]],
        lambda c: None if c["lower"] < c["upper"] else "lower >= upper"),
    "bb_reversion": Strategy(
        "bb_reversion", {"period": int, "nbdev": float}, {"period": 20, "nbdev": 2.0}, FADE,
        lambda c: ["close", *_bands(c, "bb_lower", "bb_middle", "bb_upper", "bb_middle")]),
    "bb_breakout": Strategy(
        "bb_breakout", {"period": int, "nbdev": float}, {"period": 20, "nbdev": 2.0}, FOLLOW,
        lambda c: ["close", *_bands(c, "bb_upper", "bb_middle", "bb_lower", "bb_middle")]),
    "macd_cross": Strategy(
        "macd_cross", {"fast": int, "slow": int, "signal": int}, {"fast": 12, "slow": 26, "signal": 9}, FOLLOW,
        lambda c: [("macd", c, "macd"), *[("macd", c, "macd_signal")] * 4], _fast_below_slow),
}


def custom_strategy(name: str, fn: Callable, *, params: dict, defaults: dict | None = None,
                    check: Callable = lambda combo: None) -> Strategy:
    """A user strategy: ``fn(panel, **combo)`` returns target positions (-1, 0, +1; NaN = keep)
    of shape (n_bars, n_symbols) from ``panel`` (dict of price and indicator arrays). The target
    at bar t is traded at bar t+1 like every signal. ``fn`` must only use data up to each bar."""
    return Strategy(name, dict(params), dict(defaults or {}), TARGET, legs=None, check=check, targets=fn)
