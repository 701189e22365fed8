"""The ``backtest:`` block: the strategy, its grid, execution, costs and the walk-forward.

Implements :class:`BacktestConfig`, :class:`WalkForwardConfig` and :data:`SELECTION_METRICS`.
"""
from __future__ import annotations

from typing import Annotated, Literal, Union

from pydantic import Field, StrictFloat, StrictInt, ValidationInfo, field_validator

from alphapulse.pipelines.config.base import MAX_COST_BPS, Frozen, suggest
from alphapulse.pipelines.config.strategies import known_reference
from alphapulse.pipelines.config.grid import MAX_COMBINATIONS, GridError, check_grid, parse_values
from alphapulse.pipelines.runtime.cluster import check_cluster_spec
from alphapulse.transforms.backtest.strategies import STRATEGIES

SELECTION_METRICS = ("sharpe", "sortino", "calmar", "total_return", "cagr", "ann_return", "max_drawdown",
                     "win_rate", "profit_factor", "avg_trade")
"""Metrics a walk-forward may maximise (higher is better for each; max_drawdown is <= 0)."""


class WalkForwardConfig(Frozen):
    """Rolling train (in-sample) and test (out-of-sample) windows; the models' walk-forward uses
    the same two names (``models.walk_forward``)."""

    train_bars: int = Field(gt=1, description="bars of each train (in-sample) window")
    test_bars: int = Field(gt=1, description="bars of each test (out-of-sample) window, and the roll")
    metric: Literal[SELECTION_METRICS] = Field("sharpe", description="train-window metric to maximise")
    select: Literal["per_symbol", "median"] = Field(
        "per_symbol", description="per_symbol: each symbol's best combination; median: the combination "
                                  "with the best median metric over symbols, for all")


_GridValue = Union[StrictInt, StrictFloat, str, list[Union[StrictInt, StrictFloat, str]]]


class BacktestConfig(Frozen):
    strategy: str = Field("sma_cross",
                          description="a built-in strategy (alphapulse.transforms.backtest.strategies.STRATEGIES), "
                                      "package.module:name, or an entry point of the group alphapulse.strategies")
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
        # a module reference or a plug-in is imported (and checked) when a run asks for it, never
        # while a config is read
        if not known_reference(v):
            raise ValueError(f"unknown strategy {v!r}{suggest(v, STRATEGIES)}; known: {', '.join(STRATEGIES)}, "
                             "package.module:name, or an entry point of the group alphapulse.strategies")
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

    def execution(self) -> dict:
        """The engine's execution keywords (``alphapulse.transforms.backtest.engine.run_backtest``):
        direction, fills, sizing, costs, stops (0 = off)."""
        return {"direction": self.direction, "trade_on": self.trade_on, "size_fraction": self.size_fraction,
                "commission_bps": self.commission_bps, "slippage_bps": self.slippage_bps,
                "stop_loss": self.stop_loss or 0.0, "take_profit": self.take_profit or 0.0}

    def grid_values(self) -> dict[str, list]:
        """The grid as parameter -> values, checked against (and cast for) the strategy."""
        strategy = STRATEGIES[self.strategy]
        return check_grid({n: parse_values(n, v) for n, v in self.grid.items()}, strategy_name=self.strategy,
                          params=strategy.params)

