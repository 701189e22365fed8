"""The sections of ``summary.html`` every report has, one function each: :data:`BEFORE` (alerts,
the run card) and :data:`AFTER` (utilisation, stage timings and cost, routing, rejected rows,
files). A pipeline's own sections live in its ``report`` module
(:class:`~alphapulse.pipelines.report.spec.ReportSpec`).

Each section takes ``(manifest, tables, files)`` and returns HTML, or None when the run has
nothing for it. Every value from data or the manifest is escaped. :data:`MAX_HEATMAP_LABELS`
bounds the symbols a heatmap's axes name.
"""
from __future__ import annotations

import pandas as pd

from alphapulse.pipelines.report.markup import (escape, fmt_value, html_table, human_bytes, img_tag, kv_list,
                                                records_table)
from alphapulse.pipelines.report.views import (stage_rows)

MAX_HEATMAP_LABELS = 80  # above this many symbols the heatmap's axes carry no symbol names


def _when(v) -> str:
    """A manifest timestamp without a midnight time ("2018-02-07"), else as written."""
    try:
        return fmt_value(pd.Timestamp(v))
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
    kv = kv_list([p for p in pairs if p[0] != "backend"])
    pill = f'<span class="pill {escape(name.lower())}">{escape(name)}</span>'
    return f'<div class="card"><p style="margin:0 0 8px">backend {pill}</p>{kv}</div>'


def _section_alerts(m: dict, tables, files) -> str | None:
    alerts = m.get("alerts") or []
    if not alerts:
        return None
    return (f'<div class="alert"><b>{len(alerts)} alert(s)</b> during this run</div>'
            + records_table(alerts))


def _section_rejected(m: dict, tables, files) -> str | None:
    inp = m.get("input") or {}
    by = inp.get("rejected_by_reason") or {}
    if not inp.get("rows_rejected") and not by:
        return None
    n = int(inp.get("rows_rejected") or sum(by.values()))
    out = [f"<h2>Rejected rows ({n:,})</h2>"]
    if by:
        out.append(html_table(pd.DataFrame({"reason": list(by), "rows": list(by.values())})))
    if "rejected.parquet" in tables:
        out.append("<h3>First rejected rows (rejected.parquet)</h3>"
                   + html_table(tables["rejected.parquet"], max_rows=10))
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
        out.append(img_tag(png, "utilisation timeline"))
    if mon.get("gpu_reason"):
        out.append(f'<p class="note">GPU figures: {escape(mon["gpu_reason"])}</p>')
    peaks = mon.get("stage_peaks") or {}
    if peaks:
        rows = [{"stage": k, **{c: (human_bytes(x) if c.endswith("_bytes") and x is not None else x)
                                for c, x in v.items()}}
                for k, v in peaks.items()]
        out.append("<h3>Peaks per stage</h3>" + html_table(pd.DataFrame.from_records(rows)))
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
        cells = (f"<td class='s'>{escape(r['stage'])}</td><td>{sec:.3f}</td>"
                 f"<td class='s'><span class='bar' style='width:{width}px'></span></td>")
        if has_cost:
            cells += "".join(f"<td>{escape(fmt_value(r.get(k)))}</td>" for k in ("gpu_seconds", "cpu_seconds", "cost"))
        body.append(f"<tr>{cells}</tr>")
    total = sum(float(r["seconds"]) for r in rows)
    out = [f"<h2>Stage timings ({total:.2f} s)</h2>",
           f'<div class="scroll"><table class="t"><thead>{head}</thead><tbody>{"".join(body)}</tbody></table></div>']
    cost = m.get("cost") or {}
    if cost:
        cur = cost.get("currency", "")
        unit = cost.get("per_unit") or {}
        out.append('<div class="card">' + kv_list([
            ("total cost", f"{fmt_value(cost.get('total'))} {cur}"),
            ("per unit", f"{fmt_value(unit.get('value'))} {cur} per {unit.get('unit')}" if unit else None),
            ("prices", f"GPU {fmt_value(cost.get('gpu_per_hour'))} {cur}/h, "
                       f"CPU core {fmt_value(cost.get('cpu_core_per_hour'))} {cur}/h"),
        ]) + "</div>")
    return "".join(out)


def _section_routing(m: dict, tables, files) -> str | None:
    routing = m.get("routing") or []
    if not routing:
        return None
    return "<h2>Routing decisions (measured speedup)</h2>" + records_table(routing)


def _section_files(m: dict, tables, files) -> str | None:
    rec = m.get("files") or {}
    if not rec:
        return None
    rows = [{"file": k, "rows": v.get("rows"), "columns": len(v["columns"]) if "columns" in v else None,
             "size": human_bytes(v["bytes"]) if "bytes" in v else None} for k, v in rec.items()]
    return "<h2>Files</h2>" + html_table(pd.DataFrame.from_records(rows).dropna(axis=1, how="all"))


BEFORE = (_section_alerts, _section_run)
"""The page's first sections, every report's: alerts, then the run card."""

AFTER = (_section_monitoring, _section_stages, _section_routing, _section_rejected, _section_files)
"""The page's last sections, every report's: utilisation, stage timings and cost, routing, rejected
rows, the folder's files. The pipeline's own sections go between (``ReportSpec.sections``)."""
