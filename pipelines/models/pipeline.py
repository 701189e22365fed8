"""The models pipeline: features -> walk-forward training -> ensembles -> evaluation -> report.

load -> validate -> panel -> indicators + features and the forward-return target
(``alphapulse.transforms.models.features``) -> walk-forward: every model refit at every step, predictions only
out of sample (``alphapulse.transforms.models.training``; per-symbol models batched over symbols in xp by
``alphapulse.transforms.models.batched``, pooled models from the ``alphapulse.pipelines.models.estimators``
factory: scikit-learn on the CPU, cuML on the GPU) -> ensembles on the device
(``alphapulse.transforms.models.ensemble``) -> per-date
information coefficient and hit rate per model, ensemble and step
(``alphapulse.transforms.models.scoring``) -> the chosen ensemble's signal (long where its score is above
``models.signal.long_threshold`` by more than rounding noise, 64 epsilons of the dtype; flat
elsewhere and before the first test window) through the
backtest engine (``alphapulse.transforms.backtest.engine``, TARGET rule) -> report. Each stage is a plain function;
:func:`run_models` chains them without Prefect, ``alphapulse.flows.models`` under a flow.

Report files
------------
- ``predictions.parquet``: ``timestamp, symbol``, one column per model (its raw prediction: a
  forward return, or P(up) for the logistic model), ``ensemble_<method>`` per ensemble (a
  cross-sectional z-score) and ``target`` (the realised forward return; NaN for the last
  ``horizon_bars`` rows, whose future is unknown: those are the live predictions). Rows of the
  out-of-sample period only.
- ``model_scores.parquet``: per model/ensemble and step (``step = -1``: the whole out-of-sample
  period): test window, ``ic_mean, ic_std, ic_tstat, ic_tstat_nonoverlap, ic_positive, n_dates,
  hit_rate, n_predictions`` and fitted symbols (per-symbol models). Fit times are the run's, not
  the result's: they are in the manifest (``fit_seconds``), so reruns give the same bytes.
- ``ensemble_weights.parquet``: ``step, ensemble, model, weight, note``.
- ``backtest.parquet``: the signal's equal-weight portfolio metrics and those of holding every
  symbol over the same out-of-sample period (``strategy = signal | buy_and_hold``).
- ``model_<name>.npz`` / ``.skops`` / ``.ubj`` / ``.json``: the last step's fitted models
  (``alphapulse.pipelines.models.estimators.model_files``; ``write_report`` takes plain names, so they sit in the
  report folder itself, not in a subfolder).
- ``manifest.json``, ``summary.md``.
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
from alphapulse.pipelines.runtime.budget import check_models
from alphapulse.pipelines.config import Config, ModelConfig, ModelsConfig
from alphapulse.pipelines.errors import ConfigError, DataError
from alphapulse.pipelines.data.load import InputFiles, LoadedBars, inspect_input, load_bars
from alphapulse.pipelines.models.estimators import MODEL_TARGETS, estimator
from alphapulse.pipelines.models.report import ModelsResult, report_stage
from alphapulse.pipelines.data.panel import bars_to_panel
from alphapulse.pipelines.report.write import check_out_dir
from alphapulse.pipelines.data.partitions import input_fingerprint
from alphapulse.pipelines.runtime.run import Pipeline, Run, Stage, run_pipeline
from alphapulse.pipelines.runtime.stages import StageTimer, TaskRecord, request_paths, result_key, scoped_task
from alphapulse.transforms.backtest import engine as engine
from alphapulse.transforms.arrays import namespace, to_host
from alphapulse.transforms.models.batched import fit_knn, fit_logistic, fit_ridge
from alphapulse.transforms.models.ensemble import combine, ensemble_model_weights
from alphapulse.transforms.models.features import feature_panel, forward_returns
from alphapulse.transforms.indicators.registry import compute_indicators
from alphapulse.transforms.kernels import compact, valid_mask
from alphapulse.transforms.backtest.returns_metrics import metrics_from_returns
from alphapulse.transforms.models.scoring import hit_rate, ic_summary, information_coefficient
from alphapulse.transforms.models.training import ModelSpec, walk_forward, walk_forward_splits

log = logging.getLogger(__name__)

PRICE_FIELDS = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class ModelsRequest:
    """A checked request: what the CLI validates before Prefect starts."""

    config: Config
    inputs: InputFiles
    data_path: str
    out_dir: Path
    backend: str = "auto"
    cluster: str | None = None


def feature_names(mc: ModelsConfig) -> list[str]:
    """The feature names a config produces, in column order (known without data)."""
    f = mc.features
    names = [f"ret_1_lag{k}" for k in range(f.return_lags)] + [f"ret_{w}" for w in f.return_windows]
    names += [f"vol_{w}" for w in f.volatility_windows]
    names += [c for spec in f.indicator_specs() for c in spec.column_names()]
    return names + [f"rank_{n}" for n in f.rank_features]


def check_models_config(mc: ModelsConfig) -> None:
    """Cross-field checks of the ``models:`` block (one-line :class:`ConfigError` naming the keys)."""
    wf = mc.walk_forward
    base = feature_names(mc)[:len(feature_names(mc)) - len(mc.features.rank_features)]
    for name in mc.features.rank_features:
        if name not in base:
            raise ConfigError(f"models.features.rank_features: unknown feature {name!r}; known: {', '.join(base)}")
    if len(set(base)) != len(base):
        raise ConfigError("models.features: a feature is produced twice (an indicator listed twice?)")
    if mc.purge() < mc.horizon_bars:
        raise ConfigError(f"models.walk_forward.purge_bars ({mc.purge()}) must be at least models.horizon_bars "
                          f"({mc.horizon_bars}): training labels would overlap the test period")
    if wf.validation_bars and wf.validation_bars + mc.purge() >= wf.train_bars:
        raise ConfigError(f"models.walk_forward: validation_bars + purge ({wf.validation_bars + mc.purge()}) must be "
                          f"below train_bars ({wf.train_bars})")
    needs_val = [m for m in mc.ensemble.methods if m != "mean"]
    if needs_val and not wf.validation_bars:
        raise ConfigError(f"models.ensemble.methods {needs_val} need a validation slice: set "
                          f"models.walk_forward.validation_bars > 0")
    if mc.signal.ensemble not in mc.ensemble.methods:
        raise ConfigError(f"models.signal.ensemble {mc.signal.ensemble!r} is not in models.ensemble.methods "
                          f"{mc.ensemble.methods}")


def prepare_models(config: Config, *, data_path: str | None = None, out_dir: str | None = None,
                   backend: str = "auto", cluster: str | None = "config") -> ModelsRequest:
    """Resolve paths and check them and the ``models:`` block cheaply (headers, not data).

    ``cluster``: where the work runs (see :mod:`alphapulse.pipelines.runtime.cluster`); "config"
    takes ``cluster.address``."""
    mc = config.models
    data_path, out_dir = request_paths(config, data_path=data_path, out_dir=out_dir,
                                       default_out_dir=mc.out_dir, out_key="models.out_dir", backend=backend)
    check_models_config(mc)
    cluster = resolve_cluster(cluster, config)
    inputs = inspect_input(data_path, columns=config.data.columns, fmt=config.data.format)
    return ModelsRequest(config, inputs, str(data_path), check_out_dir(out_dir, inputs=[data_path]), backend,
                         cluster)


def load_stage(request: ModelsRequest, backend: Backend) -> LoadedBars:
    return load_bars(request.inputs, lib=backend.frames,
                     symbols_per_partition=request.config.data.symbols_per_partition)


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


@dataclass
class Features:
    """features (n_bars, n_symbols, n_features) and target (n_bars, n_symbols) on the device;
    prices: the panel's fields (device); names, timestamps, symbols on the host."""

    features: object
    target: object
    prices: dict
    names: list
    timestamps: pd.DatetimeIndex
    symbols: list
    start_row: int


