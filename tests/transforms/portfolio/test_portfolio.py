"""alphapulse.transforms.portfolio (its optimisers and HRP): invariants, infeasible problems, the fallback chain,
ensembles, and property tests of the QP solver against cvxpy (Clarabel) on random problems.

The oracle comparisons on real data (PyPortfolioOpt, skfolio) are in test_portfolio_oracles.py.

Every test of the optimisers takes the ``xp`` fixture: moments and bounds go to the device,
the weights come back with ``host`` and meet the same invariants and oracles (NumPy always; CuPy
where a GPU exists, else skipped). The solvers work in float64 on either backend and polish to an
exact KKT point, so the tolerances are those of float64 rounding on both. HRP is CPU-only
(SciPy's linkage): its tests run on NumPy, and one checks that a device array is refused.
CuPy's linear algebra fails silently where NumPy's raises; the last section checks, on the CPU,
that the CuPy branches still catch those failures.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.risk_testlib import cupy_like_numpy, install_fake_cupy, install_fake_cupyx
from alphapulse.transforms import portfolio as pf
from alphapulse.transforms.portfolio.hrp import correlation_distance, hrp_order, hrp_weights
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.mean_variance import _extreme_return
from alphapulse.transforms.portfolio import black_litterman, mean_variance, qp, risk_budgeting


def random_cov(rng, n, *, n_obs=None, ridge=1e-3, scale=1e-4):
    """A positive definite covariance of daily-return size: a sample covariance plus a ridge."""
    n_obs = n_obs or 3 * n
    vols = rng.uniform(0.5, 3.0, n)
    X = rng.normal(size=(n_obs, n)) @ np.diag(vols) + rng.normal(size=(n_obs, 1)) * rng.uniform(0, 1, n)
    S = X.T @ X / n_obs
    return scale * (S + ridge * np.eye(n) * np.trace(S) / n)


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(7)
    n = 30
    S = random_cov(rng, n) * 252
    mu = rng.normal(0.08, 0.1, n)
    return mu, S


METHODS = {
    "min_variance": lambda mu, S, **b: pf.min_variance_weights(S, **b),
    "max_sharpe": lambda mu, S, **b: pf.max_sharpe_weights(mu, S, risk_free_rate=0.01, **b),
    "efficient_return": lambda mu, S, **b: pf.efficient_return_weights(mu, S, target_return=0.15, **b),
    "efficient_risk": lambda mu, S, **b: pf.efficient_risk_weights(mu, S, target_volatility=0.3, **b),
    "max_utility": lambda mu, S, **b: pf.max_utility_weights(mu, S, risk_aversion=2.0, **b),
}


def bound(xp, value):
    """A weight bound on ``xp``'s device when it is an array (scalars stay Python floats)."""
    return value if np.isscalar(value) else device(xp, value)


def random_feasible(rng, n, lo, hi, k):
    """k random portfolios with sum 1 and lo <= w <= hi (Dirichlet on the room above lo, rejected
    above hi)."""
    out = []
    while len(out) < k:
        w = lo + (1 - lo.sum()) * rng.dirichlet(np.full(n, 0.5), size=4 * k)
        out.extend(w[(w <= hi).all(axis=1)])
    return np.array(out[:k])


