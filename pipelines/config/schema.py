"""Configuration: one YAML file validated into a frozen object.

Unknown or mistyped keys are errors that name the key (with the closest valid name); values are
type-checked. The ``gpu:`` block is the one users know from RAPIDS deployments; ``data``,
``indicators``, ``report``, ``backtest`` and ``portfolio`` are the pipelines' own. Transforms never see this object: pipelines
read it and pass plain parameters down.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import reprlib
import typing
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, ValidationInfo,
                      field_validator)

from alphapulse.pipelines.runtime.cluster import check_cluster_spec
from alphapulse.pipelines.gpu.status import MAX_SAMPLE_INTERVAL_S, MIN_SAMPLE_INTERVAL_S
from alphapulse.pipelines.config.grid import MAX_COMBINATIONS, GridError, check_grid, parse_values
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec
from alphapulse.transforms.backtest.strategies import STRATEGIES

STANDARD_COLUMNS = ("timestamp", "symbol", "open", "high", "low", "close", "volume")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file and the key."""


MAX_WINDOW_BARS = 100_000
"""Largest feature window in bars (the indicators' own periods stop at the same 100,000)."""


class _Frozen(BaseModel):
    # allow_inf_nan=False: a YAML .nan or .inf (a risk-free rate, a cost, a threshold) is an error
    # naming the key, not a NaN that flows through every optimiser; "off" is spelt null
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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


class MemoryManagement(_Frozen):
    pool_size: str = Field("auto", description="RMM pool size, e.g. '8GB', or 'auto' (half the free memory)")
    growth_mode: Literal["dynamic", "fixed"] = "dynamic"

    @field_validator("pool_size")
    @classmethod
    def _size(cls, v):
        if v != "auto":
            if parse_size(v) <= 0:
                raise ValueError("pool_size must be positive")
        return v


class Operations(_Frozen):
    batch_size: int = Field(10_000_000, gt=0, description="elements one chunk of batched work holds (e.g. bars x series of a backtest chunk)")
    precision: Literal["float32", "float64"] = "float64"


class Fallback(_Frozen):
    cpu_fallback: bool = True
    min_speedup: float = Field(1.0, ge=0, description="run an operation on the GPU only where its measured "
                                                      "speedup at that size is at least this (alphapulse.pipelines.runtime.routing)")
    speedup_cache: str | None = Field(None, description="JSON of measured speedups per device; null: "
                                                        "$ALPHAPULSE_CACHE_DIR/speedups.json or ~/.cache/alphapulse/speedups.json")


class Monitoring(_Frozen):
    track_utilization: bool = False
    alert_on_oom: bool = True
    sample_interval_s: float = Field(1.0, ge=MIN_SAMPLE_INTERVAL_S, le=MAX_SAMPLE_INTERVAL_S,
                                     description="seconds between utilisation samples")


class GpuConfig(_Frozen):
    enabled: bool = True
    device_selection: Union[Literal["auto"], Annotated[int, Field(ge=0)]] = "auto"
    memory_management: MemoryManagement = MemoryManagement()
    operations: Operations = Operations()
    fallback: Fallback = Fallback()
    monitoring: Monitoring = Monitoring()


class DataConfig(_Frozen):
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
                raise ValueError(f"unknown standard column {k!r}{_suggest(k, STANDARD_COLUMNS)}; "
                                 f"expected some of {', '.join(STANDARD_COLUMNS)}")
        if len(set(v.values())) != len(v):
            raise ValueError("two standard columns mapped to the same file column")
        return v


class ReportConfig(_Frozen):
    out_dir: str | None = None


class ClusterConfig(_Frozen):
    """Where every flow's tasks run (``--cluster`` overrides it; ``backtest.cluster`` overrides it
    for the backtest)."""

    address: str | None = Field(None, description="null (in-process), local, processes, cuda or a scheduler address")
    workers: int | None = Field(None, gt=0, description="workers of a local cluster (default: one per core/GPU)")

    @field_validator("address")
    @classmethod
    def _address(cls, v):
        return check_cluster_spec(v)


