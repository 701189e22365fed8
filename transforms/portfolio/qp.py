"""The dense convex QP solver every mean-variance and bounded risk-budgeting problem goes through.

Implements :func:`solve_qp` (returning a :class:`QPSolution`): a Mehrotra predictor-corrector
interior-point method whose Newton systems are one Cholesky factorisation of an ``(n, n)``
matrix, followed by an active-set "polish" that solves the KKT system of the identified active
bounds exactly and checks the KKT conditions, so a polished solution is optimal to rounding, not
to an interior-point tolerance. Bound rows may be scaled by one variable (max-Sharpe's ``kappa``,
the bounded risk budget's ``sum(x)``); they are stored as vectors, never as a dense matrix.
Given a guess of the answer (``initial_x``: a walk-forward's previous rebalance), the polish runs
first from the bound rows the guess sits on (a warm start: no interior-point iteration when it
certifies a point, the cold start when it does not).

NumPy or CuPy (``xp = namespace(Q, ...)``). Failures raise
:class:`~alphapulse.transforms.errors.OptimisationError` with ``method="qp"``; callers re-raise
under their own method's name.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.checks import cholesky_solver

__all__ = ["QPSolution", "solve_qp"]


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
             tol=1e-10, max_iterations=100, polish=True, polish_gap=1e-9, initial_x=None,
             warm_corrections=10):
    r"""Solve a dense convex QP with bound rows (optionally scaled by one variable).

    .. math::
        \min_x \tfrac12 x^\top Q x + c^\top x \quad\text{s.t.}\quad A x = b,\quad
        lo_i + ls_i x_s \le x_i \le up_i + us_i x_s

    Mehrotra's predictor-corrector interior-point method on the KKT conditions (infeasible
    start; a centred step where a feasible iterate's corrected step would not lower the
    complementarity, on which Mehrotra's heuristic can cycle); each iteration factors
    ``Q + G' W G`` (``W`` the barrier's diagonal weights; the bound rows make it diagonal plus
    the scale variable's row and column) once by Cholesky and solves
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
    initial_x : array of shape (n,), optional
        A guess of the minimiser (a walk-forward's previous rebalance; NaN where unknown). The
        bound rows it meets (slack within ``1e-9 (1 + max|x|)``) seed the polish's active-set
        iteration before any interior-point iteration (a warm start). Its result is accepted
        only when it passes the same KKT checks as a polish after the interior-point method, so
        it is the same optimum (the same KKT system, solved the same way, whenever the active
        sets agree); when no active set within ``warm_corrections`` updates passes, the
        interior-point method runs from its usual cold start. ``iterations`` is 0 for a warm
        solution.
    warm_corrections : int, default 10
        Primal-dual active-set updates the warm start may take.

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
        solver = cholesky_solver(M, xp)
        reg = 1e-15 * top
        while solver is None and reg <= 1e-7 * top:
            # Late iterations make W huge on active rows; a scaled row's block is then nearly
            # rank one and the Cholesky can break down in rounding: regularise relative to M.
            M[idx, idx] += reg
            solver = cholesky_solver(M, xp)
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

    if polish and initial_x is not None and rows.m:
        guess = xp.asarray(initial_x, dtype=dtype).reshape(-1)
        if guess.shape != (n,):
            raise ValueError(f"initial_x must have shape ({n},), got {tuple(guess.shape)}")
        # Seeding the active set costs one small KKT solve per update where the interior-point
        # method factors an n x n matrix a dozen times: between rebalances only a few weights
        # enter or leave their bounds. NaN slacks compare False: an unknown entry starts free.
        finite = guess[xp.isfinite(guess)]
        gscale = 1.0 + (float(xp.max(xp.abs(finite))) if finite.shape[0] else 0.0)
        seeded = (h - rows.G(guess)) <= 1e-9 * gscale
        warm = _polish(Qs, cs, A, b, rows, seeded[:rows.nL], seeded[rows.nL:], xp, corrections=warm_corrections)
        if warm is not None:
            return QPSolution(x=warm[0], equality_multipliers=warm[1] * qscale, iterations=0, polished=True)

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
            polished = _interior_polish(Qs, cs, A, b, rows, x, z, lam, xp, corrections=5 if converged else 1)
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
        if small and float((z + alpha * dz) @ (lam + alpha * dlam)) / rows.m >= mu:
            # Feasible to tolerance, yet the corrected step does not lower the complementarity:
            # Mehrotra's heuristic can cycle there (a 7-asset max-Sharpe with shorts kept its gap
            # between 1e-4 and 3e-4 for all 100 iterations). A centred Newton step (sigma = 1/2,
            # no second-order term) restores centrality, and the iterations converge again.
            dx, dy, dz, dlam = direction(z * lam - 0.5 * mu)
            alpha = min(1.0, 0.99 * min(max_step(z, dz), max_step(lam, dlam)))
        x = x + alpha * dx
        y = y + alpha * dy
        z = z + alpha * dz
        lam = lam + alpha * dlam
        if not (bool(xp.isfinite(x).all()) and bool(xp.isfinite(lam).all())):
            reason = "the interior-point iterates diverged"
            break
    if polish and breakdown and bool(xp.isfinite(x).all()):
        polished = _interior_polish(Qs, cs, A, b, rows, x, z, lam, xp, corrections=5)
        if polished is not None:
            return QPSolution(x=polished[0], equality_multipliers=polished[1] * qscale, iterations=iterations,
                              polished=True)
    if last is not None:
        return QPSolution(x=last[0], equality_multipliers=last[1] * qscale, iterations=last[2], polished=False)
    raise OptimisationError("qp", reason + " (the problem may be infeasible, unbounded or badly scaled)")


def _interior_polish(Q, c, A, b, rows, x, z, lam, xp, *, corrections):
    """:func:`_polish` from an interior iterate: a row is active when its multiplier exceeds its
    slack; a singular KKT system releases the active row with the smallest multiplier."""
    return _polish(Q, c, A, b, rows, lam[:rows.nL] > z[:rows.nL], lam[rows.nL:] > z[rows.nL:], xp,
                   corrections=corrections, scale=1.0 + float(xp.max(xp.abs(x))), release=lam)


def _polish(Q, c, A, b, rows, activeL, activeU, xp, *, corrections, scale=None, release=None):
    """Solve the KKT system of an active set, check optimality, update the set and retry.

    ``activeL``/``activeU`` mark the active lower and upper rows. Each update is a primal-dual
    active-set step: rows with a multiplier of the wrong sign leave, violated rows enter.
    ``scale`` sets the primal tolerance (``1e-12 scale``; default ``1 + max|x|`` of each
    candidate). A singular KKT system releases the active row with the smallest ``release``
    value (the interior-point multipliers); without them it ends the polish.

    Returns (x, y) or None when no active set within ``corrections`` updates satisfies the KKT
    conditions to rounding.
    """
    n, s = rows.n, rows.s
    m = A.shape[0]
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
        # x = T u + t0 with T = E_free (+ the fixed rows' coefficients in the scale variable's
        # column): gathers of Q's columns rather than the product Q T, which costs n^2 nf and
        # gives the same numbers (T's entries are 0 and 1) except in that one column.
        t0 = xp.where(fixed, const, 0.0)
        cf = xp.where(fixed, coef, 0.0)
        QT = Q[:, free]
        AT = A[:, free]
        g = Q @ t0 + c
        rhs1 = -g[free]
        ks = None
        if s is not None and not s_fixed:
            ks = int(xp.nonzero(free == s)[0][0])
            QT[:, ks] += Q @ cf
            AT[:, ks] += A @ cf
        K = xp.zeros((nf + m, nf + m), dtype=Q.dtype)
        K[:nf, :nf] = QT[free, :]
        if ks is not None:
            K[ks, :nf] += cf @ QT
            rhs1[ks] -= cf @ g
        K[:nf, nf:] = AT.T
        K[nf:, :nf] = AT
        rhs = xp.concatenate([rhs1, b - A @ t0])
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
            if release is None or not bool(active.any()):
                return None
            k = int(xp.argmin(xp.where(active, release, np.inf)))
            active[k] = False
            activeL, activeU = active[:rows.nL], active[rows.nL:]
            continue
        xn = t0.copy()
        xn[free] += sol[:nf]
        if ks is not None:
            xn = xn + cf * sol[ks]
        yn = sol[nf:]
        grad = Q @ xn + c + A.T @ yn
        slack = rows.h() - rows.G(xn)
        # Multipliers of the active rows from stationarity (lower row on i: grad_i, upper: -grad_i).
        mult = xp.concatenate([xp.where(activeL, grad[rows.L], 0.0), xp.where(activeU, -grad[rows.U], 0.0)])
        ptol = 1e-12 * (1.0 + float(xp.max(xp.abs(xn))) if scale is None else scale)
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
