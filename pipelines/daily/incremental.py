"""The daily pipeline against an indicator store: compute the new bars only, append them, in one commit.

:data:`DAILY_INCREMENTAL` (the stage list; :func:`run_daily_incremental` runs it in-process) is what
:func:`alphapulse.pipelines.daily.pipeline.run_daily` and the daily flow run for a request with a
``store`` (``prepare_daily(..., store=DIR)``): under the store's lock it loads and
validates the input as the daily pipeline does, plans which symbols append and which recompute
(:func:`alphapulse.pipelines.daily.store.plan_update`), continues the appended symbols from their state
and computes the recomputed ones from their first bar in one pass of
:func:`alphapulse.transforms.indicators.state.continue_indicators`, commits rows and state atomically
(:func:`alphapulse.pipelines.daily.store.commit`), and writes the usual report folder: its
``indicators.parquet`` holds this run's computed rows, and ``manifest.json`` an ``incremental`` section.

Its indicators read the store's state, never its history (a correction excepted: the files holding a
corrected symbol's rows are rewritten without them), so their time and memory follow the new bars. The
signals and breadth, when configured, need each symbol's whole history: the input's where it holds it,
else the bars the store keeps (:func:`histories`), a group of whole symbols at a time. It computes on
the host: a day's bars are far below the GPU's break-even (``gpu.fallback.min_speedup``), and the state
lives on the host between runs.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.config.schema import STANDARD_COLUMNS
from alphapulse.pipelines.daily import store as store_
from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.data.load import DataError, LoadedBars, load_bars
from alphapulse.pipelines.data.panel import bars_to_panel, panel_to_frame
from alphapulse.pipelines.report.write import write_lock, scratch_folder
from alphapulse.pipelines.runtime.backend import cpu_backend
from alphapulse.pipelines.runtime.budget import check_daily
from alphapulse.pipelines.runtime.run import Pipeline, Run, Stage, run_pipeline
from alphapulse.pipelines.runtime.stages import StageTimer, stage_errors
from alphapulse.transforms.indicators.registry import lookback
from alphapulse.transforms.indicators.state import continue_indicators, state_fields

log = logging.getLogger(__name__)


def compute_update(rows: pd.DataFrame, specs, state: pd.DataFrame, plan: store_.UpdatePlan, *,
                   dtype) -> tuple[pd.DataFrame, pd.DataFrame]:
    """This run's indicators and the next state of the symbols it touches.

    Parameters
    ----------
    rows : the bars to compute (:func:`~alphapulse.pipelines.daily.store.plan_update`), sorted by
        (symbol, timestamp): appended symbols' new bars, recomputed symbols' every bar
    specs : the configured indicators
    state : the committed state (one row per symbol)
    plan : which symbols recompute (they start from the empty state)
    dtype : the compute dtype (``gpu.operations.precision``)

    Returns
    -------
    indicators : ``timestamp, symbol, <outputs>``, one row per row of ``rows``
    state : the stored state rows of the symbols in ``rows`` (see :func:`~alphapulse.pipelines.daily.store.state_frame`)
    """
    carried = state[~state["symbol"].isin(list(plan.recompute))] if len(state) else state
    panel = bars_to_panel(rows, fields=state_fields(specs), dtype=dtype, xp=np, order="F")
    symbols = np.asarray(panel.symbols, dtype=object)
    st = store_.state_arrays(carried, symbols, specs)
    values, after = continue_indicators(panel.fields, specs, st)
    indicators = panel_to_frame(panel, values, keys=rows[["timestamp", "symbol"]])

    start = np.empty((len(symbols), 2), dtype=np.uint64)
    start[:] = np.array(store_._FP_SEED, dtype=np.uint64)
    first = rows.groupby("symbol", sort=True)["timestamp"].min().to_numpy().astype("datetime64[ns]")
    last = rows.groupby("symbol", sort=True)["timestamp"].max().to_numpy().astype("datetime64[ns]")
    if len(carried):
        at = pd.Index(carried["symbol"]).get_indexer(symbols)
        have = np.flatnonzero(at >= 0)
        start[have] = store_.stored_fingerprints(carried)[at[have]]
        first[have] = carried["first_timestamp"].to_numpy("datetime64[ns]")[at[have]]
    _, fingerprints = store_.bar_fingerprints(rows, start=start)
    return indicators, store_.state_frame(symbols, after, specs, first=first, last=last, fingerprints=fingerprints)


def _merge_state(old: pd.DataFrame, new: pd.DataFrame, *, full: bool) -> pd.DataFrame:
    if full or not len(old):
        return new.sort_values("symbol", ignore_index=True)
    untouched = old[~old["symbol"].isin(new["symbol"])]
    return pd.concat([untouched, new], ignore_index=True).sort_values("symbol", ignore_index=True)


def update_store(root: Path, bars: pd.DataFrame, specs, *, dtype, data: str = "",
                 timer: StageTimer | None = None) -> tuple[pd.DataFrame, dict, pd.DataFrame]:
    """Append ``bars`` to the store at ``root`` (created when missing or empty), in one atomic commit.

    Parameters
    ----------
    root : the store folder (checked by :func:`~alphapulse.pipelines.daily.store.check_store`)
    bars : validated bars (pandas, ``timestamp, symbol, open, high, low, close, volume``, sorted by
        (symbol, timestamp)): per symbol, either only bars after its last stored one, or its whole history
    specs : the configured indicators
    dtype : the compute dtype
    data : the input's name for the store's run record

    Returns
    -------
    indicators : the rows this run computed (``timestamp, symbol, <outputs>``)
    section : what the run did (the report manifest's ``incremental`` section)
    state : the store's state after the run (one row per symbol)
    """
    timer = timer or StageTimer()
    identity = store_.store_identity(specs, dtype)
    root.parent.mkdir(parents=True, exist_ok=True)
    with write_lock(root):
        with timer.stage("store_open"), stage_errors("store", str(root), passthrough=(store_.StoreError,)):
            if root.exists():
                store_.recover(root)
            snapshot = store_.open_store(root)
        plan, rows = store_.plan_update(snapshot, bars, identity)
        manifest, state = snapshot.manifest, snapshot.state
        if len(rows):
            with timer.stage("indicators"), stage_errors("indicators", str(root)):
                indicators, new_state = compute_update(rows, specs, snapshot.state, plan, dtype=dtype)
            full = bool(plan.full_reasons)
            state = _merge_state(snapshot.state, new_state, full=full)
            stored = set(snapshot.state["symbol"]) if len(snapshot.state) else set()
            corrected = {s for s in plan.recompute if s in stored}
            run = {"data": data, "appended": len(plan.append), "recomputed": len(plan.recompute),
                   "full_recompute": plan.full_reasons, "bars_computed": int(len(rows))}
            with timer.stage("store_commit"), stage_errors("store", str(root)):
                manifest = store_.commit(snapshot, rows=indicators, bars=rows[list(STANDARD_COLUMNS)], state=state,
                                         recomputed=corrected, full=full, identity=identity, run=run)
        else:
            log.info("store %s: no new bars; nothing committed", root)
            indicators = _empty_indicators(specs, dtype)
    section = {"store": str(root), "version": manifest["version"] if manifest else 0,
               "appended": plan.append, "recomputed": plan.recompute, "full_recompute": plan.full_reasons,
               "bars_computed": int(len(rows)), "store_rows": manifest["rows"] if manifest else 0,
               "store_symbols": manifest["symbols"] if manifest else 0}
    return indicators, section, state


def _load(run: Run, state) -> LoadedBars:
    request = run.request
    with stage_errors("load", request.data_path, passthrough=(DataError,)):
        return load_bars(request.inputs, lib=pd, symbols_per_partition=request.config.data.symbols_per_partition)


def _update(run: Run, state):
    request, config = run.request, run.request.config
    bars = frames.to_host(state.load_validate.bars)
    check_daily(config, bars, request.signals)
    return update_store(Path(request.store), bars, config.indicator_specs(), dtype=run.backend.dtype,
                        data=request.data_path, timer=run.timer)


def histories(root: Path, bars: pd.DataFrame, stored: pd.DataFrame, *, bars_per_group: int, skipped: dict):
    """Each symbol of ``bars`` with its whole history (what signals and breadth read: a position depends
    on every bar before it), yielded in groups of whole symbols of about ``bars_per_group`` bars, so
    that one group's history is in memory at a time.

    A symbol's history is ``bars``' own rows where they are all its stored bars (the input held the
    whole history), else the store's bars (``_bars/``, today's included: call after the commit). Each
    group is a frame with ``bars``' dtypes, not sorted (the panel pivots it). A symbol the store cannot
    complete (a store written before it kept bars) is added to ``skipped`` with the reason.
    """
    counts = bars.groupby("symbol", sort=True).size()
    seen = stored.set_index("symbol")["seen"].reindex(counts.index).fillna(0).astype("int64")
    complete = (counts >= seen).to_numpy()
    group_of = ((seen.cumsum() - seen) // max(1, bars_per_group)).to_numpy()
    for g in np.unique(group_of):
        here = group_of == g
        own, rest = counts.index[here & complete], counts.index[here & ~complete]
        pieces = [bars[bars["symbol"].isin(list(own))]] if len(own) else []
        if len(rest):
            with write_lock(root):  # a concurrent run's commit must not swap the files mid-read
                read = store_.read_bars(root, store_.read_manifest(root), rest).astype(bars.dtypes.to_dict())
            got = read.groupby("symbol", sort=True).size().reindex(rest).fillna(0).astype("int64")
            short = rest[(got != seen.reindex(rest)).to_numpy()]
            skipped.update({str(k): f"the store holds {int(got[k]):,} of its {int(seen[k]):,} bars (a store written "
                                    "before it kept bars; a run on the whole history fills it)" for k in short})
            pieces.append(read[~read["symbol"].isin(list(short))] if len(short) else read)
        frame = pd.concat(pieces, ignore_index=True)
        if len(frame):
            yield frame


def _report(run: Run, state):
    from alphapulse.pipelines.daily.pipeline import PartitionResult, report_stage
    from alphapulse.pipelines.daily.signals import PartitionSignals, signals_stage

    request, loaded = run.request, state.load_validate
    indicators, section, stored = state.update
    need = max(lookback(s) for s in request.config.indicator_specs()) + 1
    latest = indicators.groupby("symbol", sort=True).tail(1).reset_index(drop=True)
    signals, skipped = None, {}
    if request.signals is not None:
        with run.timer.stage("signals"), stage_errors("signals", request.data_path):
            host = cpu_backend("the store computes on the host", precision=str(run.backend.dtype))
            parts = [signals_stage(g, request.signals, host)  # a group's history at a time: bounded
                     for g in histories(Path(request.store), frames.to_host(loaded.bars), stored,
                                        bars_per_group=request.config.data.bars_per_partition, skipped=skipped)]
            if parts:
                breadths = [p.breadth for p in parts if p.breadth is not None]
                signals = PartitionSignals(pd.concat([p.frame for p in parts], ignore_index=True),
                                           [c for p in parts for c in p.charts],
                                           pd.concat(breadths, ignore_index=True) if breadths else None)
    with scratch_folder(request.out_dir, "parts") as scratch:  # the run's own part file, linked into the report
        path = scratch / "part-00000.parquet"
        frames.write_computed(indicators, path)
        part = PartitionResult(0, True, str(path), int(len(indicators)), [str(c) for c in indicators.columns],
                               loaded.rejected, loaded.stats, _short(stored, need), latest, signals=signals)
        return report_stage(request, run.backend, [part], run.timer.seconds, run_id=run.run_id, cluster=run.cluster,
                            incremental=section, signals_skipped=skipped)


DAILY_INCREMENTAL = Pipeline("daily", None, (
    Stage("load_validate", _load, io=True),
    Stage("update", _update, io=True, timed=False),  # one atomic commit: a retry after a failure is safe
    Stage("report", _report, io=True, timed=False),
))
"""The daily pipeline against a request's indicator store (``prepare_daily(..., store=DIR)``): load,
update the store (plan, compute the new bars, commit), the report. In the run's process: a day's
bars are far below what a cluster or the GPU pays off for."""


def run_daily_incremental(request):
    """The daily pipeline for ``request`` (a ``DailyRequest`` with ``store`` set) against its store.

    Returns the :class:`~alphapulse.pipelines.daily.pipeline.DailyResult` of the report folder; its
    manifest's ``incremental`` section says what the run did: ``store``, ``version``, ``appended`` and
    ``recomputed`` (symbol -> reason) symbols, ``full_recompute`` reasons, ``bars_computed``, and the
    store's ``store_rows`` and ``store_symbols`` after the run.
    """
    return run_pipeline(DAILY_INCREMENTAL, request)


def _short(state: pd.DataFrame, need: int) -> dict[str, int]:
    """Stored symbols with fewer bars than the longest lookback + 1 -> bars (as the daily report's)."""
    if not len(state):
        return {}
    short = state[state["seen"] < need]
    return {str(k): int(v) for k, v in zip(short["symbol"], short["seen"])}


def _empty_indicators(specs, dtype) -> pd.DataFrame:
    cols = {"timestamp": pd.Series([], dtype="datetime64[ns]"), "symbol": pd.Series([], dtype=object)}
    for s in specs:
        for name in s.column_names():
            cols[name] = pd.Series([], dtype=dtype)
    return pd.DataFrame(cols)
