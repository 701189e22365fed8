"""Bars in: loading and validation, the pandas/cuDF frame differences, long frame <-> panel,
partitions of whole symbols, and seeded synthetic data.

Modules: ``load`` (input files, loading through Dask), ``rules`` (the row rules), ``frames``,
``panel``, ``partitions`` and ``synthetic``.

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "as_array": "frames",
    "as_index": "frames",
    "BAD_SYMBOL": "rules",
    "bars_to_panel": "panel",
    "BLOCK_SYMBOLS": "synthetic",
    "check_rows": "rules",
    "check_symbols": "rules",
    "COLUMNS": "synthetic",
    "DataError": "load",
    "DUPLICATE": "rules",
    "EARLIEST": "rules",
    "FUTURE_SLACK": "rules",
    "input_fingerprint": "partitions",
    "InputFiles": "load",
    "inspect_input": "load",
    "is_cudf": "frames",
    "isna": "frames",
    "load_bars": "load",
    "load_partition": "partitions",
    "LoadedBars": "load",
    "main": "synthetic",
    "MAX_PRICE": "rules",
    "MAX_VOLUME": "rules",
    "MIN_PRICE": "rules",
    "MINUTES_PER_DAY": "synthetic",
    "module_of": "frames",
    "NUMERIC": "rules",
    "OUT_OF_TIME": "rules",
    "Panel": "panel",
    "panel_to_frame": "panel",
    "Partition": "partitions",
    "plan_partitions": "partitions",
    "PRICES": "rules",
    "read_csv": "frames",
    "read_parquet": "frames",
    "REASONS": "rules",
    "REFUSED_CATEGORIES": "rules",
    "require_accepted": "load",
    "split_checked": "load",
    "synthetic_bars": "synthetic",
    "to_datetime": "frames",
    "to_float": "frames",
    "to_host": "frames",
    "TRADING_DAYS_PER_YEAR": "synthetic",
    "values": "frames",
    "write_synthetic_parquet": "synthetic",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
