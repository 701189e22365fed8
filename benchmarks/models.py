"""Models benchmark: walk-forward training and prediction of per-symbol models over the S&P 500
panel, AlphaPulse (batched over symbols) against the scikit-learn per-symbol loop, one process.

    python benchmarks/models.py [--data ../shared/data/sp500_5yr/all_stocks_5yr.csv.gz]
                                [--models ridge,logistic,knn,xgboost] [--steps N] [--repeat 1] [--blas-threads N]

What runs: the shipped config's features (17 per bar: lagged and multi-bar returns, volatility,
RSI/NATR/Williams %R/ADX/CCI, cross-sectional ranks) on every symbol of the file (505), the
5-bar forward-return target, and the config's walk-forward (rolling 504-bar train windows,
63-bar test windows, purge 5; no validation slice, so one fit per model, symbol and step on
both sides). For each model kind, every step refits a model per symbol on that symbol's
complete training rows (at least ``min_train_rows``) and predicts its test rows:

(a) AlphaPulse: ``alphapulse.transforms.models.training.walk_forward`` with ``per_symbol`` specs: all symbols'
    ``StandardScaler`` + ``Ridge`` / L2 ``LogisticRegression`` (Newton) / ``KNeighborsRegressor``
    in one batched xp pass per step (``alphapulse.transforms.models.batched``), NumPy here;
(b) the loop a researcher would write: for each step, for each symbol,
    ``make_pipeline(StandardScaler(), Ridge(alpha)).fit(X[rows], y[rows]).predict(X_test)`` (and
    ``LogisticRegression(C, max_iter)``'s ``predict_proba``, ``KNeighborsRegressor(k)``), the
    same parameters, scikit-learn's defaults otherwise.

``--models xgboost`` compares the pooled gradient-boosted trees instead (one model for all
symbols, rows of every symbol, their features standardised with the training rows' statistics):
(a) the walk-forward's XGBoost model (``alphapulse.pipelines.models.estimators.BoostedTrees``:
``xgboost.train`` on a ``QuantileDMatrix``, ``inplace_predict``), (b) the loop a researcher
would write, ``xgboost.XGBRegressor(same parameters).fit(X, y).predict(X_test)`` per step; no
validation slice here, so both boost ``n_estimators`` rounds.

The predictions are compared first (largest absolute difference over all out-of-sample
predictions; lbfgs stops at scikit-learn's default tolerance, so the logistic figures differ at
~1e-4 while the Newton solution is exact), then each side is timed (best of ``--repeat``) and
the ratio printed. The random forest is pooled (one model for all symbols, through the same
scikit-learn estimator on both sides), so it is not part of this comparison.

Results are recorded in docs/benchmarks.md ("Models").
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._machine import LoadGuard, cpu_model  # noqa: E402
from alphapulse.pipelines.runtime.backend import choose_backend  # noqa: E402
from alphapulse.pipelines.config import load_config, parse_config  # noqa: E402
from alphapulse.pipelines.data.load import inspect_input, load_bars  # noqa: E402
from alphapulse.pipelines.models.pipeline import features_stage, model_specs  # noqa: E402
from alphapulse.transforms.models.training import walk_forward, walk_forward_splits  # noqa: E402

DEFAULT_DATA = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"


def sklearn_loop(kind: str, X, y, splits, m, min_rows: int):
    """The per-symbol loop: predictions of shape (n_bars, n_symbols)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n_bars, n_sym, _ = X.shape
    pred = np.full((n_bars, n_sym), np.nan)
    for s in splits:
        for j in range(n_sym):
            Xtr, ytr = X[s.train_start:s.train_stop, j], y[s.train_start:s.train_stop, j]
            ok = np.isfinite(ytr) & np.isfinite(Xtr).all(axis=1)
            need = max(min_rows, m.n_neighbors) if kind == "knn" else min_rows
            if ok.sum() < need:
                continue
            Xq = X[s.test_start:s.test_stop, j]
            okq = np.isfinite(Xq).all(axis=1)
            if not okq.any():
                continue
            if kind == "ridge":
                model = make_pipeline(StandardScaler(), Ridge(alpha=m.alpha)).fit(Xtr[ok], ytr[ok])
                p = model.predict(Xq[okq])
            elif kind == "logistic":
                labels = (ytr[ok] > 0).astype(int)
                if labels.min() == labels.max():
                    continue
                model = make_pipeline(StandardScaler(), LogisticRegression(C=m.C, max_iter=m.max_iter))
                p = model.fit(Xtr[ok], labels).predict_proba(Xq[okq])[:, 1]
            else:
                model = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=m.n_neighbors))
                p = model.fit(Xtr[ok], ytr[ok]).predict(Xq[okq])
            pred[s.test_start:s.test_stop, j][okq] = p
    return pred