def features_stage(bars, mc: ModelsConfig, backend: Backend) -> Features:
    """Panel -> indicators -> feature array and forward-return target."""
    panel = bars_to_panel(bars, fields=PRICE_FIELDS, dtype=backend.dtype, xp=backend.xp, order=backend.panel_order)
    f = mc.features
    ind = compute_indicators(panel.fields, f.indicator_specs()) if f.indicators else {}
    xp = backend.xp
    close = xp.ascontiguousarray(panel.fields["close"])
    ind = {k: xp.ascontiguousarray(v) for k, v in ind.items()}
    X, names = feature_panel(close, indicators=ind, return_lags=f.return_lags, return_windows=f.return_windows,
                             volatility_windows=f.volatility_windows, rank_features=f.rank_features)
    y = forward_returns(close, horizon_bars=mc.horizon_bars)
    complete = to_host(xp.isfinite(X).all(axis=2).any(axis=1))
    if not complete.any():
        raise DataError("no bar has a complete feature row: the histories are shorter than the features' lookbacks")
    timestamps = pd.DatetimeIndex(frames.to_host(panel.timestamps))
    symbols = [str(s) for s in frames.to_host(panel.symbols)]
    log.info("features: %d bars x %d symbols x %d features (%s)", *X.shape, ", ".join(names))
    return Features(X, y, panel.fields, names, timestamps, symbols, int(np.argmax(complete)))