SELECTION_METRICS = ("sharpe", "sortino", "calmar", "total_return", "cagr", "ann_return", "max_drawdown",
                     "win_rate", "profit_factor", "avg_trade")
"""Metrics a walk-forward may maximise (higher is better for each; max_drawdown is <= 0)."""


class WalkForwardConfig(_Frozen):
    in_sample_bars: int = Field(gt=1, description="bars of each in-sample window")
    out_of_sample_bars: int = Field(gt=1, description="bars of each out-of-sample window (and the roll)")
    metric: Literal[SELECTION_METRICS] = Field("sharpe", description="in-sample metric to maximise")
    select: Literal["per_symbol", "median"] = Field(
        "per_symbol", description="per_symbol: each symbol's best combination; median: the combination "
                                  "with the best median metric over symbols, for all")


_GridValue = Union[StrictInt, StrictFloat, str, list[Union[StrictInt, StrictFloat, str]]]


MAX_COST_BPS = 1000.0
"""Commission and slippage, per fill, lie in [0, MAX_COST_BPS) basis points (10 %)."""


class BacktestConfig(_Frozen):
    strategy: str = Field("sma_cross", description="a built-in strategy (alphapulse.transforms.backtest.strategies.STRATEGIES)")
    grid: dict[str, _GridValue] = Field(default_factory=dict,
                                        description="parameter -> list of values or 'start:stop:step'")
    random_sample: int | None = Field(None, gt=0, le=MAX_COMBINATIONS,
                                      description="sweep this many random combinations of the grid")
    seed: int = 0
    direction: Literal["long", "short", "both"] = "long"
    trade_on: Literal["open", "close"] = "open"
    size_fraction: float = Field(1.0, gt=0, le=1, description="share of cash put in each entry, in (0, 1]")
    # costs of 10 % a fill and more are typos (20000 bps made exits pay to close); the kernel still
    # stops a series whose equity reaches 0 (alphapulse.transforms.backtest.engine, "Ruin")
    commission_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="per fill, in [0, 1000) bps")
    slippage_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="per fill, in [0, 1000) bps")
    stop_loss: float | None = Field(None, gt=0, lt=1, description="fraction of the entry price, in (0, 1); null = off")
    take_profit: float | None = Field(None, gt=0, le=100,
                                      description="fraction of the entry price, in (0, 100]; null = off")
    periods_per_year: float = Field(252.0, gt=0)
    definitions: Literal["alphapulse", "backtesting.py"] = "alphapulse"
    top_n: int = Field(10, ge=0, description="portfolio equity curves written for the best combinations")
    walk_forward: WalkForwardConfig | None = None
    cluster: str | None = Field(None, description="null (in-process), local, processes, cuda or a scheduler address")
    workers: int | None = Field(None, gt=0, description="workers of a local cluster (default: one per core/GPU)")
    symbols_per_chunk: Union[Literal["auto"], Annotated[int, Field(gt=0)]] = "auto"
    out_dir: str | None = "reports/backtest"

    @field_validator("strategy")
    @classmethod
    def _strategy(cls, v):
        if v not in STRATEGIES:
            raise ValueError(f"unknown strategy {v!r}{_suggest(v, STRATEGIES)}; known: {', '.join(STRATEGIES)}")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v, info: ValidationInfo):
        try:
            parsed = {name: parse_values(name, value) for name, value in v.items()}
            strategy = info.data.get("strategy")
            if strategy in STRATEGIES:
                check_grid(parsed, strategy_name=strategy, params=STRATEGIES[strategy].params)
        except GridError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, v):
        return check_cluster_spec(v)

    def grid_values(self) -> dict[str, list]:
        """The grid as parameter -> values, checked against (and cast for) the strategy."""
        strategy = STRATEGIES[self.strategy]
        return check_grid({n: parse_values(n, v) for n, v in self.grid.items()}, strategy_name=self.strategy,
                          params=strategy.params)


COVARIANCE_ESTIMATORS = ("sample", "ledoit_wolf", "oas", "ewma", "denoised")
PORTFOLIO_METHODS = ("min_variance", "max_sharpe", "hrp", "risk_parity", "black_litterman", "efficient_return",
                     "efficient_risk", "max_utility", "equal_weight")
