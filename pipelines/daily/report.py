"""The daily pipeline's report: ``summary.md``, the manifest, the report stage, and its part of
``summary.html``, the CLI and the Prefect artifacts (:data:`REPORT`).

A field of the daily report is added here alone: the manifest (:func:`report_stage`), the summary
(:func:`_summary_md`), the page (:func:`_section_signals`, :func:`_section_breadth`,
:func:`_section_indicators`), the CLI (:func:`cli_lines`), the artifacts (:func:`artifacts`).

The page leads with what a desk acts on: today's entries and exits ranked by each parameter
set's record, a chart per top one (closes, the strategy's indicators, its entries and exits over
the last ``signals.chart_bars`` bars), then the market's breadth over time, then the latest
indicator values (the first 100 symbols; every value is in the parquet files).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alphapulse.pipelines.data.load import LoadedBars, require_accepted
from alphapulse.pipelines.report.manifest import check_manifest
from alphapulse.pipelines.daily.signals import combine_signals, empty_signals, rank_actions, record_key, signals_section
from alphapulse.pipelines.report.markup import escape, html_table
from alphapulse.pipelines.report.spec import ReportSpec
from alphapulse.pipelines.report.svg import line_chart, stacked_chart
from alphapulse.pipelines.report.views import latest_indicators, run_lines
from alphapulse.pipelines.report.write import format_value, markdown_table, write_report
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

    @property
    def signals(self) -> pd.DataFrame:
        """The report's ``signals.parquet`` (empty when no strategy was signalled)."""
        path = self.out_dir / "signals.parquet"
        return pd.read_parquet(path) if path.exists() else pd.DataFrame()

    @property
    def breadth(self) -> pd.DataFrame:
        """The report's ``breadth.parquet``: counts and shares per bar."""
        return pd.read_parquet(self.out_dir / "breadth.parquet")


def _signals_md(manifest: dict, signals: pd.DataFrame | None) -> list[str]:
    sec = manifest.get("signals")
    if not sec or signals is None:
        return []
    acts = sec["actions"]
    after = f"the bar after {sec['last_timestamp']}" if sec["last_timestamp"] else "no symbol"
    lines = ["", f"## Signals for {after} (see `signals.parquet`)", "",
             f"{_counted(acts)} over "
             f"{len(sec['sets'])} strateg{'y' if len(sec['sets']) == 1 else 'ies'}"
             + (f"; from backtest report `{sec['report']['path']}` (run {sec['report']['run_id']})"
                if sec.get("report") else "")]
    if sec.get("skipped"):
        lines += [f"- no signals for {len(sec['skipped'])} symbol(s): "
                  + "; ".join(f"{k}: {v}" for k, v in list(sec["skipped"].items())[:10])]
    moves = rank_actions(signals[signals["timestamp"] == signals["timestamp"].max()])
    if len(moves):
        lines += ["", markdown_table(_moves_view(moves).head(20))]
        if len(moves) > 20:
            lines += ["", f"(the best 20 of {len(moves):,} entries and exits)"]
    return lines


def _counted(acts: dict) -> str:
    n = acts["enter"], acts["exit"]
    return (f"{n[0]} entr{'y' if n[0] == 1 else 'ies'}, {n[1]} exit{'' if n[1] == 1 else 's'}, {acts['hold']} held, "
            f"{acts['flat']} flat")


def _moves_view(moves: pd.DataFrame) -> pd.DataFrame:
    """The columns a person reads of ranked entries and exits."""
    view = moves[["symbol", "action", "position", "strategy", "combo", "since"]].copy()
    view["record"] = record_key(moves).to_numpy()
    for c in ("record_source", "oos_windows", "bt_trades"):
        view[c] = moves[c].to_numpy()
    if view["record"].isna().all():  # no report behind these sets: no record columns to show
        view = view.drop(columns=["record", "record_source", "oos_windows", "bt_trades"])
    return view.reset_index(drop=True)


