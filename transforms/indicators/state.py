"""Continue the registry's indicators from a saved state: pay for the new bars only.

Implements :class:`IndicatorState` (what each symbol's recurrences need to go on), :func:`state_window`,
:func:`empty_state` and :func:`continue_indicators`, and one *resumable* series kernel per indicator
family (``*_resume``), compiled for the CPU and CUDA like the kernels of
:mod:`alphapulse.transforms.indicators.series` (:func:`alphapulse.transforms.kernels.series_kernel`).

Identity with the full run. A resumable kernel performs, bar for bar, the same float64 operations in the
same order as its counterpart in ``series``; it keeps between calls exactly the values that counterpart
keeps in registers between iterations (running totals, EMA / Wilder accumulators, running extremes
with their bar index, ring buffers of STOCH's smoothed %K), in float64, plus the last bars a window
reads back (SMA / Bollinger ``period - 1``, ROC ``period``, CCI / WILLR / STOCH their high-low-close
windows). So, on the CPU, splitting a symbol's bars anywhere (inside a warm-up included) and
continuing gives the outputs of one :func:`~alphapulse.transforms.indicators.registry.compute_indicators`
over all the bars bit for bit, in float64 and in float32 panels alike (a float32 panel's kernel reads
float32 values and accumulates in float64; the state holds those float64 accumulators, and the kept
bars are float32 values, exact in float64). On the GPU, NVVM contracts multiply-adds into FMAs where it
chooses, and the resumable kernels are other functions than ``series``' ones: a GPU run agrees with
the GPU full run within a few ulp (tested at 1e-12 relative in float64), as ``series`` already agrees
with the CPU.

Gaps. As in the registry, a NaN ``close`` is a missing bar: the kernels see each symbol's valid bars
compacted (:func:`alphapulse.transforms.kernels.compact`), so a symbol missing from a day's bars keeps
its state untouched, and a new symbol starts from :func:`empty_state` (its own first bar is its bar 0).
The absolute bar number (``seen``) drives the warm-ups, so outputs stay NaN exactly where TA-Lib's are.

Layout. The resumable kernels read a *stacked* compacted panel per input: for column ``j``, the kept
bars (``t[j]`` rows) then the new valid bars; ``start[j] = t[j]``, ``n[j]`` the rows in all,
``base[j]`` the absolute number of the stacked panel's row 0 (``seen[j] - t[j]``). Each family's state
is a float64 array of shape (size, n_symbols) updated in place.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec
from alphapulse.transforms.kernels import device_function, series_kernel, valid_mask

__all__ = ["IndicatorState", "state_key", "state_size", "state_window", "state_fields", "empty_state",
           "continue_indicators"]

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
def _stack_column(j, kept, t, new, valid, dst):
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
def _unstack_column(j, src, t, valid, dst):
    # Stacked rows t[j].. back to the new panel's valid positions (the rest stays NaN).
    k = t[j]
    for i in range(dst.shape[0]):
        if valid[i, j]:
            dst[i, j] = src[k, j]
            k += 1


@series_kernel
def _keep_column(j, src, n, kept):
    # The last min(n[j], rows) stacked rows, newest last, NaN above.
    rows = kept.shape[0]
    keep = min(n[j], rows)
    for r in range(rows - keep):
        kept[r, j] = math.nan
    for r in range(keep):
        kept[rows - keep + r, j] = _f64(src[n[j] - keep + r, j])


# ---------------------------------------------------------------------------------------------
# Per-family layout: the bars a window reads back, the state's size, the launch
# ---------------------------------------------------------------------------------------------


def _macd_order(p):
    fast, slow = p["fast"], p["slow"]
    return (slow, fast) if slow < fast else (fast, slow)


# name -> (bars kept, state rows), from the resolved parameters
_LAYOUT = {
    "sma": lambda p: (p["period"] - 1, 1),
    "ema": lambda p: (0, 1),
    "rsi": lambda p: (0, 3),
    "macd": lambda p: (0, 4),
    "bbands": lambda p: (p["period"] - 1, 5),
    "atr": lambda p: (0, 2),
    "natr": lambda p: (0, 2),
    "stoch": lambda p: (p["fastk_period"] - 1, 6 + p["slowk_period"] + p["slowd_period"]),
    "adx": lambda p: (0, 8),
    "cci": lambda p: (p["period"] - 1, 0),
    "willr": lambda p: (p["period"] - 1, 4),
    "obv": lambda p: (0, 2),
    "roc": lambda p: (p["period"], 0),
}
assert set(_LAYOUT) == set(INDICATORS), "every registry indicator needs a resumable kernel"


def _launch(name, p, ins, start, n, base, st, outs, scratch):
    cols = ins[0].shape[1]
    if name == "sma":
        sma_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "ema":
        ema_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "rsi":
        rsi_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "macd":
        fast, slow = _macd_order(p)
        macd_resume(cols, *ins, start, n, base, fast, slow, p["signal"], st, *outs)
    elif name == "bbands":
        bbands_resume(cols, *ins, start, n, base, p["period"], float(p["nbdev"]), st, *outs)
    elif name in ("atr", "natr"):
        atr_resume(cols, *ins, start, n, base, p["period"], name == "natr", st, *outs)
    elif name == "stoch":
        stoch_resume(cols, *ins, start, n, base, p["fastk_period"], p["slowk_period"], p["slowd_period"], st, *outs)
    elif name == "adx":
        adx_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "cci":
        cci_resume(cols, *ins, start, n, base, p["period"], scratch(), *outs)
    elif name == "willr":
        willr_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "obv":
        obv_resume(cols, *ins, start, n, base, st, *outs)
    elif name == "roc":
        roc_resume(cols, *ins, start, n, base, p["period"], *outs)
    else:  # pragma: no cover - guarded by the _LAYOUT assertion
        raise ValueError(name)


def state_key(spec: IndicatorSpec) -> str:
    """The name of ``spec``'s state: its first output column (``sma_20``, ``macd_12_26_9``, ``bb_upper_20_2``)."""
    return spec.column_names()[0]


