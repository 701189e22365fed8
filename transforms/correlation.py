"""Correlation matrices over trailing windows at chosen dates, and summaries of them.

Implements:

- :func:`rolling_corr`: the correlation matrix of all symbols over the ``lookback`` rows ending at
  each of a set of dates (row indices, e.g. month ends), equal to pandas'
  ``df.iloc[max(0, t - lookback + 1):t + 1].corr()`` for each date ``t`` (Pearson, pairwise-complete
  observations, ``min_periods``), computed as batched matrix products.
- :func:`average_pairwise_correlation`: the mean of the off-diagonal correlations of each matrix.
- :func:`absorption_ratio`: Kritzman, Li, Page and Rigobon's (2011) absorption ratio of each
  matrix, the fraction of total variance explained by its top ``k`` eigenvectors.

How :func:`rolling_corr` computes: the dates are processed in chunks whose working memory stays
under ``max_chunk_bytes``; for a chunk of ``c`` dates the windows are gathered into one
``(c, lookback, n_symbols)`` array and centred by each column's window mean, then

- windows with no missing value (the common case after :func:`alphapulse.transforms.returns.common_window`):
  one batched product ``Xc^T Xc`` per window, the variances corrected by the column sums of
  ``Xc`` (the corrected two-pass formula, which makes a constant column's variance zero);
- chunks where some window has a missing value: four batched products of the zero-filled data
  ``X0`` and the validity mask ``M`` give, per pair, the count ``M^T M``, the sums over the rows
  both have (``X0^T M``), the sums of squares over those rows (``(X0^2)^T M``) and the
  cross-products ``X0^T X0``; the pairwise-complete covariance and variances follow. This is what
  pandas computes (it runs Welford's update per pair instead of products).

Cost: ``O(n_dates lookback n_symbols^2)`` flops (four times that with gaps) in BLAS / cuBLAS
batched products; no Python loop over dates or symbols (only over chunks).

NaN semantics (pandas'): a pair with fewer than ``max(min_periods, 1)`` common observations,
or where either series is constant over its common rows (zero variance; one observation
included), is NaN, diagonal included; values are clipped to [-1, 1]. A window reaching before
row 0 is shorter (as ``iloc`` clips it). Only rows ``<= t`` enter date ``t``'s matrix, so data
after a date never change it (no look-ahead). "Constant" is decided up to rounding: a pairwise
variance below ``2 n eps`` times the pair's sum of squares about the window mean is taken as zero
(pandas' Welford update gives an exact zero there), which matters only for series that are
constant over the pair's common rows.

Agreement with pandas (``tests/transforms/test_correlation.py``, float64, S&P 500 returns with
gaps and late listings, lookbacks 250 and 1,000): NaN positions identical; values within 3e-15
absolute for pairs with dozens of common observations or more, 1.1e-12 for a pair with two (whose
correlation is +-1 exactly in pandas).
"""
from __future__ import annotations

import math

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace

__all__ = ["rolling_corr", "average_pairwise_correlation", "absorption_ratio"]

DEFAULT_CHUNK_BYTES = 256 * 2**20


def _working_bytes_per_date(lookback: int, n: int, itemsize: int) -> int:
    """Bytes one date needs on the gap path (the larger one): 5 (lookback, n) arrays and 8 (n, n)."""
    return itemsize * (5 * lookback * n + 8 * n * n)


