"""Returns of a price panel, and the rule that picks a common window of complete returns.

Implements:

- :func:`simple_returns` and :func:`log_returns`: one-bar returns of a panel of prices of shape
  ``(n_bars, n_symbols)`` (NaN where a symbol has no bar), aligned with the price rows.
- :func:`common_window`: which symbols qualify for a common estimation window (enough history,
  few enough gaps), which rows of the window every qualifying symbol has a return on, and the
  symbols that do not qualify with their reason (:class:`Exclusion`), for the report.

The gap rule (one rule for every estimator downstream):

- A return is a **one-bar return**: ``r[t] = p[t] / p[t-1] - 1`` (or ``log(p[t] / p[t-1])``) only
  when both bar ``t`` and bar ``t-1`` have a price; otherwise ``r[t]`` is NaN. Returns are *not*
  computed across a gap: a return spanning k missing bars covers k + 1 periods, and mixing it
  with the other symbols' one-bar returns would inflate that symbol's variance and misalign its
  co-movements. So one missing bar makes two NaN returns (the missing bar's and the next one's),
  and row 0 is always NaN. Prices are never forward-filled. A non-positive or non-finite price
  counts as a missing bar.
- A symbol's bars before its first return in the window are "not listed yet" (a late listing):
  they shorten its history but are not gaps. Every missing return after its first one in the
  window, interior or trailing (a halt, a delisting), is a gap.
- :func:`common_window` then keeps the symbols with at least ``min_history_bars`` returns in the
  window and at most ``max_gap_fraction`` of gaps, and the rows from the latest first return of
  a kept symbol to the end of the window on which every kept symbol has a return (a row where a
  kept symbol has a gap is dropped for all symbols: listwise deletion, counted in
  ``n_gap_rows_dropped``). ``returns[window.rows][:, window.columns]`` is then complete, as the
  covariance estimators (:mod:`alphapulse.transforms.covariance`) require.

Backend: :func:`simple_returns` and :func:`log_returns` are NumPy/CuPy generic (the result is on
the input's device, in its float dtype). :func:`common_window` reduces the panel on its device to
per-symbol and per-row counts and brings those (``n_symbols + n_bars`` numbers) to the host to
build the report; its row and column indices are NumPy arrays, which index a CuPy panel too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from alphapulse.transforms.arrays import float_dtype, is_cupy, namespace

__all__ = ["simple_returns", "log_returns", "common_window", "CommonWindow", "Exclusion", "EXCLUSION_REASONS"]


def _valid_prices(prices):
    xp = namespace(prices)
    p = xp.asarray(prices)
    if p.ndim != 2:
        raise ValueError(f"prices must be 2-D (n_bars, n_symbols), got shape {p.shape}")
    p = p.astype(float_dtype(p), copy=False)
    with np.errstate(invalid="ignore"):
        valid = xp.isfinite(p) & (p > 0)
    return xp, p, valid


def _one_bar_ratio(prices):
    """(xp, ratio p[t] / p[t-1] with NaN where either bar is missing, row 0 NaN)."""
    xp, p, valid = _valid_prices(prices)
    ratio = xp.full(p.shape, xp.nan, dtype=p.dtype)
    if p.shape[0] > 1:
        both = valid[1:] & valid[:-1]
        prev = xp.where(both, p[:-1], 1)
        ratio[1:] = xp.where(both, p[1:] / prev, xp.nan)
    return xp, ratio


def simple_returns(prices):
    """One-bar simple returns ``p[t] / p[t-1] - 1``.

    Parameters
    ----------
    prices : array of shape (n_bars, n_symbols)
        Prices (e.g. closes), positive; NaN where a symbol has no bar.

    Returns
    -------
    returns : array of shape (n_bars, n_symbols)
        Same rows as ``prices`` (row ``t`` is the return from bar ``t-1`` to bar ``t``), in
        ``prices``' float dtype (float64 for integers). NaN in row 0 and wherever bar ``t`` or bar
        ``t-1`` has no valid price (see the module's gap rule). Equal to pandas'
        ``df.pct_change(fill_method=None)`` on positive prices.
    """
    xp, ratio = _one_bar_ratio(prices)
    return ratio - 1


def log_returns(prices):
    """One-bar log returns ``log(p[t] / p[t-1])``.

    Parameters
    ----------
    prices : array of shape (n_bars, n_symbols)
        Prices, positive; NaN where a symbol has no bar.

    Returns
    -------
    returns : array of shape (n_bars, n_symbols)
        Same rows and NaN positions as :func:`simple_returns`; ``log1p`` of the simple return.
    """
    xp, ratio = _one_bar_ratio(prices)
    return xp.log(ratio)


EXCLUSION_REASONS = {
    "no_data": "no return in the window",
    "short_history": "fewer returns in the window than min_history_bars (late listing or too many gaps)",
    "gaps": "more missing returns after its first return in the window than max_gap_fraction allows",
}
"""Why a symbol does not qualify for the common window, by code, in the order the rules apply."""


@dataclass(frozen=True)
class Exclusion:
    """One symbol left out of a common window, and why (a code of :data:`EXCLUSION_REASONS`)."""

    column: int
    symbol: str | None
    reason: str
    detail: str


@dataclass(frozen=True)
class CommonWindow:
    """The result of :func:`common_window`.

    Attributes
    ----------
    rows : NumPy int64 array of shape (n_rows,)
        Row indices (into ``returns``) of the common window, increasing.
    columns : NumPy int64 array of shape (n_qualified,)
        Column indices of the qualifying symbols, increasing.
    symbols : tuple of str, or None
        Names of the qualifying symbols (when names were given).
    excluded : tuple of Exclusion
        Every symbol that does not qualify, with its reason, in column order.
    window_start, window_stop : int
        The window examined, rows ``window_start <= t < window_stop``.
    n_gap_rows_dropped : int
        Rows after the common start dropped because a qualifying symbol has a gap there.
    """

    rows: np.ndarray
    columns: np.ndarray
    symbols: tuple | None
    excluded: tuple
    window_start: int
    window_stop: int
    n_gap_rows_dropped: int

    def select(self, returns):
        """``returns[rows][:, columns]``: the complete (n_rows, n_qualified) block (NumPy or CuPy)."""
        if is_cupy(returns):
            import cupy

            return returns[cupy.asarray(self.rows)][:, cupy.asarray(self.columns)]
        return returns[self.rows][:, self.columns]


def common_window(returns, min_history_bars: int, *, window_bars: int | None = None, end: int | None = None,
                  max_gap_fraction: float = 0.01, symbols: Sequence[str] | None = None) -> CommonWindow:
    """Symbols and rows of a common estimation window, and the symbols left out with a reason.

    The window is the ``window_bars`` rows ending at row ``end`` (inclusive). A symbol qualifies
    when, in the window,

    1. it has a return at all (else ``"no_data"``);
    2. it has at least ``min_history_bars`` returns (else ``"short_history"``);
    3. of the rows from its first return to the end of the window, at most ``max_gap_fraction``
       lack a return (else ``"gaps"``). Missing rows before its first return are a late listing,
       not gaps (rule 2 covers them).

    The common rows run from the latest first return of a qualifying symbol to the end of the
    window, less the rows where a qualifying symbol has no return (see the module docstring for
    why gaps are not bridged). Note that they can be fewer than ``min_history_bars`` when the
    qualifying symbols' gaps fall on different rows; ``len(rows)`` says how many there are.

    Parameters
    ----------
    returns : array of shape (n_bars, n_symbols)
        One-bar returns (:func:`simple_returns` or :func:`log_returns`), NaN where missing.
    min_history_bars : int
        Fewest returns (bars) a symbol needs in the window.
    window_bars : int, optional
        Length of the window in rows; default: every row up to ``end``.
    end : int, optional
        Last row of the window (a row index, negative counts from the end); default: the last row.
    max_gap_fraction : float, default 0.01
        Largest tolerated fraction of missing returns after a symbol's first return (0 = none).
    symbols : sequence of str, optional
        Names of the columns, used in the report.

    Returns
    -------
    CommonWindow
        Row and column indices of the complete block and the exclusions (see :class:`CommonWindow`).
    """
    xp = namespace(returns)
    r = xp.asarray(returns)
    if r.ndim != 2:
        raise ValueError(f"returns must be 2-D (n_bars, n_symbols), got shape {r.shape}")
    n_bars, n_symbols = r.shape
    if symbols is not None and len(symbols) != n_symbols:
        raise ValueError(f"{len(symbols)} symbol names for {n_symbols} columns")
    if min_history_bars < 1:
        raise ValueError(f"min_history_bars must be at least 1, got {min_history_bars}")
    if not 0.0 <= max_gap_fraction < 1.0:
        raise ValueError(f"max_gap_fraction must be in [0, 1), got {max_gap_fraction}")
    if end is not None and not -n_bars <= end < n_bars:
        raise ValueError(f"end={end} is outside the {n_bars} rows")
    stop = n_bars if end is None else (end % n_bars) + 1
    start = 0 if window_bars is None else max(stop - int(window_bars), 0)
    valid = xp.isfinite(r[start:stop])
    n_rows = stop - start

    count = valid.sum(axis=0)
    any_valid = valid.any(axis=0)
    first = xp.argmax(valid, axis=0)  # first valid row in the window (0 when none)
    host = (lambda a: a.get()) if is_cupy(r) else np.asarray
    count, any_valid, first = host(count).astype(np.int64), host(any_valid), host(first).astype(np.int64)

    since_first = n_rows - first
    missing = since_first - count
    excluded = []
    keep = np.zeros(n_symbols, dtype=bool)
    for j in range(n_symbols):
        name = None if symbols is None else str(symbols[j])
        if not any_valid[j]:
            excluded.append(Exclusion(j, name, "no_data", f"no return in rows {start}..{stop - 1}"))
        elif count[j] < min_history_bars:
            excluded.append(Exclusion(j, name, "short_history",
                                      f"{count[j]} returns < min_history_bars={min_history_bars} "
                                      f"(first return at row {start + first[j]})"))
        elif missing[j] > max_gap_fraction * since_first[j]:
            excluded.append(Exclusion(j, name, "gaps",
                                      f"{missing[j]} of {since_first[j]} rows since its first return missing "
                                      f"({missing[j] / since_first[j]:.2%} > {max_gap_fraction:.2%})"))
        else:
            keep[j] = True
    columns = np.flatnonzero(keep).astype(np.int64)
    if columns.size == 0:
        rows = np.zeros(0, dtype=np.int64)
        dropped = 0
    else:
        common_start = int(first[columns].max())
        cols = xp.asarray(columns) if is_cupy(r) else columns
        complete = host(valid[common_start:][:, cols].all(axis=1))
        rows = (start + common_start + np.flatnonzero(complete)).astype(np.int64)
        dropped = int(complete.size - rows.size)
    names = None if symbols is None else tuple(str(symbols[j]) for j in columns)
    return CommonWindow(rows=rows, columns=columns, symbols=names, excluded=tuple(excluded), window_start=start,
                        window_stop=stop, n_gap_rows_dropped=dropped)