# ---------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.01, 0.1), ("array", "array")])
@pytest.mark.parametrize("method", list(METHODS))
def test_weights_sum_to_one_and_respect_bounds(xp, problem, method, bounds):
    mu, S = problem
    n = len(mu)
    if bounds[0] == "array":
        bounds = (np.where(np.arange(n) % 2 == 0, 0.0, 0.005), np.where(np.arange(n) % 3 == 0, 0.05, 0.2))
    w = METHODS[method](device(xp, mu), device(xp, S), min_weights=bound(xp, bounds[0]),
                        max_weights=bound(xp, bounds[1]))
    assert_on_device(xp, w, np.float64)
    w = host(w)
    assert w.shape == (n,) and w.dtype == np.float64
    assert abs(w.sum() - 1) < 1e-10
    lo, hi = np.broadcast_to(bounds[0], (n,)), np.broadcast_to(bounds[1], (n,))
    assert (w >= lo).all() and (w <= hi).all()


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.01, 0.1)])
def test_min_variance_beats_random_feasible_portfolios(xp, problem, bounds):
    mu, S = problem
    n = len(mu)
    rng = np.random.default_rng(1)
    w = host(pf.min_variance_weights(device(xp, S), min_weights=bounds[0], max_weights=bounds[1]))
    others = random_feasible(rng, n, np.full(n, bounds[0]), np.full(n, bounds[1]), 3000)
    assert w @ S @ w <= np.einsum("ki,ij,kj->k", others, S, others).min()
    # and every feasible step away from it (moving weight between two assets) does not lower it
    for i, j in rng.integers(0, n, (200, 2)):
        step = np.zeros(n)
        step[i], step[j] = 1e-4, -1e-4
        v = w + step
        if i != j and (v >= bounds[0]).all() and (v <= bounds[1]).all():
            assert v @ S @ v >= w @ S @ w * (1 - 1e-14)


def test_max_sharpe_beats_random_and_frontier_portfolios(xp, problem):
    mu, S = problem
    n = len(mu)
    rng = np.random.default_rng(2)
    d_mu, d_S = device(xp, (mu, S))
    sharpe = lambda w: (w @ mu - 0.01) / np.sqrt(np.einsum("...i,ij,...j->...", w, S, w))  # noqa: E731
    w = host(pf.max_sharpe_weights(d_mu, d_S, risk_free_rate=0.01))
    others = random_feasible(rng, n, np.zeros(n), np.ones(n), 3000)
    assert sharpe(w) >= sharpe(others).max()
    for target in np.linspace(0.05, 0.2, 7):
        assert sharpe(w) >= sharpe(host(pf.efficient_return_weights(d_mu, d_S, target_return=target))) - 1e-12


def test_frontier_is_consistent(xp, problem):
    """efficient_return and efficient_risk describe the same frontier; max utility lies on it."""
    mu, S = problem
    d_mu, d_S = device(xp, (mu, S))
    w_r = pf.efficient_return_weights(d_mu, d_S, target_return=0.15)
    vol = pf.portfolio_volatility(w_r, d_S)
    assert isinstance(vol, float)
    w_r, w_v = host(w_r), host(pf.efficient_risk_weights(d_mu, d_S, target_volatility=vol))
    assert np.abs(w_r - w_v).max() < 1e-8
    assert w_v @ mu == pytest.approx(0.15, rel=1e-10)
    w_u = host(pf.max_utility_weights(d_mu, d_S, risk_aversion=3.0))
    w_f = host(pf.efficient_return_weights(d_mu, d_S, target_return=float(w_u @ mu)))
    assert np.abs(w_u - w_f).max() < 1e-8
    # a target below the minimum-variance return returns the minimum-variance portfolio
    w_mv = host(pf.min_variance_weights(d_S))
    assert np.array_equal(host(pf.efficient_return_weights(d_mu, d_S, target_return=float(w_mv @ mu) - 1)), w_mv)
    # a volatility above the best-return portfolio's returns the best-return portfolio
    best = np.zeros(len(mu))
    best[np.argmax(mu)] = 1
    assert np.array_equal(host(pf.efficient_risk_weights(d_mu, d_S, target_volatility=10.0)), best)


