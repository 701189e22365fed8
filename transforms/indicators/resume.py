"""The resumable series kernels: each registry indicator family's recurrence, continued from a state.

One kernel per family (``*_resume``), compiled for the CPU and CUDA like the kernels of
:mod:`alphapulse.transforms.indicators.series` (:func:`alphapulse.transforms.kernels.series_kernel`),
and the kernels that stack kept bars over new ones and back. Each performs, bar for bar, the same
float64 operations in the same order as its counterpart in ``series`` and keeps between calls the
values that counterpart keeps in registers; :mod:`alphapulse.transforms.indicators.state` (the
state, its layout and :func:`~alphapulse.transforms.indicators.state.continue_indicators`) says
why that makes a continued run equal the full one, and launches them.
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.kernels import device_function, series_kernel

_EPSILON = 1e-14  # as series._EPSILON (TA-Lib's TA_EPSILON)
_f64 = np.float64  # as series._f64: float64 on the CPU, on CUDA and in the simulator


# ---------------------------------------------------------------------------------------------
# Resumable kernels. Each mirrors its ``series`` counterpart operation by operation; the comments
# say only where the continuation differs in form.
# ---------------------------------------------------------------------------------------------


@device_function
def _running_extreme(x, j, i, trailing, current, current_at, sign):
    # A copy of series._running_extreme, not an import: Numba's disk cache invalidates a kernel when
    # its own file changes, not when a helper in another file does (see kernels.DeviceFunction).
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
def sma_resume(j, x, start, n, base, period, st, out):
    # state: [running total]
    total = st[0, j]
    for i in range(start[j], n[j]):
        total += _f64(x[i, j])
        if base[j] + i >= period - 1:
            out[i, j] = total / period
            total -= _f64(x[i - period + 1, j])
    st[0, j] = total


@series_kernel
def ema_resume(j, x, start, n, base, period, st, out):
    # state: [seed total during the warm-up, then the EMA]
    acc = st[0, j]
    k = 2.0 / (period + 1)
    for i in range(start[j], n[j]):
        a = base[j] + i
        if period == 1:
            out[i, j] = x[i, j]
            continue
        v = _f64(x[i, j])
        if a < period - 1:
            acc += v
        elif a == period - 1:
            acc += v
            acc = acc / period
            out[i, j] = acc
        else:
            acc = (v - acc) * k + acc
            out[i, j] = acc
    st[0, j] = acc


@series_kernel
def rsi_resume(j, x, start, n, base, period, st, out):
    # state: [previous close, average gain, average loss]
    inv = 1.0 / period
    back = _f64(period - 1)
    prev = st[0, j]
    gain = st[1, j]
    loss = st[2, j]
    for i in range(start[j], n[j]):
        a = base[j] + i
        value = _f64(x[i, j])
        if a == 0:
            prev = value
            continue
        delta = value - prev
        prev = value
        if a > period:
            loss *= back
            gain *= back
        up = delta if delta > 0.0 else 0.0
        gain += up
        loss += up - delta
        if a >= period:
            loss *= inv
            gain *= inv
            total = gain + loss
            out[i, j] = 100.0 * (gain / total) if total > 0.0 else 0.0
    st[0, j] = prev
    st[1, j] = gain
    st[2, j] = loss


@series_kernel
def macd_resume(j, x, start, n, base, fast, slow, signal, st, line_out, signal_out, hist_out):
    # state: [slow seed total, fast EMA (its seed total before bar slow-1), slow EMA, signal EMA
    # (the sum of MACD values before its seed)]; fast <= slow (the caller swaps, as TA-Lib does).
    first = slow - 1 + signal - 1
    k_fast = 2.0 / (fast + 1)
    k_slow = 2.0 / (slow + 1)
    k_signal = 2.0 / (signal + 1)
    total = st[0, j]
    prev_fast = st[1, j]
    prev_slow = st[2, j]
    prev_signal = st[3, j]
    line = 0.0
    for i in range(start[j], n[j]):
        a = base[j] + i
        value = _f64(x[i, j])
        if a < slow:
            if a >= slow - fast:
                prev_fast += value
            total += value
            if a == slow - 1:
                prev_slow = total / slow
                prev_fast = prev_fast / fast
                line = prev_fast - prev_slow
                prev_signal = 0.0
                prev_signal += line
        else:
            prev_fast = (value - prev_fast) * k_fast + prev_fast
            prev_slow = (value - prev_slow) * k_slow + prev_slow
            line = prev_fast - prev_slow
            if a <= first:
                prev_signal += line
            elif signal == 1:
                prev_signal = line
            else:
                prev_signal = (line - prev_signal) * k_signal + prev_signal
        if a == first:
            prev_signal = prev_signal / signal
        if a >= first:
            line_out[i, j] = line
            signal_out[i, j] = prev_signal
            hist_out[i, j] = line - prev_signal
    st[0, j] = total
    st[1, j] = prev_fast
    st[2, j] = prev_slow
    st[3, j] = prev_signal


@series_kernel
def bbands_resume(j, x, start, n, base, period, nbdev, st, upper, middle, lower):
    # state: [shift, SMA total, shifted total, shifted total of squares, bars until the re-seed]
    back = period - 1
    inv = 1.0 / period
    shift = st[0, j]
    ma_total = st[1, j]
    total1 = st[2, j]
    total2 = st[3, j]
    until_reseed = st[4, j]
    for i in range(start[j], n[j]):
        a = base[j] + i
        value = _f64(x[i, j])
        if a == 0:
            shift = value
            until_reseed = _f64(32 * period)
        ma_total += value
        d = value - shift
        total1 += d
        total2 += d * d
        if a < back:
            continue
        mean1 = total1 * inv
        variance = total2 * inv - mean1 * mean1
        mid = ma_total / period

        old = _f64(x[i - back, j])
        ma_total -= old
        d = old - shift
        total1 -= d
        d2 = d * d
        total2 -= d2

        until_reseed -= 1
        if variance < 0.000001 * (total2 * inv) or d2 > 1000000.0 * total2 or until_reseed <= 0:
            until_reseed = _f64(32 * period)
            first = i - back
            s = 0.0
            for t in range(first, i + 1):
                s += _f64(x[t, j])
            shift = s * inv
            total1 = 0.0
            total2 = 0.0
            for t in range(first, i + 1):
                d = _f64(x[t, j]) - shift
                total1 += d
                total2 += d * d
            mean1 = total1 * inv
            variance = total2 * inv - mean1 * mean1
            if variance < 0.000000000001 * (total2 * inv):
                variance = 0.0
            d = _f64(x[first, j]) - shift
            total1 -= d
            total2 -= d * d

        deviation = math.sqrt(variance) if variance != 0.0 else 0.0
        width = deviation * nbdev
        middle[i, j] = mid
        upper[i, j] = mid + width
        lower[i, j] = mid - width
    st[0, j] = shift
    st[1, j] = ma_total
    st[2, j] = total1
    st[3, j] = total2
    st[4, j] = until_reseed


@series_kernel
def atr_resume(j, high, low, close, start, n, base, period, normalized, st, out):
    # state: [previous close, true-range total during the warm-up, then the ATR]
    beta = _f64(period - 1) / _f64(period)
    alpha = 1.0 - beta
    normalize = normalized and period > 1
    c_prev = st[0, j]
    prev = st[1, j]
    for i in range(start[j], n[j]):
        a = base[j] + i
        if a == 0:
            c_prev = _f64(close[i, j])
            continue
        h = _f64(high[i, j])
        lo = _f64(low[i, j])
        tr = h - lo
        v = math.fabs(c_prev - h)
        if v > tr:
            tr = v
        v = math.fabs(c_prev - lo)
        if v > tr:
            tr = v
        c_prev = _f64(close[i, j])
        if a < period:
            prev += tr
            continue
        if a == period:
            prev = (prev + tr) / period
        else:
            prev = alpha * tr + beta * prev
        if normalize:
            c = _f64(close[i, j])
            out[i, j] = prev / c * 100.0 if (c < -_EPSILON or c > _EPSILON) else 0.0
        else:
            out[i, j] = prev
    st[0, j] = c_prev
    st[1, j] = prev


@series_kernel
def stoch_resume(j, high, low, close, start, n, base, fastk_period, slowk_period, slowd_period, st,
                 stoch_k, stoch_d):
    # state: [lowest low, its bar, highest high, its bar, raw %K total, slow %K total, then a ring of
    # the last slowk_period raw %K and one of the last slowd_period slow %K]. Bars are absolute
    # numbers in the state and stacked-row numbers (minus base[j]) in the scan.
    k_first = fastk_period - 1
    sk_first = k_first + slowk_period - 1
    first = sk_first + slowd_period - 1
    ring_k = 6
    ring_d = 6 + slowk_period
    b = base[j]
    lowest = st[0, j]
    lowest_at = np.int64(st[1, j]) - b
    highest = st[2, j]
    highest_at = np.int64(st[3, j]) - b
    total_k = st[4, j]
    total_d = st[5, j]
    for i in range(start[j], n[j]):
        a = b + i
        if a < k_first:
            continue
        trailing = i - k_first
        lowest, lowest_at = _running_extreme(low, j, i, trailing, lowest, lowest_at, 1.0)
        highest, highest_at = _running_extreme(high, j, i, trailing, highest, highest_at, -1.0)
        span = highest - lowest
        if math.fabs(span) <= _EPSILON * (math.fabs(highest) + math.fabs(lowest)):
            fk = 0.0
        else:
            fk = ((_f64(close[i, j]) - lowest) / span) * 100.0
        st[ring_k + a % slowk_period, j] = fk
        total_k += fk
        if a < sk_first:
            continue
        sk = total_k / slowk_period
        total_k -= st[ring_k + (a - slowk_period + 1) % slowk_period, j]
        st[ring_d + a % slowd_period, j] = sk
        total_d += sk
        if a < first:
            continue
        stoch_k[i, j] = sk
        stoch_d[i, j] = total_d / slowd_period
        total_d -= st[ring_d + (a - slowd_period + 1) % slowd_period, j]
    st[0, j] = lowest
    st[1, j] = _f64(lowest_at + b)
    st[2, j] = highest
    st[3, j] = _f64(highest_at + b)
    st[4, j] = total_k
    st[5, j] = total_d


@series_kernel
def adx_resume(j, high, low, close, start, n, base, period, st, out):
    # state: [previous high, low, close, -DM, +DM, true-range sum, DX sum, ADX]
    first = 2 * period - 1
    inv = 1.0 / period
    prev_high = st[0, j]
    prev_low = st[1, j]
    prev_close = st[2, j]
    minus_dm = st[3, j]
    plus_dm = st[4, j]
    tr_sum = st[5, j]
    sum_dx = st[6, j]
    adx = st[7, j]
    for i in range(start[j], n[j]):
        a = base[j] + i
        h = _f64(high[i, j])
        lo = _f64(low[i, j])
        if a == 0:
            prev_high = h
            prev_low = lo
            prev_close = _f64(close[i, j])
            continue
        diff_p = h - prev_high
        diff_m = prev_low - lo
        prev_high = h
        prev_low = lo
        if a >= period:
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
        if a < period:
            tr_sum += tr
            continue
        tr_sum = tr_sum - tr_sum * inv + tr
        if tr_sum > 0.0:
            minus_di = 100.0 * (minus_dm / tr_sum)
            plus_di = 100.0 * (plus_dm / tr_sum)
            di_sum = minus_di + plus_di
            if not (-_EPSILON < di_sum < _EPSILON):
                dx = 100.0 * (math.fabs(minus_di - plus_di) / di_sum)
                if a <= first:
                    sum_dx += dx
                else:
                    adx = adx - (adx - dx) * inv
        if a == first:
            adx = sum_dx / period
        if a >= first:
            out[i, j] = adx
    st[0, j] = prev_high
    st[1, j] = prev_low
    st[2, j] = prev_close
    st[3, j] = minus_dm
    st[4, j] = plus_dm
    st[5, j] = tr_sum
    st[6, j] = sum_dx
    st[7, j] = adx


@series_kernel
def cci_resume(j, high, low, close, start, n, base, period, typical, out):
    # No state: the window is the kept period-1 bars and the new one. TA-Lib's circular-buffer slot
    # of a bar is its absolute number modulo period, so the summation order uses base[j] + i.
    for i in range(n[j]):
        typical[i, j] = (_f64(high[i, j]) + _f64(low[i, j]) + _f64(close[i, j])) / 3
    for i in range(start[j], n[j]):
        a = base[j] + i
        if a < period - 1:
            continue
        wrap = (a + 1) % period
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
def willr_resume(j, high, low, close, start, n, base, period, st, out):
    # state: [lowest low, its bar, highest high, its bar] (absolute bars, as in stoch_resume)
    first = period - 1
    b = base[j]
    lowest = st[0, j]
    lowest_at = np.int64(st[1, j]) - b
    highest = st[2, j]
    highest_at = np.int64(st[3, j]) - b
    for i in range(start[j], n[j]):
        if b + i < first:
            continue
        trailing = i - first
        lowest, lowest_at = _running_extreme(low, j, i, trailing, lowest, lowest_at, 1.0)
        highest, highest_at = _running_extreme(high, j, i, trailing, highest, highest_at, -1.0)
        span = highest - lowest
        if math.fabs(span) <= _EPSILON * (math.fabs(highest) + math.fabs(lowest)):
            out[i, j] = 0.0
        else:
            out[i, j] = ((highest - _f64(close[i, j])) / span) * -100.0
    st[0, j] = lowest
    st[1, j] = _f64(lowest_at + b)
    st[2, j] = highest
    st[3, j] = _f64(highest_at + b)


@series_kernel
def obv_resume(j, close, volume, start, n, base, st, out):
    # state: [previous close, running OBV]
    prev_close = st[0, j]
    total = st[1, j]
    for i in range(start[j], n[j]):
        c = _f64(close[i, j])
        if base[j] + i == 0:
            total = _f64(volume[i, j])
        elif c > prev_close:
            total += _f64(volume[i, j])
        elif c < prev_close:
            total -= _f64(volume[i, j])
        out[i, j] = total
        prev_close = c
    st[0, j] = prev_close
    st[1, j] = total


@series_kernel
def roc_resume(j, x, start, n, base, period, out):
    # No state: reads the close `period` bars back, kept in the window.
    for i in range(start[j], n[j]):
        if base[j] + i >= period:
            before = _f64(x[i - period, j])
            out[i, j] = (_f64(x[i, j]) / before - 1.0) * 100.0 if before != 0.0 else 0.0


# ---------------------------------------------------------------------------------------------
# Stacking the kept bars over the new ones, and back
# ---------------------------------------------------------------------------------------------


@series_kernel
def stack_column(j, kept, t, new, valid, dst):
    # The bottom t[j] rows of `kept` (newest last), then the new valid rows, compacted.
    rows = kept.shape[0]
    k = 0
    for r in range(rows - t[j], rows):
        dst[k, j] = kept[r, j]
        k += 1
    for i in range(new.shape[0]):
        if valid[i, j]:
            dst[k, j] = new[i, j]
            k += 1


@series_kernel
def unstack_column(j, src, t, valid, dst):
    # Stacked rows t[j].. back to the new panel's valid positions (the rest stays NaN).
    k = t[j]
    for i in range(dst.shape[0]):
        if valid[i, j]:
            dst[i, j] = src[k, j]
            k += 1


@series_kernel
def keep_column(j, src, n, kept):
    # The last min(n[j], rows) stacked rows, newest last, NaN above.
    rows = kept.shape[0]
    keep = min(n[j], rows)
    for r in range(rows - keep):
        kept[r, j] = math.nan
    for r in range(keep):
        kept[rows - keep + r, j] = _f64(src[n[j] - keep + r, j])
