"""The backtest pipeline: one strategy over every (symbol, parameter combination), sharded.

load -> validate -> panel (compacted) -> sweep (Dask tasks of symbol blocks) -> walk-forward
(optional) -> equity curves -> report. Each stage is a plain function, so the Prefect flow
(``alphapulse.flows.backtest``), a test or a notebook runs the same code; :func:`run_backtest_pipeline`
chains them without Prefect.

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
  in-sample ``in_sample_bars`` then out-of-sample ``out_of_sample_bars``, rolled by the
  out-of-sample length. Every combination is run on each window with the same chunk runner; a
  window's run starts flat with equity 1 at the window's first bar and trades only inside the
  window, while its indicators come from the whole history before it (no warm-up is lost; the
  indicators are causal, so nothing after a bar reaches it). The choice of combination reads
  only the in-sample metrics: per symbol (``select: per_symbol``) or the best median over
  symbols (``select: median``).
"""
from __future__ import annotations

import io
import json
import logging
import math
import time
import warnings
from collections import Counter
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.runtime.backend import Backend, choose_backend, cpu_backend
from alphapulse.pipelines.runtime.budget import check_backtest
from alphapulse.pipelines.runtime.cluster import check_cluster_spec, open_client, worker_threads
from alphapulse.pipelines.config.schema import Config
from alphapulse.pipelines.runtime.cost import stage_table_lines
from alphapulse.pipelines.data.load import InputFiles, LoadedBars, inspect_input, load_bars
from alphapulse.pipelines.config.grid import GridError, check_grid, expand_grid, grid_size, parse_grid
from alphapulse.pipelines.runtime.oom import run_chunks
from alphapulse.pipelines.data.panel import bars_to_panel
from alphapulse.pipelines.data.partitions import input_fingerprint
from alphapulse.pipelines.report.write import check_out_dir, format_value, markdown_table, rejected_note, write_report
from alphapulse.pipelines.runtime.routing import route
from alphapulse.pipelines.runtime.stages import (RunTracker, StageTimer, record_alerts, request_paths, result_key, run_record,
                              run_sections, set_queue)
from alphapulse.transforms.backtest import engine as engine
from alphapulse.transforms.arrays import to_host
from alphapulse.transforms.backtest.metrics import METRICS, metrics_from_acc
from alphapulse.transforms.backtest.returns_metrics import (RETURN_METRICS, equal_weight_accumulate, equal_weight_returns,
                                        metrics_from_returns)
from alphapulse.transforms.backtest.strategies import STRATEGIES, Plan, Strategy

log = logging.getLogger(__name__)

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
FOLD_GROUP_SYMBOLS = 64
MAX_FOLD_GROUPS = 64
TASK_WORK = 2e8
"""Bar x series steps of an ``auto`` task: a few seconds of one core."""


# ---------------------------------------------------------------------------------------------
# Request: everything checked before any heavy work
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BacktestRequest:
    """A checked request: what the CLI validates before Prefect starts."""

    config: Config
    inputs: InputFiles
    data_path: str
    out_dir: Path
    strategy: Strategy
    grid: dict
    grid_source: str
    grid_size: int
    plan: Plan
    backend: str = "auto"
    cluster: str | None = None


