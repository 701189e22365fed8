"""The portfolio pipeline: covariance, optimisers, correlation, regimes and Monte Carlo risk.

load -> validate -> panel of closes -> returns + common window -> covariance -> optimisers (each
through the fallback chain) + ensemble -> rolling correlation at month ends (average correlation,
absorption ratio) -> regimes -> Monte Carlo VaR/CVaR of the ensemble -> report. Each stage is a
plain function, so the Prefect flow (``alphapulse.flows.portfolio``), a test or a notebook runs the same
code; :func:`run_portfolio` chains them without Prefect.

Report files
------------
- ``covariance.parquet``: ``symbol_i, symbol_j, cov``, every pair of the qualifying symbols
  (annualised, ``portfolio.covariance`` estimator over the common window).
- ``weights.parquet``: ``date, method, symbol, weight`` (``date`` the window's last bar; one
  row per method and qualifying symbol, plus the ``ensemble``).
- ``fallbacks.parquet``: ``method, step, tried, status, reason``: the fallback chain each
  method took.
- ``correlation.parquet``: ``date, symbol_i, symbol_j, rho`` at each month end, the *upper
  triangle only* (``symbol_i < symbol_j``, the matrix is symmetric with a unit diagonal) and only
  finite pairs (a pair without ``correlation_min_periods`` common returns is left out), over all
  symbols (pairwise-complete, as pandas' ``corr``).
- ``correlation_summary.parquet``: ``date, n_symbols, average_correlation, absorption_ratio``
  (the absorption ratio over the symbols whose row of the matrix is complete that date).
- ``regimes.parquet``: ``date, regime`` and the features; ``regime_centres.parquet``,
  ``regime_runs.parquet``.
- ``risk.parquet``: ``method, model, level, horizon, VaR, CVaR`` (losses positive, fractions of
  the portfolio's value over ``horizon`` bars), for the ensemble; the normal model's closed form
  is added as model ``normal_closed_form`` (summed returns) for comparison.
- ``excluded.parquet``, ``rejected.parquet`` (when any), ``manifest.json``, ``summary.md``.
- With ``portfolio.walk_forward`` set, the walk-forward's tables (``rebalance_weights``,
  ``wf_returns``, ``wf_metrics``, ``wf_fallbacks``; :mod:`alphapulse.pipelines.portfolio.walk_forward`),
  its summary lines and manifest section ``walk_forward``.

Devices: returns, the common window, the covariance and the rolling correlation run on the
backend's device (NumPy or CuPy); the small matrices then come to the host (the named boundary)
for the optimisers (HRP needs SciPy), the regimes' clustering (cuML on the GPU through
``alphapulse.pipelines.models.estimators``) and the Monte Carlo.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.cluster import resolve_cluster
from alphapulse.pipelines.runtime.budget import check_portfolio
from alphapulse.pipelines.config import Config, GpuConfig, PortfolioConfig
from alphapulse.pipelines.errors import ConfigError, DataError
from alphapulse.pipelines.data.load import InputFiles, LoadedBars, inspect_input, load_bars
from alphapulse.pipelines.runtime.estimators import kmeans_model
from alphapulse.pipelines.data.panel import bars_to_panel
from alphapulse.pipelines.portfolio.report import PortfolioResult, report_stage
from alphapulse.pipelines.report.write import check_out_dir
from alphapulse.pipelines.runtime.routing import route
from alphapulse.pipelines.portfolio.walk_forward import walk_forward_stage
from alphapulse.pipelines.runtime.run import Pipeline, Run, Stage, run_pipeline
from alphapulse.pipelines.runtime.stages import StageTimer, TaskRecord, request_paths, scoped_task
from alphapulse.transforms.arrays import to_host
from alphapulse.transforms.covariance import COVARIANCE_ESTIMATORS
from alphapulse.transforms.correlation import absorption_ratio, average_pairwise_correlation, rolling_corr
from alphapulse.transforms.montecarlo import monte_carlo_var_cvar, normal_var_cvar
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.black_litterman import BlackLittermanViews
from alphapulse.transforms.portfolio.ensemble import ensemble_portfolio_weights
from alphapulse.transforms.portfolio.fallback import OPTIMISERS, optimise_with_fallback
from alphapulse.transforms.regimes import fit_regimes, market_features
from alphapulse.transforms.returns import common_window, simple_returns

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PortfolioRequest:
    """A checked request: what the CLI validates before Prefect starts."""

    config: Config
    inputs: InputFiles
    data_path: str
    out_dir: Path
    backend: str = "auto"
    cluster: str | None = None


def prepare_portfolio(config: Config, *, data_path: str | None = None, out_dir: str | None = None,
                      backend: str = "auto", cluster: str | None = "config",
                      walk_forward: bool = False) -> PortfolioRequest:
    """Resolve paths and check them and the portfolio block cheaply (headers, not data).

    ``cluster``: where the analysis runs (see :mod:`alphapulse.pipelines.runtime.cluster`); "config"
    takes ``cluster.address``. ``walk_forward``: run the walk-forward even when the config has no
    ``portfolio.walk_forward`` block (then with that block's defaults and ``train_bars`` =
    ``portfolio.lookback_bars``).

    Raises ``ArgumentError`` / ``ConfigError`` / ``DataError`` / ``ReportError`` with a one-line message.
    """
    if walk_forward and config.portfolio.walk_forward is None:
        from alphapulse.pipelines.config import parse_config

        data = config.model_dump(mode="json", by_alias=True, exclude_unset=True)
        # the static portfolio's estimation window, so its history rules admit the same symbols
        data.setdefault("portfolio", {})["walk_forward"] = {"train_bars": config.portfolio.lookback_bars}
        config = parse_config(data, source="config with --walk-forward")
    pc = config.portfolio
    data_path, out_dir = request_paths(config, data_path=data_path, out_dir=out_dir,
                                       default_out_dir=pc.out_dir, out_key="portfolio.out_dir", backend=backend)
    if pc.min_history_bars > pc.lookback_bars:
        raise ConfigError(f"portfolio.min_history_bars ({pc.min_history_bars}) exceeds portfolio.lookback_bars "
                          f"({pc.lookback_bars})")
    if "efficient_return" in pc.methods and pc.target_return is None:
        raise ConfigError("portfolio.methods has efficient_return but portfolio.target_return is not set")
    if "efficient_risk" in pc.methods and pc.target_volatility is None:
        raise ConfigError("portfolio.methods has efficient_risk but portfolio.target_volatility is not set")
    if pc.ensemble == "adaptive" and len(pc.methods) < 2:
        raise ConfigError("portfolio.ensemble: adaptive needs at least two methods")
    if pc.walk_forward is not None and pc.min_history_bars > pc.walk_forward.train_bars:
        raise ConfigError(f"portfolio.walk_forward.train_bars ({pc.walk_forward.train_bars}) is below "
                          f"portfolio.min_history_bars ({pc.min_history_bars}): no symbol could qualify")
    cluster = resolve_cluster(cluster, config)
    inputs = inspect_input(data_path, columns=config.data.columns, fmt=config.data.format)
    return PortfolioRequest(config, inputs, str(data_path), check_out_dir(out_dir, inputs=[data_path]), backend,
                            cluster)


def load_stage(request: PortfolioRequest, backend: Backend) -> LoadedBars:
    return load_bars(request.inputs, lib=backend.frames,
                     symbols_per_partition=request.config.data.symbols_per_partition)


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


@dataclass
class Returns:
    """One-bar returns of every symbol and the common estimation window.

    returns : array (n_bars, n_symbols) on the device; timestamps, symbols on the host;
    window : :class:`alphapulse.transforms.returns.CommonWindow`; block : host array (n_rows, n_qualified).
    """

    returns: object
    timestamps: pd.DatetimeIndex
    symbols: list
    window: object
    block: np.ndarray
    prices: object = None  # the closes (n_bars, n_symbols) on the device, for the walk-forward

    @property
    def qualified(self) -> list:
        return list(self.window.symbols)

    def excluded_frame(self) -> pd.DataFrame:
        return pd.DataFrame([{"symbol": e.symbol, "reason": e.reason, "detail": e.detail}
                             for e in self.window.excluded], columns=["symbol", "reason", "detail"])


def returns_stage(bars, pc: PortfolioConfig, backend: Backend) -> Returns:
    panel = bars_to_panel(bars, fields=("close",), dtype=backend.dtype, xp=backend.xp, order="C")
    timestamps = pd.DatetimeIndex(frames.to_host(panel.timestamps))
    symbols = [str(s) for s in frames.to_host(panel.symbols)]
    r = simple_returns(panel.fields["close"])
    window = common_window(r, pc.min_history_bars, window_bars=pc.lookback_bars, max_gap_fraction=pc.max_gap_fraction,
                           symbols=symbols)
    if len(window.columns) < 2:
        raise DataError(f"only {len(window.columns)} symbol(s) qualify for the common window "
                        f"(lookback_bars={pc.lookback_bars}, min_history_bars={pc.min_history_bars})")
    if len(window.rows) < 2:
        raise DataError("the common window has fewer than two complete rows")
    block = to_host(window.select(r)).astype(np.float64)
    for e in window.excluded:
        log.info("excluded %s: %s (%s)", e.symbol, e.reason, e.detail)
    return Returns(r, timestamps, symbols, window, block, panel.fields["close"])


def covariance_stage(rets: Returns, pc: PortfolioConfig, backend: Backend,
                     gpu: GpuConfig | None = None) -> np.ndarray:
    """Annualised covariance of the common window's returns (host array); with ``gpu`` (the
    config's block) routed by measured speedup (:mod:`alphapulse.pipelines.runtime.routing`)."""
    if gpu is not None:
        backend = route("covariance", rets.block.shape[1], backend, gpu)
    x = backend.xp.asarray(rets.block)
    estimator = COVARIANCE_ESTIMATORS[pc.covariance]  # its parameters: the config's <estimator>_<param>
    c = estimator.function(x, periods_per_year=pc.periods_per_year,
                           **{p: getattr(pc, f"{pc.covariance}_{p}") for p in estimator.params})
    c = to_host(c).astype(np.float64)
    return (c + c.T) / 2


