"""Mean-variance portfolios: minimum variance, maximum Sharpe, efficient risk and return, maximum utility.

Implements :func:`min_variance_weights`, :func:`max_sharpe_weights`,
:func:`efficient_return_weights`, :func:`efficient_risk_weights`, :func:`max_utility_weights`:
long-only (or bounded) fully invested portfolios, the problems PyPortfolioOpt's
``EfficientFrontier`` solves (``min_volatility``, ``max_sharpe``, ``efficient_return``,
``efficient_risk``, ``max_quadratic_utility``), without cvxpy, each one call of the dense QP
solver (:func:`alphapulse.transforms.portfolio.qp.solve_qp`); and :func:`portfolio_volatility`.
Maximum Sharpe uses Cornuejols and Tutuncu's change of variables (``y = kappa w``: minimise
``y' S y`` subject to ``(mu - rf)' y = 1``, ``sum(y) = kappa``, ``min_w kappa <= y <= max_w
kappa``), a convex QP. The efficient-risk problem (maximise return subject to a variance ceiling)
is solved on the frontier: Brent's method finds the return target whose minimum-variance
portfolio has the target volatility.

Conventions: ``expected_returns`` has shape ``(n_assets,)`` and ``covariance`` ``(n_assets,
n_assets)``, in the same period (daily returns with a daily covariance, or both annualised);
rates (``risk_free_rate``, ``target_return``) and ``target_volatility`` are in that period too.
Weights are fractions of capital that sum to 1. ``min_weights``/``max_weights`` are a scalar or
an ``(n_assets,)`` array (the default 0 and 1 is long-only). Inputs must be finite: NaN is an
error here, not a missing value (clean the returns before estimating moments). NumPy or CuPy
(``xp = namespace(x)``); the matrices are small, so the CPU is the usual place for them.

Failures are explicit: infeasible bounds or targets, a covariance that is not symmetric positive
definite, a solver that does not converge raise
:class:`~alphapulse.transforms.errors.OptimisationError` naming the method and the reason;
nothing returns silently wrong weights.
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.checks import (as_bounds, check_bounds, check_covariance, check_returns,
                                                    clip_to_bounds)
from alphapulse.transforms.portfolio.qp import solve_qp

__all__ = ["min_variance_weights", "max_sharpe_weights", "efficient_return_weights", "efficient_risk_weights",
           "max_utility_weights", "portfolio_volatility"]


def _prepare(method, covariance, min_weights, max_weights, expected_returns=None):
    xp = namespace(covariance, expected_returns)
    cov = check_covariance(method, covariance, xp)
    n = cov.shape[0]
    lo = as_bounds(min_weights, n, "min_weights", xp)
    hi = as_bounds(max_weights, n, "max_weights", xp)
    check_bounds(method, lo, hi, xp)
    mu = None if expected_returns is None else check_returns(method, expected_returns, n, xp)
    return xp, cov, lo, hi, mu


def _extreme_return(mu, min_weights, max_weights, xp):
    """Largest ``mu' w`` over ``sum(w) = 1``, ``min_weights <= w <= max_weights`` (a greedy LP),
    with its portfolio; bounds assumed feasible."""
    order = xp.argsort(-mu)
    room = (max_weights - min_weights)[order]
    budget = 1.0 - float(min_weights.sum())
    take = xp.clip(budget - (xp.cumsum(room) - room), 0.0, None)
    fill = xp.minimum(room, take)
    w = min_weights.copy()
    w[order] += fill
    return float(mu @ w), w


def _solve_budget_qp(method, cov, linear, lo, hi, xp, *, extra_row=None, extra_rhs=None, max_iterations,
                     initial_weights=None):
    """min w'Sw/2 + linear'w s.t. sum(w) = 1 (and extra_row'w = extra_rhs), lo <= w <= hi."""
    n = cov.shape[0]
    A = xp.ones((1, n))
    b = xp.ones(1)
    if extra_row is not None:
        A = xp.concatenate([A, extra_row.reshape(1, n)])
        b = xp.concatenate([b, xp.asarray([extra_rhs], dtype=np.float64)])
    # A bound pair with lo == hi is a fixed weight: keep both rows (the interior-point method copes
    # with a zero-width box through the polish); infinite bounds are simply absent rows.
    try:
        sol = solve_qp(cov, linear, A, b, lower=lo, upper=hi, max_iterations=max_iterations,
                       initial_x=_guess(initial_weights, n, xp))
    except OptimisationError as e:
        raise OptimisationError(method, e.reason) from None
    return sol


def _guess(initial_weights, n, xp):
    """A caller's guess of the weights as the QP's ``initial_x`` (None: a cold start)."""
    if initial_weights is None:
        return None
    guess = xp.asarray(initial_weights, dtype=np.float64).reshape(-1)
    if guess.shape != (n,):
        raise ValueError(f"initial_weights must have shape ({n},), got {tuple(guess.shape)}")
    return guess


def portfolio_volatility(weights, covariance):
    """``sqrt(w' S w)``: the portfolio's volatility, in the covariance's period.

    Parameters
    ----------
    weights : array of shape (n_assets,) or (n_portfolios, n_assets)
    covariance : array of shape (n_assets, n_assets)

    Returns
    -------
    float or array of shape (n_portfolios,)
    """
    xp = namespace(weights, covariance)
    w = xp.asarray(weights, dtype=np.float64)
    var = xp.einsum("...i,ij,...j->...", w, covariance, w)
    return xp.sqrt(xp.maximum(var, 0.0)) if w.ndim > 1 else math.sqrt(max(float(var), 0.0))


def min_variance_weights(covariance, *, min_weights=0.0, max_weights=1.0, max_iterations=100, initial_weights=None):
    """Minimum-variance portfolio: minimise ``w' S w`` subject to ``sum(w) = 1`` and the bounds.

    PyPortfolioOpt's ``EfficientFrontier.min_volatility``.

    Parameters
    ----------
    covariance : array of shape (n_assets, n_assets)
        Symmetric positive definite.
    min_weights, max_weights : float or array of shape (n_assets,), default 0 and 1
        Per-asset bounds (``-inf``/``inf`` for none).
    max_iterations : int, default 100
        Interior-point iteration limit.
    initial_weights : array of shape (n_assets,), optional
        A guess of the answer (a walk-forward passes the previous rebalance's weights; NaN
        where unknown): the bounds it sits on seed the QP's active set (``solve_qp``'s
        ``initial_x``). The answer is the same optimum, certified by the same KKT checks; a
        poor guess only costs the cold start it would have had.

    Returns
    -------
    weights : array of shape (n_assets,)

    Raises
    ------
    OptimisationError
        Bounds that exclude full investment, a covariance that is not positive definite, or no
        convergence.
    """
    method = "min_variance"
    xp, cov, lo, hi, _ = _prepare(method, covariance, min_weights, max_weights)
    sol = _solve_budget_qp(method, cov, xp.zeros(cov.shape[0]), lo, hi, xp, max_iterations=max_iterations,
                           initial_weights=initial_weights)
    return clip_to_bounds(sol.x, lo, hi, xp)


def max_utility_weights(expected_returns, covariance, *, risk_aversion=1.0, min_weights=0.0, max_weights=1.0,
                        max_iterations=100, initial_weights=None):
    """Maximise the quadratic utility ``mu' w - risk_aversion / 2 * w' S w`` subject to
    ``sum(w) = 1`` and the bounds (PyPortfolioOpt's ``max_quadratic_utility``).

    Parameters
    ----------
    expected_returns : array of shape (n_assets,)
    covariance : array of shape (n_assets, n_assets)
    risk_aversion : float, default 1
        ``delta > 0``, in the returns' period (``mu`` and ``S`` must share it).
    min_weights, max_weights : float or array of shape (n_assets,)
    max_iterations : int, default 100
    initial_weights : array of shape (n_assets,), optional
        A guess of the answer (a walk-forward passes the previous rebalance's weights; NaN
        where unknown): the bounds it sits on seed the QP's active set (``solve_qp``'s
        ``initial_x``). The answer is the same optimum, certified by the same KKT checks; a
        poor guess only costs the cold start it would have had.

    Returns
    -------
    weights : array of shape (n_assets,)
    """
    method = "max_utility"
    if not risk_aversion > 0:
        raise ValueError(f"risk_aversion must be positive, got {risk_aversion}")
    xp, cov, lo, hi, mu = _prepare(method, covariance, min_weights, max_weights, expected_returns)
    sol = _solve_budget_qp(method, risk_aversion * cov, -mu, lo, hi, xp, max_iterations=max_iterations,
                           initial_weights=initial_weights)
    return clip_to_bounds(sol.x, lo, hi, xp)


def efficient_return_weights(expected_returns, covariance, *, target_return, min_weights=0.0, max_weights=1.0,
                             max_iterations=100):
    """Minimise ``w' S w`` subject to ``mu' w >= target_return``, ``sum(w) = 1`` and the bounds.

    PyPortfolioOpt's ``EfficientFrontier.efficient_return``. When the minimum-variance portfolio
    already earns the target it is the answer; otherwise the return row is active and the QP is
    solved with ``mu' w = target_return`` (exact for a convex problem).

    Parameters
    ----------
    expected_returns : array of shape (n_assets,)
    covariance : array of shape (n_assets, n_assets)
    target_return : float
        In the returns' period.
    min_weights, max_weights : float or array of shape (n_assets,)
    max_iterations : int, default 100

    Returns
    -------
    weights : array of shape (n_assets,)

    Raises
    ------
    OptimisationError
        A target above the largest return any feasible portfolio earns, or as
        :func:`min_variance_weights`.
    """
    method = "efficient_return"
    xp, cov, lo, hi, mu = _prepare(method, covariance, min_weights, max_weights, expected_returns)
    return _efficient_return(method, mu, cov, float(target_return), lo, hi, xp, max_iterations)


def _efficient_return(method, mu, cov, target, lo, hi, xp, max_iterations, *, best=None):
    r_max, w_max = _extreme_return(mu, lo, hi, xp) if best is None else best
    tol = 1e-12 * max(1.0, abs(r_max))
    if target > r_max + tol:
        raise OptimisationError(method, f"the target return {target:.6g} is above the largest return a feasible "
                                        f"portfolio earns ({r_max:.6g})")
    if target >= r_max - tol:
        return w_max  # the feasible set {mu'w >= target} is the best-return portfolio alone
    w_mv = _solve_budget_qp(method, cov, xp.zeros(cov.shape[0]), lo, hi, xp, max_iterations=max_iterations).x
    if float(mu @ w_mv) >= target:
        return clip_to_bounds(w_mv, lo, hi, xp)
    sol = _solve_budget_qp(method, cov, xp.zeros(cov.shape[0]), lo, hi, xp, extra_row=mu, extra_rhs=target,
                           max_iterations=max_iterations)
    return clip_to_bounds(sol.x, lo, hi, xp)


def efficient_risk_weights(expected_returns, covariance, *, target_volatility, min_weights=0.0, max_weights=1.0,
                           max_iterations=100):
    """Maximise ``mu' w`` subject to ``sqrt(w' S w) <= target_volatility``, ``sum(w) = 1`` and the
    bounds (PyPortfolioOpt's ``EfficientFrontier.efficient_risk``).

    On the efficient frontier the volatility of the minimum-variance portfolio for return ``r``
    increases with ``r`` from the minimum-variance portfolio's return to the largest feasible
    return; Brent's method finds the ``r`` whose volatility is the target (to ``1e-15``
    relative in ``r``), and the answer is that QP's solution. A target at or above the
    volatility of the best-return portfolio returns that portfolio.

    Parameters
    ----------
    expected_returns : array of shape (n_assets,)
    covariance : array of shape (n_assets, n_assets)
    target_volatility : float
        Volatility ceiling, in the covariance's period (``sqrt`` of a variance).
    min_weights, max_weights : float or array of shape (n_assets,)
    max_iterations : int, default 100

    Returns
    -------
    weights : array of shape (n_assets,)

    Raises
    ------
    OptimisationError
        A target below the minimum-variance portfolio's volatility, or as
        :func:`min_variance_weights`.
    """
    from scipy.optimize import brentq

    method = "efficient_risk"
    xp, cov, lo, hi, mu = _prepare(method, covariance, min_weights, max_weights, expected_returns)
    target = float(target_volatility)
    w_mv = _solve_budget_qp(method, cov, xp.zeros(cov.shape[0]), lo, hi, xp, max_iterations=max_iterations).x
    vol_mv = portfolio_volatility(w_mv, cov)
    if target < vol_mv * (1 - 1e-12):
        raise OptimisationError(method, f"the target volatility {target:.6g} is below the minimum-variance "
                                        f"portfolio's volatility ({vol_mv:.6g})")
    best = _extreme_return(mu, lo, hi, xp)
    r_max, w_max = best
    if portfolio_volatility(w_max, cov) <= target:
        return w_max
    r_mv = float(mu @ w_mv)
    if target <= vol_mv or r_max <= r_mv:
        return clip_to_bounds(w_mv, lo, hi, xp)
    cache = {}

    def excess_vol(r):
        w = _efficient_return(method, mu, cov, r, lo, hi, xp, max_iterations, best=best)
        cache[r] = w
        return portfolio_volatility(w, cov) - target

    r = brentq(excess_vol, r_mv, r_max, xtol=max(1e-15 * max(abs(r_mv), abs(r_max)), 1e-300),
               rtol=4 * np.finfo(float).eps, maxiter=200)
    w = cache.get(r)
    if w is None:
        w = _efficient_return(method, mu, cov, r, lo, hi, xp, max_iterations, best=best)
    return clip_to_bounds(w, lo, hi, xp)


def max_sharpe_weights(expected_returns, covariance, *, risk_free_rate=0.0, min_weights=0.0, max_weights=1.0,
                       max_iterations=100, initial_weights=None):
    r"""Maximum Sharpe ratio (tangency) portfolio: maximise ``(mu' w - rf) / sqrt(w' S w)`` subject
    to ``sum(w) = 1`` and the bounds.

    PyPortfolioOpt's ``EfficientFrontier.max_sharpe``. Solved as the convex QP of Cornuejols and
    Tutuncu's change of variables ``y = kappa w``, ``kappa > 0``:

    .. math::
        \min_{y, \kappa} y^\top S y \quad\text{s.t.}\quad (\mu - r_f)^\top y = 1,\quad
        \textstyle\sum_i y_i = \kappa,\quad l_i \kappa \le y_i \le u_i \kappa,\quad \kappa \ge 0

    and ``w = y / kappa``. With nonnegative lower bounds an upper bound of 1 or more is implied by
    ``y >= 0, sum(y) = kappa`` and is dropped. (The returns row is scaled by its largest entry so
    that ``y`` is of order one.)

    Parameters
    ----------
    expected_returns : array of shape (n_assets,)
    covariance : array of shape (n_assets, n_assets)
    risk_free_rate : float, default 0
        In the returns' period.
    min_weights, max_weights : float or array of shape (n_assets,)
    max_iterations : int, default 100
    initial_weights : array of shape (n_assets,), optional
        A guess of the answer, as for :func:`min_variance_weights` (it seeds the transformed
        QP as ``(y, kappa) = (w, 1)``: the bound rows ``w`` sits on are those ``y`` does).

    Returns
    -------
    weights : array of shape (n_assets,)

    Raises
    ------
    OptimisationError
        No feasible portfolio earns more than the risk-free rate, or as
        :func:`min_variance_weights`.
    """
    method = "max_sharpe"
    xp, cov, lo, hi, mu = _prepare(method, covariance, min_weights, max_weights, expected_returns)
    excess = mu - float(risk_free_rate)
    best, _ = _extreme_return(excess, lo, hi, xp)
    if not best > 0:
        rf = float(risk_free_rate)
        raise OptimisationError(method, f"no feasible portfolio has an expected return above the risk-free rate "
                                        f"{rf:.6g} (the best earns {best + rf:.6g})")
    n = cov.shape[0]
    a = excess / float(xp.max(xp.abs(excess)))
    Q = xp.zeros((n + 1, n + 1))
    Q[:n, :n] = cov
    A = xp.zeros((2, n + 1))
    A[0, :n] = a
    A[1, :n] = 1.0
    A[1, n] = -1.0
    b = xp.asarray([1.0, 0.0])
    inf = xp.full(1, np.inf)
    zero = xp.zeros(1)
    # y_i >= lo_i kappa: an absolute bound 0 when lo_i == 0, a scaled row otherwise.
    lower = xp.concatenate([xp.where(xp.isfinite(lo), 0.0, -np.inf), zero])
    lower_scale = xp.concatenate([xp.where(xp.isfinite(lo), lo, 0.0), zero])
    implied = bool((lo >= 0).all())
    has_upper = xp.isfinite(hi) & ~((hi >= 1.0) & implied)
    upper = xp.concatenate([xp.where(has_upper, 0.0, np.inf), inf])
    upper_scale = xp.concatenate([xp.where(has_upper, hi, 0.0), zero])
    try:
        guess = _guess(initial_weights, n, xp)
        sol = solve_qp(Q, xp.zeros(n + 1), A, b, lower=lower, upper=upper, scale_index=n,
                       lower_scale=lower_scale, upper_scale=upper_scale, max_iterations=max_iterations,
                       initial_x=None if guess is None else xp.concatenate([guess, xp.ones(1)]))
    except OptimisationError as e:
        raise OptimisationError(method, e.reason) from None
    y = sol.x[:n]
    kappa = float(y.sum())
    if not kappa > 0:
        raise OptimisationError(method, "the transformed problem returned a non-positive scale (kappa)")
    return clip_to_bounds(y / kappa, lo, hi, xp)
