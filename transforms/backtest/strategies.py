"""Strategies for the backtest engine, built from the shared indicators: the protocol and the
built-in six.

The protocol (:class:`Strategy`): a name, its parameters with their types and defaults, a check
of a parameter combination (None, or why it is invalid), the indicator series it reads per
combination, and how it turns them into positions, in one of two forms:

- a *rule* (:func:`rule_strategy`, the engine's fused kernel): ``FOLLOW`` or ``FADE`` over a series
  and four levels (``alphapulse.transforms.backtest.engine``), each an indicator series, the close
  or a constant. The built-in ``sma_cross``, ``ema_cross``, ``rsi_reversion``, ``bb_reversion``,
  ``bb_breakout`` and ``macd_cross`` are rules.
- a *signal* (:func:`signal_strategy`): ``signal(panel, **combo)``, a vectorised function over the
  time x symbols panels written against the arrays' namespace (``xp``: NumPy or CuPy), returning
  target positions (-1 short, 0 flat, +1 long; NaN keeps the current one) of shape
  (n_bars, n_symbols). ``panel`` holds the prices (``open, high, low, close, volume``) and the
  series named by ``indicators(combo)``, each symbol's bars compacted (gaps skipped) and NaN below
  its last bar. The target at bar t is traded at bar t+1 like every rule's; it must read no bar
  after t (:func:`check_strategy` perturbs the future and refuses a strategy that looks ahead).

A strategy turns a list of parameter combinations into a :class:`Plan`: the indicator series the
sweep needs (each window once, however many combinations use it: the *bank*), and, per
combination, which bank rows and constants the engine's rule compares, or which bank rows the
signal reads. Invalid combinations (``fast >= slow``, ``lower >= upper``) are skipped and counted,
never silently run. A custom strategy gets everything a built-in gets: grids, walk-forward,
metrics, the report, Dask sharding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.backtest.engine import FADE, FOLLOW, TARGET
from alphapulse.transforms.errors import InputError
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec

PRICES = ("open", "high", "low", "close", "volume")


class StrategyError(InputError):
    """A strategy that breaks the protocol: one line naming the strategy and what it did."""


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
    inputs : TARGET: per valid combination, the signal's panel name -> bank row
    """

    bank: list
    legs: np.ndarray
    levels: np.ndarray
    combos: list
    skipped: list
    mode: int
    inputs: list = field(default_factory=list)


@dataclass(frozen=True)
class Strategy:
    """A rule over indicator series; see the module docstring.

    ``legs(combo)`` returns five entries, each an ``(indicator name, params, output)`` triple, the
    string ``"close"`` (x only), or a float constant (levels only); ``check(combo)`` returns None or
    why the combination is invalid; TARGET strategies: ``targets(panel, **combo)`` is the signal and
    ``inputs(combo)`` names the indicator series it reads (panel name -> triple).
    """

    name: str
    params: dict  # parameter -> type
    defaults: dict
    mode: int
    legs: Callable | None
    check: Callable = lambda combo: None
    targets: Callable | None = None  # TARGET strategies: fn(panel, **combo) -> array (n_bars, n_symbols)
    inputs: Callable | None = None  # TARGET strategies: combo -> {panel name: (indicator, params, output)}

    def plan(self, combos: list[dict]) -> Plan:
        bank, index, legs, levels, valid, skipped, inputs = [], {}, [], [], [], [], []

        def bank_row(leg) -> int:
            name, params, output = leg
            if name not in INDICATORS:
                raise ValueError(f"unknown indicator {name!r}; known: {', '.join(INDICATORS)}")
            spec = IndicatorSpec(name, {**INDICATORS[name].defaults, **params})
            column = spec.column_names()[INDICATORS[name].outputs.index(output)]
            if column not in index:
                index[column] = len(bank)
                bank.append((spec, column))
            return index[column]

        for combo in combos:
            full = {**self.defaults, **combo}
            unknown = set(combo) - set(self.params)
            if unknown:
                raise ValueError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {list(self.params)}")
            why = self.check(full)
            if why:
                skipped.append((full, why))
                continue
            if self.mode == TARGET:
                needs = self.inputs(full) if self.inputs is not None else {}
                clash = sorted(set(needs) & set(PRICES))
                if clash:
                    raise ValueError(f"indicator names {clash} would hide the prices of the same name")
                inputs.append({key: bank_row(leg) for key, leg in needs.items()})
            row, lev = [], []
            for k, leg in enumerate(self.legs(full) if self.mode != TARGET else ["close"] * 5):
                if isinstance(leg, tuple):
                    row.append(bank_row(leg))
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
                    np.array(levels, dtype=np.float64).reshape(-1, 4), valid, skipped, self.mode, inputs)


def _fast_below_slow(combo):
    return None if combo["fast"] < combo["slow"] else "fast >= slow"


def _cross(indicator):
    def legs(c):
        fast, slow = (indicator, {"period": c["fast"]}, indicator), (indicator, {"period": c["slow"]}, indicator)
        return [fast, slow, slow, slow, slow]
    return legs