def _breadth_md(breadth: pd.DataFrame | None) -> list[str]:
    if breadth is None or not len(breadth):
        return []
    last = breadth.iloc[-1]
    pct = lambda k: "n/a" if pd.isna(last[f"share_{k}"]) else f"{last[f'share_{k}']:.0%}"  # noqa: E731
    return ["", f"## Market breadth on {format_value(last['timestamp'])} (see `breadth.parquet`)", "",
            f"- above the 50-bar average: {pct('above_sma50')}; above the 200-bar average: {pct('above_sma200')}",
            f"- RSI(14) < 30: {pct('rsi_lt30')}, 30-50: {pct('rsi_30_50')}, 50-70: {pct('rsi_50_70')}, "
            f">= 70: {pct('rsi_ge70')}",
            f"- closing at a 252-bar high: {int(last['new_high'])}, at a 252-bar low: {int(last['new_low'])} "
            f"(of {int(last['range252'])} symbols with 252 bars)"]


def _summary_md(manifest: dict, short: dict, last: pd.DataFrame, signals: pd.DataFrame | None = None,
                breadth: pd.DataFrame | None = None) -> str:
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
    lines += _signals_md(manifest, signals)
    lines += _breadth_md(breadth)
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
                 cached: int = 0, incremental: dict | None = None,
                 signals_skipped: dict | None = None) -> DailyResult:
    """Write the report atomically into the request's output folder: the part files (as
    ``indicators.parquet``, or ``indicators/part-NNNNN.parquet`` for several partitions),
    ``rejected.parquet`` (if any), ``manifest.json`` and ``summary.md``.

    ``cached``: partitions taken from the flow's cache (``output.cached_partitions``; their stage
    times are not this run's, so the caller passes them with empty ``seconds``).

    ``stages`` holds the flow's own stages; the partitions' stage times are added up into it.
    ``incremental``: a store run's section (``alphapulse.pipelines.daily.incremental``), written as
    ``manifest["incremental"]`` and summarised in ``summary.md``. ``signals_skipped``: symbols
    given no signal, with the reason (``manifest["signals"]["skipped"]``).

    With the partitions' signals and breadth (:mod:`alphapulse.pipelines.daily.signals`) it also
    writes ``breadth.parquet`` and, when the ``signals:`` block names a strategy, ``signals.parquet``.
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
    page_tables = {"indicators_latest": latest}
    signals = breadth = None
    market = [p.signals for p in parts if p.signals is not None]
    if request.signals is not None:
        if market:
            signals, breadth, charts = combine_signals(market, request.signals)
            if breadth is not None:
                tables["breadth.parquet"] = breadth
                manifest["breadth"] = {"rows": int(len(breadth)), "page_bars": request.signals.breadth_bars}
        else:  # every symbol skipped (a store run given only new bars): said so, not left out
            signals, charts = empty_signals(request.signals), []
        if request.signals.sets:
            tables["signals.parquet"] = signals
            manifest["signals"] = signals_section(request.signals, signals, signals_skipped)
            page_tables["signal_charts"] = _chart_frame(charts)
    check_manifest(manifest)  # its declared shape, before anything is written
    out = write_report(request.out_dir, tables=tables, manifest=manifest, linked=linked,
                       summary=_summary_md(manifest, short, latest, signals, breadth), page_tables=page_tables)
    return DailyResult(out, manifest)


_ARROW = {"long": "long", "short": "short"}


def _markers(held) -> list[tuple[int, str]]:
    """(bar, kind) where the held position changes: ``long``/``short`` entries, ``exit``."""
    out = []
    for i in range(1, len(held)):
        a, b = held[i - 1], held[i]
        if a == a and b == b and a != b:
            out.append((i, "long" if b > 0 else "short" if b < 0 else "exit"))
    return out


PRICE_UNITS = frozenset({"sma", "ema", "bbands"})
"""Indicators in the price's units, drawn over the closes; the others get a strip of their own."""


