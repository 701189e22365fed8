"""The sections of ``summary.html``, one function each, in page order (:data:`SECTIONS`).

Each section takes ``(manifest, tables, files)`` and returns HTML, or None when the run has
nothing for it: alerts, run, indicators, backtest, models, weights, portfolio walk-forward,
correlation, regimes,
utilisation, stage timings and cost, routing, rejected rows, files. Every value from data or the
manifest is escaped. :data:`MAX_HEATMAP_LABELS` bounds the symbols a heatmap's axes name.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from alphapulse.pipelines.report.markup import (_bytes, _e, _figure, _fmt, _img, _kv, _margins, _png,
                                                _records_table, _table)
from alphapulse.pipelines.report.views import (_snapshot, correlation_matrix, model_scores, stage_rows,
                                               top_combinations)

MAX_HEATMAP_LABELS = 80  # above this many symbols the heatmap's axes carry no symbol names


def _when(v) -> str:
    """A manifest timestamp without a midnight time ("2018-02-07"), else as written."""
    try:
        return _fmt(pd.Timestamp(v))
    except (ValueError, TypeError):
        return str(v)


def _section_run(m: dict, tables, files) -> str:
    be, inp = m.get("backend") or {}, m.get("input") or {}
    name = str(be.get("name", "?"))
    pairs = [
        ("pipeline", m.get("pipeline")), ("run id", m.get("run_id")), ("created", m.get("created_at")),
        ("backend", None), ("why", be.get("reason")), ("dtype", be.get("dtype")),
        ("device", " ".join(str(x) for x in (be.get("device"), be.get("device_name")) if x is not None)),
        ("cluster", (m.get("cluster") or {}).get("kind") if isinstance(m.get("cluster"), dict) else m.get("cluster")),
        ("input", inp.get("path")),
        ("rows", f"{inp['rows_read']:,} read, {inp['rows_accepted']:,} accepted, {inp['rows_rejected']:,} rejected"
         if {"rows_read", "rows_accepted", "rows_rejected"} <= inp.keys() else None),
        ("symbols", inp.get("symbols")),
        ("period", f"{_when(inp['first_timestamp'])} .. {_when(inp['last_timestamp'])}"
         if "first_timestamp" in inp and "last_timestamp" in inp else None),
        ("config hash", m.get("config_hash")),
    ]
    kv = _kv([p for p in pairs if p[0] != "backend"])
    pill = f'<span class="pill {_e(name.lower())}">{_e(name)}</span>'
    return f'<div class="card"><p style="margin:0 0 8px">backend {pill}</p>{kv}</div>'


def _section_alerts(m: dict, tables, files) -> str | None:
    alerts = m.get("alerts") or []
    if not alerts:
        return None
    return (f'<div class="alert"><b>{len(alerts)} alert(s)</b> during this run</div>'
            + _records_table(alerts))


def _section_rejected(m: dict, tables, files) -> str | None:
    inp = m.get("input") or {}
    by = inp.get("rejected_by_reason") or {}
    if not inp.get("rows_rejected") and not by:
        return None
    n = int(inp.get("rows_rejected") or sum(by.values()))
    out = [f"<h2>Rejected rows ({n:,})</h2>"]
    if by:
        out.append(_table(pd.DataFrame({"reason": list(by), "rows": list(by.values())})))
    if "rejected.parquet" in tables:
        out.append("<h3>First rejected rows (rejected.parquet)</h3>" + _table(tables["rejected.parquet"], max_rows=10))
    return "".join(out)


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


def _section_correlation(m: dict, tables, files) -> str | None:
    corr = tables.get("correlation.parquet")
    summ = tables.get("correlation_summary.parquet")
    if corr is None or corr.empty:
        return None
    last_date = corr["date"].max()
    symbols, mat = correlation_matrix(corr[corr["date"] == last_date])
    n = len(symbols)
    with_summary = summ is not None and len(summ) > 1
    fig = _figure(13 if with_summary else 8, 6.3)
    ax = fig.add_subplot(1, 2, 1) if with_summary else fig.add_subplot()
    im = ax.imshow(np.ma.masked_invalid(mat), cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    if n <= MAX_HEATMAP_LABELS:
        size = 7 if n <= 50 else 5
        ax.set_xticks(range(n), symbols, rotation=90, fontsize=size)
        ax.set_yticks(range(n), symbols, fontsize=size)
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    ax.set_title(f"correlation of returns at {_fmt(last_date)} ({n} symbols)", fontsize=10)
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
    _margins(fig, left=0.6, bottom=0.75, wspace=0.2)
    return f"<h2>Correlation</h2>{_img(_png(fig), 'correlation heatmap')}"


_REGIME_COLOURS = ("#54a24b", "#eeca3b", "#e45756", "#b279a2", "#4c78a8", "#9d755d", "#bab0ac")


def _section_regimes(m: dict, tables, files) -> str | None:
    reg = tables.get("regimes.parquet")
    if reg is None or reg.empty:
        return None
    reg = reg.sort_values("date")
    dates = pd.to_datetime(reg["date"]).to_numpy()
    labels = reg["regime"].to_numpy()
    fig = _figure(13, 4.2)
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
    _margins(fig, left=0.7, bottom=0.4, hspace=0.12)
    out = [f"<h2>Regimes ({len(reg):,} dates)</h2>", _img(_png(fig), "regime timeline")]
    if "regime_centres.parquet" in tables:
        out.append("<h3>Regime centres (feature units; 0 = calmest)</h3>" + _table(tables["regime_centres.parquet"]))
    runs = tables.get("regime_runs.parquet")
    if runs is not None and len(runs):
        dur = runs.groupby("regime")["bars"].agg(runs="count", mean_bars="mean", max_bars="max", total_bars="sum")
        out.append("<h3>Durations (runs of consecutive bars)</h3>" + _table(dur.reset_index()))
    return "".join(out)


def _section_weights(m: dict, tables, files) -> str | None:
    w = tables.get("weights.parquet")
    if w is None or w.empty:
        return None
    if "date" in w:
        w = w[w["date"] == w["date"].max()]
    wide = w.pivot_table(index="method", columns="symbol", values="weight", aggfunc="last")
    n_sym = wide.shape[1]
    fig = _figure(13, 0.9 + 0.32 * len(wide))
    ax = fig.add_subplot()
    im = ax.imshow(wide.to_numpy(dtype=float), cmap="Blues", vmin=0, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(len(wide)), [str(x) for x in wide.index], fontsize=8)
    if n_sym <= MAX_HEATMAP_LABELS:
        ax.set_xticks(range(n_sym), [str(x) for x in wide.columns], rotation=90, fontsize=7)
    else:
        ax.set_xticks([])
    ax.set_title("portfolio weights (methods x symbols)", fontsize=10)
    fig.colorbar(im, ax=ax, shrink=0.9, pad=0.01)
    _margins(fig, left=1.3, bottom=0.65, top=0.3, right=0.3)
    top = (w.sort_values(["method", "weight"], ascending=[True, False]).groupby("method", sort=True).head(5)
           .assign(h=lambda d: d["symbol"].astype(str) + " " + (100 * d["weight"]).map("{:.1f}%".format))
           .groupby("method", sort=True)["h"].agg(", ".join).reset_index().rename(columns={"h": "top 5"}))
    out = ["<h2>Weights</h2>", _img(_png(fig), "weights heatmap"), "<h3>Top holdings per method</h3>", _table(top)]
    fb = tables.get("fallbacks.parquet")
    if fb is not None and len(fb):
        out.append("<h3>Fallback chains</h3>" + _table(fb))
    for note in m.get("notes") or []:
        out.append(f'<p class="note">{_e(note)}</p>')
    risk = tables.get("risk.parquet")
    if risk is not None and len(risk):
        out.append("<h3>Value at risk (losses, fraction of value)</h3>" + _table(risk))
    ex = tables.get("excluded.parquet")
    if ex is not None and len(ex):
        out.append(f"<h3>Excluded symbols ({len(ex)})</h3>" + _table(ex))
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
    out = ["<h2>Walk-forward: out of sample, after costs</h2>", f'<div class="card">{_kv(facts)}</div>']
    wide = rets.pivot_table(index="timestamp", columns="method", values="return", aggfunc="last", sort=False)
    wide = wide[[c for c in metrics["method"] if c in wide.columns]]
    equity = (1.0 + wide.fillna(0.0)).cumprod()
    drawdown = equity / equity.cummax() - 1.0
    turn = rets[rets["turnover"] > 0]
    fig = _figure(13, 8.4)
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
    _margins(fig, left=0.7, bottom=0.4, top=0.3, hspace=0.35)
    out.append(_img(_png(fig), "walk-forward equity, drawdown and turnover"))
    weights = tables.get("rebalance_weights.parquet")
    if weights is not None and len(weights) and best:
        top = int(wf.get("top_holdings") or 10)
        area = _weights_over_time(weights, best, top)
        if len(area):
            fig = _figure(13, 4.0)
            ax = fig.add_subplot()
            dates = pd.to_datetime(area.index).to_numpy()
            ax.stackplot(dates, area.to_numpy(dtype=float).T, labels=[str(c) for c in area.columns], step="post")
            ax.set_ylim(0, max(1.0, float(area.sum(axis=1).max())))
            ax.set_title(f"target weights of {best} at each rebalance (top {top}, the rest as other)", fontsize=10)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
            _margins(fig, left=0.6, bottom=0.4, right=1.6)
            out.append(_img(_png(fig), f"weights of {best} over time"))
    out.append("<h3>Out-of-sample metrics (wf_metrics.parquet)</h3>"
               + _table(metrics.sort_values("sharpe", ascending=False)))
    fb = tables.get("wf_fallbacks.parquet")
    if fb is not None and len(fb):
        failed = fb[fb["status"] == "failed"]
        if len(failed):
            out.append(f"<h3>Fallbacks ({len(failed)} failed attempts)</h3>"
                       + _table(failed, max_rows=20, note="all in wf_fallbacks.parquet"))
    return "".join(out)


def _section_models(m: dict, tables, files) -> str | None:
    scores = tables.get("model_scores.parquet")
    if scores is None or scores.empty:
        return None
    out = ["<h2>Models: out-of-sample scores</h2>", _table(model_scores(scores))]
    bt = tables.get("backtest.parquet")
    if bt is not None and len(bt):
        out.append("<h3>Signal backtest against buy and hold</h3>" + _table(bt))
    ew = tables.get("ensemble_weights.parquet")
    if ew is not None and len(ew):
        last = ew[ew["step"] == ew["step"].max()] if "step" in ew else ew
        out.append("<h3>Ensemble weights (last step)</h3>" + _table(last))
    return "".join(out)


_EQUITY_FIXED = {"timestamp", "rank", "combo_id", "portfolio_return", "portfolio_equity", "symbols", "strategy"}


def _section_backtest(m: dict, tables, files) -> str | None:
    summary = tables.get("backtest_summary.parquet")
    equity = tables.get("equity.parquet")
    heat = (files or {}).get("sharpe_heatmap.png")
    if summary is None and equity is None and heat is None:
        return None
    grid = m.get("grid") or {}
    params = list(grid.get("parameters") or {})
    out = [f"<h2>Backtest: {_e(m.get('strategy', ''))}</h2>"]
    facts = [("combinations", f"{grid['size']:,} in the grid, {grid.get('combinations_run', 0):,} run, "
                              f"{grid.get('skipped', 0):,} skipped as invalid" if "size" in grid else None),
             ("execution", m.get("execution_summary"))]
    out.append(f'<div class="card">{_kv(facts)}</div>')
    if heat:
        out.append(_img(bytes(heat), "Sharpe heatmap"))
    if equity is not None and len(equity):
        fig = _figure(13, 4.2)
        ax = fig.add_subplot()
        extra = [c for c in equity.columns if c not in _EQUITY_FIXED]
        for rank, g in equity.groupby("rank", sort=True):
            first = g.iloc[0]
            label = f"#{rank}: " + (", ".join(f"{c}={_fmt(first[c])}" for c in extra) or f"combo {first['combo_id']}")
            ax.plot(pd.to_datetime(g["timestamp"]).to_numpy(), g["portfolio_equity"].to_numpy(dtype=float),
                    lw=1.6 if rank == 1 else 0.9, label=label, zorder=3 if rank == 1 else 2)
        ax.set_title("equal-weight portfolio equity of the best combinations", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", ncol=2)
        _margins(fig, left=0.6, bottom=0.4)
        out.append(_img(_png(fig), "equity curves"))
    if summary is not None and len(summary):
        out.append("<h3>Top combinations by equal-weight portfolio Sharpe</h3>"
                   + _table(top_combinations(summary, params)))
    wf = tables.get("walk_forward.parquet")
    if wf is not None and len(wf):
        out.append("<h3>Walk-forward</h3>" + _table(wf, max_rows=20, note="all windows in walk_forward.parquet"))
    return "".join(out)


def _section_monitoring(m: dict, tables, files) -> str | None:
    mon = m.get("monitoring") or {}
    out = []
    drawn = next((name for name in (files or {}) if name.endswith(".png") and "utili" in name), None)
    png = bytes(files[drawn]) if drawn else None
    if png is None and mon.get("samples"):
        from alphapulse.pipelines.gpu.status import timeline_png  # the one drawing of a monitoring record

        png = timeline_png(mon, title=f"utilisation every {mon.get('interval_s', '?')} s "
                                      f"({len(mon['samples'])} samples)")
    if png:
        out.append(_img(png, "utilisation timeline"))
    if mon.get("gpu_reason"):
        out.append(f'<p class="note">GPU figures: {_e(mon["gpu_reason"])}</p>')
    peaks = mon.get("stage_peaks") or {}
    if peaks:
        rows = [{"stage": k, **{c: (_bytes(x) if c.endswith("_bytes") and x is not None else x) for c, x in v.items()}}
                for k, v in peaks.items()]
        out.append("<h3>Peaks per stage</h3>" + _table(pd.DataFrame.from_records(rows)))
    if not out:
        return None
    return "<h2>GPU / CPU utilisation</h2>" + "".join(out)


def _section_stages(m: dict, tables, files) -> str | None:
    rows = stage_rows(m)
    if not rows:
        return None
    longest = max((float(r["seconds"]) for r in rows), default=0.0) or 1.0
    has_cost = "cost" in rows[0]
    head = "<tr><th class='s'>stage</th><th>seconds</th><th class='s'></th>" + (
        "<th>GPU s</th><th>CPU s</th><th>cost</th>" if has_cost else "") + "</tr>"
    body = []
    for r in rows:
        width = max(1, int(round(300 * float(r["seconds"]) / longest)))
        sec = float(r["seconds"])
        cells = (f"<td class='s'>{_e(r['stage'])}</td><td>{sec:.3f}</td>"
                 f"<td class='s'><span class='bar' style='width:{width}px'></span></td>")
        if has_cost:
            cells += "".join(f"<td>{_e(_fmt(r.get(k)))}</td>" for k in ("gpu_seconds", "cpu_seconds", "cost"))
        body.append(f"<tr>{cells}</tr>")
    total = sum(float(r["seconds"]) for r in rows)
    out = [f"<h2>Stage timings ({total:.2f} s)</h2>",
           f'<div class="scroll"><table class="t"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>']
    cost = m.get("cost") or {}
    if cost:
        cur = cost.get("currency", "")
        unit = cost.get("per_unit") or {}
        out.append('<div class="card">' + _kv([
            ("total cost", f"{_fmt(cost.get('total'))} {cur}"),
            ("per unit", f"{_fmt(unit.get('value'))} {cur} per {unit.get('unit')}" if unit else None),
            ("prices", f"GPU {_fmt(cost.get('gpu_per_hour'))} {cur}/h, "
                       f"CPU core {_fmt(cost.get('cpu_core_per_hour'))} {cur}/h"),
        ]) + "</div>")
    return "".join(out)


def _section_routing(m: dict, tables, files) -> str | None:
    routing = m.get("routing") or []
    if not routing:
        return None
    return "<h2>Routing decisions (measured speedup)</h2>" + _records_table(routing)


def _section_files(m: dict, tables, files) -> str | None:
    rec = m.get("files") or {}
    if not rec:
        return None
    rows = [{"file": k, "rows": v.get("rows"), "columns": len(v["columns"]) if "columns" in v else None,
             "size": _bytes(v["bytes"]) if "bytes" in v else None} for k, v in rec.items()]
    return "<h2>Files</h2>" + _table(pd.DataFrame.from_records(rows).dropna(axis=1, how="all"))


SECTIONS = (_section_alerts, _section_run, _section_indicators, _section_backtest, _section_models,
            _section_weights, _section_walk_forward, _section_correlation, _section_regimes, _section_monitoring,
            _section_stages, _section_routing, _section_rejected, _section_files)