def state_size(spec: IndicatorSpec) -> int:
    """Rows of ``spec``'s float64 state (0 for CCI and ROC, which keep bars only)."""
    return int(_LAYOUT[spec.name](spec.resolved_params())[1])


def state_window(specs: list[IndicatorSpec]) -> int:
    """Bars each symbol keeps for the windows that read back: the largest over ``specs`` (0 when none do)."""
    return max((int(_LAYOUT[s.name](s.resolved_params())[0]) for s in specs), default=0)


def state_fields(specs: list[IndicatorSpec]) -> tuple[str, ...]:
    """The bar fields the specs read (``close`` always: it decides which bars are present), sorted."""
    return tuple(sorted({i for s in specs for i in INDICATORS[s.name].inputs} | {"close"}))


@dataclass
class IndicatorState:
    """What each symbol's indicators need to continue: bars seen, the last bars, the recurrences.

    Attributes
    ----------
    seen : int64 array of shape (n_symbols,)
        Valid bars consumed so far (the next bar's absolute number).
    kept : dict of str to float64 array of shape (window, n_symbols)
        For each field of :func:`state_fields`, the last ``min(seen, window)`` bars at the bottom,
        newest last, NaN above (``window`` = :func:`state_window`). Values are the panel's own
        (a float32 panel's bars, exact in float64).
    values : dict of str to float64 array of shape (size, n_symbols)
        For each spec (:func:`state_key`), its recurrences' accumulators (:func:`state_size` rows).
    """

    seen: object
    kept: dict
    values: dict

    @property
    def n_symbols(self) -> int:
        return int(self.seen.shape[0])


