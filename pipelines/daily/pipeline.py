"""The daily pipeline: plan -> (load -> validate -> indicators -> part file) per partition -> report.

The stages are declared once, in :data:`DAILY`: :func:`run_daily` runs them in-process, the
Prefect flow (``alphapulse.flows.daily``) as tasks (one per partition, cached), both on the
request's Dask cluster when it names one (:mod:`alphapulse.pipelines.runtime.run`).

Larger than memory: parquet input with more than ``data.bars_per_partition`` bars is processed in
partitions of whole symbols (:mod:`alphapulse.pipelines.data.partitions`), one at a time (or one per Dask worker
on the cluster), each written to its own part file, so memory is bounded by a partition, not by the
input. The report then holds ``indicators/part-00000.parquet``, ... (one per partition, in symbol
order; ``pandas.read_parquet(report / "indicators")`` reads them all) instead of
``indicators.parquet``; ``manifest.json``'s ``output.path`` names which. Rejected rows are
collected from every partition into one ``rejected.parquet``. The part files are hard-linked into
the report folder, which is swapped in atomically as before.
"""
from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.budget import check_daily
from alphapulse.pipelines.runtime.cluster import resolve_cluster
from alphapulse.pipelines.config.load import with_block
from alphapulse.pipelines.config.schema import Config
from alphapulse.pipelines.errors import ConfigError
from alphapulse.pipelines.data.load import DataError, InputFiles, LoadedBars, inspect_input, load_bars
from alphapulse.pipelines.runtime.oom import chunked_columns
from alphapulse.pipelines.data.panel import bars_to_panel, panel_to_frame
from alphapulse.pipelines.data.partitions import Partition, load_partition, plan_partitions
from alphapulse.pipelines.daily.report import DailyResult, report_stage
from alphapulse.pipelines.daily.signals import PartitionSignals, SignalsRequest, prepare_signals, signals_stage
from alphapulse.pipelines.report.write import check_out_dir
from alphapulse.pipelines.runtime.routing import route
from alphapulse.pipelines.runtime.run import Pipeline, Run, Stage, run_pipeline
from alphapulse.pipelines.runtime.stages import (RunTracker, TaskRecord, request_paths, result_key, stage_errors,
                                                 task_scope)
from alphapulse.transforms.indicators.registry import INDICATORS, compute_indicators, lookback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DailyRequest:
    """A checked request: what the CLI validates before any work starts."""

    config: Config
    inputs: InputFiles
    data_path: str
    out_dir: Path
    backend: str = "auto"
    cluster: str | None = None
    store: Path | None = None
    """An indicator store to continue (``alphapulse.pipelines.daily.store``): compute the new bars only."""
    signals: SignalsRequest | None = None
    """The ``signals:`` block resolved (:func:`~alphapulse.pipelines.daily.signals.prepare_signals`)."""


@dataclass
class PartitionResult:
    """What one partition's work leaves for the report (its indicators are in the file ``path``).

    Attributes
    ----------
    index, whole : the partition's position, and whether it is the whole input
    path : the part file (parquet: ``timestamp, symbol, <outputs>`` sorted by (symbol, timestamp))
    rows, columns : of the part file
    rejected : the partition's rejected rows (``alphapulse.pipelines.data.load`` layout)
    stats : the loader's counts for the partition
    short : symbols with fewer bars than the longest lookback + 1 -> bars
    latest : the last row of each of its symbols (``summary.md`` shows the first 20, ``summary.html``
        the first 100)
    signals : its signals, chart candidates and breadth counts (:mod:`alphapulse.pipelines.daily.signals`)
    record : its stages' seconds (load_validate, indicators, write_part), routing decisions and GPU
        alerts (``alphapulse.pipelines.runtime.routing``, ``alphapulse.pipelines.runtime.oom``), carried
        back from wherever it ran for the run's manifest
    """

    index: int
    whole: bool
    path: str
    rows: int
    columns: list[str]
    rejected: pd.DataFrame = field(repr=False)
    stats: dict = field(repr=False)
    short: dict = field(repr=False)
    latest: pd.DataFrame = field(repr=False)
    record: TaskRecord = field(default_factory=TaskRecord)
    signals: PartitionSignals | None = field(default=None, repr=False)


