"""The backtest pipeline: a strategy over every symbol and parameter combination.

Modules: ``request`` (the checked request), ``panel`` (load and panel stages), ``block`` (one
sweep task), ``sweep`` (sharding and the sweep stage), ``walk_forward`` (the walk-forward stage),
``compute`` (cluster, sweep and walk-forward; the cache key), ``frames`` (the report's tables),
``report`` (heatmap, summary, report stage) and ``pipeline`` (the stages in order).

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "BacktestRequest": "request",
    "absorb_alerts": "sweep",
    "BACKTEST": "pipeline",
    "backtest_frames": "pipeline",
    "BacktestResult": "report",
    "BlockResult": "block",
    "chunk_sizes": "block",
    "compute_key": "compute",
    "compute_stage": "compute",
    "ComputeResult": "compute",
    "engine_params": "block",
    "equity_frame": "frames",
    "fold_group_size": "sweep",
    "FOLD_GROUP_SYMBOLS": "sweep",
    "fold_groups": "sweep",
    "heatmap_png": "report",
    "load_stage": "panel",
    "make_blocks": "sweep",
    "make_job": "block",
    "MAX_FOLD_GROUPS": "sweep",
    "metrics_frame": "frames",
    "panel_stage": "panel",
    "prepare_backtest": "request",
    "prepare_backtest_request": "request",
    "PreparedPanel": "panel",
    "PRICE_FIELDS": "panel",
    "ranked_combinations": "sweep",
    "report_stage": "report",
    "report_tables": "report",
    "resolve_strategy": "request",
    "run_backtest_pipeline": "pipeline",
    "run_block": "block",
    "run_tasks": "sweep",
    "sub_blocks": "block",
    "summary_frame": "frames",
    "sweep_stage": "sweep",
    "SweepJob": "block",
    "SweepResult": "sweep",
    "symbol_equity": "block",
    "SymbolBlock": "block",
    "symbols_per_task": "sweep",
    "TASK_WORK": "sweep",
    "walk_forward_frame": "frames",
    "walk_forward_stage": "walk_forward",
    "WalkForwardResult": "walk_forward",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
