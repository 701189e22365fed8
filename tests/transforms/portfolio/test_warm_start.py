"""Warm starts: the optimisers from a guess of their answer (``initial_weights``, ``solve_qp``'s
``initial_x``) and the walk-forward that passes each date the previous date's answer, against the
same solves from their cold starts.

Data: the 470 full-history symbols of the S&P 500 file (Ledoit-Wolf covariances of 252-return
windows at consecutive month ends, as the walk-forward benchmark; skipped when the file is
absent), the bundled sample (the walk-forward), and synthetic QPs (general bounds, an extra
equality row, scaled bound rows).

Tolerances (float64):

- QPs (min-variance, max-Sharpe, max-utility, ``solve_qp``): a warm solution is the polish's
  solution of the KKT system of an active set, accepted by the same KKT checks as after the
  interior-point method; where both end on the same active set they solve the same linear system
  the same way (measured: identical bits on NumPy). Asserted: 1e-13 absolute on the weights, and
  ``iterations == 0`` (no interior-point iteration) where the guess is the previous date's answer.
- Risk parity: Newton's method from another start, stopped by the same rule (decrement below
  1e-13): 1e-12 absolute (measured ~1e-15), and fewer factorisations.
- The walk-forward with and without warm starts: weights 1e-12, returns 1e-12.
"""
from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from tests.transforms.indicator_testlib import SP500_CSV
from alphapulse.transforms import portfolio as pf
from alphapulse.transforms.batched_covariance import batched_cov
from alphapulse.transforms.portfolio import mean_variance, risk_budgeting
from alphapulse.transforms.portfolio import walk_forward as wf
from alphapulse.transforms.portfolio.schedule import rebalance_rows

N_DATES = 3


@pytest.fixture(scope="module")
def sp500_windows():
    """Expected returns and Ledoit-Wolf covariances (annual) of three consecutive month-end
    windows of the 470 full-history symbols."""
    if not SP500_CSV.exists():
        pytest.skip(f"S&P 500 file not found at {SP500_CSV}")
    raw = pd.read_csv(SP500_CSV, usecols=["date", "close", "Name"])
    wide = raw.pivot(index="date", columns="Name", values="close").sort_index()
    wide = wide.loc[:, wide.notna().all()]
    r = wide.pct_change().to_numpy()
    rows = rebalance_rows(pd.DatetimeIndex(wide.index), rule="month_end", first_row=253)[10:10 + N_DATES]
    x = np.stack([r[d - 252:d] for d in rows])
    return x.mean(axis=1) * 252, batched_cov(x, estimator="ledoit_wolf", periods_per_year=252)


def _assets(xp):
    """All 470 on NumPy; the first 120 on a device (the CI rehearsal's CuPy stand-in runs every
    array operation through the host, and the cold 470-asset solves take it seconds each)."""
    return slice(None) if xp is np else slice(0, 120)


def _spy_iterations(monkeypatch, module):
    """Record the interior-point iterations of every solve_qp call made by ``module``."""
    seen = []
    real = module.solve_qp

    def spy(*args, **kwargs):
        sol = real(*args, **kwargs)
        seen.append(sol.iterations)
        return sol

    monkeypatch.setattr(module, "solve_qp", spy)
    return seen


QP_METHODS = {
    "min_variance": lambda mu, S, **kw: pf.min_variance_weights(S, **kw),
    "min_variance_capped": lambda mu, S, **kw: pf.min_variance_weights(S, max_weights=0.02, **kw),
    "max_sharpe": lambda mu, S, **kw: pf.max_sharpe_weights(mu, S, risk_free_rate=0.01, **kw),
    "max_utility": lambda mu, S, **kw: pf.max_utility_weights(mu, S, risk_aversion=5.0, **kw),
}