MC_MODELS = ("normal", "student_t", "bootstrap")


class ViewConfig(_Frozen):
    """One Black-Litterman view: ``absolute`` (``asset`` returns ``return``) or ``relative``
    (``asset`` outperforms ``versus`` by ``return``); annual returns."""

    kind: Literal["absolute", "relative"] = "absolute"
    asset: str
    versus: str | None = Field(None, description="the underperforming asset of a relative view")
    expected_return: float = Field(alias="return", description="annual (relative: the outperformance)")
    confidence: float | None = Field(None, ge=0, le=1, description="Idzorek confidence; null: He-Litterman omega")

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True,
                              serialize_by_alias=True)

    @field_validator("versus")
    @classmethod
    def _versus(cls, v, info: ValidationInfo):
        kind = info.data.get("kind")
        if kind == "relative" and not v:
            raise ValueError("a relative view needs versus: the asset it is relative to")
        if kind == "absolute" and v:
            raise ValueError("an absolute view takes no versus")
        return v


class BlackLittermanConfig(_Frozen):
    tau: float = Field(0.05, gt=0, le=1)
    risk_aversion: float = Field(1.0, gt=0, description="delta of the equal-weight market prior")
    views: list[ViewConfig] = Field(default_factory=list)


class RegimeConfig(_Frozen):
    n_clusters: int = Field(3, ge=1, le=100)
    seed: int = 0
    n_init: int = Field(10, ge=1, le=1000, description="KMeans restarts (each a full fit)")
    vol_window_bars: int = Field(21, ge=2)
    corr_window_bars: int = Field(63, ge=2)
    trend_window_bars: int = Field(126, ge=2)


class MonteCarloConfig(_Frozen):
    n_paths: int = Field(100_000, ge=100, le=1_000_000_000)
    horizons_bars: list[Annotated[int, Field(ge=1, le=10_000)]] = Field(default_factory=lambda: [1, 10], min_length=1,
                                                                      max_length=100)
    levels: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.95, 0.99], min_length=1,
                                                              max_length=100)
    models: list[Literal[MC_MODELS]] = Field(default_factory=lambda: list(MC_MODELS), min_length=1)
    student_t_dof: float = Field(5.0, gt=2)
    seed: int = 0


class PortfolioConfig(_Frozen):
    covariance: Literal[COVARIANCE_ESTIMATORS] = "ledoit_wolf"
    ewma_halflife: float = Field(63.0, gt=0, description="bars, for covariance: ewma")
    lookback_bars: int = Field(756, gt=1, description="bars of the estimation window (ending at the last bar)")
    min_history_bars: int = Field(504, gt=1, description="returns a symbol needs in the window to qualify")
    max_gap_fraction: float = Field(0.01, ge=0, lt=1)
    periods_per_year: float = Field(252.0, gt=0)
    methods: list[Literal[PORTFOLIO_METHODS]] = Field(
        default_factory=lambda: ["min_variance", "max_sharpe", "hrp", "risk_parity", "black_litterman"], min_length=1)
    min_weight: float = Field(0.0, ge=0, lt=1)
    max_weight: float = Field(1.0, gt=0, le=1)
    risk_free_rate: float = Field(0.0, gt=-1, le=1, description="annual, in (-1, 1]")
    target_return: float | None = Field(None, description="annual, for efficient_return")
    target_volatility: float | None = Field(None, gt=0, description="annual, for efficient_risk")
    risk_aversion: float = Field(1.0, gt=0, description="for max_utility")
    black_litterman: BlackLittermanConfig = BlackLittermanConfig()
    ensemble: Literal["equal", "inverse_volatility", "adaptive"] = "inverse_volatility"
    correlation_dates: Literal["month_end"] = "month_end"
    correlation_lookback_bars: int = Field(63, gt=1)
    correlation_min_periods: int = Field(20, ge=2)
    regimes: RegimeConfig = RegimeConfig()
    monte_carlo: MonteCarloConfig = MonteCarloConfig()
    out_dir: str | None = "reports/portfolio"

    @field_validator("methods")
    @classmethod
    def _unique(cls, v):
        if len(set(v)) != len(v):
            raise ValueError("a method is listed twice")
        return v

    @field_validator("max_weight")
    @classmethod
    def _bounds(cls, v, info: ValidationInfo):
        lo = info.data.get("min_weight")
        if lo is not None and v < lo:
            raise ValueError(f"max_weight {v} is below min_weight {lo}")
        return v



