"""A run and the pipelines' stage lists: each pipeline declared once, run by every runner.

- :class:`Run`: what a run holds (its request and config, the backend chosen, the tracker and
  the stage timer, the Dask client of its cluster, its id), made once by :func:`open_run` and
  passed to every stage; the tracker is also the current context's
  (:func:`alphapulse.pipelines.runtime.stages.tracking`), where routing and the out-of-memory
  handler find it.
- :class:`Stage` and :class:`Pipeline`: a pipeline is its ``prepare`` function and its stages in
  order. A stage is a plain function; a *remote* stage (``args`` given) is a picklable function
  of plain arguments that runs on the run's cluster when it has one, once or once per *unit*
  (``units``: the daily partitions), and returns its result with its
  :class:`~alphapulse.pipelines.runtime.stages.TaskRecord`.
- :func:`run_pipeline`: the in-process runner (the CLI's ``--no-prefect``, ``ap.run`` and the
  tests); ``alphapulse.flows.runners.run_flow`` runs the same list as Prefect tasks, adding retries on
  IO stages, caching where a stage has a ``key`` and artifacts.

One cluster mechanism for every pipeline and runner: :func:`open_run` opens the request's cluster
(:func:`alphapulse.pipelines.runtime.cluster.open_client`, a ``distributed.Client``) and remote
stages are submitted to it, with or without Prefect; results are the same bytes in-process and on
any cluster.
"""
from __future__ import annotations

import logging
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable

from alphapulse.pipelines.runtime.backend import Backend, choose_backend
from alphapulse.pipelines.runtime.cluster import open_client, worker_threads
from alphapulse.pipelines.runtime.stages import RunTracker, StageTimer, tracking

log = logging.getLogger(__name__)


@dataclass
class Run:
    """One run's context.

    Attributes
    ----------
    request : the pipeline's checked request (``config``, ``backend`` asked for, ``cluster`` spec,
        paths)
    backend : the :class:`Backend` chosen
    tracker, timer : the run's :class:`RunTracker` and its :class:`StageTimer`
    client : the ``distributed.Client`` of the run's cluster, None in-process
    cluster : the cluster's description for the manifest (``kind``, ``workers``, ...)
    run_id : the flow run's id under Prefect, None for a new one
    scratch : where remote stages write their files (a part-file folder)
    """

    request: Any
    backend: Backend
    tracker: RunTracker
    timer: StageTimer
    client: Any = None
    cluster: dict | None = None
    run_id: str | None = None
    scratch: Any = None

    @property
    def config(self):
        return self.request.config

    @property
    def threads(self) -> int:
        """Worker threads of the cluster (1 in-process)."""
        return worker_threads(self.client)

    def stage(self, name: str):
        """Time the block as stage ``name`` of the run."""
        return self.timer.stage(name)

    def call(self, fn: Callable, *args):
        """``fn(*args)`` on the cluster (in-process without one)."""
        if self.client is None:
            return fn(*args)
        return self.client.submit(fn, *args, pure=False).result()

    def map(self, fn: Callable, arguments: list[tuple]) -> list:
        """``fn(*a)`` for each ``a`` of ``arguments``: all at once on the cluster, one after the
        other in-process (one unit in memory at a time, stopping at the first failure); results
        in the order of ``arguments``."""
        if self.client is None:
            return [fn(*a) for a in arguments]
        futures = [self.client.submit(fn, *a, pure=False) for a in arguments]
        return [f.result() for f in futures]


