"""Portfolio optimisers: mean-variance, Black-Litterman, risk budgeting, ensembles, fallbacks.

Implements:

- :func:`min_variance_weights`, :func:`max_sharpe_weights`, :func:`efficient_return_weights`,
  :func:`efficient_risk_weights`, :func:`max_utility_weights`: long-only (or bounded) fully
  invested mean-variance portfolios, the problems PyPortfolioOpt's ``EfficientFrontier`` solves
  (``min_volatility``, ``max_sharpe``, ``efficient_return``, ``efficient_risk``,
  ``max_quadratic_utility``), without cvxpy. One dense convex QP solver does the work
  (:func:`solve_qp`): a Mehrotra predictor-corrector interior-point method whose Newton systems are
  one Cholesky factorisation of an ``(n, n)`` matrix, followed by an active-set "polish" that
  solves the KKT system of the identified active bounds exactly and checks the KKT conditions, so
  a polished solution is optimal to rounding, not to an interior-point tolerance. Maximum Sharpe
  uses Cornuejols and Tutuncu's change of variables (``y = kappa w``: minimise ``y' S y`` subject
  to ``(mu - rf)' y = 1``, ``sum(y) = kappa``, ``min_w kappa <= y <= max_w kappa``), a convex QP.
  The efficient-risk problem (maximise return subject to a variance ceiling) is solved on the
  frontier: Brent's method finds the return target whose minimum-variance portfolio has the
  target volatility.
- :func:`market_implied_risk_aversion`, :func:`market_implied_prior_returns`,
  :func:`idzorek_omega`, :func:`black_litterman_posterior`, :func:`black_litterman_weights`:
  the Black-Litterman model in PyPortfolioOpt's formulas (``BlackLittermanModel``).
- :func:`risk_budget_weights`, :func:`risk_contributions`: long-only risk budgeting (equal risk
  contribution by default) by Spinu's convex formulation, minimise ``x' S x / 2 - b' log(x)``
  with a damped Newton method; the normalised solution's risk contributions equal the budgets.
  Within weight bounds that bind, the bounds scale with ``sum(x)`` (skfolio's bounded
  ``RiskBudgeting``), solved by Newton steps that are each a QP (:func:`solve_qp`).
- :func:`ensemble_weights`: a convex combination of several methods' portfolios (equal,
  inverse volatility, or by trailing Sharpe ratio).
- :func:`optimise_with_fallback`: the fallback chain max-Sharpe -> min-variance -> HRP -> equal
  weight (skfolio's model): each failure is an :class:`OptimisationError` with its reason, and
  the result records every method tried.

Conventions: ``expected_returns`` has shape ``(n_assets,)`` and ``covariance`` ``(n_assets,
n_assets)``, in the same period (daily returns with a daily covariance, or both annualised);
rates (``risk_free_rate``, ``target_return``) and ``target_volatility`` are in that period too.
Weights are fractions of capital that sum to 1. ``min_weights``/``max_weights`` are a scalar or
an ``(n_assets,)`` array (the default 0 and 1 is long-only). Inputs must be finite: NaN is an
error here, not a missing value (clean the returns before estimating moments). Arrays may be
NumPy or CuPy (``xp = namespace(x)``) everywhere except in HRP (:mod:`alphapulse.transforms.portfolio.hrp`, SciPy's
linkage on the CPU; the fallback chain runs it on a host copy and returns its weights on the
device); the matrices are small, so the CPU is the usual place for this module.

Failures are explicit: infeasible bounds or targets, a covariance that is not symmetric positive
definite, a solver that does not converge raise :class:`OptimisationError` naming the method
and the reason; nothing returns silently wrong weights.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from alphapulse.transforms.arrays import namespace, to_host
from alphapulse.transforms.covariance import cholesky_lower_or_none

__all__ = [
    "OptimisationError", "QPSolution", "solve_qp",
    "min_variance_weights", "max_sharpe_weights", "efficient_return_weights", "efficient_risk_weights",
    "max_utility_weights", "portfolio_volatility",
    "market_implied_risk_aversion", "market_implied_prior_returns", "absolute_views_picking",
    "idzorek_omega", "default_omega", "black_litterman_posterior", "black_litterman_weights",
    "risk_budget_weights", "risk_contributions",
    "ENSEMBLE_METHODS", "ensemble_mixing_weights", "ensemble_weights", "METHODS", "Attempt", "FallbackResult", "DEFAULT_FALLBACK_CHAIN", "optimise_with_fallback",
]


class OptimisationError(RuntimeError):
    """An optimiser failed or its problem is infeasible.

    Attributes
    ----------
    method : str
        The method that failed (``"max_sharpe"``, ``"min_variance"``, ``"hrp"``, ...).
    reason : str
        Why, in words fit for a report.
    """

    def __init__(self, method: str, reason: str):
        super().__init__(f"{method}: {reason}")
        self.method = method
        self.reason = reason


# ---------------------------------------------------------------------------------------------
# Dense convex QP: interior point + active-set polish
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class QPSolution:
    """Solution of :func:`solve_qp`.

    Attributes
    ----------
    x : array of shape (n,)
        The minimiser.
    equality_multipliers : array of shape (m,)
        Multipliers ``y`` of ``A x = b`` (stationarity: ``Q x + c + A' y + G' lambda = 0``).
    iterations : int
        Interior-point iterations.
    polished : bool
        True when the active-set polish succeeded: ``x`` solves the KKT system of its active
        bounds exactly and satisfies every KKT condition to rounding.
    """

    x: object
    equality_multipliers: object
    iterations: int
    polished: bool


def _cholesky_solver(M, xp):
    """A function solving ``M X = B`` for symmetric positive definite ``M``; None if not PD."""
    if xp is np:
        import scipy.linalg as sla

        try:
            factor = sla.cho_factor(M, lower=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return None
        return lambda B: sla.cho_solve(factor, B, check_finite=False)
    L = cholesky_lower_or_none(M, xp=xp)  # CuPy returns a partial factor instead of raising
    if L is None:
        return None
    import cupyx.scipy.linalg as cla  # noqa: PLC0415 (GPU only)

    return lambda B: cla.solve_triangular(L, cla.solve_triangular(L, B, lower=True), lower=True, trans="T")


class _BoundRows:
    """The inequality rows of :func:`solve_qp`, stored as vectors, never as a dense matrix.

    Row kinds: a lower row on variable i reads ``x_i >= lo_i + ls_i x_s`` and an upper row
    ``x_i <= up_i + us_i x_s``, with ``s`` the optional scale variable (``ls_i = us_i = 0`` when
    there is none). Written ``G x <= h``: lower rows ``-x_i + ls_i x_s <= -lo_i``, upper rows
    ``x_i - us_i x_s <= up_i``.
    """

    def __init__(self, n, lower, upper, scale_index, lower_scale, upper_scale, xp):
        self.xp = xp
        self.n = n
        self.s = scale_index
        self.L = xp.nonzero(xp.isfinite(lower))[0]
        self.U = xp.nonzero(xp.isfinite(upper))[0]
        self.lo = lower[self.L]
        self.up = upper[self.U]
        zeros = xp.zeros(n, dtype=lower.dtype)
        self.ls = (zeros if lower_scale is None else lower_scale)[self.L]
        self.us = (zeros if upper_scale is None else upper_scale)[self.U]
        self.nL = int(self.L.shape[0])
        self.nU = int(self.U.shape[0])
        self.m = self.nL + self.nU

    def h(self):
        return self.xp.concatenate([-self.lo, self.up])

    def G(self, x):
        """``G x`` as one vector (lower rows, then upper rows)."""
        xs = x[self.s] if self.s is not None else 0.0
        return self.xp.concatenate([-x[self.L] + self.ls * xs, x[self.U] - self.us * xs])

    def Gt(self, v):
        """``G' v``."""
        xp = self.xp
        vL, vU = v[:self.nL], v[self.nL:]
        r = xp.zeros(self.n, dtype=v.dtype)
        r[self.L] -= vL
        r[self.U] += vU
        if self.s is not None:
            r[self.s] += self.ls @ vL - self.us @ vU
        return r

    def add_GtWG(self, M, w):
        """``M += G' diag(w) G`` in place."""
        xp = self.xp
        wL, wU = w[:self.nL], w[self.nL:]
        idx = xp.arange(self.n)
        d = xp.zeros(self.n, dtype=M.dtype)
        d[self.L] += wL
        d[self.U] += wU
        M[idx, idx] += d
        if self.s is not None:
            col = xp.zeros(self.n, dtype=M.dtype)
            col[self.L] -= wL * self.ls
            col[self.U] -= wU * self.us
            M[:, self.s] += col
            M[self.s, :] += col
            M[self.s, self.s] += wL @ (self.ls * self.ls) + wU @ (self.us * self.us)


