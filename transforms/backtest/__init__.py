"""The backtest engine, its strategies, the metrics of its equity curves, and walk-forward arithmetic.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "ACC": "engine",
    "choose_combinations": "walk_forward",
    "compact_bars": "engine",
    "custom_strategy": "strategies",
    "DIRECTIONS": "engine",
    "equal_weight_accumulate": "returns_metrics",
    "equal_weight_returns": "returns_metrics",
    "indicator_bank": "engine",
    "METRICS": "metrics",
    "metrics_from_acc": "metrics",
    "metrics_from_returns": "returns_metrics",
    "Plan": "strategies",
    "RETURN_METRICS": "returns_metrics",
    "returns_accumulators": "returns_metrics",
    "run_backtest": "engine",
    "STRATEGIES": "strategies",
    "Strategy": "strategies",
    "TRADE_ON": "engine",
    "walk_forward_windows": "walk_forward",
    "window_bars": "walk_forward",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
