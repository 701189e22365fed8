"""The models flow: ``alphapulse.pipelines.models.MODELS`` (load -> features, walk-forward
training, ensembles and evaluation -> report) as Prefect tasks.

Retries belong to IO: loading and report writing retry on an ``OSError``; the arithmetic (one
coarse task: features, walk-forward, ensembles, evaluation and the signal backtest) and bad input
do not (``alphapulse.flows.runners.io_retry``). Caching: the arithmetic's result is cached (persisted)
under :func:`alphapulse.pipelines.models.pipeline.compute_key` (config, backend and dtype, the
input files' fingerprint, the code), so a re-run on unchanged input skips the walk-forward
(``cached_compute`` in the manifest). Cluster (``cluster``): as the portfolio flow, the run opens
it and the work (one task) runs on one of its workers. The report is published as Prefect
artifacts (``alphapulse.flows.artifacts``). Runs with no Prefect server configured (Prefect's
ephemeral mode).
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import run_flow
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.models import MODELS, prepare_models


@flow(name="alphapulse-models", log_prints=False)
def models_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
                backend: str = "auto", cluster: str | None = "config") -> str:
    """Features, walk-forward models, ensembles, IC and the signal's backtest; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``models.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    cluster : "config" (``cluster.address``), None or "none" (in-process), "local", "processes",
        "cuda" or a Dask scheduler address
    """
    request = prepare_models(load_config(config_path), data_path=data_path, out_dir=out_dir, backend=backend,
                             cluster=cluster)
    result = run_flow(MODELS, request)
    publish_report_artifacts(result.out_dir, key="models")
    return str(result.out_dir)