def solve_qp(Q, c, A, b, *, lower, upper, scale_index=None, lower_scale=None, upper_scale=None,
             tol=1e-10, max_iterations=100, polish=True, polish_gap=1e-9):
    r"""Solve a dense convex QP with bound rows (optionally scaled by one variable).

    .. math::
        \min_x \tfrac12 x^\top Q x + c^\top x \quad\text{s.t.}\quad A x = b,\quad
        lo_i + ls_i x_s \le x_i \le up_i + us_i x_s

    Mehrotra's predictor-corrector interior-point method on the KKT conditions (infeasible
    start); each iteration factors ``Q + G' W G`` (``W`` the barrier's diagonal weights; the bound
    rows make it diagonal plus the scale variable's row and column) once by Cholesky and solves
    the ``m x m`` Schur complement of the equality rows. Once the average complementarity drops
    below ``polish_gap`` (and at convergence) the iterate is polished (``polish=True``): the
    active set is read off it (a row is active when its multiplier exceeds its slack), the
    equality-constrained QP on that set is solved directly, and the result is accepted only when
    it satisfies every KKT condition (feasible rows, nonnegative multipliers) to rounding, after
    at most one (five at convergence) primal-dual active-set corrections. A point that passes
    these checks is optimal however it was reached, so polishing early saves iterations and
    sidesteps the ill-conditioning of the last interior-point iterations (a scaled bound row with
    a huge barrier weight makes ``Q + G' W G`` nearly rank-deficient in rounding; the Cholesky
    factorisation is then regularised relative to the matrix's scale).

    Parameters
    ----------
    Q : array of shape (n, n)
        Symmetric positive semidefinite; with the bound rows and ``A`` it must make the problem
        strictly convex on the feasible set for the polish to apply (it does for every problem
        in this module).
    c : array of shape (n,)
    A : array of shape (m, n)
        Equality rows, ``m >= 1`` (and small: a Schur complement of size ``m`` is solved).
    b : array of shape (m,)
    lower, upper : arrays of shape (n,)
        ``lo`` and ``up``; ``-inf``/``inf`` where a variable has no such bound.
    scale_index : int, optional
        ``s``: the variable that scales the bounds (max-Sharpe's ``kappa``); None for plain bounds.
    lower_scale, upper_scale : arrays of shape (n,), optional
        ``ls`` and ``us`` (zero at ``s`` itself); None for zeros.
    tol : float, default 1e-10
        Interior-point stopping tolerance on the scaled residuals and the complementarity gap.
    max_iterations : int, default 100
    polish : bool, default True
    polish_gap : float, default 1e-9
        Average complementarity (of the objective scaled to ``max(diag(Q)) = 1``) below which a
        polish is attempted at every iteration.

    Returns
    -------
    QPSolution

    Raises
    ------
    OptimisationError
        ``method="qp"``: no convergence within ``max_iterations`` (infeasible or unbounded
        problems end here), or a Newton system that stays singular after regularisation
        (unless the polish already certifies the current iterate).
    """
    xp = namespace(Q, c, A, b)
    dtype = np.float64
    Q = xp.asarray(Q, dtype=dtype)
    c = xp.asarray(c, dtype=dtype)
    A = xp.asarray(A, dtype=dtype).reshape(-1, Q.shape[0])
    b = xp.asarray(b, dtype=dtype).reshape(-1)
    n = Q.shape[0]
    lower = xp.asarray(lower, dtype=dtype)
    upper = xp.asarray(upper, dtype=dtype)
    if lower_scale is not None:
        lower_scale = xp.asarray(lower_scale, dtype=dtype)
    if upper_scale is not None:
        upper_scale = xp.asarray(upper_scale, dtype=dtype)
    rows = _BoundRows(n, lower, upper, scale_index, lower_scale, upper_scale, xp)

    # Scale the objective so that Q's largest diagonal entry is 1 (covariances of daily returns
    # are ~1e-4): tolerances then mean the same at any units. Multipliers are unscaled at the end.
    qscale = float(xp.max(xp.abs(xp.diagonal(Q)))) if n else 1.0
    if not qscale > 0:
        qscale = max(float(xp.max(xp.abs(c))), 1.0)
    Qs, cs = Q / qscale, c / qscale
    h = rows.h()
    idx = xp.arange(n)

    def factor(w):
        M = Qs.copy()
        rows.add_GtWG(M, w)
        top = float(xp.max(xp.diagonal(M)))
        solver = _cholesky_solver(M, xp)
        reg = 1e-15 * top
        while solver is None and reg <= 1e-7 * top:
            # Late iterations make W huge on active rows; a scaled row's block is then nearly
            # rank one and the Cholesky can break down in rounding: regularise relative to M.
            M[idx, idx] += reg
            solver = _cholesky_solver(M, xp)
            reg *= 100
        if solver is None:
            return None
        MinvAt = solver(A.T)
        S = A @ MinvAt
        return solver, MinvAt, S

    def newton(solver, MinvAt, S, rhs1, rp):
        u = solver(rhs1)
        try:
            dy = xp.linalg.solve(S, A @ u + rp)
        except np.linalg.LinAlgError:  # equality rows dependent in rounding: least squares
            dy = None
        if dy is None or not bool(xp.isfinite(dy).all()):  # CuPy returns inf/NaN instead of raising
            dy = xp.linalg.lstsq(S, A @ u + rp, rcond=None)[0]
        return u - MinvAt @ dy, dy

    # Starting point (CVXOPT's): minimise x'Qx/2 + c'x + |h - Gx|^2/2 subject to Ax = b, then
    # shift slacks and multipliers into the positive orthant.
    if rows.m == 0:
        factored = factor(xp.zeros(0, dtype=dtype))
        if factored is None:
            raise OptimisationError("qp", "the KKT system is singular (is the objective strictly convex?)")
        x, y = newton(*factored, -cs, -b)
        return QPSolution(x=x, equality_multipliers=y * qscale, iterations=0, polished=True)
    factored = factor(xp.ones(rows.m, dtype=dtype))
    if factored is None:
        raise OptimisationError("qp", "the starting point's Newton system is not positive definite (is Q PSD?)")
    x, y = newton(*factored, -cs + rows.Gt(h), -b)
    # newton solves M dx + A'dy = rhs, A dx = -rp: with rp = -b, A x = b.
    z = h - rows.G(x)
    lam = -z.copy()
    for v in (z, lam):
        shift = -float(xp.min(v))
        if shift >= 0:
            v += 1.0 + shift
    norm_c = 1.0 + float(xp.max(xp.abs(cs)))
    norm_b = 1.0 + float(xp.max(xp.abs(b)))
    norm_h = 1.0 + float(xp.max(xp.abs(h)))

    def max_step(v, dv):
        neg = dv < 0
        if not bool(neg.any()):
            return 1.0
        return min(1.0, float(xp.min(-v[neg] / dv[neg])))

    iterations = 0
    last = None  # (x, y, iterations) of the last iterate that met the tolerances
    extra = 0
    breakdown = False
    reason = f"the interior-point solver did not converge in {max_iterations} iterations"
    for iterations in range(1, max_iterations + 1):
        rd = Qs @ x + cs + A.T @ y + rows.Gt(lam)
        rp = A @ x - b
        ri = rows.G(x) + z - h
        mu = float(z @ lam) / rows.m
        small = (float(xp.max(xp.abs(rd))) <= tol * norm_c and float(xp.max(xp.abs(rp))) <= tol * norm_b
                 and float(xp.max(xp.abs(ri))) <= tol * norm_h)
        converged = small and mu <= tol
        if polish and (converged or mu <= polish_gap):
            # A polished point that passes the KKT checks is optimal however it was reached.
            polished = _polish(Qs, cs, A, b, rows, x, z, lam, xp, corrections=5 if converged else 1)
            if polished is not None:
                return QPSolution(x=polished[0], equality_multipliers=polished[1] * qscale,
                                  iterations=iterations, polished=True)
        if converged:
            # Optimal to tolerance but not certified: keep iterating (a few times) so the active
            # set separates (slack << multiplier) and the polish can certify a point.
            last = (x, y, iterations)
            extra += 1
            if not polish or extra > 8:
                break
        w = lam / z
        factored = factor(w)
        if factored is None:
            reason = "the Newton system became numerically singular before convergence"
            breakdown = True
            break
        solver, MinvAt, S = factored

        def direction(rc):
            # dlam = (lam*ri - rc)/z + W G dx ; dz = -ri - G dx
            t = (lam * ri - rc) / z
            dx, dy = newton(solver, MinvAt, S, -rd - rows.Gt(t), rp)
            Gdx = rows.G(dx)
            dz = -ri - Gdx
            dlam = t + w * Gdx
            return dx, dy, dz, dlam

        dx, dy, dz, dlam = direction(z * lam)
        alpha = min(max_step(z, dz), max_step(lam, dlam))
        mu_aff = float((z + alpha * dz) @ (lam + alpha * dlam)) / rows.m
        sigma = (mu_aff / mu) ** 3 if mu > 0 else 0.0
        dx, dy, dz, dlam = direction(z * lam + dz * dlam - sigma * mu)
        alpha = min(1.0, 0.99 * min(max_step(z, dz), max_step(lam, dlam)))
        x = x + alpha * dx
        y = y + alpha * dy
        z = z + alpha * dz
        lam = lam + alpha * dlam
        if not (bool(xp.isfinite(x).all()) and bool(xp.isfinite(lam).all())):
            reason = "the interior-point iterates diverged"
            break
    if polish and breakdown and bool(xp.isfinite(x).all()):
        polished = _polish(Qs, cs, A, b, rows, x, z, lam, xp, corrections=5)
        if polished is not None:
            return QPSolution(x=polished[0], equality_multipliers=polished[1] * qscale, iterations=iterations,
                              polished=True)
    if last is not None:
        return QPSolution(x=last[0], equality_multipliers=last[1] * qscale, iterations=last[2], polished=False)
    raise OptimisationError("qp", reason + " (the problem may be infeasible, unbounded or badly scaled)")


