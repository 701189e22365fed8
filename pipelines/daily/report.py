"""The daily pipeline's report: ``summary.md``, the manifest, the report stage, and its part of
``summary.html``, the CLI and the Prefect artifacts (:data:`REPORT`).

A field of the daily report is added here alone: the manifest (:func:`report_stage`), the summary
(:func:`_summary_md`), the page (:func:`_section_indicators`), the CLI (:func:`cli_lines`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from alphapulse.pipelines.data.load import LoadedBars, require_accepted
from alphapulse.pipelines.report.manifest import check_manifest
from alphapulse.pipelines.report.markup import _table
from alphapulse.pipelines.report.spec import ReportSpec
from alphapulse.pipelines.report.views import _snapshot, run_lines
from alphapulse.pipelines.report.write import markdown_table, write_report
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.cost import stage_table_lines
from alphapulse.pipelines.runtime.stages import run_record, run_sections

if TYPE_CHECKING:
    from alphapulse.pipelines.daily.pipeline import DailyRequest, PartitionResult


@dataclass
class DailyResult:
    out_dir: Path
    manifest: dict

    @property
    def indicators(self) -> pd.DataFrame:
        """The report's indicators (all partitions), read back from the report folder."""
        return pd.read_parquet(self.out_dir / self.manifest["output"]["path"])


def _summary_md(manifest: dict, short: dict, last: pd.DataFrame) -> str:
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
    inc = manifest.get("incremental")
    if inc is not None:
        lines += ["", "## Incremental run", "",
                  f"- store `{inc['store']}`, version {inc['version']}: {inc['store_rows']:,} rows, "
                  f"{inc['store_symbols']:,} symbols",
                  f"- {inc['bars_computed']:,} bars computed; {len(inc['appended']):,} symbols appended, "
                  f"{len(inc['recomputed']):,} recomputed from their first bar"]
        if inc["full_recompute"]:
            lines += [f"- everything recomputed: {'; '.join(inc['full_recompute'])}"]
        else:
            lines += [f"- `{k}`: {v}" for k, v in list(inc["recomputed"].items())[:20]]
    cols = [c for c in ("close_rsi", "rsi_14", "macd_hist_12_26_9", "atr_14", "sma_20", "sma_50") if c in last]
    if cols:
        snap = last[["symbol", "timestamp", *cols]].head(20)
        lines += ["", "## Latest values (first 20 symbols)", "", markdown_table(snap)]
    lines += stage_table_lines(manifest)
    return "\n".join(lines) + "\n"


def _combined_stats(parts: list[PartitionResult]) -> dict:
    """The loader's counts over all partitions (as one whole load reports them)."""
    stats = {"rows_read": 0, "rows_accepted": 0, "rows_rejected": 0, "rejected_by_reason": {}, "symbols": 0}
    for p in parts:
        for k in ("rows_read", "rows_accepted", "rows_rejected", "symbols"):
            stats[k] += p.stats[k]
        for k, v in p.stats["rejected_by_reason"].items():
            stats["rejected_by_reason"][k] = stats["rejected_by_reason"].get(k, 0) + v
    stats["rejected_by_reason"] = dict(sorted(stats["rejected_by_reason"].items()))
    stats["partitions"] = parts[0].stats["partitions"] if parts[0].whole else len(parts)
    firsts = [p.stats["first_timestamp"] for p in parts if "first_timestamp" in p.stats]
    if firsts:
        stats["first_timestamp"] = min(firsts, key=pd.Timestamp)
        stats["last_timestamp"] = max((p.stats["last_timestamp"] for p in parts if "last_timestamp" in p.stats),
                                      key=pd.Timestamp)
    return stats


