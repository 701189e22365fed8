"""The registry's recurrences one bar at a time, every symbol at once: a day's continuation without Numba.

:func:`continue_indicators` (:mod:`alphapulse.transforms.indicators.state`) takes this path when each
symbol has only a few new bars (``STEP_BARS``). A daily store run adds one bar per symbol; launching
the compiled resumable kernels for it would cost a fresh process about half a second of Numba's own
start-up (loading its type registries and the cached kernels) against milliseconds of arithmetic here.

Each ``_<family>`` function advances one bar: row ``i`` of the stacked panels (the kept bars, bottom
aligned, then each symbol's new valid bars from row ``window``), for every column at once, ``a`` the
absolute bar number of that row per column. It performs, per column, the float64 operations of its
counterpart in :mod:`alphapulse.transforms.indicators.resume` in the same order (a branch becomes a
``where`` over values computed on every column, so a column computes the branches it does not take
too, and discards them); the state rows keep the same meaning, so a state written by one path
continues on the other. The results are bit-identical to the kernels' on NumPy (no FMA contraction:
each NumPy operation rounds once), and the same code runs on CuPy.

A column with no bar at this step (``live`` False) keeps its state; its outputs are dropped.
"""
from __future__ import annotations

import numpy as np

_EPSILON = 1e-14  # as series._EPSILON (TA-Lib's TA_EPSILON)
_NAN = np.nan


def _keep(xp, live, new, old):
    return new if live is None else xp.where(live, new, old)


def _store(xp, st, live, *rows):
    # the state rows after this bar, in order; dead columns keep theirs
    for r, new in enumerate(rows):
        st[r] = _keep(xp, live, new, st[r])


def _live(xp, live, cond):
    return cond if live is None else cond & live


def _sma(xp, p, ins, i, a, live, st):
    (x,), period = ins, p["period"]
    total = st[0] + x[i]
    ready = a >= period - 1
    out = xp.where(ready, total / period, _NAN)
    _store(xp, st, live, xp.where(ready, total - x[i - period + 1], total))
    return (out,)


def _ema(xp, p, ins, i, a, live, st):
    (x,), period = ins, p["period"]
    if period == 1:
        return (x[i],)
    k = 2.0 / (period + 1)
    v, acc = x[i], st[0]
    warm = a < period - 1
    seed = a == period - 1
    new = xp.where(warm, acc + v, xp.where(seed, (acc + v) / period, (v - acc) * k + acc))
    _store(xp, st, live, new)
    return (xp.where(warm, _NAN, new),)


def _rsi(xp, p, ins, i, a, live, st):
    (x,), period = ins, p["period"]
    inv = 1.0 / period
    back = float(period - 1)
    value, prev, gain, loss = x[i], st[0], st[1], st[2]
    first = a == 0
    delta = value - prev
    decay = a > period
    g = xp.where(decay, gain * back, gain)
    lo = xp.where(decay, loss * back, loss)
    up = xp.where(delta > 0.0, delta, 0.0)
    g = g + up
    lo = lo + (up - delta)
    ready = a >= period
    g = xp.where(ready, g * inv, g)
    lo = xp.where(ready, lo * inv, lo)
    total = g + lo
    out = xp.where(ready, xp.where(total > 0.0, 100.0 * (g / total), 0.0), _NAN)
    _store(xp, st, live, value, xp.where(first, gain, g), xp.where(first, loss, lo))
    return (out,)