def test_unbounded_min_variance_is_the_closed_form(xp, problem):
    _, S = problem
    w = host(pf.min_variance_weights(device(xp, S), min_weights=-np.inf, max_weights=np.inf))
    closed = np.linalg.solve(S, np.ones(len(S)))
    np.testing.assert_allclose(w, closed / closed.sum(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("budgets", [None, "custom"])
def test_risk_contributions_equal_budgets(xp, problem, budgets):
    _, S = problem
    n = len(S)
    b = None if budgets is None else np.random.default_rng(3).uniform(0.2, 5, n)
    d_S = device(xp, S)
    w = pf.risk_budget_weights(d_S, risk_budgets=None if b is None else device(xp, b))
    rc = pf.risk_contributions(w, d_S)
    assert_on_device(xp, (w, rc), np.float64)
    w, rc = host(w), host(rc)
    target = np.full(n, 1 / n) if b is None else b / b.sum()
    assert abs(w.sum() - 1) < 1e-12 and (w > 0).all()
    assert np.abs(rc - target).max() < 1e-10


def test_hrp_invariants(problem):
    _, S = problem
    for linkage in ("single", "ward", "complete", "average"):
        w = hrp_weights(S, linkage_method=linkage)
        assert abs(w.sum() - 1) < 1e-12 and (w > 0).all()
        # scale-free: the split factors are ratios of variances
        np.testing.assert_allclose(hrp_weights(S * 1e-4, linkage_method=linkage), w, rtol=1e-12)
    order = hrp_order(S / np.sqrt(np.outer(np.diag(S), np.diag(S))))
    assert sorted(order) == list(range(len(S)))
    d = correlation_distance(np.array([[1.0, -1.0], [-1.0, 1.0]]))
    np.testing.assert_array_equal(d, [[0.0, 1.0], [1.0, 0.0]])


def test_hrp_two_uncorrelated_assets_is_inverse_variance():
    S = np.diag([0.04, 0.01])
    np.testing.assert_allclose(hrp_weights(S), [0.2, 0.8], rtol=1e-15)


def test_hrp_takes_host_arrays_only(xp, problem):
    """HRP is CPU-only (SciPy's linkage): a device array is refused with a TypeError that says so,
    never copied to the host unasked (the fallback chain makes that copy itself, tested below)."""
    _, S = problem
    if xp is np:
        assert abs(hrp_weights(device(xp, S)).sum() - 1) < 1e-12
    else:
        with pytest.raises(TypeError, match="CPU"):
            hrp_weights(device(xp, S))


def test_black_litterman_certain_absolute_view_is_met(xp):
    rng = np.random.default_rng(4)
    n = 6
    S = random_cov(rng, n) * 252
    d_S = device(xp, S)
    pi = pf.market_implied_prior_returns(device(xp, np.ones(n)), d_S, risk_aversion=2.5)  # equal-weight market
    np.testing.assert_allclose(host(pi), 2.5 * S.mean(axis=1), rtol=1e-14)
    P = device(xp, pf.absolute_views_picking([2], n_assets=n))
    omega = pf.idzorek_omega(device(xp, np.array([1.0])), d_S, P, tau=0.05)
    assert host(omega)[0, 0] == 0
    post, post_cov = pf.black_litterman_posterior(pi, d_S, picking=P, views=device(xp, np.array([0.3])), omega=omega,
                                                  tau=0.05)
    assert_on_device(xp, (post, post_cov), np.float64)
    post, post_cov = host((post, post_cov))
    assert post[2] == pytest.approx(0.3, rel=1e-12)
    np.testing.assert_allclose(post_cov, post_cov.T, atol=1e-18)
    assert np.linalg.eigvalsh(post_cov).min() > 0
    # no confidence leaves the prior (to 1e-6: omega = 1e6)
    weak = pf.black_litterman_posterior(pi, d_S, picking=P, views=device(xp, np.array([0.3])),
                                        omega=pf.idzorek_omega(device(xp, np.array([0.0])), d_S, P, tau=0.05))
    np.testing.assert_allclose(host(weak[0]), host(pi), atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Failures are explicit
# ---------------------------------------------------------------------------------------------

def test_infeasible_problems_raise_with_a_reason(xp, problem):
    mu, S = device(xp, problem)
    n = len(mu)
    cases = [
        (lambda: pf.efficient_return_weights(mu, S, target_return=mu.max() + 0.01), "efficient_return",
         "above the largest return"),
        (lambda: pf.efficient_return_weights(mu, S, target_return=0.2, max_weights=0.05), "efficient_return",
         "above the largest return"),
        (lambda: pf.min_variance_weights(S, max_weights=0.5 / n), "min_variance", "exclude full investment"),
        (lambda: pf.min_variance_weights(S, min_weights=2.0 / n), "min_variance", "exclude full investment"),
        (lambda: pf.max_sharpe_weights(mu, S, min_weights=0.2, max_weights=0.1), "max_sharpe", "exceed max_weights"),
        (lambda: pf.max_sharpe_weights(mu, S, risk_free_rate=mu.max() + 0.01), "max_sharpe",
         "above the risk-free rate"),
        (lambda: pf.efficient_risk_weights(mu, S, target_volatility=0.01), "efficient_risk",
         "below the minimum-variance"),
        (lambda: pf.min_variance_weights(S, max_iterations=2), "min_variance", "did not converge"),
        (lambda: pf.risk_budget_weights(S, max_iterations=1), "risk_parity", "did not converge"),
    ]
    for call, method, words in cases:
        with pytest.raises(OptimisationError, match=words) as info:
            call()
        assert info.value.method == method and words in info.value.reason


def bad_covariances(S):
    """(covariance, the words its OptimisationError names) for five kinds of bad covariance."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(10, len(S)))
    singular = X.T @ X / 10  # rank 10 of 30
    not_psd = S.copy()
    not_psd[0, 1] = not_psd[1, 0] = 2 * np.sqrt(S[0, 0] * S[1, 1])
    with_nan = S.copy()
    with_nan[3, 3] = np.nan
    asym = S.copy()
    asym[0, 1] *= 1.01
    # positive definite to Cholesky (a diagonal matrix always factors) but with a condition
    # number of 1e17: numerically singular, which only a condition estimate sees
    ill = np.diag(np.diag(S) * np.where(np.arange(len(S)) == 0, 1e-17, 1.0))
    return [(singular, r"singular \(numerical rank 10 of 30"), (not_psd, "not positive semidefinite"),
            (with_nan, "NaN"), (asym, "not symmetric"), (ill, r"singular \(numerical rank 29 of 30")]


def test_bad_covariances_raise(xp, problem):
    mu, S = problem
    d_mu = device(xp, mu)
    for cov, words in bad_covariances(S):
        for fn in (lambda c: pf.min_variance_weights(c), lambda c: pf.max_sharpe_weights(d_mu, c),
                   lambda c: pf.risk_budget_weights(c)):
            with pytest.raises(OptimisationError, match=words):
                fn(device(xp, cov))
    if xp is np:  # HRP runs on the host only
        with_nan = bad_covariances(S)[2][0]
        with pytest.raises(OptimisationError, match="NaN"):
            hrp_weights(with_nan)
        with pytest.raises(OptimisationError, match="not positive"):
            hrp_weights(np.diag([1.0, 0.0, 1.0]))
        with pytest.raises(OptimisationError, match="exclude full investment"):
            hrp_weights(S, max_weights=0.01)
    with pytest.raises(ValueError, match="shape"):
        pf.min_variance_weights(device(xp, S), max_weights=device(xp, np.ones(3)))


# ---------------------------------------------------------------------------------------------
# Fallback chain
# ---------------------------------------------------------------------------------------------

def test_fallback_not_needed(xp, problem):
    mu, S = device(xp, problem)
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, risk_free_rate=0.01)
    assert res.method == "max_sharpe" and not res.fell_back
    assert_on_device(xp, res.weights, np.float64)
    np.testing.assert_array_equal(host(res.weights), host(pf.max_sharpe_weights(mu, S, risk_free_rate=0.01)))
    assert res.records() == [{"step": 0, "method": "max_sharpe", "status": "ok", "reason": ""}]


def test_fallback_chain_is_followed_and_recorded(xp, problem):
    """Every step of the chain, HRP (CPU-only) included, returns weights on the input's device."""
    mu, S = device(xp, problem)
    rng = np.random.default_rng(6)
    X = rng.normal(size=(10, len(mu)))
    singular = X.T @ X / 10
    # returns all below the risk-free rate: max-Sharpe fails, min-variance takes over
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, risk_free_rate=1.0)
    assert res.method == "min_variance" and res.fell_back
    assert [a.method for a in res.attempts] == ["max_sharpe", "min_variance"]
    assert "risk-free rate" in res.attempts[0].error and res.attempts[1].error is None
    np.testing.assert_array_equal(host(res.weights), host(pf.min_variance_weights(S)))
    # a singular covariance: both QPs fail, HRP (which needs no inverse) succeeds
    res = pf.optimise_with_fallback("max_sharpe", covariance=device(xp, singular), expected_returns=mu)
    assert [a.method for a in res.attempts] == ["max_sharpe", "min_variance", "hrp"]
    assert all("singular" in a.error for a in res.attempts[:2])
    assert_on_device(xp, res.weights, np.float64)
    np.testing.assert_array_equal(host(res.weights), hrp_weights(singular))
    # solver non-convergence
    res = pf.optimise_with_fallback("min_variance", covariance=S, max_iterations=2)
    assert res.method == "hrp" and "did not converge" in res.attempts[0].error
    # bounds that exclude full investment: every optimiser fails, equal weight ends the chain
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, max_weights=0.01)
    assert [a.method for a in res.attempts] == list(pf.DEFAULT_FALLBACK_CHAIN)
    assert res.method == "equal_weight"
    assert_on_device(xp, res.weights, np.float64)
    np.testing.assert_array_equal(host(res.weights), np.full(len(mu), 1 / len(mu)))
    rows = res.records()
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "ok"]
    assert all("exclude full investment" in r["reason"] for r in rows[:3])
    # a method outside the chain falls back to min-variance first; missing inputs are failures
    res = pf.optimise_with_fallback("efficient_return", covariance=S, expected_returns=mu, target_return=5.0)
    assert [a.method for a in res.attempts] == ["efficient_return", "min_variance"]
    res = pf.optimise_with_fallback("max_sharpe", covariance=S)
    assert res.attempts[0].error == "no expected returns were given" and res.method == "min_variance"