def report_stage(request: DailyRequest, backend: Backend, parts: list[PartitionResult],
                 stages: dict[str, float], *, run_id: str | None = None, cluster: dict | None = None,
                 cached: int = 0, incremental: dict | None = None) -> DailyResult:
    """Write the report atomically into the request's output folder: the part files (as
    ``indicators.parquet``, or ``indicators/part-NNNNN.parquet`` for several partitions),
    ``rejected.parquet`` (if any), ``manifest.json`` and ``summary.md``.

    ``cached``: partitions taken from the flow's cache (``output.cached_partitions``; their stage
    times are not this run's, so the caller passes them with empty ``seconds``).

    ``stages`` holds the flow's own stages; the partitions' stage times are added up into it.
    ``incremental``: a store run's section (``alphapulse.pipelines.daily.incremental``), written as
    ``manifest["incremental"]`` and summarised in ``summary.md``.
    """
    config = request.config
    parts = sorted(parts, key=lambda p: p.index)
    if parts[0].whole:
        linked, out_path = {"indicators.parquet": Path(parts[0].path)}, "indicators.parquet"
    else:
        linked = {f"indicators/part-{p.index:05d}.parquet": Path(p.path) for p in parts}
        out_path = "indicators"
    stages = dict(stages)
    for p in parts:
        for k, v in p.record.seconds.items():
            stages[k] = round(stages.get(k, 0.0) + v, 4)
    short = dict(sorted(kv for p in parts for kv in p.short.items()))
    frames_ = [p.rejected for p in parts if len(p.rejected)]
    rejected = pd.concat(frames_, ignore_index=True) if frames_ else parts[0].rejected
    # a partitioned run's whole-input check (a whole load makes it in load_bars)
    loaded = require_accepted(LoadedBars(None, rejected, [str(f) for f in request.inputs.paths], 0,
                                         _combined_stats(parts)))
    manifest = {
        **run_record("daily", backend=backend, config=config, data_path=request.data_path, loaded=loaded,
                     run_id=run_id),
        "cluster": cluster or {"kind": "in-process", "workers": 1},
        "output": {"path": out_path, "partitions": len(parts), "cached_partitions": cached,
                   "rows": sum(p.rows for p in parts), "columns": parts[0].columns},
        "short_history": short,
        "stages": stages,
    }
    if incremental is not None:
        manifest["incremental"] = incremental
    manifest.update(run_sections(config, stages, work=("million bars", loaded.stats["rows_accepted"] / 1e6),
                                 records=[p.record for p in parts]))
    tables = {"rejected.parquet": rejected} if len(rejected) else {}
    latest = pd.concat([p.latest for p in parts], ignore_index=True)
    check_manifest(manifest)  # its declared shape, before anything is written
    out = write_report(request.out_dir, tables=tables, manifest=manifest, linked=linked,
                       summary=_summary_md(manifest, short, latest), page_tables={"indicators_latest": latest})
    return DailyResult(out, manifest)


def _section_indicators(m: dict, tables, files) -> str | None:
    snap = _snapshot(tables)
    if snap is None:
        return None
    out = [f"<h2>Indicator snapshot: latest values ({len(snap):,} symbols)</h2>",
           _table(snap, max_rows=100, note="full history in indicators.parquet")]
    short = m.get("short_history") or {}
    if short:
        out.append(f"<h3>Short histories ({len(short)} symbols with fewer bars than the longest lookback + 1)</h3>")
        out.append(_table(pd.DataFrame({"symbol": list(short), "bars": list(short.values())})))
    return "".join(out)


def cli_lines(manifest: dict, out_dir) -> list[str]:
    """The CLI's lines for this report (the stage times follow them)."""
    inp = manifest["input"]
    lines = run_lines(manifest, out_dir, rows_extra=" (rejected.parquet)" if inp["rows_rejected"] else "")
    lines.append(f"symbols: {inp['symbols']}; indicator columns: {len(manifest['output']['columns']) - 2}; "
                 f"short histories: {len(manifest['short_history'])}")
    out, cluster = manifest.get("output", {}), manifest.get("cluster", {})
    if out.get("partitions", 1) > 1 or cluster.get("kind", "in-process") != "in-process":
        lines.append(f"partitions: {out.get('partitions', 1)} ({out.get('path')}); cluster: {cluster.get('kind')}")
    inc = manifest.get("incremental")
    if inc:
        lines.append(f"store: {inc['store']}: {len(inc['appended'])} symbol(s) appended, {len(inc['recomputed'])} "
                     f"recomputed, {inc['bars_computed']:,} bars computed; {inc['store_rows']:,} rows stored")
    return lines


def headline(manifest: dict, tables) -> tuple[str, pd.DataFrame] | None:
    snap = _snapshot(tables)
    return None if snap is None else ("Latest indicator values", snap)


REPORT = ReportSpec("daily", (_section_indicators,), cli_lines, headline, main_table="indicators.parquet")