def empty_state(specs: list[IndicatorSpec], n_symbols: int, *, xp=np) -> IndicatorState:
    """The state of symbols with no bar yet: continuing from it is the full computation.

    Parameters
    ----------
    specs : the indicators (each resolved and range-checked here)
    n_symbols : columns
    xp : NumPy or CuPy, where the arrays live
    """
    window = state_window(specs)
    kept = {f: xp.full((window, n_symbols), np.nan, dtype=np.float64) for f in state_fields(specs)}
    values = {state_key(s): xp.zeros((max(state_size(s), 1), n_symbols), dtype=np.float64) for s in specs}
    for s in specs:
        if s.name in ("stoch", "willr"):
            # no extreme yet: bar -1 has always left the window, so the first scan rescans it
            values[state_key(s)][1] = -1.0
            values[state_key(s)][3] = -1.0
    return IndicatorState(xp.zeros(n_symbols, dtype=np.int64), kept, values)


def continue_indicators(bars: dict, specs: list[IndicatorSpec], state: IndicatorState) -> tuple[dict, IndicatorState]:
    """The specs' outputs on the new bars, continuing each symbol from ``state``; and the state after them.

    Parameters
    ----------
    bars : dict of str to array of shape (n_new, n_symbols)
        The new bars only (NumPy or CuPy, float32 or float64), the fields of :func:`state_fields`;
        NaN where a symbol has no new bar (``close`` decides). Column ``j`` is ``state``'s symbol
        ``j``; every bar is later than the symbol's kept ones.
    specs : list of IndicatorSpec
        The same specs, in the same order, that made ``state``.
    state : IndicatorState
        From :func:`empty_state` (then this is the full computation) or an earlier call; not modified.

    Returns
    -------
    outputs : dict of str to array of shape (n_new, n_symbols)
        As :func:`alphapulse.transforms.indicators.registry.compute_indicators` would give for these
        rows after all the symbol's earlier bars (see the module docstring for when it is bit-identical).
    state : IndicatorState
        The state after the new bars (new arrays).
    """
    close = bars["close"]
    xp = namespace(close)
    resolved = [(s.name, s.resolved_params(), s.column_names(), state_key(s)) for s in specs]
    if close.ndim != 2 or close.shape[1] != state.n_symbols:
        raise ValueError(f"bars have shape {close.shape}; the state holds {state.n_symbols} symbols")
    fields = state_fields(specs)
    window = state_window(specs)
    if set(state.kept) != set(fields) or any(v.shape[0] != window for v in state.kept.values()):
        raise ValueError("the state was made for other indicators (its kept bars differ); recompute in full")
    if set(state.values) != {k for *_, k in resolved}:
        raise ValueError("the state was made for other indicators (its keys differ); recompute in full")
    dtype = float_dtype(close)
    valid = valid_mask(close)
    n_new = valid.sum(axis=0).astype(np.int64)
    t = xp.minimum(state.seen, window).astype(np.int64)
    n = t + n_new
    base = state.seen - t
    rows, cols = window + close.shape[0], close.shape[1]
    order = "F" if xp is np else "C"
    stacked = {}
    for f in fields:
        x = bars[f] if bars[f].dtype == dtype else bars[f].astype(dtype)
        dst = xp.full((rows, cols), np.nan, dtype=dtype, order=order)
        _stack_column(cols, xp.asarray(state.kept[f], order=order), t, xp.asarray(x, order=order), valid, dst)
        stacked[f] = dst
    values = {k: v.copy(order=order) for k, v in state.values.items()}

    def scratch():
        return xp.empty((rows, cols), dtype=np.float64, order=order)

    outputs = {}
    for name, params, names, key in resolved:
        outs = [xp.full((rows, cols), np.nan, dtype=dtype, order=order) for _ in names]
        ins = [stacked[i] for i in INDICATORS[name].inputs]
        _launch(name, params, ins, t, n, base, values[key], outs, scratch)
        for col, out in zip(names, outs):
            result = xp.full(close.shape, np.nan, dtype=dtype, order=order)
            _unstack_column(cols, out, t, valid, result)
            outputs[col] = result
    kept = {}
    for f in fields:
        kept[f] = xp.empty((window, cols), dtype=np.float64, order=order)
        _keep_column(cols, stacked[f], n, kept[f])
    return outputs, IndicatorState(state.seen + n_new, kept, values)
