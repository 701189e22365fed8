"""alphapulse.transforms.montecarlo: simulated VaR/CVaR against closed forms within stated sampling error
(normal; Student-t at one bar), the bootstrap against exact enumeration and the historical
quantile; seeding, chunking, the t's covariance scaling, compounding.

Every test takes the ``xp`` fixture (NumPy; CuPy where a GPU exists, else skipped). CuPy's random
stream is not NumPy's, so no test compares draws bit for bit across backends: each compares a
backend's simulation with closed forms within sampling error, or with itself (same seed, same
chunking). Only the chunk-invariance of the normal draws is NumPy's alone (one PCG64 stream drawn
in order); the module promises reproducibility per seed, backend and chunk size, no more.

Tolerances: the standard error of the a-quantile of N draws of a density f is
sqrt(a (1 - a) / N) / f(q_a); of the tail mean, sqrt((Var(L | L >= q) + a (CVaR - q)^2) / (N (1 - a))).
Every comparison allows 4.5 standard errors (a false alarm about once in 150,000 runs per check;
the seeds are fixed anyway, so the tests are deterministic).
"""
from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.risk_testlib import close_panel, cupy_like_numpy
from alphapulse.transforms import montecarlo as montecarlo
from alphapulse.transforms.covariance import sample_cov
from alphapulse.transforms.montecarlo import monte_carlo_var_cvar, normal_var_cvar, simulate_portfolio_returns, var_cvar
from alphapulse.transforms.returns import common_window, simple_returns

LEVELS = (0.95, 0.99)
K = 4.5


def normal_standard_errors(sigma, n_paths, levels=LEVELS):
    """Standard errors of the VaR and CVaR estimates of N(., sigma^2) losses."""
    se_var, se_cvar = [], []
    for a in levels:
        z = NormalDist().inv_cdf(a)
        phi = math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        se_var.append(math.sqrt(a * (1 - a) / n_paths) / (phi / sigma))
        lam = phi / (1 - a)  # E[Z | Z >= z]; Var[Z | Z >= z] = 1 + z lam - lam^2
        tail_var = 1 + z * lam - lam * lam
        se_cvar.append(sigma * math.sqrt((tail_var + a * (lam - z) ** 2) / (n_paths * (1 - a))))
    return np.array(se_var), np.array(se_cvar)


@pytest.fixture(scope="module")
def market(sp500_long):
    """Mean and covariance of 20 real S&P 500 symbols' daily returns, and the returns themselves."""
    wide = close_panel(sp500_long)
    r = simple_returns(wide.to_numpy())
    cw = common_window(r, r.shape[0] - 1, max_gap_fraction=0.0)
    x = cw.select(r)[:, :20]
    return x.mean(axis=0), sample_cov(x), x


@pytest.mark.parametrize("horizon", [1, 10])
def test_normal_agrees_with_the_closed_form(xp, market, horizon):
    mean, cov, _ = market
    w = np.full(20, 1 / 20)
    n_paths = 200_000
    d_w, d_mean, d_cov = device(xp, (w, mean, cov))
    got = monte_carlo_var_cvar(d_w, model="normal", mean=d_mean, cov=d_cov, horizon_bars=horizon, n_paths=n_paths,
                               compound=False, seed=1)
    assert_on_device(xp, (got["var"], got["cvar"]))
    got = host(got)
    var, cvar = normal_var_cvar(w, mean=mean, cov=cov, horizon_bars=horizon)
    # the closed form takes device inputs too (and returns host floats)
    np.testing.assert_allclose(normal_var_cvar(d_w, mean=d_mean, cov=d_cov, horizon_bars=horizon), (var, cvar),
                               rtol=1e-12)
    se_var, se_cvar = normal_standard_errors(math.sqrt(horizon * w @ cov @ w), n_paths)
    assert np.all(np.abs(got["var"] - var) < K * se_var), (got["var"], var, se_var)
    assert np.all(np.abs(got["cvar"] - cvar) < K * se_cvar), (got["cvar"], cvar, se_cvar)
    assert np.all(got["var"] > 0) and np.all(got["cvar"] > got["var"]) and got["levels"] == LEVELS


def test_compounding_is_close_to_summing_for_daily_returns(xp, market):
    mean, cov, _ = market
    w, mean, cov = device(xp, (np.full(20, 1 / 20), mean, cov))
    kw = dict(model="normal", mean=mean, cov=cov, horizon_bars=10, n_paths=50_000, seed=3)
    compounded = host(simulate_portfolio_returns(w, compound=True, **kw))
    summed = host(simulate_portfolio_returns(w, compound=False, **kw))
    # the same draws: path by path the compounded return is the summed one plus the cross terms
    # (products of daily returns, ~1e-4 each)
    assert np.abs(compounded - summed).max() < 0.01 and np.abs(compounded - summed).mean() < 5e-4
    assert not np.array_equal(compounded, summed)
    one = dict(kw, horizon_bars=1)
    np.testing.assert_allclose(host(simulate_portfolio_returns(w, compound=True, **one)),
                               host(simulate_portfolio_returns(w, compound=False, **one)), rtol=0, atol=1e-15)


