"""Prefect artifacts for a report folder, so the Prefect UI is the run's dashboard.

:func:`publish_report_artifacts` reads a finished report folder (any pipeline's: it needs only
``manifest.json`` and ``summary.md``) and publishes, attached to the current flow run:

- ``<key>-summary`` (markdown): ``summary.md``, the alerts, and the path of ``summary.html``
  (the self-contained page with the plots);
- ``<key>-stages`` (table): seconds per stage, and GPU/CPU seconds and cost where the manifest
  has a ``cost`` record;
- ``<key>-results`` (table): the head of the run's main result
  (:func:`alphapulse.pipelines.report.views.headline_table`: the latest indicator values, the top backtest
  combinations, the models' scores, the weights per method; for another pipeline ``main_table``
  or its first table);
- ``<key>-alerts`` (markdown), only when the run raised alerts (e.g. a GPU out of memory);
- the pipeline's own tables (``ReportSpec.artifacts``), e.g. ``daily-signals``: today's entries and
  exits, best record first.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from alphapulse.pipelines.report import SUMMARY_HTML, headline_table, report_spec, stage_rows
from alphapulse.pipelines.report.write import MANIFEST, SUMMARY, markdown_table

log = logging.getLogger(__name__)

RESULT_ROWS = 50
MAX_READ_ROWS = 500_000  # a larger main table (about 90 MB of indicators) is not read back just for a head


def _json_value(v):
    """A cell as JSON: NaN/NaT -> null, timestamps as ISO text, NumPy scalars as Python ones."""
    if v is None or v is pd.NaT or v is pd.NA:
        return None
    if isinstance(v, (pd.Timestamp, np.datetime64)):
        return pd.Timestamp(v).isoformat()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v if isinstance(v, (bool, int, float, str)) else str(v)


def table_rows(frame: pd.DataFrame, max_rows: int = RESULT_ROWS) -> list[dict]:
    """The first ``max_rows`` rows of ``frame`` as JSON-safe records (a Prefect table artifact)."""
    head = frame.head(max_rows)
    return [{str(k): _json_value(v) for k, v in zip(head.columns, row)} for row in head.itertuples(index=False)]


def _load_tables(out: Path, manifest: dict, main_table: str | None) -> dict[str, pd.DataFrame]:
    """The parquet tables the headline needs (part files ``name/part-*.parquet`` as one table
    ``name.parquet``), skipping any too large to read back."""
    files = [n for n in manifest.get("files") or {} if n.endswith(".parquet") and n != "rejected.parquet"]
    groups: dict[str, list[str]] = {}
    for n in files:
        groups.setdefault(n.split("/", 1)[0] + ".parquet" if "/" in n else n, []).append(n)
    spec = report_spec(manifest.get("pipeline"))
    main_table = main_table or (spec.main_table if spec is not None else None)
    wanted = [main_table] if main_table else list(groups)[:1]
    tables = {}
    for name in wanted:
        paths = [out / n for n in groups.get(name, [name]) if (out / n).is_file()]
        rows = sum(pq.ParquetFile(p).metadata.num_rows for p in paths)
        if not paths or rows > MAX_READ_ROWS:
            log.info("artifact: %s (%s rows) is not read back for its head", name, f"{rows:,}")
            continue
        tables[name] = pd.concat([pd.read_parquet(p) for p in paths], ignore_index=True)
    return tables


def _alerts_md(alerts: list[dict]) -> str:
    return markdown_table(pd.DataFrame.from_records(alerts))


def publish_report_artifacts(out_dir, *, key: str, main_table: str | None = None) -> dict[str, object]:
    """Publish the report folder ``out_dir`` as Prefect artifacts (see the module docstring).

    Parameters
    ----------
    out_dir : a report folder written by :func:`alphapulse.pipelines.report.write.write_report`
    key : artifact key prefix (lowercase letters, digits and dashes), e.g. ``"daily"``
    main_table : the parquet file whose head is ``<key>-results`` (default: the pipeline's
        ``REPORT.main_table``)

    Returns
    -------
    dict: artifact name (``summary``, ``stages``, ``results``, the pipeline's own, ``alerts``) -> artifact id. A failure
    of the Prefect API is logged, not raised: the report is already written.
    """
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    out = Path(out_dir).absolute()
    manifest = json.loads((out / MANIFEST).read_text())
    alerts = manifest.get("alerts") or []
    page = out / SUMMARY_HTML
    md = (out / SUMMARY).read_text()
    if alerts:
        md += f"\n## Alerts ({len(alerts)})\n\n{_alerts_md(alerts)}\n"
    md += (f"\n---\nReport folder: `{out}`" + (f"; plots and tables in `{page}` (self-contained, open it in a "
                                               "browser)" if page.is_file() else "") + "\n")
    what = f"AlphaPulse {manifest.get('pipeline', '')} report in {out}"
    head = headline_table(manifest, _load_tables(out, manifest, main_table))
    stages = [{k: _json_value(v) for k, v in r.items()} for r in stage_rows(manifest)]
    published = {}
    jobs = [("summary", create_markdown_artifact, {"markdown": md, "description": what})]
    if stages:
        jobs.append(("stages", create_table_artifact, {"table": stages, "description": f"stage timings: {what}"}))
    if head is not None and len(head[1].columns):
        jobs.append(("results", create_table_artifact,
                     {"table": table_rows(head[1]), "description": f"{head[0]} (first {RESULT_ROWS} rows): {what}"}))
    spec = report_spec(manifest.get("pipeline"))
    try:
        extra = spec.artifacts(manifest, out) if spec is not None and spec.artifacts is not None else []
    except Exception as e:  # an unreadable table costs its artifact, not the run
        log.warning("Prefect artifacts of %s not built: %s: %s", out, type(e).__name__, e)
        extra = []
    for name, description, frame in extra:
        jobs.append((name, create_table_artifact, {"table": table_rows(frame, max_rows=RESULT_ROWS),
                                                   "description": f"{description}: {what}"}))
    if alerts:
        jobs.append(("alerts", create_markdown_artifact,
                     {"markdown": f"# {len(alerts)} alert(s)\n\n{_alerts_md(alerts)}\n", "description": what}))
    for name, create, kwargs in jobs:
        try:
            published[name] = create(key=f"{key}-{name}", **kwargs)
        except Exception as e:  # the report is written; a Prefect API hiccup must not fail the run
            log.warning("Prefect artifact %s-%s not published: %s: %s", key, name, type(e).__name__, e)
    return published
