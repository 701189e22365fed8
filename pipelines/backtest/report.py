"""The backtest's report: the Sharpe heatmap, ``summary.md``, the manifest and the report stage.

Implements :func:`heatmap_png` (``sharpe_heatmap.png``), :func:`report_tables` (the tables of
:mod:`alphapulse.pipelines.backtest.frames` and the best combination's equity per symbol),
:func:`report_stage` (those, the manifest and the summary, written atomically) and its
:class:`BacktestResult`.
"""
from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.backtest.block import engine_params, symbol_equity
from alphapulse.pipelines.backtest.compute import ComputeResult
from alphapulse.pipelines.backtest.frames import equity_frame, metrics_frame, summary_frame, walk_forward_frame
from alphapulse.pipelines.backtest.panel import PreparedPanel
from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.backtest.sweep import ranked_combinations
from alphapulse.pipelines.data.load import LoadedBars
from alphapulse.pipelines.report.manifest import check_manifest
from alphapulse.pipelines.report.markup import (escape, fmt_value, html_table, img_tag, kv_list, new_figure, png_bytes,
                                                set_margins)
from alphapulse.pipelines.report.spec import ReportSpec
from alphapulse.pipelines.report.views import run_lines, top_combinations
from alphapulse.pipelines.report.write import format_value, markdown_table, rejected_note, write_report
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.cost import stage_table_lines
from alphapulse.pipelines.runtime.stages import StageTimer, run_record, run_sections
from alphapulse.transforms.backtest.returns_metrics import RETURN_METRICS


@dataclass
class BacktestResult:
    """The report folder, its manifest, and the summary and metrics tables as written."""

    out_dir: Path
    manifest: dict
    summary: pd.DataFrame = field(repr=False)
    metrics: pd.DataFrame = field(repr=False)


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
        + (" (" + ", ".join(f"{k}: {v}" for k, v in grid["skipped_by_reason"].items()) + ")"
           if grid["skipped"] else ""),
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


