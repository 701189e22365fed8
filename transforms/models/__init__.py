"""Batched per-symbol models: features, fits, walk-forward training, ensembles and scoring.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "average_ranks": "features",
    "combine": "ensemble",
    "cross_sectional_rank": "features",
    "cross_sectional_zscore": "ensemble",
    "ENSEMBLE_METHODS": "ensemble",
    "ensemble_model_weights": "ensemble",
    "feature_panel": "features",
    "fit_knn": "batched",
    "fit_logistic": "batched",
    "fit_ridge": "batched",
    "forward_returns": "features",
    "hit_rate": "scoring",
    "ic_summary": "scoring",
    "indicator_feature": "features",
    "information_coefficient": "scoring",
    "KNNModel": "batched",
    "lagged": "features",
    "LinearModel": "batched",
    "ModelSpec": "training",
    "one_bar_returns": "features",
    "PRICE_DIFF_PREFIXES": "features",
    "PRICE_LEVEL_PREFIXES": "features",
    "rolling_std": "features",
    "Scaler": "batched",
    "SCOPES": "training",
    "Split": "training",
    "standardise": "batched",
    "StepResult": "training",
    "UNSCALABLE_PREFIXES": "features",
    "walk_forward": "training",
    "walk_forward_splits": "training",
    "WalkForwardResult": "training",
    "window_returns": "features",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
