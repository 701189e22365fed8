"""alphapulse.transforms.correlation: rolling_corr equals pandas' ``df.iloc[window].corr()`` at each date on
real returns with gaps and late listings (pairwise-complete, min_periods, constant series); no
look-ahead; chunking does not change results; average pairwise correlation and absorption ratio
against direct NumPy computations; hypothesis.

Every test takes the ``xp`` fixture: the returns go to the device (the dates stay host row
indices), the matrices come back with ``host`` and meet the same oracle (NumPy always; CuPy where
a GPU exists, else skipped). The tolerances are set by the pairs with two or three common
observations, whose correlations are ill-conditioned whatever the backend's summation order."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.risk_testlib import close_panel, ftse_closes, month_end_rows, synthetic_returns
from alphapulse.transforms.correlation import (_corr_pairwise, absorption_ratio, average_pairwise_correlation,
                                               rolling_corr)
from alphapulse.transforms.returns import simple_returns


def pandas_corr(values, rows, lookback, min_periods=1):
    df = pd.DataFrame(values)
    return np.stack([df.iloc[max(0, t - lookback + 1):t + 1].corr(min_periods=min_periods).to_numpy()
                     for t in rows])


def assert_like_pandas(got, ref, atol=1e-12):
    """NaN positions identical, values within ``atol``. Pairs with 2 or 3 common observations
    (correlation +-1 or close) reach ~1e-12; pairs with dozens of observations agree to ~3e-15."""
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=0, atol=atol)


@pytest.fixture(scope="module")
def sp500(sp500_long):
    wide = close_panel(sp500_long)
    return wide.index, simple_returns(wide.to_numpy())  # 1,259 x 505, gaps and late listings


@pytest.mark.parametrize("lookback", [250, 1000])
def test_equals_pandas_on_the_sp500_panel(xp, sp500, lookback):
    index, r = sp500
    rows = [3, 100, 700, 1000, r.shape[0] - 1]  # early rows: windows clipped at row 0
    assert_like_pandas(host(rolling_corr(device(xp, r), rows, lookback=lookback)), pandas_corr(r, rows, lookback),
                       atol=2e-12)


def test_equals_pandas_at_month_ends_of_the_sample(xp, sample_long):
    wide = close_panel(sample_long)
    r = simple_returns(wide.to_numpy())
    rows = month_end_rows(wide.index)
    assert len(rows) == 61
    assert_like_pandas(host(rolling_corr(device(xp, r), rows, lookback=120)), pandas_corr(r, rows, 120), atol=2e-12)


def test_equals_pandas_on_the_ftse_panel(xp):
    wide = ftse_closes()
    r = simple_returns(wide.to_numpy(dtype=np.float64))
    rows = month_end_rows(wide.index)[::24]
    assert_like_pandas(host(rolling_corr(device(xp, r), rows, lookback=500)), pandas_corr(r, rows, 500), atol=2e-12)


def test_min_periods_and_constant_series(xp):
    r = synthetic_returns(n_bars=200, n_symbols=8)
    r[50:120, 5] = 0.001  # constant over some windows, not others
    r[130:140, 6] = np.nan
    rows = [0, 1, 2, 60, 110, 125, 150, 199]
    for min_periods in (1, 30, 60):
        assert_like_pandas(host(rolling_corr(device(xp, r), rows, lookback=60, min_periods=min_periods)),
                           pandas_corr(r, rows, 60, min_periods))
    full = np.nan_to_num(r[:, [0, 5, 7]], nan=0.0)  # complete windows: the one-product path
    d_full = device(xp, full)
    assert_like_pandas(host(rolling_corr(d_full, rows, lookback=60)), pandas_corr(full, rows, 60))
    assert np.isnan(host(rolling_corr(d_full, [110], lookback=60))[0, 1]).all()  # constant: NaN row, as pandas
    assert np.isnan(host(rolling_corr(d_full, [59], lookback=60, min_periods=61))).all()


def test_complete_and_pairwise_paths_agree(xp, sp500):
    """The one-product path (complete windows) and the four-product path give the same matrices."""
    _, r = sp500
    block = r[1:, np.isfinite(r[1:]).all(axis=0)][:, :60]
    win = device(xp, np.stack([block[t - 249:t + 1] for t in (300, 800)]))
    fast = host(rolling_corr(device(xp, block), [300, 800], lookback=250))
    slow = host(_corr_pairwise(win, xp.isfinite(win), min_periods=1, xp=xp))
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-14)


def test_no_look_ahead_and_chunking(xp, sp500):
    _, r = sp500
    rows = np.array([260, 400, 401, 900])
    d_r = device(xp, r)
    base = host(rolling_corr(d_r, rows, lookback=250))
    for t_idx, t in enumerate(rows):
        changed = r.copy()
        rng = np.random.default_rng(t)
        changed[t + 1:] = rng.normal(0, 0.05, changed[t + 1:].shape)  # rewrite the future
        changed[t + 1:t + 5, :10] = np.nan
        np.testing.assert_array_equal(host(rolling_corr(device(xp, changed), [t], lookback=250))[0], base[t_idx])
    # one date per chunk (a tiny memory bound) or all at once: identical
    np.testing.assert_array_equal(host(rolling_corr(d_r, rows, lookback=250, max_chunk_bytes=1)), base)
    np.testing.assert_array_equal(host(rolling_corr(d_r, rows, lookback=250, max_chunk_bytes=2**40)), base)
    # a date alone equals the same date in a batch
    np.testing.assert_array_equal(host(rolling_corr(d_r, rows[2:3], lookback=250))[0], base[2])


def test_output_invariants(xp, sp500):
    _, r = sp500
    c = rolling_corr(device(xp, r), [500, 1258], lookback=250)
    assert_on_device(xp, c, np.float64)
    c = host(c)
    assert c.shape == (2, 505, 505) and c.dtype == np.float64
    for m in c:
        np.testing.assert_array_equal(m, m.T)
        finite = np.isfinite(m)
        assert (np.abs(m[finite]) <= 1).all()
        d = np.diag(m)
        assert ((d == 1) | np.isnan(d)).all()


def test_float32(xp, sp500):
    _, r = sp500
    rows = [400, 1258]
    c32 = rolling_corr(device(xp, r.astype(np.float32)), rows, lookback=250)
    assert_on_device(xp, c32, np.float32)
    c32 = host(c32)
    c64 = host(rolling_corr(device(xp, r), rows, lookback=250))
    np.testing.assert_array_equal(np.isnan(c32), np.isnan(c64))
    finite = np.isfinite(c64)
    # pairs with 2-3 common observations are the least stable; every other value within 1e-5
    assert np.quantile(np.abs(c32[finite] - c64[finite]), 0.9999) < 1e-5


def test_bad_arguments(xp):
    r = device(xp, synthetic_returns())
    with pytest.raises(ValueError):
        rolling_corr(r, [r.shape[0]], lookback=10)
    with pytest.raises(ValueError):
        rolling_corr(r, [5], lookback=0)
    with pytest.raises(ValueError):
        rolling_corr(r[:, 0], [5], lookback=3)
    empty = rolling_corr(r, [], lookback=5)
    assert_on_device(xp, empty)
    assert empty.shape == (0, 12, 12)


def test_average_pairwise_correlation(xp):
    r = synthetic_returns(n_bars=300, n_symbols=10)
    d_c = rolling_corr(device(xp, r), [99, 299], lookback=100)
    got = average_pairwise_correlation(d_c)
    assert_on_device(xp, got, np.float64)
    c, got = host(d_c), host(got)
    for k in range(2):
        m = c[k]
        off = m[~np.eye(10, dtype=bool)]
        assert got[k] == pytest.approx(np.nanmean(off), rel=1e-14)
    assert host(average_pairwise_correlation(d_c[1])) == pytest.approx(got[1], rel=1e-15)
    assert np.isnan(host(average_pairwise_correlation(device(xp, np.full((1, 3, 3), np.nan)))))[0]


def test_absorption_ratio(xp):
    rng = np.random.default_rng(0)
    r = rng.normal(size=(500, 20)) + rng.normal(size=(500, 1)) * 0.8
    d_c = rolling_corr(device(xp, r), [249, 499], lookback=250)
    c = host(d_c)
    ar = absorption_ratio(d_c)
    assert_on_device(xp, ar, np.float64)
    ar = host(ar)

    def ratio(m, **kw):
        return host(absorption_ratio(device(xp, m), **kw))

    for k in range(2):
        ev = np.sort(np.linalg.eigvalsh(c[k]))[::-1]
        assert ar[k] == pytest.approx(ev[:4].sum() / 20, rel=1e-12)  # k = ceil(0.2 * 20) = 4
    assert ratio(c, n_components=1)[0] == pytest.approx(np.linalg.eigvalsh(c[0]).max() / 20, rel=1e-12)
    assert ratio(np.eye(10)) == pytest.approx(0.2)  # no common factor: k / n
    assert ratio(np.ones((10, 10))) == pytest.approx(1.0)  # one factor explains all
    assert ratio(np.eye(47), fraction=0.2) == pytest.approx(10 / 47)  # k = ceil(9.4)
    cov = np.cov(r, rowvar=False)  # on a covariance: the paper's asset-variance weighting
    ev = np.sort(np.linalg.eigvalsh(cov))[::-1]
    assert ratio(cov) == pytest.approx(ev[:4].sum() / np.trace(cov), rel=1e-12)
    bad = c.copy()
    bad[1, 0, 3] = np.nan
    out = ratio(bad)
    assert out[0] == ar[0] and np.isnan(out[1])
    with pytest.raises(ValueError):
        absorption_ratio(d_c, n_components=21)


# The xp fixture is set up once per backend, not per example: sharing it across examples is safe.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n_bars=st.integers(1, 40), n_symbols=st.integers(1, 5),
       lookback=st.integers(1, 45), min_periods=st.integers(1, 6), nan_share=st.sampled_from([0.0, 0.1, 0.4]))
def test_equals_pandas_property(xp, seed, n_bars, n_symbols, lookback, min_periods, nan_share):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_bars, n_symbols)) * rng.uniform(0.01, 100, n_symbols) + rng.normal(size=n_symbols)
    x[rng.random(x.shape) < nan_share] = np.nan
    if n_symbols > 1 and rng.random() < 0.3:
        x[:, 1] = np.round(x[:, 1])  # ties and stretches of equal values
    rows = np.unique(rng.integers(0, n_bars, 4))
    got = host(rolling_corr(device(xp, x), rows, lookback=lookback, min_periods=min_periods))
    ref = pandas_corr(x, rows, lookback, min_periods)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)
