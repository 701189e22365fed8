"""GPU observability: device status and utilisation, GPU-vs-CPU benchmarks, the HTTP API.

Modules: ``status`` (devices, versions, utilisation), ``bench`` (GPU-vs-CPU benchmarks), and the
HTTP API: ``api`` (the routes), ``schemas`` (requests and responses), ``reports`` (the report
folders it serves) and ``server`` (bounded bodies, read deadlines, the connection limit).

Public names are imported from their modules on first use (PEP 562), so importing one
room never imports its neighbours' heavier dependencies.
"""
from alphapulse._exports import lazy_exports

_EXPORTS = {
    "BARS": "bench",
    "benchmark_request_models": "schemas",
    "BenchmarkResult": "schemas",
    "BODY_TIMEOUT_S": "server",
    "BodyLimit": "server",
    "check_run_id": "reports",
    "check_sample_interval": "status",
    "check_sizes": "bench",
    "COLUMNS": "bench",
    "COV_OBSERVATIONS": "bench",
    "create_app": "api",
    "crossover_size": "bench",
    "DEFAULT_REPEATS": "schemas",
    "default_sizes": "bench",
    "DeviceReading": "schemas",
    "factor_returns": "bench",
    "gpu_device": "bench",
    "gpu_status": "status",
    "GpuDevice": "schemas",
    "GpuStatus": "schemas",
    "GuardedH11Protocol": "server",
    "HEADER_TIMEOUT_S": "server",
    "KEEP_ALIVE_S": "server",
    "MANIFEST": "reports",
    "MAX_BODY_BYTES": "server",
    "MAX_COMBINATIONS": "bench",
    "MAX_CONNECTIONS": "server",
    "MAX_REPEATS": "schemas",
    "MAX_SAMPLE_INTERVAL_S": "status",
    "MAX_SIZE": "bench",
    "MC_ASSETS": "bench",
    "MC_LEVELS": "bench",
    "MIN_SAMPLE_INTERVAL_S": "status",
    "MIN_SIZE": "bench",
    "ohlcv_panel": "bench",
    "OPERATIONS": "bench",
    "Problem": "schemas",
    "ProcessReading": "schemas",
    "RAPIDS_PACKAGES": "status",
    "rapids_versions": "status",
    "rapids_versions_uncached": "status",
    "ReportRoots": "reports",
    "run_benchmark": "bench",
    "RUN_ID_MAX_LENGTH": "reports",
    "RUN_ID_PATTERN": "reports",
    "RunDetail": "schemas",
    "RunFile": "schemas",
    "RunSummary": "schemas",
    "sample_for": "status",
    "server_options": "server",
    "SUMMARY_HTML": "reports",
    "timeline_png": "status",
    "UNITS": "bench",
    "Utilization": "schemas",
    "utilization_snapshot": "status",
    "UtilizationReading": "schemas",
    "UtilizationSampler": "status",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
