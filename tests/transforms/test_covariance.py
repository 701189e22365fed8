"""alphapulse.transforms.covariance against its oracles -- NumPy (sample), scikit-learn (Ledoit-Wolf, OAS),
pandas (EWMA), skfolio (denoising) -- on S&P 500 and FTSE 100 returns and synthetic data;
invariants (symmetry, PSD, annualisation, float32); hypothesis.

Every test takes the ``xp`` fixture: the inputs go to the device, the estimate comes back with
``host`` and meets the same oracle (NumPy always; CuPy where a GPU exists, else skipped). cuBLAS
and LAPACK sum in different orders, which moves float64 results by a few ulps: far inside the
1e-10 relative tolerances, which exist for rounding on ill-conditioned inputs, not for backends."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.covariance import OAS, LedoitWolf

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.risk_testlib import close_panel, ftse_closes, synthetic_returns
from alphapulse.transforms.covariance import (cov_to_corr, denoised_cov, ewma_cov, ledoit_wolf_cov,
                                              ledoit_wolf_shrinkage, oas_cov, oas_shrinkage, sample_cov)
from alphapulse.transforms.returns import common_window, simple_returns

ESTIMATORS = {
    "sample": sample_cov,
    "ledoit_wolf": ledoit_wolf_cov,
    "oas": oas_cov,
    "ewma": lambda r, **kw: ewma_cov(r, halflife=60, **kw),
    "denoised": denoised_cov,
}


def full_block(wide: pd.DataFrame) -> np.ndarray:
    """Returns of the symbols with a return on every row after the first (common_window)."""
    r = simple_returns(wide.to_numpy(dtype=np.float64))
    cw = common_window(r, r.shape[0] - 1, max_gap_fraction=0.0)
    return cw.select(r)


@pytest.fixture(scope="module")
def sp500_returns(sp500_long):
    return full_block(close_panel(sp500_long))  # 1,258 returns x 461 symbols


@pytest.fixture(scope="module")
def ftse_returns():
    wide = ftse_closes()
    r = simple_returns(wide.to_numpy(dtype=np.float64))
    cw = common_window(r, 2000, window_bars=2520, max_gap_fraction=0.0)  # the last 10 years
    return cw.select(r)


def rel_err(a, b):
    """Largest absolute difference relative to the largest entry of ``b``."""
    return float(np.max(np.abs(np.asarray(a) - b)) / np.max(np.abs(b)))


def check_sklearn(x, xp=np):
    """Our estimates of ``x`` on ``xp``'s device (shrinkages included: 0-d arrays there) against
    scikit-learn's and NumPy's on the host."""
    lw, oas = LedoitWolf().fit(x), OAS().fit(x)
    d = device(xp, x)
    got = {"lw": ledoit_wolf_cov(d), "lw_shrinkage": ledoit_wolf_shrinkage(d), "oas": oas_cov(d),
           "oas_shrinkage": oas_shrinkage(d), "sample": sample_cov(d)}
    assert_on_device(xp, got, x.dtype)
    got = host(got)
    assert rel_err(got["lw"], lw.covariance_) < 1e-10
    assert abs(float(got["lw_shrinkage"]) - lw.shrinkage_) < 1e-12
    assert rel_err(got["oas"], oas.covariance_) < 1e-10
    assert abs(float(got["oas_shrinkage"]) - oas.shrinkage_) < 1e-12
    assert rel_err(got["sample"], np.cov(x, rowvar=False)) < 1e-12


def test_sklearn_and_numpy_on_the_sp500_panel(xp, sp500_returns):
    x = sp500_returns
    assert x.shape[1] > 400
    check_sklearn(x, xp)
    check_sklearn(x[-250:], xp)  # fewer observations than assets: shrinkage matters
    check_sklearn(x[-60:, :20], xp)


def test_sklearn_on_the_ftse_panel(xp, ftse_returns):
    check_sklearn(ftse_returns, xp)
    check_sklearn(ftse_returns[-40:], xp)


def test_sklearn_on_synthetic_and_degenerate_data(xp):
    x = synthetic_returns(gaps=False)
    check_sklearn(x, xp)
    check_sklearn(x[:3], xp)  # three observations
    check_sklearn(x[:, :1], xp)  # one asset: shrinkage 0
    check_sklearn(x * 1e-6, xp)  # tiny scale
    check_sklearn(np.ones((5, 3)) * [1.0, 2.0, 3.0] + np.arange(5)[:, None] * [0.0, 0.0, 1e-3], xp)  # rank 1


@pytest.mark.parametrize("adjust", [True, False])
@pytest.mark.parametrize("halflife", [5, 63.5])
def test_ewma_equals_pandas(xp, sp500_returns, adjust, halflife):
    x = sp500_returns[:, :25]
    df = pd.DataFrame(x)
    for bias in (False, True):
        ref = df.ewm(halflife=halflife, adjust=adjust).cov(bias=bias).loc[len(df) - 1].to_numpy()
        assert rel_err(host(ewma_cov(device(xp, x), halflife=halflife, adjust=adjust, bias=bias)), ref) < 1e-12


@pytest.mark.parametrize("adjust", [True, False])
def test_ewma_min_periods_and_short_inputs(xp, adjust):
    x = synthetic_returns(n_bars=30, n_symbols=4, gaps=False)
    for n, min_periods in ((30, 0), (30, 30), (29, 30), (1, 0), (2, 0), (2, 3)):
        df = pd.DataFrame(x[:n])
        ref = df.ewm(halflife=3, adjust=adjust, min_periods=min_periods).cov().loc[n - 1].to_numpy()
        got = host(ewma_cov(device(xp, x[:n]), halflife=3, adjust=adjust, min_periods=min_periods))
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=f"{n} {min_periods}")
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=0)
    with pytest.raises(ValueError):
        ewma_cov(device(xp, x), halflife=0)


def test_denoised_equals_skfolio(xp, sp500_returns):
    from skfolio.moments import DenoiseCovariance

    x = sp500_returns
    for block in (x[-500:, :60], x[-40:, 100:160], synthetic_returns(n_bars=300, n_symbols=30, gaps=False)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # skfolio's nearest-PD notice when T < N
            ref = DenoiseCovariance().fit(block).covariance_
        assert rel_err(host(denoised_cov(device(xp, block))), ref) < 1e-10


def test_denoising_keeps_variances_and_trace(xp, sp500_returns):
    x = device(xp, sp500_returns[-500:, :80])
    d, s = host(denoised_cov(x)), host(sample_cov(x))
    np.testing.assert_allclose(np.diag(d), np.diag(s), rtol=1e-12)
    # noise eigenvalues replaced by their mean: a better-conditioned correlation matrix, whose
    # largest (market) eigenvalue is kept
    ev, ev_sample = np.linalg.eigvalsh(cov_to_corr(d)), np.linalg.eigvalsh(cov_to_corr(s))
    assert ev.min() > 0 and ev.max() / ev.min() < 0.5 * ev_sample.max() / ev_sample.min()
    assert np.isclose(ev.max(), ev_sample.max(), rtol=0.05)
    with pytest.raises(ValueError):
        denoised_cov(device(xp, np.ones((10, 3))))


def _assert_symmetric_psd(c, tol_scale=1e-12):
    assert np.array_equal(c, c.T)
    ev = np.linalg.eigvalsh(c.astype(np.float64))
    assert ev.min() >= -tol_scale * ev.max()


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_symmetric_psd_and_annualisation(xp, sp500_returns, name):
    est = ESTIMATORS[name]
    for x in (sp500_returns[-250:, :300], sp500_returns[-80:, :40]):  # T < N and T > N
        x = device(xp, x)
        c = est(x)
        assert_on_device(xp, c, np.float64)
        c = host(c)
        assert c.shape == (x.shape[1],) * 2 and c.dtype == np.float64
        _assert_symmetric_psd(c)
        np.testing.assert_allclose(host(est(x, periods_per_year=252)), 252 * c, rtol=1e-13)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_float32_input(xp, sp500_returns, name):
    """float32 in, float32 out (on the input's device), within float32's rounding of float64's."""
    x = sp500_returns[-300:, :30]
    c32 = ESTIMATORS[name](device(xp, x.astype(np.float32)))
    assert_on_device(xp, c32, np.float32)
    c32 = host(c32)
    c64 = host(ESTIMATORS[name](device(xp, x)))
    assert rel_err(c32, c64) < 1e-4
    _assert_symmetric_psd(c32, tol_scale=1e-5)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_incomplete_returns_raise(xp, name):
    x = device(xp, synthetic_returns(gaps=True))
    with pytest.raises(ValueError, match="common_window"):
        ESTIMATORS[name](x)
    with pytest.raises(ValueError):
        ESTIMATORS[name](x[:, 0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_cov_to_corr(xp, dtype):
    # float32: the oracle's float64 correlation to float32 rounding (a few 1e-7 after the
    # division by two standard deviations); float64 to a few ulps, as before. cov and 2 cov give
    # the same correlation to the last bit or two of the dtype.
    atol, same = (1e-14, 1e-15) if dtype == np.float64 else (1e-6, 4 * float(np.finfo(np.float32).eps))
    x = synthetic_returns(gaps=False)
    corr = cov_to_corr(device(xp, sample_cov(x).astype(dtype)))
    assert_on_device(xp, corr, dtype)
    corr = host(corr)
    np.testing.assert_allclose(corr, pd.DataFrame(x).corr().to_numpy(), rtol=0, atol=atol)
    assert np.all(np.diag(corr) == 1.0)
    # zero variance: NaN row and column (pandas' convention); stacks convert matrix by matrix
    x[:, 2] = 0.5
    c = host(cov_to_corr(device(xp, np.stack([sample_cov(x), 2 * sample_cov(x)]).astype(dtype))))
    assert c.shape == (2, 12, 12) and np.isnan(c[:, 2]).all() and np.isnan(c[:, :, 2]).all()
    np.testing.assert_allclose(c[0], c[1], rtol=same, atol=same)
    assert np.isfinite(np.delete(np.delete(c[0], 2, 0), 2, 1)).all()


# The xp fixture is set up once per backend, not per example: sharing it across examples is safe.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), n_obs=st.integers(2, 40), n_assets=st.integers(1, 12),
       scale=st.sampled_from([1e-4, 1e-2, 1.0]))
def test_properties(xp, seed, n_obs, n_assets, scale):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(n_assets, n_assets))
    x = rng.normal(size=(n_obs, n_assets)) @ mix * scale + rng.normal(size=n_assets) * scale
    check_sklearn(x, xp)
    d = device(xp, x)
    for est in (sample_cov, ledoit_wolf_cov, oas_cov, lambda r: ewma_cov(r, halflife=3, bias=True)):
        c = host(est(d))
        _assert_symmetric_psd(c, tol_scale=1e-10)
    # the shrunk estimators sit between the sample covariance and the target on the diagonal mean
    s = host(sample_cov(d, ddof=0))
    assert np.isclose(np.trace(host(ledoit_wolf_cov(d))), np.trace(s), rtol=1e-12)
    assert np.isclose(np.trace(host(oas_cov(d))), np.trace(s), rtol=1e-12)