def _chart_svg(chart: dict) -> str:
    """One signal's chart: the closes with the indicators in price units over them, the others below."""
    close = np.asarray(chart["close"], dtype=np.float64)
    labels = [str(pd.Timestamp(t).date()) for t in chart["timestamps"]]
    over = [(name, v) for name, kind, v in chart["lines"] if kind in PRICE_UNITS]
    under = [(name, v) for name, kind, v in chart["lines"] if kind not in PRICE_UNITS]
    if under:  # the rule's constant levels (an RSI's 30 and 70) beside the indicator they apply to
        under += [(f"level {v:g}", np.full(len(close), v)) for v in chart.get("levels", ())]
    marks = [(i, close[i], kind) for i, kind in _markers(np.asarray(chart["held"], dtype=np.float64))]
    title = f"{chart['symbol']}: {chart['strategy']} {chart['combo']}: {chart['action']}"
    svg = line_chart(title, labels, [("close", close), *over], markers=marks)
    if under:
        svg += line_chart(title + " (indicators)", labels, under)
    record = chart.get("record")
    note = f"; record {record:.2f}" if record is not None and np.isfinite(record) else ""
    side = {1: "long", -1: "short"}.get(chart["position"], "flat")
    return (f"<h3>{escape(chart['symbol'])}: {escape(chart['action'])} ({escape(side)} next bar), "
            f"{escape(chart['strategy'])} "
            f"{escape(chart['combo'])}{escape(note)}</h3>{svg}")


def _chart_frame(charts: list) -> pd.DataFrame:
    """The page's charts (not written to a file): their keys and SVG."""
    return pd.DataFrame({"symbol": [c["symbol"] for c in charts], "strategy": [c["strategy"] for c in charts],
                         "combo": [c["combo"] for c in charts], "action": [c["action"] for c in charts],
                         "position": [c["position"] for c in charts], "svg": [_chart_svg(c) for c in charts]})


def _section_signals(m: dict, tables, files) -> str | None:
    sec, signals = m.get("signals"), tables.get("signals.parquet")
    if not sec or signals is None:
        return None
    acts = sec["actions"]
    after = f"the bar after {sec['last_timestamp']}" if sec["last_timestamp"] else "no symbol"
    out = [f"<h2>Signals for {escape(after)}</h2>",
           f'<p class="note">{_counted(acts)}; position is what the backtest engine holds after the next bar\'s '
           f"fill. Ranked by each parameter "
           f"set's record on the symbol: the mean out-of-sample Sharpe of the report's walk-forward where it chose "
           f"the set, else its whole-period Sharpe (a fixed set's: its backtest over this input, in sample). Every "
           f"symbol in "
           f'<a href="signals.parquet">signals.parquet</a>.</p>']
    if sec.get("report"):
        r = sec["report"]
        out.append(f'<p class="note">From backtest report {escape(r["path"])} (run {escape(r["run_id"])}): the top '
                   f'{escape(r["top"])} combinations of {escape(r["strategy"])}.</p>')
    if sec.get("skipped"):
        out.append(f'<p class="note">No signal for {len(sec["skipped"])} symbol(s) (see manifest.json).</p>')
    today = signals[signals["timestamp"] == signals["timestamp"].max()]
    moves = rank_actions(today)
    if len(moves):
        out.append(html_table(_moves_view(moves), max_rows=50))
    else:
        out.append('<p class="note">No entries or exits today.</p>')
    charts = tables.get("signal_charts")
    if charts is not None and len(charts):
        out.append(f"<h3>The top {len(charts)} entries and exits, last bars</h3>")
        out.append('<div style="display:flex;flex-wrap:wrap;gap:0 12px">')
        out += [f'<div class="card">{svg}</div>' for svg in charts["svg"]]  # built escaped (report.svg, escape)
        out.append("</div>")
    return "".join(out)


