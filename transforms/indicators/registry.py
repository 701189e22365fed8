"""The indicator registry and its batch entry point: every indicator for every symbol, as TA-Lib.

Implements :class:`Indicator` (how to compute one indicator family, name its outputs and size
its warm-up), :data:`INDICATORS` (SMA, EMA, RSI, MACD, Bollinger Bands, ATR, NATR, Stochastic
(slow %K/%D), ADX, CCI, Williams %R, OBV, ROC), :class:`IndicatorSpec` (one indicator with its
parameters), :func:`lookback` and :func:`compute_indicators`, which compacts the panel once for
all requested indicators and runs the per-series kernels of
:mod:`alphapulse.transforms.indicators.series` on it. The one-indicator functions (``sma``,
``ema``, ...) are in :mod:`alphapulse.transforms.indicators.functions`.

Inputs are panels: arrays of shape (n_bars, n_symbols), NumPy or CuPy, float32 or float64, one
column per symbol, rows aligned on time. Outputs have the same shape, dtype and array type.

NaN semantics
-------------
A NaN in the input is a missing bar (not yet listed, delisted, or a gap). Each column is computed
on its own valid bars only, as TA-Lib computes a symbol given just that symbol's rows:

- a late listing starts its lookback at its own first bar;
- an interior missing bar is skipped: the series continues over it (the bar before and the bar
  after are consecutive for the indicator) and the output at the missing position is NaN.

Multi-input indicators (ATR, STOCH, ...) treat a row as missing where ``close`` is NaN; the loader
guarantees that a present bar has all of open/high/low/close/volume.

Outputs are NaN over each series' lookback, exactly where TA-Lib's are, and on a series shorter
than the lookback. How each kernel follows TA-Lib 0.8's arithmetic, and how closely it agrees
with the FMA-compiled library, is in :mod:`alphapulse.transforms.indicators.series`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.indicators.series import (adx_column, atr_column, bbands_column, cci_column, ema_column,
                                                     macd_column, obv_column, roc_column, rsi_column, sma_column,
                                                     stoch_column, willr_column)
from alphapulse.transforms.kernels import compact, expand_in_place, lengths, needs_compaction, valid_mask

__all__ = ["Indicator", "INDICATORS", "IndicatorSpec", "lookback", "compute_indicators"]

# ---------------------------------------------------------------------------------------------
# Compacted implementations: inputs compacted, `n` the per-column lengths; outputs compacted.
# ---------------------------------------------------------------------------------------------


def _empty(x):
    """NaN output panel like ``x`` (same array type and layout, float dtype of ``x``)."""
    xp = namespace(x)
    return xp.full_like(x, np.nan, dtype=float_dtype(x))


def _scratch(x):
    """float64 work panel like ``x`` (same array type and layout), uninitialised."""
    xp = namespace(x)
    return xp.empty_like(x, dtype=np.float64)


def _sma(close, n, *, period):
    out = _empty(close)
    sma_column(close.shape[1], close, n, period, out)
    return out


def _ema(close, n, *, period, first=None):
    out = _empty(close)
    ema_column(close.shape[1], close, n, period, period - 1 if first is None else first, out)
    return out


def _rsi(close, n, *, period):
    out = _empty(close)
    rsi_column(close.shape[1], close, n, period, out)
    return out


def _macd(close, n, *, fast, slow, signal):
    if slow < fast:  # TA-Lib swaps them
        fast, slow = slow, fast
    line, sig, hist = _empty(close), _empty(close), _empty(close)
    macd_column(close.shape[1], close, n, fast, slow, signal, line, sig, hist)
    return line, sig, hist


def _bbands(close, n, *, period, nbdev):
    upper, middle, lower = _empty(close), _empty(close), _empty(close)
    bbands_column(close.shape[1], close, n, period, float(nbdev), upper, middle, lower)
    return upper, middle, lower


def _atr(high, low, close, n, *, period):
    out = _empty(close)
    atr_column(close.shape[1], high, low, close, n, period, False, out)
    return out


def _natr(high, low, close, n, *, period):
    out = _empty(close)
    atr_column(close.shape[1], high, low, close, n, period, True, out)
    return out


def _stoch(high, low, close, n, *, fastk_period, slowk_period, slowd_period):
    k, d = _empty(close), _empty(close)
    stoch_column(close.shape[1], high, low, close, n, fastk_period, slowk_period, slowd_period,
                  _scratch(close), _scratch(close), k, d)
    return k, d


def _adx(high, low, close, n, *, period):
    out = _empty(close)
    adx_column(close.shape[1], high, low, close, n, period, out)
    return out


def _cci(high, low, close, n, *, period):
    out = _empty(close)
    cci_column(close.shape[1], high, low, close, n, period, _scratch(close), out)
    return out


def _willr(high, low, close, n, *, period):
    out = _empty(close)
    willr_column(close.shape[1], high, low, close, n, period, out)
    return out


def _obv(close, volume, n):
    out = _empty(close)
    obv_column(close.shape[1], close, volume, n, out)
    return out


def _roc(close, n, *, period):
    out = _empty(close)
    roc_column(close.shape[1], close, n, period, out)
    return out


# ---------------------------------------------------------------------------------------------
# Registry and batch entry point
# ---------------------------------------------------------------------------------------------

_MAX_PERIOD = 100_000  # TA-Lib's upper bound on every period


@dataclass(frozen=True)
class Indicator:
    """How to compute one indicator family, name its outputs and size its warm-up.

    ``compute(inputs..., n, **params)`` works on compacted panels and returns one array per
    output. Output columns are named ``<output>_<param values>`` (e.g. ``macd_signal_12_26_9``),
    or just ``<output>`` for indicators without parameters (``obv``). ``lookback(**params)`` is
    TA-Lib's ``TA_<NAME>_Lookback``: the bars a series consumes before its first output (a series
    of ``lookback`` bars or fewer has no output). ``bounds`` gives each parameter's TA-Lib range.
    """

    compute: Callable
    inputs: tuple[str, ...]
    params: dict[str, type]
    outputs: tuple[str, ...]
    defaults: dict[str, float]
    lookback: Callable[..., int]
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)

    def resolve(self, **params) -> dict:
        """``params`` completed with the defaults, cast to the declared types and range-checked.

        Raises
        ------
        ValueError
            On an unknown parameter, a value of the wrong kind (a bool, a non-integral period) or
            a value outside TA-Lib's range.
        """
        unknown = set(params) - set(self.params)
        if unknown:
            raise ValueError(f"unknown parameter(s) {sorted(unknown)}; known: {list(self.params)}")
        resolved = {}
        for name, kind in self.params.items():
            value = params.get(name, self.defaults[name])
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"{name}: expected {kind.__name__}, got {value!r}")
            if kind is int and value != int(value):
                raise ValueError(f"{name}: expected an integer, got {value!r}")
            value = kind(value)
            low, high = self.bounds.get(name, (-math.inf, math.inf))
            if not low <= value <= high:
                raise ValueError(f"{name}: must be in [{low:g}, {high:g}], got {value!r}")
            resolved[name] = value
        return resolved

    def column_names(self, **params) -> list[str]:
        params = self.resolve(**params)
        suffix = "_".join(_format_param(params[p]) for p in self.params)
        return [f"{o}_{suffix}" if suffix else o for o in self.outputs]


def _format_param(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _one(fn):
    """Adapt a single-output compacted implementation to the registry's tuple convention."""

    def compute(*args, **params):
        return (fn(*args, **params),)

    return compute