def test_fallback_custom_chain_and_exhaustion(xp, problem):
    mu, S = device(xp, problem)
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, risk_free_rate=1.0,
                                    fallbacks=("risk_parity",))
    assert res.method == "risk_parity"
    with pytest.raises(OptimisationError, match="every method failed: max_sharpe: .*; hrp: "):
        pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, max_weights=0.01,
                                  fallbacks=("hrp",))
    with pytest.raises(ValueError, match="method must be one of"):
        pf.optimise_with_fallback("magic", covariance=S)


# ---------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------

def test_ensembles(xp, problem):
    mu, S = problem
    n = len(mu)
    rng = np.random.default_rng(8)
    d_mu, d_S = device(xp, (mu, S))
    W = np.stack([host(pf.min_variance_weights(d_S)), hrp_weights(S), host(pf.risk_budget_weights(d_S)),
                  host(pf.max_sharpe_weights(d_mu, d_S))])
    returns = rng.multivariate_normal(mu / 252, S / 252, size=500)
    d_W, d_returns = device(xp, (W, returns))

    def mixing(**kw):
        return host(pf.ensemble_mixing_weights(d_W, **kw))

    for method, kw in [("equal", {}), ("inverse_volatility", {"covariance": d_S}),
                       ("inverse_volatility", {"returns": d_returns}), ("adaptive", {"returns": d_returns})]:
        mix = pf.ensemble_mixing_weights(d_W, method=method, **kw)
        w = pf.ensemble_portfolio_weights(d_W, method=method, **kw)
        assert_on_device(xp, (mix, w), np.float64)
        mix, w = host((mix, w))
        assert mix.shape == (4,) and (mix >= 0).all() and abs(mix.sum() - 1) < 1e-12
        assert abs(w.sum() - 1) < 1e-12 and (w >= 0).all() and w.shape == (n,)
        np.testing.assert_allclose(w, mix @ W, rtol=1e-15)
    inv = 1 / np.sqrt(np.einsum("ki,ij,kj->k", W, S, W))
    np.testing.assert_allclose(mixing(method="inverse_volatility", covariance=d_S), inv / inv.sum(), rtol=1e-13)
    pr = returns @ W.T
    sharpe = pr.mean(0) / pr.std(0, ddof=1)
    expected = np.maximum(sharpe, 0) / np.maximum(sharpe, 0).sum()
    np.testing.assert_allclose(mixing(method="adaptive", returns=d_returns), expected, rtol=1e-12)
    # all trailing Sharpe ratios non-positive: equal mixing
    np.testing.assert_array_equal(mixing(method="adaptive", returns=-abs(d_returns)), np.full(4, 0.25))
    with pytest.raises(ValueError, match="exactly one"):
        pf.ensemble_mixing_weights(d_W, method="inverse_volatility")
    with pytest.raises(ValueError, match="sum to 1"):
        pf.ensemble_portfolio_weights(d_W * 2)


