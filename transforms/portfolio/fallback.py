"""The fallback chain: run an optimiser and, when it fails, the next method, recording each.

Implements :func:`optimise_with_fallback` (returning a :class:`FallbackResult` with one
:class:`Attempt` per method tried), :data:`DEFAULT_FALLBACK_CHAIN` (skfolio's model:
max-Sharpe -> min-variance -> HRP -> equal weight) and :data:`OPTIMISER_METHODS`. Each failure is
an :class:`~alphapulse.transforms.errors.OptimisationError` with its reason, and the result
records every method tried, so a report can show the chain taken.

HRP is CPU-only (SciPy's linkage, :mod:`alphapulse.transforms.portfolio.hrp`): the chain runs it
on a host copy of device inputs and returns its weights on the device. This module imports the
optimisers; none of them imports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from alphapulse.transforms.arrays import namespace, to_host
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.hrp import hrp_weights
from alphapulse.transforms.portfolio.mean_variance import (efficient_return_weights, efficient_risk_weights,
                                                           max_sharpe_weights, max_utility_weights,
                                                           min_variance_weights)
from alphapulse.transforms.portfolio.risk_budgeting import risk_budget_weights

__all__ = ["DEFAULT_FALLBACK_CHAIN", "OPTIMISER_METHODS", "Attempt", "FallbackResult", "optimise_with_fallback"]


DEFAULT_FALLBACK_CHAIN = ("max_sharpe", "min_variance", "hrp", "equal_weight")
"""skfolio's model chain: each method's failure hands over to the next."""


OPTIMISER_METHODS = ("max_sharpe", "min_variance", "efficient_return", "efficient_risk", "max_utility", "hrp",
                     "risk_parity", "equal_weight")
"""The methods :func:`optimise_with_fallback` runs (the portfolio pipeline adds Black-Litterman,
which it runs as max-Sharpe of the posterior)."""


@dataclass(frozen=True)
class Attempt:
    """One method tried by :func:`optimise_with_fallback`; ``error`` is None for the one that
    succeeded."""

    method: str
    error: str | None = None


@dataclass(frozen=True)
class FallbackResult:
    """Weights and the chain taken to them.

    Attributes
    ----------
    weights : array of shape (n_assets,)
    method : str
        The method whose weights these are.
    attempts : tuple of Attempt
        Every method tried, in order, each failure with its reason; the last is ``method``.
    """

    weights: object
    method: str
    attempts: tuple = field(default_factory=tuple)

    @property
    def fell_back(self) -> bool:
        """True when the requested method failed."""
        return len(self.attempts) > 1

    def records(self) -> list[dict]:
        """The chain as report rows: ``{"step", "method", "status", "reason"}``."""
        return [{"step": i, "method": a.method, "status": "ok" if a.error is None else "failed",
                 "reason": a.error or ""} for i, a in enumerate(self.attempts)]


def _run_method(method, *, covariance, expected_returns, risk_free_rate, min_weights, max_weights, target_return,
                target_volatility, risk_aversion, risk_budgets, linkage_method, max_iterations):
    needs_mu = ("max_sharpe", "efficient_return", "efficient_risk", "max_utility")
    if method in needs_mu and expected_returns is None:
        raise OptimisationError(method, "no expected returns were given")
    box = dict(min_weights=min_weights, max_weights=max_weights, max_iterations=max_iterations)
    if method == "max_sharpe":
        return max_sharpe_weights(expected_returns, covariance, risk_free_rate=risk_free_rate, **box)
    if method == "min_variance":
        return min_variance_weights(covariance, **box)
    if method == "efficient_return":
        if target_return is None:
            raise OptimisationError(method, "no target_return was given")
        return efficient_return_weights(expected_returns, covariance, target_return=target_return, **box)
    if method == "efficient_risk":
        if target_volatility is None:
            raise OptimisationError(method, "no target_volatility was given")
        return efficient_risk_weights(expected_returns, covariance, target_volatility=target_volatility, **box)
    if method == "max_utility":
        return max_utility_weights(expected_returns, covariance, risk_aversion=risk_aversion, **box)
    if method == "hrp":
        xp = namespace(covariance, expected_returns)
        if xp is np:
            return hrp_weights(covariance, linkage_method=linkage_method, min_weights=min_weights,
                               max_weights=max_weights)
        # HRP is CPU-only (SciPy's linkage) and raises TypeError on a CuPy array, which would end
        # the chain instead of falling back. The chain is the boundary: its n x n inputs go to
        # the host and the weights come back, so both backends take the same chain.
        w = hrp_weights(to_host(covariance), linkage_method=linkage_method, min_weights=_host_bound(min_weights),
                        max_weights=_host_bound(max_weights))
        return xp.asarray(w)
    if method == "risk_parity":
        return risk_budget_weights(covariance, risk_budgets=risk_budgets, **box)
    if method == "equal_weight":
        xp = namespace(covariance)
        n = xp.asarray(covariance).shape[0]
        return xp.full(n, 1.0 / n)
    raise ValueError(f"method must be one of {OPTIMISER_METHODS}, got {method!r}")


def _host_bound(value):
    """A weight bound (scalar or array, possibly on the device) on the host."""
    return value if np.isscalar(value) else to_host(value)


def optimise_with_fallback(method, *, covariance, expected_returns=None, risk_free_rate=0.0, min_weights=0.0,
                           max_weights=1.0, target_return=None, target_volatility=None, risk_aversion=1.0,
                           risk_budgets=None, linkage_method="single", fallbacks=None, max_iterations=100):
    """Run ``method``; on :class:`OptimisationError` try the fallbacks in turn, recording each.

    Parameters
    ----------
    method : str
        One of ``"max_sharpe"``, ``"min_variance"``, ``"efficient_return"``,
        ``"efficient_risk"``, ``"max_utility"``, ``"hrp"``, ``"risk_parity"``,
        ``"equal_weight"``.
    covariance : array of shape (n_assets, n_assets)
    expected_returns : array of shape (n_assets,), optional
        Needed by the return-aware methods (a missing one is a recorded failure).
    risk_free_rate, min_weights, max_weights, target_return, target_volatility, risk_aversion
        Passed to the methods that take them (see each optimiser); HRP and risk parity take the
        bounds too, equal weight ignores them.
    risk_budgets : array of shape (n_assets,), optional
        For ``"risk_parity"``.
    linkage_method : str, default "single"
        For ``"hrp"``.
    fallbacks : sequence of str, optional
        Methods to try after ``method`` fails. Default: the members of
        :data:`DEFAULT_FALLBACK_CHAIN` after ``method`` (max-Sharpe -> min-variance -> HRP ->
        equal weight), or ``("min_variance", "hrp", "equal_weight")`` for a method outside that
        chain. Equal weight cannot fail; it ignores the bounds.
    max_iterations : int, default 100
        The QP solvers' and risk parity's iteration limit.

    Returns
    -------
    FallbackResult
        ``attempts`` lists every method tried with its failure reason, so a report can show
        the chain taken.

    Raises
    ------
    OptimisationError
        When the last fallback fails too (possible only if the chain does not end with equal
        weight); the message lists every failure.
    """
    if method not in OPTIMISER_METHODS:
        raise ValueError(f"method must be one of {OPTIMISER_METHODS}, got {method!r}")
    if fallbacks is None:
        if method in DEFAULT_FALLBACK_CHAIN:
            fallbacks = DEFAULT_FALLBACK_CHAIN[DEFAULT_FALLBACK_CHAIN.index(method) + 1:]
        else:
            fallbacks = ("min_variance", "hrp", "equal_weight")
    attempts = []
    for m in (method, *fallbacks):
        try:
            w = _run_method(m, covariance=covariance, expected_returns=expected_returns, risk_free_rate=risk_free_rate,
                            min_weights=min_weights, max_weights=max_weights, target_return=target_return,
                            target_volatility=target_volatility, risk_aversion=risk_aversion,
                            risk_budgets=risk_budgets, linkage_method=linkage_method, max_iterations=max_iterations)
        except OptimisationError as e:
            attempts.append(Attempt(m, e.reason))
            continue
        attempts.append(Attempt(m, None))
        return FallbackResult(weights=w, method=m, attempts=tuple(attempts))
    raise OptimisationError(method, "every method failed: " + "; ".join(f"{a.method}: {a.error}" for a in attempts))
