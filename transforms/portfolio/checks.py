"""What every optimiser checks before it solves, shared by the portfolio room's modules.

Implements the input checks (:func:`check_covariance`: square, finite, symmetric, positive
definite and not numerically singular; :func:`as_bounds` and :func:`check_bounds`: weight bounds
that admit a fully invested portfolio; :func:`check_returns`), :func:`cholesky_solver` (the
factorisation those checks and the solvers share) and :func:`clip_to_bounds`. A failed check
raises :class:`~alphapulse.transforms.errors.OptimisationError` naming the method and the reason.

Room-internal: the public optimisers (:mod:`.mean_variance`, :mod:`.risk_budgeting`, :mod:`.qp`)
call these; nothing here is exported from :mod:`alphapulse.transforms.portfolio`.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.covariance import cholesky_lower_or_none
from alphapulse.transforms.errors import OptimisationError


def cholesky_solver(M, xp):
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


def as_bounds(value, n, name, xp):
    arr = xp.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        arr = xp.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} must be a scalar or an array of shape ({n},), got shape {tuple(arr.shape)}")
    if bool(xp.isnan(arr).any()):
        raise ValueError(f"{name} contains NaN")
    return arr


def check_bounds(method, min_weights, max_weights, xp):
    if bool((min_weights > max_weights).any()):
        i = int(xp.nonzero(min_weights > max_weights)[0][0])
        raise OptimisationError(method, f"min_weights exceed max_weights (asset {i}: "
                                        f"{float(min_weights[i]):.6g} > {float(max_weights[i]):.6g})")
    lo, hi = float(min_weights.sum()), float(max_weights.sum())
    if lo > 1.0 + 1e-12 or hi < 1.0 - 1e-12:
        raise OptimisationError(method, f"the weight bounds exclude full investment: the minimum weights sum to "
                                        f"{lo:.6g} and the maximum weights to {hi:.6g}, and 1 must lie between")


def check_covariance(method, covariance, xp):
    """Validate a covariance: square, finite, symmetric, positive definite (not singular).

    Returns it as an exactly symmetric float64 array: the input itself when it is one already
    (callers must not write into it)."""
    cov = xp.asarray(covariance, dtype=np.float64)
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must have shape (n_assets, n_assets), got {tuple(cov.shape)}")
    if not bool(xp.isfinite(cov).all()):
        raise OptimisationError(method, "the covariance has NaN or infinite entries")
    scale = float(xp.max(xp.abs(cov)))
    asymmetry = float(xp.max(xp.abs(cov - cov.T)))
    if asymmetry > 1e-10 * scale:
        raise OptimisationError(method, "the covariance is not symmetric")
    if asymmetry > 0:  # (c + c') / 2 of an exactly symmetric c is c itself: skip the pass
        cov = (cov + cov.T) / 2
    if not scale > 0:
        raise OptimisationError(method, "the covariance is zero")
    n = cov.shape[0]
    rcond = _definite_rcond(cov, xp)
    if rcond is None or not rcond >= n * np.finfo(float).eps:
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


def _definite_rcond(cov, xp):
    """The 1-norm reciprocal condition number of a symmetric matrix, from its Cholesky factor;
    None when the factorisation fails (not positive definite)."""
    anorm = float(xp.abs(cov).sum(axis=0).max())
    if xp is np:
        import scipy.linalg as sla
        from scipy.linalg import lapack

        # One factorisation serves the definiteness test and LAPACK's condition estimate (every
        # optimiser checks its input: it used to be factored twice).
        try:
            c, _ = sla.cho_factor(cov, lower=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            return None
        rcond, _ = lapack.dpocon(c, anorm, uplo="L")
        return float(rcond)
    solver = cholesky_solver(cov, xp)
    if solver is None:
        return None
    # CuPy has no pocon: the same 1-norm reciprocal condition, exactly, from the inverse
    # (LAPACK's is an estimate of it). Without it a singular covariance whose Cholesky
    # factorisation happens to succeed would pass on the GPU.
    inv = solver(xp.eye(cov.shape[0]))
    return 1.0 / (anorm * float(xp.abs(inv).sum(axis=0).max()))


def check_returns(method, expected_returns, n, xp):
    mu = xp.asarray(expected_returns, dtype=np.float64).reshape(-1)
    if mu.shape != (n,):
        raise ValueError(f"expected_returns must have shape ({n},), got {tuple(mu.shape)}")
    if not bool(xp.isfinite(mu).all()):
        raise OptimisationError(method, "the expected returns have NaN or infinite entries")
    return mu


def clip_to_bounds(w, lo, hi, xp):
    """Clip rounding-level bound violations (the polish holds active rows to rounding)."""
    return xp.clip(w, lo, hi)