@pytest.mark.parametrize("method", list(QP_METHODS))
def test_warm_qp_equals_cold_on_consecutive_month_ends(xp, sp500_windows, monkeypatch, method):
    mus, covs = sp500_windows
    solve = QP_METHODS[method]
    iterations = _spy_iterations(monkeypatch, mean_variance)
    previous = None
    a = _assets(xp)
    for k in range(N_DATES):
        mu, S = device(xp, mus[k][a]), device(xp, covs[k][a, a])
        cold = host(solve(mu, S))
        assert iterations.pop() > 0
        if previous is not None:
            warm = host(solve(mu, S, initial_weights=device(xp, previous)))
            assert iterations.pop() == 0, (method, k)  # the previous answer's active set, corrected
            assert np.abs(warm - cold).max() <= 1e-13, (method, k)
        previous = cold


def test_warm_risk_parity_equals_cold_with_fewer_factorisations(xp, sp500_windows, monkeypatch):
    _, covs = sp500_windows
    factorisations = []
    real = risk_budgeting.cholesky_solver
    monkeypatch.setattr(risk_budgeting, "cholesky_solver", lambda M, xp_: factorisations.append(1) or real(M, xp_))
    previous, cold_count, warm_count = None, 0, 0
    a = _assets(xp)
    for k in range(N_DATES):
        S = device(xp, covs[k][a, a])
        factorisations.clear()
        cold = host(pf.risk_budget_weights(S))
        cold_count += len(factorisations)
        if previous is not None:
            factorisations.clear()
            warm = host(pf.risk_budget_weights(S, initial_weights=device(xp, previous)))
            warm_count += len(factorisations)
            assert np.abs(warm - cold).max() <= 1e-12, k
        previous = cold
    first = cold_count // N_DATES  # roughly: the cold count of one date
    assert warm_count < cold_count - first


def test_risk_parity_guess_with_gaps_and_bounds(xp):
    """Entries that are not positive (a symbol new to the universe) start from b / sigma; a
    guess changes nothing in the bounded problem's answer either."""
    rng = np.random.default_rng(3)
    n = 25
    X = rng.normal(size=(200, n)) * rng.uniform(0.5, 2.0, n)
    S = device(xp, np.cov(X, rowvar=False))
    cold = host(pf.risk_budget_weights(S))
    guess = cold * rng.uniform(0.8, 1.2, n)
    guess[[2, 7]] = np.nan
    guess[11] = -0.1
    guess[12] = 0.0
    warm = host(pf.risk_budget_weights(S, initial_weights=device(xp, guess)))
    assert np.abs(warm - cold).max() <= 1e-12
    bounded = dict(min_weights=0.02, max_weights=0.06)
    np.testing.assert_allclose(host(pf.risk_budget_weights(S, initial_weights=device(xp, guess), **bounded)),
                               host(pf.risk_budget_weights(S, **bounded)), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="initial_weights"):
        pf.risk_budget_weights(S, initial_weights=device(xp, np.ones(n + 1)))


# ---------------------------------------------------------------------------------------------
# solve_qp on synthetic problems: any guess, the cold answer
# ---------------------------------------------------------------------------------------------

def _general_qp(rng, n):
    """A strictly convex QP with a budget row, a second equality row and mixed finite bounds."""
    X = rng.normal(size=(3 * n, n))
    Q = X.T @ X / (3 * n) + 1e-3 * np.eye(n)
    c = rng.normal(0, 0.3, n)
    A = np.vstack([np.ones(n), rng.normal(size=n)])
    lower = np.where(rng.uniform(size=n) < 0.8, -0.1, -np.inf)
    upper = np.where(rng.uniform(size=n) < 0.8, 0.3, np.inf)
    x0 = np.clip(rng.dirichlet(np.ones(n)), lower, upper)
    return Q, c, A, A @ x0, lower, upper


def _guesses(rng, cold, lower, upper):
    n = len(cold)
    near = cold + rng.normal(0, 0.02, n)  # a neighbouring problem's answer, roughly
    return {"exact": cold, "near": near, "unknown": np.full(n, np.nan),
            "all_lower": np.where(np.isfinite(lower), lower, 0.0),
            "all_upper": np.where(np.isfinite(upper), upper, 0.0),
            "random": rng.uniform(-0.1, 0.3, n)}


