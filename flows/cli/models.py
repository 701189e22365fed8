"""``alphapulse models``: features, walk-forward models, ensembles and the signal's backtest -> report.

Arguments, the config and the input are checked (``alphapulse.pipelines.models.pipeline.prepare_models``) before
Prefect is imported.
"""
from __future__ import annotations

import argparse
import time

from alphapulse.flows.cli.options import add_paths, add_run_options

_HELP = """\
features (models.features): one-bar returns at lags, multi-bar returns, rolling volatility,
  indicator outputs (scale-free) and per-date cross-sectional ranks, all known at each close;
  target: the return over the next models.horizon_bars bars.
models (models.models): ridge, logistic, knn (scope per_symbol: one model per symbol, batched
  over symbols; or pooled) and random_forest (pooled: one model over all symbols' rows);
  scikit-learn on the CPU, cuML on the GPU.
walk-forward (models.walk_forward): rolling or expanding train windows, a purge of at least
  horizon_bars bars before each test window, a validation slice at the end of each train window;
  every model refit at every step; predictions only out of sample.
ensembles (models.ensemble): mean, weighted (by validation IC), stacking (ridge meta-model on
  the validation predictions) of the models' per-date z-scores.
signal (models.signal): long where the chosen ensemble's score > long_threshold, through the
  backtest engine, against buy-and-hold over the same period.

report (--out): predictions.parquet, model_scores.parquet, ensemble_weights.parquet,
  backtest.parquet, model_<name>.json/.npz/.skops (last step's models), rejected.parquet
  (if any), manifest.json, summary.md
"""


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="features, walk-forward models, ensembles, IC and signal backtest -> report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_HELP,
                       description="Load and validate bars, build features, train the configured models "
                                   "walk-forward (out-of-sample predictions for every symbol and date), combine "
                                   "them into ensembles, score them (IC, hit rate) and backtest the ensemble's "
                                   "signal; write a report folder.")
    add_paths(m, out_key="models.out_dir")
    add_run_options(m, block="models",
                    cluster_help="where the work runs: none (in-process), local (threads), processes, cuda "
                                 "(dask-cuda) or a Dask scheduler address (default: cluster.address in the config)")


def run(args) -> int:
    from alphapulse.flows.cli.dispatch import print_report, run_pipeline_command

    start = time.perf_counter()
    manifest, out_dir = run_pipeline_command("models", args)
    print_report(manifest, out_dir, time.perf_counter() - start)
    return 0


