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

One way to use a cluster: the run context (:func:`alphapulse.pipelines.runtime.run.open_run`)
opens it with :func:`open_client` (a ``distributed.Client``) and the pipelines' remote stages are
submitted to it, with or without Prefect. :func:`dask_runner_options` builds the same cluster for
Prefect's ``DaskTaskRunner`` in flows of one's own (``alphapulse.flows.runners.task_runner``); the
shipped flows do not use it. Both build local clusters from :func:`local_cluster`, so a spec means
the same cluster everywhere.
"""
from __future__ import annotations

import logging
import os
import re
from contextlib import contextmanager

from alphapulse.pipelines.errors import ArgumentError, BackendError

log = logging.getLogger(__name__)

LOCAL_KINDS = ("local", "processes", "cuda")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$")


def check_cluster_spec(spec: str | None) -> str | None:
    """``spec`` if it is None, a local kind or a scheduler address; else an :class:`ArgumentError`."""
    if spec is not None and spec not in LOCAL_KINDS and not (isinstance(spec, str) and _ADDRESS.match(spec)):
        raise ArgumentError(f"cluster must be null, 'local', 'processes', 'cuda' or a scheduler address such as "
                            f"'tcp://host:8786', not {spec!r}")
    return spec


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_cluster(spec: str | None, config) -> str | None:
    """The cluster a run uses: ``spec`` from the command line or a flow parameter, where
    ``"config"`` means the config's ``cluster.address`` and ``"none"`` (or None) in-process."""
    if spec == "config":
        spec = config.cluster.address
    if isinstance(spec, str) and spec.lower() == "none":
        spec = None
    return check_cluster_spec(spec)


def local_cluster(spec: str, *, workers: int | None = None, gpu_pool_size: str | None = None):
    """``(cluster_class, cluster_kwargs, description)`` of a local kind (see the module docstring);
    ``cluster_class`` is a dotted name, so dask-cuda is imported only by whoever starts a ``cuda``
    cluster."""
    cores = _cores()
    if spec == "local":
        n = workers or cores
        return ("distributed.LocalCluster",
                {"n_workers": 1, "threads_per_worker": n, "processes": False, "dashboard_address": None},
                {"kind": "LocalCluster (threads)", "workers": 1, "threads": n})
    if spec == "processes":
        n = workers or cores
        env = {"NUMBA_NUM_THREADS": str(max(1, cores // n)), "OMP_NUM_THREADS": "1"}
        return ("distributed.LocalCluster",
                {"n_workers": n, "threads_per_worker": 1, "processes": True, "dashboard_address": None, "env": env},
                {"kind": "LocalCluster (processes)", "workers": n, "threads": 1})
    if spec == "cuda":
        kwargs = {"dashboard_address": None, **({"n_workers": workers} if workers else {})}
        if gpu_pool_size and gpu_pool_size != "auto":
            kwargs["rmm_pool_size"] = gpu_pool_size
        return ("alphapulse.pipelines.runtime.cluster.cuda_cluster", kwargs,
                {"kind": "LocalCUDACluster", "workers": workers or "one per GPU"})
    raise ValueError(f"not a local cluster kind: {spec!r}")


def cuda_cluster(**kwargs):
    """A dask-cuda ``LocalCUDACluster`` (one worker per GPU); dask-cuda is imported here, when
    the cluster starts, never when a runner or a spec is merely built."""
    try:
        from dask_cuda import LocalCUDACluster
    except ImportError as e:
        raise BackendError(f"cluster 'cuda' needs dask-cuda (the gpu extra: pip install 'alphapulse[gpu]'): "
                           f"{e}") from None
    return LocalCUDACluster(**kwargs)


def dask_runner_options(spec: str | None, *, workers: int | None = None,
                        gpu_pool_size: str | None = None) -> dict | None:
    """Keyword arguments of Prefect's ``DaskTaskRunner`` for ``spec`` (None: no cluster, Prefect's
    default runner): ``address`` of an existing scheduler, or ``cluster_class``/``cluster_kwargs``
    of a local one, started with the flow run and closed after it."""
    if spec is None:
        return None
    if spec in LOCAL_KINDS:
        cls, kwargs, _ = local_cluster(spec, workers=workers, gpu_pool_size=gpu_pool_size)
        return {"cluster_class": cls, "cluster_kwargs": kwargs}
    return {"address": spec}


@contextmanager
def open_client(spec: str | None, *, workers: int | None = None, gpu_pool_size: str | None = None):
    """A ``distributed.Client`` for ``spec`` (see the module docstring), closed on exit; yields
    ``(client, description)``, with ``client`` None when ``spec`` is None."""
    if spec is None:
        yield None, {"kind": "in-process", "workers": 1}
        return
    import importlib

    from distributed import Client

    cluster = None
    if spec in LOCAL_KINDS:
        cls, kwargs, info = local_cluster(spec, workers=workers, gpu_pool_size=gpu_pool_size)
        module, name = cls.rsplit(".", 1)
        cluster = getattr(importlib.import_module(module), name)(**kwargs)
        if spec == "cuda":
            info["workers"] = len(cluster.workers)
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