def _views(pc: PortfolioConfig, symbols: list) -> tuple[BlackLittermanViews, list[str]]:
    """The Black-Litterman views of the config on the window's symbols (annual returns, as the
    annualised covariance), and the views dropped (on symbols not in the window)."""
    bl = pc.black_litterman
    index = {s: i for i, s in enumerate(symbols)}
    rows, q, conf, dropped = [], [], [], []
    for v in bl.views:
        names = [v.asset] + ([v.versus] if v.versus else [])
        missing = [n for n in names if n not in index]
        if missing:
            dropped.append(f"{v.kind} view on {', '.join(names)}: {', '.join(missing)} not in the window")
            continue
        p = np.zeros(len(symbols))
        p[index[v.asset]] = 1.0
        if v.versus:
            p[index[v.versus]] = -1.0
        rows.append(p)
        q.append(v.expected_return)
        conf.append(v.confidence)
    views = BlackLittermanViews(np.array(rows) if rows else None, np.array(q) if rows else None,
                                tuple(conf) if rows else None, tau=bl.tau, risk_aversion=bl.risk_aversion)
    return views, dropped


@dataclass
class Optimised:
    weights: pd.DataFrame  # date, method, symbol, weight
    chains: pd.DataFrame  # method, step, tried, status, reason
    ensemble: np.ndarray
    notes: list
    walk_forward: object = None  # WalkForwardTables when portfolio.walk_forward is set


