"""The sweep: the request's combinations over every symbol, sharded in tasks of symbol blocks.

Implements the sharding (:func:`fold_group_size`, :func:`fold_groups`, :func:`symbols_per_task`,
:func:`make_blocks`: tasks of whole portfolio fold groups), :func:`run_tasks` (in-process or on
a Dask client), :func:`sweep_stage` with its :class:`SweepResult` (per (combination, symbol)
metrics and each combination's equal-weight portfolio, folded in group order so it is
bit-identical whatever the split) and :func:`ranked_combinations`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from alphapulse.pipelines.backtest.block import BlockResult, SweepJob, SymbolBlock, make_job, run_block
from alphapulse.pipelines.backtest.panel import PreparedPanel
from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.cluster import worker_threads
from alphapulse.pipelines.runtime.routing import route
from alphapulse.pipelines.runtime.stages import TaskRecord, current_tracker, set_queue
from alphapulse.transforms.arrays import to_host
from alphapulse.transforms.backtest.metrics import METRICS
from alphapulse.transforms.backtest.returns_metrics import equal_weight_returns, metrics_from_returns

log = logging.getLogger(__name__)

FOLD_GROUP_SYMBOLS = 64
MAX_FOLD_GROUPS = 64
TASK_WORK = 2e8
"""Bar x series steps of an ``auto`` task: a few seconds of one core."""


def fold_group_size(n_symbols: int) -> int:
    """Symbols per portfolio fold group: :data:`FOLD_GROUP_SYMBOLS`, more when that would make
    more than :data:`MAX_FOLD_GROUPS` groups (each group's partial sums are kept until folded)."""
    return max(FOLD_GROUP_SYMBOLS, math.ceil(n_symbols / MAX_FOLD_GROUPS))


def symbols_per_task(*, n_symbols: int, n_bars: int, work_per_symbol: float, setting, threads: int) -> int:
    """Symbols in each task: ``setting`` (an int) or, for "auto", about :data:`TASK_WORK` steps
    of work and at least two tasks per worker thread where the work allows; rounded up to whole
    fold groups."""
    group = fold_group_size(n_symbols)
    if setting == "auto":
        size = math.ceil(TASK_WORK / max(work_per_symbol, 1.0))
        if threads > 1:
            size = min(size, math.ceil(n_symbols / (2 * threads)))
    else:
        size = int(setting)
    size = math.ceil(max(1, size) / group) * group
    return max(1, min(size, n_symbols))


def fold_groups(n_symbols: int) -> list[tuple[int, int]]:
    """The fold groups' symbol ranges [start, stop): :func:`fold_group_size` symbols each, a last
    group of one symbol merged into the one before."""
    size = fold_group_size(n_symbols)
    bounds = list(range(0, n_symbols, size)) + [n_symbols]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return list(zip(bounds[:-1], bounds[1:]))


def make_blocks(prepared: PreparedPanel, size: int, *, host: bool) -> list[SymbolBlock]:
    """Tasks of whole fold groups, about ``size`` symbols each (at least one group)."""
    n_sym = prepared.shape[1]
    spans, current = [], []
    for g, (a, b) in enumerate(fold_groups(n_sym)):
        current.append((g, a, b))
        if current[-1][2] - current[0][1] >= size:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    blocks = []
    for index, span in enumerate(spans):
        start, stop = span[0][1], span[-1][2]
        groups = tuple((g, a - start, b - start) for g, a, b in span)
        prices = {k: v[:, start:stop] for k, v in prepared.prices.items()}
        n, rows = prepared.n[start:stop], prepared.rows[:, start:stop]
        if host:
            prices = {k: to_host(v) for k, v in prices.items()}
            n, rows = to_host(n), to_host(rows)
        blocks.append(SymbolBlock(index, start, prices, n, rows, groups))
    return blocks


def run_tasks(blocks: list[SymbolBlock], job: SweepJob, client=None, *, on_result: Callable) -> None:
    """Run :func:`run_block` for every block, in-process or on ``client``'s workers, calling
    ``on_result`` with each :class:`BlockResult` as it completes (in any order)."""
    total = len(blocks)
    set_queue(total)  # the utilisation samples' queue length
    if client is None:
        for k, block in enumerate(blocks):
            on_result(run_block(block, job))
            set_queue(total - k - 1)
            log.info("backtest: task %d/%d done", k + 1, total)
        return
    from distributed import as_completed

    job_future = client.scatter(job, broadcast=True, hash=False)
    futures = [client.submit(run_block, data, job_future, pure=False)
               for data in client.scatter(blocks, hash=False)]
    for k, future in enumerate(as_completed(futures)):
        on_result(future.result())
        future.release()
        set_queue(total - k - 1)
        log.info("backtest: task %d/%d done", k + 1, total)


def absorb_alerts(stats: list[dict]) -> None:
    """Add the GPU alerts the tasks recorded (wherever they ran) to the current run's record."""
    tracker = current_tracker()
    if tracker is not None:
        tracker.absorb(TaskRecord(alerts=[a for s in stats for a in s.get("alerts", ())]))


@dataclass
class SweepResult:
    """Per (combination, symbol) metrics and the portfolio of each combination.

    Attributes
    ----------
    metrics : dict of metric -> float64 array of shape (n_combinations, n_symbols)
    portfolio_returns : float64 array of shape (n_timestamps, n_combinations), NaN where no symbol
        has a return
    portfolio_counts : int64 array of the same shape: symbols in the mean
    portfolio_metrics : dict of metric (``RETURN_METRICS``) -> array of shape (n_combinations,)
    chunks : how the work was split (for the manifest)
    """

    metrics: dict
    portfolio_returns: np.ndarray
    portfolio_counts: np.ndarray
    portfolio_metrics: dict
    chunks: dict


def task_plan(request: BacktestRequest, prepared: PreparedPanel, client, work_factor: float) -> int:
    """Symbols per task for the request on ``client``'s threads; ``work_factor`` scales each
    symbol's work (the bars a walk-forward trades over the panel's bars)."""
    n_bars, n_sym = prepared.shape
    return symbols_per_task(n_symbols=n_sym, n_bars=n_bars,
                            work_per_symbol=n_bars * len(request.plan.combos) * work_factor,
                            setting=request.config.backtest.symbols_per_chunk, threads=worker_threads(client))


def chunk_record(blocks, size, stats: list[dict], budget: int) -> dict:
    """How the work was split, for the manifest's ``chunks``."""
    return {"tasks": len(blocks), "symbols_per_task": size,
            "fold_groups": sum(len(b.groups) for b in blocks),
            "sub_blocks": sum(s["sub_blocks"] for s in stats), "launches": sum(s["launches"] for s in stats),
            "symbols_per_sub_block": max((s["symbols_per_sub_block"] for s in stats), default=0),
            "combinations_per_chunk": max((s["combinations_per_chunk"] for s in stats), default=0),
            "largest_chunk_elements": max((s["largest_chunk_elements"] for s in stats), default=0),
            "batch_elements": budget,
            "task_seconds": sorted(s["seconds"] for s in stats)}


def sweep_stage(prepared: PreparedPanel, request: BacktestRequest, backend: Backend, client=None) -> SweepResult:
    """Every (symbol, combination), sharded in symbol blocks; the portfolio of each combination."""
    n_bars, n_sym = prepared.shape
    n_comb = len(request.plan.combos)
    backend = route("backtest", n_sym * n_comb, backend, request.config.gpu)  # gpu.fallback.min_speedup
    job = make_job(request, prepared, backend)
    size = task_plan(request, prepared, client, 1.0)
    blocks = make_blocks(prepared, size, host=client is not None or not backend.is_gpu)
    metrics = {m: np.full((n_comb, n_sym), np.nan) for m in METRICS}
    counts = np.zeros((n_bars, n_comb), dtype=np.int64)
    sums = np.zeros((n_bars, n_comb), dtype=np.float64)
    pending: dict[int, np.ndarray] = {}
    next_group = [0]
    stats = []

    def collect(res: BlockResult):
        for k, v in res.metrics.items():
            metrics[k][:, res.start:res.stop] = v
        np.add(counts, res.counts, out=counts)
        for g, part in res.group_sums:
            pending[g] = part
        while next_group[0] in pending:  # groups in order: bit-identical whatever the tasks
            np.add(sums, pending.pop(next_group[0]), out=sums)
            next_group[0] += 1
        stats.append(res.stats)

    log.info("backtest: %d symbols x %d combinations x %d bars in %d task(s) of %d symbols",
             n_sym, n_comb, n_bars, len(blocks), size)
    run_tasks(blocks, job, client, on_result=collect)
    absorb_alerts(stats)
    if pending:
        raise RuntimeError(f"portfolio fold groups missing: {sorted(pending)} left after {next_group[0]}")
    returns = equal_weight_returns(sums, counts)
    bt = request.config.backtest
    pm = metrics_from_returns(returns, periods_per_year=bt.periods_per_year, definitions=bt.definitions)
    pm = {k: to_host(v) for k, v in pm.items()}
    return SweepResult(metrics, returns, counts, pm, chunk_record(blocks, size, stats, job.batch_elements))



def ranked_combinations(sweep: SweepResult) -> np.ndarray:
    """Combination indices by portfolio Sharpe, best first (NaN last, ties by index)."""
    sharpe = sweep.portfolio_metrics["sharpe"]
    key = np.where(np.isnan(sharpe), -np.inf, sharpe)
    return np.lexsort((np.arange(len(key)), -key))

