"""The typed ``manifest.json``: a common part every report has, and a part per pipeline.

:class:`Manifest` holds what every run records (run, backend and why, versions, config, input,
stage times, routing, alerts, cost, the report's files); :class:`DailyManifest`,
:class:`BacktestManifest`, :class:`PortfolioManifest` and :class:`ModelsManifest` add each
pipeline's own part, told apart by ``pipeline`` (:data:`AnyManifest`). Fields a pipeline adds
beyond those declared are kept (``extra="allow"``), so a new report field is written by its
pipeline's report module alone; the declared ones are checked by each pipeline's report stage before it writes
(:func:`check_manifest`) and
document the HTTP API's ``GET /runs/{run_id}`` (``alphapulse.pipelines.gpu.schemas.RunDetail``).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class BackendRecord(_Part):
    name: Literal["cpu", "gpu"]
    reason: str = Field(description="why this backend: the config, the command line or what the machine has")
    dtype: str
    device: int | None = None
    device_name: str | None = None


class InputRecord(_Part):
    path: str
    files: list[str]
    rows_read: int = Field(ge=0)
    rows_accepted: int = Field(ge=0)
    rows_rejected: int = Field(ge=0)
    rejected_by_reason: dict[str, int]
    symbols: int = Field(ge=0)
    first_timestamp: str | None = None
    last_timestamp: str | None = None


class RoutingRecord(_Part):
    operation: str
    size: int
    backend: Literal["cpu", "gpu"]
    reason: str
    stage: str | None = None


class AlertRecord(_Part):
    kind: str
    stage: str | None = None
    message: str
    batch_size: int | None = None
    action: str = ""


class CostRecord(_Part):
    currency: str
    total: float | None = None
    stages: dict[str, dict[str, Any]] = Field(default_factory=dict)


class FileRecord(_Part):
    rows: int | None = None
    columns: list[str] | None = None
    bytes: int | None = None


class Manifest(_Part):
    """What every report's ``manifest.json`` holds."""

    run_id: str
    created_at: str
    pipeline: str
    backend: BackendRecord
    versions: dict[str, str]
    config: dict[str, Any]
    config_hash: str
    input: InputRecord
    stages: dict[str, float] = Field(description="stage -> wall seconds")
    routing: list[RoutingRecord] = Field(default_factory=list)
    alerts: list[AlertRecord] = Field(default_factory=list)
    cost: CostRecord | None = None
    monitoring: dict[str, Any] | None = None
    cluster: dict[str, Any] | None = None
    files: dict[str, FileRecord] = Field(default_factory=dict)


class DailyOutput(_Part):
    path: str = Field(description="indicators.parquet, or the folder of part files")
    partitions: int = Field(ge=1)
    cached_partitions: int = Field(ge=0)
    rows: int = Field(ge=0)
    columns: list[str]


class DailyManifest(Manifest):
    pipeline: Literal["daily"]
    output: DailyOutput
    short_history: dict[str, int] = Field(description="symbols with fewer bars than the longest lookback + 1")


class GridRecord(_Part):
    source: str
    parameters: dict[str, list]
    size: int = Field(ge=1)
    combinations_run: int = Field(ge=0)
    skipped: int = Field(ge=0)
    skipped_by_reason: dict[str, int]


class BacktestManifest(Manifest):
    pipeline: Literal["backtest"]
    strategy: str
    strategy_ref: str | None = Field(None, description="how the strategy was named: a built-in, package.module:name "
                                                       "or a plug-in (null: a Strategy object from Python)")
    grid: GridRecord
    execution: dict[str, Any]
    execution_summary: str
    chunks: dict[str, Any]
    walk_forward: dict[str, Any] | None = None
    heatmap: str
    cached_compute: bool


class WindowRecord(_Part):
    start: str
    end: str
    rows: int = Field(ge=0)
    qualified: int = Field(ge=0)


class PortfolioManifest(Manifest):
    pipeline: Literal["portfolio"]
    covariance: str
    window: WindowRecord
    excluded: dict[str, dict[str, str]]
    fallbacks: dict[str, list[str]] = Field(description="method -> the methods tried, in order")
    regimes: dict[str, Any]
    notes: list[str]


class ModelsManifest(Manifest):
    pipeline: Literal["models"]
    horizon_bars: int = Field(ge=1)
    features: list[str]
    models: list[dict[str, Any]]
    walk_forward: dict[str, Any]
    ensembles: list[str]
    backtest: list[dict[str, Any]]
    scores: list[dict[str, Any]]
    saved_models: list[str]
    cached_compute: bool


AnyManifest = Annotated[Union[DailyManifest, BacktestManifest, PortfolioManifest, ModelsManifest],
                        Field(discriminator="pipeline")]
"""A manifest of one of the four pipelines, by its ``pipeline``."""

PIPELINES = ("daily", "backtest", "portfolio", "models")
_ADAPTER = TypeAdapter(AnyManifest)


class ManifestError(RuntimeError):
    """A pipeline built a manifest that breaks its declared shape (a bug, never bad input)."""


def parse_manifest(data: dict) -> Manifest:
    """``data`` as its pipeline's typed manifest (:class:`pydantic.ValidationError` if it is not one)."""
    return _ADAPTER.validate_python(data)


def check_manifest(data: dict) -> None:
    """Check a manifest about to be written: one of the four pipelines' must have its declared
    shape (:class:`ManifestError` naming the field otherwise); any other is left alone (reports
    written by tests or by other tools)."""
    if not isinstance(data, dict) or data.get("pipeline") not in PIPELINES:
        return
    try:
        parse_manifest(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"][1:])  # [0] is the union member's tag
        raise ManifestError(f"{data['pipeline']} manifest: {where}: {first['msg']} (got {first.get('input')!r:.80})"
                            ) from None
