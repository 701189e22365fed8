"""One sweep task: a block of whole symbols run over every combination, in memory-bounded chunks.

Implements :class:`SweepJob` (what every task of a sweep shares), :class:`SymbolBlock` (one
task's symbols), :func:`run_block` (the task: sub-blocks whose indicator bank fits the budget,
chunks of combinations, one engine launch each, metrics reduced on the device, the portfolio's
running sums per fold group, and the walk-forward windows), :func:`chunk_sizes`,
:func:`sub_blocks`, :func:`make_job` and :func:`symbol_equity` (one combination's equity curve
per symbol, for the report).
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from alphapulse.pipelines.backtest.panel import PRICE_FIELDS, PreparedPanel
from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.config.schema import Config
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.oom import run_chunks
from alphapulse.pipelines.runtime.stages import RunTracker
from alphapulse.transforms.arrays import to_host
from alphapulse.transforms.backtest import engine as engine
from alphapulse.transforms.backtest.metrics import METRICS, metrics_from_acc
from alphapulse.transforms.backtest.returns_metrics import equal_weight_accumulate
from alphapulse.transforms.backtest.strategies import Plan, Strategy, target_positions
from alphapulse.transforms.backtest.walk_forward import window_bars


@dataclass(frozen=True)
class SweepJob:
    """What every task of a sweep shares (shipped to the workers once per task)."""

    backend: Backend
    plan: Plan
    strategy: Strategy | None  # signal strategies only (their signal runs in the task)
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


def _targets(job: SweepJob, prices: dict, bank, c0: int, c1: int):
    """Signal strategies: target positions of combinations c0:c1, shape (c, n_bars, n_symbols)."""
    return target_positions(job.strategy, job.plan, prices, bank, c0, c1)


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
    """One task: every combination over the block's symbols (the levels of work are described in
    :mod:`alphapulse.pipelines.backtest.pipeline`).

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
    longest_window = max((t1 - t0 for t0, t1 in job.windows), default=0)
    budget = _budget(job)
    sizes = dict(n_bars=prices["close"].shape[0], n_combinations=n_comb, n_bank=len(plan.bank), budget=budget,
                 portfolio=job.portfolio, target=target, window_bars=longest_window)
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
                    ins, lg, lv, bk = (p, sub_n, sub_rows), legs, levels, bank
                    if be.is_gpu and not on_gpu:  # the signal then runs on these host copies too
                        ins = ({k: np.asfortranarray(to_host(v)) for k, v in p.items()}, to_host(sub_n),
                               np.asfortranarray(to_host(sub_rows)))
                        lg, lv = to_host(legs), to_host(levels)
                        bk = np.ascontiguousarray(to_host(bank).transpose(0, 2, 1)).transpose(0, 2, 1)
                    tg = _targets(job, ins[0], bk, c0, c1) if target else None
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
                p_w, n_w, bank_w, idx = window_bars(p, sub_n, sub_rows, bank, start_row=t0, stop_row=t1)
                rows_w = lay(xp.take_along_axis(sub_rows, idx, axis=0))  # unused: same kernel types
                for c0 in range(0, n_comb, c_win):
                    c1 = min(n_comb, c0 + c_win)
                    tg_w = None
                    if target:
                        tg_w = xp.ascontiguousarray(xp.take_along_axis(_targets(job, p, bank, c0, c1), idx[None],
                                                                        axis=1))
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


def engine_params(config: Config) -> dict:
    """The engine's execution settings from ``backtest``: direction, fills, sizing, costs, stops."""
    return config.backtest.execution()


def make_job(request: BacktestRequest, prepared: PreparedPanel, backend: Backend, **kw) -> SweepJob:
    """The request's :class:`SweepJob` on ``backend``; ``kw`` sets the job's optional fields."""
    bt = request.config.backtest
    strategy = request.strategy if request.plan.mode == engine.TARGET else None
    return SweepJob(backend, request.plan, strategy, engine_params(request.config),
                    bt.periods_per_year, bt.definitions, request.config.gpu.operations.batch_size,
                    prepared.shape[0], cpu_fallback=request.config.gpu.fallback.cpu_fallback,
                    alert_on_oom=request.config.gpu.monitoring.alert_on_oom, **kw)


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
        tg = _targets(job, p, bank, 0, 1) if plan.mode == engine.TARGET else None
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