MODEL_KINDS = ("ridge", "logistic", "random_forest", "knn")
ENSEMBLE_METHODS = ("mean", "weighted", "stacking")


class ModelFeaturesConfig(_Frozen):
    """Features at each bar's close (``alphapulse.transforms.models.features.feature_panel``)."""

    return_lags: int = Field(5, ge=0, le=1000, description="one-bar returns at lags 0 .. n-1 (ret_1_lag<L>)")
    return_windows: list[Annotated[int, Field(ge=1, le=MAX_WINDOW_BARS)]] = Field(default_factory=lambda: [5, 21],
                                                                                  max_length=100)
    volatility_windows: list[Annotated[int, Field(ge=2, le=MAX_WINDOW_BARS)]] = Field(default_factory=lambda: [21],
                                                                                      max_length=100)
    indicators: dict[str, list[Union[StrictInt, StrictFloat, dict]]] = Field(
        default_factory=lambda: {"rsi": [14], "natr": [14], "willr": [14], "adx": [14], "cci": [14]},
        description="same syntax as the top-level indicators block; OBV is refused (no stationary scale)")
    rank_features: list[str] = Field(default_factory=lambda: ["ret_5", "ret_21", "vol_21", "rsi_14"], max_length=1000,
                                     description="features that also get a per-date cross-sectional rank")

    @field_validator("indicators")
    @classmethod
    def _indicators(cls, v):
        for name, entries in v.items():
            if name == "obv":
                raise ValueError("obv has no stationary scale and cannot be a model feature")
        _check_indicator_block(v)
        return v

    def indicator_specs(self) -> list[IndicatorSpec]:
        return [s for name, entries in self.indicators.items() for s in _indicator_specs(name, entries)]


class ModelConfig(_Frozen):
    """One model of the walk-forward; the parameters a kind does not use are ignored."""

    kind: Literal[MODEL_KINDS]
    name: str | None = Field(None, description="column name in predictions.parquet (default: the kind)")
    scope: Literal["per_symbol", "pooled"] = Field(
        "per_symbol", validate_default=True, description="per_symbol: one model per symbol (batched); pooled: one model over all symbols")
    alpha: float = Field(1.0, gt=0, description="ridge: L2 penalty")
    C: float = Field(1.0, gt=0, description="logistic: inverse L2 penalty")
    max_iter: int = Field(100, ge=1, le=100_000, description="logistic: iterations")
    n_neighbors: int = Field(25, ge=1, le=10_000, description="knn")
    n_estimators: int = Field(50, ge=1, le=10_000, description="random_forest")
    max_depth: int | None = Field(6, ge=1, le=64, description="random_forest")
    min_samples_leaf: int = Field(50, gt=0, description="random_forest")
    max_features: float = Field(0.5, gt=0, le=1, description="random_forest: share of features per split")
    max_samples: float = Field(0.1, gt=0, le=1, description="random_forest: share of rows per tree")
    seed: int = 0

    @field_validator("scope")
    @classmethod
    def _scope(cls, v, info: ValidationInfo):
        if info.data.get("kind") == "random_forest" and v != "pooled":
            raise ValueError("random_forest is a pooled model (per-symbol forests on a few hundred rows overfit); "
                             "set scope: pooled")
        return v

    @property
    def label(self) -> str:
        return self.name or self.kind


class ModelWalkForwardConfig(_Frozen):
    train_bars: int = Field(504, gt=1, description="rows of each (first, if expanding) train window")
    test_bars: int = Field(63, gt=0, description="rows of each test window, and the step")
    validation_bars: int = Field(63, ge=0, description="end of each train window scored for the ensembles (0: none)")
    purge_bars: int | None = Field(None, ge=1, description="rows between train and test; null = horizon_bars")
    expanding: bool = False
    min_train_rows: int = Field(100, ge=2, description="a per-symbol model needs this many valid rows")


