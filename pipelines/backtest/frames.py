"""The backtest report's tables, built from the sweep's and the walk-forward's arrays.

Implements :func:`metrics_frame` (``backtest_metrics.parquet``), :func:`summary_frame`
(``backtest_summary.parquet``), :func:`equity_frame` (``equity.parquet``) and
:func:`walk_forward_frame` (``walk_forward.parquet``).
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np
import pandas as pd

from alphapulse.pipelines.backtest.panel import PreparedPanel
from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.backtest.sweep import SweepResult, ranked_combinations
from alphapulse.pipelines.backtest.walk_forward import WalkForwardResult
from alphapulse.transforms.backtest.metrics import METRICS
from alphapulse.transforms.backtest.returns_metrics import RETURN_METRICS


@contextmanager
def _quiet():
    """NumPy's warnings on all-NaN slices and empty means, silenced (NaN is the answer)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _params_frame(request: BacktestRequest) -> pd.DataFrame:
    names = list(request.strategy.params)
    combos = request.plan.combos
    return pd.DataFrame({n: [c[n] for c in combos] for n in names}, index=pd.RangeIndex(len(combos)))


def metrics_frame(request: BacktestRequest, prepared: PreparedPanel, sweep: SweepResult) -> pd.DataFrame:
    """``backtest_metrics.parquet``: one row per (symbol, combination)."""
    n_comb, n_sym = len(request.plan.combos), prepared.shape[1]
    params = _params_frame(request)
    sym = np.repeat(np.asarray(prepared.symbols, dtype=object), n_comb)
    combo = np.tile(np.arange(n_comb), n_sym)
    out = pd.DataFrame({"symbol": sym, "strategy": request.strategy.name, "combo_id": combo})
    for name in params.columns:
        out[name] = params[name].to_numpy()[combo]
    for m in METRICS:
        out[m] = sweep.metrics[m].T.ravel()
    return out


def summary_frame(request: BacktestRequest, sweep: SweepResult) -> pd.DataFrame:
    """``backtest_summary.parquet``: one row per combination: parameters, aggregates over the
    symbols, the equal-weight portfolio's metrics and the rank by portfolio Sharpe."""
    m = sweep.metrics
    params = _params_frame(request)
    out = pd.DataFrame({"combo_id": np.arange(len(params)), "strategy": request.strategy.name})
    for name in params.columns:
        out[name] = params[name].to_numpy()
    with _quiet():
        out["symbols"] = np.sum(~np.isnan(m["total_return"]), axis=1)
        out["symbols_traded"] = np.sum(m["trades"] > 0, axis=1)
        out["median_sharpe"] = np.nanmedian(m["sharpe"], axis=1)
        out["mean_sharpe"] = np.nanmean(m["sharpe"], axis=1)
        out["median_sortino"] = np.nanmedian(m["sortino"], axis=1)
        out["median_total_return"] = np.nanmedian(m["total_return"], axis=1)
        out["mean_total_return"] = np.nanmean(m["total_return"], axis=1)
        out["median_cagr"] = np.nanmedian(m["cagr"], axis=1)
        out["median_max_drawdown"] = np.nanmedian(m["max_drawdown"], axis=1)
        out["mean_win_rate"] = np.nanmean(m["win_rate"], axis=1)
        out["median_profit_factor"] = np.nanmedian(m["profit_factor"], axis=1)
        out["total_trades"] = np.nansum(m["trades"], axis=1)
        out["mean_exposure"] = np.nanmean(m["exposure"], axis=1)
    for k in RETURN_METRICS:
        out[f"portfolio_{k}"] = sweep.portfolio_metrics[k]
    rank = np.empty(len(out), dtype=np.int64)
    rank[ranked_combinations(sweep)] = np.arange(1, len(out) + 1)
    out["rank"] = rank
    return out


def equity_frame(request: BacktestRequest, prepared: PreparedPanel, sweep: SweepResult) -> pd.DataFrame:
    """``equity.parquet``: the portfolio equity of the ``top_n`` combinations by portfolio Sharpe,
    one row per (combination, timestamp): equity starts at 1 and is flat where no symbol trades."""
    top = ranked_combinations(sweep)[: request.config.backtest.top_n]
    params = _params_frame(request)
    parts = []
    for rank, c in enumerate(top, start=1):
        r = sweep.portfolio_returns[:, c]
        eq = np.cumprod(1.0 + np.nan_to_num(r, nan=0.0))
        part = pd.DataFrame({"timestamp": prepared.timestamps, "rank": rank, "combo_id": int(c)})
        for name in params.columns:
            part[name] = params[name].iloc[c]
        part["portfolio_return"] = r
        part["portfolio_equity"] = eq
        part["symbols"] = sweep.portfolio_counts[:, c]
        parts.append(part)
    if not parts:
        return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns]"), "rank": [], "combo_id": []})
    return pd.concat(parts, ignore_index=True)


def walk_forward_frame(request: BacktestRequest, prepared: PreparedPanel, wf: WalkForwardResult) -> pd.DataFrame:
    """``walk_forward.parquet``: per (window, symbol): the windows' first and last timestamps
    (inclusive), the combination chosen in-sample (``combo_id`` -1 and null parameters where no
    combination has a defined in-sample metric) and its in-sample and out-of-sample metrics."""
    params = _params_frame(request)
    ts = prepared.timestamps
    n_win, n_sym = wf.chosen.shape
    rows = []
    for w, (a, b, c, d) in enumerate(wf.windows):
        rows.append(pd.DataFrame({
            "window": w, "is_start": ts[a], "is_end": ts[b - 1], "oos_start": ts[c], "oos_end": ts[d - 1],
            "symbol": np.asarray(prepared.symbols, dtype=object), "combo_id": wf.chosen[w]}))
    out = pd.concat(rows, ignore_index=True)
    chosen = wf.chosen.ravel()
    ok = chosen >= 0
    safe = np.where(ok, chosen, 0)
    for name in params.columns:
        values = params[name].to_numpy()[safe]
        kind = "Int64" if request.strategy.params.get(name) is int else "Float64"
        column = pd.array(values, dtype=kind)
        column[~ok] = pd.NA
        out[name] = column
    out["select"] = request.config.backtest.walk_forward.select
    w_idx = np.repeat(np.arange(n_win), n_sym)
    s_idx = np.tile(np.arange(n_sym), n_win)
    for prefix, values in (("is", wf.in_sample), ("oos", wf.out_of_sample)):
        for m in METRICS:
            v = values[m][w_idx, safe, s_idx]
            out[f"{prefix}_{m}"] = np.where(ok, v, np.nan)
    return out

