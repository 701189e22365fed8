"""The backtest's walk-forward stage: every combination on rolling train and test windows.

Implements :func:`walk_forward_stage` and its :class:`WalkForwardResult`. The windows
(``backtest.walk_forward``: ``train_bars`` then ``test_bars``, rolled by ``test_bars``), their
slices and the train-window choice are the arithmetic of
:mod:`alphapulse.transforms.backtest.walk_forward`; each window is traded by the sweep's task
runner (:func:`alphapulse.pipelines.backtest.block.run_block`), starting flat with equity 1 at
the window's first bar while its indicators come from the whole history before it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from alphapulse.pipelines.backtest.block import BlockResult, make_job
from alphapulse.pipelines.backtest.panel import PreparedPanel
from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.backtest.sweep import absorb_alerts, chunk_record, make_blocks, run_tasks, task_plan
from alphapulse.pipelines.errors import DataError
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.transforms.backtest.metrics import METRICS
from alphapulse.transforms.backtest.walk_forward import choose_combinations, walk_forward_windows

log = logging.getLogger(__name__)


@dataclass
class WalkForwardResult:
    """Each window's metrics, train (``in_sample``) and test (``out_of_sample``), and the choice."""

    windows: list
    in_sample: dict      # metric -> (n_windows, n_combinations, n_symbols)
    out_of_sample: dict  # metric -> (n_windows, n_combinations, n_symbols)
    chosen: np.ndarray   # (n_windows, n_symbols) combination index, -1 where none
    chunks: dict


def walk_forward_stage(prepared: PreparedPanel, request: BacktestRequest, backend: Backend,
                       client=None) -> WalkForwardResult | None:
    """Every combination on each train and test window; the choice made on the train windows."""
    wf = request.config.backtest.walk_forward
    if wf is None:
        return None
    n_bars, n_sym = prepared.shape
    windows = walk_forward_windows(n_bars, train_bars=wf.train_bars, test_bars=wf.test_bars)
    if not windows:
        raise DataError(f"walk_forward needs train_bars + test_bars = "
                        f"{wf.train_bars + wf.test_bars} timestamps; the data has {n_bars}")
    trade_windows = tuple(w for a, b, c, d in windows for w in ((a, b), (c, d)))
    n_comb = len(request.plan.combos)
    job = make_job(request, prepared, backend, portfolio=False, full=False, windows=trade_windows)
    factor = sum(b - a for a, b in trade_windows) / max(n_bars, 1)
    size = task_plan(request, prepared, client, factor)
    blocks = make_blocks(prepared, size, host=client is not None)
    values = {m: np.full((len(trade_windows), n_comb, n_sym), np.nan) for m in METRICS}
    stats = []

    def collect(res: BlockResult):
        for k, v in res.windows.items():
            values[k][:, :, res.start:res.stop] = v
        stats.append(res.stats)

    log.info("walk-forward: %d windows (%d + %d bars)", len(windows), wf.train_bars, wf.test_bars)
    run_tasks(blocks, job, client, on_result=collect)
    absorb_alerts(stats)  # a window's out-of-memory alerts belong in the manifest as the sweep's do
    in_sample = {k: v[0::2] for k, v in values.items()}
    out_of_sample = {k: v[1::2] for k, v in values.items()}
    chosen = choose_combinations(in_sample[wf.metric], select=wf.select)
    return WalkForwardResult(windows, in_sample, out_of_sample, chosen,
                             chunk_record(blocks, size, stats, job.batch_elements))