def _bands(c, *outputs):
    return [("bbands", {"period": c["period"], "nbdev": float(c["nbdev"])}, o) for o in outputs]


_MODES = {"follow": FOLLOW, "fade": FADE}


def rule_strategy(name: str, *, params: dict, defaults: dict, rule: str, legs: Callable,
                  check: Callable | None = None) -> Strategy:
    """A rule strategy, run by the engine's fused kernel.

    Parameters
    ----------
    name : the strategy's name (reports, the CLI's ``--strategy``)
    params : parameter -> type (int or float)
    defaults : a value for every parameter
    rule : "follow" or "fade" (see ``alphapulse.transforms.backtest.engine``, "Strategy rules")
    legs : ``legs(combo)`` -> five entries: the series ``x`` (an ``(indicator, params, output)``
        triple or ``"close"``) and the levels ``long_in, long_out, short_in, short_out`` (triples,
        ``"close"`` or float constants)
    check : ``check(combo)`` -> None, or why the combination is invalid (skipped and counted)
    """
    if rule not in _MODES:
        raise ValueError(f"{name}: rule must be 'follow' or 'fade', got {rule!r}")
    return Strategy(name, dict(params), dict(defaults), _MODES[rule], legs, check or (lambda combo: None))


def signal_strategy(name: str, signal: Callable, *, params: dict, defaults: dict | None = None,
                    indicators: Callable | None = None, check: Callable | None = None) -> Strategy:
    """A signal strategy: ``signal(panel, **combo)`` -> target positions of shape
    (n_bars, n_symbols) (-1, 0, +1; NaN keeps the current one), vectorised over the panels with
    their own namespace (``xp = alphapulse.transforms.arrays.namespace(panel["close"])``), so one
    function runs on NumPy and CuPy.

    Parameters
    ----------
    name, params, defaults, check : as :func:`rule_strategy`
    indicators : ``indicators(combo)`` -> {panel name: (indicator, params, output)}: the series the
        signal reads, computed once per sweep by the engine's indicator bank (e.g.
        ``{"fast": ("sma", {"period": combo["fast"]}, "sma")}``); None: prices only
    """
    return Strategy(name, dict(params), dict(defaults or {}), TARGET, legs=None,
                    check=check or (lambda combo: None), targets=signal, inputs=indicators)


def custom_strategy(name: str, fn: Callable, *, params: dict, defaults: dict | None = None,
                    check: Callable = lambda combo: None) -> Strategy:
    """A signal strategy of the prices only (:func:`signal_strategy` without indicators)."""
    return signal_strategy(name, fn, params=params, defaults=defaults, check=check)


def _lower_below_upper(combo):
    return None if combo["lower"] < combo["upper"] else "lower >= upper"


STRATEGIES: dict[str, Strategy] = {s.name: s for s in (
    rule_strategy("sma_cross", params={"fast": int, "slow": int}, defaults={"fast": 10, "slow": 50}, rule="follow",
                  legs=_cross("sma"), check=_fast_below_slow),
    rule_strategy("ema_cross", params={"fast": int, "slow": int}, defaults={"fast": 12, "slow": 26}, rule="follow",
                  legs=_cross("ema"), check=_fast_below_slow),
    rule_strategy("rsi_reversion", params={"period": int, "lower": float, "upper": float},
                  defaults={"period": 14, "lower": 30.0, "upper": 70.0}, rule="fade",
                  legs=lambda c: [("rsi", {"period": c["period"]}, "rsi"), c["lower"], c["upper"], c["upper"],
                                  c["lower"]],
                  check=_lower_below_upper),
    rule_strategy("bb_reversion", params={"period": int, "nbdev": float}, defaults={"period": 20, "nbdev": 2.0},
                  rule="fade", legs=lambda c: ["close", *_bands(c, "bb_lower", "bb_middle", "bb_upper", "bb_middle")]),
    rule_strategy("bb_breakout", params={"period": int, "nbdev": float}, defaults={"period": 20, "nbdev": 2.0},
                  rule="follow",
                  legs=lambda c: ["close", *_bands(c, "bb_upper", "bb_middle", "bb_lower", "bb_middle")]),
    rule_strategy("macd_cross", params={"fast": int, "slow": int, "signal": int},
                  defaults={"fast": 12, "slow": 26, "signal": 9}, rule="follow",
                  legs=lambda c: [("macd", c, "macd"), *[("macd", c, "macd_signal")] * 4], check=_fast_below_slow),
)}
"""The built-in strategies, written with the protocol's :func:`rule_strategy` as a user would."""


def signal_panel(plan: Plan, prices: dict, bank, combo_index: int) -> dict:
    """What a signal strategy's function sees for combination ``combo_index`` of ``plan``: the
    prices and the bank rows it asked for, by its names."""
    panel = {k: prices[k] for k in PRICES if k in prices}
    for key, row in (plan.inputs[combo_index] if plan.inputs else {}).items():
        panel[key] = bank[row]
    return panel


