"""Dask clusters for sharded work, opened from the config's ``cluster`` value.

- ``None``: no cluster; the caller runs its tasks in-process, one after the other (each task is
  itself parallel: Numba threads on the CPU, the device on the GPU).
- ``"local"``: a ``distributed.LocalCluster`` of threads in this process (one worker,
  ``workers`` threads). Each task's Numba kernels then get ``cores / threads`` threads.
- ``"processes"``: a ``LocalCluster`` of ``workers`` single-threaded worker processes, each told
  to use ``cores / workers`` Numba threads (``NUMBA_NUM_THREADS``).
- ``"cuda"``: a dask-cuda ``LocalCUDACluster``, one worker process per GPU (dask-cuda is imported
  only here, so a CPU machine never imports it).
- ``"tcp://host:port"`` (or another Dask address): an existing scheduler; its workers must have
  this package installed.

A ``distributed.Client`` is used directly (not Prefect's ``DaskTaskRunner``), so the same code
shards work with or without Prefect.
"""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager

log = logging.getLogger(__name__)

LOCAL_KINDS = ("local", "processes", "cuda")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")


def check_cluster_spec(spec: str | None) -> str | None:
    """``spec`` if it is None, a local kind or a scheduler address; else a ``ValueError``."""
    if spec is not None and spec not in LOCAL_KINDS and not (isinstance(spec, str) and _ADDRESS.match(spec)):
        raise ValueError(f"cluster must be null, 'local', 'processes', 'cuda' or a scheduler address such as "
                         f"'tcp://host:8786', not {spec!r}")
    return spec


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def open_client(spec: str | None, *, workers: int | None = None, gpu_pool_size: str | None = None):
    """A ``distributed.Client`` for ``spec`` (see the module docstring), closed on exit; yields
    ``(client, description)``, with ``client`` None when ``spec`` is None."""
    if spec is None:
        yield None, {"kind": "in-process", "workers": 1}
        return
    from distributed import Client, LocalCluster

    cores = _cores()
    cluster = None
    if spec == "local":
        n = workers or cores
        cluster = LocalCluster(n_workers=1, threads_per_worker=n, processes=False, dashboard_address=None)
        info = {"kind": "LocalCluster (threads)", "workers": 1, "threads": n}
    elif spec == "processes":
        n = workers or cores
        env = {"NUMBA_NUM_THREADS": str(max(1, cores // n)), "OMP_NUM_THREADS": "1"}
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None, env=env)
        info = {"kind": "LocalCluster (processes)", "workers": n, "threads": 1}
    elif spec == "cuda":
        from dask_cuda import LocalCUDACluster

        kwargs = {"n_workers": workers} if workers else {}
        if gpu_pool_size and gpu_pool_size != "auto":
            kwargs["rmm_pool_size"] = gpu_pool_size
        cluster = LocalCUDACluster(dashboard_address=None, **kwargs)
        info = {"kind": "LocalCUDACluster", "workers": len(cluster.workers)}
    else:
        info = {"kind": "scheduler", "address": spec}
    try:
        client = Client(cluster if cluster is not None else spec)
        if cluster is None:
            info["workers"] = len(client.scheduler_info().get("workers", {}))
        log.info("dask cluster: %s", ", ".join(f"{k} {v}" for k, v in info.items()))
        try:
            yield client, info
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close()


def worker_threads(client) -> int:
    """Threads across the client's workers (1 without a client)."""
    if client is None:
        return 1
    workers = client.scheduler_info().get("workers", {})
    return max(1, sum(int(w.get("nthreads", 1)) for w in workers.values()))