def model_specs(mc: ModelsConfig, backend: Backend) -> list[ModelSpec]:
    """The configured models as walk-forward specs: per-symbol ones batched in xp, pooled ones
    from the factory (scikit-learn or cuML)."""
    min_rows = mc.walk_forward.min_train_rows
    specs = []
    for m in mc.models:
        specs.append(ModelSpec(m.label, m.scope, MODEL_TARGETS[m.kind], _fitter(m, backend, min_rows),
                               tuned=m.kind == "xgboost"))
    return specs


def _params(m: ModelConfig) -> dict:
    return dict(alpha=m.alpha, C=m.C, max_iter=m.max_iter, n_neighbors=m.n_neighbors, n_estimators=m.n_estimators,
                max_depth=m.max_depth, min_samples_leaf=m.min_samples_leaf, max_features=m.max_features,
                max_samples=m.max_samples, learning_rate=m.learning_rate,
                early_stopping_rounds=m.early_stopping_rounds, subsample=m.subsample,
                colsample_bytree=m.colsample_bytree, min_child_weight=m.min_child_weight, reg_lambda=m.reg_lambda,
                n_threads=m.n_threads, seed=m.seed)


def _fitter(m: ModelConfig, backend: Backend, min_rows: int):
    if m.scope == "per_symbol":
        if m.kind == "ridge":
            return lambda X, y, mask: fit_ridge(X, y, mask, alpha=m.alpha, min_rows=min_rows)
        if m.kind == "logistic":
            return lambda X, y, mask: fit_logistic(X, y, mask, C=m.C, max_iter=m.max_iter, min_rows=min_rows)
        if m.kind == "knn":
            return lambda X, y, mask: fit_knn(X, y, mask, n_neighbors=m.n_neighbors, min_rows=min_rows)
        raise ConfigError(f"model {m.label}: {m.kind} has no per-symbol form; use scope: pooled")
    return lambda X, y, **tuning: estimator(m.kind, backend=backend.name, **_params(m)).fit(X, y, **tuning)


@dataclass
class Trained:
    splits: list
    result: object  # alphapulse.transforms.models.training.WalkForwardResult


def train_stage(feats: Features, mc: ModelsConfig, backend: Backend) -> Trained:
    wf = mc.walk_forward
    splits = walk_forward_splits(feats.features.shape[0], train_bars=wf.train_bars, test_bars=wf.test_bars,
                                 purge_bars=mc.purge(), horizon_bars=mc.horizon_bars,
                                 validation_bars=wf.validation_bars, expanding=wf.expanding,
                                 start_row=feats.start_row)
    if not splits:
        raise DataError(f"no walk-forward step fits: {feats.features.shape[0]} bars, features complete from row "
                        f"{feats.start_row}, train_bars {wf.train_bars} + purge {mc.purge()}")
    log.info("walk-forward: %d steps, first test row %d", len(splits), splits[0].test_start)
    return Trained(splits, walk_forward(feats.features, feats.target, splits, model_specs(mc, backend)))


@dataclass
class Ensembles:
    scores: dict  # name -> array (n_bars, n_symbols) on the device
    weights: pd.DataFrame


def ensemble_stage(feats: Features, trained: Trained, mc: ModelsConfig) -> Ensembles:
    """Each ensemble method's z-score per (bar, symbol) over the test windows, weights fixed per step."""
    xp = namespace(feats.features)
    preds = trained.result.predictions
    names = trained.result.names
    out = {f"ensemble_{m}": xp.full(preds.shape[1:], np.nan, dtype=preds.dtype) for m in mc.ensemble.methods}
    rows = []
    for step in trained.result.steps:
        s = step.split
        val_target = feats.target[s.val_start:s.train_stop] if s.has_validation else None
        for method in mc.ensemble.methods:
            w, note = ensemble_model_weights(method, step.validation, val_target, alpha=mc.ensemble.stacking_alpha,
                                             min_symbols=mc.min_symbols)
            out[f"ensemble_{method}"][s.test_start:s.test_stop] = combine(preds[:, s.test_start:s.test_stop], w)
            shown = np.full(len(names), 1.0 / len(names)) if w is None else w
            rows += [{"step": s.step, "ensemble": method, "model": n, "weight": float(v), "note": note}
                     for n, v in zip(names, shown)]
            if note:
                log.info("step %d, ensemble %s: %s", s.step, method, note)
    return Ensembles(out, pd.DataFrame(rows, columns=["step", "ensemble", "model", "weight", "note"]))


