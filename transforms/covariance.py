"""Covariance estimators of a panel of returns, and the covariance -> correlation conversion.

Implements (every estimator returns an array of shape ``(n_assets, n_assets)``, symmetric and
positive semi-definite, in the input's float dtype):

- :func:`sample_cov`: the unbiased sample covariance (``ddof=1``, as ``numpy.cov`` and
  ``pandas.DataFrame.cov``).
- :func:`ledoit_wolf_cov` and :func:`ledoit_wolf_shrinkage`: Ledoit-Wolf shrinkage towards a
  constant-variance target ``mu * I`` (``mu`` the mean variance), as
  ``sklearn.covariance.LedoitWolf`` computes it with ``assume_centered=False``: the data are
  centred by their column means, the empirical covariance is the maximum-likelihood one
  (divided by ``n_observations``, not ``n_observations - 1``) and the shrinkage is sklearn's
  estimate, clipped to at most 1.
- :func:`oas_cov` and :func:`oas_shrinkage`: Oracle Approximating Shrinkage towards the same
  target, as ``sklearn.covariance.OAS`` (centred, maximum-likelihood covariance).
- :func:`ewma_cov`: the exponentially weighted covariance with a half-life, equal to
  ``pandas.DataFrame.ewm(halflife=..., adjust=..., min_periods=...).cov(bias=...)`` at the last
  row.
- :func:`denoised_cov`: Marcenko-Pastur denoising of the sample covariance, as skfolio's
  ``DenoiseCovariance`` (Lopez de Prado's constant-residual-eigenvalue method).
- :func:`cov_to_corr`: correlation matrices from covariance matrices (stacks accepted).
- :data:`COVARIANCE_ESTIMATORS`: the registry, name -> :class:`CovarianceEstimator` (the function
  and the parameters it takes besides ``returns`` and ``periods_per_year``): the portfolio
  config's ``covariance`` names and its pipeline's choice come from it, so a new estimator is one
  entry here.
- :func:`~alphapulse.transforms.batched_covariance.batched_cov` (its own module): any of the
  estimators above on a stack of windows in one batched pass.

Conventions:

- ``returns`` is an array of shape ``(n_observations, n_assets)`` of per-period (per-bar) returns,
  NumPy or CuPy (the result is on the same device). It must be complete: NaN or infinite values
  raise ``ValueError``. Select a common window of complete rows and qualifying symbols first
  (:func:`alphapulse.transforms.returns.common_window`), so that an excluded symbol is reported, never
  silently dropped.
- Units: the estimators return covariance *per period* by default (``periods_per_year=1``);
  pass ``periods_per_year=252`` for daily bars to get an annualised covariance (the per-period
  matrix times ``periods_per_year``; shrinkage intensities do not depend on it).
- dtype: float64 by default (integers compute in float64); float32 input computes and returns
  float32 (about 7 significant digits; the oracle agreement figures below are for float64).

Agreement with the oracles (``tests/transforms/test_covariance.py``, float64, S&P 500 returns of
the 470 full-history symbols; largest absolute difference relative to the largest entry): sample,
Ledoit-Wolf and OAS equal NumPy/scikit-learn to 1e-16 (shrinkage intensities to 6e-17); EWMA
equals pandas to 2e-15 (both ``adjust`` settings); denoising equals skfolio to 2e-14, with
250 observations < 470 assets.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from alphapulse.transforms.arrays import float_dtype, is_cupy, namespace

__all__ = ["sample_cov", "ledoit_wolf_cov", "ledoit_wolf_shrinkage", "oas_cov", "oas_shrinkage", "ewma_cov",
           "denoised_cov", "cov_to_corr", "CovarianceEstimator", "COVARIANCE_ESTIMATORS"]


def _as_returns(returns):
    """(xp, 2-D float array) of a complete returns panel; ValueError on NaN/inf or a wrong shape."""
    xp = namespace(returns)
    x = xp.asarray(returns)
    if x.ndim != 2:
        raise ValueError(f"returns must be 2-D (n_observations, n_assets), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"returns must have at least one observation and one asset, got shape {x.shape}")
    x = x.astype(float_dtype(x), copy=False)
    if not bool(xp.isfinite(x).all()):
        raise ValueError("returns contain NaN or infinite values: select complete rows and qualifying "
                         "symbols first (alphapulse.transforms.returns.common_window)")
    return xp, x


def cholesky_lower_or_none(matrix, *, xp):
    """The lower Cholesky factor ``L`` (``L L^T = matrix``) of a symmetric matrix, or None when
    ``matrix`` is not numerically positive definite.

    One test for both backends: NumPy raises ``LinAlgError``, but CuPy (cuSOLVER's ``potrf``
    under CuPy's default ``linalg="ignore"``) returns the partly factored matrix without an
    error, not necessarily NaN. So a factor is accepted only when it is finite, its diagonal is
    positive and it reproduces ``matrix`` within the rounding of a Cholesky factorisation
    (backward error below ``(n + 1) eps max(diag)`` per entry; four times that is allowed).
    Shared by the Monte Carlo draws and the portfolio solvers.
    """
    try:
        low = xp.linalg.cholesky(matrix)
    except Exception:  # noqa: BLE001 (numpy.linalg.LinAlgError, or CuPy's under linalg="raise")
        return None
    if not bool(xp.isfinite(low).all()) or not bool((xp.diagonal(low) > 0).all()):
        return None
    n = matrix.shape[0]
    if n == 0:
        return low
    eps = float(np.finfo(low.dtype).eps)
    scale = float(xp.max(xp.abs(xp.diagonal(matrix))))
    # The lower triangles only: that is the part either library reads.
    if float(xp.max(xp.abs(xp.tril(low @ low.T - matrix)))) > 4 * (n + 1) * eps * scale:
        return None
    return low


def _symmetric(c):
    """``(c + c.T) / 2``: exactly symmetric whatever the matrix product's rounding."""
    return (c + c.T) * 0.5


def _centred_ml_cov(x, *, xp):
    """(centred data, maximum-likelihood covariance ``Xc.T @ Xc / n``) as sklearn's empirical_covariance."""
    xc = x - x.mean(axis=0)
    return xc, _symmetric(xc.T @ xc) / x.shape[0]


def sample_cov(returns, *, periods_per_year: float = 1, ddof: int = 1):
    """Sample covariance of the columns of ``returns``.

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN).
    periods_per_year : float, default 1
        Annualisation factor: the per-period covariance is multiplied by it (1 = per period,
        252 for daily bars annualised).
    ddof : int, default 1
        Delta degrees of freedom: the sum of centred cross-products is divided by
        ``n_observations - ddof`` (1 = unbiased, as ``numpy.cov``; 0 = maximum likelihood).

    Returns
    -------
    cov : array of shape (n_assets, n_assets)
        Symmetric (exactly) and positive semi-definite; NaN when ``n_observations <= ddof``.
    """
    xp, x = _as_returns(returns)
    n = x.shape[0]
    xc = x - x.mean(axis=0)
    c = _symmetric(xc.T @ xc)
    scale = periods_per_year / (n - ddof) if n > ddof else math.nan
    return c * x.dtype.type(scale)


def ledoit_wolf_shrinkage(returns):
    """Ledoit-Wolf shrinkage intensity, as ``sklearn.covariance.ledoit_wolf_shrinkage`` of the
    column-centred data.

    With ``Xc`` the centred data (n observations, p assets), ``S = Xc.T @ Xc / n`` and
    ``mu = trace(S) / p``::

        beta  = (sum_t ||Xc[t]||^4 / n - ||S||_F^2) / (n p)
        delta = (||S||_F^2 - 2 mu trace(S) + p mu^2) / p
        shrinkage = min(beta, delta) / delta        (0 when min(beta, delta) == 0)

    (sklearn sums ``(Xc**2).T @ (Xc**2)`` block by block; its grand sum is ``sum_t ||Xc[t]||^4``,
    computed here in O(n p) instead of O(n p^2).)

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN).

    Returns
    -------
    shrinkage : 0-d array
        In [0, 1]; 0 for a single asset. On the input's device.
    """
    xp, x = _as_returns(returns)
    xc, s = _centred_ml_cov(x, xp=xp)
    return _lw_shrinkage(xc, s, xp=xp)


def _lw_shrinkage(xc, s, *, xp):
    n, p = xc.shape
    if p == 1:
        return xp.zeros((), dtype=xc.dtype)
    trace = xp.trace(s)
    mu = trace / p
    beta_ = xp.sum(xp.sum(xc * xc, axis=1) ** 2)
    delta_ = xp.sum(s * s)
    beta = (beta_ / n - delta_) / (p * n)
    delta = (delta_ - 2.0 * mu * trace + p * mu * mu) / p
    beta = xp.minimum(beta, delta)
    return xp.where(beta == 0, xp.zeros_like(beta), beta / xp.where(delta == 0, xp.ones_like(delta), delta))


def _shrunk(s, shrinkage, *, xp):
    """``(1 - shrinkage) * S + shrinkage * mu * I`` with ``mu = trace(S) / p``."""
    p = s.shape[0]
    mu = xp.trace(s) / p
    out = (1.0 - shrinkage) * s
    idx = xp.arange(p)
    out[idx, idx] += shrinkage * mu
    return out


def ledoit_wolf_cov(returns, *, periods_per_year: float = 1):
    """Ledoit-Wolf shrunk covariance (constant-variance target), as ``sklearn.covariance.LedoitWolf``.

    ``(1 - shrinkage) * S + shrinkage * mu * I`` with ``S`` the maximum-likelihood covariance of
    the column-centred returns (divided by ``n_observations``), ``mu = trace(S) / n_assets`` and
    ``shrinkage`` from :func:`ledoit_wolf_shrinkage`.

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN).
    periods_per_year : float, default 1
        Annualisation factor applied to the result (1 = per period).

    Returns
    -------
    cov : array of shape (n_assets, n_assets)
        Symmetric positive semi-definite (positive definite when ``shrinkage > 0``).
    """
    xp, x = _as_returns(returns)
    xc, s = _centred_ml_cov(x, xp=xp)
    out = _shrunk(s, _lw_shrinkage(xc, s, xp=xp), xp=xp)
    return out * x.dtype.type(periods_per_year)


def oas_shrinkage(returns):
    """Oracle Approximating Shrinkage intensity, as ``sklearn.covariance.OAS``.

    With ``S`` the maximum-likelihood covariance of the centred data (n observations, p assets),
    ``alpha = mean(S**2)`` and ``mu = trace(S) / p``::

        shrinkage = min((alpha + mu^2) / ((n + 1) (alpha - mu^2 / p)), 1)   (1 when the denominator is 0)

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN).

    Returns
    -------
    shrinkage : 0-d array
        In [0, 1]; 0 for a single asset.
    """
    xp, x = _as_returns(returns)
    _, s = _centred_ml_cov(x, xp=xp)
    return _oas_shrinkage(s, x.shape[0], xp=xp)


def _oas_shrinkage(s, n, *, xp):
    p = s.shape[0]
    if p == 1:
        return xp.zeros((), dtype=s.dtype)
    alpha = xp.mean(s * s)
    mu = xp.trace(s) / p
    num = alpha + mu * mu
    den = (n + 1) * (alpha - mu * mu / p)
    safe = xp.where(den == 0, xp.ones_like(den), den)
    return xp.where(den == 0, xp.ones_like(den), xp.minimum(num / safe, 1.0))


def oas_cov(returns, *, periods_per_year: float = 1):
    """Oracle Approximating Shrinkage covariance, as ``sklearn.covariance.OAS``.

    ``(1 - shrinkage) * S + shrinkage * mu * I`` with ``S`` the maximum-likelihood covariance of
    the column-centred returns and ``shrinkage`` from :func:`oas_shrinkage`.

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN).
    periods_per_year : float, default 1
        Annualisation factor applied to the result (1 = per period).

    Returns
    -------
    cov : array of shape (n_assets, n_assets)
        Symmetric positive semi-definite.
    """
    xp, x = _as_returns(returns)
    _, s = _centred_ml_cov(x, xp=xp)
    out = _shrunk(s, _oas_shrinkage(s, x.shape[0], xp=xp), xp=xp)
    return out * x.dtype.type(periods_per_year)


def _ewm_alpha(halflife: float) -> float:
    """Smoothing factor of a half-life in periods, through pandas' own arithmetic (centre of mass)."""
    if not halflife > 0:
        raise ValueError(f"halflife must be positive, got {halflife}")
    decay = 1.0 - math.exp(math.log(0.5) / halflife)
    com = 1.0 / decay - 1.0
    return 1.0 / (1.0 + com)


def ewma_cov(returns, *, halflife: float, adjust: bool = True, min_periods: int = 0, bias: bool = False,
             periods_per_year: float = 1):
    """Exponentially weighted covariance at the last observation, as pandas'
    ``DataFrame.ewm(halflife=halflife, adjust=adjust, min_periods=min_periods).cov(bias=bias)``
    at the last row.

    With ``alpha = 1 - exp(-ln 2 / halflife)`` and ``a = n_observations - 1 - t`` the age of row
    ``t``, the weights are ``(1 - alpha)**a`` (``adjust=True``), or ``alpha (1 - alpha)**a`` for
    ``t >= 1`` and ``(1 - alpha)**(n_observations - 1)`` for the first row (``adjust=False``, the
    recursive form). The covariance is the weighted covariance about the weighted means,
    ``sum_t w_t (x_t - m)(x_t - m)^T / sum_t w_t``, times ``W^2 / (W^2 - sum_t w_t^2)``
    (``W = sum_t w_t``) unless ``bias=True`` -- the closed form of pandas' recursion, computed as
    one weighted matrix product.

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN), oldest first.
    halflife : float
        Half-life of the weights, in periods (bars).
    adjust : bool, default True
        pandas' ``adjust``: True divides by the sum of the weights of the observed rows, False
        uses the recursive weights above.
    min_periods : int, default 0
        pandas' ``min_periods``: with fewer observations the result is all NaN.
    bias : bool, default False
        pandas' ``bias``: False applies the bias correction above (NaN with one observation).
    periods_per_year : float, default 1
        Annualisation factor applied to the result (1 = per period).

    Returns
    -------
    cov : array of shape (n_assets, n_assets)
        Symmetric positive semi-definite (or all NaN, see ``min_periods`` and ``bias``).
    """
    xp, x = _as_returns(returns)
    alpha = _ewm_alpha(halflife)
    n = x.shape[0]
    age = xp.arange(n - 1, -1, -1, dtype=xp.float64)
    w = (1.0 - alpha) ** age
    if not adjust and n > 1:
        w[1:] *= alpha
    w_sum = xp.sum(w)
    w = w / w_sum  # normalised: the correction below is 1 / (1 - sum w^2)
    w = w.astype(x.dtype, copy=False)
    m = w @ x
    xc = x - m
    c = _symmetric((xc * w[:, None]).T @ xc)
    if n < max(min_periods, 1):
        return xp.full_like(c, xp.nan)
    if not bias:
        denominator = 1.0 - xp.sum(w.astype(xp.float64) ** 2)
        if n == 1 or not bool(denominator > 0):
            return xp.full_like(c, xp.nan)
        c = c / denominator.astype(x.dtype)
    return c * x.dtype.type(periods_per_year)


def cov_to_corr(cov):
    """Correlation matrices of covariance matrices.

    ``corr[..., i, j] = cov[..., i, j] / sqrt(cov[..., i, i] cov[..., j, j])``, clipped to
    [-1, 1], with an exact 1 on the diagonal. An asset with zero (or NaN) variance has a NaN row
    and column, diagonal included (pandas' convention for a constant series).

    Parameters
    ----------
    cov : array of shape (..., n_assets, n_assets)
        Covariance matrices (a stack is converted matrix by matrix).

    Returns
    -------
    corr : array of the same shape and dtype
    """
    xp = namespace(cov)
    c = xp.asarray(cov)
    c = c.astype(float_dtype(c), copy=False)
    if c.ndim < 2 or c.shape[-1] != c.shape[-2]:
        raise ValueError(f"cov must be (..., n, n), got shape {c.shape}")
    var = xp.diagonal(c, axis1=-2, axis2=-1)
    ok = var > 0
    std = xp.sqrt(xp.where(ok, var, xp.nan))
    corr = xp.clip(c / (std[..., :, None] * std[..., None, :]), -1.0, 1.0)
    n = c.shape[-1]
    idx = xp.arange(n)
    corr[..., idx, idx] = xp.where(ok, 1.0, xp.nan).astype(corr.dtype)
    return corr


# ---------------------------------------------------------------------------------------------
# Marcenko-Pastur denoising (skfolio's DenoiseCovariance)
# ---------------------------------------------------------------------------------------------

_MP_GRID = 1000


def _marcenko_pastur_variance(eigenvalues: np.ndarray, q: float, bandwidth: float) -> float:
    """The noise variance ``sigma^2`` whose Marcenko-Pastur density best fits the eigenvalues.

    skfolio's fit: minimise, over ``sigma^2`` in [1e-5, 1 - 1e-5] from 0.5 with SciPy's
    L-BFGS-B, the squared difference between the Marcenko-Pastur density (ratio ``q =
    n_observations / n_assets``) and a Gaussian kernel density estimate of the eigenvalues
    (bandwidth ``bandwidth``), both on 1000 points spanning the Marcenko-Pastur support. The
    kernel density is summed directly (sklearn's KernelDensity evaluates the same sum through a
    tree, to rounding). Runs on the host: ``eigenvalues`` is a NumPy vector of n_assets values.
    """
    import scipy.optimize as sco

    e = np.asarray(eigenvalues, dtype=np.float64)
    norm = 1.0 / (e.size * bandwidth * math.sqrt(2.0 * math.pi))
    r = (1.0 / q) ** 0.5

    def objective(x: np.ndarray) -> float:
        var = x[0]
        e_min, e_max = var * (1 - r) ** 2, var * (1 + r) ** 2
        grid = np.linspace(e_min, e_max, _MP_GRID)
        pdf_0 = q / (2 * np.pi * var * grid) * ((e_max - grid) * (grid - e_min)) ** 0.5
        z = (grid[:, None] - e[None, :]) / bandwidth
        pdf_1 = np.exp(-0.5 * z * z).sum(axis=1) * norm
        return float(np.sum((pdf_1 - pdf_0) ** 2))

    with np.errstate(invalid="ignore"):  # sqrt of a rounding-negative product at the support's ends
        res = sco.minimize(objective, x0=0.5, bounds=((1e-5, 1 - 1e-5),))
    return float(res["x"][0])


def denoised_cov(returns, *, periods_per_year: float = 1, bandwidth: float = 0.01):
    """Marcenko-Pastur denoised sample covariance, as skfolio's ``DenoiseCovariance`` with its
    defaults (empirical covariance, ``ddof=1``).

    The correlation matrix of the sample covariance is diagonalised; the eigenvalues below the
    Marcenko-Pastur upper edge ``sigma^2 (1 + sqrt(n_assets / n_observations))^2`` (``sigma^2``
    fitted as in :func:`_marcenko_pastur_variance`) are taken as noise and replaced by their
    mean, which keeps the trace; the rebuilt matrix is renormalised to a unit diagonal and scaled
    back by the sample standard deviations, so variances are unchanged.

    Backend: the sample covariance, eigendecomposition and reconstruction run on the input's
    device; the one-dimensional fit of ``sigma^2`` runs on the host with the ``n_assets``
    eigenvalues (SciPy's optimiser, as skfolio), and only the number of signal factors goes back.

    Differences from skfolio: its nearest-positive-definite repair (``nearest=True``: clipping
    correlation eigenvalues at 1e-13 when a Cholesky factorisation fails) is not applied. The
    denoised matrix is positive definite by construction (noise eigenvalues become their positive
    mean); before denoising, with fewer observations than assets, the repair lifts the zero
    eigenvalues to 1e-13, which moves the result by about that much (tested with n_observations <
    n_assets).

    Parameters
    ----------
    returns : array of shape (n_observations, n_assets)
        Per-period returns, complete (no NaN), every asset with a positive variance.
    periods_per_year : float, default 1
        Annualisation factor applied to the result (1 = per period).
    bandwidth : float, default 0.01
        Bandwidth of the Gaussian kernel density of the eigenvalues (skfolio's value).

    Returns
    -------
    cov : array of shape (n_assets, n_assets)
        Symmetric positive definite.
    """
    xp, x = _as_returns(returns)
    n_obs, n_assets = x.shape
    if n_obs < 2:
        raise ValueError("denoised_cov needs at least 2 observations")
    cov = sample_cov(x)
    var = xp.diagonal(cov)
    if not bool((var > 0).all()):
        raise ValueError("denoised_cov needs a positive variance for every asset (a constant column?)")
    std = xp.sqrt(var)
    corr = cov / (std[:, None] * std[None, :])
    idx = xp.arange(n_assets)
    corr[idx, idx] = 1.0
    e_val, e_vec = xp.linalg.eigh(corr)
    e_val, e_vec = e_val[::-1], e_vec[:, ::-1]  # descending
    host = e_val.get() if is_cupy(e_val) else np.asarray(e_val)
    q = n_obs / n_assets
    sigma2 = _marcenko_pastur_variance(host, q, bandwidth)
    n_facts = _n_factors(host, sigma2, q)
    if n_facts < n_assets:
        e_val = e_val.copy()
        e_val[n_facts:] = e_val[n_facts:].sum() / float(n_assets - n_facts)
    corr = (e_vec * e_val[None, :]) @ e_vec.T
    d = xp.sqrt(xp.diagonal(corr))
    corr = corr / (d[:, None] * d[None, :])
    corr[idx, idx] = 1.0
    out = _symmetric(corr * std[:, None] * std[None, :])
    return out * x.dtype.type(periods_per_year)


def _n_factors(eigenvalues_desc: np.ndarray, sigma2: float, q: float) -> int:
    """Number of eigenvalues (descending) above the Marcenko-Pastur edge, skfolio's count."""
    edge = sigma2 * (1 + (1.0 / q) ** 0.5) ** 2
    return int(eigenvalues_desc.shape[0] - eigenvalues_desc[::-1].searchsorted(edge))


@dataclass(frozen=True)
class CovarianceEstimator:
    """One entry of :data:`COVARIANCE_ESTIMATORS`.

    Attributes
    ----------
    function : callable ``(returns, *, periods_per_year, <params>) -> array of shape (n_assets, n_assets)``
    params : the keyword parameters of ``function`` a caller must give (besides
        ``periods_per_year``); the portfolio config holds each as ``<estimator>_<param>``
        (``ewma_halflife``)
    """

    function: Callable
    params: tuple[str, ...] = ()


COVARIANCE_ESTIMATORS: dict[str, CovarianceEstimator] = {
    "sample": CovarianceEstimator(sample_cov),
    "ledoit_wolf": CovarianceEstimator(ledoit_wolf_cov),
    "oas": CovarianceEstimator(oas_cov),
    "ewma": CovarianceEstimator(ewma_cov, params=("halflife",)),
    "denoised": CovarianceEstimator(denoised_cov),
}
"""The covariance estimators by name (the portfolio config's ``covariance`` vocabulary)."""
