"""The Black-Litterman model: market-implied priors, views, their uncertainty, the posterior.

Implements :func:`market_implied_risk_aversion`, :func:`market_implied_prior_returns`,
:func:`absolute_views_picking`, :func:`default_omega`, :func:`idzorek_omega`,
:func:`black_litterman_posterior` and :func:`black_litterman_weights`, in PyPortfolioOpt's
formulas (``BlackLittermanModel``). A long-only, bounded portfolio of the posterior comes from the
mean-variance optimisers (:mod:`alphapulse.transforms.portfolio.mean_variance`):
:class:`BlackLittermanViews` (views, their confidences and the prior's parameters) and
:func:`black_litterman_moments` (the posterior of an equal-weight market prior and the views) are
what the optimiser registry's ``black_litterman`` entry runs
(:mod:`alphapulse.transforms.portfolio.fallback`: max-Sharpe of the posterior).

Conventions as in :mod:`alphapulse.transforms.portfolio.mean_variance`: returns and covariance in
one period, NumPy or CuPy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.errors import OptimisationError

__all__ = ["market_implied_risk_aversion", "market_implied_prior_returns", "absolute_views_picking",
           "default_omega", "idzorek_omega", "black_litterman_posterior", "black_litterman_weights",
           "BlackLittermanViews", "black_litterman_moments"]


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


@dataclass(frozen=True)
class BlackLittermanViews:
    """Views on the assets and the prior they update: the ``black_litterman`` optimiser's parameter.

    Attributes
    ----------
    picking : array of shape (n_views, n_assets), or None for no views (the prior alone)
    returns : array of shape (n_views,)
        Each view's expected return, in the covariance's period.
    confidences : sequence of length n_views of float in [0, 1] or None, optional
        Idzorek's confidences (:func:`idzorek_omega`) when every view has one; otherwise He and
        Litterman's uncertainty (:func:`default_omega`) for all.
    tau : float, default 0.05
    risk_aversion : float, default 1
        ``delta`` of the equal-weight market prior (:func:`market_implied_prior_returns`).
    """

    picking: object = None
    returns: object = None
    confidences: tuple | None = None
    tau: float = 0.05
    risk_aversion: float = 1.0


def black_litterman_moments(covariance, views: BlackLittermanViews | None = None, *, risk_free_rate=0.0):
    """Posterior returns and covariance of the equal-weight market's implied prior
    (:func:`market_implied_prior_returns`) updated by ``views`` (:func:`black_litterman_posterior`);
    the prior and ``covariance`` unchanged without views.

    Parameters
    ----------
    covariance : array of shape (n_assets, n_assets)
    views : :class:`BlackLittermanViews`, optional (None: no views, default tau and risk aversion)
    risk_free_rate : float, default 0
        In the covariance's period.

    Returns
    -------
    posterior_returns : array of shape (n_assets,)
    posterior_covariance : array of shape (n_assets, n_assets)
    """
    views = BlackLittermanViews() if views is None else views
    xp = namespace(covariance)
    n = xp.asarray(covariance).shape[0]
    prior = market_implied_prior_returns(xp.full(n, 1.0 / n), covariance, risk_aversion=views.risk_aversion,
                                         risk_free_rate=risk_free_rate)
    if views.picking is None or len(views.picking) == 0:
        return prior, covariance
    conf = views.confidences
    if conf is not None and len(conf) and all(c is not None for c in conf):
        omega = idzorek_omega(np.array(conf, dtype=float), covariance, views.picking, tau=views.tau)
    else:
        omega = default_omega(covariance, views.picking, tau=views.tau)
    return black_litterman_posterior(prior, covariance, picking=views.picking, views=views.returns, omega=omega,
                                     tau=views.tau)