class ModelEnsembleConfig(_Frozen):
    methods: list[Literal[ENSEMBLE_METHODS]] = Field(default_factory=lambda: list(ENSEMBLE_METHODS))
    stacking_alpha: float = Field(1.0, gt=0, description="ridge penalty of the stacking meta-model")


class ModelSignalConfig(_Frozen):
    """The backtest of an ensemble's out-of-sample signal (long where its score > threshold)."""

    ensemble: Literal[ENSEMBLE_METHODS] = Field("mean", description="which ensemble trades (mean: the most robust on the sample)")
    long_threshold: float = Field(0.0, description="z-score above which a symbol is held (0: above the average)")
    trade_on: Literal["open", "close"] = "open"
    commission_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="per fill, in [0, 1000) bps")
    slippage_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="per fill, in [0, 1000) bps")
    periods_per_year: float = Field(252.0, gt=0)


class ModelsConfig(_Frozen):
    horizon_bars: int = Field(5, ge=1, description="target: the return over the next horizon_bars bars")
    features: ModelFeaturesConfig = ModelFeaturesConfig()
    models: list[ModelConfig] = Field(default_factory=lambda: [
        ModelConfig(kind="ridge"), ModelConfig(kind="logistic"), ModelConfig(kind="knn"),
        ModelConfig(kind="random_forest", scope="pooled")], min_length=1, max_length=100)
    walk_forward: ModelWalkForwardConfig = ModelWalkForwardConfig()
    ensemble: ModelEnsembleConfig = ModelEnsembleConfig()
    signal: ModelSignalConfig = ModelSignalConfig()
    min_symbols: int = Field(5, ge=2, description="symbols a date needs for an IC")
    save_models: bool = Field(True, description="write the last step's fitted models into the report")
    out_dir: str | None = "reports/models"

    @field_validator("models")
    @classmethod
    def _names(cls, v):
        labels = [m.label for m in v]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"model name(s) {dup} used twice: give each model a distinct name")
        bad = [x for x in labels if x in ENSEMBLE_METHODS or x in ("timestamp", "symbol", "target")
               or x.startswith("ensemble")]
        if bad:
            raise ValueError(f"model name(s) {bad} clash with report columns")
        return v

    def purge(self) -> int:
        return self.walk_forward.purge_bars or self.horizon_bars


class CostConfig(_Frozen):
    """Hourly prices a run's GPU-seconds and CPU-seconds are costed at (alphapulse.pipelines.runtime.cost)."""

    gpu_per_hour: float = Field(3.0, ge=0, description="price of one GPU for an hour")
    cpu_core_per_hour: float = Field(0.045, ge=0, description="price of one CPU core for an hour")
    currency: str = Field("USD", min_length=1)


class BudgetConfig(_Frozen):
    """What a run may plan on this machine (:mod:`alphapulse.pipelines.runtime.budget`): the estimate of its memory,
    made from the data's sizes after loading, must fit ``memory_fraction`` of the memory available
    then, and its estimated hours of the long parts (a lower bound) ``max_hours``."""

    memory_fraction: float = Field(0.7, gt=0, le=1, description="share of the available memory (psutil) a run may plan")
    max_hours: float = Field(24.0, gt=0, le=8760, description="hours a run may plan for its long parts")


