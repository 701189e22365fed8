"""Ensembles of portfolios: a convex mix of several methods' weights.

Implements :func:`ensemble_mixing_weights` (how much of each component portfolio to hold: equal,
inverse volatility, or by trailing Sharpe ratio; :data:`ENSEMBLE_MIXING_METHODS`) and
:func:`ensemble_portfolio_weights` (the mixed portfolio's asset weights). Not to be confused with
the models room's ensembles of predictions (``alphapulse.transforms.models.ensemble``).
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.portfolio.mean_variance import portfolio_volatility

__all__ = ["ENSEMBLE_MIXING_METHODS", "ensemble_mixing_weights", "ensemble_portfolio_weights"]


ENSEMBLE_MIXING_METHODS = ("equal", "inverse_volatility", "adaptive")


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
    raise ValueError(f"method must be one of {ENSEMBLE_MIXING_METHODS}, got {method!r}")


def ensemble_portfolio_weights(component_weights, *, method="equal", covariance=None, returns=None,
                               periods_per_year=252):
    """The ensemble portfolio: ``mixing @ component_weights`` (see
    :func:`ensemble_mixing_weights`). It sums to 1 and is long-only when every component is.

    Returns
    -------
    weights : array of shape (n_assets,)
    """
    mix = ensemble_mixing_weights(component_weights, method=method, covariance=covariance, returns=returns,
                                  periods_per_year=periods_per_year)
    return mix @ namespace(component_weights).asarray(component_weights, dtype=np.float64)