# ---------------------------------------------------------------------------------------------
# Property tests: the QP solver against cvxpy
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cp():
    """cvxpy, or skip: only the property tests need it (the tests above run without it)."""
    return pytest.importorskip("cvxpy")


# The xp fixture is set up once per backend, not per example: sharing it across examples is safe.
SHARED_XP = [HealthCheck.function_scoped_fixture]
TIGHT = {"solver": "CLARABEL", "tol_gap_abs": 1e-11, "tol_gap_rel": 1e-11, "tol_feas": 1e-11}


def _cvx(problem):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problem.solve(**TIGHT)
    return problem


@st.composite
def portfolio_problems(draw):
    seed = draw(st.integers(0, 2**32 - 1))
    n = draw(st.integers(2, 8))
    rng = np.random.default_rng(seed)
    S = random_cov(rng, n, n_obs=draw(st.integers(1, 3 * n)), ridge=draw(st.sampled_from([1e-2, 1e-4])),
                   scale=10.0 ** draw(st.integers(-5, 0)))
    mu = rng.normal(0.05, 0.1, n) * 10.0 ** draw(st.integers(-3, 0))
    kind = draw(st.sampled_from(["long_only", "capped", "shorts", "per_asset"]))
    if kind == "long_only":
        lo, hi = np.zeros(n), np.ones(n)
    elif kind == "capped":
        lo, hi = np.zeros(n), np.full(n, max(1.5 / n, 0.3))
    elif kind == "shorts":
        lo, hi = np.full(n, -0.3), np.full(n, 1.0)
    else:
        lo = rng.uniform(0, 0.8 / n, n)
        hi = rng.uniform(1.2 / n, 1.0, n)
    return mu, S, lo, hi


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, *SHARED_XP])
@given(portfolio_problems())
def test_min_variance_and_efficient_return_match_cvxpy(xp, cp, prob):
    mu, S, lo, hi = prob
    n = len(mu)
    d_mu, d_S, d_lo, d_hi = device(xp, prob)
    w = host(pf.min_variance_weights(d_S, min_weights=d_lo, max_weights=d_hi))
    x = cp.Variable(n)
    ref = _cvx(cp.Problem(cp.Minimize(cp.quad_form(x, S)), [cp.sum(x) == 1, x >= lo, x <= hi]))
    assert abs(w.sum() - 1) < 1e-12 and (w >= lo).all() and (w <= hi).all()
    assert w @ S @ w <= ref.value * (1 + 1e-8) + 1e-15
    target = float(w @ mu + 0.5 * (_extreme_return(mu, lo, hi, np)[0] - w @ mu))
    we = host(pf.efficient_return_weights(d_mu, d_S, target_return=target, min_weights=d_lo, max_weights=d_hi))
    ref = _cvx(cp.Problem(cp.Minimize(cp.quad_form(x, S)), [mu @ x >= target, cp.sum(x) == 1, x >= lo, x <= hi]))
    assert we @ mu >= target - 1e-12 * max(1, abs(target))
    assert we @ S @ we <= ref.value * (1 + 1e-8) + 1e-15


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, *SHARED_XP])
@given(portfolio_problems())
def test_max_sharpe_matches_cvxpy(xp, cp, prob):
    mu, S, lo, hi = prob
    n = len(mu)
    rf = float(np.median(mu))
    d_mu, d_S, d_lo, d_hi = device(xp, prob)
    try:
        w = host(pf.max_sharpe_weights(d_mu, d_S, risk_free_rate=rf, min_weights=d_lo, max_weights=d_hi))
    except OptimisationError as e:
        assert "above the risk-free rate" in e.reason
        assert _extreme_return(mu - rf, lo, hi, np)[0] <= 0
        return
    y, kappa = cp.Variable(n), cp.Variable()
    a = (mu - rf) / np.abs(mu - rf).max()  # scaled so that y is of order one (Sharpe is scale-free)
    _cvx(cp.Problem(cp.Minimize(cp.quad_form(y, S / np.abs(S).max())),
                    [a @ y == 1, cp.sum(y) == kappa, kappa >= 0, y >= lo * kappa, y <= hi * kappa]))
    assert y.value is not None, "the cvxpy reference failed"
    ref = y.value / kappa.value
    sharpe = lambda v: (v @ mu - rf) / np.sqrt(v @ S @ v)  # noqa: E731
    assert abs(w.sum() - 1) < 1e-12 and (w >= lo).all() and (w <= hi).all()
    assert sharpe(w) >= sharpe(ref) - 1e-8 * abs(sharpe(ref))