def _score_row(pred, target, mc: ModelsConfig) -> dict:
    ic = information_coefficient(pred, target, min_symbols=mc.min_symbols)
    out = ic_summary(ic, horizon_bars=mc.horizon_bars)
    out["hit_rate"] = hit_rate(pred, target)
    xp = namespace(pred)
    out["n_predictions"] = int(xp.isfinite(pred).sum())
    return out


def evaluate_stage(feats: Features, trained: Trained, ens: Ensembles, mc: ModelsConfig) -> pd.DataFrame:
    """IC summary and hit rate per model/ensemble and step, plus the whole out-of-sample period."""
    res = trained.result
    kinds = {m.label: (m.kind, m.scope) for m in mc.models}
    series = {n: res.predictions[k] for k, n in enumerate(res.names)} | ens.scores
    first, last = trained.splits[0].test_start, trained.splits[-1].test_stop
    rows = []
    for name, pred in series.items():
        kind, scope = kinds.get(name, ("ensemble", "-"))
        for step in res.steps:
            s = step.split
            r = _score_row(pred[s.test_start:s.test_stop], feats.target[s.test_start:s.test_stop], mc)
            rows.append({"model": name, "kind": kind, "scope": scope, "step": s.step,
                         "test_start": feats.timestamps[s.test_start], "test_end": feats.timestamps[s.test_stop - 1],
                         **r, "fitted_symbols": step.fitted_symbols.get(name, -1)})
        r = _score_row(pred[first:last], feats.target[first:last], mc)
        rows.append({"model": name, "kind": kind, "scope": scope, "step": -1, "test_start": feats.timestamps[first],
                     "test_end": feats.timestamps[last - 1], **r, "fitted_symbols": -1})
    return pd.DataFrame(rows)


def backtest_stage(feats: Features, trained: Trained, ens: Ensembles, mc: ModelsConfig) -> pd.DataFrame:
    """The signal (long where the chosen ensemble's score > threshold, out of sample only) and
    buy-and-hold over the same period, through the backtest engine; equal-weight portfolio
    metrics of each."""
    sc = mc.signal
    xp = namespace(feats.features)
    score = ens.scores[f"ensemble_{sc.ensemble}"]
    first = trained.splits[0].test_start
    n_bars, n_sym = score.shape
    oos = xp.zeros((n_bars, 1), dtype=bool)
    oos[first:] = True
    # A score within rounding noise of the threshold is on it, and on it is flat: a z-score that
    # is exactly at the threshold in exact arithmetic must not go long or flat with the last bit.
    noise = 64 * float(np.finfo(score.dtype).eps) * max(1.0, abs(sc.long_threshold))
    signal = xp.where(oos & xp.isfinite(score) & (score > sc.long_threshold + noise), 1.0, 0.0)
    hold = xp.where(oos, 1.0, 0.0) + xp.zeros((1, n_sym))
    prices, n, rows = engine.compact_bars(feats.prices)
    valid = valid_mask(feats.prices["close"])
    order = "F" if prices["close"].flags.f_contiguous and not prices["close"].flags.c_contiguous else "C"
    targets = xp.stack([compact(xp.asarray(t, dtype=prices["close"].dtype, order=order), valid)
                        for t in (signal, hold)])
    bank = engine.indicator_bank([], prices, n)
    legs = xp.full((2, 5), -1, dtype=xp.int64)
    levels = xp.zeros((2, 4), dtype=xp.float64)
    _, returns, _ = engine.run_backtest(prices, n, bank=bank, legs=legs, levels=levels, mode=engine.TARGET,
                                        targets=targets, direction="long", trade_on=sc.trade_on,
                                        commission_bps=sc.commission_bps, slippage_bps=sc.slippage_bps,
                                        rows=rows, n_rows_out=n_bars, want_returns=True)
    out = []
    for c, name in enumerate(("signal", "buy_and_hold")):
        r = returns[first:, c * n_sym:(c + 1) * n_sym]
        ok = xp.isfinite(r)
        with np.errstate(invalid="ignore"):
            port = xp.where(ok.any(axis=1), xp.where(ok, r, 0.0).sum(axis=1) / xp.maximum(ok.sum(axis=1), 1), xp.nan)
        m = metrics_from_returns(port[:, None], periods_per_year=sc.periods_per_year)
        held = (signal if c == 0 else hold)[first:]
        out.append({"strategy": name, "ensemble": sc.ensemble if c == 0 else "-",
                    "start": feats.timestamps[first], "end": feats.timestamps[-1],
                    **{k: float(to_host(v)[0]) for k, v in m.items()},
                    "avg_long_fraction": float(to_host(held.mean()))})
    return pd.DataFrame(out)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def predictions_frame(feats: Features, trained: Trained, ens: Ensembles) -> pd.DataFrame:
    first = trained.splits[0].test_start
    res = trained.result
    cols = {n: to_host(res.predictions[k, first:]) for k, n in enumerate(res.names)}
    cols |= {k: to_host(v[first:]) for k, v in ens.scores.items()}
    any_pred = np.zeros(cols[res.names[0]].shape, dtype=bool)
    for v in cols.values():
        any_pred |= np.isfinite(v)
    t, s = np.nonzero(any_pred)
    order = np.lexsort((s, t))
    t, s = t[order], s[order]
    out = pd.DataFrame({"timestamp": feats.timestamps[first:][t],
                        "symbol": np.asarray(feats.symbols, dtype=object)[s]})
    for k, v in cols.items():
        out[k] = v[t, s]
    out["target"] = to_host(feats.target[first:])[t, s]
    return out


