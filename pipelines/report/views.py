"""What the report page and the Prefect artifacts show from a report's tables and manifest.

Implements :func:`indicator_snapshot` (each symbol's latest indicator values),
:func:`correlation_matrix` (one date's matrix from the stored upper triangle),
:func:`top_combinations`, :func:`model_scores`, :func:`stage_rows` and :func:`headline_table`
(the run's main result, for the Prefect artifact).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd


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


def latest_indicators(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame | None:
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
    """The run's main result as (title, frame): the pipeline's own headline
    (:class:`~alphapulse.pipelines.report.spec.ReportSpec`), or else the first table of the report."""
    from alphapulse.pipelines.report.spec import all_specs, report_spec

    spec = report_spec(manifest.get("pipeline"))
    for candidate in ([spec] if spec is not None else all_specs()):
        head = candidate.headline(manifest, tables)
        if head is not None:
            return head
    for name, frame in tables.items():
        if name.endswith(".parquet") and name != "rejected.parquet":
            return name, frame
    return None


def model_scores(scores: pd.DataFrame) -> pd.DataFrame:
    """The whole out-of-sample period's row per model and ensemble (``step == -1``) of
    ``model_scores.parquet``, best information coefficient first."""
    overall = scores[scores["step"] == -1] if "step" in scores else scores
    cols = [c for c in ("model", "ic_mean", "ic_tstat", "ic_positive", "hit_rate", "n_dates", "n_predictions")
            if c in overall.columns] or list(overall.columns)
    order = "ic_mean" if "ic_mean" in overall else cols[0]
    return overall.sort_values(order, ascending=False)[cols].reset_index(drop=True)


def run_lines(manifest: dict, out_dir, *, backend_extra: str = "", rows_extra: str = "") -> list[str]:
    """The CLI's first lines for every report: the folder, the backend and why, the rows read."""
    inp, be = manifest["input"], manifest["backend"]
    return [f"report: {out_dir}",
            f"backend: {be['name']} ({be['reason']}), {be['dtype']}{backend_extra}",
            f"rows: {inp['rows_read']:,} read, {inp['rows_accepted']:,} accepted, {inp['rows_rejected']:,} rejected"
            + rows_extra]
