"""Hierarchical Risk Parity (Lopez de Prado, 2016).

Implements:

- :func:`correlation_distance`: the angular distance ``sqrt((1 - rho) / 2)`` of a correlation
  matrix (clipped to ``[0, 1]``), as PyPortfolioOpt's ``HRPOpt`` and skfolio's
  ``PearsonDistance`` compute it.
- :func:`hrp_order`: the quasi-diagonal order of the assets: the leaves of SciPy's
  hierarchical clustering of that distance, left to right (``HRPOpt``'s ``to_tree().pre_order()``,
  skfolio's ``leaves_list`` without optimal leaf ordering).
- :func:`hrp_weights`: recursive bisection of that order: each list is split in two halves, each
  half's variance is that of its inverse-variance portfolio, and the halves get
  ``1 - v_left / (v_left + v_right)`` and the rest of the list's weight. With weight bounds, each
  split factor is clipped as skfolio clips it.

Agreement with the references (tests/transforms/portfolio/test_portfolio_oracles.py): PyPortfolioOpt's
``HRPOpt(returns).optimize(linkage_method)`` is matched for single, Ward, complete and average
linkage when the covariance given here is the sample covariance of those returns (``HRPOpt``
computes ``returns.corr()`` and ``returns.cov()``). ``HRPOpt(cov_matrix=...)`` rounds the
correlation to 6 decimals before clustering; pass ``correlation=np.round(corr, 6)`` to reproduce
that. skfolio's ``HierarchicalRiskParity`` is matched with ``risk_measure=VARIANCE``,
``distance_estimator=PearsonDistance()`` (its default), and
``seriation_estimator=HierarchicalSeriation(hierarchical_clustering_estimator=
HierarchicalClustering(linkage_method=...), optimal_ordering=False)``: its defaults (Ward
linkage, optimal leaf ordering) order the assets differently.

CPU only: SciPy's linkage runs on the host, and the inputs are small (``n_assets`` squared). A
CuPy input raises ``TypeError`` (move it to the host at a named boundary).
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import is_cupy
from alphapulse.transforms.errors import OptimisationError

__all__ = ["LINKAGE_METHODS", "correlation_distance", "hrp_order", "hrp_weights"]

LINKAGE_METHODS = ("single", "complete", "average", "weighted", "ward", "centroid", "median")
"""SciPy's linkage methods; ``"single"`` is Lopez de Prado's, ``"ward"`` skfolio's default."""


def _host(x, name):
    if is_cupy(x):
        raise TypeError(f"{name} is a CuPy array: HRP runs on the CPU (SciPy's linkage); move it to the host "
                        "at a named boundary first")
    return np.asarray(x, dtype=np.float64)


def correlation_distance(correlation):
    """``sqrt(clip((1 - rho) / 2, 0, 1))``: 0 for perfectly correlated assets, 1 for opposite ones.

    Parameters
    ----------
    correlation : array of shape (n_assets, n_assets)

    Returns
    -------
    distance : array of shape (n_assets, n_assets)
    """
    corr = _host(correlation, "correlation")
    return np.sqrt(np.clip((1.0 - corr) / 2.0, 0.0, 1.0))


def _correlation(cov):
    sd = np.sqrt(np.diag(cov))
    corr = cov / np.outer(sd, sd)
    np.fill_diagonal(corr, 1.0)
    return corr


def hrp_order(correlation, *, linkage_method="single"):
    """Quasi-diagonal order: the hierarchical clustering's leaves, left to right.

    Parameters
    ----------
    correlation : array of shape (n_assets, n_assets)
    linkage_method : str, default "single"
        One of :data:`LINKAGE_METHODS`, on :func:`correlation_distance` (SciPy's ``linkage`` of
        the condensed distance, no optimal leaf ordering).

    Returns
    -------
    order : int array of shape (n_assets,)
        A permutation of ``range(n_assets)``.
    """
    import scipy.cluster.hierarchy as sch
    import scipy.spatial.distance as ssd

    if linkage_method not in LINKAGE_METHODS:
        raise ValueError(f"linkage_method must be one of {LINKAGE_METHODS}, got {linkage_method!r}")
    dist = correlation_distance(correlation)
    n = dist.shape[0]
    if n == 1:
        return np.zeros(1, dtype=np.int64)
    link = sch.linkage(ssd.squareform(dist, checks=False), linkage_method)
    return sch.leaves_list(link).astype(np.int64)


