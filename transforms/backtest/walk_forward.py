"""Walk-forward arithmetic for the parameter sweep: windows, window slices, the in-sample choice.

Implements

- :func:`walk_forward_windows`: rolling (train, test) windows over a panel's timestamps;
- :func:`window_bars`: the bars of one window cut out of compacted arrays, re-compacted, so the
  engine trades only inside the window while its indicators keep the history before it;
- :func:`choose_combinations`: the best combination per (window, symbol) from train-window
  metrics only.

Pure: arrays and plain parameters in, arrays out; NumPy or CuPy, chosen by the inputs.
"""
from __future__ import annotations

import warnings

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.kernels import series_order


def walk_forward_windows(n_bars: int, train_bars: int, test_bars: int) -> list[tuple[int, int, int, int]]:
    """Rolling windows over ``n_bars`` timestamps: a train window then a test window, rolled by
    the test length; only whole test windows.

    Parameters
    ----------
    n_bars : timestamps of the panel
    train_bars : timestamps of each train (in-sample) window
    test_bars : timestamps of each test (out-of-sample) window, and the step between windows

    Returns
    -------
    list of (train_start, train_stop, test_start, test_stop) timestamp rows, stops exclusive;
    empty when ``train_bars + test_bars > n_bars``.
    """
    out, start = [], 0
    while start + train_bars + test_bars <= n_bars:
        out.append((start, start + train_bars, start + train_bars, start + train_bars + test_bars))
        start += test_bars
    return out


def window_bars(prices: dict, n, rows, bank, *, start_row: int, stop_row: int):
    """The bars at timestamp rows [start_row, stop_row) of compacted arrays, re-compacted: each
    symbol's window bars first, in the engine's layout (time-contiguous on the CPU, C order on the
    GPU; :func:`alphapulse.transforms.kernels.series_order`).

    Parameters
    ----------
    prices : dict of field -> compacted array of shape (n_bars, n_symbols)
        (``alphapulse.transforms.backtest.engine.compact_bars``)
    n : int64 array of shape (n_symbols,): bars per symbol
    rows : int64 array of shape (n_bars, n_symbols): the timestamp row of each compacted bar, -1
        below ``n``
    bank : indicator bank of shape (K, n_bars, n_symbols)
        (``alphapulse.transforms.backtest.engine.indicator_bank``); a bank whose time axis is not
        ``n_bars`` long (the placeholder of a plan without indicators) is returned as is
    start_row, stop_row : the window's timestamp rows, stop exclusive

    Returns
    -------
    prices_w : dict of field -> array of shape (width, n_symbols), width = max(longest window, 2)
        (rows past a symbol's window bars repeat bars and are ignored below ``n_w``)
    n_w : int64 array of shape (n_symbols,): window bars per symbol
    bank_w : array of shape (K, width, n_symbols), the bank's rows at the same bars
    idx : int64 array of shape (width, n_symbols): window bar k of symbol s is compacted bar
        ``idx[k, s]``
    """
    xp = namespace(rows)
    order = series_order(xp)
    present = rows >= 0
    a = xp.sum(present & (rows < start_row), axis=0)
    b = xp.sum(present & (rows < stop_row), axis=0)
    n_w = (b - a).astype(np.int64)
    # two bars at least: a one-row panel is both C- and F-contiguous, another Numba layout
    width = max(int(n_w.max()) if n_w.size else 0, 2)
    last = rows.shape[0] - 1
    idx = xp.minimum(a[None, :] + xp.arange(width)[:, None], last)
    prices_w = {k: _laid_out(xp.take_along_axis(v, idx, axis=0), order, xp) for k, v in prices.items()}
    if bank.shape[1] != rows.shape[0]:
        bank_w = bank
    else:
        k_rows, _, n_sym = bank.shape
        if order == "F":
            bank_w = xp.empty((k_rows, n_sym, width), dtype=bank.dtype).transpose(0, 2, 1)
        else:
            bank_w = xp.empty((k_rows, width, n_sym), dtype=bank.dtype)
        for k in range(k_rows):
            bank_w[k] = xp.take_along_axis(bank[k], idx, axis=0)
    return prices_w, n_w, bank_w, idx


def _laid_out(x, order: str, xp):
    return xp.asfortranarray(x) if order == "F" else xp.ascontiguousarray(x)


def choose_combinations(in_sample: np.ndarray, *, select: str) -> np.ndarray:
    """Best combination per (window, symbol) from train-window (in-sample) metric values only.

    Parameters
    ----------
    in_sample : array of shape (n_windows, n_combinations, n_symbols), higher is better, NaN =
        undefined (never chosen)
    select : "per_symbol" (each symbol's own best) or "median" (the best median over symbols, for
        every symbol)

    Returns
    -------
    int array of shape (n_windows, n_symbols): combination index, -1 where nothing is defined.
    Ties go to the lowest index.
    """
    if select == "median":
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN slice's median is NaN: the answer
            med = np.nanmedian(in_sample, axis=2)  # (n_windows, n_combinations)
        score = np.where(np.isnan(med), -np.inf, med)
        best = np.where(np.any(~np.isnan(med), axis=1), np.argmax(score, axis=1), -1)
        return np.repeat(best[:, None], in_sample.shape[2], axis=1)
    if select != "per_symbol":
        raise ValueError(f"unknown selection {select!r}: expected per_symbol or median")
    score = np.where(np.isnan(in_sample), -np.inf, in_sample)
    return np.where(np.any(~np.isnan(in_sample), axis=1), np.argmax(score, axis=1), -1)
