"""The optimiser registry and the fallback chain: run an optimiser and, when it fails, the next
method, recording each.

Implements :data:`OPTIMISERS` (name -> :class:`Optimiser`: the function, the parameters of
:func:`optimise_with_fallback` it takes, whether it needs expected returns; the portfolio
config's ``methods`` vocabulary, so a new optimiser is one entry here),
:func:`optimise_with_fallback` (returning a :class:`FallbackResult` with one :class:`Attempt` per
method tried), :data:`DEFAULT_FALLBACK_CHAIN` (skfolio's model: max-Sharpe -> min-variance -> HRP
-> equal weight) and :data:`OPTIMISER_METHODS`. Each failure is an
:class:`~alphapulse.transforms.errors.OptimisationError` with its reason, and the result records
every method tried, so a report can show the chain taken.

Black-Litterman is an entry that changes the moments rather than the weights: it takes the
``views`` (:class:`~alphapulse.transforms.portfolio.black_litterman.BlackLittermanViews`) and runs
the chain from max-Sharpe on the posterior returns and covariance (the chain records
``max_sharpe``, ``min_variance``, ... as the methods tried).

HRP is CPU-only (SciPy's linkage, :mod:`alphapulse.transforms.portfolio.hrp`): the chain runs it
on a host copy of device inputs and returns its weights on the device. This module imports the
optimisers; none of them imports it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from alphapulse.transforms.arrays import namespace, to_host
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.black_litterman import BlackLittermanViews, black_litterman_moments
from alphapulse.transforms.portfolio.hrp import hrp_weights
from alphapulse.transforms.portfolio.mean_variance import (efficient_return_weights, efficient_risk_weights,
                                                           max_sharpe_weights, max_utility_weights,
                                                           min_variance_weights)
from alphapulse.transforms.portfolio.risk_budgeting import risk_budget_weights

__all__ = ["DEFAULT_FALLBACK_CHAIN", "OPTIMISER_METHODS", "OPTIMISERS", "Attempt", "FallbackResult", "Optimiser",
           "optimise_with_fallback"]


DEFAULT_FALLBACK_CHAIN = ("max_sharpe", "min_variance", "hrp", "equal_weight")
"""skfolio's model chain: each method's failure hands over to the next."""

_BOX = ("min_weights", "max_weights", "max_iterations")
_WARM = _BOX + ("initial_weights",)  # the optimisers that start from a guess of their answer


@dataclass(frozen=True)
class Optimiser:
    """One entry of :data:`OPTIMISERS`.

    Attributes
    ----------
    weights : callable ``(covariance, expected_returns, *, <params>) -> array of shape (n_assets,)``
        raising :class:`~alphapulse.transforms.errors.OptimisationError` on failure; None for an
        entry that only changes the moments (``moments`` and ``then``)
    params : the keyword parameters of :func:`optimise_with_fallback` it takes
    needs_expected_returns : a missing ``expected_returns`` is a recorded failure
    moments : callable ``(covariance, expected_returns, *, <params>) -> (expected_returns,
        covariance)`` run once before the chain, which then starts at ``then`` on its result
    then : the method run on ``moments``' result
    """

    weights: Callable | None
    params: tuple[str, ...] = ()
    needs_expected_returns: bool = False
    moments: Callable | None = None
    then: str | None = None


def _min_variance(covariance, expected_returns, *, min_weights, max_weights, max_iterations, initial_weights):
    return min_variance_weights(covariance, min_weights=min_weights, max_weights=max_weights,
                                max_iterations=max_iterations, initial_weights=initial_weights)


def _max_sharpe(covariance, expected_returns, *, risk_free_rate, min_weights, max_weights, max_iterations,
                initial_weights):
    return max_sharpe_weights(expected_returns, covariance, risk_free_rate=risk_free_rate, min_weights=min_weights,
                              max_weights=max_weights, max_iterations=max_iterations, initial_weights=initial_weights)


def _max_utility(covariance, expected_returns, *, risk_aversion, min_weights, max_weights, max_iterations,
                 initial_weights):
    return max_utility_weights(expected_returns, covariance, risk_aversion=risk_aversion, min_weights=min_weights,
                               max_weights=max_weights, max_iterations=max_iterations, initial_weights=initial_weights)


def _risk_parity(covariance, expected_returns, *, risk_budgets, min_weights, max_weights, max_iterations,
                 initial_weights):
    return risk_budget_weights(covariance, risk_budgets=risk_budgets, min_weights=min_weights,
                               max_weights=max_weights, max_iterations=max_iterations, initial_weights=initial_weights)


def _efficient_return(covariance, expected_returns, *, target_return, min_weights, max_weights, max_iterations):
    if target_return is None:
        raise OptimisationError("efficient_return", "no target_return was given")
    return efficient_return_weights(expected_returns, covariance, target_return=target_return,
                                    min_weights=min_weights, max_weights=max_weights, max_iterations=max_iterations)


def _efficient_risk(covariance, expected_returns, *, target_volatility, min_weights, max_weights, max_iterations):
    if target_volatility is None:
        raise OptimisationError("efficient_risk", "no target_volatility was given")
    return efficient_risk_weights(expected_returns, covariance, target_volatility=target_volatility,
                                  min_weights=min_weights, max_weights=max_weights, max_iterations=max_iterations)


def _hrp(covariance, expected_returns, *, linkage_method, min_weights, max_weights):
    xp = namespace(covariance, expected_returns)
    if xp is np:
        return hrp_weights(covariance, linkage_method=linkage_method, min_weights=min_weights, max_weights=max_weights)
    # HRP is CPU-only (SciPy's linkage) and raises TypeError on a CuPy array, which would end
    # the chain instead of falling back. The chain is the boundary: its n x n inputs go to
    # the host and the weights come back, so both backends take the same chain.
    w = hrp_weights(to_host(covariance), linkage_method=linkage_method, min_weights=_host_bound(min_weights),
                    max_weights=_host_bound(max_weights))
    return xp.asarray(w)


def _equal_weight(covariance, expected_returns):
    xp = namespace(covariance)
    n = xp.asarray(covariance).shape[0]
    return xp.full(n, 1.0 / n)


def _black_litterman(covariance, expected_returns, *, views, risk_free_rate):
    return black_litterman_moments(covariance, views, risk_free_rate=risk_free_rate)


OPTIMISERS: dict[str, Optimiser] = {
    "min_variance": Optimiser(_min_variance, _WARM),
    "max_sharpe": Optimiser(_max_sharpe, ("risk_free_rate", *_WARM), needs_expected_returns=True),
    "hrp": Optimiser(_hrp, ("linkage_method", "min_weights", "max_weights")),
    "risk_parity": Optimiser(_risk_parity, ("risk_budgets", *_WARM)),
    "black_litterman": Optimiser(None, ("views", "risk_free_rate"), moments=_black_litterman, then="max_sharpe"),
    "efficient_return": Optimiser(_efficient_return, ("target_return", *_BOX), needs_expected_returns=True),
    "efficient_risk": Optimiser(_efficient_risk, ("target_volatility", *_BOX), needs_expected_returns=True),
    "max_utility": Optimiser(_max_utility, ("risk_aversion", *_WARM), needs_expected_returns=True),
    "equal_weight": Optimiser(_equal_weight),
}
"""The optimisers by name (the portfolio config's ``methods`` vocabulary, in its order)."""

OPTIMISER_METHODS = tuple(OPTIMISERS)
"""The methods :func:`optimise_with_fallback` runs."""


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


def _run_method(method, options: dict, *, covariance, expected_returns):
    spec = OPTIMISERS[method]
    if spec.needs_expected_returns and expected_returns is None:
        raise OptimisationError(method, "no expected returns were given")
    return spec.weights(covariance, expected_returns, **{p: options[p] for p in spec.params})


def _host_bound(value):
    """A weight bound (scalar or array, possibly on the device) on the host."""
    return value if np.isscalar(value) else to_host(value)


def optimise_with_fallback(method, *, covariance, expected_returns=None, risk_free_rate=0.0, min_weights=0.0,
                           max_weights=1.0, target_return=None, target_volatility=None, risk_aversion=1.0,
                           risk_budgets=None, linkage_method="single", views: BlackLittermanViews | None = None,
                           fallbacks=None, max_iterations=100, initial_weights=None):
    """Run ``method``; on :class:`OptimisationError` try the fallbacks in turn, recording each.

    Parameters
    ----------
    method : str
        A name of :data:`OPTIMISERS`: ``"min_variance"``, ``"max_sharpe"``, ``"hrp"``,
        ``"risk_parity"``, ``"black_litterman"``, ``"efficient_return"``, ``"efficient_risk"``,
        ``"max_utility"``, ``"equal_weight"``.
    covariance : array of shape (n_assets, n_assets)
    expected_returns : array of shape (n_assets,), optional
        Needed by the return-aware methods (a missing one is a recorded failure); Black-Litterman
        uses its prior instead.
    risk_free_rate, min_weights, max_weights, target_return, target_volatility, risk_aversion
        Passed to the methods that take them (see each optimiser); HRP and risk parity take the
        bounds too, equal weight ignores them.
    risk_budgets : array of shape (n_assets,), optional
        For ``"risk_parity"``.
    linkage_method : str, default "single"
        For ``"hrp"``.
    views : :class:`~alphapulse.transforms.portfolio.black_litterman.BlackLittermanViews`, optional
        For ``"black_litterman"`` (None: no views, the equal-weight market's prior alone): the
        chain then runs from ``"max_sharpe"`` on the posterior returns and covariance.
    fallbacks : sequence of str, optional
        Methods to try after ``method`` fails. Default: the members of
        :data:`DEFAULT_FALLBACK_CHAIN` after ``method`` (max-Sharpe -> min-variance -> HRP ->
        equal weight), or ``("min_variance", "hrp", "equal_weight")`` for a method outside that
        chain. Equal weight cannot fail; it ignores the bounds.
    max_iterations : int, default 100
        The QP solvers' and risk parity's iteration limit.
    initial_weights : array of shape (n_assets,), optional
        A guess of the weights (a walk-forward's previous rebalance, NaN where unknown) for the
        optimisers that can start from one (min-variance, max-Sharpe, max-utility, risk
        parity): it changes how fast they reach their answer, not the answer (see
        :func:`~alphapulse.transforms.portfolio.mean_variance.min_variance_weights`).

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
    if method not in OPTIMISERS:
        raise ValueError(f"method must be one of {OPTIMISER_METHODS}, got {method!r}")
    options = dict(risk_free_rate=risk_free_rate, min_weights=min_weights, max_weights=max_weights,
                   target_return=target_return, target_volatility=target_volatility, risk_aversion=risk_aversion,
                   risk_budgets=risk_budgets, linkage_method=linkage_method, views=views,
                   max_iterations=max_iterations, initial_weights=initial_weights)
    spec = OPTIMISERS[method]
    if spec.moments is not None:  # Black-Litterman: the chain runs on the posterior
        expected_returns, covariance = spec.moments(covariance, expected_returns,
                                                    **{p: options[p] for p in spec.params})
        method = spec.then
    if fallbacks is None:
        if method in DEFAULT_FALLBACK_CHAIN:
            fallbacks = DEFAULT_FALLBACK_CHAIN[DEFAULT_FALLBACK_CHAIN.index(method) + 1:]
        else:
            fallbacks = ("min_variance", "hrp", "equal_weight")
    unknown = [m for m in fallbacks if m not in OPTIMISERS or OPTIMISERS[m].weights is None]
    if unknown:
        raise ValueError(f"fallbacks must be methods that compute weights, got {unknown}")
    attempts = []
    for m in (method, *fallbacks):
        try:
            w = _run_method(m, options, covariance=covariance, expected_returns=expected_returns)
        except OptimisationError as e:
            attempts.append(Attempt(m, e.reason))
            continue
        attempts.append(Attempt(m, None))
        return FallbackResult(weights=w, method=m, attempts=tuple(attempts))
    raise OptimisationError(method, "every method failed: " + "; ".join(f"{a.method}: {a.error}" for a in attempts))