def optimise_stage(rets: Returns, cov: np.ndarray, pc: PortfolioConfig) -> Optimised:
    """Each configured method through the fallback chain, then the ensemble of their portfolios."""
    symbols = rets.qualified
    mu = rets.block.mean(axis=0) * pc.periods_per_year
    box = dict(min_weights=pc.min_weight, max_weights=pc.max_weight, risk_free_rate=pc.risk_free_rate,
               target_return=pc.target_return, target_volatility=pc.target_volatility,
               risk_aversion=pc.risk_aversion)
    views, dropped = _views(pc, symbols)
    results, chains, notes = {}, [], []
    for method in pc.methods:
        if "views" in OPTIMISERS[method].params:
            notes += [f"{method}: dropped {d}" for d in dropped]
        res = optimise_with_fallback(method, covariance=cov, expected_returns=mu, views=views, **box)
        if res.fell_back:
            log.warning("%s fell back to %s: %s", method, res.method,
                        "; ".join(f"{a.method}: {a.error}" for a in res.attempts if a.error))
        results[method] = to_host(res.weights).astype(np.float64)
        chains += [{"method": method, "step": r["step"], "tried": r["method"], "status": r["status"],
                    "reason": r["reason"]} for r in res.records()]
    component = np.vstack([w / w.sum() for w in results.values()])
    try:
        ens = to_host(ensemble_portfolio_weights(component, method=pc.ensemble,
                                                 covariance=cov if pc.ensemble == "inverse_volatility" else None,
                                                 returns=rets.block if pc.ensemble == "adaptive" else None,
                                                 periods_per_year=pc.periods_per_year))
    except (ValueError, OptimisationError) as e:
        notes.append(f"ensemble {pc.ensemble} failed ({e}); equal mix used")
        ens = component.mean(axis=0)
    results["ensemble"] = ens
    date = rets.timestamps[rets.window.rows[-1]]
    weights = pd.DataFrame([{"date": date, "method": m, "symbol": s, "weight": float(w[i])}
                            for m, w in results.items() for i, s in enumerate(symbols)])
    return Optimised(weights, pd.DataFrame(chains, columns=["method", "step", "tried", "status", "reason"]), ens, notes)


