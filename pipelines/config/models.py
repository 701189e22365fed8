"""The ``models:`` block: features, the models, their walk-forward, ensembles and the signal.

Implements :class:`ModelsConfig` and its parts (:class:`ModelFeaturesConfig`,
:class:`ModelConfig`, :class:`ModelWalkForwardConfig`, :class:`ModelEnsembleConfig`,
:class:`ModelSignalConfig`) and the names and bounds they accept (:data:`MODEL_KINDS`,
:data:`ENSEMBLE_METHODS`, :data:`MAX_WINDOW_BARS`).
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, StrictFloat, StrictInt, ValidationInfo, field_validator

from alphapulse.pipelines.config.base import MAX_COST_BPS, Frozen
from alphapulse.pipelines.config.indicators import check_indicator_block, indicator_specs
from alphapulse.transforms.indicators.registry import IndicatorSpec

MAX_WINDOW_BARS = 100_000
"""Largest feature window in bars (the indicators' own periods stop at the same 100,000)."""


MODEL_KINDS = ("ridge", "logistic", "random_forest", "knn", "xgboost")
ENSEMBLE_METHODS = ("mean", "weighted", "stacking")


class ModelFeaturesConfig(Frozen):
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
        check_indicator_block(v)
        return v

    def indicator_specs(self) -> list[IndicatorSpec]:
        return [s for name, entries in self.indicators.items() for s in indicator_specs(name, entries)]


class ModelConfig(Frozen):
    """One model of the walk-forward; the parameters a kind does not use are ignored."""

    kind: Literal[MODEL_KINDS]
    name: str | None = Field(None, description="column name in predictions.parquet (default: the kind)")
    scope: Literal["per_symbol", "pooled"] = Field(
        "per_symbol", validate_default=True,
        description="per_symbol: one model per symbol (batched); pooled: one model over all symbols")
    alpha: float = Field(1.0, gt=0, description="ridge: L2 penalty")
    C: float = Field(1.0, gt=0, description="logistic: inverse L2 penalty")
    max_iter: int = Field(100, ge=1, le=100_000, description="logistic: iterations")
    n_neighbors: int = Field(25, ge=1, le=10_000, description="knn")
    n_estimators: int = Field(50, ge=1, le=10_000, description="random_forest: trees; xgboost: most boosting rounds")
    max_depth: int | None = Field(6, ge=1, le=64, description="random_forest, xgboost")
    min_samples_leaf: int = Field(50, gt=0, description="random_forest")
    max_features: float = Field(0.5, gt=0, le=1, description="random_forest: share of features per split")
    max_samples: float = Field(0.1, gt=0, le=1, description="random_forest: share of rows per tree")
    learning_rate: float = Field(0.1, gt=0, le=1, description="xgboost: shrinkage of each round")
    early_stopping_rounds: int | None = Field(
        20, ge=1, le=10_000, description="xgboost: stop after this many rounds without a better validation loss "
                                         "(on the walk-forward's validation slice; null: always n_estimators)")
    subsample: float = Field(0.8, gt=0, le=1, description="xgboost: share of rows per round")
    colsample_bytree: float = Field(0.8, gt=0, le=1, description="xgboost: share of features per tree")
    min_child_weight: float = Field(50.0, ge=0, le=1e9, description="xgboost: least hessian (rows) in a leaf")
    reg_lambda: float = Field(1.0, ge=0, le=1e9, description="xgboost: L2 penalty on leaf weights")
    n_threads: int = Field(1, ge=1, le=1024, description="xgboost on the CPU: threads (fixed, so reruns give "
                                                         "the same bytes)")
    seed: int = Field(0, ge=0, le=2**31 - 1)

    @field_validator("scope")
    @classmethod
    def _scope(cls, v, info: ValidationInfo):
        if info.data.get("kind") in ("random_forest", "xgboost") and v != "pooled":
            raise ValueError(f"{info.data['kind']} is a pooled model (per-symbol trees on a few hundred rows "
                             f"overfit); set scope: pooled")
        return v

    @property
    def label(self) -> str:
        return self.name or self.kind


class ModelWalkForwardConfig(Frozen):
    train_bars: int = Field(504, gt=1, description="rows of each (first, if expanding) train window")
    test_bars: int = Field(63, gt=0, description="rows of each test window, and the step")
    validation_bars: int = Field(63, ge=0, description="end of each train window scored for the ensembles (0: none)")
    purge_bars: int | None = Field(None, ge=1, description="rows between train and test; null = horizon_bars")
    expanding: bool = False
    min_train_rows: int = Field(100, ge=2, description="a per-symbol model needs this many valid rows")


class ModelEnsembleConfig(Frozen):
    methods: list[Literal[ENSEMBLE_METHODS]] = Field(default_factory=lambda: list(ENSEMBLE_METHODS))
    stacking_alpha: float = Field(1.0, gt=0, description="ridge penalty of the stacking meta-model")


class ModelSignalConfig(Frozen):
    """The backtest of an ensemble's out-of-sample signal (long where its score > threshold)."""

    ensemble: Literal[ENSEMBLE_METHODS] = Field(
        "mean", description="which ensemble trades (mean: the most robust on the sample)")
    long_threshold: float = Field(0.0, description="z-score above which a symbol is held (0: above the average)")
    trade_on: Literal["open", "close"] = "open"
    commission_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="per fill, in [0, 1000) bps")
    slippage_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="per fill, in [0, 1000) bps")
    periods_per_year: float = Field(252.0, gt=0)


class ModelsConfig(Frozen):
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