def _macd(xp, p, ins, i, a, live, st):
    (x,) = ins
    fast, slow = (p["slow"], p["fast"]) if p["slow"] < p["fast"] else (p["fast"], p["slow"])
    signal = p["signal"]
    first = slow - 1 + signal - 1
    k_fast, k_slow, k_signal = 2.0 / (fast + 1), 2.0 / (slow + 1), 2.0 / (signal + 1)
    value, total, prev_fast, prev_slow, prev_signal = x[i], st[0], st[1], st[2], st[3]
    warm = a < slow
    seed = a == slow - 1
    pf = xp.where(warm & (a >= slow - fast), prev_fast + value, prev_fast)
    total = xp.where(warm, total + value, total)
    new_fast = xp.where(warm, xp.where(seed, pf / fast, pf), (value - prev_fast) * k_fast + prev_fast)
    new_slow = xp.where(warm, xp.where(seed, total / slow, prev_slow), (value - prev_slow) * k_slow + prev_slow)
    line = new_fast - new_slow
    if signal == 1:
        smoothed = line
    else:
        smoothed = (line - prev_signal) * k_signal + prev_signal
    running = xp.where(a <= first, prev_signal + line, smoothed)
    sig = xp.where(warm, xp.where(seed, 0.0 + line, prev_signal), running)
    sig = xp.where(a == first, sig / signal, sig)
    _store(xp, st, live, total, new_fast, new_slow, sig)
    ready = a >= first
    return (xp.where(ready, line, _NAN), xp.where(ready, sig, _NAN), xp.where(ready, line - sig, _NAN))


def _bbands(xp, p, ins, i, a, live, st):
    (x,), period, nbdev = ins, p["period"], float(p["nbdev"])
    back = period - 1
    inv = 1.0 / period
    reset = float(32 * period)
    value = x[i]
    first_bar = a == 0
    shift = xp.where(first_bar, value, st[0])
    until = xp.where(first_bar, reset, st[4])
    ma_total = st[1] + value
    d = value - shift
    total1 = st[2] + d
    total2 = st[3] + d * d
    ready = a >= back
    mean1 = total1 * inv
    variance = total2 * inv - mean1 * mean1
    mid = ma_total / period
    old = x[i - back]
    d = old - shift
    d2 = d * d
    ma_total = xp.where(ready, ma_total - old, ma_total)
    total1 = xp.where(ready, total1 - d, total1)
    total2 = xp.where(ready, total2 - d2, total2)
    until = xp.where(ready, until - 1, until)
    reseed = _live(xp, live, ready & ((variance < 0.000001 * (total2 * inv)) | (d2 > 1000000.0 * total2)
                                      | (until <= 0)))
    cols = xp.flatnonzero(reseed)
    if cols.size:
        window = [x[t, cols] for t in range(i - back, i + 1)]
        s = xp.zeros(cols.size)
        for w in window:
            s = s + w
        sh = s * inv
        t1 = xp.zeros(cols.size)
        t2 = xp.zeros(cols.size)
        for w in window:
            dd = w - sh
            t1 = t1 + dd
            t2 = t2 + dd * dd
        m1 = t1 * inv
        var = t2 * inv - m1 * m1
        var = xp.where(var < 0.000000000001 * (t2 * inv), 0.0, var)
        dd = window[0] - sh
        until[cols] = reset
        shift[cols] = sh
        total1[cols] = t1 - dd
        total2[cols] = t2 - dd * dd
        variance[cols] = var
    _store(xp, st, live, shift, ma_total, total1, total2, until)
    deviation = xp.where(variance != 0.0, xp.sqrt(variance), 0.0)
    width = deviation * nbdev
    return (xp.where(ready, mid + width, _NAN), xp.where(ready, mid, _NAN), xp.where(ready, mid - width, _NAN))


def _true_range(xp, h, lo, c_prev):
    tr = h - lo
    v = xp.abs(c_prev - h)
    tr = xp.where(v > tr, v, tr)
    v = xp.abs(c_prev - lo)
    return xp.where(v > tr, v, tr)


def _atr(xp, p, ins, i, a, live, st, *, normalized=False):
    (high, low, close), period = ins, p["period"]
    beta = float(period - 1) / float(period)
    alpha = 1.0 - beta
    c_prev, prev = st[0], st[1]
    tr = _true_range(xp, high[i], low[i], c_prev)
    c = close[i]
    warm = a < period
    new = xp.where(warm, prev + tr, xp.where(a == period, (prev + tr) / period, alpha * tr + beta * prev))
    new = xp.where(a == 0, prev, new)
    _store(xp, st, live, c, new)
    if normalized and period > 1:
        new = xp.where((c < -_EPSILON) | (c > _EPSILON), new / c * 100.0, 0.0)
    return (xp.where(warm, _NAN, new),)


