"""The portfolio flow: covariance, optimisers, correlation, regimes and risk, over ``pipelines.portfolio``.

Retries belong to IO: loading and report writing retry; the arithmetic (one task) does not.
Runs with no Prefect server configured (Prefect's ephemeral mode).
"""
from __future__ import annotations

import flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow, task

from flows.artifacts import publish_report_artifacts
from pipelines import portfolio
from pipelines.backend import Backend, choose_backend
from pipelines.config import load_config
from pipelines.stages import StageTimer


@task(retries=2, retry_delay_seconds=5)
def load_bars_task(request: portfolio.PortfolioRequest, backend: Backend):
    return portfolio.load_stage(request, backend)


@task
def analyse_task(request: portfolio.PortfolioRequest, backend: Backend, bars):
    timer = StageTimer()
    return portfolio.analyse(request, backend, bars, timer), timer.seconds


@task(retries=2, retry_delay_seconds=5)
def write_report_task(request, backend, loaded, parts, stages, run_id):
    return portfolio.report_stage(request, backend, loaded, *parts, stages, run_id=run_id)


@flow(name="alphapulse-portfolio", log_prints=False)
def portfolio_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
                   backend: str = "auto") -> str:
    """Covariance, optimised portfolios, correlation, regimes and VaR/CVaR; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``portfolio.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    """
    from prefect.runtime import flow_run

    request = portfolio.prepare_portfolio(load_config(config_path), data_path=data_path, out_dir=out_dir,
                                          backend=backend)
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("load_validate"):
        loaded = load_bars_task(request, chosen)
    parts, seconds = analyse_task(request, chosen, loaded.bars)
    run_id = str(flow_run.get_id() or "")[:12] or None
    result = write_report_task(request, chosen, loaded, parts, {**timer.seconds, **seconds}, run_id)
    publish_report_artifacts(result.out_dir, key="portfolio")
    return str(result.out_dir)
