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

Reference: the TA-Lib C library 0.8.1 that the ``ta-lib`` wheel bundles (its ``ta_codegen``
sources). That release changed several formulas from the classic 0.4 code, and the kernels follow
the release, not the classic code:

- ATR/NATR smooth with ``a * tr + b * prev`` (``b = (n-1)/n``, ``a = 1-b``), RSI and ADX scale by
  a hoisted ``1/n``; RSI and ADX test their denominators exactly (``> 0``);
- BBANDS' deviation is a shifted-data running variance that re-seeds itself from the window on
  cancellation (no ``E[x^2] - mean^2``, no fixed epsilon);
- STOCH, WILLR and CCI call a window flat relative to its own price level
  (``|d| <= 1e-14 * scale``); STOCH's raw %K and WILLR are ``((c - l) / (h - l)) * 100``;
- EMA with period 1 and a MACD signal period of 1 are exact copies.

The x86-64 TA-Lib build is compiled with fused multiply-add (an FMA clone chosen at load time on
CPUs that have it), so some of its recurrences (the EMA steps, ATR/NATR and ADX's Wilder steps)
round once where these kernels round twice. On the S&P 500 panel the two agree to 3e-15 relative
on levels and 1e-10 on the MACD histogram near its zero crossings; SMA, RSI, BBANDS, STOCH, CCI,
WILLR, OBV and ROC are bit-identical, EMA on 99.95% of the bars. The GPU build (NVVM) fuses
multiply-adds too, in its own places: GPU and CPU agree to a few ulp.

The batch entry point :func:`compute_indicators` compacts the panel once for all indicators; the
per-indicator functions (``sma``, ``ema``, ...) are for single use.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.kernels import (compact, device_function, expand_in_place, lengths, needs_compaction, series_kernel,
                                valid_mask)

# TA-Lib's TA_EPSILON (ta_utility.h): the relative dead-zone of its scale-aware zero tests.
_EPSILON = 1e-14

# The float64 cast used on every value a kernel reads. Not float(): Numba types float() of a
# float32 as float32, so float32 panels would compute in float32. np.float64 is float64 on the
# CPU, on CUDA and (as a NumPy scalar) in the CUDA simulator.
_f64 = np.float64


@device_function
def _running_extreme(x, j, i, trailing, current, current_at, sign):
    # TA-Lib's running lowest (sign = 1) or highest (sign = -1) of x[trailing..i, j], as
    # (value, index): rescan the window only when the current extreme has left it; on a tie the
    # newest bar wins, as in TA-Lib. Multiplying by -1 is exact, so both sides share one code.
    v = _f64(x[i, j])
    if current_at < trailing:
        current_at = trailing
        current = _f64(x[trailing, j])
        for t in range(trailing + 1, i + 1):
            v = _f64(x[t, j])
            if sign * v < sign * current:
                current_at = t
                current = v
    elif sign * v <= sign * current:
        current_at = i
        current = v
    return current, current_at

# ---------------------------------------------------------------------------------------------
# Series kernels. Each processes column j of compacted inputs (valid rows 0..n[j]-1, no holes).
# Scalar arithmetic only (they also compile for CUDA); values are read through _f64() so that
# float32 panels compute in float64, as TA-Lib's TA_S_* functions do.
# ---------------------------------------------------------------------------------------------


@series_kernel
def _sma_column(j, x, n, period, out):
    # TA-Lib ta_SMA.c: a running total, added then subtracted, divided at each step.
    m = n[j]
    if m < period:
        return
    total = 0.0
    for i in range(period - 1):
        total += _f64(x[i, j])
    trailing = 0
    for i in range(period - 1, m):
        total += _f64(x[i, j])
        out[i, j] = total / period
        total -= _f64(x[trailing, j])
        trailing += 1


@series_kernel
def _ema_column(j, x, n, period, first, out):
    # TA-Lib TA_INT_EMA (classic, non-Metastock): seed with the SMA of the `period` bars ending at
    # `first`, then prev = (x - prev) * k + prev. `first` = period - 1 for a plain EMA; a caller
    # with an earlier series to align to (MACD's fast EMA) passes a later `first`.
    m = n[j]
    if m <= first:
        return
    if period == 1:
        # TA-Lib 0.8: no smoothing at period 1 is an exact copy ((x - p) * 1 + p need not be x).
        for i in range(first, m):
            out[i, j] = x[i, j]
        return
    k = 2.0 / (period + 1)
    total = 0.0
    for i in range(first - period + 1, first + 1):
        total += _f64(x[i, j])
    prev = total / period
    out[first, j] = prev
    for i in range(first + 1, m):
        prev = (_f64(x[i, j]) - prev) * k + prev
        out[i, j] = prev


@series_kernel
def _rsi_column(j, x, n, period, out):
    # TA-Lib rsi.c (0.8): Wilder's average gain/loss seeded with the mean of the first `period`
    # changes; steps multiply by period-1 then by a hoisted 1/period. A zero total (no change
    # at all) gives 0.
    m = n[j]
    if m <= period:
        return
    inv = 1.0 / period
    back = _f64(period - 1)
    prev = _f64(x[0, j])
    gain = 0.0
    loss = 0.0
    for i in range(1, period + 1):
        value = _f64(x[i, j])
        delta = value - prev
        prev = value
        up = delta if delta > 0.0 else 0.0
        gain += up
        loss += up - delta
    loss *= inv
    gain *= inv
    total = gain + loss
    out[period, j] = 100.0 * (gain / total) if total > 0.0 else 0.0
    for i in range(period + 1, m):
        value = _f64(x[i, j])
        delta = value - prev
        prev = value
        loss *= back
        gain *= back
        up = delta if delta > 0.0 else 0.0
        gain += up
        loss += up - delta
        loss *= inv
        gain *= inv
        total = gain + loss
        out[i, j] = 100.0 * (gain / total) if total > 0.0 else 0.0


@series_kernel
def _macd_column(j, x, n, fast, slow, signal, line_out, signal_out, hist_out):
    # TA-Lib macd.c: the fast and slow EMAs advance in lockstep; the fast seed is the mean of the
    # `fast` bars that end where the slow seed's `slow` bars end (bar slow-1). The signal EMA is
    # seeded with the mean of the first `signal` MACD values. All outputs start at
    # slow-1 + signal-1 (TA-Lib writes no MACD line before the signal exists).
    m = n[j]
    first = slow - 1 + signal - 1
    if m <= first:
        return
    k_fast = 2.0 / (fast + 1)
    k_slow = 2.0 / (slow + 1)
    k_signal = 2.0 / (signal + 1)
    total = 0.0
    for i in range(slow - fast):
        total += _f64(x[i, j])
    prev_fast = 0.0
    for i in range(slow - fast, slow):
        value = _f64(x[i, j])
        prev_fast += value
        total += value
    prev_slow = total / slow
    prev_fast = prev_fast / fast
    line = prev_fast - prev_slow
    prev_signal = 0.0
    prev_signal += line
    for i in range(slow, first + 1):
        value = _f64(x[i, j])
        prev_fast = (value - prev_fast) * k_fast + prev_fast
        prev_slow = (value - prev_slow) * k_slow + prev_slow
        line = prev_fast - prev_slow
        prev_signal += line
    prev_signal = prev_signal / signal
    line_out[first, j] = line
    signal_out[first, j] = prev_signal
    hist_out[first, j] = line - prev_signal
    for i in range(first + 1, m):
        value = _f64(x[i, j])
        prev_fast = (value - prev_fast) * k_fast + prev_fast
        prev_slow = (value - prev_slow) * k_slow + prev_slow
        line = prev_fast - prev_slow
        if signal == 1:
            prev_signal = line
        else:
            prev_signal = (line - prev_signal) * k_signal + prev_signal
        line_out[i, j] = line
        signal_out[i, j] = prev_signal
        hist_out[i, j] = line - prev_signal


@series_kernel
def _bbands_column(j, x, n, period, nbdev, upper, middle, lower):
    # TA-Lib bbands.c, SMA fast path (0.8): the middle band is the SMA running total; the
    # deviation is a population variance of the data shifted by a reference value, in two running
    # sums, re-seeded from the whole window (shift = window mean) when the variance loses
    # precision to cancellation, when a large value leaves the window, or every 32 * period bars.
    m = n[j]
    if m < period:
        return
    back = period - 1
    inv = 1.0 / period
    shift = _f64(x[0, j])
    ma_total = 0.0
    total1 = 0.0
    total2 = 0.0
    for i in range(back):
        value = _f64(x[i, j])
        ma_total += value
        d = value - shift
        total1 += d
        total2 += d * d
    trailing = 0
    until_reseed = 32 * period
    for i in range(back, m):
        value = _f64(x[i, j])
        ma_total += value
        d = value - shift
        total1 += d
        total2 += d * d
        mean1 = total1 * inv
        variance = total2 * inv - mean1 * mean1
        mid = ma_total / period

        old = _f64(x[trailing, j])
        ma_total -= old
        d = old - shift
        total1 -= d
        d2 = d * d
        total2 -= d2
        trailing += 1

        until_reseed -= 1
        if variance < 0.000001 * (total2 * inv) or d2 > 1000000.0 * total2 or until_reseed <= 0:
            until_reseed = 32 * period
            start = i - back
            s = 0.0
            for t in range(start, i + 1):
                s += _f64(x[t, j])
            shift = s * inv
            total1 = 0.0
            total2 = 0.0
            for t in range(start, i + 1):
                d = _f64(x[t, j]) - shift
                total1 += d
                total2 += d * d
            mean1 = total1 * inv
            variance = total2 * inv - mean1 * mean1
            if variance < 0.000000000001 * (total2 * inv):
                variance = 0.0
            d = _f64(x[start, j]) - shift
            total1 -= d
            total2 -= d * d

        deviation = math.sqrt(variance) if variance != 0.0 else 0.0
        width = deviation * nbdev
        middle[i, j] = mid
        upper[i, j] = mid + width
        lower[i, j] = mid - width


@series_kernel
def _atr_column(j, high, low, close, n, period, normalized, out):
    # TA-Lib atr.c / natr.c (0.8): true range from bar 1; seed = mean of the first `period` true
    # ranges (output at bar `period`), then prev = a * tr + b * prev with b = (n-1)/n, a = 1 - b.
    # NATR divides by the bar's close (x 100; 0 where the close is 0). TA-Lib quirk kept: NATR
    # with period 1 returns the plain true range, unnormalised.
    m = n[j]
    if m <= period:
        return
    beta = _f64(period - 1) / _f64(period)
    alpha = 1.0 - beta
    normalize = normalized and period > 1
    prev = 0.0
    for i in range(1, m):
        h = _f64(high[i, j])
        lo = _f64(low[i, j])
        c_prev = _f64(close[i - 1, j])
        tr = h - lo
        v = math.fabs(c_prev - h)
        if v > tr:
            tr = v
        v = math.fabs(c_prev - lo)
        if v > tr:
            tr = v
        if i < period:
            prev += tr
            continue
        if i == period:
            prev = (prev + tr) / period
        else:
            prev = alpha * tr + beta * prev
        if normalize:
            c = _f64(close[i, j])
            out[i, j] = prev / c * 100.0 if (c < -_EPSILON or c > _EPSILON) else 0.0
        else:
            out[i, j] = prev


@series_kernel
def _stoch_column(j, high, low, close, n, fastk_period, slowk_period, slowd_period,
                  fast_k, slow_k, stoch_k, stoch_d):
    # TA-Lib stoch.c with SMA smoothing: raw %K over the highest high / lowest low of the last
    # `fastk_period` bars (0 where the window is flat relative to its own level), slow %K = SMA of
    # raw %K, slow %D = SMA of slow %K, both as TA-Lib's running totals over its float64 buffers.
    # `fast_k` and `slow_k` are float64 scratch the size of the panel.
    m = n[j]
    k_first = fastk_period - 1
    sk_first = k_first + slowk_period - 1
    first = sk_first + slowd_period - 1
    if m <= first:
        return
    lowest = 0.0
    highest = 0.0
    lowest_at = -1
    highest_at = -1
    for i in range(k_first, m):
        trailing = i - k_first
        lowest, lowest_at = _running_extreme(low, j, i, trailing, lowest, lowest_at, 1.0)
        highest, highest_at = _running_extreme(high, j, i, trailing, highest, highest_at, -1.0)
        span = highest - lowest
        if math.fabs(span) <= _EPSILON * (math.fabs(highest) + math.fabs(lowest)):
            fast_k[i, j] = 0.0
        else:
            fast_k[i, j] = ((_f64(close[i, j]) - lowest) / span) * 100.0
    total = 0.0
    for i in range(k_first, sk_first):
        total += fast_k[i, j]
    trailing = k_first
    for i in range(sk_first, m):
        total += fast_k[i, j]
        slow_k[i, j] = total / slowk_period
        total -= fast_k[trailing, j]
        trailing += 1
    total = 0.0
    for i in range(sk_first, first):
        total += slow_k[i, j]
    trailing = sk_first
    for i in range(first, m):
        total += slow_k[i, j]
        stoch_k[i, j] = slow_k[i, j]
        stoch_d[i, j] = total / slowd_period
        total -= slow_k[trailing, j]
        trailing += 1


@series_kernel
def _adx_column(j, high, low, close, n, period, out):
    # TA-Lib adx.c (0.8): +DM/-DM and true range summed over the first period-1 changes, then
    # Wilder-smoothed (x -= x / n, as x * (1/n)); DX = 100 |-DI - +DI| / (-DI + +DI); the first
    # ADX (bar 2*period-1) is the mean of `period` DX values, then adx -= (adx - dx) / n. A zero
    # true-range sum or DI sum leaves the running value unchanged (and adds 0 to the seed).
    m = n[j]
    first = 2 * period - 1
    if m <= first:
        return
    inv = 1.0 / period
    prev_high = _f64(high[0, j])
    prev_low = _f64(low[0, j])
    prev_close = _f64(close[0, j])
    minus_dm = 0.0
    plus_dm = 0.0
    tr_sum = 0.0
    sum_dx = 0.0
    adx = 0.0
    for i in range(1, m):
        h = _f64(high[i, j])
        lo = _f64(low[i, j])
        diff_p = h - prev_high
        diff_m = prev_low - lo
        prev_high = h
        prev_low = lo
        if i >= period:
            minus_dm -= minus_dm * inv
            plus_dm -= plus_dm * inv
        if diff_m > 0.0 and diff_m - diff_p > 0.0:
            minus_dm += diff_m
        elif diff_p > 0.0 and diff_p - diff_m > 0.0:
            plus_dm += diff_p
        tr = h - lo
        v = math.fabs(h - prev_close)
        if v > tr:
            tr = v
        v = math.fabs(lo - prev_close)
        if v > tr:
            tr = v
        prev_close = _f64(close[i, j])
        if i < period:
            tr_sum += tr
            continue
        tr_sum = tr_sum - tr_sum * inv + tr
        if tr_sum > 0.0:
            minus_di = 100.0 * (minus_dm / tr_sum)
            plus_di = 100.0 * (plus_dm / tr_sum)
            di_sum = minus_di + plus_di
            if not (-_EPSILON < di_sum < _EPSILON):
                dx = 100.0 * (math.fabs(minus_di - plus_di) / di_sum)
                if i <= first:
                    sum_dx += dx
                else:
                    adx = adx - (adx - dx) * inv
        if i == first:
            adx = sum_dx / period
        if i >= first:
            out[i, j] = adx


@series_kernel
def _cci_column(j, high, low, close, n, period, typical, out):
    # TA-Lib cci.c (0.8): typical price (h + l + c) / 3 in a circular buffer of `period` slots;
    # the mean and the mean absolute deviation are summed in buffer-slot order (slot = bar %
    # period), as TA-Lib does. 0 where the window is flat relative to its mean's magnitude.
    # `typical` is float64 scratch the size of the panel.
    m = n[j]
    if m < period:
        return
    for i in range(m):
        typical[i, j] = (_f64(high[i, j]) + _f64(low[i, j]) + _f64(close[i, j])) / 3
    for i in range(period - 1, m):
        # Bar s sits in slot s % period, so in slot order the window reads: its newest `wrap`
        # bars (slots 0..wrap-1), then its oldest period - wrap bars.
        wrap = (i + 1) % period
        average = 0.0
        for s in range(i - wrap + 1, i + 1):
            average += typical[s, j]
        for s in range(i - period + 1, i - wrap + 1):
            average += typical[s, j]
        average /= period
        deviation = 0.0
        for s in range(i - wrap + 1, i + 1):
            deviation += math.fabs(typical[s, j] - average)
        for s in range(i - period + 1, i - wrap + 1):
            deviation += math.fabs(typical[s, j] - average)
        deviation /= period
        centred = typical[i, j] - average
        scale = math.fabs(average)
        if math.fabs(centred) <= _EPSILON * scale or math.fabs(deviation) <= _EPSILON * scale:
            out[i, j] = 0.0
        else:
            out[i, j] = centred / (0.015 * deviation)


@series_kernel
def _willr_column(j, high, low, close, n, period, out):
    # TA-Lib willr.c (0.8): -100 (highest - close) / (highest - lowest) over the last `period`
    # bars; 0 where the window is flat relative to its own level.
    m = n[j]
    first = period - 1
    if m <= first:
        return
    lowest = 0.0
    highest = 0.0
    lowest_at = -1
    highest_at = -1
    for i in range(first, m):
        trailing = i - first
        lowest, lowest_at = _running_extreme(low, j, i, trailing, lowest, lowest_at, 1.0)
        highest, highest_at = _running_extreme(high, j, i, trailing, highest, highest_at, -1.0)
        span = highest - lowest
        if math.fabs(span) <= _EPSILON * (math.fabs(highest) + math.fabs(lowest)):
            out[i, j] = 0.0
        else:
            out[i, j] = ((highest - _f64(close[i, j])) / span) * -100.0


@series_kernel
def _obv_column(j, close, volume, n, out):
    # TA-Lib obv.c: starts at the first bar's volume; adds the volume on an up close, subtracts
    # it on a down close.
    m = n[j]
    if m < 1:
        return
    prev_close = _f64(close[0, j])
    total = _f64(volume[0, j])
    for i in range(m):
        c = _f64(close[i, j])
        if c > prev_close:
            total += _f64(volume[i, j])
        elif c < prev_close:
            total -= _f64(volume[i, j])
        out[i, j] = total
        prev_close = c


@series_kernel
def _roc_column(j, x, n, period, out):
    # TA-Lib roc.c: (x / x[-period] - 1) * 100; 0 where the earlier price is 0.
    m = n[j]
    for i in range(period, m):
        before = _f64(x[i - period, j])
        out[i, j] = (_f64(x[i, j]) / before - 1.0) * 100.0 if before != 0.0 else 0.0


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
    _sma_column(close.shape[1], close, n, period, out)
    return out


def _ema(close, n, *, period, first=None):
    out = _empty(close)
    _ema_column(close.shape[1], close, n, period, period - 1 if first is None else first, out)
    return out


def _rsi(close, n, *, period):
    out = _empty(close)
    _rsi_column(close.shape[1], close, n, period, out)
    return out


def _macd(close, n, *, fast, slow, signal):
    if slow < fast:  # TA-Lib swaps them
        fast, slow = slow, fast
    line, sig, hist = _empty(close), _empty(close), _empty(close)
    _macd_column(close.shape[1], close, n, fast, slow, signal, line, sig, hist)
    return line, sig, hist


def _bbands(close, n, *, period, nbdev):
    upper, middle, lower = _empty(close), _empty(close), _empty(close)
    _bbands_column(close.shape[1], close, n, period, float(nbdev), upper, middle, lower)
    return upper, middle, lower


def _atr(high, low, close, n, *, period):
    out = _empty(close)
    _atr_column(close.shape[1], high, low, close, n, period, False, out)
    return out


def _natr(high, low, close, n, *, period):
    out = _empty(close)
    _atr_column(close.shape[1], high, low, close, n, period, True, out)
    return out


def _stoch(high, low, close, n, *, fastk_period, slowk_period, slowd_period):
    k, d = _empty(close), _empty(close)
    _stoch_column(close.shape[1], high, low, close, n, fastk_period, slowk_period, slowd_period,
                  _scratch(close), _scratch(close), k, d)
    return k, d


def _adx(high, low, close, n, *, period):
    out = _empty(close)
    _adx_column(close.shape[1], high, low, close, n, period, out)
    return out


def _cci(high, low, close, n, *, period):
    out = _empty(close)
    _cci_column(close.shape[1], high, low, close, n, period, _scratch(close), out)
    return out


def _willr(high, low, close, n, *, period):
    out = _empty(close)
    _willr_column(close.shape[1], high, low, close, n, period, out)
    return out


def _obv(close, volume, n):
    out = _empty(close)
    _obv_column(close.shape[1], close, volume, n, out)
    return out


def _roc(close, n, *, period):
    out = _empty(close)
    _roc_column(close.shape[1], close, n, period, out)
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


def _public(name, inputs, params):
    """Compute the single indicator ``name`` over raw panels (compacts, computes, expands)."""
    ind = INDICATORS[name]
    out = compute_indicators(dict(zip(ind.inputs, inputs)), [IndicatorSpec(name, params)])
    values = tuple(out.values())
    return values[0] if len(values) == 1 else values


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
    return _public("sma", (close,), {"period": period})


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
    return _public("ema", (close,), {"period": period})


def rsi(close, *, period=14):
    """Relative strength index with Wilder's smoothing (TA-Lib ``RSI``), in [0, 100].

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars of price change averaged (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period``. 0 where no
    price has changed over the averaging memory.
    """
    return _public("rsi", (close,), {"period": period})


def macd(close, *, fast=12, slow=26, signal=9):
    """Moving average convergence/divergence (TA-Lib ``MACD``).

    The MACD line is EMA(fast) - EMA(slow), both seeded with an SMA over windows ending on bar
    ``slow - 1``; the signal line is the EMA(signal) of the MACD line, seeded with the mean of
    its first ``signal`` values; the histogram is line - signal.

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    fast, slow : int, EMA periods in bars (swapped if ``slow < fast``, as TA-Lib does)
    signal : int, signal EMA period in bars

    Returns
    -------
    macd, macd_signal, macd_hist : arrays of shape (n_bars, n_symbols), in price units; all
    three first valued at each series' bar ``max(fast, slow) - 1 + signal - 1`` (33 for 12/26/9).
    """
    return _public("macd", (close,), {"fast": fast, "slow": slow, "signal": signal})


def bbands(close, *, period=20, nbdev=2.0):
    """Bollinger Bands: SMA +/- ``nbdev`` population standard deviations (TA-Lib ``BBANDS``, SMA).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars in the window (at least 2)
    nbdev : float, band half-width in standard deviations (the same above and below)

    Returns
    -------
    upper, middle, lower : arrays of shape (n_bars, n_symbols), in price units; first value at
    each series' bar ``period - 1``.
    """
    return _public("bbands", (close,), {"period": period, "nbdev": nbdev})


def atr(high, low, close, *, period=14):
    """Average true range with Wilder's smoothing (TA-Lib ``ATR``).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, smoothing period in bars

    Returns
    -------
    array of shape (n_bars, n_symbols), in price units; first value at each series' bar
    ``period`` (the true range needs a previous close).
    """
    return _public("atr", (high, low, close), {"period": period})


def natr(high, low, close, *, period=14):
    """Normalised average true range, ``100 * ATR / close`` in percent (TA-Lib ``NATR``).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, smoothing period in bars. With ``period=1`` TA-Lib returns the plain true range
        (in price units, not normalised); so does this function.

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period``; 0 where the
    close is 0.
    """
    return _public("natr", (high, low, close), {"period": period})


def stoch(high, low, close, *, fastk_period=5, slowk_period=3, slowd_period=3):
    """Slow stochastic oscillator with SMA smoothing (TA-Lib ``STOCH``, MA types SMA), in [0, 100].

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    fastk_period : int, bars in the highest-high / lowest-low window of raw %K
    slowk_period : int, SMA period turning raw %K into slow %K
    slowd_period : int, SMA period turning slow %K into slow %D

    Returns
    -------
    stoch_k, stoch_d : arrays of shape (n_bars, n_symbols); both first valued at each series' bar
    ``fastk_period + slowk_period + slowd_period - 3``. Raw %K is 0 on a flat window.
    """
    return _public("stoch", (high, low, close),
                   {"fastk_period": fastk_period, "slowk_period": slowk_period, "slowd_period": slowd_period})


def adx(high, low, close, *, period=14):
    """Average directional movement index (TA-Lib ``ADX``), in [0, 100].

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, Wilder smoothing period in bars (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``2 * period - 1``.
    """
    return _public("adx", (high, low, close), {"period": period})


def cci(high, low, close, *, period=14):
    """Commodity channel index (TA-Lib ``CCI``): (typical - mean) / (0.015 * mean abs deviation).

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, bars in the window (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols), dimensionless; first value at each series' bar
    ``period - 1``; 0 on a flat window.
    """
    return _public("cci", (high, low, close), {"period": period})


def willr(high, low, close, *, period=14):
    """Williams' %R (TA-Lib ``WILLR``), in [-100, 0].

    Parameters
    ----------
    high, low, close : arrays of shape (n_bars, n_symbols)
    period : int, bars in the highest-high / lowest-low window (at least 2)

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period - 1``; 0 on a
    window whose highest high equals its lowest low.
    """
    return _public("willr", (high, low, close), {"period": period})


def obv(close, volume):
    """On-balance volume (TA-Lib ``OBV``): running volume, signed by the close's direction.

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    volume : array of shape (n_bars, n_symbols), shares (any numeric dtype)

    Returns
    -------
    array of shape (n_bars, n_symbols), in shares, in the dtype of ``close``; starts at each
    series' first bar with that bar's volume.
    """
    return _public("obv", (close, volume), {})


def roc(close, *, period=10):
    """Rate of change in percent, ``100 * (close / close[-period] - 1)`` (TA-Lib ``ROC``).

    Parameters
    ----------
    close : array of shape (n_bars, n_symbols)
    period : int, bars back

    Returns
    -------
    array of shape (n_bars, n_symbols); first value at each series' bar ``period``; 0 where the
    earlier close is 0.
    """
    return _public("roc", (close,), {"period": period})
