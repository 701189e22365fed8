"""Published values: TA-Lib's own regression-test expectations, and small hand-worked examples,
on NumPy and (``xp`` fixture, where a GPU is usable) on CuPy: the same float64 values."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms import ta_lib_reference_data as ref
from tests.transforms.gpu_testlib import device
from alphapulse.transforms import indicators as ind
from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators


def _column(xp, x):
    # The series twice: a one-column panel is both C- and F-contiguous and Numba would compile
    # (and cache) a C-layout variant of every kernel just for these tests.
    x = np.asarray(x, dtype=np.float64)
    return device(xp, np.asfortranarray(np.stack([x, x], axis=1)))


def test_reference_history_is_complete():
    assert len(ref.HIGH) == len(ref.LOW) == len(ref.CLOSE) == 252
    assert all(lo <= c <= hi for hi, lo, c in zip(ref.HIGH, ref.LOW, ref.CLOSE))


@pytest.mark.parametrize("name, params, output, bar, expected", ref.EXPECTED,
                         ids=[f"{e[0]}-{'-'.join(map(str, e[1].values()))}-{e[2]}@{e[3]}" for e in ref.EXPECTED])
def test_talib_regression_values(xp, name, params, output, bar, expected):
    bars = {"high": _column(xp, ref.HIGH), "low": _column(xp, ref.LOW), "close": _column(xp, ref.CLOSE)}
    spec = IndicatorSpec(name, params)
    out = host(compute_indicators(bars, [spec]))
    column = spec.column_names()[spec.indicator.outputs.index(output)]
    # TA-Lib's CHECK_EXPECTED_VALUE band: the published values carry 2-4 decimals.
    assert out[column][bar, 0] == pytest.approx(expected, abs=0.01)
    # ...and the first output sits at TA-Lib's lookback.
    assert np.isnan(out[column][: ind.lookback(spec), 0]).all()
    assert not np.isnan(out[column][ind.lookback(spec), 0])


def test_hand_worked_sma_ema(xp):
    close = _column(xp, [1.0, 2.0, 3.0, 4.0, 6.0, 8.0])
    np.testing.assert_array_equal(host(ind.sma(close, period=3))[:, 0], [np.nan, np.nan, 2.0, 3.0, 13 / 3, 6.0])
    # EMA(3): k = 1/2, seeded with the SMA of the first 3 bars.
    np.testing.assert_array_equal(host(ind.ema(close, period=3))[:, 0], [np.nan, np.nan, 2.0, 3.0, 4.5, 6.25])


def test_hand_worked_rsi(xp):
    # Changes +1, -0.5, +1, -0.5. Seed (bar 2): gain 0.5, loss 0.25 -> 66.67; then Wilder steps
    # gain = (gain + up) / 2, loss = (loss + down) / 2.
    close = _column(xp, [10.0, 11.0, 10.5, 11.5, 11.0])
    expected = [np.nan, np.nan, 100 * 0.5 / 0.75, 100 * 0.75 / 0.875, 100 * 0.375 / 0.6875]
    np.testing.assert_allclose(host(ind.rsi(close, period=2))[:, 0], expected, rtol=1e-15)


def test_hand_worked_macd_signal_one_is_the_line(xp):
    close = _column(xp, np.linspace(10.0, 20.0, 40) ** 1.5)
    line, signal, hist = host(ind.macd(close, fast=3, slow=6, signal=1))
    np.testing.assert_array_equal(line, signal)
    assert np.nanmax(np.abs(hist)) == 0.0 and np.isnan(hist[:5]).all() and not np.isnan(hist[5:]).any()


def test_hand_worked_atr_natr_obv_roc_willr(xp):
    high = _column(xp, [11.0, 12.0, 13.0, 12.0])
    low = _column(xp, [9.0, 10.0, 10.0, 9.0])
    close = _column(xp, [10.0, 11.0, 12.0, 9.5])
    volume = _column(xp, [100.0, 200.0, 300.0, 400.0])
    # True ranges from bar 1: max(2, |10-12|, |10-10|) = 2; max(3, 2, 1) = 3; max(3, 0, 3) = 3.
    # ATR(2): seed (2 + 3) / 2 = 2.5 at bar 2; then (2.5 * 1 + 3) / 2 = 2.75.
    np.testing.assert_allclose(host(ind.atr(high, low, close, period=2))[:, 0], [np.nan, np.nan, 2.5, 2.75])
    np.testing.assert_allclose(host(ind.natr(high, low, close, period=2))[:, 0],
                               [np.nan, np.nan, 2.5 / 12 * 100, 2.75 / 9.5 * 100])
    # TA-Lib quirk kept: NATR with period 1 is the true range itself.
    np.testing.assert_array_equal(host(ind.natr(high, low, close, period=1))[:, 0], [np.nan, 2.0, 3.0, 3.0])
    np.testing.assert_array_equal(host(ind.obv(close, volume))[:, 0], [100.0, 300.0, 600.0, 200.0])
    np.testing.assert_allclose(host(ind.roc(close, period=2))[:, 0], [np.nan, np.nan, 20.0, (9.5 / 11 - 1) * 100])
    # %R(2) = -100 (HH - C) / (HH - LL): bar 1: -100 * 1 / 3; bar 2: -100 * 1 / 3; bar 3: -100 * 3.5 / 4.
    np.testing.assert_allclose(host(ind.willr(high, low, close, period=2))[:, 0],
                               [np.nan, -100 / 3, -100 / 3, -87.5])


def test_flat_windows_take_talibs_neutral_values(xp):
    flat = _column(xp, np.full(40, 7.25))
    assert np.nanmax(np.abs(host(ind.rsi(flat, period=14)))) == 0.0
    k, d = host(ind.stoch(flat, flat, flat))
    assert np.nanmax(np.abs(k)) == 0.0 and np.nanmax(np.abs(d)) == 0.0
    assert np.nanmax(np.abs(host(ind.willr(flat, flat, flat)))) == 0.0
    assert np.nanmax(np.abs(host(ind.cci(flat, flat, flat)))) == 0.0
    assert np.nanmax(np.abs(host(ind.adx(flat, flat, flat)))) == 0.0
    upper, middle, lower = host(ind.bbands(flat))
    np.testing.assert_array_equal(upper[19:], middle[19:])
    np.testing.assert_array_equal(lower[19:], middle[19:])
