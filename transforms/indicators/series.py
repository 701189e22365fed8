"""The per-series indicator kernels, compiled for the CPU and for CUDA from one source.

Implements one series function per indicator family (:func:`sma_column`, :func:`ema_column`,
:func:`rsi_column`, :func:`macd_column`, :func:`bbands_column`, :func:`atr_column` (ATR and NATR),
:func:`stoch_column`, :func:`adx_column`, :func:`cci_column`, :func:`willr_column`,
:func:`obv_column`, :func:`roc_column`), each a :func:`alphapulse.transforms.kernels.series_kernel`:
called as ``kernel(n_columns, *arrays_and_parameters)``, it runs one thread per column, compiled
with Numba for the CPU (NumPy arrays) or as a CUDA kernel (CuPy arrays). Each processes column
``j`` of compacted inputs (valid rows ``0..n[j]-1``, no holes) and writes only the positions it
computes, leaving the rest as the caller initialised them (NaN). Scalar arithmetic only (they also
compile for CUDA); values are read through ``_f64()`` so that float32 panels compute in float64,
as TA-Lib's ``TA_S_*`` functions do. The registry (:mod:`alphapulse.transforms.indicators.registry`)
allocates the outputs and calls these; nothing else should.

Arithmetic follows TA-Lib's C code operation by operation (running sums, SMA-seeded EMA, Wilder
smoothing) and accumulates in float64 whatever the storage dtype.

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

Numba caches each compiled kernel on disk keyed on this file: the shared device function
(``_running_extreme``) stays in this module with its callers, so a change to it invalidates them.
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.kernels import device_function, series_kernel

__all__ = ["sma_column", "ema_column", "rsi_column", "macd_column", "bbands_column", "atr_column", "stoch_column",
           "adx_column", "cci_column", "willr_column", "obv_column", "roc_column"]

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


@series_kernel
def sma_column(j, x, n, period, out):
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
def ema_column(j, x, n, period, first, out):
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
def rsi_column(j, x, n, period, out):
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
def macd_column(j, x, n, fast, slow, signal, line_out, signal_out, hist_out):
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
def bbands_column(j, x, n, period, nbdev, upper, middle, lower):
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
def atr_column(j, high, low, close, n, period, normalized, out):
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
def stoch_column(j, high, low, close, n, fastk_period, slowk_period, slowd_period,
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
def adx_column(j, high, low, close, n, period, out):
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
def cci_column(j, high, low, close, n, period, typical, out):
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
def willr_column(j, high, low, close, n, period, out):
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
def obv_column(j, close, volume, n, out):
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
def roc_column(j, x, n, period, out):
    # TA-Lib roc.c: (x / x[-period] - 1) * 100; 0 where the earlier price is 0.
    m = n[j]
    for i in range(period, m):
        before = _f64(x[i - period, j])
        out[i, j] = (_f64(x[i, j]) / before - 1.0) * 100.0 if before != 0.0 else 0.0