def test_max_sharpe_converges_where_mehrotra_cycled(xp):
    """A problem of ``portfolio_problems`` (seed 66549: 7 assets, 5 observations, shorts to -0.3)
    on which the interior point cycled, feasible with its complementarity bouncing between 1e-4
    and 3e-4, until the iteration limit: "did not converge" on both backends for a well-posed
    problem (found by the CuPy case of the property test above, on the CuPy stand-in). The answer
    is CVXPY's (Clarabel), polished here to its active set."""
    rng = np.random.default_rng(66549)
    S = random_cov(rng, 7, n_obs=5, ridge=1e-2, scale=1.0)
    mu = rng.normal(0.05, 0.1, 7)
    d_mu, d_S, d_lo, d_hi = device(xp, (mu, S, np.full(7, -0.3), np.ones(7)))
    w = pf.max_sharpe_weights(d_mu, d_S, risk_free_rate=float(np.median(mu)), min_weights=d_lo, max_weights=d_hi)
    np.testing.assert_allclose(host(w), [-0.3, -0.221424322, 0.703321175, -0.3, 0.418103143, 1.0, -0.3], atol=1e-7)


@settings(max_examples=60, deadline=None, suppress_health_check=SHARED_XP)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 3))
def test_solve_qp_matches_cvxpy_on_general_qps(xp, cp, seed, n, m):
    """A PSD (possibly singular) Q with a linear term, m equality rows, mixed finite/infinite bounds."""
    rng = np.random.default_rng(seed)
    m = min(m, n)
    B = rng.normal(size=(n, max(1, n - 1)))
    Q = B @ B.T + 1e-3 * np.eye(n)
    c = rng.normal(size=n)
    A = rng.normal(size=(m, n))
    x0 = rng.uniform(-1, 1, n)  # a feasible point
    b = A @ x0
    lower = np.where(rng.random(n) < 0.7, x0 - rng.uniform(0, 1, n), -np.inf)
    upper = np.where(rng.random(n) < 0.7, x0 + rng.uniform(0, 1, n), np.inf)
    sol = pf.solve_qp(*device(xp, (Q, c, A, b)), lower=device(xp, lower), upper=device(xp, upper))
    assert_on_device(xp, (sol.x, sol.equality_multipliers), np.float64)
    sol = pf.QPSolution(host(sol.x), host(sol.equality_multipliers), sol.iterations, sol.polished)
    x = cp.Variable(n)
    cons = [A @ x == b]
    fin_lo, fin_hi = np.isfinite(lower), np.isfinite(upper)
    if fin_lo.any():
        cons.append(x[fin_lo] >= lower[fin_lo])
    if fin_hi.any():
        cons.append(x[fin_hi] <= upper[fin_hi])
    ref = _cvx(cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, Q) + c @ x), cons))
    f = 0.5 * sol.x @ Q @ sol.x + c @ sol.x
    assert np.abs(A @ sol.x - b).max() < 1e-9 * (1 + np.abs(b).max())
    assert (sol.x >= lower - 1e-12).all() and (sol.x <= upper + 1e-12).all()
    assert f <= ref.value + 1e-8 * (1 + abs(ref.value))
    np.testing.assert_allclose(sol.x, x.value, atol=1e-5 * (1 + np.abs(x.value).max()))