class Config(_Frozen):
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

    @field_validator("indicators")
    @classmethod
    def _indicators(cls, v):
        _check_indicator_block(v)  # raises with the name and the bad parameter, or the column count
        return v

    def indicator_specs(self) -> list[IndicatorSpec]:
        """The configured indicators, each with every parameter filled in."""
        return [s for name, entries in self.indicators.items() for s in _indicator_specs(name, entries)]

    def hash(self) -> str:
        """sha256 of the canonical JSON of the validated config (what the run actually used)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


MAX_INDICATOR_COLUMNS = 1000
"""Output columns an indicators block may ask for: each is a panel (bars x symbols) in memory and
a column of the report; 20,000 aborted a run at 8.4 GB."""

def _check_indicator_block(block: dict) -> None:
    """Every entry of an indicators block valid, and at most :data:`MAX_INDICATOR_COLUMNS` output
    columns; counted before the entries are resolved, so a huge list costs nothing."""
    columns = 0
    for name, entries in block.items():
        ind = INDICATORS.get(name)
        columns += max(1, len(entries or ())) * (len(ind.outputs) if ind is not None else 1)
    if columns > MAX_INDICATOR_COLUMNS:
        raise ValueError(f"{columns:,} output columns (at most {MAX_INDICATOR_COLUMNS:,}): fewer parameter sets")
    for name, entries in block.items():
        _indicator_specs(name, entries)


def _indicator_specs(name: str, entries) -> list[IndicatorSpec]:
    if name not in INDICATORS:
        raise ValueError(f"unknown indicator {name!r}{_suggest(name, INDICATORS)}; "
                         f"known: {', '.join(sorted(INDICATORS))}")
    ind = INDICATORS[name]
    if not entries:
        entries = [{}]
    specs = []
    for entry in entries:
        if not isinstance(entry, dict):
            if len(ind.params) != 1:
                raise ValueError(f"{name}: give the parameters {list(ind.params)} as a mapping, not {entry!r}")
            entry = {next(iter(ind.params)): entry}
        params = dict(ind.defaults)
        for key, value in entry.items():
            if key not in ind.params:
                raise ValueError(f"{name}: unknown parameter {key!r}{_suggest(key, ind.params)}; "
                                 f"known: {', '.join(ind.params)}")
            kind = ind.params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (kind is int and value != int(value)):
                raise ValueError(f"{name}.{key}: expected {kind.__name__}, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name}.{key}: must be positive, got {value!r}")
            params[key] = kind(value)
        try:  # the indicator's own bounds (TA-Lib's), checked here so that the error names the file
            ind.resolve(**params)
        except ValueError as e:
            raise ValueError(f"{name}.{e}") from None
        specs.append(IndicatorSpec(name, params))
    return specs


def _format_errors(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model = _model_at(parent)
            hint = _suggest(str(e["loc"][-1]), model.model_fields) if model else ""
            lines.append(f"{source}: {where}: unknown key{hint}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] in _BOUND_ERRORS:
                msg += _range_note(e["loc"])
            # reprlib: a YAML alias bomb or a huge list must not become a gigabyte error message
            lines.append(f"{source}: {where}: {msg} (got {_SHORT.repr(e.get('input'))})")
    if len(lines) > 5:
        lines = lines[:5] + [f"and {len(lines) - 5} more"]
    return "; ".join(lines)


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxstring, _SHORT.maxother = 2, 4, 4, 60, 60

MAX_CONFIG_BYTES = 1 << 20
"""A config is a few kilobytes; anything over 1 MiB is refused before it is parsed."""

MAX_CONFIG_DEPTH = 32
"""Nested mappings and lists a config may hold (the deepest key is 5 levels down); PyYAML's
composer and pydantic recurse per level, so 600 levels were a RecursionError traceback."""


_BOUND_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")


def _range_note(loc) -> str:
    """``"; range [lo, hi]"`` of the field (or list item) at ``loc``, from its declared bounds:
    pydantic names only the bound that failed, the documented range has both."""
    keys = list(loc)
    item = False
    while keys and isinstance(keys[-1], int):  # an item of a list field: the item type's bounds
        keys.pop()
        item = True
    model = _model_at(keys[:-1]) if keys else None
    field = model.model_fields.get(str(keys[-1])) if model is not None else None
    if field is None:
        return ""
    metadata = list(field.metadata)
    if item:
        args = typing.get_args(field.annotation)
        metadata = [m for f in typing.get_args(args[0])[1:] if args for m in getattr(f, "metadata", [f])]
    lo = hi = None
    for m in metadata:
        for attr, side in (("ge", "["), ("gt", "(")):
            if getattr(m, attr, None) is not None:
                lo = f"{side}{_number(getattr(m, attr))}"
        for attr, side in (("le", "]"), ("lt", ")")):
            if getattr(m, attr, None) is not None:
                hi = f"{_number(getattr(m, attr))}{side}"
    if lo is None and hi is None:
        return ""
    return f"; range {lo or '(-inf'}, {hi or 'inf)'}"


def _number(v) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _model_at(loc) -> type[BaseModel] | None:
    model: type[BaseModel] = Config
    for key in loc:
        if isinstance(key, int):  # a list's item: the list field already named the item's model
            continue
        field = model.model_fields.get(str(key))
        ann = getattr(field, "annotation", None)
        # an optional block (``walk_forward: WalkForwardConfig | None``) names its model too
        options = [a for a in (typing.get_args(ann) or (ann,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if len(options) != 1:
            return None
        model = options[0]
    return model


def default_config_text() -> str:
    """The documented default config shipped with the package."""
    return resources.files("alphapulse.pipelines.config").joinpath("default_config.yaml").read_text()


def parse_config(data: dict | None, *, source: str = "config") -> Config:
    """Validate a mapping (e.g. parsed YAML) into a :class:`Config`; errors name ``source`` and the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    _refuse_deep_data(data, source=source)
    try:
        return Config.model_validate(data)
    except ValidationError as err:
        raise ConfigError(_format_errors(err, source)) from None


