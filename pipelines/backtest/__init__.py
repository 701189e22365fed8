"""The backtest pipeline: a strategy over every symbol and parameter combination.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "BacktestRequest": "pipeline",
    "BacktestResult": "pipeline",
    "BlockResult": "pipeline",
    "choose_combinations": "pipeline",
    "chunk_sizes": "pipeline",
    "compute_key": "pipeline",
    "compute_stage": "pipeline",
    "ComputeResult": "pipeline",
    "equity_frame": "pipeline",
    "fold_group_size": "pipeline",
    "FOLD_GROUP_SYMBOLS": "pipeline",
    "fold_groups": "pipeline",
    "heatmap_png": "pipeline",
    "load_stage": "pipeline",
    "make_blocks": "pipeline",
    "make_job": "pipeline",
    "MAX_FOLD_GROUPS": "pipeline",
    "metrics_frame": "pipeline",
    "panel_stage": "pipeline",
    "prepare_backtest": "pipeline",
    "PreparedPanel": "pipeline",
    "PRICE_FIELDS": "pipeline",
    "ranked_combinations": "pipeline",
    "report_stage": "pipeline",
    "run_backtest_pipeline": "pipeline",
    "run_block": "pipeline",
    "run_tasks": "pipeline",
    "sub_blocks": "pipeline",
    "summary_frame": "pipeline",
    "sweep_stage": "pipeline",
    "SweepJob": "pipeline",
    "SweepResult": "pipeline",
    "symbol_equity": "pipeline",
    "SymbolBlock": "pipeline",
    "symbols_per_task": "pipeline",
    "TASK_WORK": "pipeline",
    "walk_forward_frame": "pipeline",
    "walk_forward_stage": "pipeline",
    "walk_forward_windows": "pipeline",
    "WalkForwardResult": "pipeline",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
