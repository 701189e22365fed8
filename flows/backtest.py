"""The backtest flow: ``alphapulse.pipelines.backtest.BACKTEST`` (load -> validate -> panel ->
sweep (+ walk-forward) -> report) as Prefect tasks.

Retries belong to IO: loading and report writing retry on an ``OSError`` (``alphapulse.flows.runners.io_retry``);
the sweep and bad input do not. Caching: the sweep's result is cached (persisted) under
:func:`alphapulse.pipelines.backtest.compute.compute_key` (config, strategy and grid, backend and
dtype, the input files' fingerprint, the code), so a re-run on unchanged input and settings skips
the sweep and writes the same report (``cached_compute`` in its manifest). The run opens the
request's Dask cluster (``cluster``: in-process, local, processes, cuda or a scheduler address)
and the sweep shards its symbol blocks over it, as without Prefect. Runs with no Prefect server
configured (Prefect's ephemeral mode).
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import run_flow
from alphapulse.pipelines.backtest import BACKTEST, prepare_backtest
from alphapulse.pipelines.config import load_config


@flow(name="alphapulse-backtest", log_prints=False)
def backtest_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
                  strategy: str | None = None, grid: str | None = None, backend: str = "auto",
                  cluster: str | None = "config") -> str:
    """One strategy over every (symbol, parameter combination); returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``backtest.out_dir`` from the config
    config_path : YAML config; default the shipped config
    strategy : a built-in strategy; default ``backtest.strategy``
    grid : parameter grid, e.g. ``"fast=5:50:5,slow=20:200:10"``; default ``backtest.grid``
    backend : "auto", "cpu" or "gpu"
    cluster : "config" (``backtest.cluster``), None (in-process), "local", "processes", "cuda" or
        a Dask scheduler address
    """
    request = prepare_backtest(load_config(config_path), data_path=data_path, out_dir=out_dir, strategy=strategy,
                               grid=grid, backend=backend, cluster=cluster)
    result = run_flow(BACKTEST, request)
    publish_report_artifacts(result.out_dir, key="backtest")
    return str(result.out_dir)
