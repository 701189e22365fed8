"""Portfolio optimisers: the QP solver, mean-variance, Black-Litterman, risk budgeting, HRP,
ensembles and the fallback chain.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "absolute_views_picking": "optimisers",
    "Attempt": "optimisers",
    "black_litterman_posterior": "optimisers",
    "black_litterman_weights": "optimisers",
    "correlation_distance": "hrp",
    "DEFAULT_FALLBACK_CHAIN": "optimisers",
    "default_omega": "optimisers",
    "efficient_return_weights": "optimisers",
    "efficient_risk_weights": "optimisers",
    "ENSEMBLE_METHODS": "optimisers",
    "ensemble_mixing_weights": "optimisers",
    "ensemble_weights": "optimisers",
    "FallbackResult": "optimisers",
    "hrp_order": "hrp",
    "hrp_weights": "hrp",
    "idzorek_omega": "optimisers",
    "LINKAGE_METHODS": "hrp",
    "market_implied_prior_returns": "optimisers",
    "market_implied_risk_aversion": "optimisers",
    "max_sharpe_weights": "optimisers",
    "max_utility_weights": "optimisers",
    "METHODS": "optimisers",
    "min_variance_weights": "optimisers",
    "OptimisationError": "optimisers",
    "optimise_with_fallback": "optimisers",
    "portfolio_volatility": "optimisers",
    "QPSolution": "optimisers",
    "risk_budget_weights": "optimisers",
    "risk_contributions": "optimisers",
    "solve_qp": "optimisers",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