def _polish(Q, c, A, b, rows, x, z, lam, xp, *, corrections):
    """Solve the KKT system of the active set read off an interior solution, check optimality.

    Returns (x, y) or None when no active set within ``corrections`` primal-dual active-set
    updates satisfies the KKT conditions to rounding.
    """
    n, s = rows.n, rows.s
    activeL = lam[:rows.nL] > z[:rows.nL]
    activeU = lam[rows.nL:] > z[rows.nL:]
    scale = 1.0 + float(xp.max(xp.abs(x)))
    for _ in range(corrections + 1):
        # A variable fixed by both of its rows (lower == upper) keeps the lower one.
        fixed_by_lower = xp.zeros(n, dtype=bool)
        fixed_by_lower[rows.L[activeL]] = True
        activeU = activeU & ~fixed_by_lower[rows.U]
        fixed = xp.zeros(n, dtype=bool)
        const = xp.zeros(n, dtype=Q.dtype)
        coef = xp.zeros(n, dtype=Q.dtype)
        iL, iU = rows.L[activeL], rows.U[activeU]
        fixed[iL] = True
        fixed[iU] = True
        const[iL] = rows.lo[activeL]
        const[iU] = rows.up[activeU]
        coef[iL] = rows.ls[activeL]
        coef[iU] = rows.us[activeU]
        s_fixed = s is not None and bool(fixed[s])
        if s is not None and s_fixed:
            const = const + coef * const[s]
            coef = coef * 0.0
        free = xp.nonzero(~fixed)[0]
        nf = int(free.shape[0])
        T = xp.zeros((n, nf), dtype=Q.dtype)
        T[free, xp.arange(nf)] = 1.0
        if s is not None and not s_fixed:
            ks = int(xp.nonzero(free == s)[0][0])
            T[:, ks] += xp.where(fixed, coef, 0.0)
        t0 = xp.where(fixed, const, 0.0)
        m = A.shape[0]
        QT = Q @ T
        K = xp.zeros((nf + m, nf + m), dtype=Q.dtype)
        K[:nf, :nf] = T.T @ QT
        AT = A @ T
        K[:nf, nf:] = AT.T
        K[nf:, :nf] = AT
        rhs = xp.concatenate([-(T.T @ (Q @ t0 + c)), b - A @ t0])
        try:
            sol = xp.linalg.solve(K, rhs)
            ok = bool(xp.isfinite(sol).all())
        except np.linalg.LinAlgError:
            ok = False
        if not ok:
            # Singular KKT matrix: the active rows and A are dependent (degenerate vertex, e.g.
            # every weight on a bound with the budget row redundant). Release the active row
            # with the smallest interior-point multiplier (the weakly active one) and retry.
            active = xp.concatenate([activeL, activeU])
            if not bool(active.any()):
                return None
            k = int(xp.argmin(xp.where(active, lam, np.inf)))
            active[k] = False
            activeL, activeU = active[:rows.nL], active[rows.nL:]
            continue
        xn = T @ sol[:nf] + t0
        yn = sol[nf:]
        grad = Q @ xn + c + A.T @ yn
        slack = rows.h() - rows.G(xn)
        # Multipliers of the active rows from stationarity (lower row on i: grad_i, upper: -grad_i).
        mult = xp.concatenate([xp.where(activeL, grad[rows.L], 0.0), xp.where(activeU, -grad[rows.U], 0.0)])
        ptol = 1e-12 * scale
        dtol = 1e-12 * (1.0 + float(xp.max(xp.abs(grad))) + float(xp.max(xp.abs(c))))
        infeasible = slack < -ptol
        wrong_sign = mult < -dtol
        if not bool(infeasible.any()) and not bool(wrong_sign.any()):
            # Put the active rows exactly on their bounds (the solve holds them to rounding).
            return xn, yn
        active = xp.concatenate([activeL, activeU])
        active = (active & ~wrong_sign) | infeasible
        activeL, activeU = active[:rows.nL], active[rows.nL:]
    return None


