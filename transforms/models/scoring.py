"""How well a cross-sectional prediction ranks the realised returns.

Implements: :func:`information_coefficient` (Spearman rank correlation across symbols per
date, ``scipy.stats.spearmanr`` per row), :func:`hit_rate` (per-date sign agreement of the
prediction and the target, both taken relative to their date's median) and :func:`ic_summary`
(mean IC, its standard deviation, t-statistic and the share of positive dates).

The IC t-statistic is ``mean / std(ddof=1) * sqrt(n_dates)``. With a horizon of k > 1 bars,
consecutive dates' targets overlap, the ICs are autocorrelated and this t overstates the
evidence by up to about sqrt(k); ``ic_summary`` also reports the t over every k-th date
(non-overlapping targets) for that reason.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.models.features import average_ranks


def information_coefficient(prediction, target, *, min_symbols: int = 5):
    """Spearman rank correlation between prediction and target across symbols, per date.

    Parameters
    ----------
    prediction, target : arrays (n_bars, n_symbols)
    min_symbols : dates with fewer symbols having both values get NaN

    Returns
    -------
    float64 array (n_bars,): the IC per date (ties get average ranks); NaN where a date has
    too few symbols or no spread in either input.
    """
    xp = namespace(prediction, target)
    both = xp.isfinite(prediction) & xp.isfinite(target)
    rp = average_ranks(xp.where(both, prediction, xp.nan))
    rt = average_ranks(xp.where(both, target, xp.nan))
    n = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = xp.where(both, rp, 0.0).sum(axis=1) / n
        mt = xp.where(both, rt, 0.0).sum(axis=1) / n
        dp = xp.where(both, rp - mp[:, None], 0.0)
        dt = xp.where(both, rt - mt[:, None], 0.0)
        cov = (dp * dt).sum(axis=1)
        den = xp.sqrt((dp ** 2).sum(axis=1) * (dt ** 2).sum(axis=1))
        ic = cov / den
    return xp.where((n >= max(int(min_symbols), 2)) & (den > 0), ic, xp.nan)


def _row_median(xp, x):
    return xp.nanmedian(x, axis=1, keepdims=True) if x.shape[1] else x[:, :1]


def hit_rate(prediction, target):
    """Share of (date, symbol) pairs where prediction and target are on the same side of their
    date's cross-sectional median (pairs at a median are not counted).

    Returns
    -------
    float: the hit rate, NaN when nothing is counted.
    """
    xp = namespace(prediction, target)
    both = xp.isfinite(prediction) & xp.isfinite(target)
    p = xp.where(both, prediction, xp.nan)
    t = xp.where(both, target, xp.nan)
    keep = both.any(axis=1)
    if not bool(keep.any()):
        return float("nan")
    p, t, both = p[keep], t[keep], both[keep]
    sp = xp.sign(p - _row_median(xp, p))
    st = xp.sign(t - _row_median(xp, t))
    counted = both & (sp != 0) & (st != 0)
    n = int(counted.sum())
    return float((counted & (sp == st)).sum()) / n if n else float("nan")


def ic_summary(ic, *, horizon_bars: int = 1) -> dict:
    """Mean IC, std, t-statistic (all dates and every ``horizon_bars``-th date), positive share.

    Parameters
    ----------
    ic : array (n_bars,) from :func:`information_coefficient` (NaN dates are skipped)
    horizon_bars : the target's horizon, for the non-overlapping t-statistic

    Returns
    -------
    dict with ``ic_mean``, ``ic_std``, ``ic_tstat``, ``ic_tstat_nonoverlap``, ``ic_positive``,
    ``n_dates`` (floats; NaN where undefined).
    """
    ic = np.asarray(ic.get() if hasattr(ic, "get") else ic, dtype=np.float64)
    x = ic[np.isfinite(ic)]
    out = {"ic_mean": np.nan, "ic_std": np.nan, "ic_tstat": np.nan, "ic_tstat_nonoverlap": np.nan,
           "ic_positive": np.nan, "n_dates": int(x.size)}
    if x.size:
        out["ic_mean"] = float(x.mean())
        out["ic_positive"] = float((x > 0).mean())
    if x.size > 1:
        out["ic_std"] = float(x.std(ddof=1))
        out["ic_tstat"] = _tstat(x)
    sparse = x[::max(int(horizon_bars), 1)]
    if sparse.size > 1:
        out["ic_tstat_nonoverlap"] = _tstat(sparse)
    return out


def _tstat(x: np.ndarray) -> float:
    s = x.std(ddof=1)
    return float(x.mean() / s * np.sqrt(x.size)) if s > 0 else float("nan")
