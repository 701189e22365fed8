"""The portfolio flow: ``alphapulse.pipelines.portfolio.PORTFOLIO`` (load -> covariance,
optimisers, correlation, regimes and risk -> report) as Prefect tasks.

Retries belong to IO: loading and report writing retry on an ``OSError``; the arithmetic (one
task) and bad input do not (``alphapulse.flows.runners.io_retry``). Cluster (``cluster``): the run opens
it and the analysis runs on one of its workers (it is one task, so a cluster buys a GPU worker
(``cuda``) or a bigger machine, not parallelism), as without Prefect. No caching: the input is one
panel, loaded and analysed in seconds. Runs with no Prefect server configured (Prefect's
ephemeral mode).
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import run_flow
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.portfolio import PORTFOLIO, prepare_portfolio


@flow(name="alphapulse-portfolio", log_prints=False)
def portfolio_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
                   backend: str = "auto", cluster: str | None = "config", walk_forward: bool = False) -> str:
    """Covariance, optimised portfolios, correlation, regimes and VaR/CVaR; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``portfolio.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    cluster : "config" (``cluster.address``), None or "none" (in-process), "local", "processes",
        "cuda" or a Dask scheduler address
    walk_forward : also backtest every method out of sample (the config's ``portfolio.walk_forward``
        block, or its defaults when the config has none)
    """
    request = prepare_portfolio(load_config(config_path), data_path=data_path, out_dir=out_dir, backend=backend,
                                cluster=cluster, walk_forward=walk_forward)
    result = run_flow(PORTFOLIO, request)
    publish_report_artifacts(result.out_dir, key="portfolio")
    return str(result.out_dir)
