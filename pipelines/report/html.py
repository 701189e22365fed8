"""``summary.html``: the run report for people, one self-contained page per report folder.

:func:`render` turns what :func:`alphapulse.pipelines.report.write.write_report` already holds (the manifest, the
tables in memory, the raw files) into one HTML page with no external resources: plots are
matplotlib (Agg) PNGs inlined as base64 ``data:`` URIs, the style sheet is inline, there is no
JavaScript. Sections appear for whichever stages ran:

- alerts first; run: pipeline, run id, time, backend and why, device, input rows, cluster
- indicator snapshot: the latest values per symbol (the page table ``indicators_latest``, else
  ``indicators.parquet``)
- correlation heatmap at the last month end (``correlation.parquet`` holds month-end upper
  triangles) and the average correlation over time (``correlation_summary.parquet``)
- regime timeline: the equal-weight index with its regimes shaded (``regimes.parquet``)
- models: out-of-sample scores per model and ensemble (``model_scores.parquet``), the signal's
  backtest (``backtest.parquet``), the last ensemble weights
- weights: methods x symbols heatmap and top holdings (``weights.parquet``), fallback chains,
  VaR/CVaR (``risk.parquet``), excluded symbols
- backtest: ``sharpe_heatmap.png`` (inlined), equity curves of the best combinations
  (``equity.parquet``), top combinations (``backtest_summary.parquet``)
- GPU/CPU utilisation timeline (drawn by :func:`alphapulse.pipelines.gpu.status.timeline_png`) and per-stage peaks
  (manifest ``monitoring``)
- stage timings and cost (manifest ``stages``, ``cost``), routing decisions (``routing``)
- rejected rows by reason (and the first rejected rows); the files of the folder

Every value that comes from data or the manifest is HTML-escaped (a symbol called ``<script>``
is shown as text). A section that fails to render is replaced by a one-line note naming the
error and the rest of the page is kept; :func:`minimal_page` is the fallback when even that fails.

Cost (measured on the 2-core development machine, busy): without monitoring samples the daily page
draws no plot and never imports matplotlib: 25-35 ms for 50 symbols, about 35 ms for 5,000 (the
table shows the first 100). Each plot costs 0.1-0.5 s (the portfolio page's four: about 1 s, the
backtest page's: about 0.4 s), plus about 0.4 s to import matplotlib once per process where no
stage imported it before.
"""
from __future__ import annotations

import base64
import html
import io
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