def _periods(low=2):
    return {"period": (low, _MAX_PERIOD)}


INDICATORS: dict[str, Indicator] = {
    "sma": Indicator(_one(_sma), ("close",), {"period": int}, ("sma",), {"period": 20},
                     lambda period: period - 1, _periods(1)),
    "ema": Indicator(_one(_ema), ("close",), {"period": int}, ("ema",), {"period": 12},
                     lambda period: period - 1, _periods(1)),
    "rsi": Indicator(_one(_rsi), ("close",), {"period": int}, ("rsi",), {"period": 14},
                     lambda period: period, _periods(2)),
    "macd": Indicator(_macd, ("close",), {"fast": int, "slow": int, "signal": int},
                      ("macd", "macd_signal", "macd_hist"), {"fast": 12, "slow": 26, "signal": 9},
                      lambda fast, slow, signal: max(fast, slow) - 1 + signal - 1,
                      {"fast": (2, _MAX_PERIOD), "slow": (2, _MAX_PERIOD), "signal": (1, _MAX_PERIOD)}),
    "bbands": Indicator(_bbands, ("close",), {"period": int, "nbdev": float},
                        ("bb_upper", "bb_middle", "bb_lower"), {"period": 20, "nbdev": 2.0},
                        lambda period, nbdev: period - 1,
                        {"period": (2, _MAX_PERIOD), "nbdev": (-3e37, 3e37)}),
    "atr": Indicator(_one(_atr), ("high", "low", "close"), {"period": int}, ("atr",), {"period": 14},
                     lambda period: period, _periods(1)),
    "natr": Indicator(_one(_natr), ("high", "low", "close"), {"period": int}, ("natr",), {"period": 14},
                      lambda period: period, _periods(1)),
    "stoch": Indicator(_stoch, ("high", "low", "close"),
                       {"fastk_period": int, "slowk_period": int, "slowd_period": int},
                       ("stoch_k", "stoch_d"), {"fastk_period": 5, "slowk_period": 3, "slowd_period": 3},
                       lambda fastk_period, slowk_period, slowd_period:
                           fastk_period - 1 + slowk_period - 1 + slowd_period - 1,
                       {"fastk_period": (1, _MAX_PERIOD), "slowk_period": (1, _MAX_PERIOD),
                        "slowd_period": (1, _MAX_PERIOD)}),
    "adx": Indicator(_one(_adx), ("high", "low", "close"), {"period": int}, ("adx",), {"period": 14},
                     lambda period: 2 * period - 1, _periods(2)),
    "cci": Indicator(_one(_cci), ("high", "low", "close"), {"period": int}, ("cci",), {"period": 14},
                     lambda period: period - 1, _periods(2)),
    "willr": Indicator(_one(_willr), ("high", "low", "close"), {"period": int}, ("willr",), {"period": 14},
                       lambda period: period - 1, _periods(2)),
    "obv": Indicator(_one(_obv), ("close", "volume"), {}, ("obv",), {}, lambda: 0),
    "roc": Indicator(_one(_roc), ("close",), {"period": int}, ("roc",), {"period": 10},
                     lambda period: period, _periods(1)),
}


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator with its parameters, e.g. ``IndicatorSpec("macd", {"fast": 12, ...})``.

    Parameters left out take the registry's defaults.
    """

    name: str
    params: dict = field(default_factory=dict)

    @property
    def indicator(self) -> Indicator:
        try:
            return INDICATORS[self.name]
        except KeyError:
            raise ValueError(f"unknown indicator {self.name!r}; known: {', '.join(sorted(INDICATORS))}") from None

    def resolved_params(self) -> dict:
        """Every parameter, defaults filled in, cast and range-checked (see :meth:`Indicator.resolve`)."""
        return self.indicator.resolve(**self.params)

    def column_names(self) -> list[str]:
        return self.indicator.column_names(**self.params)


def lookback(spec: IndicatorSpec) -> int:
    """Bars consumed before the first output of ``spec`` (TA-Lib's ``TA_<NAME>_Lookback``).

    A symbol with ``lookback(spec)`` valid bars or fewer gets no value for ``spec``.
    """
    return int(spec.indicator.lookback(**spec.resolved_params()))


def compute_indicators(bars: dict, specs: list[IndicatorSpec]) -> dict:
    """Every requested indicator for every symbol, in one vectorised pass per indicator.

    Parameters
    ----------
    bars : dict of str to array of shape (n_bars, n_symbols)
        ``open``, ``high``, ``low``, ``close``, ``volume`` (those the specs need); NaN where a
        symbol has no bar (``close`` decides).
    specs : list of IndicatorSpec

    Returns
    -------
    dict of str to array of shape (n_bars, n_symbols)
        One entry per output column (see :meth:`Indicator.column_names`), in spec order, each in
        the float dtype of ``bars["close"]`` (float64 for an integer ``close``).

    Raises
    ------
    ValueError
        On an unknown indicator or parameter, or a parameter outside TA-Lib's range (checked for
        every spec before anything is computed).
    KeyError
        When ``bars`` lacks an input a spec needs.
    """
    resolved = [(spec.indicator, spec.resolved_params(), spec.column_names()) for spec in specs]
    close = bars["close"]
    valid = valid_mask(close)
    gaps = needs_compaction(valid)
    n = lengths(valid)
    dtype = float_dtype(close)
    compacted = {}

    def field_(name):
        if name not in compacted:
            x = bars[name]
            if x.dtype != dtype:
                x = x.astype(dtype)
            compacted[name] = compact(x, valid) if gaps else x
        return compacted[name]

    result = {}
    for ind, params, names in resolved:
        outputs = ind.compute(*(field_(i) for i in ind.inputs), n, **params)
        for name, out in zip(names, outputs):
            # Outputs are fresh arrays of the compacted implementation: expand them in place.
            result[name] = expand_in_place(out, valid, n) if gaps else out
    return result