@pytest.mark.parametrize("seed", range(6))
def test_solve_qp_from_any_guess_returns_the_cold_answer(xp, seed):
    rng = np.random.default_rng(seed)
    n = 12 + 4 * seed
    Q, c, A, b, lower, upper = _general_qp(rng, n)
    args = [device(xp, v) for v in (Q, c, A, b)]
    kw = dict(lower=device(xp, lower), upper=device(xp, upper))
    cold = pf.solve_qp(*args, **kw)
    x = host(cold.x)
    for name, guess in _guesses(rng, x, lower, upper).items():
        warm = pf.solve_qp(*args, **kw, initial_x=device(xp, guess))
        assert warm.polished
        np.testing.assert_allclose(host(warm.x), x, rtol=0, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(host(warm.equality_multipliers), host(cold.equality_multipliers), rtol=1e-9,
                                   atol=1e-10, err_msg=name)
        if name == "exact":
            assert warm.iterations == 0  # the answer's own active set passes at once
    with pytest.raises(ValueError, match="initial_x"):
        pf.solve_qp(*args, **kw, initial_x=device(xp, np.zeros(n + 1)))


@pytest.mark.parametrize("seed", range(4))
def test_max_sharpe_with_per_asset_bounds_from_any_guess(xp, seed):
    """Scaled bound rows (y_i >= lo_i kappa, y_i <= hi_i kappa): the guess seeds them through
    (y, kappa) = (w, 1)."""
    rng = np.random.default_rng(10 + seed)
    n = 20
    X = rng.normal(size=(300, n)) * rng.uniform(0.5, 2.0, n) + rng.normal(size=(300, 1))
    S = np.cov(X, rowvar=False) * 1e-4 * 252
    mu = rng.normal(0.08, 0.1, n)
    lo = np.where(np.arange(n) % 3 == 0, 0.01, 0.0)
    hi = np.where(np.arange(n) % 4 == 0, 0.08, 0.25)
    dev = dict(min_weights=device(xp, lo), max_weights=device(xp, hi))
    cold = host(pf.max_sharpe_weights(device(xp, mu), device(xp, S), **dev))
    for name, guess in _guesses(rng, cold, lo, hi).items():
        warm = host(pf.max_sharpe_weights(device(xp, mu), device(xp, S), initial_weights=device(xp, guess), **dev))
        np.testing.assert_allclose(warm, cold, rtol=0, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------------------------
# The walk-forward with and without warm starts
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rebalance", ["month_end", "band"])
def test_walk_forward_with_warm_starts_equals_cold(xp, closes, monkeypatch, rebalance):
    methods = ["min_variance", "max_sharpe", "hrp", "risk_parity", "black_litterman"]
    args = dict(timestamps=closes.index[:900], methods=methods, train_bars=252, rebalance=rebalance,
                band=0.02 if rebalance == "band" else None, holdings="drift", cost_bps=5.0,
                min_history_bars=200, ensemble="inverse_volatility", symbols=list(closes.columns),
                options=wf.OptimiserOptions(max_weight=0.3, views=(wf.View("AAPL", 0.2),)))
    prices = device(xp, closes.to_numpy()[:900])  # 30 rebalances a month apart: enough, and quick on a device
    warm = wf.walk_forward_backtest(prices, **args)
    monkeypatch.setattr(wf._Targets, "_solved_before", lambda self, d: None)
    cold = wf.walk_forward_backtest(prices, **args)
    assert len(warm.weights) == len(cold.weights) >= 40
    assert [c["tried"] for c in warm.chains] == [c["tried"] for c in cold.chains]
    for a, b in zip(warm.weights, cold.weights):
        assert (a["row"], a["series"]) == (b["row"], b["series"])
        np.testing.assert_allclose(host(a["weights"]), host(b["weights"]), rtol=0, atol=1e-12)
    np.testing.assert_allclose(host(warm.returns), host(cold.returns), rtol=0, atol=1e-12)