def _strategy_of(strategy: str | Strategy) -> Strategy:
    if isinstance(strategy, Strategy):
        return strategy
    if strategy not in STRATEGIES:
        import difflib

        close = difflib.get_close_matches(str(strategy), list(STRATEGIES), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown strategy {strategy!r}{hint}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[strategy]


def prepare_backtest(config: Config, *, data_path: str | None = None, out_dir: str | None = None,
                     strategy: str | Strategy | None = None, grid: str | dict | None = None,
                     backend: str = "auto", cluster: str | None = "config") -> BacktestRequest:
    """Resolve the strategy, the grid, the paths and the cluster, and check them cheaply.

    Parameters
    ----------
    config : the validated config (its ``backtest`` block gives the defaults)
    data_path, out_dir : override ``data.path`` / ``backtest.out_dir``
    strategy : a built-in strategy name or a :class:`Strategy` (e.g. ``custom_strategy``);
        default ``backtest.strategy``
    grid : the command-line grid text (see :mod:`alphapulse.pipelines.config.grid`) or a mapping parameter ->
        values; default ``backtest.grid`` when the strategy is the config's, else the strategy's
        defaults (one combination)
    backend : "auto", "cpu" or "gpu"
    cluster : a cluster spec (see :mod:`alphapulse.pipelines.runtime.cluster`), None for in-process, or "config"
        for ``backtest.cluster``

    Raises ``ValueError`` (``GridError``), ``DataError`` or ``ReportError`` with a one-line message.
    """
    bt = config.backtest
    data_path, out_dir = request_paths(config, data_path=data_path, out_dir=out_dir,
                                       default_out_dir=bt.out_dir, out_key="backtest.out_dir", backend=backend)
    strat = _strategy_of(strategy or bt.strategy)
    if isinstance(grid, str):
        values, source = parse_grid(grid), "command line"
    elif isinstance(grid, dict):
        values, source = dict(grid), "argument"
    elif STRATEGIES.get(strat.name) is strat and strat.name == bt.strategy:
        values, source = bt.grid_values(), "config"
    else:
        values, source = {}, "strategy defaults"
        if bt.grid:
            log.info("backtest.grid is for %s, not %s: running %s's defaults", bt.strategy, strat.name, strat.name)
    values = check_grid(values, strategy_name=strat.name, params=strat.params)
    combos = expand_grid(values, random_sample=bt.random_sample, seed=bt.seed)
    try:
        plan = strat.plan(combos)
    except ValueError as e:
        raise GridError(f"{strat.name}: {e}") from None
    if not plan.combos:
        reasons = Counter(why for _, why in plan.skipped)
        raise GridError(f"{strat.name}: all {len(combos)} combinations are invalid "
                        f"({', '.join(f'{k}: {v}' for k, v in reasons.items())})")
    if plan.mode == engine.TARGET and strat.targets is None:
        raise ValueError(f"{strat.name}: a TARGET strategy needs a targets function")
    if cluster == "config":  # backtest.cluster overrides the top-level cluster.address
        cluster = bt.cluster if bt.cluster is not None else config.cluster.address
    check_cluster_spec(cluster)
    inputs = inspect_input(data_path, columns=config.data.columns, fmt=config.data.format)
    out = check_out_dir(out_dir, inputs=[data_path])
    return BacktestRequest(config, inputs, str(data_path), out, strat, values, source,
                           grid_size(values), plan, backend, cluster)


def load_stage(request: BacktestRequest, backend: Backend) -> LoadedBars:
    return load_bars(request.inputs, lib=backend.frames,
                     symbols_per_partition=request.config.data.symbols_per_partition)


# ---------------------------------------------------------------------------------------------
# Panel: compacted prices and the timestamp of each compacted bar
# ---------------------------------------------------------------------------------------------


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


def _empty(shape, dtype, backend: Backend):
    """An array of ``shape`` laid out for the backend: the last axis contiguous on the GPU (C),
    the second-to-last (time) contiguous on the CPU."""
    xp = backend.xp
    if backend.is_gpu:
        return xp.empty(shape, dtype=dtype)
    order = tuple(range(len(shape) - 2)) + (len(shape) - 1, len(shape) - 2)
    return np.empty(tuple(shape[i] for i in order), dtype=dtype).transpose(np.argsort(order))


def panel_stage(bars, backend: Backend) -> PreparedPanel:
    """Pivot, compact and index the bars (see :class:`PreparedPanel`)."""
    panel = bars_to_panel(bars, fields=PRICE_FIELDS, dtype=backend.dtype, xp=backend.xp, order=backend.panel_order)
    prices, n, rows = engine.compact_bars(panel.fields, fields=PRICE_FIELDS)
    timestamps = pd.DatetimeIndex(frames.to_host(panel.timestamps))
    symbols = [str(s) for s in frames.to_host(panel.symbols)]
    return PreparedPanel(timestamps, symbols, prices, n, rows)


# ---------------------------------------------------------------------------------------------
# The chunk runner: one task = a block of symbols, all combinations
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepJob:
    """What every task of a sweep shares (shipped to the workers once per task)."""

    backend: Backend
    plan: Plan
    targets: Callable | None
    engine: dict
    periods_per_year: float
    definitions: str
    batch_elements: int
    n_timestamps: int
    portfolio: bool = True
    full: bool = True
    windows: tuple = ()
    cpu_fallback: bool = True   # gpu.fallback.cpu_fallback: a chunk the GPU cannot hold runs on the CPU
    alert_on_oom: bool = True   # gpu.monitoring.alert_on_oom


@dataclass
class SymbolBlock:
    """One task's symbols: columns ``start:start + n_symbols`` of the panel; ``groups`` are its
    fold groups as (group index, first local column, end local column)."""

    index: int
    start: int
    prices: dict
    n: object
    rows: object
    groups: tuple

    @property
    def n_symbols(self) -> int:
        return int(self.n.shape[0])


@dataclass
class BlockResult:
    index: int
    start: int
    stop: int
    metrics: dict = field(default_factory=dict)   # name -> (n_combinations, n_symbols_in_block)
    group_sums: list = field(default_factory=list)  # (group index, (n_timestamps, n_combinations))
    counts: np.ndarray | None = None              # (n_timestamps, n_combinations) int64
    windows: dict = field(default_factory=dict)   # name -> (n_windows, n_combinations, n_symbols_in_block)
    stats: dict = field(default_factory=dict)


def _columns(x, a: int, b: int, backend: Backend):
    """Columns a:b of a (n_bars, n_symbols) panel, contiguous in the backend's layout."""
    part = x[:, a:b]
    return backend.xp.ascontiguousarray(part) if backend.is_gpu else np.asfortranarray(part)


def _budget(job: SweepJob) -> int:
    budget = int(job.batch_elements)
    if job.backend.is_gpu:
        import cupy

        free, _total = cupy.cuda.runtime.memGetInfo()
        budget = min(budget, max(1, free // 8 // 4))
    return budget


def chunk_sizes(*, n_bars: int, n_symbols: int, n_combinations: int, n_bank: int, budget: int,
                portfolio: bool, target: bool, window_bars: int = 0) -> tuple[int, int, int]:
    """(symbols per sub-block, combinations per full-history chunk, combinations per window
    chunk) so that each holds at most ``budget`` elements (one symbol and one combination at
    least)."""
    per_symbol = (2 * n_bank + len(PRICE_FIELDS) + 1) * n_bars
    per_series = (n_bars if portfolio else 0) + (n_bars if target else 0) + len(engine.ACC)
    subs = max(1, min(n_symbols, budget // per_symbol, budget // per_series))
    full = max(1, min(n_combinations, budget // (subs * per_series)))
    per_window_series = (window_bars if target else 0) + len(engine.ACC)
    window = max(1, min(n_combinations, budget // (subs * per_window_series)))
    return subs, full, window


def _targets(job: SweepJob, prices: dict, c0: int, c1: int, backend: Backend):
    """TARGET strategies: target positions of combinations c0:c1, shape (c, n_bars, n_symbols)."""
    xp = backend.xp
    close = prices["close"]
    out = xp.empty((c1 - c0, *close.shape), dtype=close.dtype)
    for k, combo in enumerate(job.plan.combos[c0:c1]):
        out[k] = xp.asarray(job.targets(dict(prices), **combo), dtype=close.dtype)
    return out


def _window_slice(prices: dict, n, rows, bank, t0: int, t1: int, backend: Backend):
    """The bars of timestamps [t0, t1) of compacted arrays, re-compacted (each symbol's window
    bars first): the window's prices, bars per symbol, bank, and the gather index (window bar k
    of symbol s is compacted bar ``idx[k, s]``)."""
    xp = backend.xp
    present = rows >= 0
    a = xp.sum(present & (rows < t0), axis=0)
    b = xp.sum(present & (rows < t1), axis=0)
    n_w = (b - a).astype(np.int64)
    width = max(int(n_w.max()) if n_w.size else 0, 2)
    last = rows.shape[0] - 1
    idx = xp.minimum(a[None, :] + xp.arange(width)[:, None], last)
    lay = (lambda x: xp.ascontiguousarray(x)) if backend.is_gpu else np.asfortranarray
    p_w = {k: lay(xp.take_along_axis(v, idx, axis=0)) for k, v in prices.items()}
    if bank.shape[1] != rows.shape[0]:  # the placeholder of a plan without indicators
        bank_w = bank
    else:
        bank_w = _empty((bank.shape[0], width, bank.shape[2]), bank.dtype, backend)
        for k in range(bank.shape[0]):
            bank_w[k] = xp.take_along_axis(bank[k], idx, axis=0)
    return p_w, n_w, bank_w, idx


def sub_blocks(start: int, stop: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) in nearly equal parts of at most ``size`` symbols, each of two symbols or
    more when there are two.

    Two or more: a one-symbol (n_bars, 1) panel is both C- and F-contiguous, which Numba types
    as another layout and compiles the engine again for (seconds, once per machine)."""
    n = stop - start
    parts = max(1, math.ceil(n / max(size, 1)))
    if n >= 2:
        parts = min(parts, n // 2)
    cuts = [start + (n * k) // parts for k in range(parts + 1)]
    return list(zip(cuts[:-1], cuts[1:]))


def _limit_numba_threads() -> None:
    """Inside a multi-threaded Dask worker, share the cores between its threads."""
    try:
        from distributed import get_worker

        nthreads = get_worker().state.nthreads
    except (ImportError, ValueError, AttributeError):
        return
    if nthreads > 1:
        import numba

        numba.set_num_threads(max(1, numba.config.NUMBA_NUM_THREADS // nthreads))


def run_block(block: SymbolBlock, job: SweepJob) -> BlockResult:
    """One task: every combination over the block's symbols (see the module docstring).

    Runs where it is called: in-process, or on a Dask worker (arrays arrive on the host and are
    moved to the worker's device here)."""
    started = time.perf_counter()
    _limit_numba_threads()
    be = job.backend
    xp = be.xp
    prices = {k: xp.asarray(v) for k, v in block.prices.items()}
    n, rows = xp.asarray(block.n), xp.asarray(block.rows)
    plan = job.plan
    legs, levels = xp.asarray(plan.legs), xp.asarray(plan.levels)
    n_comb, n_sym, n_bars = len(plan.combos), block.n_symbols, job.n_timestamps
    target = plan.mode == engine.TARGET
    window_bars = max((t1 - t0 for t0, t1 in job.windows), default=0)
    budget = _budget(job)
    sizes = dict(n_bars=prices["close"].shape[0], n_combinations=n_comb, n_bank=len(plan.bank), budget=budget,
                 portfolio=job.portfolio, target=target, window_bars=window_bars)
    subs, _, _ = chunk_sizes(n_symbols=n_sym, **sizes)
    kw = dict(mode=plan.mode, **job.engine)
    lay = xp.ascontiguousarray if be.is_gpu else np.asfortranarray
    metrics = {m: xp.full((n_comb, n_sym), np.nan) for m in METRICS} if job.full else {}
    windows = {m: xp.full((len(job.windows), n_comb, n_sym), np.nan) for m in METRICS} if job.windows else {}
    counts = xp.zeros((n_bars, n_comb), dtype=xp.int64) if job.portfolio else None
    result = BlockResult(block.index, block.start, block.start + n_sym)
    stats = Counter()
    ops = RunTracker()  # GPU OOM alerts of this task, carried back for the run's manifest
    for group, g0, g1 in block.groups:
        sums = xp.zeros((n_bars, n_comb), dtype=xp.float64) if job.portfolio else None
        for s0, s1 in sub_blocks(g0, g1, subs):
            _, c_full, c_win = chunk_sizes(n_symbols=s1 - s0, **sizes)  # sub-blocks may hold subs + 1
            p = {k: _columns(v, s0, s1, be) for k, v in prices.items()}
            sub_n, sub_rows = n[s0:s1], _columns(rows, s0, s1, be)
            bank = engine.indicator_bank(plan.bank, p, sub_n)
            stats["sub_blocks"] += 1
            if job.full:
                def launch(c0, c1, on_gpu, p=p, sub_n=sub_n, sub_rows=sub_rows, bank=bank, s0=s0, s1=s1):
                    # One engine launch for combinations c0:c1; on_gpu False on a GPU run is the
                    # CPU fallback of alphapulse.pipelines.runtime.oom (host copies in, results back to the device).
                    run_be, ins, lg, lv, bk = be, (p, sub_n, sub_rows), legs, levels, bank
                    if be.is_gpu and not on_gpu:
                        run_be = cpu_backend("GPU out of memory: chunk on the CPU", precision=str(be.dtype))
                        ins = ({k: np.asfortranarray(to_host(v)) for k, v in p.items()}, to_host(sub_n),
                               np.asfortranarray(to_host(sub_rows)))
                        lg, lv = to_host(legs), to_host(levels)
                        bk = np.ascontiguousarray(to_host(bank).transpose(0, 2, 1)).transpose(0, 2, 1)
                    tg = _targets(job, ins[0], c0, c1, run_be) if target else None
                    acc, ret, _ = engine.run_backtest(ins[0], ins[1], bank=bk, legs=lg[c0:c1], levels=lv[c0:c1],
                                                      targets=tg, rows=ins[2], n_rows_out=n_bars,
                                                      want_returns=job.portfolio, **kw)
                    acc, ret = xp.asarray(acc), (xp.asarray(ret) if ret is not None else None)
                    stats["launches"] += 1
                    stats["largest"] = max(stats["largest"],
                                           (c1 - c0) * (s1 - s0) * (n_bars if job.portfolio else len(engine.ACC)))
                    for name, v in metrics_from_acc(acc, periods_per_year=job.periods_per_year,
                                                    definitions=job.definitions).items():
                        metrics[name][c0:c1, s0:s1] = v.reshape(c1 - c0, s1 - s0)
                    if job.portfolio:  # last: the kernel allocates nothing, so an OOM never leaves a half sum
                        equal_weight_accumulate(ret, n_symbols=s1 - s0, sums=sums, counts=counts, offset=c0)

                run_chunks([(c0, min(n_comb, c0 + c_full)) for c0 in range(0, n_comb, c_full)], launch,
                           on_gpu=be.is_gpu, cpu_fallback=job.cpu_fallback, alert=job.alert_on_oom, stage="sweep",
                           tracker=ops)
            for w, (t0, t1) in enumerate(job.windows):
                p_w, n_w, bank_w, idx = _window_slice(p, sub_n, sub_rows, bank, t0, t1, be)
                rows_w = lay(xp.take_along_axis(sub_rows, idx, axis=0))  # unused: same kernel types
                for c0 in range(0, n_comb, c_win):
                    c1 = min(n_comb, c0 + c_win)
                    tg_w = None
                    if target:
                        tg_w = xp.ascontiguousarray(xp.take_along_axis(_targets(job, p, c0, c1, be), idx[None], axis=1))
                    acc, _, _ = engine.run_backtest(p_w, n_w, bank=bank_w, legs=legs[c0:c1], levels=levels[c0:c1],
                                                    targets=tg_w, rows=rows_w, **kw)
                    stats["launches"] += 1
                    for name, v in metrics_from_acc(acc, periods_per_year=job.periods_per_year,
                                                    definitions=job.definitions).items():
                        windows[name][w, c0:c1, s0:s1] = v.reshape(c1 - c0, s1 - s0)
            del bank
        if job.portfolio:
            result.group_sums.append((group, to_host(sums)))
    result.metrics = {k: to_host(v) for k, v in metrics.items()}
    result.windows = {k: to_host(v) for k, v in windows.items()}
    result.counts = to_host(counts) if counts is not None else None
    result.stats = {"sub_blocks": stats["sub_blocks"], "launches": stats["launches"],
                    "symbols_per_sub_block": subs, "combinations_per_chunk": c_full,
                    "largest_chunk_elements": int(stats["largest"]), "alerts": ops.alerts,
                    "seconds": round(time.perf_counter() - started, 4)}
    return result


# ---------------------------------------------------------------------------------------------
# Sharding: blocks of symbols as tasks, in-process or on a Dask cluster
# ---------------------------------------------------------------------------------------------


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


def _engine_params(config: Config) -> dict:
    bt = config.backtest
    return {"direction": bt.direction, "trade_on": bt.trade_on, "size_fraction": bt.size_fraction,
            "commission_bps": bt.commission_bps, "slippage_bps": bt.slippage_bps,
            "stop_loss": bt.stop_loss or 0.0, "take_profit": bt.take_profit or 0.0}


def make_job(request: BacktestRequest, prepared: PreparedPanel, backend: Backend, **kw) -> SweepJob:
    bt = request.config.backtest
    return SweepJob(backend, request.plan, request.strategy.targets, _engine_params(request.config),
                    bt.periods_per_year, bt.definitions, request.config.gpu.operations.batch_size,
                    prepared.shape[0], cpu_fallback=request.config.gpu.fallback.cpu_fallback,
                    alert_on_oom=request.config.gpu.monitoring.alert_on_oom, **kw)


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


def _task_plan(request: BacktestRequest, prepared: PreparedPanel, client, work_factor: float) -> int:
    n_bars, n_sym = prepared.shape
    return symbols_per_task(n_symbols=n_sym, n_bars=n_bars,
                            work_per_symbol=n_bars * len(request.plan.combos) * work_factor,
                            setting=request.config.backtest.symbols_per_chunk, threads=worker_threads(client))


def _chunk_record(blocks, size, stats: list[dict], budget: int) -> dict:
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
    size = _task_plan(request, prepared, client, 1.0)
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
    record_alerts([a for s in stats for a in s.get("alerts", ())])
    if pending:
        raise RuntimeError(f"portfolio fold groups missing: {sorted(pending)} left after {next_group[0]}")
    returns = equal_weight_returns(sums, counts)
    bt = request.config.backtest
    pm = metrics_from_returns(returns, periods_per_year=bt.periods_per_year, definitions=bt.definitions)
    pm = {k: to_host(v) for k, v in pm.items()}
    return SweepResult(metrics, returns, counts, pm, _chunk_record(blocks, size, stats, job.batch_elements))


# ---------------------------------------------------------------------------------------------
# Walk-forward
# ---------------------------------------------------------------------------------------------


def walk_forward_windows(n_bars: int, in_sample_bars: int, out_of_sample_bars: int) -> list[tuple[int, int, int, int]]:
    """Rolling windows (is_start, is_end, oos_start, oos_end) over ``n_bars`` timestamps, ends
    exclusive: in-sample then out-of-sample, rolled by the out-of-sample length; only whole
    out-of-sample windows."""
    out, start = [], 0
    while start + in_sample_bars + out_of_sample_bars <= n_bars:
        out.append((start, start + in_sample_bars, start + in_sample_bars,
                    start + in_sample_bars + out_of_sample_bars))
        start += out_of_sample_bars
    return out


@dataclass
class WalkForwardResult:
    windows: list
    in_sample: dict      # metric -> (n_windows, n_combinations, n_symbols)
    out_of_sample: dict  # metric -> (n_windows, n_combinations, n_symbols)
    chosen: np.ndarray   # (n_windows, n_symbols) combination index, -1 where none
    chunks: dict


def choose_combinations(in_sample: np.ndarray, *, select: str) -> np.ndarray:
    """Best combination per (window, symbol) from in-sample metric values only.

    Parameters
    ----------
    in_sample : array of shape (n_windows, n_combinations, n_symbols), higher is better, NaN =
        undefined (never chosen)
    select : "per_symbol" (each symbol's own best) or "median" (the best median over symbols, for
        every symbol)

    Returns
    -------
    int array of shape (n_windows, n_symbols): combination index, -1 where nothing is defined.
    Ties go to the lowest index.
    """
    if select == "median":
        with _quiet():
            med = np.nanmedian(in_sample, axis=2)  # (n_windows, n_combinations)
        score = np.where(np.isnan(med), -np.inf, med)
        best = np.where(np.any(~np.isnan(med), axis=1), np.argmax(score, axis=1), -1)
        return np.repeat(best[:, None], in_sample.shape[2], axis=1)
    if select != "per_symbol":
        raise ValueError(f"unknown selection {select!r}: expected per_symbol or median")
    score = np.where(np.isnan(in_sample), -np.inf, in_sample)
    return np.where(np.any(~np.isnan(in_sample), axis=1), np.argmax(score, axis=1), -1)


@contextmanager
def _quiet():
    """NumPy's warnings on all-NaN slices and empty means, silenced (NaN is the answer)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def walk_forward_stage(prepared: PreparedPanel, request: BacktestRequest, backend: Backend,
                       client=None) -> WalkForwardResult | None:
    """Every combination on each in-sample and out-of-sample window; the in-sample choice."""
    wf = request.config.backtest.walk_forward
    if wf is None:
        return None
    n_bars, n_sym = prepared.shape
    windows = walk_forward_windows(n_bars, wf.in_sample_bars, wf.out_of_sample_bars)
    if not windows:
        raise ValueError(f"walk_forward needs in_sample_bars + out_of_sample_bars = "
                         f"{wf.in_sample_bars + wf.out_of_sample_bars} timestamps; the data has {n_bars}")
    trade_windows = tuple(w for a, b, c, d in windows for w in ((a, b), (c, d)))
    n_comb = len(request.plan.combos)
    job = make_job(request, prepared, backend, portfolio=False, full=False, windows=trade_windows)
    factor = sum(b - a for a, b in trade_windows) / max(n_bars, 1)
    size = _task_plan(request, prepared, client, factor)
    blocks = make_blocks(prepared, size, host=client is not None)
    values = {m: np.full((len(trade_windows), n_comb, n_sym), np.nan) for m in METRICS}
    stats = []

    def collect(res: BlockResult):
        for k, v in res.windows.items():
            values[k][:, :, res.start:res.stop] = v
        stats.append(res.stats)

    log.info("walk-forward: %d windows (%d + %d bars)", len(windows), wf.in_sample_bars, wf.out_of_sample_bars)
    run_tasks(blocks, job, client, on_result=collect)
    in_sample = {k: v[0::2] for k, v in values.items()}
    out_of_sample = {k: v[1::2] for k, v in values.items()}
    chosen = choose_combinations(in_sample[wf.metric], select=wf.select)
    return WalkForwardResult(windows, in_sample, out_of_sample, chosen,
                             _chunk_record(blocks, size, stats, job.batch_elements))


# ---------------------------------------------------------------------------------------------
# The compute stage (cluster + sweep + walk-forward) and equity curves
# ---------------------------------------------------------------------------------------------


@dataclass
class ComputeResult:
    sweep: SweepResult
    walk_forward: WalkForwardResult | None
    cluster: dict
    stages: dict = field(default_factory=dict)
    cached: bool = False  # set by the flow when Prefect's cache served it (its stages are another run's)


def compute_key(request: BacktestRequest, backend: Backend) -> str:
    """What the sweep's results depend on: the config, the strategy and its grid (arguments may
    override the config's), the backend and dtype, the input files' fingerprint and the code. Not
    the cluster: results are bit-identical on every cluster. The flow's cache key."""
    grid = json.dumps(request.grid, sort_keys=True, default=str)
    return result_key(request.config.hash(), request.strategy.name, grid, backend.name, str(backend.dtype),
                      input_fingerprint(request.inputs),
                      modules=("alphapulse.pipelines.backtest.pipeline", "alphapulse.pipelines.data.load", "alphapulse.pipelines.data.panel", "alphapulse.pipelines.config.grid",
                               "alphapulse.transforms.backtest.engine", "alphapulse.transforms.backtest.strategies", "alphapulse.transforms.backtest.metrics",
                               "alphapulse.transforms.backtest.returns_metrics", "alphapulse.transforms.indicators.registry", "alphapulse.transforms.kernels"))


def compute_stage(prepared: PreparedPanel, request: BacktestRequest, backend: Backend,
                  timer: StageTimer | None = None) -> ComputeResult:
    """Open the request's cluster (if any), run the sweep and the walk-forward on it; the stages'
    seconds are added to ``timer`` and returned in the result."""
    timer = timer or StageTimer()
    before = set(timer.seconds)
    wf = request.config.backtest.walk_forward
    n_windows = len(walk_forward_windows(prepared.shape[0], wf.in_sample_bars, wf.out_of_sample_bars)) if wf else 0
    check_backtest(request.config, bars=prepared.shape[0], symbols=prepared.shape[1],
                   combinations=len(request.plan.combos), parameters=len(request.strategy.params),
                   metrics=len(METRICS), windows=2 * n_windows)  # in- and out-of-sample metrics per window
    with ExitStack() as stack:
        with timer.stage("cluster_start"):
            client, info = stack.enter_context(open_client(
                request.cluster, workers=request.config.backtest.workers or request.config.cluster.workers,
                gpu_pool_size=request.config.gpu.memory_management.pool_size))
        with timer.stage("sweep"):
            sweep = sweep_stage(prepared, request, backend, client)
        wf = None
        if request.config.backtest.walk_forward is not None:
            with timer.stage("walk_forward"):
                wf = walk_forward_stage(prepared, request, backend, client)
    stages = {k: v for k, v in timer.seconds.items() if k not in before}
    return ComputeResult(sweep, wf, {"spec": request.cluster, **info}, stages)


def ranked_combinations(sweep: SweepResult) -> np.ndarray:
    """Combination indices by portfolio Sharpe, best first (NaN last, ties by index)."""
    sharpe = sweep.portfolio_metrics["sharpe"]
    key = np.where(np.isnan(sharpe), -np.inf, sharpe)
    return np.lexsort((np.arange(len(key)), -key))


def symbol_equity(prepared: PreparedPanel, request: BacktestRequest, backend: Backend, combo: int) -> pd.DataFrame:
    """Each symbol's equity curve under one combination: ``timestamp, symbol, equity`` at the
    symbol's bars."""
    plan = request.strategy.plan([request.plan.combos[combo]])
    single = replace(request, plan=plan)
    job = make_job(single, prepared, backend)
    n_bars, n_sym = prepared.shape
    xp = backend.xp
    subs = max(1, min(n_sym, job.batch_elements // max(1, (2 * len(plan.bank) + 8) * n_bars)))
    parts = []
    for s0 in range(0, n_sym, subs):
        s1 = min(n_sym, s0 + subs)
        p = {k: _columns(v, s0, s1, backend) for k, v in prepared.prices.items()}
        rows = _columns(prepared.rows, s0, s1, backend)
        bank = engine.indicator_bank(plan.bank, p, prepared.n[s0:s1])
        tg = _targets(job, p, 0, 1, backend) if plan.mode == engine.TARGET else None
        _, _, eq = engine.run_backtest(p, prepared.n[s0:s1], bank=bank, legs=xp.asarray(plan.legs),
                                       levels=xp.asarray(plan.levels), targets=tg, rows=rows, n_rows_out=n_bars,
                                       want_equity=True, mode=plan.mode, **job.engine)
        eq = to_host(eq)
        t, s = np.nonzero(~np.isnan(eq))
        order = np.lexsort((t, s))
        parts.append(pd.DataFrame({"timestamp": prepared.timestamps[t[order]],
                                   "symbol": np.asarray(prepared.symbols, dtype=object)[s0 + s[order]],
                                   "equity": eq[t[order], s[order]]}))
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


@dataclass
class BacktestResult:
    out_dir: Path
    manifest: dict
    summary: pd.DataFrame = field(repr=False)
    metrics: pd.DataFrame = field(repr=False)


def _params_frame(request: BacktestRequest) -> pd.DataFrame:
    names = list(request.strategy.params)
    combos = request.plan.combos
    return pd.DataFrame({n: [c[n] for c in combos] for n in names}, index=pd.RangeIndex(len(combos)))


def metrics_frame(request: BacktestRequest, prepared: PreparedPanel, sweep: SweepResult) -> pd.DataFrame:
    """``backtest_metrics.parquet``: one row per (symbol, combination)."""
    n_comb, n_sym = len(request.plan.combos), prepared.shape[1]
    params = _params_frame(request)
    sym = np.repeat(np.asarray(prepared.symbols, dtype=object), n_comb)
    combo = np.tile(np.arange(n_comb), n_sym)
    out = pd.DataFrame({"symbol": sym, "strategy": request.strategy.name, "combo_id": combo})
    for name in params.columns:
        out[name] = params[name].to_numpy()[combo]
    for m in METRICS:
        out[m] = sweep.metrics[m].T.ravel()
    return out


def summary_frame(request: BacktestRequest, sweep: SweepResult) -> pd.DataFrame:
    """``backtest_summary.parquet``: one row per combination: parameters, aggregates over the
    symbols, the equal-weight portfolio's metrics and the rank by portfolio Sharpe."""
    m = sweep.metrics
    params = _params_frame(request)
    out = pd.DataFrame({"combo_id": np.arange(len(params)), "strategy": request.strategy.name})
    for name in params.columns:
        out[name] = params[name].to_numpy()
    with _quiet():
        out["symbols"] = np.sum(~np.isnan(m["total_return"]), axis=1)
        out["symbols_traded"] = np.sum(m["trades"] > 0, axis=1)
        out["median_sharpe"] = np.nanmedian(m["sharpe"], axis=1)
        out["mean_sharpe"] = np.nanmean(m["sharpe"], axis=1)
        out["median_sortino"] = np.nanmedian(m["sortino"], axis=1)
        out["median_total_return"] = np.nanmedian(m["total_return"], axis=1)
        out["mean_total_return"] = np.nanmean(m["total_return"], axis=1)
        out["median_cagr"] = np.nanmedian(m["cagr"], axis=1)
        out["median_max_drawdown"] = np.nanmedian(m["max_drawdown"], axis=1)
        out["mean_win_rate"] = np.nanmean(m["win_rate"], axis=1)
        out["median_profit_factor"] = np.nanmedian(m["profit_factor"], axis=1)
        out["total_trades"] = np.nansum(m["trades"], axis=1)
        out["mean_exposure"] = np.nanmean(m["exposure"], axis=1)
    for k in RETURN_METRICS:
        out[f"portfolio_{k}"] = sweep.portfolio_metrics[k]
    rank = np.empty(len(out), dtype=np.int64)
    rank[ranked_combinations(sweep)] = np.arange(1, len(out) + 1)
    out["rank"] = rank
    return out


def equity_frame(request: BacktestRequest, prepared: PreparedPanel, sweep: SweepResult) -> pd.DataFrame:
    """``equity.parquet``: the portfolio equity of the ``top_n`` combinations by portfolio Sharpe,
    one row per (combination, timestamp): equity starts at 1 and is flat where no symbol trades."""
    top = ranked_combinations(sweep)[: request.config.backtest.top_n]
    params = _params_frame(request)
    parts = []
    for rank, c in enumerate(top, start=1):
        r = sweep.portfolio_returns[:, c]
        eq = np.cumprod(1.0 + np.nan_to_num(r, nan=0.0))
        part = pd.DataFrame({"timestamp": prepared.timestamps, "rank": rank, "combo_id": int(c)})
        for name in params.columns:
            part[name] = params[name].iloc[c]
        part["portfolio_return"] = r
        part["portfolio_equity"] = eq
        part["symbols"] = sweep.portfolio_counts[:, c]
        parts.append(part)
    if not parts:
        return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns]"), "rank": [], "combo_id": []})
    return pd.concat(parts, ignore_index=True)


def walk_forward_frame(request: BacktestRequest, prepared: PreparedPanel, wf: WalkForwardResult) -> pd.DataFrame:
    """``walk_forward.parquet``: per (window, symbol): the windows' first and last timestamps
    (inclusive), the combination chosen in-sample (``combo_id`` -1 and null parameters where no
    combination has a defined in-sample metric) and its in-sample and out-of-sample metrics."""
    params = _params_frame(request)
    ts = prepared.timestamps
    n_win, n_sym = wf.chosen.shape
    rows = []
    for w, (a, b, c, d) in enumerate(wf.windows):
        rows.append(pd.DataFrame({
            "window": w, "is_start": ts[a], "is_end": ts[b - 1], "oos_start": ts[c], "oos_end": ts[d - 1],
            "symbol": np.asarray(prepared.symbols, dtype=object), "combo_id": wf.chosen[w]}))
    out = pd.concat(rows, ignore_index=True)
    chosen = wf.chosen.ravel()
    ok = chosen >= 0
    safe = np.where(ok, chosen, 0)
    for name in params.columns:
        values = params[name].to_numpy()[safe]
        kind = "Int64" if request.strategy.params.get(name) is int else "Float64"
        column = pd.array(values, dtype=kind)
        column[~ok] = pd.NA
        out[name] = column
    out["select"] = request.config.backtest.walk_forward.select
    w_idx = np.repeat(np.arange(n_win), n_sym)
    s_idx = np.tile(np.arange(n_sym), n_win)
    for prefix, values in (("is", wf.in_sample), ("oos", wf.out_of_sample)):
        for m in METRICS:
            v = values[m][w_idx, safe, s_idx]
            out[f"{prefix}_{m}"] = np.where(ok, v, np.nan)
    return out


def heatmap_png(request: BacktestRequest, summary: pd.DataFrame) -> bytes | None:
    """``sharpe_heatmap.png``: portfolio and median Sharpe over the first two grid parameters
    (the best over any further parameters); None when the grid varies no parameter."""
    varying = [p for p, v in request.grid.items() if len(v) > 1]
    if not varying:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    x = varying[0]
    y = varying[1] if len(varying) > 1 else None
    fig = Figure(figsize=(12, 5), dpi=100)
    FigureCanvasAgg(fig)
    for k, (col, title) in enumerate((("portfolio_sharpe", "equal-weight portfolio Sharpe"),
                                      ("median_sharpe", "median Sharpe over symbols"))):
        ax = fig.add_subplot(1, 2, k + 1)
        if y is None:
            table = summary.groupby(x)[col].max().to_frame().T
        else:
            table = summary.pivot_table(index=y, columns=x, values=col, aggfunc="max", dropna=False)
        xs = sorted(request.grid[x])
        ys = sorted(request.grid[y]) if y else [""]
        table = table.reindex(index=ys if y else table.index, columns=xs)
        data = np.ma.masked_invalid(table.to_numpy(dtype=float))
        im = ax.imshow(data, origin="lower", aspect="auto", cmap="RdYlGn")
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs], rotation=90 if len(xs) > 12 else 0, fontsize=8)
        ax.set_yticks(range(len(ys)), [f"{v:g}" if y else "" for v in ys], fontsize=8)
        ax.set_xlabel(x)
        if y:
            ax.set_ylabel(y)
        extra = [p for p in varying if p not in (x, y)]
        ax.set_title(title + (f" (best over {', '.join(extra)})" if extra else ""), fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"{request.strategy.name}: Sharpe by parameters")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _summary_md(manifest: dict, summary: pd.DataFrame, wf: pd.DataFrame | None, params: list) -> str:
    inp, be, grid = manifest["input"], manifest["backend"], manifest["grid"]
    lines = [
        f"# AlphaPulse backtest: {manifest['strategy']}",
        "",
        f"- run `{manifest['run_id']}` at {manifest['created_at']}",
        f"- backend: **{be['name']}** ({be['reason']}), dtype {be['dtype']}; cluster: {manifest['cluster']['kind']}",
        f"- input: `{inp['path']}`: {inp['rows_read']:,} rows read, {inp['rows_accepted']:,} accepted, "
        f"{inp['rows_rejected']:,} rejected{rejected_note(inp)}; {inp['symbols']} symbols, "
        f"{inp.get('first_timestamp', '?')} .. {inp.get('last_timestamp', '?')}",
        f"- grid ({grid['source']}): {grid['size']:,} combinations"
        + (f", random sample of {grid['sampled']:,}" if grid.get("sampled") else "")
        + f"; {grid['combinations_run']:,} run, {grid['skipped']:,} skipped as invalid"
        + (" (" + ", ".join(f"{k}: {v}" for k, v in grid["skipped_by_reason"].items()) + ")" if grid["skipped"] else ""),
        f"- execution: {manifest['execution_summary']}",
        f"- work: {manifest['chunks']['tasks']} task(s), {manifest['chunks']['launches']} engine launches",
        f"- heatmap: {manifest['heatmap']}",
    ]
    top = summary.sort_values("rank").head(10)
    cols = ["rank", *params, "portfolio_sharpe", "portfolio_cagr", "portfolio_max_drawdown",
            "portfolio_total_return", "median_sharpe", "mean_win_rate", "total_trades"]
    lines += ["", "## Top combinations by equal-weight portfolio Sharpe", "", markdown_table(top[cols])]
    if len(top):
        best = top.iloc[0]
        lines += ["", "## Best combination's portfolio", ""]
        lines += [f"- {k}: {format_value(best[f'portfolio_{k}'])}" for k in RETURN_METRICS]
    if wf is not None and len(wf):
        agg = wf.groupby("window").agg(is_start=("is_start", "first"), oos_end=("oos_end", "first"),
                                       median_is_sharpe=("is_sharpe", "median"),
                                       median_oos_sharpe=("oos_sharpe", "median"),
                                       median_oos_total_return=("oos_total_return", "median")).reset_index()
        agg["is_start"] = agg["is_start"].dt.date
        agg["oos_end"] = agg["oos_end"].dt.date
        lines += ["", f"## Walk-forward (select: {wf['select'].iloc[0]})", "", markdown_table(agg)]
    lines += stage_table_lines(manifest)
    return "\n".join(lines) + "\n"


def report_stage(request: BacktestRequest, backend: Backend, loaded: LoadedBars, prepared: PreparedPanel,
                 computed: ComputeResult, stages: dict[str, float], *, run_id: str | None = None) -> BacktestResult:
    """Write the report folder atomically: ``backtest_metrics.parquet``,
    ``backtest_summary.parquet``, ``equity.parquet``, ``best_equity_by_symbol.parquet``,
    ``sharpe_heatmap.png``, ``walk_forward.parquet`` (when configured), ``rejected.parquet`` (if
    any), ``manifest.json`` and ``summary.md``."""
    timer = StageTimer()
    config, bt = request.config, request.config.backtest
    sweep, wf = computed.sweep, computed.walk_forward
    with timer.stage("report_tables"):
        metrics = metrics_frame(request, prepared, sweep)
        summary = summary_frame(request, sweep)
        equity = equity_frame(request, prepared, sweep)
        tables = {"backtest_metrics.parquet": metrics, "backtest_summary.parquet": summary,
                  "equity.parquet": equity}
        if bt.top_n > 0 and len(summary):
            best = int(ranked_combinations(sweep)[0])
            tables["best_equity_by_symbol.parquet"] = symbol_equity(prepared, request, backend, best).assign(
                combo_id=best)
        wf_frame = walk_forward_frame(request, prepared, wf) if wf is not None else None
        if wf_frame is not None:
            tables["walk_forward.parquet"] = wf_frame
        if len(loaded.rejected):
            tables["rejected.parquet"] = loaded.rejected
        png = heatmap_png(request, summary)
    reasons = Counter(why for _, why in request.plan.skipped)
    engine_params = _engine_params(config)
    manifest = run_record("backtest", backend=backend, config=config, data_path=request.data_path, loaded=loaded,
                          run_id=run_id)
    manifest["input"]["timestamps"] = prepared.shape[0]
    manifest.update({
        "strategy": request.strategy.name,
        "grid": {"source": request.grid_source, "parameters": request.grid, "size": request.grid_size,
                 "sampled": bt.random_sample if bt.random_sample and bt.random_sample < request.grid_size else None,
                 "seed": bt.seed, "combinations_run": len(request.plan.combos),
                 "skipped": len(request.plan.skipped), "skipped_by_reason": dict(reasons),
                 "skipped_examples": [dict(c, reason=why) for c, why in request.plan.skipped[:50]]},
        "execution": {**engine_params, "periods_per_year": bt.periods_per_year, "definitions": bt.definitions},
        "execution_summary": (f"{bt.direction}, signal at the close, fill at the next bar's {bt.trade_on}, "
                              f"commission {bt.commission_bps:g} bps, slippage {bt.slippage_bps:g} bps"
                              + (f", stop-loss {bt.stop_loss:g}" if bt.stop_loss else "")
                              + (f", take-profit {bt.take_profit:g}" if bt.take_profit else "")),
        "chunks": sweep.chunks,
        "walk_forward": None if wf is None else {**bt.walk_forward.model_dump(), "windows": len(wf.windows),
                                                 "chunks": wf.chunks},
        "cluster": computed.cluster,
        "heatmap": "sharpe_heatmap.png" if png else "not drawn: the grid varies no parameter",
        "stages": {**stages, **timer.seconds},
        "cached_compute": computed.cached,
    })
    backtests = len(request.plan.combos) * prepared.shape[1]
    manifest.update(run_sections(config, manifest["stages"], work=("million backtests", backtests / 1e6)))
    out = write_report(request.out_dir, tables=tables, manifest=manifest,
                       summary=_summary_md(manifest, summary, wf_frame, list(request.strategy.params)),
                       files={"sharpe_heatmap.png": png} if png else None)
    return BacktestResult(out, manifest, summary, metrics)


def run_backtest_pipeline(request: BacktestRequest) -> BacktestResult:
    """The whole backtest pipeline without Prefect."""
    timer = StageTimer()
    with timer.stage("backend"):
        backend = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("load_validate"):
        loaded = load_stage(request, backend)
    with timer.stage("panel"):
        prepared = panel_stage(loaded.bars, backend)
    computed = compute_stage(prepared, request, backend, timer)
    return report_stage(request, backend, loaded, prepared, computed, timer.seconds)
