"""The portfolio pipeline's report: ``summary.md``, the manifest, the report stage, and its part of
``summary.html``, the CLI and the Prefect artifacts (:data:`REPORT`).

A field of the portfolio report is added here alone: the manifest (:func:`report_stage`), the
summary (:func:`_summary_md`), the page (the ``_section_*`` functions), the CLI (:func:`cli_lines`).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from alphapulse.pipelines.data.load import LoadedBars
from alphapulse.pipelines.portfolio.walk_forward import WALK_FORWARD_TABLES, WalkForwardTables
from alphapulse.pipelines.portfolio.walk_forward import summary_lines as wf_summary_lines
from alphapulse.pipelines.report.manifest import check_manifest
from alphapulse.pipelines.report.markup import (escape, fmt_value, html_table, img_tag, kv_list, new_figure, png_bytes,
                                                set_margins)
from alphapulse.pipelines.report.sections import MAX_HEATMAP_LABELS
from alphapulse.pipelines.report.spec import ReportSpec
from alphapulse.pipelines.report.views import correlation_matrix, run_lines
from alphapulse.pipelines.report.write import markdown_table, rejected_note, write_report
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.cost import stage_table_lines
from alphapulse.pipelines.runtime.stages import TaskRecord, run_record, run_sections

if TYPE_CHECKING:
    from alphapulse.pipelines.portfolio.pipeline import Optimised, PortfolioRequest, Returns


@dataclass
class PortfolioResult:
    out_dir: Path
    manifest: dict
    tables: dict = field(repr=False)


def _summary_md(manifest: dict, t: dict) -> str:
    inp, be, win = manifest["input"], manifest["backend"], manifest["window"]
    lines = [
        "# AlphaPulse portfolio report", "",
        f"- run `{manifest['run_id']}` at {manifest['created_at']}",
        f"- backend: **{be['name']}** ({be['reason']}), dtype {be['dtype']}",
        f"- input: `{inp['path']}`: {inp['rows_accepted']:,} rows accepted, {inp['rows_rejected']:,} rejected"
        f"{rejected_note(inp)}; "
        f"{inp['symbols']} symbols",
        f"- window: {win['start']} .. {win['end']}, {win['rows']} complete rows, {win['qualified']} symbols; "
        f"covariance `{manifest['covariance']}`",
        "- effective holdings (1 / sum of squared weights): "
        + ", ".join(f"{m} {n:g}" for m, n in manifest["effective_holdings"].items()),
    ]
    ex = t["excluded.parquet"]
    if len(ex):
        lines += ["", f"## Excluded symbols ({len(ex)})", "", markdown_table(ex)]
    lines += ["", "## Top holdings per method", ""]
    w = t["weights.parquet"]
    top = (w.sort_values(["method", "weight"], ascending=[True, False]).groupby("method", sort=False).head(5)
           .assign(h=lambda d: d["symbol"] + " " + (100 * d["weight"]).map("{:.1f}%".format))
           .groupby("method", sort=True)["h"].agg(", ".join).reset_index())
    lines += [markdown_table(top.rename(columns={"h": "top 5"}))]
    lines += ["", "## Fallback chains", "", markdown_table(t["fallbacks.parquet"])]
    for note in manifest["notes"]:
        lines.append(f"- {note}")
    lines += ["", "## Value at risk of the ensemble (losses, fraction of value)", "", markdown_table(t["risk.parquet"])]
    cs = t["correlation_summary.parquet"]
    if len(cs):
        lines += ["", "## Correlation (last 6 month ends)", "", markdown_table(cs.tail(6).astype({"date": str}))]
    lines += ["", "## Regimes (0 = calmest)", "", markdown_table(t["regime_centres.parquet"])]
    runs = t["regime_runs.parquet"]
    dur = runs.groupby("regime")["bars"].agg(runs="count", mean_bars="mean", max_bars="max", total_bars="sum")
    lines += ["", "Durations (runs of consecutive bars):", "",
              markdown_table(dur.reset_index().astype({"mean_bars": float}))]
    if "walk_forward" in manifest:
        lines += wf_summary_lines(WalkForwardTables({k: t[k] for k in WALK_FORWARD_TABLES}, manifest["walk_forward"]))
    lines += stage_table_lines(manifest)
    return "\n".join(lines) + "\n"


def report_stage(request: PortfolioRequest, backend: Backend, loaded: LoadedBars, rets: Returns, cov: np.ndarray,
                 opt: Optimised, corr: tuple, regimes: tuple, risk: pd.DataFrame, stages: dict, *,
                 run_id: str | None = None, records: tuple[TaskRecord, ...] = ()) -> PortfolioResult:
    config = request.config
    symbols = rets.qualified
    n = len(symbols)
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    sym = np.asarray(symbols, dtype=object)
    cov_frame = pd.DataFrame({"symbol_i": sym[ii.ravel()], "symbol_j": sym[jj.ravel()], "cov": cov.ravel()})
    feats, reg = regimes
    reg_frame = feats.loc[reg.labels.index].assign(regime=reg.labels).reset_index()
    reg_frame = reg_frame[["date", "regime", *feats.columns]]
    tables = {
        "covariance.parquet": cov_frame,
        "weights.parquet": opt.weights,
        "fallbacks.parquet": opt.chains,
        "correlation.parquet": corr[0],
        "correlation_summary.parquet": corr[1],
        "regimes.parquet": reg_frame,
        "regime_centres.parquet": reg.centres.reset_index(),
        "regime_runs.parquet": reg.runs,
        "risk.parquet": risk,
        "excluded.parquet": rets.excluded_frame(),
    }
    if len(loaded.rejected):
        tables["rejected.parquet"] = loaded.rejected
    if opt.walk_forward is not None:
        tables.update(opt.walk_forward.tables)
    w = rets.window
    manifest = {
        **run_record("portfolio", backend=backend, config=config, data_path=request.data_path, loaded=loaded,
                     run_id=run_id),
        "covariance": config.portfolio.covariance,
        "window": {"start": str(rets.timestamps[w.rows[0]].date()), "end": str(rets.timestamps[w.rows[-1]].date()),
                   "rows": int(len(w.rows)), "qualified": n, "n_gap_rows_dropped": int(w.n_gap_rows_dropped)},
        "excluded": {e.symbol: {"reason": e.reason, "detail": e.detail} for e in w.excluded},
        "fallbacks": {m: list(g["tried"]) for m, g in opt.chains.groupby("method", sort=False)},
        # 1 / sum(w^2): the number of equal holdings with the same concentration (n for equal weight)
        "effective_holdings": {m: round(float(1.0 / (g["weight"] ** 2).sum()), 2)
                               for m, g in opt.weights.groupby("method", sort=False)},
        "regimes": {"n_dates": int(len(reg.labels)), "n_dropped_warmup": reg.n_dropped,
                    "centres": reg.centres.reset_index().to_dict(orient="records")},
        "notes": opt.notes,
        "stages": dict(stages),
    }
    if opt.walk_forward is not None:
        manifest["walk_forward"] = opt.walk_forward.manifest
    manifest.update(run_sections(config, manifest["stages"], records=records))  # cost per run
    check_manifest(manifest)  # its declared shape, before anything is written
    out = write_report(request.out_dir, tables=tables, manifest=manifest, summary=_summary_md(manifest, tables))
    return PortfolioResult(out, manifest, tables)


def _section_weights(m: dict, tables, files) -> str | None:
    w = tables.get("weights.parquet")
    if w is None or w.empty:
        return None
    if "date" in w:
        w = w[w["date"] == w["date"].max()]
    wide = w.pivot_table(index="method", columns="symbol", values="weight", aggfunc="last")
    n_sym = wide.shape[1]
    fig = new_figure(13, 0.9 + 0.32 * len(wide))
    ax = fig.add_subplot()
    im = ax.imshow(wide.to_numpy(dtype=float), cmap="Blues", vmin=0, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(wide)), [str(x) for x in wide.index], fontsize=8)
    if n_sym <= MAX_HEATMAP_LABELS:
        ax.set_xticks(range(n_sym), [str(x) for x in wide.columns], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_title("portfolio weights (methods x symbols)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    set_margins(fig, left=1.3, bottom=0.65, top=0.3, right=0.3)
    top = (w.sort_values(["method", "weight"], ascending=[True, False]).groupby("method", sort=True).head(5)
           .assign(h=lambda d: d["symbol"].astype(str) + " " + (100 * d["weight"]).map("{:.1f}%".format))
           .groupby("method", sort=True)["h"].agg(", ".join).reset_index().rename(columns={"h": "top 5"}))
    out = ["<h2>Weights</h2>", img_tag(png_bytes(fig), "weights heatmap"), "<h3>Top holdings per method</h3>",
           html_table(top)]
    eff = m.get("effective_holdings") or {}
    if eff:
        out.append('<p class="note">effective holdings (1 / sum of squared weights): '
                   + escape(", ".join(f"{k} {v:g}" for k, v in eff.items())) + "</p>")
    fb = tables.get("fallbacks.parquet")
    if fb is not None and len(fb):
        out.append("<h3>Fallback chains</h3>" + html_table(fb))
    for note in m.get("notes") or []:
        out.append(f'<p class="note">{escape(note)}</p>')
    risk = tables.get("risk.parquet")
    if risk is not None and len(risk):
        out.append("<h3>Value at risk (losses, fraction of value)</h3>" + html_table(risk))
    ex = tables.get("excluded.parquet")
    if ex is not None and len(ex):
        out.append(f"<h3>Excluded symbols ({len(ex)})</h3>" + html_table(ex))
    return "".join(out)


def _weights_over_time(weights: pd.DataFrame, method: str, top: int) -> pd.DataFrame:
    """Dates x (the ``top`` symbols by mean weight, then "other"): a method's target weights,
    readable at 500 symbols."""
    w = weights[weights["method"] == method].pivot_table(index="date", columns="symbol", values="weight",
                                                         aggfunc="last", fill_value=0.0)
    if w.shape[1] <= top:
        return w
    keep = w.mean().sort_values(ascending=False, kind="stable").index[:top]
    out = w[keep].copy()
    out["other"] = w.drop(columns=keep).sum(axis=1)
    return out


def _section_walk_forward(m: dict, tables, files) -> str | None:
    metrics, rets = tables.get("wf_metrics.parquet"), tables.get("wf_returns.parquet")
    if metrics is None or rets is None or metrics.empty:
        return None
    wf = m.get("walk_forward") or {}
    best = str(wf.get("best_method", ""))
    facts = [("estimation", f"trailing {wf.get('train_bars')} returns"), ("rebalance", wf.get("rebalance")),
             ("holdings", wf.get("holdings")), ("costs", f"{wf.get('cost_bps', 0):g} bps of the value traded"),
             ("first rebalance", wf.get("first_rebalance")), ("best Sharpe", best)]
    out = ["<h2>Walk-forward: out of sample, after costs</h2>", f'<div class="card">{kv_list(facts)}</div>']
    wide = rets.pivot_table(index="timestamp", columns="method", values="return", aggfunc="last", sort=False)
    wide = wide[[c for c in metrics["method"] if c in wide.columns]]
    equity = (1.0 + wide.fillna(0.0)).cumprod()
    drawdown = equity / equity.cummax() - 1.0
    turn = rets[rets["turnover"] > 0]
    fig = new_figure(13, 8.4)
    axes = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1.6, 1.4]})
    x = pd.to_datetime(equity.index).to_numpy()
    for name in equity.columns:
        bench = name in ("equal_weight", "buy_and_hold")
        style = dict(lw=1.8 if name == best else 0.9, ls="--" if bench else "-", label=str(name))
        axes[0].plot(x, equity[name].to_numpy(dtype=float), **style)
        axes[1].plot(x, drawdown[name].to_numpy(dtype=float), **style)
        g = turn[turn["method"] == name]
        axes[2].plot(pd.to_datetime(g["timestamp"]).to_numpy(), g["turnover"].to_numpy(dtype=float), marker=".",
                     ms=3, lw=0.6, ls="--" if bench else "-")
    axes[0].set_title("equity (1 at the first rebalance)", fontsize=10)
    axes[1].set_title("drawdown", fontsize=10)
    axes[2].set_title("turnover per rebalance (value traded / value)", fontsize=10)
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", ncol=3)
    set_margins(fig, left=0.7, bottom=0.4, top=0.3, hspace=0.35)
    out.append(img_tag(png_bytes(fig), "walk-forward equity, drawdown and turnover"))
    weights = tables.get("rebalance_weights.parquet")
    if weights is not None and len(weights) and best:
        top = int(wf.get("top_holdings") or 10)
        area = _weights_over_time(weights, best, top)
        if len(area):
            fig = new_figure(13, 4.0)
            ax = fig.add_subplot()
            dates = pd.to_datetime(area.index).to_numpy()
            ax.stackplot(dates, area.to_numpy(dtype=float).T, labels=[str(c) for c in area.columns], step="post")
            ax.set_ylim(0, max(1.0, float(area.sum(axis=1).max())))
            ax.set_title(f"target weights of {best} at each rebalance (top {top}, the rest as other)", fontsize=10)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            set_margins(fig, left=0.6, bottom=0.4, right=1.6)
            out.append(img_tag(png_bytes(fig), f"weights of {best} over time"))
    out.append("<h3>Out-of-sample metrics (wf_metrics.parquet)</h3>"
               + html_table(metrics.sort_values("sharpe", ascending=False)))
    fb = tables.get("wf_fallbacks.parquet")
    if fb is not None and len(fb):
        failed = fb[fb["status"] == "failed"]
        if len(failed):
            out.append(f"<h3>Fallbacks ({len(failed)} failed attempts)</h3>"
                       + html_table(failed, max_rows=20, note="all in wf_fallbacks.parquet"))
    return "".join(out)


def _section_correlation(m: dict, tables, files) -> str | None:
    corr = tables.get("correlation.parquet")
    summ = tables.get("correlation_summary.parquet")
    if corr is None or corr.empty:
        return None
    last_date = corr["date"].max()
    symbols, mat = correlation_matrix(corr[corr["date"] == last_date])
    n = len(symbols)
    with_summary = summ is not None and len(summ) > 1
    fig = new_figure(13 if with_summary else 8, 6.3)
    ax = fig.add_subplot(1, 2, 1) if with_summary else fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    if n <= MAX_HEATMAP_LABELS:
        size = 7 if n <= 50 else 5
        ax.set_xticks(range(n), symbols, rotation=90, fontsize=size)
        ax.set_yticks(range(n), symbols, fontsize=size)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"correlation of returns at {fmt_value(last_date)} ({n} symbols)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.8)
    if with_summary:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.plot(summ["date"], summ["average_correlation"], label="average pairwise correlation", color="#4c78a8")
        if "absorption_ratio" in summ:
            ax2.plot(summ["date"], summ["absorption_ratio"], label="absorption ratio", color="#e45756")
        ax2.set_title("month ends", fontsize=10)
        ax2.legend(fontsize=8, loc="upper left")
        ax2.grid(alpha=0.3)
        ax2.tick_params(axis="x", labelrotation=30, labelsize=8)
    set_margins(fig, left=0.6, bottom=0.75, wspace=0.2)
    return f"<h2>Correlation</h2>{img_tag(png_bytes(fig), 'correlation heatmap')}"


_REGIME_COLOURS = ("#54a24b", "#eeca3b", "#e45756", "#b279a2", "#4c78a8", "#9d755d", "#bab0ac")


def _section_regimes(m: dict, tables, files) -> str | None:
    reg = tables.get("regimes.parquet")
    if reg is None or reg.empty:
        return None
    reg = reg.sort_values("date")
    dates = pd.to_datetime(reg["date"]).to_numpy()
    labels = reg["regime"].to_numpy()
    fig = new_figure(13, 4.2)
    ax = fig.add_subplot(2, 1, 1)
    if "index_return" in reg:
        level = np.cumprod(1.0 + np.nan_to_num(reg["index_return"].to_numpy(dtype=float)))
        ax.plot(dates, level, color="#1d232b", lw=1)
        ax.set_ylabel("index (growth of 1)", fontsize=8)
    for k in np.unique(labels):
        ax.fill_between(dates, 0, 1, where=labels == k, step="post", transform=ax.get_xaxis_transform(),
                        color=_REGIME_COLOURS[int(k) % len(_REGIME_COLOURS)], alpha=0.35, lw=0,
                        label=f"regime {k}" + (" (calmest)" if k == labels.min() else ""))
    ax.legend(fontsize=8, loc="upper left", ncol=len(np.unique(labels)))
    ax.set_title("market regimes (shaded) and the equal-weight index", fontsize=10)
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax)
    if "volatility" in reg:
        ax2.plot(dates, reg["volatility"].to_numpy(dtype=float), color="#4c78a8", lw=1, label="volatility")
    if "avg_correlation" in reg:
        ax2.plot(dates, reg["avg_correlation"].to_numpy(dtype=float), color="#e45756", lw=1,
                 label="average correlation")
    ax2.legend(fontsize=8, loc="upper left")
    ax2.grid(alpha=0.3)
    set_margins(fig, left=0.7, bottom=0.4, hspace=0.12)
    out = [f"<h2>Regimes ({len(reg):,} dates)</h2>", img_tag(png_bytes(fig), "regime timeline")]
    if "regime_centres.parquet" in tables:
        out.append("<h3>Regime centres (feature units; 0 = calmest)</h3>"
                   + html_table(tables["regime_centres.parquet"]))
    runs = tables.get("regime_runs.parquet")
    if runs is not None and len(runs):
        dur = runs.groupby("regime")["bars"].agg(runs="count", mean_bars="mean", max_bars="max", total_bars="sum")
        out.append("<h3>Durations (runs of consecutive bars)</h3>" + html_table(dur.reset_index()))
    return "".join(out)


def cli_lines(manifest: dict, out_dir) -> list[str]:
    """The CLI's lines for this report (the stage times follow them)."""
    inp, win = manifest["input"], manifest["window"]
    lines = run_lines(manifest, out_dir, rows_extra=f"; {inp['symbols']} symbols")
    lines.append(f"window: {win['start']} .. {win['end']} ({win['rows']} rows), {win['qualified']} symbols qualify; "
                 f"excluded: {', '.join(manifest['excluded']) or 'none'}")
    fell = {m: chain for m, chain in manifest["fallbacks"].items() if len(chain) > 1}
    lines.append("fallbacks: " + ("; ".join(f"{m}: {' -> '.join(c)}" for m, c in fell.items()) or "none"))
    lines.append("effective holdings: " + ", ".join(f"{m} {n:g}" for m, n in manifest["effective_holdings"].items()))
    wf = manifest.get("walk_forward")
    if wf:
        dates = max((wf.get("rebalances") or {"": 0}).values())
        lines.append(f"walk-forward: {dates} rebalance dates from {wf.get('first_rebalance')} ({wf.get('rebalance')}, "
                     f"{wf.get('holdings')} holdings, {wf.get('cost_bps', 0):g} bps); best out of sample: "
                     f"{wf.get('best_method')} (wf_metrics.parquet)")
    return lines


def headline(manifest: dict, tables) -> tuple[str, pd.DataFrame] | None:
    w = tables.get("weights.parquet")
    if w is None:
        return None
    wide = w.pivot_table(index="symbol", columns="method", values="weight", aggfunc="last")
    order = "ensemble" if "ensemble" in wide.columns else wide.columns[0]
    return "Weights per method", wide.sort_values(order, ascending=False).reset_index()


REPORT = ReportSpec("portfolio", (_section_weights, _section_walk_forward, _section_correlation, _section_regimes),
                    cli_lines, headline, main_table="weights.parquet")