def prepare_daily(config: Config, *, data_path: str | None = None, out_dir: str | None = None,
                  backend: str = "auto", cluster: str | None = "config",
                  store: str | Path | None = None, signals: dict | None = None,
                  signals_from: str | None = None) -> DailyRequest:
    """Resolve paths from arguments and config, and check them cheaply (headers, not data).

    ``cluster``: where the flow's tasks run (see :mod:`alphapulse.pipelines.runtime.cluster`); "config" takes
    ``cluster.address``. ``store``: an indicator store folder to continue incrementally (new, empty or a
    store; see :mod:`alphapulse.pipelines.daily.incremental`). ``signals``: a ``signals:`` block replacing
    the config's (a flow or deployment parameter); ``signals_from``: a backtest report folder whose top
    combinations to signal (the CLI's ``--signals-from``; the config's ``signals.top``). Both are
    recorded in the manifest's config. Raises an input error (``ArgumentError``,
    ``ConfigError``, ``DataError``, ``ReportError``) with a one-line message.
    """
    if signals is not None:
        config = with_block(config, "signals", signals, source="the signals parameter")
    if signals_from is not None:
        block = {**config.signals.model_dump(mode="json"), "from_report": str(signals_from)}
        config = with_block(config, "signals", block, source="--signals-from")
    data_path, out_dir = request_paths(config, data_path=data_path, out_dir=out_dir,
                                       default_out_dir=config.report.out_dir, out_key="report.out_dir", backend=backend)
    if not config.indicator_specs():
        raise ConfigError("no indicators configured (the indicators: block is empty)")
    cluster = resolve_cluster(cluster, config)
    inputs = inspect_input(data_path, columns=config.data.columns, fmt=config.data.format)
    out = check_out_dir(out_dir, inputs=[data_path])
    if store is not None:
        from alphapulse.pipelines.daily.store import check_store

        store = check_store(store, inputs=[data_path], out_dir=out)
    return DailyRequest(config, inputs, str(data_path), out, backend, cluster, store, prepare_signals(config))


def load_stage(request: DailyRequest, backend: Backend) -> LoadedBars:
    return load_bars(request.inputs, lib=backend.frames,
                     symbols_per_partition=request.config.data.symbols_per_partition)


def plan_stage(request: DailyRequest) -> list[Partition]:
    """The partitions of the request's input (one whole partition when it fits)."""
    with stage_errors("plan", request.data_path, passthrough=(DataError,)):
        return plan_partitions(request.inputs, bars_per_partition=request.config.data.bars_per_partition)


def partition_key(request: DailyRequest, backend: Backend, part: Partition) -> str:
    """What a partition's results depend on: the config, the backend and dtype, the files'
    fingerprint (path, size, mtime) with the partition's symbols, and the code. The flow's cache key."""
    return result_key(request.config.hash(), backend.name, str(backend.dtype), part.fingerprint,
                      "whole" if part.whole else "part", request.signals.fingerprint() if request.signals else "",
                      roots=("alphapulse.pipelines.daily.pipeline",))