@contextmanager
def open_run(request, *, run_id: str | None = None, scratch=None, cluster: bool = True):
    """The run of ``request``: its tracker current in the block, the backend chosen (stage
    ``backend``), the utilisation sampler started if the config asks, and the request's cluster
    opened (stage ``cluster_start``, when ``request.cluster`` names one and ``cluster`` is True)
    and closed on exit."""
    config = request.config
    with ExitStack() as stack:
        tracker = stack.enter_context(tracking())
        timer = StageTimer(tracker)
        with timer.stage("backend"):
            backend = choose_backend(config.gpu, override=request.backend)
            tracker.attach(config.gpu, backend)  # GPU-seconds, and the sampler when monitoring asks
        try:
            client, info = None, {"kind": "in-process", "workers": 1}
            spec = getattr(request, "cluster", None) if cluster else None
            if spec is not None:
                with timer.stage("cluster_start"):
                    client, info = stack.enter_context(open_client(
                        spec, workers=_workers(request), gpu_pool_size=config.gpu.memory_management.pool_size))
            yield Run(request, backend, tracker, timer, client, info, run_id, scratch)
        finally:
            if tracker.sampler is not None:  # a failed run: no thread left sampling for ever
                tracker.sampler.stop()


def _workers(request) -> int | None:
    bt = getattr(request.config, "backtest", None)
    own = getattr(bt, "workers", None) if type(request).__name__ == "BacktestRequest" else None
    return own or request.config.cluster.workers


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline.

    Attributes
    ----------
    name : the stage's name (its timing in the manifest, its Prefect task's name)
    fn : ``fn(run, state)`` run in the run's process; for a remote stage (``args`` given) a
        picklable function called as ``fn(*args(run, state))`` (or ``fn(*args(run, state, unit))``
        per unit) on the cluster
    io : True for a stage that reads or writes files: Prefect retries it on an ``OSError``
    args : see ``fn``
    units : ``units(run, state) -> list``: the stage runs once per unit (remote stages only)
    key : ``key(run, state[, unit]) -> str``: Prefect caches the stage's result under it
    reuse : ``reuse(result) -> bool``: whether a cached result is still usable (its file exists)
    from_cache : ``from_cache(result) -> result``: what a cache hit keeps (not the stage times)
    task_name : the Prefect task run's name; ``{index}`` is the unit's ``index``
    timed : False when the function times its own stages (the stage's time is theirs)
    """

    name: str
    fn: Callable
    io: bool = False
    args: Callable | None = None
    units: Callable | None = None
    key: Callable | None = None
    reuse: Callable | None = None
    from_cache: Callable | None = None
    task_name: str | None = None
    timed: bool = True

    @property
    def remote(self) -> bool:
        return self.args is not None


@dataclass(frozen=True)
class Pipeline:
    """A pipeline: its name, its ``prepare`` (arguments and config -> checked request) and its
    stages in order; the last stage's value is the run's result."""

    name: str
    prepare: Callable | None
    stages: tuple[Stage, ...]
    scratch: bool = False  # its remote stages write files: a scratch folder beside the report (in-process)
    variant: Callable | None = None  # variant(request) -> the Pipeline that runs it (e.g. daily with a store)

    def for_request(self, request) -> "Pipeline":
        """The stage list that runs ``request`` (this one, or the variant it asks for)."""
        return self.variant(request) if self.variant is not None else self


def run_stage(run: Run, state, stage: Stage):
    """One stage in-process (remote stages on the run's cluster when it has one)."""
    if stage.units is not None:
        units = stage.units(run, state)
        return run.map(stage.fn, [stage.args(run, state, u) for u in units])
    with run.stage(stage.name) if stage.timed else nullcontext():
        if stage.remote:
            return run.call(stage.fn, *stage.args(run, state))
        return stage.fn(run, state)


def run_pipeline(pipeline: Pipeline, request, *, run_id: str | None = None):
    """Run ``pipeline``'s stages in order in this process (no Prefect); the last stage's value."""
    from alphapulse.pipelines.report.write import scratch_folder

    pipeline = pipeline.for_request(request)
    out_dir = getattr(request, "out_dir", None)
    with (scratch_folder(out_dir, "parts") if pipeline.scratch else nullcontext(None)) as scratch:
        with open_run(request, run_id=run_id, scratch=scratch) as run:
            state = SimpleNamespace(cached={})
            for stage in pipeline.stages:
                setattr(state, stage.name, run_stage(run, state, stage))
            return getattr(state, pipeline.stages[-1].name)
