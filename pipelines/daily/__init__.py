"""The daily pipeline: indicators for every symbol, partition by partition.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "compute_partition": "pipeline",
    "DAILY": "pipeline",
    "DailyRequest": "pipeline",
    "DailyResult": "pipeline",
    "indicators_stage": "pipeline",
    "load_stage": "pipeline",
    "partition_key": "pipeline",
    "PartitionResult": "pipeline",
    "plan_stage": "pipeline",
    "prepare_daily": "pipeline",
    "report_stage": "pipeline",
    "run_daily": "pipeline",
    "DAILY_INCREMENTAL": "incremental",
    "run_daily_incremental": "incremental",
    "short_history": "pipeline",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
