"""Portfolio optimisers, one concept a module.

- :mod:`.qp`: the dense convex QP solver (interior point, then an active-set polish to an exact
  KKT point) that every mean-variance and bounded risk-budgeting problem goes through;
- :mod:`.mean_variance`: minimum variance, maximum Sharpe, efficient risk and return, maximum
  utility, and a portfolio's volatility;
- :mod:`.black_litterman`: market-implied priors, views and their uncertainty, the posterior;
- :mod:`.risk_budgeting`: risk parity and risk budgets, within weight bounds;
- :mod:`.hrp`: Hierarchical Risk Parity (CPU only: SciPy's linkage);
- :mod:`.ensemble`: convex mixes of several methods' portfolios;
- :mod:`.fallback`: the optimiser registry (``OPTIMISERS``, Black-Litterman included) and the
  fallback chain (max-Sharpe -> min-variance -> HRP -> equal weight), each failure recorded;
- :mod:`.schedule`: a walk-forward's rebalance rows and its accounts between them (drift or
  constant holdings, turnover, costs, cash);
- :mod:`.walk_forward`: every method re-estimated at each rebalance on trailing data and held
  out of sample, with the benchmarks;
- :mod:`.checks`: the input checks the optimisers share (room-internal).

Every failure is an :class:`~alphapulse.transforms.errors.OptimisationError` naming the method
and the reason. Imports run one way: ``checks <- qp <- mean_variance, risk_budgeting <- ensemble,
fallback <- walk_forward``; ``hrp`` and ``black_litterman`` import none of them, and only
``fallback`` imports them; ``schedule`` imports no optimiser.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "absolute_views_picking": "black_litterman",
    "Attempt": "fallback",
    "black_litterman_moments": "black_litterman",
    "BAND_BLOCK_BARS": "schedule",
    "black_litterman_posterior": "black_litterman",
    "black_litterman_weights": "black_litterman",
    "BlackLittermanViews": "black_litterman",
    "correlation_distance": "hrp",
    "DEFAULT_FALLBACK_CHAIN": "fallback",
    "default_omega": "black_litterman",
    "efficient_return_weights": "mean_variance",
    "efficient_risk_weights": "mean_variance",
    "ENSEMBLE_MIXING_METHODS": "ensemble",
    "ensemble_mixing_weights": "ensemble",
    "ensemble_portfolio_weights": "ensemble",
    "estimation_windows": "walk_forward",
    "FallbackResult": "fallback",
    "holding_returns": "schedule",
    "HOLDINGS": "schedule",
    "Holdings": "schedule",
    "hrp_order": "hrp",
    "hrp_weights": "hrp",
    "idzorek_omega": "black_litterman",
    "LINKAGE_METHODS": "hrp",
    "market_implied_prior_returns": "black_litterman",
    "market_implied_risk_aversion": "black_litterman",
    "max_sharpe_weights": "mean_variance",
    "max_utility_weights": "mean_variance",
    "min_variance_weights": "mean_variance",
    "OptimisationError": "checks",  # defined in alphapulse.transforms.errors
    "optimise_with_fallback": "fallback",
    "OPTIMISER_METHODS": "fallback",
    "Optimiser": "fallback",
    "OPTIMISERS": "fallback",
    "OptimiserOptions": "walk_forward",
    "portfolio_volatility": "mean_variance",
    "QPSolution": "qp",
    "rebalance_rows": "schedule",
    "REBALANCE_RULES": "schedule",
    "risk_budget_weights": "risk_budgeting",
    "risk_contributions": "risk_budgeting",
    "simulate_holdings": "schedule",
    "solve_qp": "qp",
    "View": "walk_forward",
    "walk_forward_backtest": "walk_forward",
    "WALK_FORWARD_BENCHMARKS": "walk_forward",
    "PortfolioWalkForward": "walk_forward",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