def month_end_rows(timestamps: pd.DatetimeIndex) -> np.ndarray:
    """Row index of each month's last bar (the data's last month included, even if it is not over)."""
    period = timestamps.to_period("M")
    last = ~pd.Series(period).duplicated(keep="last").to_numpy()
    return np.flatnonzero(last).astype(np.int64)


def correlation_stage(rets: Returns, pc: PortfolioConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Month-end rolling correlation over all symbols (long, upper triangle, finite) and its summary."""
    rows = month_end_rows(rets.timestamps)
    rows = rows[rows >= pc.correlation_lookback_bars]  # full windows only (row 0 has no return)
    corr = to_host(rolling_corr(rets.returns, rows, lookback=pc.correlation_lookback_bars,
                              min_periods=pc.correlation_min_periods))
    n = len(rets.symbols)
    iu, ju = np.triu_indices(n, k=1)
    dates = rets.timestamps[rows]
    vals = corr[:, iu, ju]  # (n_dates, n_pairs)
    keep = np.isfinite(vals)
    d_idx, p_idx = np.nonzero(keep)
    sym = np.asarray(rets.symbols, dtype=object)
    long = pd.DataFrame({"date": dates[d_idx], "symbol_i": sym[iu[p_idx]], "symbol_j": sym[ju[p_idx]],
                         "rho": vals[keep]})
    summary = []
    avg = to_host(average_pairwise_correlation(corr)) if len(rows) else np.zeros(0)
    for k in range(len(rows)):
        ok = np.isfinite(np.diagonal(corr[k]))  # symbols with data in the window
        ok[ok] = np.isfinite(corr[k][np.ix_(ok, ok)]).all(axis=1)  # and a value with every other one
        sub = corr[k][np.ix_(ok, ok)]
        ar = float(absorption_ratio(sub)) if ok.sum() >= 2 else np.nan
        summary.append({"date": dates[k], "n_symbols": int(ok.sum()), "average_correlation": float(avg[k]),
                        "absorption_ratio": ar})
    return long, pd.DataFrame(summary, columns=["date", "n_symbols", "average_correlation", "absorption_ratio"])


def regimes_stage(rets: Returns, pc: PortfolioConfig, backend: Backend):
    rc = pc.regimes
    feats = market_features(rets.returns, dates=rets.timestamps, vol_window_bars=rc.vol_window_bars,
                            corr_window_bars=rc.corr_window_bars, trend_window_bars=rc.trend_window_bars,
                            periods_per_year=pc.periods_per_year)
    feats.index.name = "date"
    model = kmeans_model(rc.n_clusters, seed=rc.seed, backend=backend.name, n_init=rc.n_init)
    if backend.is_gpu:
        return feats, fit_regimes(feats, model)
    # A few thousand rows of five features: scikit-learn's OpenMP threads only contend (measured on
    # a 2-core machine: 5 s with OpenMP's threads beside OpenBLAS's, 0.02 s with one thread).
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        return feats, fit_regimes(feats, model)


def risk_stage(rets: Returns, cov_annual: np.ndarray, weights: np.ndarray, pc: PortfolioConfig,
               method: str = "ensemble", *, backend: Backend | None = None,
               gpu: GpuConfig | None = None) -> pd.DataFrame:
    """Monte Carlo VaR/CVaR (per configured model and horizon) of a portfolio, per-bar moments of
    the common window (the covariance estimator's, de-annualised). The simulation runs on
    ``backend`` (routed by measured speedup with ``gpu``, the config's block; default NumPy);
    CuPy's random stream differs from NumPy's, so GPU figures agree within standard errors."""
    mc = pc.monte_carlo
    mean = rets.block.mean(axis=0)
    cov = cov_annual / pc.periods_per_year
    if backend is not None and gpu is not None:
        backend = route("montecarlo", mc.n_paths, backend, gpu)
    xp = backend.xp if backend is not None else np
    d_weights, d_mean, d_cov, d_block = (xp.asarray(a) for a in (weights, mean, cov, rets.block))
    rows = []
    for h in mc.horizons_bars:
        for model in mc.models:
            out = monte_carlo_var_cvar(d_weights, model=model, levels=mc.levels, horizon_bars=h, n_paths=mc.n_paths,
                                       seed=mc.seed, mean=d_mean, cov=d_cov, returns=d_block,
                                       dof=mc.student_t_dof if model == "student_t" else None)
            var, cvar = to_host(out["var"]), to_host(out["cvar"])
            rows += [{"method": method, "model": model, "level": lv, "horizon": h, "VaR": float(v), "CVaR": float(c)}
                     for lv, v, c in zip(mc.levels, var, cvar)]
        var, cvar = normal_var_cvar(weights, mean=mean, cov=cov, horizon_bars=h, levels=mc.levels)
        rows += [{"method": method, "model": "normal_closed_form", "level": lv, "horizon": h, "VaR": float(v),
                  "CVaR": float(c)} for lv, v, c in zip(mc.levels, var, cvar)]
    return pd.DataFrame(rows, columns=["method", "model", "level", "horizon", "VaR", "CVaR"])


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def analyse(request: PortfolioRequest, backend: Backend, bars, timer: StageTimer):
    """Every stage after loading, timed: (returns, covariance, optimised, correlation, regimes, risk)."""
    pc = request.config.portfolio
    with timer.stage("returns"):
        rets = returns_stage(bars, pc, backend)
    month_ends = int((month_end_rows(rets.timestamps) >= pc.correlation_lookback_bars).sum())
    check_portfolio(request.config, bars=len(rets.timestamps), symbols=len(rets.symbols),
                    qualified=len(rets.qualified), month_ends=month_ends, timestamps=rets.timestamps)
    with timer.stage("covariance"):
        cov = covariance_stage(rets, pc, backend, request.config.gpu)
    with timer.stage("optimise"):
        opt = optimise_stage(rets, cov, pc)
    with timer.stage("correlation"):
        corr = correlation_stage(rets, pc)
    with timer.stage("regimes"):
        regimes = regimes_stage(rets, pc, backend)
    with timer.stage("monte_carlo"):
        risk = risk_stage(rets, cov, opt.ensemble, pc, backend=backend, gpu=request.config.gpu)
    if pc.walk_forward is not None:
        # carried on opt so that analyse's tuple (and the flow's report task) keep their shape
        with timer.stage("walk_forward"):
            opt.walk_forward = walk_forward_stage(rets.prices, timestamps=rets.timestamps, symbols=rets.symbols, pc=pc)
    return rets, cov, opt, corr, regimes, risk


def analyse_task(request: PortfolioRequest, backend: Backend, bars) -> tuple[tuple, TaskRecord]:
    """:func:`analyse` as one task (in-process or on a cluster's worker): its parts and its record."""
    return scoped_task(analyse, request, backend, bars)


def _report(run: Run, state) -> PortfolioResult:
    parts, record = state.analyse
    return report_stage(run.request, run.backend, state.load_validate, *parts, {**run.timer.seconds, **record.seconds},
                        run_id=run.run_id, records=(record,))


PORTFOLIO = Pipeline("portfolio", prepare_portfolio, (
    Stage("load_validate", lambda run, state: load_stage(run.request, run.backend), io=True),
    Stage("analyse", analyse_task, args=lambda run, state: (run.request, run.backend, state.load_validate.bars),
          timed=False),
    Stage("report", _report, io=True, timed=False),
))
"""The portfolio's stages: load, the analysis (one task, on the cluster's worker when there is one:
a GPU worker or a bigger machine, not parallelism), the report."""


def run_portfolio(request: PortfolioRequest, *, run_id: str | None = None) -> PortfolioResult:
    """The whole portfolio pipeline without Prefect."""
    return run_pipeline(PORTFOLIO, request, run_id=run_id)
