"""Risk budgeting (risk parity): weights whose risk contributions equal given budgets.

Implements :func:`risk_budget_weights` and :func:`risk_contributions`: long-only risk budgeting
(equal risk contribution by default) by Spinu's convex formulation, minimise
``x' S x / 2 - b' log(x)`` with a damped Newton method; the normalised solution's risk
contributions equal the budgets. Within weight bounds that bind, the bounds scale with
``sum(x)`` (skfolio's bounded ``RiskBudgeting``), solved by Newton steps that are each a QP
(:func:`alphapulse.transforms.portfolio.qp.solve_qp`).

NumPy or CuPy; failures raise :class:`~alphapulse.transforms.errors.OptimisationError` with
``method="risk_parity"``.
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.checks import (as_bounds, check_bounds, check_covariance, cholesky_solver,
                                                    clip_to_bounds)
from alphapulse.transforms.portfolio.qp import solve_qp

__all__ = ["risk_budget_weights", "risk_contributions"]


def risk_contributions(weights, covariance):
    """Relative risk contributions ``w_i (S w)_i / (w' S w)`` (they sum to 1).

    Parameters
    ----------
    weights : array of shape (n_assets,)
    covariance : array of shape (n_assets, n_assets)

    Returns
    -------
    array of shape (n_assets,)
    """
    xp = namespace(weights, covariance)
    w = xp.asarray(weights, dtype=np.float64)
    marginal = xp.asarray(covariance, dtype=np.float64) @ w
    return w * marginal / (w @ marginal)


def risk_budget_weights(covariance, *, risk_budgets=None, min_weights=0.0, max_weights=1.0, tol=1e-13,
                        max_iterations=100, initial_weights=None):
    r"""Long-only risk budgeting: weights whose relative risk contributions equal the budgets.

    Spinu's (2013) convex formulation: the unique minimiser of

    .. math:: f(x) = \tfrac12 x^\top S x - \sum_i b_i \log x_i, \qquad x > 0,

    satisfies ``x_i (S x)_i = b_i``, so ``w = x / sum(x)`` has contributions ``b_i / sum(b)``.
    Damped Newton with a backtracking line search that keeps ``x > 0``, from
    ``x0 ~ b / sigma``; stops when the Newton decrement squared is below ``tol`` (quadratic
    convergence: about ten iterations). skfolio's ``RiskBudgeting`` (variance) solves the same
    problem with a conic solver.

    Weight bounds: when the solution above lies within them it is the answer. Otherwise the
    bounds bind, and clipping, or bounding ``x`` itself and normalising, is not risk budgeting
    within them. skfolio's bounded problem is: minimise ``y' S y`` subject to
    ``b' log(y) >= 0`` and ``min_w sum(y) <= y <= max_w sum(y)`` (bounds on the normalised
    weights ``y / sum(y)``, a convex cone). Its constraint is active at the optimum, and
    the cone is invariant to scaling, so (KKT conditions, rescaled) its normalised solution is
    that of ``min x' S x / 2 - b' log(x)`` over the same cone. That is solved by Newton's method:
    each step minimises the second-order model, ``S + diag(b / x^2)``, over the cone, a QP with
    bound rows scaled by ``sum(x)`` (:func:`solve_qp`, polished to its KKT conditions), damped
    to keep ``x > 0`` and to decrease the objective. An asset at a bound then carries less (or
    more) than its budget, and the free assets' contributions are ``x_i (S x)_i = b_i - nu x_i``
    with ``nu`` the multiplier of ``sum(x) = k``.

    Parameters
    ----------
    covariance : array of shape (n_assets, n_assets)
        Positive definite.
    risk_budgets : array of shape (n_assets,), optional
        Positive; normalised to sum 1. Default: equal (equal risk contribution).
    min_weights, max_weights : float or array of shape (n_assets,), default 0 and 1
        Bounds on the weights; a zero ``max_weights`` is refused (a budget needs a holding).
    tol : float, default 1e-13
    max_iterations : int, default 100
        Newton iterations (with bounds that bind, also each QP's interior-point limit).
    initial_weights : array of shape (n_assets,), optional
        A guess of the answer (a walk-forward passes the previous rebalance's weights): Newton's
        method starts there instead of at ``b / sigma`` (entries that are not positive, NaN
        included, take ``b / sigma`` rescaled to the guess). The minimiser is unique and the
        stopping rule the same, so only the number of iterations changes (and the answer at
        the level of the last step's rounding).

    Returns
    -------
    weights : array of shape (n_assets,)

    Raises
    ------
    OptimisationError
        ``method="risk_parity"``: a covariance that is not positive definite, bounds that
        exclude full investment or a holding of every asset, or no convergence.
    """
    method = "risk_parity"
    xp = namespace(covariance, risk_budgets)
    S = check_covariance(method, covariance, xp)
    n = S.shape[0]
    # long-only: a negative minimum cannot bind, a zero one is the log's own bound
    lo = xp.maximum(as_bounds(min_weights, n, "min_weights", xp), 0.0)
    hi = as_bounds(max_weights, n, "max_weights", xp)
    check_bounds(method, lo, hi, xp)
    if bool((hi <= 0).any()):
        i = int(xp.nonzero(hi <= 0)[0][0])
        raise OptimisationError(method, f"max_weights of asset {i} is {float(hi[i]):.6g}: risk budgeting holds "
                                        "every asset (a positive budget needs a positive weight)")
    if risk_budgets is None:
        b = xp.full(n, 1.0 / n)
    else:
        b = xp.asarray(risk_budgets, dtype=np.float64).reshape(-1)
        if b.shape != (n,):
            raise ValueError(f"risk_budgets must have shape ({n},), got {tuple(b.shape)}")
        if not bool(((b > 0) & xp.isfinite(b)).all()):
            raise ValueError("risk_budgets must be positive and finite")
        b = b / b.sum()
    S = S / float(xp.max(xp.diagonal(S)))  # scale-free; the weights do not change
    x = b / xp.sqrt(xp.diagonal(S))
    if initial_weights is not None:
        x = _warm_start(x, initial_weights, n, xp)
    x = x / math.sqrt(float(x @ S @ x))

    def objective(v):
        return 0.5 * float(v @ S @ v) - float(b @ xp.log(v))

    f = objective(x)
    idx = xp.arange(n)
    for _ in range(max_iterations):
        Sx = S @ x
        g = Sx - b / x
        H = S.copy()
        H[idx, idx] += b / (x * x)
        solver = cholesky_solver(H, xp)  # H is positive definite: S is, and b / x^2 > 0
        dx = -(solver(g) if solver is not None else xp.linalg.solve(H, g))
        decrement2 = -float(g @ dx)
        if decrement2 <= tol:
            x = x + dx if bool((x + dx > 0).all()) else x
            w = x / x.sum()
            if bool(((w >= lo) & (w <= hi)).all()):
                return w
            return _bounded_risk_budget(S, b, lo, hi, xp, tol=tol, max_iterations=max_iterations)
        neg = dx < 0
        t = 1.0
        if bool(neg.any()):
            t = min(1.0, 0.99 * float(xp.min(-x[neg] / dx[neg])))
        while True:  # Armijo backtracking
            xn = x + t * dx
            fn = objective(xn)
            if fn <= f - 0.25 * t * decrement2 or t < 1e-12:
                break
            t *= 0.5
        x, f = xn, fn
    raise OptimisationError(method, f"Newton's method did not converge in {max_iterations} iterations")


def _warm_start(x0, initial_weights, n, xp):
    """Newton's start from a guess: its positive entries, the rest from ``x0`` on the guess's scale."""
    guess = xp.asarray(initial_weights, dtype=np.float64).reshape(-1)
    if guess.shape != (n,):
        raise ValueError(f"initial_weights must have shape ({n},), got {tuple(guess.shape)}")
    known = (guess > 0) & xp.isfinite(guess)  # NaN compares False
    if not bool(known.any()):
        return x0
    if bool(known.all()):
        return guess
    ratio = float(xp.sum(xp.where(known, guess, 0.0))) / float(xp.sum(xp.where(known, x0, 0.0)))
    return xp.where(known, guess, x0 * ratio)


def _bounded_risk_budget(S, b, lo, hi, xp, *, tol, max_iterations):
    """Risk budgeting over the cone ``lo sum(x) <= x <= hi sum(x)`` (see :func:`risk_budget_weights`).

    ``S`` is scaled (unit largest variance), ``b`` sums to 1, the bounds are feasible and
    ``hi > 0``. The QP variables are ``(x, k)`` with ``sum(x) = k`` and the bound rows scaled by ``k``.
    """
    method = "risk_parity"
    n = S.shape[0]
    hi1 = xp.minimum(hi, 1.0)
    room = float((hi1 - lo).sum())
    spare = 1.0 - float(lo.sum())
    if spare <= 0 or room <= spare:  # the bounds leave one portfolio: the minima, or the maxima
        w = lo if spare <= 0 else hi1
        if not bool((w > 0).all()):
            raise OptimisationError(method, "the weight bounds leave one portfolio, and it does not hold every asset")
        return w / w.sum()
    x = lo + (spare / room) * (hi1 - lo)  # strictly inside every bound pair that has room
    x = x / math.sqrt(float(x @ S @ x))

    def objective(v):
        return 0.5 * float(v @ S @ v) - float(b @ xp.log(v))

    zero = xp.zeros(1)
    A = xp.concatenate([xp.ones(n), -xp.ones(1)]).reshape(1, n + 1)
    lower = xp.zeros(n + 1)  # x_i >= lo_i k, and k >= 0
    upper = xp.concatenate([xp.where(hi < 1.0, 0.0, xp.inf), xp.full(1, xp.inf)])  # x_i <= hi_i k
    lower_scale = xp.concatenate([lo, zero])
    upper_scale = xp.concatenate([xp.where(hi < 1.0, hi, 0.0), zero])
    idx = xp.arange(n)
    f = objective(x)
    for _ in range(max_iterations):
        g = S @ x - b / x
        Q = xp.zeros((n + 1, n + 1))
        Q[:n, :n] = S
        Q[idx, idx] += b / (x * x)
        # the model's minimiser itself, not the step: the cone's rows are homogeneous in (x, k)
        c = xp.concatenate([-2.0 * b / x, zero])
        try:
            sol = solve_qp(Q, c, A, zero, lower=lower, upper=upper, scale_index=n, lower_scale=lower_scale,
                           upper_scale=upper_scale, max_iterations=max_iterations)
        except OptimisationError as e:
            raise OptimisationError(method, f"bounded Newton step: {e.reason}") from None
        dx = sol.x[:n] - x
        decrement2 = -float(g @ dx)
        if decrement2 <= tol:
            x = sol.x[:n] if bool((sol.x[:n] > 0).all()) else x
            return clip_to_bounds(x / x.sum(), lo, hi, xp)
        neg = dx < 0
        t = 1.0
        if bool(neg.any()):
            t = min(1.0, 0.99 * float(xp.min(-x[neg] / dx[neg])))
        while True:  # Armijo backtracking; x + t dx stays in the cone (a convex combination)
            xn = x + t * dx
            fn = objective(xn)
            if fn <= f - 0.25 * t * decrement2 or t < 1e-12:
                break
            t *= 0.5
        x, f = xn, fn
    raise OptimisationError(method, f"Newton's method within the weight bounds did not converge in "
                                    f"{max_iterations} iterations")