def test_student_t_closed_form_and_covariance(xp, market):
    from scipy import stats

    mean, cov, _ = market
    w = np.linspace(1, 2, 20) / np.linspace(1, 2, 20).sum()
    dof, n_paths = 5.0, 300_000
    sims = simulate_portfolio_returns(device(xp, w), model="student_t", mean=device(xp, mean), cov=device(xp, cov),
                                      dof=dof, n_paths=n_paths, seed=4)
    var, cvar = host(var_cvar(sims))
    sims = host(sims)
    # one bar: w.r = mu_p + sigma_p sqrt((dof - 2) / dof) T_dof
    mu_p, sigma_p = w @ mean, math.sqrt(w @ cov @ w)
    scale = sigma_p * math.sqrt((dof - 2) / dof)
    for k, a in enumerate(LEVELS):
        q = stats.t.ppf(a, dof)
        want = -mu_p + scale * q
        se = math.sqrt(a * (1 - a) / n_paths) / (stats.t.pdf(q, dof) / scale)
        assert abs(var[k] - want) < K * se
        # t's expected shortfall: scale * pdf(q) (dof + q^2) / ((dof - 1)(1 - a))
        es = -mu_p + scale * stats.t.pdf(q, dof) * (dof + q * q) / ((dof - 1) * (1 - a))
        assert abs(cvar[k] - es) < 0.02 * es
    assert np.std(sims) == pytest.approx(sigma_p, rel=0.01)  # covariance matched, not the t's dof/(dof-2) larger
    normal = normal_var_cvar(w, mean=mean, cov=cov)[0]
    assert var[0] < normal[0] and var[1] > normal[1]  # same variance: thinner at 95 %, fatter at 99 %


def test_student_t_asset_covariance_is_cov(xp):
    cov = np.array([[4.0, 1.2, -0.4], [1.2, 1.0, 0.1], [-0.4, 0.1, 0.5]]) * 1e-4
    w = np.eye(3)
    sims = np.stack([host(simulate_portfolio_returns(device(xp, w[i]), model="student_t", cov=device(xp, cov), dof=6,
                                                     n_paths=200_000, seed=9, compound=False)) for i in range(3)])
    # same seed: the three "portfolios" are the three assets of one simulation
    np.testing.assert_allclose(np.cov(sims), cov, atol=4e-6)


def test_bootstrap_equals_enumeration(xp):
    """Two historical rows, two bars: four equally likely compounded outcomes."""
    hist = np.array([[0.10, -0.05], [-0.20, 0.30]])
    w = np.array([0.5, 0.5])
    sims = host(simulate_portfolio_returns(device(xp, w), model="bootstrap", returns=device(xp, hist), horizon_bars=2,
                                           n_paths=80_000, seed=5))
    outcomes = {}
    for a in range(2):
        for b in range(2):
            outcomes[round(float(((1 + hist[a]) * (1 + hist[b]) - 1) @ w), 12)] = outcomes.get(
                round(float(((1 + hist[a]) * (1 + hist[b]) - 1) @ w), 12), 0) + 0.25
    values, counts = np.unique(np.round(sims, 12), return_counts=True)
    assert set(values) == set(outcomes)
    for v, c in zip(values, counts):
        p = outcomes[v]
        assert abs(c / sims.size - p) < K * math.sqrt(p * (1 - p) / sims.size)


def test_bootstrap_one_bar_matches_the_historical_quantile(xp, market):
    _, _, x = market
    w = np.full(20, 1 / 20)
    n_paths = 400_000
    got = monte_carlo_var_cvar(device(xp, w), model="bootstrap", returns=device(xp, x), n_paths=n_paths, seed=6)
    assert_on_device(xp, (got["var"], got["cvar"]))
    got = host(got)
    hist_var, hist_cvar = var_cvar(x @ w)
    losses = np.sort(-(x @ w))
    for k, a in enumerate(LEVELS):
        # the resampled a-quantile is within a few order statistics of the historical one
        rank = a * (losses.size - 1)
        spread = K * math.sqrt(a * (1 - a) * losses.size) * (losses.size / n_paths) ** 0.5 + 2
        lo, hi = losses[max(0, int(rank - spread))], losses[min(losses.size - 1, int(rank + spread) + 1)]
        assert lo <= got["var"][k] <= hi
        assert got["cvar"][k] == pytest.approx(hist_cvar[k], rel=0.05)
    assert got["var"][1] > got["var"][0] and got["cvar"][1] > got["cvar"][0]


