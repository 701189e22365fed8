"""Configuration: one YAML file validated into a frozen object; the root and the common blocks.

Unknown or mistyped keys are errors that name the key (with the closest valid name); values are
type-checked. The ``gpu:`` block is the one users know from RAPIDS deployments; ``data``,
``indicators``, ``report``, ``backtest``, ``portfolio`` and ``models`` are the pipelines' own.
Transforms never see this object: pipelines read it and pass plain parameters down.

Implements :class:`Config` (the root) and the blocks every pipeline shares: ``gpu``
(:class:`GpuConfig` and its parts), ``data``, ``report``, ``cluster``, ``cost`` and ``budget``;
:func:`parse_size`. The pipelines' own blocks are in :mod:`~alphapulse.pipelines.config.backtest`,
:mod:`~alphapulse.pipelines.config.portfolio` and :mod:`~alphapulse.pipelines.config.models`;
reading YAML and the error messages in :mod:`~alphapulse.pipelines.config.load`.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal, Union

from pydantic import Field, StrictFloat, StrictInt, field_validator

from alphapulse.pipelines.config.backtest import BacktestConfig
from alphapulse.pipelines.config.base import Frozen, suggest
from alphapulse.pipelines.config.indicators import check_indicator_block, indicator_specs
from alphapulse.pipelines.config.models import ModelsConfig
from alphapulse.pipelines.config.portfolio import PortfolioConfig
from alphapulse.pipelines.config.signals import SignalsConfig
from alphapulse.pipelines.gpu.status import MAX_SAMPLE_INTERVAL_S, MIN_SAMPLE_INTERVAL_S
from alphapulse.pipelines.runtime.cluster import check_cluster_spec
from alphapulse.transforms.indicators.registry import IndicatorSpec

STANDARD_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?i?B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``"8GB"``, ``"512MiB"`` or ``1048576``."""
    if isinstance(text, int):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. '8GB', '512MiB')")
    return int(float(m.group(1)) * _UNITS[(m.group(2) or "").lower()])


class MemoryManagement(Frozen):
    pool_size: str = Field("auto", description="RMM pool size, e.g. '8GB', or 'auto' (half the free memory)")
    growth_mode: Literal["dynamic", "fixed"] = "dynamic"

    @field_validator("pool_size")
    @classmethod
    def _size(cls, v):
        if v != "auto":
            if parse_size(v) <= 0:
                raise ValueError("pool_size must be positive")
        return v


class Operations(Frozen):
    batch_size: int = Field(10_000_000, gt=0, description="elements one chunk of batched work holds "
                                                          "(e.g. bars x series of a backtest chunk)")
    precision: Literal["float32", "float64"] = "float64"


class Fallback(Frozen):
    cpu_fallback: bool = True
    min_speedup: float = Field(1.0, ge=0, description="run an operation on the GPU only where its measured "
                                                      "speedup at that size is at least this "
                                                      "(alphapulse.pipelines.runtime.routing)")
    speedup_cache: str | None = Field(None, description="JSON of measured speedups per device; null: "
                                                        "$ALPHAPULSE_CACHE_DIR/speedups.json or "
                                                        "~/.cache/alphapulse/speedups.json")


class Monitoring(Frozen):
    track_utilization: bool = False
    alert_on_oom: bool = True
    sample_interval_s: float = Field(1.0, ge=MIN_SAMPLE_INTERVAL_S, le=MAX_SAMPLE_INTERVAL_S,
                                     description="seconds between utilisation samples")


class GpuConfig(Frozen):
    enabled: bool = True
    device_selection: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = "auto"
    memory_management: MemoryManagement = MemoryManagement()
    operations: Operations = Operations()
    fallback: Fallback = Fallback()
    monitoring: Monitoring = Monitoring()


class DataConfig(Frozen):
    path: str | None = Field(None, description="bars: a CSV/parquet file or a folder of them")
    format: Literal["auto", "csv", "parquet"] = "auto"
    columns: dict[str, str] = Field(default_factory=dict, description="standard name -> name in the file")
    symbols_per_partition: int = Field(100, gt=0)
    bars_per_partition: int = Field(2_000_000, gt=0, description="bars (rows) of whole symbols the daily "
                                    "pipeline loads and computes at a time from parquet input")

    @field_validator("columns")
    @classmethod
    def _known(cls, v):
        for k in v:
            if k not in STANDARD_COLUMNS:
                raise ValueError(f"unknown standard column {k!r}{suggest(k, STANDARD_COLUMNS)}; "
                                 f"expected some of {', '.join(STANDARD_COLUMNS)}")
        if len(set(v.values())) != len(v):
            raise ValueError("two standard columns mapped to the same file column")
        return v


class ReportConfig(Frozen):
    out_dir: str | None = None


class ClusterConfig(Frozen):
    """Where every flow's tasks run (``--cluster`` overrides it; ``backtest.cluster`` overrides it
    for the backtest)."""

    address: str | None = Field(None, description="null (in-process), local, processes, cuda or a scheduler address")
    workers: int | None = Field(None, gt=0, description="workers of a local cluster (default: one per core/GPU)")

    @field_validator("address")
    @classmethod
    def _address(cls, v):
        return check_cluster_spec(v)


class CostConfig(Frozen):
    """Hourly prices a run's GPU-seconds and CPU-seconds are costed at (alphapulse.pipelines.runtime.cost)."""

    gpu_per_hour: float = Field(3.0, ge=0, description="price of one GPU for an hour")
    cpu_core_per_hour: float = Field(0.045, ge=0, description="price of one CPU core for an hour")
    currency: str = Field("USD", min_length=1)


class BudgetConfig(Frozen):
    """What a run may plan on this machine (:mod:`alphapulse.pipelines.runtime.budget`): the estimate of its memory,
    made from the data's sizes after loading, must fit ``memory_fraction`` of the memory available
    then, and its estimated hours of the long parts (a lower bound) ``max_hours``."""

    memory_fraction: float = Field(0.7, gt=0, le=1, description="share of the available memory (psutil) a run may plan")
    max_hours: float = Field(24.0, gt=0, le=8760, description="hours a run may plan for its long parts")


class Config(Frozen):
    gpu: GpuConfig = GpuConfig()
    cost: CostConfig = CostConfig()
    budget: BudgetConfig = BudgetConfig()
    data: DataConfig = DataConfig()
    indicators: dict[str, list[Union[StrictInt, StrictFloat, dict]]] = Field(default_factory=dict)
    report: ReportConfig = ReportConfig()
    cluster: ClusterConfig = ClusterConfig()
    backtest: BacktestConfig = BacktestConfig()
    portfolio: PortfolioConfig = PortfolioConfig()
    models: ModelsConfig = ModelsConfig()
    signals: SignalsConfig = SignalsConfig()

    @field_validator("indicators")
    @classmethod
    def _indicators(cls, v):
        check_indicator_block(v)  # raises with the name and the bad parameter, or the column count
        return v

    def indicator_specs(self) -> list[IndicatorSpec]:
        """The configured indicators, each with every parameter filled in."""
        return [s for name, entries in self.indicators.items() for s in indicator_specs(name, entries)]

    def hash(self) -> str:
        """sha256 of the canonical JSON of the validated config (what the run actually used)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()