def _natr(xp, p, ins, i, a, live, st):
    return _atr(xp, p, ins, i, a, live, st, normalized=True)


def _extreme(xp, x, i, a, back, cur, cur_at, active, sign):
    # resume._running_extreme for every active column: bar numbers are absolute (float64, exact)
    v = x[i]
    trailing = (a - back).astype(np.float64)
    rescan = active & (cur_at < trailing)
    take = active & ~rescan & (sign * v <= sign * cur)
    cur = xp.where(take, v, cur)
    cur_at = xp.where(take, a.astype(np.float64), cur_at)
    cols = xp.flatnonzero(rescan)
    if cols.size:
        best = x[i - back, cols]
        at = trailing[cols]
        for t in range(1, back + 1):
            v = x[i - back + t, cols]
            better = sign * v < sign * best
            best = xp.where(better, v, best)
            at = xp.where(better, trailing[cols] + t, at)
        cur[cols] = best
        cur_at[cols] = at
    return cur, cur_at


def _flat(xp, lowest, highest):
    return xp.abs(highest - lowest) <= _EPSILON * (xp.abs(highest) + xp.abs(lowest))


def _ring_average(xp, st, ring, total, value, a, enter, ready_from, period):
    # STOCH's smoothing: `value` enters its ring slot (state rows ring.., absolute bar modulo period)
    # and the total where `enter`; from bar `ready_from` the mean is out and the oldest value leaves
    cols = xp.flatnonzero(enter)
    st[ring + a[cols] % period, cols] = value[cols]
    total = xp.where(enter, total + value, total)
    ready = enter & (a >= ready_from)
    mean = total / period
    cols = xp.flatnonzero(ready)
    total[cols] = total[cols] - st[ring + (a[cols] - period + 1) % period, cols]
    return mean, total, ready


def _stoch(xp, p, ins, i, a, live, st):
    high, low, close = ins
    fastk, slowk, slowd = p["fastk_period"], p["slowk_period"], p["slowd_period"]
    k_first = fastk - 1
    sk_first = k_first + slowk - 1
    first = sk_first + slowd - 1
    ring_k, ring_d = 6, 6 + slowk
    active = _live(xp, live, a >= k_first)
    lowest, lowest_at = _extreme(xp, low, i, a, k_first, st[0], st[1], active, 1.0)
    highest, highest_at = _extreme(xp, high, i, a, k_first, st[2], st[3], active, -1.0)
    fk = xp.where(_flat(xp, lowest, highest), 0.0, ((close[i] - lowest) / (highest - lowest)) * 100.0)
    sk, total_k, smooth = _ring_average(xp, st, ring_k, st[4], fk, a, active, sk_first, slowk)
    d, total_d, ready = _ring_average(xp, st, ring_d, st[5], sk, a, smooth, first, slowd)
    st[0], st[1], st[2], st[3], st[4], st[5] = lowest, lowest_at, highest, highest_at, total_k, total_d
    return xp.where(ready, sk, _NAN), xp.where(ready, d, _NAN)


