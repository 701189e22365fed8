"""The backtest's load and panel stages: the bars as compacted prices every task reads.

Implements :func:`load_stage`, :func:`panel_stage` and :class:`PreparedPanel` (the prices
compacted per symbol, ``alphapulse.transforms.backtest.engine.compact_bars``, and the timestamp
of each compacted bar).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.data.load import LoadedBars, load_bars
from alphapulse.pipelines.data.panel import bars_to_panel
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.transforms.backtest import engine as engine

PRICE_FIELDS = ("open", "high", "low", "close", "volume")


def load_stage(request: BacktestRequest, backend: Backend) -> LoadedBars:
    return load_bars(request.inputs, lib=backend.frames,
                     symbols_per_partition=request.config.data.symbols_per_partition)


@dataclass
class PreparedPanel:
    """The compacted panel every task reads.

    Attributes
    ----------
    timestamps : pandas DatetimeIndex of length n_bars (host), the union of all timestamps
    symbols : list of n_symbols symbol names, sorted
    prices : dict of field -> array of shape (n_bars, n_symbols), compacted (each symbol's bars
        first, NaN below), on the backend's device
    n : int64 array of shape (n_symbols,): bars per symbol
    rows : int64 array of shape (n_bars, n_symbols): the timestamp row of each compacted bar, -1
        below ``n``
    """

    timestamps: pd.DatetimeIndex
    symbols: list
    prices: dict
    n: object
    rows: object

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.timestamps), len(self.symbols)


def panel_stage(bars, backend: Backend) -> PreparedPanel:
    """Pivot, compact and index the bars (see :class:`PreparedPanel`)."""
    panel = bars_to_panel(bars, fields=PRICE_FIELDS, dtype=backend.dtype, xp=backend.xp, order=backend.panel_order)
    prices, n, rows = engine.compact_bars(panel.fields, fields=PRICE_FIELDS)
    timestamps = pd.DatetimeIndex(frames.to_host(panel.timestamps))
    symbols = [str(s) for s in frames.to_host(panel.symbols)]
    return PreparedPanel(timestamps, symbols, prices, n, rows)
