"""Technical indicators for every symbol at once, identical to TA-Lib.

Implements: SMA, EMA, RSI, MACD, Bollinger Bands, ATR, NATR, Stochastic (slow %K/%D), ADX, CCI,
Williams %R, OBV, ROC.

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
than the lookback. Arithmetic follows TA-Lib's C code operation by operation (running sums,
SMA-seeded EMA, Wilder smoothing) and accumulates in float64 whatever the storage dtype.

The batch entry point :func:`compute_indicators` compacts the panel once for all indicators; the
per-indicator functions (``sma``, ``ema``, ...) are for single use.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from transforms._array import float_dtype, namespace
from transforms.kernels import compact, expand, lengths, needs_compaction, series_kernel, valid_mask

# ---------------------------------------------------------------------------------------------
# Series kernels. Each processes column j of compacted inputs (valid rows 0..n[j]-1, no holes).
# ---------------------------------------------------------------------------------------------


@series_kernel
def _sma_column(j, x, n, period, out):
    # TA-Lib ta_SMA.c: a running total, added then subtracted, divided at each step.
    m = n[j]
    if m < period:
        return
    total = 0.0
    for i in range(period - 1):
        total += x[i, j]
    trailing = 0
    for i in range(period - 1, m):
        total += x[i, j]
        out[i, j] = total / period
        total -= x[trailing, j]
        trailing += 1


@series_kernel
def _ema_column(j, x, n, period, first, out):
    # TA-Lib TA_INT_EMA (classic, non-Metastock): seed with the SMA of the `period` bars ending at
    # `first`, then prev = (x - prev) * k + prev. `first` = period - 1 for a plain EMA; MACD's
    # fast EMA passes slow - 1 so both seeds end on the same bar.
    m = n[j]
    if m <= first:
        return
    k = 2.0 / (period + 1)
    total = 0.0
    for i in range(first - period + 1, first + 1):
        total += x[i, j]
    prev = total / period
    out[first, j] = prev
    for i in range(first + 1, m):
        prev = (x[i, j] - prev) * k + prev
        out[i, j] = prev


# ---------------------------------------------------------------------------------------------
# Compacted implementations: inputs compacted, `n` the per-column lengths; outputs compacted.
# ---------------------------------------------------------------------------------------------


def _empty(x):
    xp = namespace(x)
    return xp.full_like(x, np.nan, dtype=float_dtype(x))


def _sma(close, n, *, period):
    out = _empty(close)
    _sma_column(close.shape[1], close, n, period, out)
    return out


def _ema(close, n, *, period, first=None):
    out = _empty(close)
    _ema_column(close.shape[1], close, n, period, period - 1 if first is None else first, out)
    return out


# ---------------------------------------------------------------------------------------------
# Registry and batch entry point
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Indicator:
    """How to compute one indicator family and name its outputs.

    ``compute(inputs..., n, **params)`` works on compacted panels and returns one array per
    output. Output columns are named ``<output>_<param values>`` (e.g. ``macd_signal_12_26_9``),
    or just ``<output>`` for indicators without parameters (``obv``).
    """

    compute: Callable
    inputs: tuple[str, ...]
    params: dict[str, type]
    outputs: tuple[str, ...]
    defaults: dict[str, float]

    def column_names(self, **params) -> list[str]:
        suffix = "_".join(_format_param(params[p]) for p in self.params)
        return [f"{o}_{suffix}" if suffix else o for o in self.outputs]


def _format_param(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _one(fn):
    """Adapt a single-output compacted implementation to the registry's tuple convention."""

    def compute(*args, **params):
        return (fn(*args, **params),)

    return compute


INDICATORS: dict[str, Indicator] = {
    "sma": Indicator(_one(_sma), ("close",), {"period": int}, ("sma",), {"period": 20}),
    "ema": Indicator(_one(_ema), ("close",), {"period": int}, ("ema",), {"period": 12}),
}


@dataclass(frozen=True)
class IndicatorSpec:
    """One indicator with its parameters, e.g. ``IndicatorSpec("macd", {"fast": 12, ...})``."""

    name: str
    params: dict

    def column_names(self) -> list[str]:
        return INDICATORS[self.name].column_names(**self.params)


def lookback(spec: IndicatorSpec) -> int:
    """Bars consumed before the first output of ``spec`` (TA-Lib's ``*_Lookback``)."""
    return INDICATORS[spec.name].lookback(**spec.params) if hasattr(INDICATORS[spec.name], "lookback") else 0


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
        the dtype of ``bars["close"]``.
    """
    close = bars["close"]
    valid = valid_mask(close)
    gaps = needs_compaction(valid)
    n = lengths(valid)
    dtype = float_dtype(close)
    compacted = {}

    def field(name):
        if name not in compacted:
            x = bars[name]
            if x.dtype != dtype:
                x = x.astype(dtype)
            compacted[name] = compact(x, valid) if gaps else x
        return compacted[name]

    result = {}
    for spec in specs:
        ind = INDICATORS[spec.name]
        outputs = ind.compute(*(field(i) for i in ind.inputs), n, **spec.params)
        for name, out in zip(spec.column_names(), outputs):
            result[name] = expand(out, valid) if gaps else out
    return result


def _public(name):
    """A per-indicator function over raw panels (compacts, computes, expands)."""
    ind = INDICATORS[name]

    def fn(*inputs, **params):
        bars = dict(zip(ind.inputs, inputs))
        out = compute_indicators(bars, [IndicatorSpec(name, {**ind.defaults, **params})])
        values = tuple(out.values())
        return values[0] if len(values) == 1 else values

    fn.__name__ = name
    return fn


def sma(close, *, period=20):
    """Simple moving average (TA-Lib ``SMA``).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars in the window

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period - 1``.
    """
    return _public("sma")(close, period=period)


def ema(close, *, period=12):
    """Exponential moving average seeded with the SMA of the first ``period`` bars (TA-Lib ``EMA``).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, smoothing ``k = 2 / (period + 1)``

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period - 1``.
    """
    return _public("ema")(close, period=period)