def _adx(xp, p, ins, i, a, live, st):
    (high, low, close), period = ins, p["period"]
    first = 2 * period - 1
    inv = 1.0 / period
    prev_high, prev_low, prev_close, minus_dm, plus_dm, tr_sum, sum_dx, adx = (st[r] for r in range(8))
    h, lo = high[i], low[i]
    bar0 = a == 0
    diff_p = h - prev_high
    diff_m = prev_low - lo
    decay = a >= period
    mdm = xp.where(decay, minus_dm - minus_dm * inv, minus_dm)
    pdm = xp.where(decay, plus_dm - plus_dm * inv, plus_dm)
    down = (diff_m > 0.0) & (diff_m - diff_p > 0.0)
    up = ~down & (diff_p > 0.0) & (diff_p - diff_m > 0.0)
    mdm = xp.where(down, mdm + diff_m, mdm)
    pdm = xp.where(up, pdm + diff_p, pdm)
    tr = _true_range(xp, h, lo, prev_close)
    warm = a < period
    trs = xp.where(warm, tr_sum + tr, tr_sum - tr_sum * inv + tr)
    minus_di = 100.0 * (mdm / trs)
    plus_di = 100.0 * (pdm / trs)
    di_sum = minus_di + plus_di
    ok = ~warm & (trs > 0.0) & ~((-_EPSILON < di_sum) & (di_sum < _EPSILON))
    dx = 100.0 * (xp.abs(minus_di - plus_di) / di_sum)
    sdx = xp.where(ok & (a <= first), sum_dx + dx, sum_dx)
    new_adx = xp.where(ok & (a > first), adx - (adx - dx) * inv, adx)
    new_adx = xp.where(a == first, sdx / period, new_adx)
    _store(xp, st, live, h, lo, close[i], xp.where(bar0, minus_dm, mdm), xp.where(bar0, plus_dm, pdm),
           xp.where(bar0, tr_sum, trs), xp.where(bar0, sum_dx, sdx), xp.where(bar0, adx, new_adx))
    return (xp.where(a >= first, new_adx, _NAN),)


def _cci(xp, p, ins, i, a, live, st, *, typical):
    period = p["period"]
    cols = xp.arange(a.shape[0])
    # TA-Lib's circular buffer: a bar's slot is its absolute number modulo period, so the sum starts
    # at a column's own rotation of the window
    wrap = (a + 1) % period
    values = []
    for s in range(period):
        rows = xp.where(s < wrap, i - wrap + 1 + s, i - period + 1 + s - wrap)
        values.append(typical[rows, cols])
    average = xp.zeros(a.shape[0])
    for v in values:
        average = average + v
    average = average / period
    deviation = xp.zeros(a.shape[0])
    for v in values:
        deviation = deviation + xp.abs(v - average)
    deviation = deviation / period
    centred = typical[i] - average
    scale = xp.abs(average)
    flat = (xp.abs(centred) <= _EPSILON * scale) | (xp.abs(deviation) <= _EPSILON * scale)
    out = xp.where(flat, 0.0, centred / (0.015 * deviation))
    return (xp.where(a >= period - 1, out, _NAN),)


def _willr(xp, p, ins, i, a, live, st):
    (high, low, close), period = ins, p["period"]
    active = _live(xp, live, a >= period - 1)
    lowest, lowest_at = _extreme(xp, low, i, a, period - 1, st[0], st[1], active, 1.0)
    highest, highest_at = _extreme(xp, high, i, a, period - 1, st[2], st[3], active, -1.0)
    st[0], st[1], st[2], st[3] = lowest, lowest_at, highest, highest_at
    out = xp.where(_flat(xp, lowest, highest), 0.0, ((highest - close[i]) / (highest - lowest)) * -100.0)
    return (xp.where(a >= period - 1, out, _NAN),)


def _obv(xp, p, ins, i, a, live, st):
    close, volume = ins
    c, vol, prev_close, total = close[i], volume[i], st[0], st[1]
    total = xp.where(a == 0, vol, xp.where(c > prev_close, total + vol, xp.where(c < prev_close, total - vol, total)))
    _store(xp, st, live, c, total)
    return (total,)


def _roc(xp, p, ins, i, a, live, st):
    (x,), period = ins, p["period"]
    before = x[i - period]
    out = xp.where(before != 0.0, (x[i] / before - 1.0) * 100.0, 0.0)
    return (xp.where(a >= period, out, _NAN),)


STEPS = {"sma": _sma, "ema": _ema, "rsi": _rsi, "macd": _macd, "bbands": _bbands, "atr": _atr, "natr": _natr,
         "stoch": _stoch, "adx": _adx, "cci": _cci, "willr": _willr, "obv": _obv, "roc": _roc}