def _section_breadth(m: dict, tables, files) -> str | None:
    breadth = tables.get("breadth.parquet")
    if breadth is None or not len(breadth):
        return None
    bars = int((m.get("breadth") or {}).get("page_bars", 504))
    b = breadth.tail(bars)
    labels = [str(pd.Timestamp(t).date()) for t in b["timestamp"]]
    share = lambda k: b[f"share_{k}"].to_numpy(dtype=np.float64)  # noqa: E731
    return "".join([
        f"<h2>Market breadth (last {len(b):,} bars)</h2>",
        '<p class="note">Share of symbols above their 50- and 200-bar averages; the RSI(14) distribution; '
        'symbols closing at a 252-bar high or low. Counts per bar in <a href="breadth.parquet">breadth.parquet</a>.'
        "</p>",
        '<div class="card">',
        line_chart("share above their averages", labels,
                   [("above 50-bar average", share("above_sma50")), ("above 200-bar average", share("above_sma200"))],
                   pct=True, lo=0.0, hi=1.0),
        stacked_chart("RSI(14) distribution", labels,
                      [("RSI < 30", share("rsi_lt30")), ("30-50", share("rsi_30_50")), ("50-70", share("rsi_50_70")),
                       (">= 70", share("rsi_ge70"))]),
        line_chart("closing at a 252-bar high / low", labels,
                   [("252-bar highs", share("new_high")), ("252-bar lows", share("new_low"))], pct=True, lo=0.0),
        "</div>"])


def _section_indicators(m: dict, tables, files) -> str | None:
    snap = latest_indicators(tables)
    if snap is None:
        return None
    where = m.get("output", {}).get("path", "indicators.parquet")
    out = [f"<h2>Indicator snapshot: latest values ({len(snap):,} symbols)</h2>",
           html_table(snap, max_rows=100),
           f'<p class="note">Every symbol\'s whole history: <a href="{escape(where)}">{escape(where)}</a>.</p>']
    short = m.get("short_history") or {}
    if short:
        out.append(f"<h3>Short histories ({len(short)} symbols with fewer bars than the longest lookback + 1)</h3>")
        out.append(html_table(pd.DataFrame({"symbol": list(short), "bars": list(short.values())})))
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
    sig = manifest.get("signals")
    if sig:
        a = sig["actions"]
        skipped = f"; {len(sig['skipped'])} symbol(s) without one (manifest signals.skipped)" if sig["skipped"] else ""
        lines.append(f"signals: {a['enter']} enter, {a['exit']} exit, {a['hold']} hold, {a['flat']} flat "
                     f"(signals.parquet){skipped}")
    inc = manifest.get("incremental")
    if inc:
        lines.append(f"store: {inc['store']}: {len(inc['appended'])} symbol(s) appended, {len(inc['recomputed'])} "
                     f"recomputed, {inc['bars_computed']:,} bars computed; {inc['store_rows']:,} rows stored")
    return lines


def headline(manifest: dict, tables) -> tuple[str, pd.DataFrame] | None:
    snap = latest_indicators(tables)
    return None if snap is None else ("Latest indicator values", snap)


def artifacts(manifest: dict, out_dir) -> list[tuple[str, str, pd.DataFrame]]:
    """Extra Prefect table artifacts: ``signals``, today's entries and exits, best record first."""
    if not manifest.get("signals"):
        return []
    cols = ["timestamp", "symbol", "strategy", "combo", "position", "action", "since", "oos_windows", "oos_sharpe",
            "bt_sharpe", "bt_trades", "record_source"]
    signals = pd.read_parquet(Path(out_dir) / "signals.parquet", columns=cols,
                              filters=[("action", "in", ["enter", "exit"])])
    moves = rank_actions(signals[signals["timestamp"] == signals["timestamp"].max()]) if len(signals) else signals
    return [("signals", f"today's entries and exits ({len(moves)})", _moves_view(moves) if len(moves) else moves)]


REPORT = ReportSpec("daily", (_section_signals, _section_breadth, _section_indicators), cli_lines, headline,
                    main_table="indicators.parquet", artifacts=artifacts)