def compute_key(request: ModelsRequest, backend: Backend) -> str:
    """What :func:`analyse`'s results depend on: the config, the backend and dtype, the input
    files' fingerprint and the code. The flow's cache key."""
    return result_key(request.config.hash(), backend.name, str(backend.dtype), input_fingerprint(request.inputs),
                      roots=("alphapulse.pipelines.models.pipeline",))


def analyse(request: ModelsRequest, backend: Backend, bars, timer: StageTimer):
    """Every stage after loading, timed: (features, trained, ensembles, scores, backtest).

    Host BLAS and OpenMP run on one thread while models are fitted, combined and scored:
    OpenBLAS splits long dot and matrix-vector products (the stacking meta-model's, on many
    symbols) over threads and scikit-learn splits its OpenMP reductions, so their rounding would
    follow the machine's thread count, and a Dask worker process (one thread each) would disagree
    with an in-process run. The matrices are small (a symbol's window, a few models): one thread
    is not slower (the default config on the sample: 6.9 s, against 7.3 s on 2 threads).
    """
    from threadpoolctl import threadpool_limits

    mc = request.config.models
    check_models(request.config, bars, features=len(feature_names(mc)))
    with timer.stage("features"):
        feats = features_stage(bars, mc, backend)
    with threadpool_limits(limits=1):
        with timer.stage("walk_forward"):
            trained = train_stage(feats, mc, backend)
        with timer.stage("ensemble"):
            ens = ensemble_stage(feats, trained, mc)
        with timer.stage("evaluate"):
            scores = evaluate_stage(feats, trained, ens, mc)
    with timer.stage("backtest"):
        bt = backtest_stage(feats, trained, ens, mc)
    return feats, trained, ens, scores, bt


def analyse_task(request: ModelsRequest, backend: Backend, bars) -> tuple[tuple, TaskRecord]:
    """:func:`analyse` as one task (in-process or on a cluster's worker): its parts and its record."""
    return scoped_task(analyse, request, backend, bars)


def _report(run: Run, state) -> ModelsResult:
    parts, record = state.analyse
    cached = state.cached.get("analyse", 0) > 0
    return report_stage(run.request, run.backend, state.load_validate, *parts,
                        {**run.timer.seconds, **record.seconds}, run_id=run.run_id, cached=cached, records=(record,))


MODELS = Pipeline("models", prepare_models, (
    Stage("load_validate", lambda run, state: load_stage(run.request, run.backend), io=True),
    Stage("analyse", analyse_task, args=lambda run, state: (run.request, run.backend, state.load_validate.bars),
          key=lambda run, state: compute_key(run.request, run.backend),
          from_cache=lambda result: (result[0], result[1].without_seconds()), timed=False),
    Stage("report", _report, io=True, timed=False),
))
"""The models' stages: load, the analysis (one task, on the cluster's worker when there is one;
cached by :func:`compute_key` under Prefect), the report."""


def run_models(request: ModelsRequest, *, run_id: str | None = None) -> ModelsResult:
    """The whole models pipeline without Prefect."""
    return run_pipeline(MODELS, request, run_id=run_id)
