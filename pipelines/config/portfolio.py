"""The ``portfolio:`` block: covariance, optimisers, Black-Litterman views, regimes, Monte Carlo.

Implements :class:`PortfolioConfig` and its parts (:class:`ViewConfig`,
:class:`BlackLittermanConfig`, :class:`RegimeConfig`, :class:`MonteCarloConfig`,
:class:`PortfolioWalkForwardConfig`) and the names they accept (:data:`COVARIANCE_ESTIMATORS`,
:data:`PORTFOLIO_METHODS`, :data:`MC_MODELS`, :data:`REBALANCE_RULES`, :data:`HOLDINGS`).
"""
from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, ValidationInfo, field_validator

from alphapulse.pipelines.config.base import MAX_COST_BPS, Frozen
from alphapulse.transforms.covariance import COVARIANCE_ESTIMATORS as _COVARIANCE_REGISTRY
from alphapulse.transforms.portfolio.fallback import OPTIMISERS as _OPTIMISERS

# the registries' names: a new estimator or optimiser is one entry there
COVARIANCE_ESTIMATORS = tuple(_COVARIANCE_REGISTRY)
PORTFOLIO_METHODS = tuple(_OPTIMISERS)
MC_MODELS = ("normal", "student_t", "bootstrap")
REBALANCE_RULES = ("every", "month_end", "quarter_end", "band")  # transforms.portfolio.schedule's
HOLDINGS = ("drift", "constant")
MAX_WALK_FORWARD_BARS = 100_000
"""Bound of train_bars and rebalance_bars: 400 years of daily bars."""


class ViewConfig(Frozen):
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


class BlackLittermanConfig(Frozen):
    tau: float = Field(0.05, gt=0, le=1)
    risk_aversion: float = Field(1.0, gt=0, description="delta of the equal-weight market prior")
    views: list[ViewConfig] = Field(default_factory=list)


class RegimeConfig(Frozen):
    n_clusters: int = Field(3, ge=1, le=100)
    seed: int = 0
    n_init: int = Field(10, ge=1, le=1000, description="KMeans restarts (each a full fit)")
    vol_window_bars: int = Field(21, ge=2)
    corr_window_bars: int = Field(63, ge=2)
    trend_window_bars: int = Field(126, ge=2)


class MonteCarloConfig(Frozen):
    n_paths: int = Field(100_000, ge=100, le=1_000_000_000)
    horizons_bars: list[Annotated[int, Field(ge=1, le=10_000)]] = Field(default_factory=lambda: [1, 10], min_length=1,
                                                                      max_length=100)
    levels: list[Annotated[float, Field(gt=0, lt=1)]] = Field(default_factory=lambda: [0.95, 0.99], min_length=1,
                                                              max_length=100)
    models: list[Literal[MC_MODELS]] = Field(default_factory=lambda: list(MC_MODELS), min_length=1)
    student_t_dof: float = Field(5.0, gt=2)
    seed: int = 0


class PortfolioWalkForwardConfig(Frozen):
    """``portfolio.walk_forward``: every method re-estimated on trailing data at each rebalance and
    held out of sample (``alphapulse.transforms.portfolio.walk_forward``)."""

    train_bars: int = Field(252, ge=2, le=MAX_WALK_FORWARD_BARS, description="returns in each estimation window")
    rebalance: Literal[REBALANCE_RULES] = Field(
        "month_end", description="every (rebalance_bars) | month_end | quarter_end | band (drift beyond band)")
    rebalance_bars: int = Field(21, ge=1, le=MAX_WALK_FORWARD_BARS, description="bars between rebalances, for every")
    band: float = Field(0.05, gt=0, lt=1, description="absolute weight drift that triggers a rebalance, for band")
    holdings: Literal[HOLDINGS] = Field("drift", description="drift: shares held; constant: weights reset every bar")
    cost_bps: float = Field(0.0, ge=0, lt=MAX_COST_BPS, description="bps of the value traded, in [0, 1000)")
    top_holdings: int = Field(10, ge=1, le=100, description="symbols the report's weights chart names")

    @field_validator("holdings")
    @classmethod
    def _holdings(cls, v, info: ValidationInfo):
        if v == "constant" and info.data.get("rebalance") == "band":
            raise ValueError("rebalance: band needs holdings: drift (constant weights never drift)")
        return v


class PortfolioConfig(Frozen):
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
    walk_forward: PortfolioWalkForwardConfig | None = None
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

