"""The portfolio flow: covariance, optimisers, correlation, regimes and risk, over ``alphapulse.pipelines.portfolio.pipeline``.

Retries belong to IO: loading and report writing retry on an ``OSError``; the arithmetic (one
task) and bad input do not (``alphapulse.flows.runners.io_retry``). Cluster (``cluster``): with one, the
three tasks run on Prefect's ``DaskTaskRunner`` (a sub-flow with the runner chosen at run time),
the bars passed from worker to worker, never through the flow; the arithmetic is one task, so a
cluster buys a GPU worker (``cuda``) or a bigger machine, not parallelism. No caching: the input
is one panel, loaded and analysed in seconds. Runs with no Prefect server configured (Prefect's
ephemeral mode).
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import RETRIES, RETRY_DELAY_SECONDS, io_retry, task_runner
from alphapulse.pipelines.portfolio import pipeline as portfolio
from alphapulse.pipelines.runtime.backend import Backend, choose_backend
from alphapulse.pipelines.runtime.cluster import resolve_cluster
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.runtime.stages import StageTimer


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def load_bars_task(request: portfolio.PortfolioRequest, backend: Backend):
    return portfolio.load_stage(request, backend)


@task(cache_policy=NO_CACHE)
def analyse_task(request: portfolio.PortfolioRequest, backend: Backend, loaded):
    timer = StageTimer()
    return portfolio.analyse(request, backend, loaded.bars, timer), timer.seconds


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def write_report_task(request, backend, loaded, analysed, stages, run_id):
    parts, seconds = analysed
    return portfolio.report_stage(request, backend, loaded, *parts, {**stages, **seconds}, run_id=run_id)


@flow(name="alphapulse-portfolio-on-cluster", log_prints=False)
def portfolio_on_cluster(data_path: str | None, out_dir: str | None, config_path: str | None,
                         backend: str) -> str:
    """The portfolio flow's work with its tasks on a Dask cluster (the task runner is set by
    :func:`portfolio_flow` with ``with_options``)."""
    return _portfolio(data_path, out_dir, config_path, backend, on_cluster=True)


@flow(name="alphapulse-portfolio", log_prints=False)
def portfolio_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
                   backend: str = "auto", cluster: str | None = "config") -> str:
    """Covariance, optimised portfolios, correlation, regimes and VaR/CVaR; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``portfolio.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    cluster : "config" (``cluster.address``), None or "none" (in-process), "local", "processes",
        "cuda" or a Dask scheduler address
    """
    config = load_config(config_path)
    runner, _ = task_runner(resolve_cluster(cluster, config), config)
    if runner is None:
        return _portfolio(data_path, out_dir, config_path, backend, on_cluster=False)
    return portfolio_on_cluster.with_options(task_runner=runner)(data_path, out_dir, config_path, backend)


def _portfolio(data_path, out_dir, config_path, backend, *, on_cluster: bool) -> str:
    from prefect.runtime import flow_run

    request = portfolio.prepare_portfolio(load_config(config_path), data_path=data_path, out_dir=out_dir,
                                          backend=backend)
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    run_id = str(flow_run.get_id() or "")[:12] or None
    if on_cluster:  # chained futures: the bars go from worker to worker
        loaded = load_bars_task.submit(request, chosen)
        analysed = analyse_task.submit(request, chosen, loaded)
        result = write_report_task.submit(request, chosen, loaded, analysed, timer.seconds, run_id).result()
    else:
        with timer.stage("load_validate"):
            loaded = load_bars_task(request, chosen)
        analysed = analyse_task(request, chosen, loaded)
        result = write_report_task(request, chosen, loaded, analysed, timer.seconds, run_id)
    publish_report_artifacts(result.out_dir, key="portfolio")
    return str(result.out_dir)
