"""alphapulse.transforms.returns: one-bar returns equal pandas' on real panels with gaps and late listings;
the gap rule by hand; common_window qualifies, excludes with a reason and never drops a symbol
silently; hypothesis over random gap patterns. Every test runs on NumPy and, where a GPU is
usable, on CuPy (the ``xp`` fixture): returns stay on the device in the prices' float dtype, and
common_window gives the same window from a device panel."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.risk_testlib import close_panel, ftse_closes
from alphapulse.transforms.returns import EXCLUSION_REASONS, common_window, log_returns, simple_returns


def _check_against_pandas(wide: pd.DataFrame, xp):
    prices = device(xp, wide.to_numpy(dtype=np.float64))
    r = host(simple_returns(prices))
    ref = wide.pct_change(fill_method=None).to_numpy()
    np.testing.assert_array_equal(np.isnan(r), np.isnan(ref))
    np.testing.assert_array_equal(r[~np.isnan(r)], ref[~np.isnan(ref)])  # the same arithmetic
    lr = host(log_returns(prices))
    np.testing.assert_array_equal(np.isnan(lr), np.isnan(ref))
    np.testing.assert_allclose(lr, np.log(wide / wide.shift(1)).to_numpy(), rtol=0, atol=0)
    np.testing.assert_allclose(lr, np.log1p(r), rtol=1e-12, atol=1e-15)


def test_returns_equal_pandas_on_the_sp500_panel(sp500_long, xp):
    _check_against_pandas(close_panel(sp500_long), xp)


def test_returns_equal_pandas_on_the_bundled_sample(sample_long, xp):
    _check_against_pandas(close_panel(sample_long), xp)


def test_returns_equal_pandas_on_the_ftse_panel(xp):
    _check_against_pandas(ftse_closes(), xp)


def test_gap_rule_by_hand(xp):
    p = device(xp, np.array([[1.0, 10.0], [2.0, np.nan], [np.nan, np.nan], [4.0, 12.0], [5.0, 0.0], [6.0, 15.0],
                             [3.0, -1.0], [np.inf, 20.0]]))
    r = host(simple_returns(p))
    nan = np.nan
    want = np.array([[nan, nan], [1.0, nan], [nan, nan], [nan, nan], [0.25, nan], [0.2, nan], [-0.5, nan],
                     [nan, nan]])
    # NaN positions equal: one-bar only, never across a gap; p <= 0 or inf is missing
    np.testing.assert_allclose(r, want, rtol=1e-15, atol=0)
    np.testing.assert_allclose(host(log_returns(p)), np.log1p(want), rtol=1e-15)


def test_dtypes(xp):
    p = device(xp, np.array([[1, 2], [2, 4], [3, 5]], dtype=np.int64))
    assert simple_returns(p).dtype == np.float64
    assert simple_returns(p.astype(np.float32)).dtype == np.float32
    assert log_returns(p.astype(np.float32)).dtype == np.float32
    assert simple_returns(p[:1]).shape == (1, 2)
    assert_on_device(xp, (simple_returns(p), log_returns(p.astype(np.float32))))


def test_float32_prices(xp):
    """float32 prices give float32 returns on the prices' device, within float32 rounding of the
    float64 returns of the same (float32) prices: the ratio p[t] / p[t-1] is rounded once (2**-24
    of the ratio, about 1 + r; subtracting 1 is then exact), so |error| <= 2**-24 (1 + |r|). Log
    returns add the rounding of the float32 ``log`` (a few ulp of the result, whichever library's
    log): 2**-24 absolute plus 2**-21 (4 ulp) relative."""
    r = _panel()
    prices = np.exp(np.nancumsum(r, axis=0))
    prices[np.isnan(r)] = np.nan
    p32 = prices.astype(np.float32)
    p64 = p32.astype(np.float64)
    got = simple_returns(device(xp, p32))
    got_log = log_returns(device(xp, p32))
    assert_on_device(xp, (got, got_log), np.float32)
    want = simple_returns(p64)
    got = host(got).astype(np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, rtol=2.0**-24, atol=2.0**-24)
    np.testing.assert_allclose(host(got_log).astype(np.float64), log_returns(p64), rtol=2.0**-21, atol=2.0**-24)


def _panel():
    """8 symbols x 120 returns: every rule of common_window exercised once."""
    rng = np.random.default_rng(1)
    r = rng.normal(0, 0.01, (120, 8))
    r[0] = np.nan  # row 0 of a returns panel
    r[:, 1] = np.nan  # no data
    r[:100, 2] = np.nan  # listed late: 20 returns
    r[:40, 3] = np.nan  # listed late, enough history: the common window starts at row 40
    r[50:60, 4] = np.nan  # a 10-bar halt: too many gaps
    r[70, 5] = np.nan  # one gap: tolerated, row 70 dropped
    r[115:, 6] = np.nan  # delisted 5 bars before the end: 5 of 119 missing -> too many gaps
    return r


def test_common_window_rules(xp):
    r = device(xp, _panel())
    names = [f"S{j}" for j in range(8)]
    cw = common_window(r, 60, max_gap_fraction=0.02, symbols=names)
    reasons = {e.symbol: e.reason for e in cw.excluded}
    assert reasons == {"S1": "no_data", "S2": "short_history", "S4": "gaps", "S6": "gaps"}
    assert set(reasons.values()) <= set(EXCLUSION_REASONS)
    assert list(cw.columns) == [0, 3, 5, 7] and cw.symbols == ("S0", "S3", "S5", "S7")
    # every symbol is either kept or excluded with a reason, never both, never neither
    assert sorted([*cw.columns, *(e.column for e in cw.excluded)]) == list(range(8))
    assert cw.rows[0] == 40 and cw.rows[-1] == 119 and 70 not in cw.rows
    assert cw.n_gap_rows_dropped == 1 and len(cw.rows) == 79
    block = cw.select(r)
    assert_on_device(xp, block)
    block = host(block)
    assert block.shape == (79, 4) and np.isfinite(block).all()
    assert "20 returns < min_history_bars=60" in next(e.detail for e in cw.excluded if e.symbol == "S2")

    # no tolerance: S5 excluded for its single gap, and nothing is dropped from the rows
    strict = common_window(r, 60, max_gap_fraction=0.0)
    assert 5 in [e.column for e in strict.excluded] and strict.n_gap_rows_dropped == 0
    # a window of the last 30 rows: S3 and S2 need only 20 returns
    late = common_window(r, 20, window_bars=30, max_gap_fraction=0.0)
    assert (late.window_start, late.window_stop) == (90, 120)
    assert 2 in late.columns and 3 in late.columns and late.rows[0] == 100
    # a window ending earlier sees S6 before its delisting
    early = common_window(r, 60, end=110, max_gap_fraction=0.02)
    assert 6 in early.columns and early.rows[-1] == 110


def test_common_window_edge_cases(xp):
    r = device(xp, _panel())
    none = common_window(r, 1000)
    assert none.columns.size == 0 and none.rows.size == 0 and len(none.excluded) == 8
    with pytest.raises(ValueError):
        common_window(r, 0)
    with pytest.raises(ValueError):
        common_window(r, 10, end=120)
    with pytest.raises(ValueError):
        common_window(r, 10, symbols=["a"])


def test_common_window_on_the_sp500_panel(sp500_long, xp):
    """The real late listings and gappy symbols are reported by name, none dropped silently."""
    wide = close_panel(sp500_long)
    on_device = simple_returns(device(xp, wide.to_numpy()))
    r = host(on_device)
    cw = common_window(on_device, 250, window_bars=1000, symbols=list(wide.columns))
    excluded = {e.symbol: e.reason for e in cw.excluded}
    assert len(cw.columns) + len(excluded) == wide.shape[1]
    assert {"APTV", "BHF", "BHGE", "DWDP", "DXC"} <= {s for s, why in excluded.items() if why == "short_history"}
    assert {s for s, why in excluded.items() if why == "gaps"} >= {"DHR", "O"}
    assert np.isfinite(host(cw.select(on_device))).all()
    # full history over the whole panel: the 1,258 returns of every full symbol
    full = common_window(on_device, r.shape[0] - 1, max_gap_fraction=0.0)
    assert len(full.rows) == r.shape[0] - 1 and np.isfinite(host(full.select(on_device))).all()
    assert len(full.columns) == int(np.isfinite(r[1:]).all(axis=0).sum())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(2, 60), n_symbols=st.integers(1, 6),
       min_history=st.integers(1, 40), fraction=st.sampled_from([0.0, 0.05, 0.3]),
       window=st.one_of(st.none(), st.integers(1, 60)))
def test_common_window_properties(xp, seed, n_bars, n_symbols, min_history, fraction, window):
    rng = np.random.default_rng(seed)
    prices = np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_symbols)), axis=0))
    prices[rng.random(prices.shape) < rng.uniform(0, 0.3)] = np.nan
    for j in range(n_symbols):
        if rng.random() < 0.3:  # a late listing
            prices[: rng.integers(0, n_bars + 1), j] = np.nan
    on_device = simple_returns(device(xp, prices))
    r = host(on_device)
    cw = common_window(on_device, min_history, window_bars=window, max_gap_fraction=fraction)
    assert sorted([*cw.columns, *(e.column for e in cw.excluded)]) == list(range(n_symbols))
    block = host(cw.select(on_device))
    assert np.isfinite(block).all()
    assert all(cw.window_start <= t < cw.window_stop for t in cw.rows)
    inside = r[cw.window_start:cw.window_stop]
    for j in cw.columns:
        assert np.isfinite(inside[:, j]).sum() >= min_history
    if cw.columns.size:
        # the rows are those from the latest first return of a kept symbol on where every kept
        # symbol has a return
        start = cw.window_start + max(int(np.argmax(np.isfinite(inside[:, j]))) for j in cw.columns)
        complete = np.isfinite(r[start:cw.window_stop][:, cw.columns]).all(axis=1)
        assert list(cw.rows) == list(start + np.flatnonzero(complete))
        assert cw.n_gap_rows_dropped == complete.size - complete.sum()

