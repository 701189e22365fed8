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

This module assembles the page (style sheet, title, sections in order); the common sections are in
:mod:`~alphapulse.pipelines.report.sections`, each pipeline's in its ``report`` module
(:mod:`~alphapulse.pipelines.report.spec`), their HTML pieces in
:mod:`~alphapulse.pipelines.report.markup` and the tables they show in
:mod:`~alphapulse.pipelines.report.views`.

Cost (measured on the 2-core development machine, busy): without monitoring samples the daily page
draws no plot and never imports matplotlib: 25-35 ms for 50 symbols, about 35 ms for 5,000 (the
table shows the first 100). Each plot costs 0.1-0.5 s (the portfolio page's four: about 1 s, the
backtest page's: about 0.4 s), plus about 0.4 s to import matplotlib once per process where no
stage imported it before.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping

import pandas as pd

from alphapulse.pipelines.report.markup import escape
from alphapulse.pipelines.report.sections import AFTER, BEFORE
from alphapulse.pipelines.report.spec import all_specs, report_spec

log = logging.getLogger(__name__)

SUMMARY_HTML = "summary.html"

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


def _page(title: str, subtitle: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
            f'<body><main><h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p>{body}</main></body></html>\n')


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
    spec = report_spec(manifest.get("pipeline"))
    # a report of another kind (a test's, another tool's): every pipeline's sections, each showing
    # only where its tables are
    own = spec.sections if spec is not None else tuple(s for sp in all_specs() for s in sp.sections)
    parts = []
    for section in (*BEFORE, *own, *AFTER):
        try:
            html_part = section(manifest, tables, files)
        except Exception as e:  # one broken section must not cost the page
            log.warning("summary.html: section %s failed: %s: %s", section.__name__[9:], type(e).__name__, e)
            html_part = (f'<p class="err">{escape(section.__name__[9:])}: not rendered '
                         f'({escape(type(e).__name__)}: {escape(e)})</p>')
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
    items = "".join(f"<li>{escape(n)}</li>" for n in names)
    body = (f'<p class="err">The full page could not be rendered: {escape(error)}. The data files are complete; '
            f"see summary.md and manifest.json.</p><ul>{items}</ul>")
    return _page(title, sub, body)
