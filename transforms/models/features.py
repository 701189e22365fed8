"""Model features and targets from a time x symbol panel: everything known at bar t's close.

Implements: :func:`feature_panel` (lagged one-bar returns, multi-bar returns, rolling
volatility, normalised indicator outputs and per-date cross-sectional ranks, stacked into one
(time, symbol, feature) array), :func:`forward_returns` (the target), :func:`rolling_std`,
:func:`cross_sectional_rank` and :func:`indicator_feature` (the indicator normalisation).

No look-ahead: every feature at row t is a function of rows <= t of the same symbol (ranks: of
rows t of every symbol), so changing any data after t never changes a feature at or before t
(``tests/transforms/models/test_features.py`` checks it by perturbing the future). Only the target
looks ahead: ``forward_returns(close, horizon_bars=k)[t] = close[t + k] / close[t] - 1``.

NaN: a missing bar (NaN close) makes that row's return features NaN and the returns that span
it NaN (a return is never taken across a gap); a rolling statistic is NaN unless every value
in its window is finite; indicators propagate NaN as :mod:`alphapulse.transforms.indicators.registry` documents.
Rows with any NaN feature or a NaN target are left out of training by the walk-forward, never
filled.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace

PRICE_LEVEL_PREFIXES = ("sma_", "ema_", "bb_upper_", "bb_middle_", "bb_lower_")
"""Indicator outputs in price units, used as ``close / x - 1`` (distance from the level)."""
PRICE_DIFF_PREFIXES = ("macd_", "atr_")
"""Indicator outputs that are price differences, used as ``x / close``."""
UNSCALABLE_PREFIXES = ("obv_",)
"""Outputs with no stationary scale (cumulative volume): refused as features."""


def one_bar_returns(close):
    """Simple one-bar returns ``close[t] / close[t-1] - 1``, NaN on row 0 and next to a gap.

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)

    Returns
    -------
    array of the same shape and float dtype.
    """
    xp = namespace(close)
    out = xp.full(close.shape, np.nan, dtype=float_dtype(close))
    out[1:] = close[1:] / close[:-1] - 1.0
    return out


def lagged(x, lag_bars: int):
    """``x`` shifted down by ``lag_bars`` rows (row t holds x[t - lag]); NaN on the first rows."""
    xp = namespace(x)
    if lag_bars == 0:
        return x.copy()
    out = xp.full(x.shape, np.nan, dtype=x.dtype)
    out[lag_bars:] = x[:-lag_bars]
    return out


def window_returns(close, window_bars: int):
    """``close[t] / close[t - w] - 1``: the return over the last ``window_bars`` bars (rows)."""
    xp = namespace(close)
    out = xp.full(close.shape, np.nan, dtype=float_dtype(close))
    out[window_bars:] = close[window_bars:] / close[:-window_bars] - 1.0
    return out


def rolling_std(x, window_bars: int):
    """Sample standard deviation (ddof=1) over the trailing ``window_bars`` rows.

    Two passes (mean, then squared deviations) over shifted views, so the result has no
    cumulative-sum cancellation; NaN unless all ``window_bars`` values are finite.

    Parameters
    ----------
    x : array of shape (n_bars, n_symbols)
    window_bars : int >= 2

    Returns
    -------
    array of the same shape: row t is the std of rows t - w + 1 .. t.
    """
    xp = namespace(x)
    if window_bars < 2:
        raise ValueError(f"window_bars must be at least 2, got {window_bars}")
    n = x.shape[0]
    out = xp.full(x.shape, np.nan, dtype=x.dtype)
    if n < window_bars:
        return out
    m = n - window_bars + 1
    mean = sum(x[k:k + m] for k in range(window_bars)) / window_bars
    ss = sum((x[k:k + m] - mean) ** 2 for k in range(window_bars))
    out[window_bars - 1:] = xp.sqrt(ss / (window_bars - 1))
    return out


def cross_sectional_rank(x):
    """Per-row (per-date) rank across symbols, scaled to [0, 1]; ties get their average rank.

    Parameters
    ----------
    x : array of shape (n_bars, n_symbols); NaN values are not ranked

    Returns
    -------
    array of the same shape: ``(rank - 1) / (count - 1)`` among the row's finite values (0.5 for
    a row with a single finite value), NaN where ``x`` is NaN.
    """
    xp = namespace(x)
    r = average_ranks(x)
    count = xp.isfinite(x).sum(axis=1, keepdims=True).astype(r.dtype)
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.where(count > 1, (r - 1.0) / xp.maximum(count - 1.0, 1.0), 0.5 + 0.0 * r)


def average_ranks(x):
    """1-based average ranks of each row's finite values (``scipy.stats.rankdata`` per row), NaN
    where ``x`` is NaN.

    Parameters
    ----------
    x : array of shape (n_rows, n_cols)

    Returns
    -------
    float64 array of the same shape.
    """
    xp = namespace(x)
    n_rows, n_cols = x.shape
    if x.size == 0:
        # CuPy's bincount sizes its output with int(max(group)) + 1, which raises on no groups
        return xp.empty((n_rows, n_cols), dtype=xp.float64)
    finite = xp.isfinite(x)
    # NaN sorts last in NumPy and CuPy; +inf stand-ins keep it so whatever the input held.
    key = xp.where(finite, x, xp.inf).astype(xp.float64)
    order = xp.argsort(key, axis=1, kind="stable")
    s = xp.take_along_axis(key, order, axis=1)
    new = xp.ones((n_rows, n_cols), dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    # Tie groups numbered across the whole array (row offsets keep rows apart): the average of
    # the 1-based positions in a group is its average rank.
    group = xp.cumsum(new.ravel()) - 1
    pos = xp.broadcast_to(xp.arange(1, n_cols + 1, dtype=xp.float64), (n_rows, n_cols)).ravel()
    n_groups = int(group[-1]) + 1
    sums = xp.bincount(group, weights=pos, minlength=n_groups)
    counts = xp.bincount(group, minlength=n_groups)
    avg_sorted = (sums / counts)[group].reshape(n_rows, n_cols)
    out = xp.empty((n_rows, n_cols), dtype=xp.float64)
    xp.put_along_axis(out, order, avg_sorted, axis=1)
    return xp.where(finite, out, xp.nan)


def indicator_feature(name: str, values, close):
    """An indicator output as a scale-free feature (see the ``*_PREFIXES`` constants).

    Price levels become ``close / x - 1``, price differences ``x / close``; bounded oscillators
    and percentages (RSI, Stochastic, ADX, CCI, Williams %R, ROC, NATR) are used as they are.

    Raises
    ------
    ValueError
        For an output without a stationary scale (OBV).
    """
    if name.startswith(UNSCALABLE_PREFIXES):
        raise ValueError(f"indicator output {name!r} has no stationary scale and cannot be a model feature")
    if name.startswith(PRICE_LEVEL_PREFIXES):
        return close / values - 1.0
    if name.startswith(PRICE_DIFF_PREFIXES):
        return values / close
    return values


def feature_panel(close, *, indicators: dict | None = None, return_lags: int = 5, return_windows=(5, 21),
                  volatility_windows=(21,), rank_features=()) -> tuple:
    """The feature array of every (bar, symbol): all known at the bar's close.

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols), NaN where a symbol has no bar
    indicators : dict of output name to array of shape (n_bars, n_symbols): indicator outputs
        (``alphapulse.transforms.indicators.registry.compute_indicators``), normalised by :func:`indicator_feature`
    return_lags : int
        one-bar returns at lags 0 .. return_lags - 1: features ``ret_1_lag0`` (the bar's own
        return) .. ``ret_1_lag{L-1}``
    return_windows : ints, ``ret_{w}`` = close[t] / close[t - w] - 1
    volatility_windows : ints >= 2, ``vol_{w}`` = rolling std (ddof=1) of one-bar returns
    rank_features : names of features above; each adds ``rank_{name}``, its per-date
        cross-sectional rank in [0, 1] (:func:`cross_sectional_rank`)

    Returns
    -------
    features : array of shape (n_bars, n_symbols, n_features), float dtype of ``close``
    names : list of the n_features feature names, in the last axis' order
    """
    xp = namespace(close)
    dtype = float_dtype(close)
    close = close.astype(dtype, copy=False)
    r1 = one_bar_returns(close)
    cols: dict = {}
    for lag in range(int(return_lags)):
        cols[f"ret_1_lag{lag}"] = lagged(r1, lag)
    for w in return_windows:
        cols[f"ret_{int(w)}"] = window_returns(close, int(w))
    for w in volatility_windows:
        cols[f"vol_{int(w)}"] = rolling_std(r1, int(w))
    for name, values in (indicators or {}).items():
        if name in cols:
            raise ValueError(f"feature name {name!r} given twice")
        cols[name] = indicator_feature(name, values.astype(dtype, copy=False), close)
    for name in rank_features:
        if name not in cols:
            raise ValueError(f"rank_features: unknown feature {name!r}; known: {', '.join(cols)}")
        cols[f"rank_{name}"] = cross_sectional_rank(cols[name]).astype(dtype)
    if not cols:
        raise ValueError("no features: set return_lags, return_windows, volatility_windows or indicators")
    names = list(cols)
    out = xp.empty((*close.shape, len(names)), dtype=dtype)
    for k, name in enumerate(names):
        v = cols[name]
        out[:, :, k] = xp.where(xp.isfinite(v), v, xp.nan)  # inf (x / 0) is no information either
    return out, names


def forward_returns(close, *, horizon_bars: int):
    """The target: ``close[t + k] / close[t] - 1`` with ``k = horizon_bars`` (panel rows).

    NaN where either close is missing and on the last ``k`` rows (the future is unknown).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    horizon_bars : int >= 1

    Returns
    -------
    array of the same shape and float dtype.
    """
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be at least 1, got {horizon_bars}")
    xp = namespace(close)
    out = xp.full(close.shape, np.nan, dtype=float_dtype(close))
    out[:-horizon_bars] = close[horizon_bars:] / close[:-horizon_bars] - 1.0
    return out
