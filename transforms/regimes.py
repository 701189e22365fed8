"""Market regimes: per-date market features of a returns panel, clustered into ordered regimes.

Implements:

- :func:`market_features`: per-date features of a panel of one-bar returns of shape
  ``(n_bars, n_symbols)``, each known at the date's close (it reads rows ``<= t`` only):

  - ``index_return``: the equal-weight index's return, the mean of the symbols' returns at ``t``
    (symbols without a return at ``t`` left out);
  - ``volatility``: the standard deviation (``ddof=1``) of ``index_return`` over the
    ``vol_window_bars`` rows ending at ``t``, annualised by ``sqrt(periods_per_year)``;
  - ``avg_correlation``: the mean off-diagonal pairwise correlation of the symbols' returns over
    the ``corr_window_bars`` rows ending at ``t`` (:func:`alphapulse.transforms.correlation.rolling_corr`,
    pairwise-complete, at least ``corr_window_bars // 2`` common observations a pair);
  - ``dispersion``: the cross-sectional standard deviation (``ddof=0``) of the returns at ``t``;
  - ``trend``: the index's compounded return over the ``trend_window_bars`` rows ending at ``t``.

  A date whose windows are incomplete (the warm-up, a row without any return) has NaN features.
- :func:`fit_regimes`: standardises the complete rows of a feature table (z-scores, ``ddof=0``),
  clusters them with a model given by the caller (anything with scikit-learn's ``fit_predict``:
  scikit-learn's or cuML's ``KMeans``, see ``alphapulse.pipelines.models.estimators.kmeans_model``), and relabels the
  clusters by their mean volatility, 0 the calmest, so labels are stable across runs and backends.
  The table is sorted by its index (dates) before fitting, so the result does not depend on the
  order of its rows. Returns per-date labels, the clusters' centres in the features' own units
  (the mean of each cluster's rows: KMeans' centres at convergence, un-standardised), and the
  regime runs (:func:`regime_runs`).
- :func:`regime_runs`: the runs of consecutive dates in one regime, with their length in bars.

Backend: :func:`market_features` is NumPy/CuPy generic and returns host (pandas) columns: the
features are a few numbers a date. Clustering runs on whatever device the model runs on; the
standardised table is handed to it as a NumPy array (cuML accepts host input and returns host
output for it).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from alphapulse.transforms.arrays import float_dtype, namespace, to_host
from alphapulse.transforms.correlation import average_pairwise_correlation, rolling_corr

__all__ = ["FEATURES", "market_features", "fit_regimes", "regime_runs", "RegimeResult"]

FEATURES = ("index_return", "volatility", "avg_correlation", "dispersion", "trend")


def _trailing(x, window: int, reduce, *, xp):
    """``reduce`` over the trailing ``window`` values of a 1-D series (NaN during the warm-up and
    where a window holds a NaN)."""
    n = x.shape[0]
    out = xp.full(n, np.nan, dtype=x.dtype)
    if window <= n:
        win = xp.lib.stride_tricks.sliding_window_view(x, window)  # (n - window + 1, window)
        out[window - 1:] = reduce(win)
    return out


def market_features(returns, *, dates=None, vol_window_bars: int = 21, corr_window_bars: int = 63,
                    trend_window_bars: int = 126, periods_per_year: float = 252) -> pd.DataFrame:
    """Per-date market features of a returns panel (see the module docstring).

    Parameters
    ----------
    returns : array of shape (n_bars, n_symbols)
        One-bar returns (:func:`alphapulse.transforms.returns.simple_returns`), NaN where missing. NumPy or CuPy.
    dates : sequence of length n_bars, optional
        The index of the result (default ``range(n_bars)``).
    vol_window_bars, corr_window_bars, trend_window_bars : int
        Trailing windows of the volatility, the average correlation and the trend, in bars.
    periods_per_year : float, default 252
        Annualises the volatility.

    Returns
    -------
    features : pandas DataFrame of shape (n_bars, 5)
        Columns :data:`FEATURES`, indexed by ``dates``; row ``t`` depends on rows ``<= t`` only.
    """
    xp = namespace(returns)
    r = xp.asarray(returns)
    if r.ndim != 2:
        raise ValueError(f"returns must be 2-D (n_bars, n_symbols), got shape {r.shape}")
    for name, w in (("vol_window_bars", vol_window_bars), ("corr_window_bars", corr_window_bars),
                    ("trend_window_bars", trend_window_bars)):
        if int(w) < 2:
            raise ValueError(f"{name} must be at least 2, got {w}")
    r = r.astype(float_dtype(r), copy=False)
    n_bars = r.shape[0]
    valid = xp.isfinite(r)
    count = valid.sum(axis=1)
    r0 = xp.where(valid, r, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        index = xp.where(count > 0, r0.sum(axis=1) / xp.maximum(count, 1), xp.nan)
        dev = xp.where(valid, r - index[:, None], 0)
        dispersion = xp.where(count > 0, xp.sqrt((dev * dev).sum(axis=1) / xp.maximum(count, 1)), xp.nan)
    vol = _trailing(index, int(vol_window_bars), lambda w: w.std(axis=1, ddof=1), xp=xp) * np.sqrt(periods_per_year)
    trend = _trailing(index, int(trend_window_bars), lambda w: xp.prod(1 + w, axis=1) - 1, xp=xp)
    avg_corr = xp.full(n_bars, np.nan, dtype=r.dtype)
    start = int(corr_window_bars) - 1
    if start < n_bars:
        rows = np.arange(start, n_bars)
        corr = rolling_corr(r, rows, lookback=int(corr_window_bars), min_periods=max(2, int(corr_window_bars) // 2))
        avg_corr[start:] = average_pairwise_correlation(corr)
    index_name = pd.RangeIndex(n_bars) if dates is None else pd.Index(dates, name=getattr(dates, "name", None))
    if len(index_name) != n_bars:
        raise ValueError(f"{len(index_name)} dates for {n_bars} rows")
    cols = dict(zip(FEATURES, (index, vol, avg_corr, dispersion, trend)))
    return pd.DataFrame({k: to_host(v).astype(np.float64) for k, v in cols.items()}, index=index_name)


@dataclass(frozen=True)
class RegimeResult:
    """Result of :func:`fit_regimes`.

    Attributes
    ----------
    labels : pandas Series of int64, indexed by the complete dates (sorted)
        The regime of each date, 0 the calmest (lowest mean volatility).
    centres : pandas DataFrame of shape (n_clusters, n_features)
        Each regime's mean feature values in the features' own units, indexed by regime.
    runs : pandas DataFrame
        :func:`regime_runs` of ``labels``.
    n_dropped : int
        Rows left out because a feature was NaN (the warm-up).
    """

    labels: pd.Series
    centres: pd.DataFrame
    runs: pd.DataFrame
    n_dropped: int


def fit_regimes(features: pd.DataFrame, model, *, order_by: str = "volatility") -> RegimeResult:
    """Cluster the complete rows of ``features`` into regimes ordered by ``order_by``.

    Parameters
    ----------
    features : pandas DataFrame of shape (n_dates, n_features)
        E.g. :func:`market_features`, indexed by date. Rows with a NaN are left out.
    model : an unfitted clusterer with ``fit_predict(X) -> labels`` and an ``n_clusters``
        attribute (scikit-learn's or cuML's ``KMeans``).
    order_by : str, default "volatility"
        The feature whose per-cluster mean orders the labels (ascending; ties by the cluster's
        first date).

    Returns
    -------
    RegimeResult
    """
    if order_by not in features.columns:
        raise ValueError(f"order_by={order_by!r} is not a feature column ({', '.join(map(str, features.columns))})")
    table = features.sort_index(kind="stable")
    complete = table.dropna()
    n_clusters = int(getattr(model, "n_clusters"))
    if len(complete) < n_clusters:
        raise ValueError(f"{len(complete)} complete dates for {n_clusters} clusters")
    x = complete.to_numpy(dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / np.where(std > 0, std, 1.0)
    raw = to_host(model.fit_predict(z)).astype(np.int64).reshape(-1)
    found = np.unique(raw)
    centres = pd.DataFrame([x[raw == k].mean(axis=0) for k in found], columns=complete.columns, index=found)
    first = pd.Series([int(np.argmax(raw == k)) for k in found], index=found)
    order = sorted(found, key=lambda k: (centres.loc[k, order_by], first[k]))
    mapping = {int(k): i for i, k in enumerate(order)}
    labels = pd.Series(np.array([mapping[int(k)] for k in raw], dtype=np.int64), index=complete.index,
                       name="regime")
    centres = centres.loc[order].set_axis(pd.RangeIndex(len(order), name="regime"))
    return RegimeResult(labels, centres, regime_runs(labels), int(len(table) - len(complete)))


def regime_runs(labels: pd.Series) -> pd.DataFrame:
    """Runs of consecutive dates in the same regime.

    Parameters
    ----------
    labels : pandas Series of regime labels indexed by date (sorted)

    Returns
    -------
    runs : pandas DataFrame with columns ``regime, start, end, bars`` (one row a run, in date order)
    """
    v = labels.to_numpy()
    if v.size == 0:
        return pd.DataFrame({"regime": pd.Series(dtype=np.int64), "start": [], "end": [],
                             "bars": pd.Series(dtype=np.int64)})
    breaks = np.flatnonzero(v[1:] != v[:-1]) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [v.size]]) - 1
    idx = labels.index
    return pd.DataFrame({"regime": v[starts].astype(np.int64), "start": idx[starts], "end": idx[ends],
                         "bars": (ends - starts + 1).astype(np.int64)})