SUMMARY_HTML = "summary.html"
MAX_TABLE_ROWS = 60
MAX_HEATMAP_LABELS = 80  # above this many symbols the heatmap's axes carry no symbol names

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f5f6f8;
color:#1d232b;font-size:14px}
main{max-width:1200px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 4px}
h2{font-size:17px;margin:28px 0 8px;border-bottom:2px solid #d8dde4;padding-bottom:4px}
h3{font-size:14px;margin:16px 0 6px}
.sub{color:#5a6472;margin:0 0 12px}
.card{background:#fff;border:1px solid #dde2e8;border-radius:6px;padding:12px 16px;margin:10px 0}
.kv{display:grid;grid-template-columns:max-content 1fr;gap:3px 16px}.kv b{color:#5a6472;font-weight:600}
.scroll{overflow-x:auto}
table.t{border-collapse:collapse;font-size:12.5px;background:#fff}
table.t th,table.t td{border:1px solid #e1e5ea;padding:3px 7px;text-align:right;white-space:nowrap}
table.t th{background:#eef1f5;position:sticky;top:0}
table.t td.s,table.t th.s{text-align:left}
table.t td.w{white-space:normal;min-width:320px;max-width:640px;overflow-wrap:anywhere}
.bar{display:inline-block;height:10px;background:#4c78a8;border-radius:2px;vertical-align:middle}
.alert{background:#fdecea;border:1px solid #f5c2bd;color:#8a1c12;border-radius:6px;padding:10px 14px;margin:10px 0}
.note{color:#5a6472;font-size:12.5px}
.err{color:#8a1c12;font-size:12.5px}
img.plot{max-width:100%;height:auto;background:#fff;border:1px solid #dde2e8;border-radius:4px}
.pill{display:inline-block;padding:1px 8px;border-radius:10px;background:#e3ecf7;color:#1f4e86;font-weight:600}
.pill.cpu{background:#eceff3;color:#3b4552}.pill.gpu{background:#e2f4e5;color:#17622a}
"""


# ---------------------------------------------------------------------------------------------
# Small HTML helpers
# ---------------------------------------------------------------------------------------------


def _e(v) -> str:
    """HTML-escape any value (quotes too, so it is safe inside attributes)."""
    return html.escape(str(v), quote=True)


def _fmt(v) -> str:
    """A table cell's text: 4 significant digits for floats, dates without a midnight time."""
    if v is None or v is pd.NA or v is pd.NaT:
        return ""
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return ""
        # counts held as floats (a column with gaps): whole numbers, not 1.259e+04
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e15 else f"{v:.4g}"
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        v = pd.Timestamp(v)
        return str(v.date()) if v == v.normalize() else str(v)
    return str(v)


def _is_text(dtype) -> bool:
    return not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype))


def _table(df: pd.DataFrame, *, max_rows: int = MAX_TABLE_ROWS, note: str | None = None) -> str:
    """``df`` (index not included) as an HTML table of at most ``max_rows`` rows, every cell escaped."""
    shown = df.head(max_rows)
    text = [_is_text(t) for t in shown.dtypes]
    head = "".join(f'<th class="s">{_e(c)}</th>' if s else f"<th>{_e(c)}</th>" for c, s in zip(shown.columns, text))
    rows = []
    for row in shown.itertuples(index=False, name=None):
        cells = []
        for v, s in zip(row, text):
            t = _fmt(v)
            # long text (a reason, a message) wraps; short text and numbers never do
            cells.append(f'<td class="{"s w" if len(t) > 60 else "s"}">{_e(t)}</td>' if s else f"<td>{_e(t)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    more = ""
    if len(df) > max_rows or note:
        more = f'<p class="note">{_e(note or "")}{" " if note else ""}' + (
            f"(first {max_rows} of {len(df):,} rows)" if len(df) > max_rows else "") + "</p>"
    return (f'<div class="scroll"><table class="t"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{more}')


def _records_table(records: list[dict], columns: list[str] | None = None) -> str:
    return _table(pd.DataFrame.from_records(records, columns=columns))


def _kv(pairs: list[tuple[str, object]]) -> str:
    items = "".join(f"<b>{_e(k)}</b><span>{_e(v)}</span>" for k, v in pairs if v is not None and v != "")
    return f'<div class="kv">{items}</div>'


def _img(png: bytes, alt: str) -> str:
    return f'<img class="plot" alt="{_e(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def _figure(width_in: float, height_in: float):
    """A matplotlib figure on the Agg canvas (no pyplot: no global state, thread-safe)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), dpi=90)
    FigureCanvasAgg(fig)
    return fig


def _margins(fig, *, left: float, bottom: float, top: float = 0.35, right: float = 0.2, **space) -> None:
    """Fixed margins in inches: ``tight_layout`` would cost a second full draw of the figure."""
    w, h = fig.get_size_inches()
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h, **space)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


# ---------------------------------------------------------------------------------------------
# Tables shared with the Prefect artifacts
# ---------------------------------------------------------------------------------------------


def indicator_snapshot(indicators: pd.DataFrame) -> pd.DataFrame:
    """The latest row of every symbol, sorted by symbol.

    Parameters
    ----------
    indicators : long frame ``timestamp, symbol, <indicator columns>``

    Returns
    -------
    Frame of shape (n_symbols, n_columns): ``symbol, timestamp`` first, then the other columns.
    """
    if indicators.empty:
        return indicators
    last = indicators.groupby("symbol", sort=True, observed=True)["timestamp"].idxmax()
    cols = ["symbol", "timestamp", *(c for c in indicators.columns if c not in ("symbol", "timestamp"))]
    return indicators.loc[last.to_numpy(), cols].reset_index(drop=True)


def _snapshot(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame | None:
    """The latest indicator values: the pipeline's own ``indicators_latest`` (a page table, when the
    indicators are part files) or the snapshot of ``indicators.parquet``."""
    if "indicators_latest" in tables:
        latest = tables["indicators_latest"]
        cols = ["symbol", "timestamp", *(c for c in latest.columns if c not in ("symbol", "timestamp"))]
        return latest[cols].sort_values("symbol", kind="stable").reset_index(drop=True)
    if "indicators.parquet" in tables:
        return indicator_snapshot(tables["indicators.parquet"])
    return None


def correlation_matrix(day: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The full matrix of one date's upper triangle (``correlation.parquet`` rows ``symbol_i,
    symbol_j, rho`` with ``symbol_i < symbol_j``).

    Returns
    -------
    symbols : array of shape (n_symbols,), sorted
    matrix : array of shape (n_symbols, n_symbols), symmetric, unit diagonal, NaN for pairs left out
    """
    si, sj = day["symbol_i"].astype(str).to_numpy(), day["symbol_j"].astype(str).to_numpy()
    symbols = np.unique(np.concatenate([si, sj]))
    pos = pd.Index(symbols)
    mat = np.full((len(symbols), len(symbols)), np.nan)
    ii, jj = pos.get_indexer(si), pos.get_indexer(sj)
    mat[ii, jj] = mat[jj, ii] = day["rho"].to_numpy(dtype=float)
    np.fill_diagonal(mat, 1.0)
    return symbols, mat


def top_combinations(summary: pd.DataFrame, params: list[str], n: int = 10) -> pd.DataFrame:
    """The ``n`` best rows of ``backtest_summary.parquet`` by rank, with the headline columns."""
    cols = ["rank", *params, "portfolio_sharpe", "portfolio_cagr", "portfolio_max_drawdown",
            "portfolio_total_return", "median_sharpe", "mean_win_rate", "total_trades"]
    return summary.sort_values("rank").head(n)[[c for c in cols if c in summary.columns]]


def stage_rows(manifest: dict) -> list[dict]:
    """One row per stage: seconds, and where the manifest has a cost record, GPU/CPU seconds and cost."""
    cost = (manifest.get("cost") or {}).get("stages") or {}
    rows = []
    for stage, sec in (manifest.get("stages") or {}).items():
        row = {"stage": stage, "seconds": sec}
        if cost:
            c = cost.get(stage) or {}
            row.update(gpu_seconds=c.get("gpu_seconds"), cpu_seconds=c.get("cpu_seconds"), cost=c.get("cost"))
        rows.append(row)
    return rows


def headline_table(manifest: dict, tables: Mapping[str, pd.DataFrame]) -> tuple[str, pd.DataFrame] | None:
    """The run's main result as (title, frame): the indicator snapshot, the top backtest
    combinations, the models' scores, the weights per method, or else the first table of the report."""
    snap = _snapshot(tables)
    if snap is not None:
        return "Latest indicator values", snap
    if "backtest_summary.parquet" in tables:
        params = list((manifest.get("grid") or {}).get("parameters") or {})
        return "Top combinations by portfolio Sharpe", top_combinations(tables["backtest_summary.parquet"], params)
    if "model_scores.parquet" in tables:
        return "Out-of-sample scores per model", model_scores(tables["model_scores.parquet"])
    if "weights.parquet" in tables:
        w = tables["weights.parquet"]
        wide = w.pivot_table(index="symbol", columns="method", values="weight", aggfunc="last")
        order = "ensemble" if "ensemble" in wide.columns else wide.columns[0]
        return "Weights per method", wide.sort_values(order, ascending=False).reset_index()
    for name, frame in tables.items():
        if name.endswith(".parquet") and name != "rejected.parquet":
            return name, frame
    return None


# ---------------------------------------------------------------------------------------------
# Sections: each returns HTML or None (nothing to show)
# ---------------------------------------------------------------------------------------------


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


def model_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The whole out-of-sample period's row per model and ensemble (``step == -1``) of
    ``model_scores.parquet``, best information coefficient first."""
    overall = scores[scores["step"] == -1] if "step" in scores else scores
    cols = [c for c in ("model", "ic_mean", "ic_tstat", "ic_positive", "hit_rate", "n_dates", "n_predictions")
            if c in overall.columns] or list(overall.columns)
    order = "ic_mean" if "ic_mean" in overall else cols[0]
    return overall.sort_values(order, ascending=False)[cols].reset_index(drop=True)


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


_SECTIONS = (_section_alerts, _section_run, _section_indicators, _section_backtest, _section_models,
             _section_weights, _section_correlation, _section_regimes, _section_monitoring, _section_stages,
             _section_routing, _section_rejected, _section_files)


# ---------------------------------------------------------------------------------------------
# Pages
# ---------------------------------------------------------------------------------------------


def _page(title: str, subtitle: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>"
            f'<body><main><h1>{_e(title)}</h1><p class="sub">{_e(subtitle)}</p>{body}</main></body></html>\n')


def _title(manifest: dict) -> tuple[str, str]:
    pipeline = str(manifest.get("pipeline") or "run")
    title = f"AlphaPulse {pipeline} report" + (f": {manifest['strategy']}" if manifest.get("strategy") else "")
    return title, f"run {manifest.get('run_id', '?')} at {manifest.get('created_at', '?')}"


def render(manifest: dict, tables: Mapping[str, pd.DataFrame], files: Mapping[str, bytes] | None = None) -> str:
    """The report folder's ``summary.html``.

    Parameters
    ----------
    manifest : the run record as written to ``manifest.json`` (every key optional)
    tables : file name -> frame, the report's parquet tables (in memory)
    files : file name -> bytes, the report's other files (``sharpe_heatmap.png`` is inlined)

    Returns
    -------
    The page, a self-contained HTML document (str).
    """
    parts = []
    for section in _SECTIONS:
        try:
            html_part = section(manifest, tables, files)
        except Exception as e:  # one broken section must not cost the page
            log.warning("summary.html: section %s failed: %s: %s", section.__name__[9:], type(e).__name__, e)
            html_part = f'<p class="err">{_e(section.__name__[9:])}: not rendered ({_e(type(e).__name__)}: {_e(e)})</p>'
        if html_part:
            parts.append(html_part)
    title, sub = _title(manifest)
    return _page(title, sub, "".join(parts))


def minimal_page(manifest: dict, error: BaseException | str) -> str:
    """A page that cannot fail: the title, the error that stopped :func:`render` and the report's files."""
    try:
        title, sub = _title(manifest)
        names = list((manifest.get("files") or {}))
    except Exception:  # a manifest not even shaped like a dict
        title, sub, names = "AlphaPulse report", "", []
    items = "".join(f"<li>{_e(n)}</li>" for n in names)
    body = (f'<p class="err">The full page could not be rendered: {_e(error)}. The data files are complete; '
            f"see summary.md and manifest.json.</p><ul>{items}</ul>")
    return _page(title, sub, body)