def target_positions(strategy: Strategy, plan: Plan, prices: dict, bank, start: int, stop: int):
    """Target positions of combinations ``start:stop`` of ``plan``, shape (stop - start, n_bars,
    n_symbols) in the prices' dtype and namespace; a signal that raises or returns another shape
    is a :class:`StrategyError` naming the strategy and the combination."""
    close = prices["close"]
    xp = namespace(close)
    out = xp.empty((stop - start, *close.shape), dtype=close.dtype)
    for k, combo in enumerate(plan.combos[start:stop]):
        try:
            target = strategy.targets(signal_panel(plan, prices, bank, start + k), **combo)
        except Exception as e:
            raise StrategyError(f"strategy {strategy.name}: its signal raised on {combo}: "
                                f"{type(e).__name__}: {e}") from None
        shape = getattr(target, "shape", None)
        if tuple(shape or ()) != tuple(close.shape):
            raise StrategyError(f"strategy {strategy.name}: its signal returned shape {shape} on {combo}, "
                                f"expected (n_bars, n_symbols) = {tuple(close.shape)}")
        out[k] = xp.asarray(target, dtype=close.dtype)
    return out


def _synthetic_bars(n_bars: int, n_symbols: int, seed: int) -> dict:
    """Random-walk OHLCV bars (float64, NumPy) with a missing stretch in one symbol: a panel a
    strategy can be run on without any data of the user's."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.015, (n_bars, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.004, close.shape))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, close.shape))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, close.shape))
    volume = rng.uniform(1e5, 1e6, close.shape)
    bars = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    if n_symbols > 1:
        for v in bars.values():
            v[n_bars // 4: n_bars // 4 + 5, -1] = np.nan  # a gap: the signal sees compacted bars
    return bars


def _signal_on(strategy: Strategy, plan: Plan, bars: dict):
    from alphapulse.transforms.backtest.engine import compact_bars, indicator_bank

    prices, n, rows = compact_bars(bars, fields=PRICES)
    bank = indicator_bank(plan.bank, prices, n)
    return target_positions(strategy, plan, prices, bank, 0, len(plan.combos)), rows


def check_strategy(strategy, combos: list[dict] | None = None, *, n_bars: int = 180, n_symbols: int = 3,
                   seed: int = 0) -> Strategy:
    """``strategy`` if it keeps the protocol (see the module docstring), else a one-line
    :class:`StrategyError` naming it: not a :class:`Strategy`, a parameter without a default or
    of a type other than int or float, a rule or indicator that does not resolve, a signal that
    raises, returns another shape or looks ahead.

    The look-ahead check runs the signal (on the default combination and the first two of
    ``combos``) over random bars, then again with every bar after a cut changed, for three cuts:
    a position at or before the cut that changes read a bar after it."""
    if not isinstance(strategy, Strategy):
        raise StrategyError(f"{strategy!r} is not a Strategy (make one with rule_strategy or signal_strategy, "
                            "alphapulse.transforms.backtest.strategies)")
    name = strategy.name
    bad = {p: t for p, t in strategy.params.items() if t not in (int, float)}
    if bad:
        raise StrategyError(f"strategy {name}: parameter types must be int or float, got {bad}")
    missing = sorted(set(strategy.params) - set(strategy.defaults))
    if missing:
        raise StrategyError(f"strategy {name}: no default for parameter(s) {missing}")
    if strategy.mode == TARGET and strategy.targets is None:
        raise StrategyError(f"strategy {name}: a signal strategy needs its signal function")
    tried = [{}] + list(combos or [])[:2]
    try:
        plan = strategy.plan(tried)
    except Exception as e:  # a user's legs, inputs or check function
        raise StrategyError(f"strategy {name}: planning {tried} failed: {type(e).__name__}: {e}") from None
    if strategy.mode != TARGET or not plan.combos:
        return strategy
    bars = _synthetic_bars(n_bars, n_symbols, seed)
    base, rows = _signal_on(strategy, plan, bars)
    rng = np.random.default_rng(seed + 1)
    for cut in (n_bars // 3, n_bars // 2, (2 * n_bars) // 3):
        future = {k: v.copy() for k, v in bars.items()}
        shock = np.exp(rng.normal(0.0, 0.2, (n_bars - cut - 1, n_symbols)))
        for k in ("open", "high", "low", "close"):
            future[k][cut + 1:] *= shock
        future["volume"][cut + 1:] *= 3.0
        got, _ = _signal_on(strategy, plan, future)
        past = (rows >= 0) & (rows <= cut)  # compacted bars at or before the cut's timestamp
        same = (got == base) | (np.isnan(got) & np.isnan(base)) | ~past[None]
        if not same.all():
            c, r, j = np.argwhere(~same)[0]
            t = rows[r, j]
            raise StrategyError(f"strategy {name}: looks ahead: its position at bar {t} ({plan.combos[c]}) changed "
                                f"when only bars after bar {cut} changed")
    return strategy