# ---------------------------------------------------------------------------------------------
# Input checks shared by the optimisers
# ---------------------------------------------------------------------------------------------

def _as_bounds(value, n, name, xp):
    arr = xp.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = xp.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or an array of shape ({n},), got shape {tuple(arr.shape)}")
    if bool(xp.isnan(arr).any()):
        raise ValueError(f"{name} contains NaN")
    return arr


def _check_bounds(method, min_weights, max_weights, xp):
    if bool((min_weights > max_weights).any()):
        i = int(xp.nonzero(min_weights > max_weights)[0][0])
        raise OptimisationError(method, f"min_weights exceed max_weights (asset {i}: "
                                        f"{float(min_weights[i]):.6g} > {float(max_weights[i]):.6g})")
    lo, hi = float(min_weights.sum()), float(max_weights.sum())
    if lo > 1.0 + 1e-12 or hi < 1.0 - 1e-12:
        raise OptimisationError(method, f"the weight bounds exclude full investment: the minimum weights sum to "
                                        f"{lo:.6g} and the maximum weights to {hi:.6g}, and 1 must lie between")


def _check_covariance(method, covariance, xp):
    """Validate a covariance: square, finite, symmetric, positive definite (not singular)."""
    cov = xp.asarray(covariance, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must have shape (n_assets, n_assets), got {tuple(cov.shape)}")
    if not bool(xp.isfinite(cov).all()):
        raise OptimisationError(method, "the covariance has NaN or infinite entries")
    scale = float(xp.max(xp.abs(cov)))
    if float(xp.max(xp.abs(cov - cov.T))) > 1e-10 * scale:
        raise OptimisationError(method, "the covariance is not symmetric")
    cov = (cov + cov.T) / 2
    if not scale > 0:
        raise OptimisationError(method, "the covariance is zero")
    n = cov.shape[0]
    solver = _cholesky_solver(cov, xp)
    rcond = None
    if solver is not None and xp is np:
        import scipy.linalg as sla
        from scipy.linalg import lapack

        c, _ = sla.cho_factor(cov, lower=True, check_finite=False)
        anorm = float(np.abs(cov).sum(axis=0).max())
        rcond, _ = lapack.dpocon(c, anorm, uplo="L")
        rcond = float(rcond)
    elif solver is not None:
        # CuPy has no pocon: the same 1-norm reciprocal condition, exactly, from the inverse
        # (LAPACK's is an estimate of it). Without it a singular covariance whose Cholesky
        # factorisation happens to succeed would pass on the GPU.
        inv = solver(xp.eye(n))
        rcond = 1.0 / (float(xp.abs(cov).sum(axis=0).max()) * float(xp.abs(inv).sum(axis=0).max()))
    if solver is None or (rcond is not None and not rcond >= n * np.finfo(float).eps):
        ev = xp.linalg.eigvalsh(cov)
        lo, hi = float(ev[0]), float(ev[-1])
        if lo < -n * np.finfo(float).eps * hi:
            raise OptimisationError(method, f"the covariance is not positive semidefinite (smallest eigenvalue "
                                            f"{lo:.3g}, largest {hi:.3g})")
        rank = int((ev > n * np.finfo(float).eps * hi).sum())
        raise OptimisationError(method, f"the covariance is singular (numerical rank {rank} of {n}; smallest "
                                        f"eigenvalue {lo:.3g}, largest {hi:.3g}): use a shrinkage estimate such as "
                                        "Ledoit-Wolf")
    return cov


def _check_returns(method, expected_returns, n, xp):
    mu = xp.asarray(expected_returns, dtype=np.float64).reshape(-1)
    if mu.shape != (n,):
        raise ValueError(f"expected_returns must have shape ({n},), got {tuple(mu.shape)}")
    if not bool(xp.isfinite(mu).all()):
        raise OptimisationError(method, "the expected returns have NaN or infinite entries")
    return mu


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


def _prepare(method, covariance, min_weights, max_weights, expected_returns=None):
    xp = namespace(covariance, expected_returns)
    cov = _check_covariance(method, covariance, xp)
    n = cov.shape[0]
    lo = _as_bounds(min_weights, n, "min_weights", xp)
    hi = _as_bounds(max_weights, n, "max_weights", xp)
    _check_bounds(method, lo, hi, xp)
    mu = None if expected_returns is None else _check_returns(method, expected_returns, n, xp)
    return xp, cov, lo, hi, mu


def _finish(w, lo, hi, xp):
    """Clip rounding-level bound violations (the polish holds active rows to rounding)."""
    return xp.clip(w, lo, hi)


def _solve_budget_qp(method, cov, linear, lo, hi, xp, *, extra_row=None, extra_rhs=None, max_iterations):
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
        sol = solve_qp(cov, linear, A, b, lower=lo, upper=hi, max_iterations=max_iterations)
    except OptimisationError as e:
        raise OptimisationError(method, e.reason) from None
    return sol


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


# ---------------------------------------------------------------------------------------------
# Mean-variance
# ---------------------------------------------------------------------------------------------

def min_variance_weights(covariance, *, min_weights=0.0, max_weights=1.0, max_iterations=100):
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
    sol = _solve_budget_qp(method, cov, xp.zeros(cov.shape[0]), lo, hi, xp, max_iterations=max_iterations)
    return _finish(sol.x, lo, hi, xp)


def max_utility_weights(expected_returns, covariance, *, risk_aversion=1.0, min_weights=0.0, max_weights=1.0,
                        max_iterations=100):
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

    Returns
    -------
    weights : array of shape (n_assets,)
    """
    method = "max_utility"
    if not risk_aversion > 0:
        raise ValueError(f"risk_aversion must be positive, got {risk_aversion}")
    xp, cov, lo, hi, mu = _prepare(method, covariance, min_weights, max_weights, expected_returns)
    sol = _solve_budget_qp(method, risk_aversion * cov, -mu, lo, hi, xp, max_iterations=max_iterations)
    return _finish(sol.x, lo, hi, xp)


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
        return _finish(w_mv, lo, hi, xp)
    sol = _solve_budget_qp(method, cov, xp.zeros(cov.shape[0]), lo, hi, xp, extra_row=mu, extra_rhs=target,
                           max_iterations=max_iterations)
    return _finish(sol.x, lo, hi, xp)


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
        return _finish(w_mv, lo, hi, xp)
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
    return _finish(w, lo, hi, xp)


def max_sharpe_weights(expected_returns, covariance, *, risk_free_rate=0.0, min_weights=0.0, max_weights=1.0,
                       max_iterations=100):
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
        raise OptimisationError(method, f"no feasible portfolio has an expected return above the risk-free rate "
                                        f"{float(risk_free_rate):.6g} (the best earns {best + float(risk_free_rate):.6g})")
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
        sol = solve_qp(Q, xp.zeros(n + 1), A, b, lower=lower, upper=upper, scale_index=n,
                       lower_scale=lower_scale, upper_scale=upper_scale, max_iterations=max_iterations)
    except OptimisationError as e:
        raise OptimisationError(method, e.reason) from None
    y = sol.x[:n]
    kappa = float(y.sum())
    if not kappa > 0:
        raise OptimisationError(method, "the transformed problem returned a non-positive scale (kappa)")
    return _finish(y / kappa, lo, hi, xp)


# ---------------------------------------------------------------------------------------------
# Black-Litterman
# ---------------------------------------------------------------------------------------------

def market_implied_risk_aversion(market_prices, *, periods_per_year=252, risk_free_rate=0.0):
    """Market price of risk ``delta = (R - rf) / sigma^2`` from a market price series.

    PyPortfolioOpt's ``market_implied_risk_aversion``: simple returns of consecutive prices
    (pairs with a NaN dropped), their mean and variance (``ddof=1``) annualised by
    ``periods_per_year``.

    Parameters
    ----------
    market_prices : array of shape (n_observations,)
        Prices of the market portfolio (e.g. an index), oldest first.
    periods_per_year : int, default 252
    risk_free_rate : float, default 0
        Annualised.

    Returns
    -------
    float
    """
    xp = namespace(market_prices)
    p = xp.asarray(market_prices, dtype=np.float64).reshape(-1)
    r = p[1:] / p[:-1] - 1.0
    r = r[xp.isfinite(r)]
    if r.shape[0] < 2:
        raise ValueError("market_prices must give at least two finite returns")
    return (float(r.mean()) * periods_per_year - risk_free_rate) / (float(r.var(ddof=1)) * periods_per_year)


def market_implied_prior_returns(market_caps, covariance, *, risk_aversion, risk_free_rate=0.0):
    """Equilibrium (prior) returns ``pi = delta S w_mkt + rf`` with ``w_mkt = caps / sum(caps)``.

    PyPortfolioOpt's ``market_implied_prior_returns``. Equal market caps give the equal-weight
    market's prior.

    Parameters
    ----------
    market_caps : array of shape (n_assets,)
        Market capitalisations (any unit) or market weights.
    covariance : array of shape (n_assets, n_assets)
    risk_aversion : float
        ``delta``, see :func:`market_implied_risk_aversion`.
    risk_free_rate : float, default 0
        In the covariance's period.

    Returns
    -------
    prior_returns : array of shape (n_assets,)
    """
    xp = namespace(market_caps, covariance)
    caps = xp.asarray(market_caps, dtype=np.float64)
    return risk_aversion * (xp.asarray(covariance, dtype=np.float64) @ (caps / caps.sum())) + risk_free_rate


def absolute_views_picking(asset_indices, *, n_assets):
    """Picking matrix ``P`` of absolute views: row k selects asset ``asset_indices[k]``.

    Parameters
    ----------
    asset_indices : sequence of int, length n_views
    n_assets : int

    Returns
    -------
    picking : array of shape (n_views, n_assets)
        Relative views are rows with a +1 and a -1 (or any weights), written directly.
    """
    idx = np.asarray(asset_indices, dtype=np.int64).reshape(-1)
    P = np.zeros((idx.shape[0], n_assets))
    P[np.arange(idx.shape[0]), idx] = 1.0
    return P


def default_omega(covariance, picking, *, tau):
    """He and Litterman's view uncertainty ``diag(tau P S P')`` (PyPortfolioOpt's default).

    Returns
    -------
    omega : array of shape (n_views, n_views)
    """
    xp = namespace(covariance, picking)
    P = xp.asarray(picking, dtype=np.float64)
    return xp.diag(xp.diagonal(tau * P @ covariance @ P.T))


def idzorek_omega(view_confidences, covariance, picking, *, tau):
    """Idzorek's view uncertainties from confidences in [0, 1], in Walters' closed form:
    ``omega_k = tau (1 - c_k) / c_k * p_k' S p_k``; a zero confidence gives ``1e6``.

    PyPortfolioOpt's ``BlackLittermanModel.idzorek_method``.

    Parameters
    ----------
    view_confidences : array of shape (n_views,)
        1 is certainty (``omega = 0``), 0 no confidence.
    covariance : array of shape (n_assets, n_assets)
    picking : array of shape (n_views, n_assets)
    tau : float

    Returns
    -------
    omega : array of shape (n_views, n_views)
        Diagonal.
    """
    xp = namespace(covariance, picking)
    conf = xp.asarray(view_confidences, dtype=np.float64).reshape(-1)
    if bool(((conf < 0) | (conf > 1)).any()):
        raise ValueError("view confidences must be between 0 and 1")
    P = xp.asarray(picking, dtype=np.float64)
    view_var = xp.einsum("ki,ij,kj->k", P, xp.asarray(covariance, dtype=np.float64), P)
    safe = xp.where(conf == 0, 1.0, conf)
    return xp.diag(xp.where(conf == 0, 1e6, tau * ((1 - safe) / safe) * view_var))


def black_litterman_posterior(prior_returns, covariance, *, picking, views, omega=None, tau=0.05):
    r"""Black-Litterman posterior returns and covariance (PyPortfolioOpt's ``bl_returns`` and
    ``bl_cov``, He and Litterman's form).

    .. math::
        \mu_{BL} = \pi + \tau S P^\top (P \tau S P^\top + \Omega)^{-1} (Q - P \pi), \qquad
        S_{BL} = S + \tau S - \tau S P^\top (P \tau S P^\top + \Omega)^{-1} P \tau S

    Parameters
    ----------
    prior_returns : array of shape (n_assets,)
        ``pi`` (e.g. :func:`market_implied_prior_returns`), in the covariance's period.
    covariance : array of shape (n_assets, n_assets)
    picking : array of shape (n_views, n_assets)
        ``P``: absolute views are unit rows (:func:`absolute_views_picking`), relative views
        rows such as +1 on one asset and -1 on another.
    views : array of shape (n_views,)
        ``Q``: each view's expected return, in the covariance's period.
    omega : array of shape (n_views, n_views), optional
        View uncertainty; default :func:`default_omega`. Use :func:`idzorek_omega` for
        confidences.
    tau : float, default 0.05
        Scales the prior's uncertainty, ``0 < tau <= 1``.

    Returns
    -------
    posterior_returns : array of shape (n_assets,)
    posterior_covariance : array of shape (n_assets, n_assets)
    """
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau}")
    xp = namespace(prior_returns, covariance, picking, views)
    S = xp.asarray(covariance, dtype=np.float64)
    P = xp.asarray(picking, dtype=np.float64).reshape(-1, S.shape[0])
    Q = xp.asarray(views, dtype=np.float64).reshape(-1, 1)
    pi = xp.asarray(prior_returns, dtype=np.float64).reshape(-1, 1)
    if Q.shape[0] != P.shape[0]:
        raise ValueError(f"views has {Q.shape[0]} entries but picking {P.shape[0]} rows")
    om = default_omega(S, P, tau=tau) if omega is None else xp.asarray(omega, dtype=np.float64)
    tau_sigma_P = tau * S @ P.T
    A = P @ tau_sigma_P + om
    rhs = xp.concatenate([Q - P @ pi, tau_sigma_P.T], axis=1)
    try:
        sol = xp.linalg.solve(A, rhs)
    except np.linalg.LinAlgError:
        sol = None
    if sol is None or not bool(xp.isfinite(sol).all()):
        # PyPortfolioOpt's fallback for a singular A (CuPy gives inf/NaN instead of raising)
        sol = xp.linalg.lstsq(A, rhs, rcond=None)[0]
    post = pi + tau_sigma_P @ sol[:, :1]
    post_cov = S + (tau * S - tau_sigma_P @ sol[:, 1:])
    return post.reshape(-1), post_cov


def black_litterman_weights(posterior_returns, covariance, *, risk_aversion=1.0):
    """Unconstrained weights implied by returns, ``(delta S)^{-1} mu`` normalised to sum 1.

    PyPortfolioOpt's ``BlackLittermanModel.bl_weights`` (which uses the prior covariance ``S``,
    not the posterior). Weights may be negative; for a long-only, bounded portfolio of the
    posterior use the mean-variance optimisers (e.g. :func:`max_sharpe_weights` or
    :func:`max_utility_weights` of the posterior returns and covariance).

    Parameters
    ----------
    posterior_returns : array of shape (n_assets,)
    covariance : array of shape (n_assets, n_assets)
    risk_aversion : float, default 1
        Cancels in the normalisation; kept for PyPortfolioOpt's signature.

    Returns
    -------
    weights : array of shape (n_assets,)

    Raises
    ------
    OptimisationError
        ``method="black_litterman"``: a singular covariance, or raw weights summing to zero.
    """
    xp = namespace(posterior_returns, covariance)
    S = xp.asarray(covariance, dtype=np.float64)
    try:
        raw = xp.linalg.solve(risk_aversion * S, xp.asarray(posterior_returns, dtype=np.float64))
    except np.linalg.LinAlgError:
        raw = None
    if raw is None or not bool(xp.isfinite(raw).all()):  # CuPy gives inf/NaN instead of raising
        raise OptimisationError("black_litterman", "the covariance is singular") from None
    total = float(raw.sum())
    if total == 0 or not math.isfinite(total):
        raise OptimisationError("black_litterman", "the implied raw weights sum to zero: they cannot be normalised")
    return raw / total


# ---------------------------------------------------------------------------------------------
# Risk budgeting
# ---------------------------------------------------------------------------------------------

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
                        max_iterations=100):
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
    S = _check_covariance(method, covariance, xp)
    n = S.shape[0]
    # long-only: a negative minimum cannot bind, a zero one is the log's own bound
    lo = xp.maximum(_as_bounds(min_weights, n, "min_weights", xp), 0.0)
    hi = _as_bounds(max_weights, n, "max_weights", xp)
    _check_bounds(method, lo, hi, xp)
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
        solver = _cholesky_solver(H, xp)  # H is positive definite: S is, and b / x^2 > 0
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
            return _finish(x / x.sum(), lo, hi, xp)
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


# ---------------------------------------------------------------------------------------------
# Ensembles
# ---------------------------------------------------------------------------------------------

ENSEMBLE_METHODS = ("equal", "inverse_volatility", "adaptive")


def ensemble_mixing_weights(component_weights, *, method="equal", covariance=None, returns=None,
                            periods_per_year=252):
    """How much of each component portfolio an ensemble holds (nonnegative, summing to 1).

    Parameters
    ----------
    component_weights : array of shape (n_components, n_assets)
        Each row a fully invested portfolio (rows sum to 1), e.g. HRP, min-variance, risk parity.
    method : {"equal", "inverse_volatility", "adaptive"}
        - ``"equal"``: ``1 / n_components`` each.
        - ``"inverse_volatility"``: proportional to ``1 / sigma_k`` of each component, ex ante
          ``sqrt(w_k' S w_k)`` when ``covariance`` is given, else the standard deviation
          (``ddof=1``) of its trailing returns ``returns @ w_k``.
        - ``"adaptive"``: proportional to ``max(Sharpe_k, 0)`` of the trailing returns
          ``returns @ w_k``; equal when no Sharpe ratio is positive.
    covariance : array of shape (n_assets, n_assets), optional
    returns : array of shape (n_observations, n_assets), optional
        Trailing per-period asset returns, finite. For ``"adaptive"`` these should be out of
        sample for the components (returns after the data the weights were estimated on).
    periods_per_year : int, default 252
        Annualises the Sharpe ratio (it only scales the mixing weights' inputs).

    Returns
    -------
    mixing : array of shape (n_components,)
    """
    xp = namespace(component_weights, covariance, returns)
    W = xp.asarray(component_weights, dtype=np.float64)
    if W.ndim != 2:
        raise ValueError("component_weights must have shape (n_components, n_assets)")
    k = W.shape[0]
    if bool((xp.abs(W.sum(axis=1) - 1.0) > 1e-8).any()):
        raise ValueError("every component portfolio must sum to 1")
    if method == "equal":
        return xp.full(k, 1.0 / k)
    if method == "inverse_volatility":
        if (covariance is None) == (returns is None):
            raise ValueError("inverse_volatility needs exactly one of covariance (ex ante) or returns (trailing)")
        if covariance is not None:
            vol = portfolio_volatility(W, xp.asarray(covariance, dtype=np.float64))
        else:
            vol = (xp.asarray(returns, dtype=np.float64) @ W.T).std(axis=0, ddof=1)
        if not bool(((vol > 0) & xp.isfinite(vol)).all()):
            raise ValueError("a component portfolio has zero or non-finite volatility")
        inv = 1.0 / vol
        return inv / inv.sum()
    if method == "adaptive":
        if returns is None:
            raise ValueError("adaptive mixing needs trailing returns")
        pr = xp.asarray(returns, dtype=np.float64) @ W.T
        if not bool(xp.isfinite(pr).all()):
            raise ValueError("returns must be finite")
        sd = pr.std(axis=0, ddof=1)
        sharpe = xp.where(sd > 0, pr.mean(axis=0) / xp.where(sd > 0, sd, 1.0), 0.0) * math.sqrt(periods_per_year)
        score = xp.maximum(sharpe, 0.0)
        total = float(score.sum())
        return xp.full(k, 1.0 / k) if total <= 0 else score / total
    raise ValueError(f"method must be one of {ENSEMBLE_METHODS}, got {method!r}")


def ensemble_weights(component_weights, *, method="equal", covariance=None, returns=None, periods_per_year=252):
    """The ensemble portfolio: ``mixing @ component_weights`` (see
    :func:`ensemble_mixing_weights`). It sums to 1 and is long-only when every component is.

    Returns
    -------
    weights : array of shape (n_assets,)
    """
    mix = ensemble_mixing_weights(component_weights, method=method, covariance=covariance, returns=returns,
                                  periods_per_year=periods_per_year)
    return mix @ namespace(component_weights).asarray(component_weights, dtype=np.float64)


# ---------------------------------------------------------------------------------------------
# Fallback chain
# ---------------------------------------------------------------------------------------------

DEFAULT_FALLBACK_CHAIN = ("max_sharpe", "min_variance", "hrp", "equal_weight")
"""skfolio's model chain: each method's failure hands over to the next."""

METHODS = ("max_sharpe", "min_variance", "efficient_return", "efficient_risk", "max_utility", "hrp",
           "risk_parity", "equal_weight")


@dataclass(frozen=True)
class Attempt:
    """One method tried by :func:`optimise_with_fallback`; ``error`` is None for the one that
    succeeded."""

    method: str
    error: str | None = None


@dataclass(frozen=True)
class FallbackResult:
    """Weights and the chain taken to them.

    Attributes
    ----------
    weights : array of shape (n_assets,)
    method : str
        The method whose weights these are.
    attempts : tuple of Attempt
        Every method tried, in order, each failure with its reason; the last is ``method``.
    """

    weights: object
    method: str
    attempts: tuple = field(default_factory=tuple)

    @property
    def fell_back(self) -> bool:
        """True when the requested method failed."""
        return len(self.attempts) > 1

    def records(self) -> list[dict]:
        """The chain as report rows: ``{"step", "method", "status", "reason"}``."""
        return [{"step": i, "method": a.method, "status": "ok" if a.error is None else "failed",
                 "reason": a.error or ""} for i, a in enumerate(self.attempts)]


def _run_method(method, *, covariance, expected_returns, risk_free_rate, min_weights, max_weights, target_return,
                target_volatility, risk_aversion, risk_budgets, linkage_method, max_iterations):
    needs_mu = ("max_sharpe", "efficient_return", "efficient_risk", "max_utility")
    if method in needs_mu and expected_returns is None:
        raise OptimisationError(method, "no expected returns were given")
    box = dict(min_weights=min_weights, max_weights=max_weights, max_iterations=max_iterations)
    if method == "max_sharpe":
        return max_sharpe_weights(expected_returns, covariance, risk_free_rate=risk_free_rate, **box)
    if method == "min_variance":
        return min_variance_weights(covariance, **box)
    if method == "efficient_return":
        if target_return is None:
            raise OptimisationError(method, "no target_return was given")
        return efficient_return_weights(expected_returns, covariance, target_return=target_return, **box)
    if method == "efficient_risk":
        if target_volatility is None:
            raise OptimisationError(method, "no target_volatility was given")
        return efficient_risk_weights(expected_returns, covariance, target_volatility=target_volatility, **box)
    if method == "max_utility":
        return max_utility_weights(expected_returns, covariance, risk_aversion=risk_aversion, **box)
    if method == "hrp":
        from alphapulse.transforms.portfolio.hrp import hrp_weights

        xp = namespace(covariance, expected_returns)
        if xp is np:
            return hrp_weights(covariance, linkage_method=linkage_method, min_weights=min_weights,
                               max_weights=max_weights)
        # HRP is CPU-only (SciPy's linkage) and raises TypeError on a CuPy array, which would end
        # the chain instead of falling back. The chain is the boundary: its n x n inputs go to
        # the host and the weights come back, so both backends take the same chain.
        w = hrp_weights(to_host(covariance), linkage_method=linkage_method, min_weights=_host_bound(min_weights),
                        max_weights=_host_bound(max_weights))
        return xp.asarray(w)
    if method == "risk_parity":
        return risk_budget_weights(covariance, risk_budgets=risk_budgets, **box)
    if method == "equal_weight":
        xp = namespace(covariance)
        n = xp.asarray(covariance).shape[0]
        return xp.full(n, 1.0 / n)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def _host_bound(value):
    """A weight bound (scalar or array, possibly on the device) on the host."""
    return value if np.isscalar(value) else to_host(value)


def optimise_with_fallback(method, *, covariance, expected_returns=None, risk_free_rate=0.0, min_weights=0.0,
                           max_weights=1.0, target_return=None, target_volatility=None, risk_aversion=1.0,
                           risk_budgets=None, linkage_method="single", fallbacks=None, max_iterations=100):
    """Run ``method``; on :class:`OptimisationError` try the fallbacks in turn, recording each.

    Parameters
    ----------
    method : str
        One of ``"max_sharpe"``, ``"min_variance"``, ``"efficient_return"``,
        ``"efficient_risk"``, ``"max_utility"``, ``"hrp"``, ``"risk_parity"``,
        ``"equal_weight"``.
    covariance : array of shape (n_assets, n_assets)
    expected_returns : array of shape (n_assets,), optional
        Needed by the return-aware methods (a missing one is a recorded failure).
    risk_free_rate, min_weights, max_weights, target_return, target_volatility, risk_aversion
        Passed to the methods that take them (see each optimiser); HRP and risk parity take the
        bounds too, equal weight ignores them.
    risk_budgets : array of shape (n_assets,), optional
        For ``"risk_parity"``.
    linkage_method : str, default "single"
        For ``"hrp"``.
    fallbacks : sequence of str, optional
        Methods to try after ``method`` fails. Default: the members of
        :data:`DEFAULT_FALLBACK_CHAIN` after ``method`` (max-Sharpe -> min-variance -> HRP ->
        equal weight), or ``("min_variance", "hrp", "equal_weight")`` for a method outside that
        chain. Equal weight cannot fail; it ignores the bounds.
    max_iterations : int, default 100
        The QP solvers' and risk parity's iteration limit.

    Returns
    -------
    FallbackResult
        ``attempts`` lists every method tried with its failure reason, so a report can show
        the chain taken.

    Raises
    ------
    OptimisationError
        When the last fallback fails too (possible only if the chain does not end with equal
        weight); the message lists every failure.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if fallbacks is None:
        if method in DEFAULT_FALLBACK_CHAIN:
            fallbacks = DEFAULT_FALLBACK_CHAIN[DEFAULT_FALLBACK_CHAIN.index(method) + 1:]
        else:
            fallbacks = ("min_variance", "hrp", "equal_weight")
    attempts = []
    for m in (method, *fallbacks):
        try:
            w = _run_method(m, covariance=covariance, expected_returns=expected_returns, risk_free_rate=risk_free_rate,
                            min_weights=min_weights, max_weights=max_weights, target_return=target_return,
                            target_volatility=target_volatility, risk_aversion=risk_aversion,
                            risk_budgets=risk_budgets, linkage_method=linkage_method, max_iterations=max_iterations)
        except OptimisationError as e:
            attempts.append(Attempt(m, e.reason))
            continue
        attempts.append(Attempt(m, None))
        return FallbackResult(weights=w, method=m, attempts=tuple(attempts))
    raise OptimisationError(method, "every method failed: " + "; ".join(f"{a.method}: {a.error}" for a in attempts))