def test_seeds_and_chunks(xp, market):
    mean, cov, x = device(xp, market)
    w = device(xp, np.full(20, 1 / 20))
    kw = dict(model="student_t", mean=mean, cov=cov, dof=4, horizon_bars=5, n_paths=20_000)
    a = host(simulate_portfolio_returns(w, seed=11, paths_per_chunk=3_000, **kw))
    np.testing.assert_array_equal(a, host(simulate_portfolio_returns(w, seed=11, paths_per_chunk=3_000, **kw)))
    assert not np.array_equal(a, host(simulate_portfolio_returns(w, seed=12, paths_per_chunk=3_000, **kw)))
    # other chunk sizes: other draws from the same distribution
    b = host(simulate_portfolio_returns(w, seed=11, paths_per_chunk=7_000, **kw))
    var_a, var_b = var_cvar(a)[0], var_cvar(b)[0]
    np.testing.assert_allclose(var_a, var_b, rtol=0.1)
    kw_n = dict(model="normal", mean=mean, cov=cov, horizon_bars=3, n_paths=5_000, seed=2)
    chunked = host(simulate_portfolio_returns(w, paths_per_chunk=1_000, **kw_n))
    whole = host(simulate_portfolio_returns(w, paths_per_chunk=5_000, **kw_n))
    if xp is np:
        # the normal draws do not depend on the chunking (one PCG64 stream of standard normals)
        np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-15)
    else:
        # CuPy's generator promises no such thing: the same distribution (95 % VaR of 5,000
        # paths: a standard error of ~2 % each, so 10 % is over 3.5 joint standard errors)
        np.testing.assert_allclose(var_cvar(chunked)[0], var_cvar(whole)[0], rtol=0.1)
    boot = host(simulate_portfolio_returns(w, model="bootstrap", returns=x, n_paths=1_000, seed=1, paths_per_chunk=7))
    assert boot.shape == (1_000,) and np.isfinite(boot).all()


def test_singular_covariance_and_validation(xp):
    cov = device(xp, np.array([[1.0, 1.0], [1.0, 1.0]]) * 1e-4)  # perfectly correlated: Cholesky fails
    ones = device(xp, np.ones(2))
    sims = host(simulate_portfolio_returns(device(xp, np.array([1.0, -1.0])), model="normal", cov=cov, n_paths=1_000))
    assert np.abs(sims).max() < 1e-12  # a perfect hedge
    with pytest.raises(ValueError):
        simulate_portfolio_returns(ones, model="normal", cov=-cov)
    with pytest.raises(ValueError):
        simulate_portfolio_returns(ones, model="student_t", cov=cov, dof=2)
    with pytest.raises(ValueError):
        simulate_portfolio_returns(ones, model="bootstrap", returns=device(xp, np.array([[0.1, np.nan]])))
    with pytest.raises(ValueError):
        simulate_portfolio_returns(ones, model="garch", cov=cov)
    with pytest.raises(ValueError):
        var_cvar(device(xp, np.zeros(10)), levels=(1.0,))


def test_a_failed_cholesky_that_does_not_raise_is_caught(monkeypatch):
    """CuPy's cholesky returns a partial factor, finite and without an error, where NumPy raises:
    a covariance that is not PSD must still be refused, and a singular one still simulated (here
    on the CPU, through NumPy with CuPy's failure semantics)."""
    monkeypatch.setattr(montecarlo, "namespace", lambda *arrays: cupy_like_numpy())
    cov = np.array([[1.0, 1.0], [1.0, 1.0]]) * 1e-4
    for bad in (-cov, np.array([[1.0, 2.0], [2.0, 1.0]]) * 1e-4):  # first and second pivot negative
        with pytest.raises(ValueError, match="not positive semi-definite"):
            simulate_portfolio_returns(np.ones(2), model="normal", cov=bad, n_paths=100)
    sims = simulate_portfolio_returns(np.array([1.0, -1.0]), model="normal", cov=cov, n_paths=1_000)
    assert np.abs(sims).max() < 1e-12  # the singular covariance's factor is a true one
    spd = np.array([[4.0, 1.2], [1.2, 1.0]]) * 1e-4
    np.testing.assert_allclose(montecarlo._cholesky_factor(spd, xp=cupy_like_numpy()), np.linalg.cholesky(spd),
                               rtol=1e-15)


def test_float32(xp, market):
    mean, cov, _ = market
    w = np.full(20, 1 / 20, dtype=np.float32)
    sims = simulate_portfolio_returns(device(xp, w), model="normal", mean=device(xp, mean.astype(np.float32)),
                                      cov=device(xp, cov.astype(np.float32)), n_paths=100_000, compound=False)
    assert_on_device(xp, sims, np.float32)
    var = host(var_cvar(sims)[0])
    want = normal_var_cvar(w.astype(float), mean=mean, cov=cov)[0]
    se = normal_standard_errors(math.sqrt(w.astype(float) @ cov @ w.astype(float)), 100_000)[0]
    assert np.all(np.abs(var - want) < K * se + 1e-6)
