"""The portfolio walk-forward stage: every method backtested out of sample, and its report tables.

:func:`walk_forward_stage` takes the closes the portfolio pipeline already holds (its panel, on
the backend's device), runs :func:`alphapulse.transforms.portfolio.walk_forward.walk_forward_backtest`
with the ``portfolio:`` block's methods, moments and bounds and its ``walk_forward:`` settings,
brings the results to the host (the named boundary) and returns the report's tables:

- ``rebalance_weights.parquet``: ``date, method, symbol, weight``: the target weights at each
  rebalance (``date`` the first bar they are held over; they were estimated on the
  ``train_bars`` returns before it and traded at the previous close), one row a symbol of that
  date's universe, for every method, the ensemble and the benchmarks.
- ``wf_returns.parquet``: ``timestamp, method, return, turnover, cost``: each series' net
  out-of-sample return a bar, from the first rebalance on, with the turnover and the costs paid
  (fractions of the value before the trade) on rebalance bars.
- ``wf_metrics.parquet``: one row a series: the backtest module's return metrics
  (:data:`alphapulse.transforms.backtest.returns_metrics.RETURN_METRICS`), ``rebalances``,
  ``turnover`` (total), ``turnover_per_rebalance``, ``costs_paid`` (sum of the costs' fractions),
  and ``ann_return_vs_equal_weight``.
- ``wf_fallbacks.parquet``: ``date, method, step, tried, status, reason``: the fallback chain
  taken at each rebalance.

:func:`summary_lines` gives the summary.md lines; the HTML section is
``alphapulse.pipelines.report.sections._section_walk_forward``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alphapulse.pipelines.config import PortfolioConfig
from alphapulse.pipelines.report.write import markdown_table
from alphapulse.transforms.arrays import to_host
from alphapulse.transforms.backtest.returns_metrics import RETURN_METRICS, metrics_from_returns
from alphapulse.transforms.portfolio.walk_forward import (WALK_FORWARD_BENCHMARKS, OptimiserOptions, View,
                                                          walk_forward_backtest)

log = logging.getLogger(__name__)

WALK_FORWARD_TABLES = ("rebalance_weights.parquet", "wf_returns.parquet", "wf_metrics.parquet",
                       "wf_fallbacks.parquet")


@dataclass
class WalkForwardTables:
    """The walk-forward's report tables (host frames), and what the manifest records of it."""

    tables: dict = field(repr=False)
    manifest: dict


def optimiser_options(pc: PortfolioConfig) -> OptimiserOptions:
    """The ``portfolio:`` block's bounds, targets and Black-Litterman views as the transform takes them."""
    bl = pc.black_litterman
    return OptimiserOptions(min_weight=pc.min_weight, max_weight=pc.max_weight, risk_free_rate=pc.risk_free_rate,
                            target_return=pc.target_return, target_volatility=pc.target_volatility,
                            risk_aversion=pc.risk_aversion, bl_tau=bl.tau, bl_risk_aversion=bl.risk_aversion,
                            views=tuple(View(v.asset, v.expected_return, v.versus, v.confidence) for v in bl.views))