def _write_part(frame: pd.DataFrame, dest: Path) -> None:
    """Write a part file whole or not at all (a killed writer leaves no half file at ``dest``)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        frames.write_computed(frame, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def compute_partition(request: DailyRequest, backend: Backend, part: Partition, total: int,
                      dest: str | Path) -> PartitionResult:
    """Load, validate and compute one partition (of ``total``), and write its indicators to ``dest``.

    Bad input raises ``DataError`` as the loader does; anything else raises
    :class:`alphapulse.pipelines.runtime.stages.StageError` naming the stage (load, indicators, write)
    and the partition.
    """
    where = part.label(total)
    with task_scope(stage="indicators", partition=part.index) as (timer, record):
        with timer.stage("load_validate"), stage_errors("load", where, passthrough=(DataError,)):
            if part.whole:
                loaded = load_stage(request, backend)
            else:
                loaded = load_partition(request.inputs, part, lib=backend.frames)
        # outside stage_errors: over the means is the config's, exit 2
        check_daily(request.config, loaded.bars, request.signals)
        with timer.stage("indicators"), stage_errors("indicators", where):
            indicators = indicators_stage(loaded.bars, request.config, backend)
            short = short_history(loaded.bars, request.config.indicator_specs())
            latest = indicators.sort_values("timestamp").groupby("symbol", sort=True).tail(1).sort_values("symbol")
        signals = None
        if request.signals is not None:
            with timer.stage("signals"), stage_errors("signals", where):
                signals = signals_stage(loaded.bars, request.signals, backend)
        del loaded.bars
        with timer.stage("write_part"), stage_errors("write", where):
            _write_part(indicators, Path(dest))
    return PartitionResult(part.index, part.whole, str(dest), int(len(indicators)),
                           [str(c) for c in indicators.columns], loaded.rejected, loaded.stats, short,
                           latest.reset_index(drop=True), record, signals)


def short_history(bars, specs) -> dict[str, int]:
    """Symbols with fewer bars than the longest lookback + 1 (their longest indicators are all
    NaN): symbol -> number of bars."""
    need = max(lookback(s) for s in specs) + 1
    counts = frames.to_host(bars["symbol"].value_counts())
    short = counts[counts < need].sort_index()
    return {str(k): int(v) for k, v in short.items()}


def indicators_stage(bars, config: Config, backend: Backend, *,
                     tracker: RunTracker | None = None) -> pd.DataFrame:
    """Every configured indicator for every symbol: panel on the device, one pass, back to a
    long pandas frame (``timestamp, symbol, <outputs>``) sorted by (symbol, timestamp).

    Routed by measured speedup and run through the GPU out-of-memory handler; the decision and
    any alert go to ``tracker`` (default: the run's)."""
    specs = config.indicator_specs()
    needed = sorted({i for s in specs for i in INDICATORS[s.name].inputs} | {"close"})
    gpu = config.gpu
    backend = route("indicators", len(bars), backend, gpu, tracker=tracker)  # gpu.fallback.min_speedup
    if not backend.is_gpu:
        bars = frames.to_host(bars)  # routed off the GPU (a no-op on a CPU run)
    panel = bars_to_panel(bars, fields=needed, dtype=backend.dtype, xp=backend.xp, order=backend.panel_order)
    values = chunked_columns(panel.fields, lambda f: compute_indicators(f, specs), on_gpu=backend.is_gpu,
                             cpu_fallback=gpu.fallback.cpu_fallback, alert=gpu.monitoring.alert_on_oom,
                             stage="indicators", tracker=tracker)
    keys = bars[["timestamp", "symbol"]]
    if backend.is_gpu and isinstance(next(iter(values.values())), np.ndarray):
        # after a GPU out-of-memory the outputs were joined on the host: build the frame there
        panel = replace(panel, rows=tuple(r.get() for r in panel.rows))
        keys = frames.to_host(keys)
    frame = panel_to_frame(panel, values, keys=keys)
    return frames.to_host(frame)


def _partition_args(run: Run, state, part: Partition) -> tuple:
    key = partition_key(run.request, run.backend, part)
    return run.request, run.backend, part, len(state.plan), str(run.scratch / f"{key}.parquet")


def _report(run: Run, state) -> DailyResult:
    return report_stage(run.request, run.backend, state.partition, run.timer.seconds, run_id=run.run_id,
                        cluster=run.cluster, cached=state.cached.get("partition", 0))


DAILY = Pipeline("daily", prepare_daily, (
    Stage("plan", lambda run, state: plan_stage(run.request), io=True),
    Stage("partition", compute_partition, io=True, args=_partition_args, units=lambda run, state: state.plan,
          key=lambda run, state, part: partition_key(run.request, run.backend, part),
          reuse=lambda result: Path(result.path).exists(),
          from_cache=lambda result: replace(result, record=result.record.without_seconds()),
          task_name="partition-{index}"),
    Stage("report", _report, io=True, timed=False),
), scratch=True, variant=lambda request: _incremental() if request.store is not None else DAILY)
"""The daily pipeline's stages: plan, a partition task per partition (on the cluster when there is
one; cached by :func:`partition_key` under Prefect), the report. A request with a ``store`` runs
:data:`alphapulse.pipelines.daily.incremental.DAILY_INCREMENTAL` instead."""


def _incremental() -> Pipeline:
    from alphapulse.pipelines.daily.incremental import DAILY_INCREMENTAL

    return DAILY_INCREMENTAL


def run_daily(request: DailyRequest, *, run_id: str | None = None) -> DailyResult:
    """The whole daily pipeline without Prefect: the partitions one after the other (bounded
    memory), or all at once on the request's cluster; against the request's indicator store when
    it has one (new bars only, :data:`alphapulse.pipelines.daily.incremental.DAILY_INCREMENTAL`)."""
    return run_pipeline(DAILY, request, run_id=run_id)
