"""The daily pipeline: load -> validate -> indicators -> report.

Each stage is a plain function, so the Prefect flow (``flows.daily``), a test or a notebook runs
the same code; :func:`run_daily` chains them without Prefect.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pipelines import frames
from pipelines.backend import Backend, choose_backend
from pipelines.config import Config
from pipelines.data import InputFiles, LoadedBars, inspect_input, load_bars
from pipelines.panel import bars_to_panel, panel_to_frame
from pipelines.report import check_out_dir, markdown_table, write_report
from pipelines.stages import StageTimer, run_record
from transforms.indicators import INDICATORS, compute_indicators, lookback

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DailyRequest:
    """A checked request: what the CLI validates before any work starts."""

    config: Config
    inputs: InputFiles
    data_path: str
    out_dir: Path
    backend: str = "auto"


@dataclass
class DailyResult:
    out_dir: Path
    manifest: dict
    indicators: pd.DataFrame = field(repr=False)


def prepare_daily(config: Config, *, data_path: str | None = None, out_dir: str | None = None,
                  backend: str = "auto") -> DailyRequest:
    """Resolve paths from arguments and config, and check them cheaply (headers, not data).

    Raises ``DataError`` / ``ReportError`` / ``ValueError`` with a one-line message.
    """
    data_path = data_path or config.data.path
    out_dir = out_dir or config.report.out_dir
    if not data_path:
        raise ValueError("no input: give --data or set data.path in the config")
    if not out_dir:
        raise ValueError("no output folder: give --out or set report.out_dir in the config")
    if backend not in ("auto", "cpu", "gpu"):
        raise ValueError(f"unknown backend {backend!r}: expected auto, cpu or gpu")
    if not config.indicator_specs():
        raise ValueError("no indicators configured (the indicators: block is empty)")
    inputs = inspect_input(data_path, columns=config.data.columns, fmt=config.data.format)
    return DailyRequest(config, inputs, str(data_path), check_out_dir(out_dir), backend)


def load_stage(request: DailyRequest, backend: Backend) -> LoadedBars:
    return load_bars(request.inputs, lib=backend.frames, symbols_per_partition=request.config.data.symbols_per_partition)


def short_history(bars, specs) -> dict[str, int]:
    """Symbols with fewer bars than the longest lookback + 1 (their longest indicators are all
    NaN): symbol -> number of bars."""
    need = max(lookback(s) for s in specs) + 1
    counts = frames.to_host(bars["symbol"].value_counts())
    short = counts[counts < need].sort_index()
    return {str(k): int(v) for k, v in short.items()}


def indicators_stage(bars, request: DailyRequest, backend: Backend) -> pd.DataFrame:
    """Every configured indicator for every symbol: panel on the device, one pass, back to a
    long pandas frame (``timestamp, symbol, <outputs>``) sorted by (symbol, timestamp)."""
    specs = request.config.indicator_specs()
    needed = sorted({i for s in specs for i in INDICATORS[s.name].inputs} | {"close"})
    panel = bars_to_panel(bars, fields=needed, dtype=backend.dtype, xp=backend.xp, order=backend.panel_order)
    values = compute_indicators(panel.fields, specs)
    frame = panel_to_frame(panel, values, keys=bars[["timestamp", "symbol"]])
    return frames.to_host(frame)


def _summary_md(manifest: dict, short: dict, indicators: pd.DataFrame) -> str:
    inp, be = manifest["input"], manifest["backend"]
    lines = [
        "# AlphaPulse daily report",
        "",
        f"- run `{manifest['run_id']}` at {manifest['created_at']}",
        f"- backend: **{be['name']}** ({be['reason']}), dtype {be['dtype']}",
        f"- input: `{inp['path']}`: {inp['rows_read']:,} rows read, {inp['rows_accepted']:,} accepted, "
        f"{inp['rows_rejected']:,} rejected; {inp['symbols']} symbols, "
        f"{inp.get('first_timestamp', '?')} .. {inp.get('last_timestamp', '?')}",
    ]
    if inp["rows_rejected"]:
        lines += ["", "## Rejected rows (see `rejected.parquet`)", "", "| reason | rows |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in inp["rejected_by_reason"].items()]
    if short:
        lines += ["", f"## Short histories ({len(short)} symbols with fewer bars than the longest lookback + 1)",
                  "", ", ".join(f"{k} ({v} bars)" for k, v in short.items())]
    last = indicators.sort_values("timestamp").groupby("symbol", sort=True).tail(1).sort_values("symbol")
    cols = [c for c in ("close_rsi", "rsi_14", "macd_hist_12_26_9", "atr_14", "sma_20", "sma_50") if c in last]
    if cols:
        snap = last[["symbol", "timestamp", *cols]].head(20)
        lines += ["", "## Latest values (first 20 symbols)", "", markdown_table(snap)]
    lines += ["", "## Stage timings", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in manifest["stages"].items()]
    return "\n".join(lines) + "\n"


def report_stage(request: DailyRequest, backend: Backend, loaded: LoadedBars, indicators: pd.DataFrame,
                 stages: dict[str, float], *, run_id: str | None = None) -> DailyResult:
    """Write ``indicators.parquet``, ``rejected.parquet`` (if any), ``manifest.json`` and
    ``summary.md`` atomically into the request's output folder."""
    config = request.config
    short = short_history(loaded.bars, config.indicator_specs())
    manifest = {
        **run_record("daily", backend=backend, config=config, data_path=request.data_path, loaded=loaded,
                     run_id=run_id),
        "output": {"rows": int(len(indicators)), "columns": [c for c in indicators.columns]},
        "short_history": short,
        "stages": dict(stages),
    }
    tables = {"indicators.parquet": indicators}
    if len(loaded.rejected):
        tables["rejected.parquet"] = loaded.rejected
    out = write_report(request.out_dir, tables=tables, manifest=manifest,
                       summary=_summary_md(manifest, short, indicators))
    return DailyResult(out, manifest, indicators)


def run_daily(request: DailyRequest) -> DailyResult:
    """The whole daily pipeline without Prefect."""
    timer = StageTimer()
    with timer.stage("backend"):
        backend = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("load_validate"):
        loaded = load_stage(request, backend)
    with timer.stage("indicators"):
        indicators = indicators_stage(loaded.bars, request, backend)
    return report_stage(request, backend, loaded, indicators, timer.seconds)
