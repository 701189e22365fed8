"""The backtest flow: load -> validate -> panel -> sweep (+ walk-forward) -> report, over
``alphapulse.pipelines.backtest``.

Retries belong to IO: loading and report writing retry on an ``OSError`` (``alphapulse.flows.runners.io_retry``);
the sweep and bad input do not. Caching: the sweep's result is cached (``INPUTS + TASK_SOURCE``,
persisted) under :func:`alphapulse.pipelines.backtest.compute.compute_key` (config, strategy and grid, backend and
dtype, the input files' fingerprint, the code), so a re-run on unchanged input and settings skips
the sweep and writes the same report (``cached_compute`` in its manifest). The sweep's Dask
cluster (``cluster``: in-process, local, processes, cuda or a scheduler address) is opened by the
pipeline inside its task, with a ``distributed.Client``, so the flow runs with Prefect's default
task runner. Runs with no Prefect server configured (Prefect's ephemeral mode).
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow, task
from dataclasses import replace

from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import RETRIES, RETRY_DELAY_SECONDS, io_retry
from alphapulse.pipelines import backtest
from alphapulse.pipelines.runtime.backend import Backend, choose_backend
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.runtime.stages import StageTimer


# The cluster (``cluster``: "config" = backtest.cluster, else cluster.address) is the pipeline's
# own distributed.Client inside compute_task: one mechanism, so no DaskTaskRunner here.
@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def load_bars_task(request: backtest.BacktestRequest, backend: Backend):
    return backtest.load_stage(request, backend)


@task(cache_policy=NO_CACHE)
def panel_task(bars, backend: Backend):
    return backtest.panel_stage(bars, backend)


# Only ``cache_key`` and the task's source decide a hit: hashing the panel would cost more than the
# key, and the request holds the output folder.
@task(persist_result=True, cache_policy=(INPUTS - "prepared" - "request" - "backend") + TASK_SOURCE)
def compute_task(prepared, request: backtest.BacktestRequest, backend: Backend, cache_key: str):
    return backtest.compute_stage(prepared, request, backend)


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def write_report_task(request, backend, loaded, prepared, computed, stages, run_id):
    return backtest.report_stage(request, backend, loaded, prepared, computed, stages, run_id=run_id)


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
    from prefect.runtime import flow_run

    request = backtest.prepare_backtest(load_config(config_path), data_path=data_path, out_dir=out_dir,
                                        strategy=strategy, grid=grid, backend=backend, cluster=cluster)
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("load_validate"):
        loaded = load_bars_task(request, chosen)
    with timer.stage("panel"):
        prepared = panel_task(loaded.bars, chosen)
    state = compute_task(prepared, request, chosen, backtest.compute_key(request, chosen), return_state=True)
    computed = state.result()
    if state.name == "Cached":  # its stage times are the run's that computed it, not this run's
        computed = replace(computed, stages={}, cached=True)
    run_id = str(flow_run.get_id() or "")[:12] or None
    result = write_report_task(request, chosen, loaded, prepared, computed, {**timer.seconds, **computed.stages},
                               run_id)
    publish_report_artifacts(result.out_dir, key="backtest")
    return str(result.out_dir)
