"""The models flow: features, walk-forward training, ensembles and evaluation, over ``alphapulse.pipelines.models.pipeline``.

Retries belong to IO: loading and report writing retry on an ``OSError``; the arithmetic (one
coarse task: features, walk-forward, ensembles, evaluation and the signal backtest) and bad input
do not (``alphapulse.flows.runners.io_retry``). Caching: the arithmetic's result is cached (``INPUTS +
TASK_SOURCE``, persisted) under :func:`alphapulse.pipelines.models.pipeline.compute_key` (config, backend and
dtype, the input files' fingerprint, the code), so a re-run on unchanged input skips the
walk-forward (``cached_compute`` in the manifest). Cluster (``cluster``): as the portfolio flow,
the three tasks run on Prefect's ``DaskTaskRunner`` (a sub-flow with the runner chosen at run
time); the work is one task, so a cluster buys a GPU worker (``cuda``) or a bigger machine. The
report is published as Prefect artifacts (``alphapulse.flows.artifacts``). Runs with no Prefect server
configured (Prefect's ephemeral mode).
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import RETRIES, RETRY_DELAY_SECONDS, io_retry, task_runner
from alphapulse.pipelines.models import pipeline as modelling
from alphapulse.pipelines.runtime.backend import Backend, choose_backend
from alphapulse.pipelines.runtime.cluster import resolve_cluster
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.runtime.stages import StageTimer


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def load_bars_task(request: modelling.ModelsRequest, backend: Backend):
    return modelling.load_stage(request, backend)


# Only ``cache_key`` and the task's source decide a hit: the bars are not hashed (the key holds the
# input files' fingerprint), and the request holds the output folder.
@task(persist_result=True, cache_policy=(INPUTS - "request" - "backend" - "loaded") + TASK_SOURCE)
def analyse_task(request: modelling.ModelsRequest, backend: Backend, loaded, cache_key: str):
    timer = StageTimer()
    return modelling.analyse(request, backend, loaded.bars, timer), timer.seconds


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def write_report_task(request, backend, loaded, analysed, stages, run_id, cached):
    parts, seconds = analysed
    # a cached result's stage times are the run's that computed it, not this run's
    return modelling.report_stage(request, backend, loaded, *parts, {**stages, **({} if cached else seconds)},
                                  run_id=run_id, cached=cached)


@flow(name="alphapulse-models-on-cluster", log_prints=False)
def models_on_cluster(data_path: str | None, out_dir: str | None, config_path: str | None, backend: str) -> str:
    """The models flow's work with its tasks on a Dask cluster (the task runner is set by
    :func:`models_flow` with ``with_options``)."""
    return _models(data_path, out_dir, config_path, backend, on_cluster=True)


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
    config = load_config(config_path)
    runner, _ = task_runner(resolve_cluster(cluster, config), config)
    if runner is None:
        return _models(data_path, out_dir, config_path, backend, on_cluster=False)
    return models_on_cluster.with_options(task_runner=runner)(data_path, out_dir, config_path, backend)


def _models(data_path, out_dir, config_path, backend, *, on_cluster: bool) -> str:
    from prefect.runtime import flow_run

    request = modelling.prepare_models(load_config(config_path), data_path=data_path, out_dir=out_dir,
                                       backend=backend)
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    key = modelling.compute_key(request, chosen)
    run_id = str(flow_run.get_id() or "")[:12] or None
    if on_cluster:  # chained futures: the bars go from worker to worker
        loaded = load_bars_task.submit(request, chosen)
        future = analyse_task.submit(request, chosen, loaded, key)
        future.wait()
        state = future.state
    else:
        with timer.stage("load_validate"):
            loaded = load_bars_task(request, chosen)
        state = analyse_task(request, chosen, loaded, key, return_state=True)
    cached = state.name == "Cached"
    report_args = (request, chosen, loaded, state.result(), timer.seconds, run_id, cached)
    result = write_report_task.submit(*report_args).result() if on_cluster else write_report_task(*report_args)
    publish_report_artifacts(result.out_dir, key="models", main_table="model_scores.parquet")
    return str(result.out_dir)
