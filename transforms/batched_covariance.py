"""One covariance estimator over a stack of windows, in one batched pass.

Implements :func:`batched_cov`: ``(n_windows, n_observations, n_assets)`` ->
``(n_windows, n_assets, n_assets)`` for sample, Ledoit-Wolf, OAS and EWMA as batched matrix
products (denoising window by window), equal to the estimator of
:mod:`alphapulse.transforms.covariance` applied to each window (a walk-forward's covariance at
every rebalance date).
"""
from __future__ import annotations

import math

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.covariance import COVARIANCE_ESTIMATORS, _ewm_alpha, denoised_cov

__all__ = ["batched_cov"]


def _batched_symmetric(c):
    return (c + c.transpose(0, 2, 1)) * 0.5


def _batched_shrunk(s, shrinkage, *, xp):
    """``(1 - shrinkage_b) S_b + shrinkage_b mu_b I`` for every window ``b``."""
    p = s.shape[-1]
    mu = xp.trace(s, axis1=1, axis2=2) / p
    out = (1.0 - shrinkage)[:, None, None] * s
    idx = xp.arange(p)
    out[:, idx, idx] += (shrinkage * mu)[:, None]
    return out


def batched_cov(returns, *, estimator: str = "ledoit_wolf", periods_per_year: float = 1, halflife: float = 63.0):
    """One covariance estimator over a stack of windows of returns, in one batched pass.

    Window ``b`` of the result is what the estimator (:func:`sample_cov`,
    :func:`ledoit_wolf_cov`, :func:`oas_cov`, :func:`ewma_cov` with ``adjust=True``, or
    :func:`denoised_cov`) returns for ``returns[b]``, to rounding: the same operations, as
    batched matrix products (one ``(n_windows, n_assets, n_observations) @ (n_windows,
    n_observations, n_assets)`` product instead of one product a window). Denoising fits its
    noise variance on the host window by window (SciPy's optimiser), so ``"denoised"`` loops.

    Parameters
    ----------
    returns : array of shape (n_windows, n_observations, n_assets)
        Per-period returns, complete (no NaN), every window of the same length and assets (a
        walk-forward stacks the windows whose universe has the same size).
    estimator : {"sample", "ledoit_wolf", "oas", "ewma", "denoised"}
    periods_per_year : float, default 1
        Annualisation factor applied to the result (1 = per period).
    halflife : float, default 63.0
        Half-life in periods, for ``"ewma"``.

    Returns
    -------
    cov : array of shape (n_windows, n_assets, n_assets)
        Symmetric positive semi-definite matrices, on the input's device, in its float dtype.
    """
    if estimator not in COVARIANCE_ESTIMATORS:
        raise ValueError(f"estimator must be one of {tuple(COVARIANCE_ESTIMATORS)}, got {estimator!r}")
    xp = namespace(returns)
    x = xp.asarray(returns)
    if x.ndim != 3 or min(x.shape) < 1:
        raise ValueError(f"returns must be 3-D (n_windows, n_observations, n_assets), got shape {x.shape}")
    x = x.astype(float_dtype(x), copy=False)
    if not bool(xp.isfinite(x).all()):
        raise ValueError("returns contain NaN or infinite values: select complete rows and qualifying "
                         "symbols first (alphapulse.transforms.returns.common_window)")
    scale = x.dtype.type(periods_per_year)
    if estimator == "denoised":
        return xp.stack([denoised_cov(x[b], periods_per_year=periods_per_year) for b in range(x.shape[0])])
    n, p = x.shape[1], x.shape[2]
    if estimator == "ewma":
        alpha = _ewm_alpha(halflife)
        w = (1.0 - alpha) ** xp.arange(n - 1, -1, -1, dtype=xp.float64)
        w = (w / xp.sum(w)).astype(x.dtype, copy=False)
        xc = x - xp.matmul(w, x)[:, None, :]
        c = _batched_symmetric(xp.matmul((xc * w[None, :, None]).transpose(0, 2, 1), xc))
        denominator = 1.0 - xp.sum(w.astype(xp.float64) ** 2)
        if n == 1 or not bool(denominator > 0):
            return xp.full_like(c, xp.nan)
        return c / denominator.astype(x.dtype) * scale
    xc = x - x.mean(axis=1)[:, None, :]
    c = _batched_symmetric(xp.matmul(xc.transpose(0, 2, 1), xc))
    if estimator == "sample":
        return c * x.dtype.type(periods_per_year / (n - 1) if n > 1 else math.nan)
    s = c / n
    if p == 1:
        return s * scale
    if estimator == "ledoit_wolf":
        trace = xp.trace(s, axis1=1, axis2=2)
        mu = trace / p
        beta_ = xp.sum(xp.sum(xc * xc, axis=2) ** 2, axis=1)
        delta_ = xp.sum(s * s, axis=(1, 2))
        beta = (beta_ / n - delta_) / (p * n)
        delta = (delta_ - 2.0 * mu * trace + p * mu * mu) / p
        beta = xp.minimum(beta, delta)
        shrinkage = xp.where(beta == 0, xp.zeros_like(beta), beta / xp.where(delta == 0, xp.ones_like(delta), delta))
    else:  # oas
        alpha = xp.mean(s * s, axis=(1, 2))
        mu = xp.trace(s, axis1=1, axis2=2) / p
        num = alpha + mu * mu
        den = (n + 1) * (alpha - mu * mu / p)
        safe = xp.where(den == 0, xp.ones_like(den), den)
        shrinkage = xp.where(den == 0, xp.ones_like(den), xp.minimum(num / safe, 1.0))
    return _batched_shrunk(s, shrinkage, xp=xp) * scale
