"""transforms.portfolio and transforms.hrp: invariants, infeasible problems, the fallback chain,
ensembles, and property tests of the QP solver against cvxpy (Clarabel) on random problems.

The oracle comparisons on real data (PyPortfolioOpt, skfolio) are in test_portfolio_oracles.py.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from tests.transforms.gpu_testlib import cupy_or_skip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms import portfolio as pf
from transforms.hrp import correlation_distance, hrp_order, hrp_weights
from transforms.portfolio import OptimisationError


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
def test_weights_sum_to_one_and_respect_bounds(problem, method, bounds):
    mu, S = problem
    n = len(mu)
    if bounds[0] == "array":
        bounds = (np.where(np.arange(n) % 2 == 0, 0.0, 0.005), np.where(np.arange(n) % 3 == 0, 0.05, 0.2))
    w = METHODS[method](mu, S, min_weights=bounds[0], max_weights=bounds[1])
    assert w.shape == (n,) and w.dtype == np.float64
    assert abs(w.sum() - 1) < 1e-10
    lo, hi = np.broadcast_to(bounds[0], (n,)), np.broadcast_to(bounds[1], (n,))
    assert (w >= lo).all() and (w <= hi).all()


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.01, 0.1)])
def test_min_variance_beats_random_feasible_portfolios(problem, bounds):
    mu, S = problem
    n = len(mu)
    rng = np.random.default_rng(1)
    w = pf.min_variance_weights(S, min_weights=bounds[0], max_weights=bounds[1])
    others = random_feasible(rng, n, np.full(n, bounds[0]), np.full(n, bounds[1]), 3000)
    assert w @ S @ w <= np.einsum("ki,ij,kj->k", others, S, others).min()
    # and every feasible step away from it (moving weight between two assets) does not lower it
    for i, j in rng.integers(0, n, (200, 2)):
        step = np.zeros(n)
        step[i], step[j] = 1e-4, -1e-4
        v = w + step
        if i != j and (v >= bounds[0]).all() and (v <= bounds[1]).all():
            assert v @ S @ v >= w @ S @ w * (1 - 1e-14)


def test_max_sharpe_beats_random_and_frontier_portfolios(problem):
    mu, S = problem
    n = len(mu)
    rng = np.random.default_rng(2)
    sharpe = lambda w: (w @ mu - 0.01) / np.sqrt(np.einsum("...i,ij,...j->...", w, S, w))  # noqa: E731
    w = pf.max_sharpe_weights(mu, S, risk_free_rate=0.01)
    others = random_feasible(rng, n, np.zeros(n), np.ones(n), 3000)
    assert sharpe(w) >= sharpe(others).max()
    for target in np.linspace(0.05, 0.2, 7):
        assert sharpe(w) >= sharpe(pf.efficient_return_weights(mu, S, target_return=target)) - 1e-12


def test_frontier_is_consistent(problem):
    """efficient_return and efficient_risk describe the same frontier; max utility lies on it."""
    mu, S = problem
    w_r = pf.efficient_return_weights(mu, S, target_return=0.15)
    vol = pf.portfolio_volatility(w_r, S)
    w_v = pf.efficient_risk_weights(mu, S, target_volatility=vol)
    assert np.abs(w_r - w_v).max() < 1e-8
    assert w_v @ mu == pytest.approx(0.15, rel=1e-10)
    w_u = pf.max_utility_weights(mu, S, risk_aversion=3.0)
    w_f = pf.efficient_return_weights(mu, S, target_return=float(w_u @ mu))
    assert np.abs(w_u - w_f).max() < 1e-8
    # a target below the minimum-variance return returns the minimum-variance portfolio
    w_mv = pf.min_variance_weights(S)
    assert np.array_equal(pf.efficient_return_weights(mu, S, target_return=float(w_mv @ mu) - 1), w_mv)
    # a volatility above the best-return portfolio's returns the best-return portfolio
    best = np.zeros(len(mu))
    best[np.argmax(mu)] = 1
    assert np.array_equal(pf.efficient_risk_weights(mu, S, target_volatility=10.0), best)


def test_unbounded_min_variance_is_the_closed_form(problem):
    _, S = problem
    w = pf.min_variance_weights(S, min_weights=-np.inf, max_weights=np.inf)
    closed = np.linalg.solve(S, np.ones(len(S)))
    np.testing.assert_allclose(w, closed / closed.sum(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("budgets", [None, "custom"])
def test_risk_contributions_equal_budgets(problem, budgets):
    _, S = problem
    n = len(S)
    b = None if budgets is None else np.random.default_rng(3).uniform(0.2, 5, n)
    w = pf.risk_budget_weights(S, risk_budgets=b)
    target = np.full(n, 1 / n) if b is None else b / b.sum()
    assert abs(w.sum() - 1) < 1e-12 and (w > 0).all()
    assert np.abs(pf.risk_contributions(w, S) - target).max() < 1e-10


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


def test_black_litterman_certain_absolute_view_is_met():
    rng = np.random.default_rng(4)
    n = 6
    S = random_cov(rng, n) * 252
    pi = pf.market_implied_prior_returns(np.ones(n), S, risk_aversion=2.5)  # equal-weight market prior
    np.testing.assert_allclose(pi, 2.5 * S.mean(axis=1), rtol=1e-14)
    P = pf.absolute_views_picking([2], n_assets=n)
    omega = pf.idzorek_omega([1.0], S, P, tau=0.05)
    assert omega[0, 0] == 0
    post, post_cov = pf.black_litterman_posterior(pi, S, picking=P, views=[0.3], omega=omega, tau=0.05)
    assert post[2] == pytest.approx(0.3, rel=1e-12)
    np.testing.assert_allclose(post_cov, post_cov.T, atol=1e-18)
    assert np.linalg.eigvalsh(post_cov).min() > 0
    # no confidence leaves the prior (to 1e-6: omega = 1e6)
    weak = pf.black_litterman_posterior(pi, S, picking=P, views=[0.3], omega=pf.idzorek_omega([0.0], S, P, tau=0.05))
    np.testing.assert_allclose(weak[0], pi, atol=1e-7)


# ---------------------------------------------------------------------------------------------
# Failures are explicit
# ---------------------------------------------------------------------------------------------

def test_infeasible_problems_raise_with_a_reason(problem):
    mu, S = problem
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


def test_bad_covariances_raise(problem):
    mu, S = problem
    rng = np.random.default_rng(5)
    X = rng.normal(size=(10, len(mu)))
    singular = X.T @ X / 10  # rank 10 of 30
    not_psd = S.copy()
    not_psd[0, 1] = not_psd[1, 0] = 2 * np.sqrt(S[0, 0] * S[1, 1])
    with_nan = S.copy()
    with_nan[3, 3] = np.nan
    asym = S.copy()
    asym[0, 1] *= 1.01
    for cov, words in [(singular, r"singular \(numerical rank 10 of 30"), (not_psd, "not positive semidefinite"),
                       (with_nan, "NaN"), (asym, "not symmetric")]:
        for fn in (lambda c: pf.min_variance_weights(c), lambda c: pf.max_sharpe_weights(mu, c),
                   lambda c: pf.risk_budget_weights(c)):
            with pytest.raises(OptimisationError, match=words):
                fn(cov)
    with pytest.raises(OptimisationError, match="NaN"):
        hrp_weights(with_nan)
    with pytest.raises(OptimisationError, match="not positive"):
        hrp_weights(np.diag([1.0, 0.0, 1.0]))
    with pytest.raises(OptimisationError, match="exclude full investment"):
        hrp_weights(S, max_weights=0.01)
    with pytest.raises(ValueError, match="shape"):
        pf.min_variance_weights(S, max_weights=np.ones(3))


# ---------------------------------------------------------------------------------------------
# Fallback chain
# ---------------------------------------------------------------------------------------------

def test_fallback_not_needed(problem):
    mu, S = problem
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, risk_free_rate=0.01)
    assert res.method == "max_sharpe" and not res.fell_back
    np.testing.assert_array_equal(res.weights, pf.max_sharpe_weights(mu, S, risk_free_rate=0.01))
    assert res.records() == [{"step": 0, "method": "max_sharpe", "status": "ok", "reason": ""}]


def test_fallback_chain_is_followed_and_recorded(problem):
    mu, S = problem
    rng = np.random.default_rng(6)
    X = rng.normal(size=(10, len(mu)))
    singular = X.T @ X / 10
    # returns all below the risk-free rate: max-Sharpe fails, min-variance takes over
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, risk_free_rate=1.0)
    assert res.method == "min_variance" and res.fell_back
    assert [a.method for a in res.attempts] == ["max_sharpe", "min_variance"]
    assert "risk-free rate" in res.attempts[0].error and res.attempts[1].error is None
    np.testing.assert_array_equal(res.weights, pf.min_variance_weights(S))
    # a singular covariance: both QPs fail, HRP (which needs no inverse) succeeds
    res = pf.optimise_with_fallback("max_sharpe", covariance=singular, expected_returns=mu)
    assert [a.method for a in res.attempts] == ["max_sharpe", "min_variance", "hrp"]
    assert all("singular" in a.error for a in res.attempts[:2])
    np.testing.assert_array_equal(res.weights, hrp_weights(singular))
    # solver non-convergence
    res = pf.optimise_with_fallback("min_variance", covariance=S, max_iterations=2)
    assert res.method == "hrp" and "did not converge" in res.attempts[0].error
    # bounds that exclude full investment: every optimiser fails, equal weight ends the chain
    res = pf.optimise_with_fallback("max_sharpe", covariance=S, expected_returns=mu, max_weights=0.01)
    assert [a.method for a in res.attempts] == list(pf.DEFAULT_FALLBACK_CHAIN)
    assert res.method == "equal_weight"
    np.testing.assert_array_equal(res.weights, np.full(len(mu), 1 / len(mu)))
    rows = res.records()
    assert [r["status"] for r in rows] == ["failed", "failed", "failed", "ok"]
    assert all("exclude full investment" in r["reason"] for r in rows[:3])
    # a method outside the chain falls back to min-variance first; missing inputs are failures
    res = pf.optimise_with_fallback("efficient_return", covariance=S, expected_returns=mu, target_return=5.0)
    assert [a.method for a in res.attempts] == ["efficient_return", "min_variance"]
    res = pf.optimise_with_fallback("max_sharpe", covariance=S)
    assert res.attempts[0].error == "no expected returns were given" and res.method == "min_variance"


def test_fallback_custom_chain_and_exhaustion(problem):
    mu, S = problem
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

def test_ensembles(problem):
    mu, S = problem
    n = len(mu)
    rng = np.random.default_rng(8)
    W = np.stack([pf.min_variance_weights(S), hrp_weights(S), pf.risk_budget_weights(S),
                  pf.max_sharpe_weights(mu, S)])
    returns = rng.multivariate_normal(mu / 252, S / 252, size=500)
    for method, kw in [("equal", {}), ("inverse_volatility", {"covariance": S}),
                       ("inverse_volatility", {"returns": returns}), ("adaptive", {"returns": returns})]:
        mix = pf.ensemble_mixing_weights(W, method=method, **kw)
        w = pf.ensemble_weights(W, method=method, **kw)
        assert mix.shape == (4,) and (mix >= 0).all() and abs(mix.sum() - 1) < 1e-12
        assert abs(w.sum() - 1) < 1e-12 and (w >= 0).all() and w.shape == (n,)
        np.testing.assert_allclose(w, mix @ W, rtol=1e-15)
    inv = 1 / np.sqrt(np.einsum("ki,ij,kj->k", W, S, W))
    np.testing.assert_allclose(pf.ensemble_mixing_weights(W, method="inverse_volatility", covariance=S),
                               inv / inv.sum(), rtol=1e-13)
    pr = returns @ W.T
    sharpe = pr.mean(0) / pr.std(0, ddof=1)
    expected = np.maximum(sharpe, 0) / np.maximum(sharpe, 0).sum()
    np.testing.assert_allclose(pf.ensemble_mixing_weights(W, method="adaptive", returns=returns), expected,
                               rtol=1e-12)
    # all trailing Sharpe ratios non-positive: equal mixing
    np.testing.assert_array_equal(pf.ensemble_mixing_weights(W, method="adaptive", returns=-np.abs(returns)),
                                  np.full(4, 0.25))
    with pytest.raises(ValueError, match="exactly one"):
        pf.ensemble_mixing_weights(W, method="inverse_volatility")
    with pytest.raises(ValueError, match="sum to 1"):
        pf.ensemble_weights(W * 2)


# ---------------------------------------------------------------------------------------------
# Property tests: the QP solver against cvxpy
# ---------------------------------------------------------------------------------------------

cp = pytest.importorskip("cvxpy")
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


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portfolio_problems())
def test_min_variance_and_efficient_return_match_cvxpy(prob):
    mu, S, lo, hi = prob
    n = len(mu)
    w = pf.min_variance_weights(S, min_weights=lo, max_weights=hi)
    x = cp.Variable(n)
    ref = _cvx(cp.Problem(cp.Minimize(cp.quad_form(x, S)), [cp.sum(x) == 1, x >= lo, x <= hi]))
    assert abs(w.sum() - 1) < 1e-12 and (w >= lo).all() and (w <= hi).all()
    assert w @ S @ w <= ref.value * (1 + 1e-8) + 1e-15
    target = float(w @ mu + 0.5 * (pf._extreme_return(mu, lo, hi, np)[0] - w @ mu))
    we = pf.efficient_return_weights(mu, S, target_return=target, min_weights=lo, max_weights=hi)
    ref = _cvx(cp.Problem(cp.Minimize(cp.quad_form(x, S)), [mu @ x >= target, cp.sum(x) == 1, x >= lo, x <= hi]))
    assert we @ mu >= target - 1e-12 * max(1, abs(target))
    assert we @ S @ we <= ref.value * (1 + 1e-8) + 1e-15


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(portfolio_problems())
def test_max_sharpe_matches_cvxpy(prob):
    mu, S, lo, hi = prob
    n = len(mu)
    rf = float(np.median(mu))
    try:
        w = pf.max_sharpe_weights(mu, S, risk_free_rate=rf, min_weights=lo, max_weights=hi)
    except OptimisationError as e:
        assert "above the risk-free rate" in e.reason
        assert pf._extreme_return(mu - rf, lo, hi, np)[0] <= 0
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


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 9), st.integers(1, 3))
def test_solve_qp_matches_cvxpy_on_general_qps(seed, n, m):
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
    sol = pf.solve_qp(Q, c, A, b, lower=lower, upper=upper)
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


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(2, 12))
def test_risk_budgeting_property(seed, n):
    rng = np.random.default_rng(seed)
    S = random_cov(rng, n, ridge=1e-2, scale=10.0 ** rng.integers(-5, 1))
    b = rng.uniform(0.05, 1.0, n)
    w = pf.risk_budget_weights(S, risk_budgets=b)
    assert abs(w.sum() - 1) < 1e-12 and (w > 0).all()
    np.testing.assert_allclose(pf.risk_contributions(w, S), b / b.sum(), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# CuPy (skipped without a GPU)
# ---------------------------------------------------------------------------------------------

@pytest.mark.gpu
def test_cupy_inputs_give_the_numpy_results(problem):
    cupy = cupy_or_skip()
    mu, S = problem
    mu_d, S_d = cupy.asarray(mu), cupy.asarray(S)
    pairs = [
        (pf.min_variance_weights(S_d), pf.min_variance_weights(S)),
        (pf.max_sharpe_weights(mu_d, S_d, min_weights=0.0, max_weights=0.2),
         pf.max_sharpe_weights(mu, S, min_weights=0.0, max_weights=0.2)),
        (pf.risk_budget_weights(S_d), pf.risk_budget_weights(S)),
        (pf.black_litterman_posterior(mu_d, S_d, picking=cupy.eye(len(mu))[:2], views=cupy.asarray([0.1, 0.2]))[0],
         pf.black_litterman_posterior(mu, S, picking=np.eye(len(mu))[:2], views=[0.1, 0.2])[0]),
    ]
    for on_device, on_host in pairs:
        assert type(on_device).__module__.startswith("cupy")
        np.testing.assert_allclose(cupy.asnumpy(on_device), on_host, atol=1e-9)
    with pytest.raises(TypeError, match="CPU"):
        hrp_weights(S_d)