def report_tables(request: BacktestRequest, backend: Backend, prepared: PreparedPanel,
                  computed: ComputeResult) -> dict[str, pd.DataFrame]:
    """The report's tables by file name: ``backtest_metrics.parquet``, ``backtest_summary.parquet``,
    ``equity.parquet``, ``best_equity_by_symbol.parquet`` (when ``top_n`` > 0) and
    ``walk_forward.parquet`` (when configured); the front door returns the same frames."""
    sweep, wf = computed.sweep, computed.walk_forward
    summary = summary_frame(request, sweep)
    tables = {"backtest_metrics.parquet": metrics_frame(request, prepared, sweep),
              "backtest_summary.parquet": summary, "equity.parquet": equity_frame(request, prepared, sweep)}
    if request.config.backtest.top_n > 0 and len(summary):
        best = int(ranked_combinations(sweep)[0])
        tables["best_equity_by_symbol.parquet"] = symbol_equity(prepared, request, backend, best).assign(combo_id=best)
    if wf is not None:
        tables["walk_forward.parquet"] = walk_forward_frame(request, prepared, wf)
    return tables


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
        tables = report_tables(request, backend, prepared, computed)
        summary, metrics = tables["backtest_summary.parquet"], tables["backtest_metrics.parquet"]
        wf_frame = tables.get("walk_forward.parquet")
        if len(loaded.rejected):
            tables["rejected.parquet"] = loaded.rejected
        png = heatmap_png(request, summary)
    reasons = Counter(why for _, why in request.plan.skipped)
    execution = engine_params(config)
    manifest = run_record("backtest", backend=backend, config=config, data_path=request.data_path, loaded=loaded,
                          run_id=run_id)
    manifest["input"]["timestamps"] = prepared.shape[0]
    manifest.update({
        "strategy": request.strategy.name,
        "strategy_ref": request.strategy_ref,
        "grid": {"source": request.grid_source, "parameters": request.grid, "size": request.grid_size,
                 "sampled": bt.random_sample if bt.random_sample and bt.random_sample < request.grid_size else None,
                 "seed": bt.seed, "combinations_run": len(request.plan.combos),
                 "skipped": len(request.plan.skipped), "skipped_by_reason": dict(reasons),
                 "skipped_examples": [dict(c, reason=why) for c, why in request.plan.skipped[:50]]},
        "execution": {**execution, "periods_per_year": bt.periods_per_year, "definitions": bt.definitions},
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
    check_manifest(manifest)  # its declared shape, before anything is written
    out = write_report(request.out_dir, tables=tables, manifest=manifest,
                       summary=_summary_md(manifest, summary, wf_frame, list(request.strategy.params)),
                       files={"sharpe_heatmap.png": png} if png else None)
    return BacktestResult(out, manifest, summary, metrics)


_EQUITY_FIXED = {"timestamp", "rank", "combo_id", "portfolio_return", "portfolio_equity", "symbols", "strategy"}


def _section_backtest(m: dict, tables, files) -> str | None:
    summary = tables.get("backtest_summary.parquet")
    equity = tables.get("equity.parquet")
    heat = (files or {}).get("sharpe_heatmap.png")
    if summary is None and equity is None and heat is None:
        return None
    grid = m.get("grid") or {}
    params = list(grid.get("parameters") or {})
    out = [f"<h2>Backtest: {escape(m.get('strategy', ''))}</h2>"]
    facts = [("combinations", f"{grid['size']:,} in the grid, {grid.get('combinations_run', 0):,} run, "
                              f"{grid.get('skipped', 0):,} skipped as invalid" if "size" in grid else None),
             ("execution", m.get("execution_summary"))]
    out.append(f'<div class="card">{kv_list(facts)}</div>')
    if heat:
        out.append(img_tag(bytes(heat), "Sharpe heatmap"))
    if equity is not None and len(equity):
        fig = new_figure(13, 4.2)
        ax = fig.add_subplot()
        extra = [c for c in equity.columns if c not in _EQUITY_FIXED]
        for rank, g in equity.groupby("rank", sort=True):
            first = g.iloc[0]
            label = f"#{rank}: " + (", ".join(f"{c}={fmt_value(first[c])}" for c in extra)
                                    or f"combo {first['combo_id']}")
            ax.plot(pd.to_datetime(g["timestamp"]).to_numpy(), g["portfolio_equity"].to_numpy(dtype=float),
                    lw=1.6 if rank == 1 else 0.9, label=label, zorder=3 if rank == 1 else 2)
        ax.set_title("equal-weight portfolio equity of the best combinations", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        set_margins(fig, left=0.6, bottom=0.4)
        out.append(img_tag(png_bytes(fig), "equity curves"))
    if summary is not None and len(summary):
        out.append("<h3>Top combinations by equal-weight portfolio Sharpe</h3>"
                   + html_table(top_combinations(summary, params)))
    wf = tables.get("walk_forward.parquet")
    if wf is not None and len(wf):
        out.append("<h3>Walk-forward</h3>" + html_table(wf, max_rows=20, note="all windows in walk_forward.parquet"))
    return "".join(out)


def cli_lines(manifest: dict, out_dir) -> list[str]:
    """The CLI's lines for this report (the stage times follow them)."""
    summary = pd.read_parquet(f"{out_dir}/backtest_summary.parquet")
    inp, grid = manifest["input"], manifest["grid"]
    lines = run_lines(manifest, out_dir, backend_extra=f"; cluster: {manifest['cluster']['kind']}",
                      rows_extra=f"; {inp['symbols']} symbols x {inp['timestamps']} timestamps")
    lines.append(f"strategy: {manifest['strategy']}; combinations: {grid['size']:,} in the grid, "
                 f"{grid['combinations_run']:,} run, {grid['skipped']:,} skipped as invalid")
    if summary is not None and len(summary):
        best = summary.sort_values("rank").iloc[0]
        params = ", ".join(f"{k}={best[k]}" for k in manifest["grid"]["parameters"]) or "defaults"
        lines.append(f"best by portfolio Sharpe: {params}: Sharpe {best['portfolio_sharpe']:.3f}, "
                     f"CAGR {best['portfolio_cagr']:.2%}, max drawdown {best['portfolio_max_drawdown']:.2%}")
    return lines


def headline(manifest: dict, tables) -> tuple[str, pd.DataFrame] | None:
    summary = tables.get("backtest_summary.parquet")
    if summary is None:
        return None
    return "Top combinations by portfolio Sharpe", top_combinations(summary, list(manifest["grid"]["parameters"]))


REPORT = ReportSpec("backtest", (_section_backtest,), cli_lines, headline, main_table="backtest_summary.parquet")