def rolling_corr(values, rows, *, lookback: int, min_periods: int = 1,
                 max_chunk_bytes: int = DEFAULT_CHUNK_BYTES):
    """Correlation matrices over the trailing ``lookback`` rows at each date in ``rows``.

    Parameters
    ----------
    values : array of shape (n_bars, n_symbols)
        Series to correlate, usually one-bar returns (:func:`alphapulse.transforms.returns.simple_returns`);
        NaN (or inf) where missing. NumPy or CuPy; float64 or float32 (integers compute in
        float64).
    rows : sequence of int, shape (n_dates,)
        Row index of each date (e.g. each month's last bar), ``0 <= t < n_bars``.
    lookback : int
        Window length in rows: date ``t`` uses rows ``max(0, t - lookback + 1) .. t``.
    min_periods : int, default 1
        pandas' ``min_periods``: fewest common observations for a pair to get a value.
    max_chunk_bytes : int, default 256 MiB
        Bound on the working memory of one chunk of dates (the output is allocated in full).

    Returns
    -------
    corr : array of shape (n_dates, n_symbols, n_symbols)
        Symmetric, diagonal 1 (or NaN, see the module's NaN semantics), on ``values``' device,
        in its float dtype.
    """
    xp = namespace(values)
    x = xp.asarray(values)
    if x.ndim != 2:
        raise ValueError(f"values must be 2-D (n_bars, n_symbols), got shape {x.shape}")
    x = x.astype(float_dtype(x), copy=False)
    n_bars, n = x.shape
    rows = np.asarray(rows.get() if hasattr(rows, "get") else rows, dtype=np.int64).reshape(-1)
    if rows.size and (rows.min() < 0 or rows.max() >= n_bars):
        raise ValueError(f"rows must be within 0..{n_bars - 1}")
    if lookback < 1:
        raise ValueError(f"lookback must be at least 1, got {lookback}")
    out = xp.empty((rows.size, n, n), dtype=x.dtype)
    per_date = _working_bytes_per_date(lookback, n, x.dtype.itemsize)
    chunk = max(1, int(max_chunk_bytes // per_date))
    offsets = np.arange(-lookback + 1, 1, dtype=np.int64)
    for c0 in range(0, rows.size, chunk):
        idx = rows[c0:c0 + chunk, None] + offsets[None, :]  # (c, lookback)
        pad = idx < 0
        win = x[xp.asarray(np.maximum(idx, 0))]  # (c, lookback, n)
        if pad.any():
            win[xp.asarray(pad)] = xp.nan
        valid = xp.isfinite(win)
        if bool(valid.all()):
            out[c0:c0 + chunk] = _corr_complete(win, min_periods=min_periods, xp=xp)
        else:
            out[c0:c0 + chunk] = _corr_pairwise(win, valid, min_periods=min_periods, xp=xp)
    return out


def _finish_complete(cov, var, ok, *, xp):
    """Correlation in place from covariances ``cov`` (c, n, n) and variances ``var`` (c, n)."""
    n = cov.shape[-1]
    pos = var > 0
    inv = xp.where(pos, 1.0 / xp.sqrt(xp.where(pos, var, 1)), xp.nan).astype(cov.dtype)
    cov *= inv[:, :, None]
    cov *= inv[:, None, :]
    xp.clip(cov, -1.0, 1.0, out=cov)
    idx = xp.arange(n)
    cov[:, idx, idx] = xp.where(pos, 1.0, xp.nan).astype(cov.dtype)
    if not ok:
        cov[...] = xp.nan
    return cov


def _corr_complete(win, *, min_periods, xp):
    """Windows without a missing value: corrected two-pass products."""
    c, length, n = win.shape
    xc = win - win.mean(axis=1, keepdims=True)
    cov = xp.matmul(xc.transpose(0, 2, 1), xc)  # (c, n, n)
    idx = xp.arange(n)
    ss = cov[:, idx, idx]  # a copy: sums of squares about the window mean
    # The corrected two-pass variance: ss - s^2 / length with s the column sums of xc (zero up to
    # rounding), exactly zero for a constant column. Off the diagonal the correction s_i s_j /
    # length is below rounding and is left out (a constant column's row is NaN anyway).
    s = xc.sum(axis=1)
    var = ss - s * s / length
    eps = float(np.finfo(win.dtype).eps)
    var = xp.where(var > 2 * length * eps * ss, var, 0)
    return _finish_complete(cov, var, length >= max(min_periods, 1), xp=xp)


def _finish_pairwise(cov, var_i, var_j, ok, *, xp):
    """Correlation from covariances and the two variances of each pair; NaN where not ``ok``."""
    pos = ok & (var_i > 0) & (var_j > 0)
    denom = xp.sqrt(xp.where(pos, var_i, 1) * xp.where(pos, var_j, 1))
    corr = xp.where(pos, xp.clip(cov / denom, -1.0, 1.0), xp.nan)
    n = corr.shape[-1]
    idx = xp.arange(n)
    diag = pos[:, idx, idx]
    corr[:, idx, idx] = xp.where(diag, 1.0, xp.nan).astype(corr.dtype)
    return corr


def _corr_pairwise(win, valid, *, min_periods, xp):
    """Windows with missing values: pairwise-complete sums from four batched products."""
    c, length, n = win.shape
    dtype = win.dtype
    m = valid.astype(dtype)
    cnt = m.sum(axis=1, keepdims=True)
    x0 = xp.where(valid, win, 0)
    mean = x0.sum(axis=1, keepdims=True) / xp.maximum(cnt, 1)
    x0 = xp.where(valid, win - mean, 0)
    x0t = x0.transpose(0, 2, 1)
    count = xp.matmul(m.transpose(0, 2, 1), m)  # (c, n, n): rows both have
    sx = xp.matmul(x0t, m)  # sx[i, j] = sum of x_i over the rows i and j both have
    sxx = xp.matmul((x0 * x0).transpose(0, 2, 1), m)  # sum of x_i^2 over those rows
    sxy = xp.matmul(x0t, x0)
    safe = xp.maximum(count, 1)
    sxt = sx.transpose(0, 2, 1)
    cov = sxy - sx * sxt / safe
    var_i = sxx - sx * sx / safe
    eps = float(np.finfo(dtype).eps)
    var_i = xp.where(var_i > 2 * length * eps * sxx, var_i, 0)
    var_j = var_i.transpose(0, 2, 1)
    ok = count >= max(min_periods, 1)
    return _finish_pairwise(cov, var_i, var_j, ok, xp=xp)


def average_pairwise_correlation(corr):
    """Mean off-diagonal correlation of each matrix.

    Parameters
    ----------
    corr : array of shape (n_dates, n_symbols, n_symbols) or (n_symbols, n_symbols)
        Correlation matrices (:func:`rolling_corr`).

    Returns
    -------
    average : array of shape (n_dates,) (0-d for one matrix)
        Mean of ``corr[i, j]`` over ``i != j`` where finite (a NaN pair, e.g. a symbol without data
        in the window, is left out); NaN when no pair is finite.
    """
    xp = namespace(corr)
    c = xp.asarray(corr)
    single = c.ndim == 2
    if single:
        c = c[None]
    n = c.shape[-1]
    off = ~xp.eye(n, dtype=bool)[None]
    keep = off & xp.isfinite(c)
    total = xp.where(keep, c, 0).sum(axis=(1, 2))
    count = keep.sum(axis=(1, 2))
    avg = xp.where(count > 0, total / xp.maximum(count, 1), xp.nan)
    return avg[0] if single else avg


def absorption_ratio(matrices, *, fraction: float = 0.2, n_components: int | None = None):
    """Absorption ratio of each matrix: the share of total variance its top ``k`` eigenvectors explain.

    ``AR = (sum of the k largest eigenvalues) / trace`` (Kritzman, Li, Page and Rigobon, "Principal
    Components as a Measure of Systemic Risk", 2011). On correlation matrices (as
    :func:`rolling_corr` gives) every asset's variance counts as 1, so ``trace = n_symbols``;
    on covariance matrices it is the paper's definition with the assets' own variances.

    Parameters
    ----------
    matrices : array of shape (n_dates, n_symbols, n_symbols) or (n_symbols, n_symbols)
        Symmetric correlation or covariance matrices.
    fraction : float, default 0.2
        ``k = ceil(fraction * n_symbols)`` (at least 1): the paper's one fifth of the assets
        (94 of 470).
    n_components : int, optional
        ``k`` itself, overriding ``fraction``.

    Returns
    -------
    ratio : array of shape (n_dates,) (0-d for one matrix)
        In (0, 1] for positive semi-definite input; NaN for a matrix with a non-finite entry (select
        symbols with full windows first, :func:`alphapulse.transforms.returns.common_window`).
    """
    xp = namespace(matrices)
    a = xp.asarray(matrices)
    a = a.astype(float_dtype(a), copy=False)
    single = a.ndim == 2
    if single:
        a = a[None]
    n = a.shape[-1]
    k = int(n_components) if n_components is not None else max(1, math.ceil(fraction * n - 1e-9))
    if not 1 <= k <= n:
        raise ValueError(f"k={k} eigenvectors for {n} symbols")
    finite = xp.isfinite(a).all(axis=(1, 2))
    eye = xp.eye(n, dtype=a.dtype)[None]
    safe = xp.where(finite[:, None, None], a, eye)
    ev = xp.linalg.eigvalsh(safe)  # ascending
    ratio = ev[:, n - k:].sum(axis=1) / xp.trace(safe, axis1=1, axis2=2)
    ratio = xp.where(finite, ratio, xp.nan)
    return ratio[0] if single else ratio
