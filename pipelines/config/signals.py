"""The ``signals:`` block: which strategies the daily run turns into tomorrow's positions.

Implements :class:`SignalsConfig` and :class:`SignalStrategyConfig`. Two sources, either or both:

- ``strategies``: fixed parameter sets, ``{strategy: sma_cross, params: {fast: 10, slow: 30}}``
  (a built-in, ``package.module:name`` or an entry point of ``alphapulse.strategies``; parameters
  left out take the strategy's defaults); they trade with the ``backtest:`` block's execution
  settings (direction, fills, costs, stops);
- ``from_report``: a backtest report folder; its ``top`` combinations by rank, with the report's
  strategy and execution settings, so the signals are those of the tested strategy.

Every size a user sets here is bounded before anything is allocated: ``MAX_SIGNAL_SETS`` parameter
sets in all, ``charts`` and ``chart_bars`` per page, ``breadth_bars`` of history on the page.
"""
from __future__ import annotations

from pydantic import Field, StrictFloat, StrictInt, field_validator, model_validator

from alphapulse.pipelines.config.base import Frozen, suggest
from alphapulse.pipelines.config.strategies import known_reference
from alphapulse.transforms.backtest.strategies import STRATEGIES

MAX_SIGNAL_SETS = 100
"""Parameter sets (fixed ones plus ``top``) a daily run may signal; each is a backtest over every symbol."""

class SignalStrategyConfig(Frozen):
    strategy: str = Field(description="a built-in strategy, package.module:name, or an entry point of "
                                      "the group alphapulse.strategies")
    params: dict[str, StrictInt | StrictFloat] = Field(default_factory=dict,
                                                       description="parameter -> value; the rest take the defaults")

    @model_validator(mode="after")
    def _known(self):
        builtin = STRATEGIES.get(self.strategy)
        if builtin is None:
            if not known_reference(self.strategy):
                raise ValueError(f"unknown strategy {self.strategy!r}{suggest(self.strategy, STRATEGIES)}; known: "
                                 f"{', '.join(STRATEGIES)}, package.module:name, or an entry point of the group "
                                 "alphapulse.strategies")
            return self  # imported and checked when a run asks for it, never while a config is read
        for name, value in self.params.items():
            kind = builtin.params.get(name)
            if kind is None:
                raise ValueError(f"{self.strategy} has no parameter {name!r}{suggest(name, builtin.params)}; "
                                 f"its parameters: {', '.join(builtin.params)}")
            if kind is int and not isinstance(value, int):
                raise ValueError(f"{self.strategy}.{name} takes an integer, got {value!r}")
        return self


class SignalsConfig(Frozen):
    strategies: list[SignalStrategyConfig] = Field(default_factory=list, max_length=MAX_SIGNAL_SETS,
                                                   description="fixed parameter sets to signal")
    from_report: str | None = Field(None, description="a backtest report folder: signal its top combinations")
    top: int = Field(3, ge=1, le=MAX_SIGNAL_SETS, description="combinations taken from from_report, by rank")
    charts: int = Field(12, ge=0, le=100, description="entries and exits charted on summary.html, best record first")
    chart_bars: int = Field(120, ge=10, le=2000, description="bars of history in each chart")
    breadth: bool = Field(True, description="market breadth per bar: breadth.parquet and a section of summary.html")
    breadth_bars: int = Field(504, ge=10, le=100_000, description="bars of market breadth on summary.html")

    @field_validator("from_report")
    @classmethod
    def _report(cls, v):
        if v is not None and not v.strip():
            raise ValueError("from_report is an empty path (null for none)")
        return v

    @model_validator(mode="after")
    def _bounded(self):
        total = len(self.strategies) + (self.top if self.from_report else 0)
        if total > MAX_SIGNAL_SETS:
            raise ValueError(f"{len(self.strategies)} strategies + top {self.top} = {total} parameter sets; at most "
                             f"{MAX_SIGNAL_SETS}")
        return self

    @property
    def enabled(self) -> bool:
        return bool(self.strategies) or self.from_report is not None
