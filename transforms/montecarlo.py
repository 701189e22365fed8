"""Monte Carlo value at risk and expected shortfall of a portfolio over a horizon of bars.

Implements:

- :func:`simulate_portfolio_returns`: seeded, chunked simulation of a portfolio's return over
  ``horizon_bars`` bars along ``n_paths`` paths, under one of three models of the per-bar asset
  returns:

  - ``"normal"``: i.i.d. multivariate normal with mean ``mean`` and covariance ``cov``;
  - ``"student_t"``: i.i.d. multivariate Student-t with ``dof`` degrees of freedom (> 2), scaled
    so that its covariance is ``cov``: ``r = mean + sqrt((dof - 2) / g) L z`` with ``L L^T = cov``,
    ``z`` standard normal and ``g`` chi-square with ``dof`` degrees of freedom (one ``g`` per
    bar, shared by the assets: the multivariate t's common shock);
  - ``"bootstrap"``: historical bootstrap, whole cross-sectional rows of ``returns`` drawn with
    replacement (one row per bar), so the assets' co-movements are kept.

  Over the horizon the assets' returns are compounded (buy and hold: the portfolio return is
  ``sum_i w_i (prod_t (1 + r_ti) - 1)``), or summed with ``compound=False`` (the approximation
  under which the normal model has a closed form for any horizon).
- :func:`var_cvar`: VaR and CVaR of simulated returns at confidence levels, as positive losses.
- :func:`monte_carlo_var_cvar`: the two together.
- :func:`normal_var_cvar`: the closed form for the normal model with summed returns: the horizon
  return is ``N(h w.mean, h w' cov w)``, so ``VaR = -h mu_p + sqrt(h) sigma_p z_a`` and
  ``CVaR = -h mu_p + sqrt(h) sigma_p phi(z_a) / (1 - a)``.

Conventions: losses are positive numbers (a loss of 0.05 is a 5 % fall of the portfolio's value
over the horizon); ``VaR_a`` is the ``a``-quantile of the simulated losses (NumPy's default
linear interpolation between order statistics) and ``CVaR_a`` the mean of the losses at or above
it (expected shortfall). Returns, means and covariances are per bar (not annualised).

Memory and seeds: paths are simulated ``paths_per_chunk`` at a time, so the working memory is
about ``paths_per_chunk * horizon_bars * n_assets`` floats whatever ``n_paths``; only the
``n_paths`` portfolio returns are kept. The random stream is
``xp.random.default_rng(seed)`` of the input's array module (NumPy's PCG64 on the CPU, CuPy's
generator on the GPU: the two streams differ, their distributions do not), drawn chunk after
chunk: a result is reproducible for the same seed, backend and ``paths_per_chunk``.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.covariance import cholesky_lower_or_none

__all__ = ["simulate_portfolio_returns", "var_cvar", "monte_carlo_var_cvar", "normal_var_cvar", "MODELS"]

MODELS = ("normal", "student_t", "bootstrap")
_DEFAULT_CHUNK_BYTES = 128 * 2**20


def simulate_portfolio_returns(weights, *, model: str, horizon_bars: int = 1, n_paths: int = 1_000_000,
                               seed: int = 0, mean=None, cov=None, dof: float | None = None, returns=None,
                               compound: bool = True, paths_per_chunk: int | None = None):
    """Simulated portfolio returns over ``horizon_bars`` bars.

    Parameters
    ----------
    weights : array of shape (n_assets,)
        Portfolio weights (fractions of capital; they need not sum to 1).
    model : {"normal", "student_t", "bootstrap"}
        Model of the per-bar asset returns (see the module docstring).
    horizon_bars : int, default 1
        Horizon in bars.
    n_paths : int, default 1,000,000
        Number of simulated paths.
    seed : int, default 0
        Seed of ``xp.random.default_rng``.
    mean : array of shape (n_assets,), optional
        Per-bar mean returns ("normal", "student_t"); default zero.
    cov : array of shape (n_assets, n_assets)
        Per-bar covariance ("normal", "student_t"), symmetric positive semi-definite.
    dof : float
        Degrees of freedom of the Student-t, > 2 ("student_t").
    returns : array of shape (n_observations, n_assets)
        Historical per-bar returns, complete (no NaN) ("bootstrap").
    compound : bool, default True
        Compound the assets' returns over the horizon (buy and hold); False sums them.
    paths_per_chunk : int, optional
        Paths simulated at a time; default: as many as fit in 128 MiB of per-bar draws.

    Returns
    -------
    portfolio_returns : array of shape (n_paths,)
        On the device of the inputs, float64 (float32 when the inputs are float32).
    """
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    xp = namespace(weights, mean, cov, returns)
    w = xp.asarray(weights)
    w = w.astype(float_dtype(w), copy=False)
    if w.ndim != 1:
        raise ValueError(f"weights must be 1-D (n_assets,), got shape {w.shape}")
    n = w.shape[0]
    if horizon_bars < 1 or n_paths < 1:
        raise ValueError("horizon_bars and n_paths must be at least 1")
    dtype = w.dtype

    if model == "bootstrap":
        if returns is None:
            raise ValueError("the bootstrap model needs returns")
        hist = xp.asarray(returns).astype(dtype, copy=False)
        if hist.ndim != 2 or hist.shape[1] != n or hist.shape[0] < 1:
            raise ValueError(f"returns must be (n_observations, {n}), got shape {hist.shape}")
        if not bool(xp.isfinite(hist).all()):
            raise ValueError("returns contain NaN or infinite values: select complete rows first "
                             "(alphapulse.transforms.returns.common_window)")
    else:
        if cov is None:
            raise ValueError(f"the {model} model needs cov")
        c = xp.asarray(cov).astype(dtype, copy=False)
        if c.shape != (n, n):
            raise ValueError(f"cov must be ({n}, {n}), got shape {c.shape}")
        mu = xp.zeros(n, dtype=dtype) if mean is None else xp.asarray(mean).astype(dtype, copy=False)
        if mu.shape != (n,):
            raise ValueError(f"mean must be ({n},), got shape {mu.shape}")
        chol_t = _cholesky_factor(c, xp=xp).T  # (n, n): z @ chol_t has covariance cov
        if model == "student_t" and (dof is None or not dof > 2):
            raise ValueError(f"the student_t model needs dof > 2, got {dof}")

    if paths_per_chunk is None:
        paths_per_chunk = max(1, _DEFAULT_CHUNK_BYTES // (8 * horizon_bars * n))
    rng = xp.random.default_rng(seed)
    out = xp.empty(n_paths, dtype=dtype)
    for start in range(0, n_paths, paths_per_chunk):
        m = min(paths_per_chunk, n_paths - start)
        if model == "bootstrap":
            idx = rng.integers(0, hist.shape[0], size=(m, horizon_bars))
            r = hist[idx]  # (m, horizon, n): whole rows
        else:
            z = rng.standard_normal(size=(m, horizon_bars, n)).astype(dtype, copy=False)
            r = z @ chol_t
            if model == "student_t":
                g = rng.chisquare(float(dof), size=(m, horizon_bars, 1)).astype(dtype, copy=False)
                r *= xp.sqrt((dof - 2.0) / g)
            r += mu
        if compound:
            out[start:start + m] = (xp.prod(1.0 + r, axis=1) - 1.0) @ w
        else:
            out[start:start + m] = r.sum(axis=1) @ w
    return out


def _cholesky_factor(c, *, xp):
    """A lower factor ``L`` with ``L L^T = c`` for a PSD ``c``: Cholesky, or from the
    eigendecomposition (negative rounding eigenvalues clipped to 0) when ``c`` is singular."""
    if not bool(xp.isfinite(c).all()):
        raise ValueError("cov contains NaN or infinite values")
    low = cholesky_lower_or_none(c, xp=xp)  # CuPy does not raise on a failed factorisation
    if low is not None:
        return low
    ev, vec = xp.linalg.eigh((c + c.T) * 0.5)
    if bool((ev < -1e-10 * xp.abs(ev).max()).any()):
        raise ValueError("cov is not positive semi-definite")
    return vec * xp.sqrt(xp.clip(ev, 0, None))[None, :]


def var_cvar(portfolio_returns, *, levels: Sequence[float] = (0.95, 0.99)):
    """Value at risk and conditional value at risk (expected shortfall) as positive losses.

    Parameters
    ----------
    portfolio_returns : array of shape (n_paths,)
        Simulated (or historical) portfolio returns over the horizon.
    levels : sequence of float, default (0.95, 0.99)
        Confidence levels in (0, 1).

    Returns
    -------
    var, cvar : arrays of shape (n_levels,)
        ``var[k]`` the ``levels[k]``-quantile of the losses ``-portfolio_returns`` (linear
        interpolation), ``cvar[k]`` the mean of the losses at or above it.
    """
    xp = namespace(portfolio_returns)
    losses = -xp.asarray(portfolio_returns)
    lv = [float(a) for a in levels]
    if not all(0.0 < a < 1.0 for a in lv):
        raise ValueError(f"levels must be in (0, 1), got {levels}")
    var = xp.quantile(losses, xp.asarray(lv, dtype=losses.dtype))
    tail = losses[None, :] >= var[:, None]
    cvar = xp.where(tail, losses[None, :], 0).sum(axis=1) / tail.sum(axis=1)
    return var, cvar


def monte_carlo_var_cvar(weights, *, model: str, levels: Sequence[float] = (0.95, 0.99), horizon_bars: int = 1,
                         n_paths: int = 1_000_000, seed: int = 0, mean=None, cov=None, dof: float | None = None,
                         returns=None, compound: bool = True, paths_per_chunk: int | None = None) -> dict:
    """Monte Carlo VaR and CVaR of a portfolio: :func:`simulate_portfolio_returns` then :func:`var_cvar`.

    Parameters are those of the two functions.

    Returns
    -------
    dict
        ``{"levels": tuple, "var": array (n_levels,), "cvar": array (n_levels,)}``, losses positive,
        over ``horizon_bars`` bars.
    """
    sims = simulate_portfolio_returns(weights, model=model, horizon_bars=horizon_bars, n_paths=n_paths, seed=seed,
                                      mean=mean, cov=cov, dof=dof, returns=returns, compound=compound,
                                      paths_per_chunk=paths_per_chunk)
    var, cvar = var_cvar(sims, levels=levels)
    return {"levels": tuple(float(a) for a in levels), "var": var, "cvar": cvar}


def normal_var_cvar(weights, *, mean, cov, horizon_bars: int = 1, levels: Sequence[float] = (0.95, 0.99)):
    """Closed-form VaR and CVaR of the normal model with summed returns.

    The horizon return is ``N(h mu_p, h sigma_p^2)`` with ``mu_p = w . mean`` and
    ``sigma_p^2 = w' cov w`` (per bar), so, with ``z_a`` the standard normal ``a``-quantile and
    ``phi`` its density::

        VaR_a  = -h mu_p + sqrt(h) sigma_p z_a
        CVaR_a = -h mu_p + sqrt(h) sigma_p phi(z_a) / (1 - a)

    Parameters
    ----------
    weights : array of shape (n_assets,)
    mean : array of shape (n_assets,)
        Per-bar mean returns.
    cov : array of shape (n_assets, n_assets)
        Per-bar covariance.
    horizon_bars : int, default 1
    levels : sequence of float, default (0.95, 0.99)

    Returns
    -------
    var, cvar : NumPy arrays of shape (n_levels,)
        Positive losses (host floats: the formula is scalar).
    """
    xp = namespace(weights, mean, cov)
    w = xp.asarray(weights)
    mu_p = float(w @ xp.asarray(mean))
    sigma_p = math.sqrt(float(w @ xp.asarray(cov) @ w))
    std = NormalDist()
    z = np.array([std.inv_cdf(a) for a in levels])
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    h = float(horizon_bars)
    var = -h * mu_p + math.sqrt(h) * sigma_p * z
    cvar = -h * mu_p + math.sqrt(h) * sigma_p * phi / (1.0 - np.asarray(levels, dtype=float))
    return var, cvar