def hrp_weights(covariance, *, linkage_method="single", correlation=None, min_weights=0.0, max_weights=1.0):
    """Hierarchical Risk Parity weights.

    Parameters
    ----------
    covariance : array of shape (n_assets, n_assets)
        Asset covariance (any period: the split factors are ratios of variances). Only its
        diagonal blocks along the quasi-diagonal order are used; it need not be invertible.
    linkage_method : str, default "single"
        See :func:`hrp_order`.
    correlation : array of shape (n_assets, n_assets), optional
        The correlation to cluster on; by default the covariance's.
    min_weights, max_weights : float or array of shape (n_assets,), default 0 and 1
        Long-only bounds, applied as skfolio applies them (each split factor is clipped so that
        both halves can still meet their bounds); the defaults change nothing.

    Returns
    -------
    weights : array of shape (n_assets,)
        Positive, summing to 1, in the input's asset order.

    Raises
    ------
    OptimisationError
        ``method="hrp"``: non-finite entries, a variance that is not positive, or bounds that
        are negative, above 1 or exclude full investment.
    """
    method = "hrp"
    cov = _host(covariance, "covariance")
    if cov.ndim != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"covariance must have shape (n_assets, n_assets), got {cov.shape}")
    n = cov.shape[0]
    if not np.isfinite(cov).all():
        raise OptimisationError(method, "the covariance has NaN or infinite entries")
    var = np.diag(cov).copy()
    if not (var > 0).all():
        raise OptimisationError(method, f"{int((var <= 0).sum())} asset(s) have a variance that is not positive")
    lo = np.broadcast_to(np.asarray(min_weights, dtype=np.float64), (n,))
    hi = np.broadcast_to(np.asarray(max_weights, dtype=np.float64), (n,))
    if (lo < 0).any() or (hi > 1).any() or (lo > hi).any():
        raise OptimisationError(method, "HRP is long-only: bounds must satisfy 0 <= min_weights <= max_weights <= 1")
    if lo.sum() > 1 + 1e-8 or hi.sum() < 1 - 1e-8:
        raise OptimisationError(method, f"the weight bounds exclude full investment (minimum weights sum to "
                                        f"{lo.sum():.6g}, maximum weights to {hi.sum():.6g})")
    corr = _correlation(cov) if correlation is None else _host(correlation, "correlation")
    if not np.isfinite(corr).all():
        raise OptimisationError(method, "the correlation has NaN or infinite entries")
    order = hrp_order(corr, linkage_method=linkage_method)
    bounded = bool((lo > 0).any() or (hi < 1).any())

    # Work in the quasi-diagonal order: every cluster is then a contiguous block [a, b).
    c = cov[np.ix_(order, order)]
    inv = 1.0 / var[order]
    lo_o, hi_o = lo[order], hi[order]
    w = np.ones(n)

    def cluster_variance(a, b):
        if b - a == 1:
            return c[a, a]
        v = inv[a:b] / inv[a:b].sum()
        return v @ c[a:b, a:b] @ v

    clusters = [(0, n)]
    while clusters:
        halves = []
        for a, b in clusters:
            if b - a > 1:
                m = a + (b - a) // 2
                halves.append(((a, m), (m, b)))
        clusters = []
        for (a, m), (_, b) in halves:
            v1, v2 = cluster_variance(a, m), cluster_variance(m, b)
            alpha = 1.0 - v1 / (v1 + v2)
            if bounded:  # skfolio's _apply_weight_constraints_to_split_factor
                alpha = min(hi_o[a:m].sum() / w[a], max(lo_o[a:m].sum() / w[a], alpha))
                alpha = 1.0 - min(hi_o[m:b].sum() / w[m], max(lo_o[m:b].sum() / w[m], 1.0 - alpha))
            w[a:m] *= alpha
            w[m:b] *= 1.0 - alpha
            clusters += [(a, m), (m, b)]
    out = np.empty(n)
    out[order] = w
    return out
