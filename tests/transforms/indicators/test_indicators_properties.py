"""Property-based tests (hypothesis): causality, scale invariance, gap semantics.

Panels are small (at most 90 bars x 4 symbols) and always have two or more columns: a
one-column panel is both C- and F-contiguous and would make Numba compile a second (C-layout)
variant of every kernel.

Each property runs on NumPy and, where a GPU is usable, on CuPy (the ``xp`` fixture; panels are
drawn on the host and copied to the device C-ordered). Without TA-Lib on a GPU host,
:func:`test_float32_panels_compute_in_float64` is what runs every CUDA kernel on the device in
float32 and float64 (with TA-Lib, ``test_indicators_talib`` does too, against TA-Lib).
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec, compute_indicators

# Short windows, so that 20-90 bars give every indicator some output.
SMALL_SPECS = [
    IndicatorSpec("sma", {"period": 5}),
    IndicatorSpec("ema", {"period": 4}),
    IndicatorSpec("rsi", {"period": 3}),
    IndicatorSpec("macd", {"fast": 3, "slow": 7, "signal": 3}),
    IndicatorSpec("bbands", {"period": 5, "nbdev": 2.0}),
    IndicatorSpec("atr", {"period": 3}),
    IndicatorSpec("natr", {"period": 3}),
    IndicatorSpec("stoch", {"fastk_period": 3, "slowk_period": 2, "slowd_period": 2}),
    IndicatorSpec("adx", {"period": 3}),
    IndicatorSpec("cci", {"period": 4}),
    IndicatorSpec("willr", {"period": 4}),
    IndicatorSpec("obv", {}),
    IndicatorSpec("roc", {"period": 2}),
]
assert {s.name for s in SMALL_SPECS} == set(INDICATORS)

# The xp fixture is function-scoped: the same backend for every example is what is wanted.
PROPERTY_SETTINGS = settings(max_examples=40, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


TICK = 64  # prices are multiples of 1/64


@st.composite
def panels(draw, min_bars=20, max_bars=90, gaps=True):
    """OHLCV panels on a 1/64 tick grid: random walks (zero steps included, so flat stretches
    and ties happen), consistent OHLC, optional late listings and interior missing bars.

    A binary tick (not cents) keeps every price and every price difference exact, also after
    scaling by 1000: a tie stays a tie. With cents, 1.07 - 1.00 and 1.00 - 0.93 are a tie in
    decimal but not in binary, and which side wins flips under scaling -- ADX's +DM/-DM then
    legitimately differ (TA-Lib's algorithm breaks ties on the binary values)."""
    n_bars = draw(st.integers(min_bars, max_bars))
    n_symbols = draw(st.integers(2, 4))
    shape = (n_bars, n_symbols)
    start = draw(st.integers(TICK, 2000 * TICK))
    steps = draw(hnp.arrays(np.int64, shape, elements=st.integers(-300, 300)))
    close = np.maximum(start + np.cumsum(steps, axis=0), 1)
    open_ = np.maximum(close - draw(hnp.arrays(np.int64, shape, elements=st.integers(-200, 200))), 1)
    up = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 150)))
    down = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 150)))
    high = np.maximum(open_, close) + up
    low = np.maximum(np.minimum(open_, close) - down, 1)
    volume = draw(hnp.arrays(np.int64, shape, elements=st.integers(0, 10**7)))
    bars = {"open": open_ / TICK, "high": high / TICK, "low": low / TICK, "close": close / TICK,
            "volume": volume.astype(np.float64)}
    if gaps:
        missing = np.zeros(shape, dtype=bool)
        listing = draw(st.integers(0, n_bars // 2))
        missing[:listing, -1] = True
        for i in draw(st.lists(st.integers(1, n_bars - 2), max_size=4)):
            missing[i, 0] = True
        for name in bars:
            bars[name] = np.where(missing, np.nan, bars[name])
    return {k: np.asfortranarray(v) for k, v in bars.items()}


def _equal(a, b):
    return np.array_equal(a, b, equal_nan=True)


def _compute(xp, bars, specs=SMALL_SPECS):
    """``compute_indicators`` of host ``bars`` on ``xp``, brought back to the host."""
    return host(compute_indicators(device(xp, bars), specs))


@PROPERTY_SETTINGS
@given(bars=panels(), data=st.data())
def test_no_look_ahead(xp, bars, data):
    """Dropping the future never changes the past: every output at bar t depends on bars <= t."""
    full = _compute(xp, bars)
    n_bars = bars["close"].shape[0]
    cut = data.draw(st.integers(1, n_bars - 1), label="cut")
    past = _compute(xp, {k: np.asfortranarray(v[:cut]) for k, v in bars.items()})
    for name, values in full.items():
        assert _equal(past[name], values[:cut]), name


@PROPERTY_SETTINGS
@given(bars=panels(), data=st.data())
def test_changing_the_future_keeps_the_past(xp, bars, data):
    """Rewriting every bar after t (reversed and repriced, some removed) leaves bars <= t alone."""
    full = _compute(xp, bars)
    n_bars = bars["close"].shape[0]
    cut = data.draw(st.integers(1, n_bars - 1), label="cut")
    factor = data.draw(st.sampled_from([0.5, 1.1, 3.0]), label="factor")
    changed = {}
    for k, v in bars.items():
        future = v[cut:][::-1] * (factor if k != "volume" else 2.0)
        future[::3, 0] = np.nan
        changed[k] = np.asfortranarray(np.concatenate([v[:cut], future]))
    again = _compute(xp, changed)
    for name, values in full.items():
        assert _equal(again[name][:cut], values[:cut]), name


SCALE_FREE = ["rsi", "stoch", "willr", "adx", "cci", "natr", "roc"]


@PROPERTY_SETTINGS
@given(bars=panels())
def test_oscillators_are_scale_invariant(xp, bars):
    """Quoting prices in thousandths (x 1000) leaves the oscillators unchanged."""
    specs = [s for s in SMALL_SPECS if s.name in SCALE_FREE]
    base = _compute(xp, bars, specs)
    scaled = _compute(xp, {k: (v * 1000.0 if k != "volume" else v) for k, v in bars.items()}, specs)
    for name, values in base.items():
        assert _equal(np.isnan(scaled[name]), np.isnan(values)), name
        # Prices and their differences scale exactly (binary ticks), so every comparison and tie
        # decides alike; the Wilder steps and divisions then round differently at the ulp level.
        scale = np.nanmax(np.abs(values), initial=1.0)
        np.testing.assert_allclose(scaled[name], values, rtol=1e-9, atol=1e-9 * scale, err_msg=name)


@PROPERTY_SETTINGS
@given(bars=panels(gaps=False), data=st.data())
def test_interior_gap_is_skipped(xp, bars, data):
    """A missing bar inside a series: the series runs on over it (the bars around it are
    consecutive for the indicator) and the output there is NaN -- the same as computing on the
    series with that bar removed."""
    n_bars = bars["close"].shape[0]
    gap = data.draw(st.integers(1, n_bars - 2), label="gap")
    column = data.draw(st.integers(0, bars["close"].shape[1] - 1), label="column")
    holed = {k: v.copy(order="F") for k, v in bars.items()}
    for v in holed.values():
        v[gap, column] = np.nan
    with_gap = _compute(xp, holed)
    removed = _compute(xp, {k: np.asfortranarray(np.delete(v, gap, axis=0)) for k, v in bars.items()})
    for name, values in with_gap.items():
        expected = np.insert(removed[name][:, column], gap, np.nan)
        assert _equal(values[:, column], expected), name


@PROPERTY_SETTINGS
@given(bars=panels(gaps=False), data=st.data())
def test_late_listing_starts_its_own_lookback(xp, bars, data):
    """A symbol listed at bar s gets exactly the values of its own series computed alone."""
    n_bars = bars["close"].shape[0]
    listing = data.draw(st.integers(1, n_bars - 1), label="listing")
    late = {k: v.copy(order="F") for k, v in bars.items()}
    for v in late.values():
        v[:listing, 0] = np.nan
    result = _compute(xp, late)
    alone = _compute(xp, {k: np.asfortranarray(v[listing:]) for k, v in bars.items()})
    for name, values in result.items():
        assert np.isnan(values[:listing, 0]).all(), name
        assert _equal(values[listing:, 0], alone[name][:, 0]), name


@PROPERTY_SETTINGS
@given(bars=panels())
def test_float32_panels_compute_in_float64(xp, bars):
    """A float32 panel is stored in float32 and computed in float64: every output is the float64
    computation on the same (float32) prices, rounded once to float32.

    On the CPU the two runs execute the same float64 operations, so the results are identical.
    On the GPU this is the test that runs every CUDA kernel on the device in both dtypes; the
    bound there is one float32 ulp (2**-23 relative, the final rounding of two float64 values
    that may differ in their last bits) plus 1e-12 of the column's largest value, for outputs
    near zero (MACD, ROC) where a fused multiply-add placed differently in the two compiled
    variants would show as a relative error. Float32 arithmetic inside a kernel errs by 1e-6
    and more: far outside both.
    """
    bars32 = {k: v.astype(np.float32) for k, v in bars.items()}
    bars64 = {k: v.astype(np.float64) for k, v in bars32.items()}
    out32 = compute_indicators(device(xp, bars32), SMALL_SPECS)
    assert_on_device(xp, out32, np.float32)
    out32 = host(out32)
    out64 = _compute(xp, bars64)
    for name, want in out64.items():
        want = want.astype(np.float32)
        if xp is np:
            np.testing.assert_array_equal(out32[name], want, err_msg=name)
        else:
            scale = np.nanmax(np.abs(want), initial=0.0).astype(np.float64)
            np.testing.assert_allclose(out32[name], want, rtol=2.0**-23, atol=1e-12 * scale, err_msg=name)
