"""The daily flow: plan -> one task per partition (load, validate, indicators, part file) -> report,
over ``alphapulse.pipelines.daily.pipeline``.

Cluster (``cluster``: "config", None/"none", "local", "processes", "cuda" or a scheduler address):
with one, the partition tasks run on Prefect's ``DaskTaskRunner`` (a sub-flow with the runner
chosen at run time, ``flow.with_options``), one task per partition; without, they run in-process
one after the other, so memory stays bounded by one partition.

Retries belong to IO: planning, a partition (whose loading or part file failed with an
``OSError``) and report writing retry; arithmetic and bad input do not (``alphapulse.flows.runners.io_retry``).
A failed run's state message names the stage, the partition and the cause.

Caching: a partition's results are cached (``INPUTS + TASK_SOURCE``, persisted) under a key of the
config hash, the backend and dtype, and the input files' fingerprint (path, size, mtime_ns) with
the partition's symbols, so a re-run on unchanged input skips finished partitions (their task
runs are 'Cached') and a changed file recomputes. The part files themselves live beside Prefect's
results (``alphapulse.flows.runners.parts_dir``) and are hard-linked into each report.
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from dataclasses import replace
from pathlib import Path

from prefect import flow, task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import RETRIES, RETRY_DELAY_SECONDS, io_retry, parts_dir, task_runner
from alphapulse.pipelines.daily import pipeline as daily
from alphapulse.pipelines.runtime.backend import Backend, choose_backend
from alphapulse.pipelines.runtime.cluster import resolve_cluster
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.data.partitions import Partition
from alphapulse.pipelines.runtime.stages import StageTimer


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def plan_task(request: daily.DailyRequest) -> list[Partition]:
    return daily.plan_stage(request)


# Only ``cache_key`` (config hash, backend, input fingerprint) and the task's source decide a hit:
# the request holds the output folder, and a Backend's or a path's hash is not what matters.
@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, persist_result=True,
      cache_policy=(INPUTS - "request" - "backend" - "part" - "total" - "dest") + TASK_SOURCE,
      task_run_name="partition-{part.index}")
def partition_task(request: daily.DailyRequest, backend: Backend, part: Partition, total: int, dest: str,
                   cache_key: str) -> daily.PartitionResult:
    return daily.compute_partition(request, backend, part, total=total, dest=dest)


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def write_report_task(request, backend, parts, stages, run_id, cluster, cached):
    return daily.report_stage(request, backend, parts, stages, run_id=run_id, cluster=cluster, cached=cached)


def _daily(data_path, out_dir, config_path, backend, spec, cluster_info, on_cluster: bool) -> str:
    from prefect.runtime import flow_run

    request = daily.prepare_daily(load_config(config_path), data_path=data_path, out_dir=out_dir, backend=backend,
                                  cluster=spec or "none")
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("plan"):
        plan = plan_task(request)
    store = parts_dir()

    def args(part):
        key = daily.partition_key(request, chosen, part)
        return request, chosen, part, len(plan), str(store / f"{key}.parquet"), key

    if on_cluster:  # all at once: the scheduler runs as many as there are worker threads
        futures = [partition_task.submit(*args(p)) for p in plan]
        for f in futures:
            f.wait()
        states = [f.state for f in futures]
    else:  # one after the other: one partition in memory at a time, stopping at the first failure
        states = []
        for p in plan:
            states.append(partition_task(*args(p), return_state=True))
            if not states[-1].is_completed():
                break
    parts = [s.result() for s in states]  # raises the first failure (its message names stage and partition)
    # a cached result whose part file was removed since (a cleaned cache folder): compute again
    for i, (r, p) in enumerate(zip(parts, plan)):
        if not Path(r.path).exists():
            states[i] = partition_task.with_options(refresh_cache=True)(*args(p), return_state=True)
            parts[i] = states[i].result()
    cached = [s.name == "Cached" for s in states]
    # a cached partition's stage times are the run's that computed it: not this run's
    parts = [replace(r, seconds={}) if c else r for r, c in zip(parts, cached)]
    run_id = str(flow_run.get_id() or "")[:12] or None
    result = write_report_task(request, chosen, parts, timer.seconds, run_id, cluster_info, sum(cached))
    publish_report_artifacts(result.out_dir, key="daily")
    return str(result.out_dir)


@flow(name="alphapulse-daily-on-cluster", log_prints=False)
def daily_on_cluster(data_path: str | None, out_dir: str | None, config_path: str | None, backend: str,
                     cluster: str, cluster_info: dict) -> str:
    """The daily flow's work with its tasks on a Dask cluster (the task runner is set by
    :func:`daily_flow` with ``with_options``)."""
    return _daily(data_path, out_dir, config_path, backend, cluster, cluster_info, on_cluster=True)


@flow(name="alphapulse-daily", log_prints=False)
def daily_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
               backend: str = "auto", cluster: str | None = "config") -> str:
    """Daily indicators for every symbol; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``report.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    cluster : "config" (``cluster.address``), None or "none" (in-process), "local", "processes",
        "cuda" or a Dask scheduler address
    """
    config = load_config(config_path)
    spec = resolve_cluster(cluster, config)
    runner, info = task_runner(spec, config)
    if runner is None:
        return _daily(data_path, out_dir, config_path, backend, None, info, on_cluster=False)
    return daily_on_cluster.with_options(task_runner=runner)(data_path, out_dir, config_path, backend, spec, info)