def walk_forward_stage(prices, *, timestamps: pd.DatetimeIndex, symbols: list,
                       pc: PortfolioConfig) -> WalkForwardTables:
    """Backtest every configured method out of sample (``pc.walk_forward`` must be set).

    Parameters
    ----------
    prices : array of shape (n_bars, n_symbols)
        Closes, NaN where a symbol has no bar, on the backend's device (the portfolio pipeline's
        panel, :attr:`alphapulse.pipelines.portfolio.pipeline.Returns.prices`).
    timestamps : pandas.DatetimeIndex of length n_bars
    symbols : list of str, length n_symbols
    pc : PortfolioConfig
        Its ``walk_forward`` block, methods, covariance estimator, history rules, bounds and
        ensemble.

    Returns
    -------
    WalkForwardTables
        The four tables of the module docstring and a manifest section.
    """
    wf = pc.walk_forward
    if wf is None:
        raise ValueError("walk_forward_stage needs portfolio.walk_forward")
    res = walk_forward_backtest(
        prices, timestamps=timestamps, methods=pc.methods, train_bars=wf.train_bars, rebalance=wf.rebalance,
        rebalance_bars=wf.rebalance_bars, band=wf.band if wf.rebalance == "band" else None, holdings=wf.holdings,
        cost_bps=wf.cost_bps, covariance=pc.covariance, ewma_halflife=pc.ewma_halflife,
        periods_per_year=pc.periods_per_year, min_history_bars=pc.min_history_bars,
        max_gap_fraction=pc.max_gap_fraction, ensemble=pc.ensemble, options=optimiser_options(pc), symbols=symbols)
    ts = pd.DatetimeIndex(timestamps)
    sym = np.asarray(symbols, dtype=object)
    series = list(res.series)
    ret, turn, cost = to_host(res.returns), to_host(res.turnover), to_host(res.cost)
    start = min((int(r[0]) for r in res.rows.values() if len(r)), default=len(ts))

    parts = []
    for rec in res.weights:
        w = to_host(rec["weights"])
        parts.append(pd.DataFrame({"date": ts[rec["row"]], "method": rec["series"], "symbol": sym[rec["columns"]],
                                   "weight": w}))
    weights = (pd.concat(parts, ignore_index=True) if parts else
               pd.DataFrame({"date": pd.DatetimeIndex([]), "method": [], "symbol": [], "weight": []}))

    n = len(ts) - start
    returns = pd.DataFrame({"timestamp": np.tile(ts[start:], len(series)), "method": np.repeat(series, n),
                            "return": ret[start:].T.ravel(), "turnover": turn[start:].T.ravel(),
                            "cost": cost[start:].T.ravel()})

    metrics = metrics_from_returns(ret[start:], periods_per_year=pc.periods_per_year)
    frame = pd.DataFrame({"method": series, **{k: np.asarray(metrics[k], dtype=float) for k in RETURN_METRICS}})
    frame["rebalances"] = [len(res.rows[s]) for s in series]
    frame["turnover"] = turn.sum(axis=0)
    frame["turnover_per_rebalance"] = frame["turnover"] / frame["rebalances"].where(frame["rebalances"] > 0)
    frame["costs_paid"] = cost.sum(axis=0)
    ew = frame.loc[frame["method"] == "equal_weight", "ann_return"]
    frame["ann_return_vs_equal_weight"] = frame["ann_return"] - (float(ew.iloc[0]) if len(ew) else np.nan)

    chains = pd.DataFrame(res.chains, columns=["row", "method", "step", "tried", "status", "reason"])
    chains.insert(0, "date", ts[chains.pop("row").to_numpy(dtype=np.int64)])

    candidates = frame[~frame["method"].isin(WALK_FORWARD_BENCHMARKS)]
    best = (str(candidates.loc[candidates["sharpe"].fillna(-np.inf).idxmax(), "method"])
            if len(candidates) else "equal_weight")
    fell_back = chains[(chains["step"] > 0) & (chains["status"] == "ok")]
    manifest = {
        **wf.model_dump(),
        "first_rebalance": str(ts[start].date()) if start < len(ts) else None,
        "rebalances": {s: len(res.rows[s]) for s in series},
        "best_method": best,
        "fallbacks": {m: int(len(g)) for m, g in fell_back.groupby("method", sort=True)},
    }
    log.info("walk-forward: %d rebalances from %s, best out of sample %s", manifest["rebalances"].get(best, 0),
             manifest["first_rebalance"], best)
    tables = {"rebalance_weights.parquet": weights, "wf_returns.parquet": returns, "wf_metrics.parquet": frame,
              "wf_fallbacks.parquet": chains}
    return WalkForwardTables(tables, manifest)


def summary_lines(wf: WalkForwardTables) -> list[str]:
    """summary.md's walk-forward section."""
    m = wf.manifest
    rule = {"every": f"every {m['rebalance_bars']} bars", "band": f"when a weight drifts {m['band']:g} from target"
            }.get(m["rebalance"], m["rebalance"].replace("_", " "))
    metrics = wf.tables["wf_metrics.parquet"]
    cols = ["method", "sharpe", "sortino", "cagr", "max_drawdown", "calmar", "ann_volatility", "rebalances",
            "turnover_per_rebalance", "costs_paid"]
    lines = ["", "## Walk-forward (out of sample, after costs)", "",
             f"- trailing {m['train_bars']} returns, rebalanced {rule}, {m['holdings']} holdings, "
             f"{m['cost_bps']:g} bps on the value traded; from {m['first_rebalance']}",
             f"- best Sharpe out of sample: **{m['best_method']}**", "",
             markdown_table(metrics[cols].sort_values("sharpe", ascending=False))]
    if m["fallbacks"]:
        lines += ["", "Rebalances where a method fell back: "
                  + ", ".join(f"{k} {v}" for k, v in m["fallbacks"].items()) + " (wf_fallbacks.parquet)"]
    return lines