@settings(max_examples=40, deadline=None, suppress_health_check=SHARED_XP)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12))
def test_risk_budgeting_property(xp, seed, n):
    rng = np.random.default_rng(seed)
    S = random_cov(rng, n, ridge=1e-2, scale=10.0 ** rng.integers(-5, 1))
    b = rng.uniform(0.05, 1.0, n)
    d_S = device(xp, S)
    w = pf.risk_budget_weights(d_S, risk_budgets=device(xp, b))
    rc = host(pf.risk_contributions(w, d_S))
    w = host(w)
    assert abs(w.sum() - 1) < 1e-12 and (w > 0).all()
    np.testing.assert_allclose(rc, b / b.sum(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# CuPy's silent linear-algebra failures, on the CPU
# ---------------------------------------------------------------------------------------------

def test_cupy_branches_catch_silent_linalg_failures(monkeypatch, problem):
    """CuPy's cholesky returns a partial factor and its solve inf/NaN where NumPy raises. Run
    through NumPy with those semantics (and SciPy standing in for cupyx), the CuPy branches must
    refuse the covariances NumPy refuses, take the least-squares fallbacks NumPy takes, and
    otherwise give NumPy's weights."""
    mu, S = problem
    n = len(mu)
    A, b = np.ones((2, n)), np.ones(2)  # a repeated budget row: the Schur complement is singular
    P = np.zeros((2, n))
    P[:, 0] = 1.0  # two certain views on one asset: P tau S P' + omega is singular
    want = {"min_variance": pf.min_variance_weights(S), "max_sharpe": pf.max_sharpe_weights(mu, S),
            "risk_parity": pf.risk_budget_weights(S),
            "qp": pf.solve_qp(S, np.zeros(n), A, b, lower=np.zeros(n), upper=np.ones(n)).x,
            "bl": pf.black_litterman_posterior(mu, S, picking=P, views=[0.1, 0.1], omega=np.zeros((2, 2)))}
    install_fake_cupyx(monkeypatch)
    for module in (qp, mean_variance, risk_budgeting, black_litterman):  # each picks its own xp
        monkeypatch.setattr(module, "namespace", lambda *arrays: cupy_like_numpy())
    for cov, words in bad_covariances(S):
        for fn in (lambda c: pf.min_variance_weights(c), lambda c: pf.max_sharpe_weights(mu, c),
                   lambda c: pf.risk_budget_weights(c)):
            with pytest.raises(OptimisationError, match=words):
                fn(cov)
    got = {"min_variance": pf.min_variance_weights(S), "max_sharpe": pf.max_sharpe_weights(mu, S),
           "risk_parity": pf.risk_budget_weights(S),
           "qp": pf.solve_qp(S, np.zeros(n), A, b, lower=np.zeros(n), upper=np.ones(n)).x}
    for name, w in got.items():  # triangular solves instead of LAPACK's potrs: rounding apart
        np.testing.assert_allclose(w, want[name], rtol=0, atol=1e-10, err_msg=name)
    post, post_cov = pf.black_litterman_posterior(mu, S, picking=P, views=[0.1, 0.1], omega=np.zeros((2, 2)))
    np.testing.assert_allclose(post, want["bl"][0], rtol=1e-12)
    np.testing.assert_allclose(post_cov, want["bl"][1], rtol=1e-12)
    with pytest.raises(OptimisationError, match="singular"):
        pf.black_litterman_weights(mu[:3], np.ones((3, 3)))


def test_fallback_chain_reaches_cpu_only_hrp_from_device_arrays(monkeypatch, problem):
    """HRP refuses device arrays; the chain must still fall back to it (on a host copy), not end
    with a TypeError when both QPs fail (here with arrays the transforms take for CuPy's)."""
    mu, S = problem
    singular = np.random.default_rng(6).normal(size=(10, len(mu)))
    singular = singular.T @ singular / 10
    on_device = install_fake_cupy(monkeypatch)
    with pytest.raises(TypeError, match="CPU"):
        hrp_weights(on_device(singular))
    res = pf.optimise_with_fallback("max_sharpe", covariance=on_device(singular), expected_returns=on_device(mu),
                                    max_weights=on_device(np.full(len(mu), 0.5)))
    assert [a.method for a in res.attempts] == ["max_sharpe", "min_variance", "hrp"]
    np.testing.assert_array_equal(host(res.weights), hrp_weights(singular, max_weights=np.full(len(mu), 0.5)))