def xgboost_loop(X, y, splits, m):
    """The pooled XGBoost refit per step with the scikit-learn API: predictions (n_bars, n_symbols)."""
    import xgboost as xgb

    from alphapulse.pipelines.models.estimators import boosted_params

    params = boosted_params(max_depth=m.max_depth, learning_rate=m.learning_rate, subsample=m.subsample,
                            colsample_bytree=m.colsample_bytree, min_child_weight=m.min_child_weight,
                            reg_lambda=m.reg_lambda, n_threads=m.n_threads, seed=m.seed)
    seed, threads = params.pop("seed"), params.pop("nthread")  # the scikit-learn API's names for them
    n_bars, n_sym, n_feat = X.shape
    pred = np.full((n_bars, n_sym), np.nan)
    for s in splits:
        Xtr = X[s.train_start:s.train_stop].reshape(-1, n_feat)
        ytr = y[s.train_start:s.train_stop].reshape(-1)
        ok = np.isfinite(ytr) & np.isfinite(Xtr).all(axis=1)
        mean, std = Xtr[ok].mean(axis=0), Xtr[ok].std(axis=0)
        std = np.where(std > 0, std, 1.0)
        model = xgb.XGBRegressor(n_estimators=m.n_estimators, random_state=seed, n_jobs=threads, **params)
        model.fit((Xtr[ok] - mean) / std, ytr[ok])
        Xq = X[s.test_start:s.test_stop].reshape(-1, n_feat)
        okq = np.isfinite(Xq).all(axis=1)
        out = np.full(len(Xq), np.nan)
        out[okq] = model.predict((Xq[okq] - mean) / std)
        pred[s.test_start:s.test_stop] = out.reshape(-1, n_sym)
    return pred


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--models", default="ridge,logistic,knn")
    ap.add_argument("--steps", type=int, default=0, help="only the first N walk-forward steps (0: all)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=0,
                    help="limit BLAS/OpenMP threads of both sides (threadpoolctl; 0: the libraries' defaults)")
    args = ap.parse_args()
    if args.blas_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.blas_threads)
    kinds = args.models.split(",")
    base = load_config(None)
    cfg = parse_config({**base.model_dump(mode="json", by_alias=True),
                        "data": {"columns": {"timestamp": "date", "symbol": "Name"}},
                        "models": {**base.models.model_dump(mode="json", by_alias=True),
                                   "models": [{"kind": k, "scope": "pooled"} if k == "xgboost" else {"kind": k}
                                              for k in kinds],
                                   "walk_forward": {**base.models.walk_forward.model_dump(), "validation_bars": 0}}})
    mc = cfg.models
    backend = choose_backend(cfg.gpu, override="cpu")
    t0 = time.perf_counter()
    loaded = load_bars(inspect_input(args.data, columns=cfg.data.columns, fmt="auto"), lib=backend.frames)
    t_load = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = features_stage(loaded.bars, mc, backend)
    t_feat = time.perf_counter() - t0
    X, y = feats.features, feats.target
    wf = mc.walk_forward
    splits = walk_forward_splits(X.shape[0], train_bars=wf.train_bars, test_bars=wf.test_bars, purge_bars=mc.purge(),
                                 horizon_bars=mc.horizon_bars, expanding=wf.expanding, start_row=feats.start_row)
    if args.steps:
        splits = splits[:args.steps]
    specs = model_specs(mc, backend)
    import sklearn

    print(f"machine: {cpu_model()}, {platform.machine()}, python {platform.python_version()}, numpy {np.__version__}, "
          f"scikit-learn {sklearn.__version__}, BLAS threads {args.blas_threads or 'default'}")
    print(f"data: {args.data}: {X.shape[1]} symbols x {X.shape[0]} bars, {X.shape[2]} features, float64 "
          f"(load {t_load:.1f} s, features {t_feat:.2f} s)")
    print(f"walk-forward: {len(splits)} steps, train {wf.train_bars}, test {wf.test_bars}, purge {mc.purge()}, "
          f"min_train_rows {wf.min_train_rows}")
    if "xgboost" in kinds:
        import xgboost  # noqa: F401  (imported before the clocks: the first side would pay for it)
    totals = {"alphapulse": 0.0, "sklearn": 0.0}
    for spec, m in zip(specs, mc.models):
        ours, best_ours = None, np.inf
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ours = walk_forward(X, y, splits, [spec], keep_models="none").predictions[0]
            best_ours = min(best_ours, time.perf_counter() - t0)
        best_peer, peer = np.inf, None
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            peer = (xgboost_loop(X, y, splits, m) if m.kind == "xgboost"
                    else sklearn_loop(m.kind, X, y, splits, m, wf.min_train_rows))
            best_peer = min(best_peer, time.perf_counter() - t0)
        both = np.isfinite(ours) & np.isfinite(peer)
        same_support = np.array_equal(np.isfinite(ours), np.isfinite(peer))
        diff = float(np.abs(ours[both] - peer[both]).max())
        extra = ""
        if m.kind == "logistic":
            extra = f", same side of 0.5: {np.mean((ours[both] > 0.5) == (peer[both] > 0.5)):.6f}"
        if m.kind == "knn":
            extra = f", identical: {np.mean(ours[both] == peer[both]):.6f} (rest within {diff:.1e})"
        print(f"{m.kind:>9}: {int(both.sum()):,} predictions, same rows predicted: {same_support}, "
              f"max |diff| {diff:.2e}{extra}")
        peer_name = "XGBRegressor loop" if m.kind == "xgboost" else "scikit-learn loop"
        print(f"{'':>9}  AlphaPulse {best_ours:8.2f} s   {peer_name} {best_peer:8.2f} s   "
              f"ratio {best_peer / best_ours:6.1f}x")
        totals["alphapulse"] += best_ours
        totals["sklearn"] += best_peer
    print(f"{'all':>9}: AlphaPulse {totals['alphapulse']:8.2f} s   scikit-learn loop {totals['sklearn']:8.2f} s   "
          f"ratio {totals['sklearn'] / totals['alphapulse']:6.1f}x")
    return 0


if __name__ == "__main__":
    with LoadGuard():
        sys.exit(main())