def load_config(path: str | Path | None = None) -> Config:
    """Read and validate a YAML config; ``None`` gives the shipped default config.

    Only ``yaml.safe_load`` is used: a config can never construct Python objects.
    """
    if path is None:
        return parse_config(yaml.safe_load(default_config_text()), source="default config")
    path = Path(path)
    try:
        if path.exists() and not path.is_dir() and not path.is_file():
            raise ConfigError(f"{path}: not a regular file")  # a FIFO or /dev/zero would block or never end
        if path.is_file() and path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: {path.stat().st_size:,} bytes; a config is at most {MAX_CONFIG_BYTES:,}")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read config: {e}") from None
    _refuse_deep_yaml(text, source=str(path))
    try:
        data = yaml.safe_load(text)
    except ValueError as e:  # a constructor's own error, e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())[:200]}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{path}: not valid YAML{where}: {what}") from None
    _refuse_repeated_keys(text, source=str(path))
    return parse_config(data, source=str(path))


def _refuse_deep_yaml(text: str, *, source: str) -> None:
    """A ``ConfigError`` for YAML nested more than :data:`MAX_CONFIG_DEPTH` levels, found in the
    parser's event stream (a loop, no recursion) before anything recursive reads the text. A
    syntax error is left for ``safe_load`` to report with its own message."""
    depth = 0
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_CONFIG_DEPTH:
                    raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep at line "
                                      f"{event.start_mark.line + 1} (a config is a few levels deep)")
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return


def _refuse_deep_data(data, *, source: str) -> None:
    """The same bound on an already parsed mapping (``parse_config`` from Python), walked with a
    stack; each container is visited once, so shared (aliased) ones cost nothing."""
    stack, seen = [(data, 1)], set()
    while stack:
        node, depth = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{source}: nested more than {MAX_CONFIG_DEPTH} levels deep (a config is a few levels deep)")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _refuse_repeated_keys(text: str, *, source: str) -> None:
    """A ``ConfigError`` for a key given twice in one mapping: YAML loaders keep the last silently,
    so a pasted second ``data:`` block would quietly replace the first. Walks the composed node
    graph (no objects are constructed), each node once, so anchors and aliases cost nothing."""
    seen: set[int] = set()
    stack = [(yaml.compose(text, Loader=yaml.SafeLoader), "")]
    while stack:
        node, where = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[str, int] = {}
            for key, value in node.value:
                name = str(key.value) if isinstance(key, yaml.ScalarNode) else None
                if name is not None and name in lines:
                    raise ConfigError(f"{source}: {where + name}: key given twice (lines {lines[name]} and "
                                      f"{key.start_mark.line + 1}); keep one")
                if name is not None:
                    lines[name] = key.start_mark.line + 1
                stack.append((value, f"{where}{name}."))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((item, where) for item in node.value)
