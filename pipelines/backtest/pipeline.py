"""The backtest pipeline: one strategy over every (symbol, parameter combination), sharded.

load -> validate -> panel (compacted) -> sweep (Dask tasks of symbol blocks) -> walk-forward
(optional) -> equity curves -> report. Each stage is a plain function, declared once in
:data:`BACKTEST`: :func:`run_backtest_pipeline` runs the list without Prefect, the Prefect flow
(``alphapulse.flows.backtest``) as tasks. The stages live in the package's modules: ``request``
(the checked request), ``panel`` (load and panel), ``block`` (one task), ``sweep`` (sharding and
the sweep), ``walk_forward``, ``compute`` (sweep and walk-forward on the run's cluster, and the
cache key), ``frames`` (the report's tables) and ``report``.

Execution
---------
- The bars become a time x symbols panel on the backend's device (NumPy or CuPy, the backend's
  dtype and memory order), compacted per symbol (``alphapulse.transforms.kernels.compact``: a symbol's own
  bars, gaps skipped, as the indicators and the engine see them). ``rows`` maps each compacted
  bar back to its timestamp.
- Work is split in three levels:

  1. *tasks*: blocks of whole symbols with all the combinations, ``backtest.symbols_per_chunk``
     symbols each (``auto``: a few seconds of work, and at least two tasks per worker thread
     when there is enough work). Tasks run in-process one after the other (no cluster), or on
     Dask workers (``backtest.cluster``, see :mod:`alphapulse.pipelines.runtime.cluster`).
  2. *sub-blocks* of a task's symbols whose indicator bank (the unique indicator series of the
     plan, computed once per sub-block by ``alphapulse.transforms.backtest.engine.indicator_bank`` as an array of
     shape (K, n_bars, n_symbols), each (row, symbol) series contiguous on the CPU, C-order on
     the GPU) fits the memory budget;
  3. *chunks* of combinations of a sub-block, one engine launch each, whose
     bars x (symbols x combinations) returns buffer fits the budget. The budget is
     ``gpu.operations.batch_size`` elements, and on the GPU at most a quarter of the free device
     memory. The time x symbols x combinations cube never exists beyond one chunk.

  Metrics are reduced on the device (``alphapulse.transforms.backtest.metrics.metrics_from_acc``) and only they, and
  the portfolio's running sums, come back.
- The equal-weight portfolio of a combination holds every symbol, rebalanced each bar with shared
  capital: its return at a timestamp is the mean of the strategy returns of the symbols that have
  a return there (``alphapulse.transforms.backtest.returns_metrics``). Symbols are summed one by one in a fixed order
  inside fixed *fold groups* (64 symbols, or more to keep at most 64 groups; tasks hold whole
  groups), then the groups' sums in order, so the portfolio is bit-identical whatever the batch
  size, the task size and the cluster.
- Walk-forward (``backtest.walk_forward``): rolling windows over the panel's timestamps,
  train (in-sample) ``train_bars`` then test (out-of-sample) ``test_bars``, rolled by the test
  length (``alphapulse.transforms.backtest.walk_forward``). Every combination is run on each
  window with the same chunk runner; a window's run starts flat with equity 1 at the window's
  first bar and trades only inside the window, while its indicators come from the whole history
  before it (no warm-up is lost; the indicators are causal, so nothing after a bar reaches it).
  The choice of combination reads only the train-window metrics: per symbol
  (``select: per_symbol``) or the best median over symbols (``select: median``).
"""
from __future__ import annotations

from dataclasses import replace

import pandas as pd

from alphapulse.pipelines.backtest.compute import compute_key, compute_stage
from alphapulse.pipelines.backtest.panel import load_stage, panel_stage
from alphapulse.pipelines.backtest.report import BacktestResult, report_stage, report_tables
from alphapulse.pipelines.backtest.request import BacktestRequest, prepare_backtest
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.run import Pipeline, Run, Stage, run_pipeline


def _compute(run: Run, state):
    return compute_stage(state.panel, run.request, run.backend, run.timer, client=run.client, cluster=run.cluster)


def _report(run: Run, state) -> BacktestResult:
    computed = state.compute
    return report_stage(run.request, run.backend, state.load_validate, state.panel, computed,
                        {**run.timer.seconds, **computed.stages}, run_id=run.run_id)


BACKTEST = Pipeline("backtest", prepare_backtest, (
    Stage("load_validate", lambda run, state: load_stage(run.request, run.backend), io=True),
    Stage("panel", lambda run, state: panel_stage(state.load_validate.bars, run.backend)),
    # the sweep shards itself over the run's client (symbol blocks): one stage, timed by its parts
    Stage("compute", _compute, key=lambda run, state: compute_key(run.request, run.backend),
          from_cache=lambda c: replace(c, stages={}, cached=True), timed=False),
    Stage("report", _report, io=True, timed=False),
))
"""The backtest's stages: load, panel, compute (sweep and walk-forward, cached by
:func:`compute_key` under Prefect), report."""


def run_backtest_pipeline(request: BacktestRequest, *, run_id: str | None = None) -> BacktestResult:
    """The whole backtest pipeline without Prefect (sharded over the request's cluster if any)."""
    return run_pipeline(BACKTEST, request, run_id=run_id)


def backtest_frames(request: BacktestRequest, bars, backend: Backend) -> dict[str, pd.DataFrame]:
    """The compute and the report's tables on validated bars in memory (the front door's
    ``ap.backtest``): ``summary``, ``metrics``, ``equity``, ``symbol_equity`` (None when
    ``top_n`` is 0) and ``walk_forward`` (None when not configured), equal to the report's files."""
    from alphapulse.pipelines.runtime.cluster import open_client

    prepared = panel_stage(bars, backend)
    config = request.config
    with open_client(request.cluster, workers=config.backtest.workers or config.cluster.workers,
                     gpu_pool_size=config.gpu.memory_management.pool_size) as (client, info):
        computed = compute_stage(prepared, request, backend, client=client, cluster=info)
    tables = report_tables(request, backend, prepared, computed)
    return {"summary": tables["backtest_summary.parquet"], "metrics": tables["backtest_metrics.parquet"],
            "equity": tables["equity.parquet"], "symbol_equity": tables.get("best_equity_by_symbol.parquet"),
            "walk_forward": tables.get("walk_forward.parquet")}
