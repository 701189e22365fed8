"""The portfolio pipeline: covariance, optimisers, correlation regimes and Monte Carlo risk.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "analyse_task": "pipeline",
    "PORTFOLIO": "pipeline",
    "analyse": "pipeline",
    "correlation_stage": "pipeline",
    "covariance_stage": "pipeline",
    "load_stage": "pipeline",
    "month_end_rows": "pipeline",
    "optimise_stage": "pipeline",
    "Optimised": "pipeline",
    "PortfolioRequest": "pipeline",
    "PortfolioResult": "pipeline",
    "prepare_portfolio": "pipeline",
    "regimes_stage": "pipeline",
    "report_stage": "pipeline",
    "Returns": "pipeline",
    "returns_stage": "pipeline",
    "risk_stage": "pipeline",
    "run_portfolio": "pipeline",
    "walk_forward_stage": "walk_forward",
    "WalkForwardTables": "walk_forward",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
