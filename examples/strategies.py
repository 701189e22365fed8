"""Strategies of one's own, written with AlphaPulse's strategy protocol.

Run one over the bundled data (from the repository root):

    alphapulse backtest --data data/sp500_sample.parquet --out reports/pullback \
        --strategy examples.strategies:trend_pullback --grid "trend=50:200:50,entry=30,40"

or register it in a package's ``pyproject.toml`` so ``--strategy trend_pullback`` finds it:

    [project.entry-points."alphapulse.strategies"]
    trend_pullback = "examples.strategies:trend_pullback"

A signal function receives ``panel`` (the prices and the indicator series it asked for, arrays of
shape (n_bars, n_symbols), each symbol's bars compacted) and the combination's parameters, and
returns target positions: +1 long, -1 short (out, for a long-only run), 0 flat, NaN keep. It uses
the arrays' own namespace, so the same function runs on NumPy and on CuPy; it must read no bar
after the one it decides for (AlphaPulse refuses one that does).
"""
from __future__ import annotations

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.backtest.strategies import rule_strategy, signal_strategy


def _pullback(panel, *, trend: int, rsi_period: int, entry: float):
    xp = namespace(panel["close"])
    close, trend_line, rsi = panel["close"], panel["trend"], panel["rsi"]
    up = close > trend_line
    enter = up & (rsi < entry)     # a dip inside an up-trend
    leave = close < trend_line     # the trend broke
    return xp.where(enter, 1.0, xp.where(leave, -1.0, xp.nan))


trend_pullback = signal_strategy(
    "trend_pullback", _pullback,
    params={"trend": int, "rsi_period": int, "entry": float},
    defaults={"trend": 100, "rsi_period": 14, "entry": 40.0},
    indicators=lambda c: {"trend": ("sma", {"period": c["trend"]}, "sma"),
                          "rsi": ("rsi", {"period": c["rsi_period"]}, "rsi")},
    check=lambda c: None if 0 < c["entry"] < 100 else "entry outside (0, 100)")
"""Buy a pull-back (RSI under ``entry``) while the close is above its ``trend``-bar average;
leave when the close falls under the average."""


def _cross(panel, *, fast: int, slow: int):
    xp = namespace(panel["close"])
    f, s = panel["fast"], panel["slow"]
    return xp.where(f > s, 1.0, xp.where(f < s, -1.0, xp.nan))


sma_cross_signal = signal_strategy(
    "sma_cross_signal", _cross, params={"fast": int, "slow": int}, defaults={"fast": 10, "slow": 50},
    indicators=lambda c: {"fast": ("sma", {"period": c["fast"]}, "sma"), "slow": ("sma", {"period": c["slow"]}, "sma")},
    check=lambda c: None if c["fast"] < c["slow"] else "fast >= slow")
"""The built-in ``sma_cross`` rule written as a signal: the same trades, through the signal path."""


def _sma_legs(c):
    fast, slow = ("sma", {"period": c["fast"]}, "sma"), ("sma", {"period": c["slow"]}, "sma")
    return [fast, slow, slow, slow, slow]  # x = the fast line; every level the slow one: a cross


sma_cross_rule = rule_strategy("sma_cross", params={"fast": int, "slow": int}, defaults={"fast": 10, "slow": 50},
                               rule="follow", legs=_sma_legs,
                               check=lambda c: None if c["fast"] < c["slow"] else "fast >= slow")
"""``sma_cross`` written by a user as a rule (the engine's fused kernel, as the built-in): byte-identical reports."""


def _peek(panel, *, days: int):
    xp = namespace(panel["close"])
    ahead = xp.concatenate([panel["close"][days:], xp.full_like(panel["close"][:days], xp.nan)])
    return xp.where(ahead > panel["close"], 1.0, -1.0)  # tomorrow's close: refused by AlphaPulse


peeking = signal_strategy("peeking", _peek, params={"days": int}, defaults={"days": 1})
"""A strategy that reads the future (the close ``days`` bars ahead): AlphaPulse refuses it."""
