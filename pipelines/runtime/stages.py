"""Stage timing, the run's tracker and the run record's environment: shared by every pipeline.

:class:`StageTimer` times stages for the logs and the manifest; behind it one :class:`RunTracker`
per run gathers what GPU operations report (CPU-seconds per stage, routing decisions, alerts,
utilisation samples tagged with the active stages and the task queue) and
:func:`run_sections` turns it into the manifest's ``routing``, ``alerts``, ``cost`` and
``monitoring`` sections.

The run's tracker is held in a :class:`contextvars.ContextVar` set by :func:`tracking` (the run
context of :mod:`alphapulse.pipelines.runtime.run` sets it once per run), the way scikit-learn's
``config_context`` holds its settings: code running inside the run (a stage, a Prefect task's
thread, which copies the context) finds it with :func:`current_tracker`; nothing is global to the
process, so two runs in two threads keep apart. A task that may run elsewhere (a Dask worker)
opens :func:`task_scope` and returns its :class:`TaskRecord` with its result.
"""
from __future__ import annotations

import hashlib
import logging
import platform
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata

from alphapulse.pipelines.errors import IO_STAGES, ArgumentError, BackendError, StageError  # noqa: F401  (IO_STAGES: runtime's public name)

log = logging.getLogger("alphapulse")


@contextmanager
def stage_errors(stage: str, where: str = "", *, passthrough: tuple[type[BaseException], ...] = ()):
    """Re-raise an exception of the block as :class:`StageError` (``passthrough`` types, e.g. the
    one-line input errors, unchanged)."""
    try:
        yield
    except passthrough:
        raise
    except Exception as e:
        raise StageError(stage, where, e) from e


class RunTracker:
    """What one run did, stage by stage: the seam between the pipelines and GPU operations.

    Records per stage: wall seconds, CPU seconds (process CPU time, this process's threads and its
    live child processes, e.g. a local Dask cluster's workers), whether it ran on the GPU; the
    run's routing decisions (:mod:`alphapulse.pipelines.runtime.routing`), out-of-memory alerts
    (:mod:`alphapulse.pipelines.runtime.oom`) and, when ``gpu.monitoring.track_utilization`` is on, a
    :class:`alphapulse.pipelines.gpu.status.UtilizationSampler` whose samples carry the active stage.
    :meth:`sections` gives the manifest's ``monitoring``, ``routing``, ``alerts`` and ``cost``.

    The run's tracker is the one :func:`tracking` set in the current context: a
    :class:`StageTimer` made inside the run (in a task or a report stage) adds to it.
    """

    def __init__(self):
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.top_level: set[str] = set()
        self.routing: list[dict] = []
        self.alerts: list[dict] = []
        self.sampler = None
        self.gpu_backend = False
        self.closed = False
        self.queue: int | None = None  # tasks of the current stage not finished yet, where known
        self._active: list[str] = []            # open stages, all threads, in order of opening
        self._stacks: dict[int, list[str]] = {}  # thread -> its open stages
        self._cpu_mark = _cpu_reading()
        self._lock = threading.Lock()

    # -- stages ---------------------------------------------------------------------------

    @property
    def active_stage(self) -> str | None:
        """The innermost stage running now (None between stages)."""
        with self._lock:
            return self._active[-1] if self._active else None

    def _charge(self) -> None:
        """Share the CPU time used since the last stage event among the threads inside a stage
        (equal shares), each share charged to every stage open in that thread (a nested stage's
        time is inside its parent's). Shares add up to the CPU used: stages running at the same
        time in several threads are not counted twice. Called with the lock held."""
        reading = _cpu_reading()
        delta = _cpu_between(self._cpu_mark, reading)
        self._cpu_mark = reading
        stacks = [stack for stack in self._stacks.values() if stack]
        if stacks and delta > 0:
            share = delta / len(stacks)
            for stack in stacks:
                for name in set(stack):
                    self.cpu[name] = self.cpu.get(name, 0.0) + share

    @contextmanager
    def track(self, name: str):
        """Account the block to stage ``name`` (wall seconds, CPU seconds)."""
        thread = threading.get_ident()
        with self._lock:
            self._charge()
            stack = self._stacks.setdefault(thread, [])
            if not stack:
                self.top_level.add(name)
            stack.append(name)
            self._active.append(name)
            self.cpu.setdefault(name, 0.0)
        if self.sampler is not None:
            self.sampler.mark(name)
        wall0 = time.perf_counter()
        failed = True
        try:
            yield
            failed = False
        finally:
            wall = time.perf_counter() - wall0
            with self._lock:
                self._charge()
                _remove_last(stack, name)
                if not stack:
                    self._stacks.pop(thread, None)
                _remove_last(self._active, name)
                self.wall[name] = round(self.wall.get(name, 0.0) + wall, 4)
                current = self._active[-1] if self._active else None
                if current is None:
                    self.queue = None  # a queue belongs to the stage that set it
            if self.sampler is not None:
                self.sampler.mark(current)
                if failed and current is None:  # the run failed: no thread left sampling for ever
                    self.sampler.stop()

    # -- what the pipeline reports --------------------------------------------------------

    def attach(self, gpu, backend) -> None:
        """The run's backend is chosen (:func:`alphapulse.pipelines.runtime.backend.choose_backend` calls this):
        remember whether it is the GPU and start the sampler if ``gpu.monitoring`` asks for it."""
        self.gpu_backend = bool(backend.is_gpu)
        mon = gpu.monitoring
        if mon.track_utilization and self.sampler is None and not self.closed:
            from alphapulse.pipelines.gpu.status import UtilizationSampler

            self.sampler = UtilizationSampler(mon.sample_interval_s, device=backend.device or 0,
                                              context=self._context)
            self.sampler.mark(self.active_stage)
            self.sampler.start()

    def _context(self) -> dict:
        """What each utilisation sample adds: the active stages and the task queue's length."""
        with self._lock:
            return {"active": list(self._active), "queue": self.queue}

    def route(self, decision: dict) -> dict:
        """Record a routing decision (``alphapulse.pipelines.runtime.routing``), tagged with the active stage."""
        record = {**decision, "stage": decision.get("stage") or self.active_stage}
        with self._lock:
            self.routing.append(record)
        return record

    def alert(self, kind: str, *, message: str, batch_size: int | None = None, action: str = "",
              stage: str | None = None) -> dict:
        """Record an alert (the manifest's ``alerts``; the flow publishes them as a Prefect artifact)."""
        record = {"kind": kind, "stage": stage or self.active_stage, "message": message,
                  "batch_size": batch_size, "action": action}
        with self._lock:
            self.alerts.append(record)
        return record

    def absorb(self, record: "TaskRecord") -> None:
        """Add a task's record (:func:`task_scope`): its decisions and alerts, and the CPU seconds
        of its stages as top-level stages of the run (the run's own readings never saw them)."""
        for decision in record.routing:
            self.route(decision)
        with self._lock:
            self.alerts.extend(record.alerts)
            for name, cpu in record.cpu_seconds.items():
                self.cpu[name] = self.cpu.get(name, 0.0) + cpu
                self.top_level.add(name)

    def gpu_stage(self, name: str) -> bool:
        """Whether stage ``name`` ran on the GPU: a GPU backend, and not every operation in the
        stage routed to the CPU."""
        if not self.gpu_backend:
            return False
        routes = [r["backend"] for r in self.routing if r.get("stage") == name]
        return not routes or "gpu" in routes

    def sections(self, config=None, stages: dict | None = None, *, work: tuple[str, float] | None = None) -> dict:
        """Stop the sampler, close the run, and give the manifest's sections: ``routing``,
        ``alerts``, ``cost`` (:func:`alphapulse.pipelines.runtime.cost.run_cost`) and, when sampled, ``monitoring``.

        Parameters
        ----------
        config : the run's :class:`alphapulse.pipelines.config.schema.Config` (prices and the cost block); None:
            default prices
        stages : stage -> wall seconds as the pipeline reports them (default: the tracker's own)
        work : (unit, amount) of the run's work, e.g. ("million bars", 2.1); None: per run
        """
        from alphapulse.pipelines.runtime.cost import run_cost

        if self.sampler is not None:
            self.sampler.stop()
        self.closed = True
        out = {"routing": list(self.routing), "alerts": list(self.alerts)}
        wall = dict(stages) if stages is not None else dict(self.wall)
        out["cost"] = run_cost(wall, self.cpu, {k: self.gpu_stage(k) for k in wall},
                               top_level=self.top_level or None,
                               prices=getattr(config, "cost", None), work=work)
        if self.sampler is not None:
            out["monitoring"] = self.sampler.record()
        return out


def _cpu_reading() -> tuple[float, dict[int, float]]:
    """CPU seconds used so far by this process (all threads), and by each live child process
    (e.g. a local Dask cluster's workers) by pid."""
    children = {}
    try:
        import psutil

        for child in psutil.Process().children(recursive=True):
            try:
                t = child.cpu_times()
                children[child.pid] = t.user + t.system
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
    except ImportError:
        pass
    return time.process_time(), children


def _cpu_between(a: tuple[float, dict[int, float]], b: tuple[float, dict[int, float]]) -> float:
    """CPU seconds from reading ``a`` to reading ``b``: this process's, plus each child's alive at
    ``b`` (a child that ended in between is not counted after its last reading, never negatively)."""
    return b[0] - a[0] + sum(max(0.0, t - a[1].get(pid, 0.0)) for pid, t in b[1].items())


def _remove_last(items: list, name: str) -> None:
    for k in range(len(items) - 1, -1, -1):
        if items[k] == name:
            del items[k]
            return


_TRACKER: ContextVar[RunTracker | None] = ContextVar("alphapulse_run_tracker", default=None)


def current_tracker() -> RunTracker | None:
    """The tracker of the run in progress in this context (None outside a run, or once closed)."""
    tracker = _TRACKER.get()
    return tracker if tracker is not None and not tracker.closed else None


@contextmanager
def tracking(tracker: RunTracker | None = None):
    """Make ``tracker`` (a new one when None) the current context's run tracker for the block."""
    tracker = tracker or RunTracker()
    token = _TRACKER.set(tracker)
    try:
        yield tracker
    finally:
        _TRACKER.reset(token)


def set_queue(n: int | None) -> None:
    """Tell the current run how many of the stage's tasks are not finished (None: unknown)."""
    tracker = current_tracker()
    if tracker is not None:
        tracker.queue = n


@dataclass
class TaskRecord:
    """What one task recorded for the run's manifest, returned with its result from wherever it
    ran (in-process, a Prefect task's thread, a Dask worker process): its routing decisions, its
    alerts and its stages' wall seconds."""

    routing: list = field(default_factory=list)
    alerts: list = field(default_factory=list)
    seconds: dict = field(default_factory=dict)
    cpu_seconds: dict = field(default_factory=dict)

    def without_seconds(self) -> "TaskRecord":
        """The record of a result served from a cache: its decisions stand, its times are another run's."""
        return TaskRecord(list(self.routing), list(self.alerts), {}, {})


@contextmanager
def task_scope(**tags):
    """A task's own tracker (current in the block) and the :class:`TaskRecord` it fills on exit,
    each routing decision and alert tagged with ``tags`` (e.g. ``stage="indicators",
    partition=3``): the same records whether the task ran in the run's process or on a worker."""
    record = TaskRecord()
    parent = current_tracker()
    with tracking() as tracker:
        if parent is not None:  # in the run's process: its utilisation samples name this task's stages
            tracker.sampler, tracker.gpu_backend = parent.sampler, parent.gpu_backend
        timer = StageTimer(tracker)
        try:
            yield timer, record
        finally:
            tracker.sampler = None
            record.routing = [{**r, **tags} for r in tracker.routing]
            record.alerts = [{**a, **tags} for a in tracker.alerts]
            record.seconds = dict(timer.seconds)
            record.cpu_seconds = {k: v for k, v in tracker.cpu.items() if k in tracker.top_level}


def scoped_task(fn, *args):
    """``fn(*args, timer)`` as one task under :func:`task_scope`: ``(its result, its TaskRecord)``,
    the same whether it ran in the run's process or on a worker."""
    with task_scope() as (timer, record):
        result = fn(*args, timer)
    return result, record


def run_sections(config=None, stages: dict | None = None, *, work: tuple[str, float] | None = None,
                 records: list | tuple = ()) -> dict:
    """The current run's manifest sections (:meth:`RunTracker.sections`), closing the run; a report
    written outside a tracked run (e.g. a test calling ``report_stage`` directly) gets the cost of
    ``stages`` with unknown CPU seconds and no monitoring.

    ``records``: the :class:`TaskRecord` of each task, in the run's order, added first."""
    tracker = current_tracker() or RunTracker()
    for record in records:
        tracker.absorb(record)
    return tracker.sections(config, stages, work=work)


class StageTimer:
    """Times named stages and logs their start and end (the CLI's and Prefect's progress lines).

    Each stage is also accounted to a :class:`RunTracker` (CPU seconds, the sampler's active
    stage, GPU or CPU): ``tracker``, else the current run's, else one of the timer's own (a timer
    used outside any run)."""

    def __init__(self, tracker: RunTracker | None = None):
        self.seconds: dict[str, float] = {}
        self.tracker = tracker or current_tracker() or RunTracker()

    @contextmanager
    def stage(self, name: str):
        log.info("stage %s: started", name)
        start = time.perf_counter()
        try:
            with self.tracker.track(name):
                yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 4)
            log.info("stage %s: %.2f s", name, self.seconds[name])


_PACKAGES = ("alphapulse", "numpy", "pandas", "pyarrow", "dask", "distributed", "numba", "prefect",
             "pydantic", "cupy-cuda13x", "cudf-cu13", "dask-cudf-cu13", "dask-cuda", "cuml-cu13", "rmm-cu13")


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a run depends on (those installed)."""
    out = {"python": platform.python_version(), "platform": f"{sys.platform}-{platform.machine()}"}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def run_record(pipeline: str, *, backend, config, data_path: str, loaded, run_id: str | None = None) -> dict:
    """The fields every report's ``manifest.json`` starts with: the run, the backend and why,
    package versions, the config and its hash, and what the input held."""
    return {
        "run_id": run_id or uuid.uuid4().hex[:12],
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "pipeline": pipeline,
        "backend": backend.record(),
        "versions": package_versions(),
        "config": config.model_dump(mode="json"),
        "config_hash": config.hash(),
        "input": {"path": data_path, "files": loaded.files, **loaded.stats},
    }


def request_paths(config, *, data_path: str | None, out_dir: str | None, default_out_dir: str | None,
                  out_key: str, backend: str) -> tuple[str, str]:
    """A request's ``(data_path, out_dir)``: the arguments, else the config's (``data.path`` and
    ``default_out_dir``, named ``out_key`` in messages); an empty argument is no path, never the
    config's default. Checks the backend name too. One-line :class:`ArgumentError` (a missing path)
    or :class:`BackendError` (an unknown backend name)."""
    data_path = config.data.path if data_path is None else data_path
    out_dir = default_out_dir if out_dir is None else out_dir
    if not data_path:
        raise ArgumentError("no input: give --data or set data.path in the config")
    if not out_dir:
        raise ArgumentError(f"no output folder: give --out or set {out_key} in the config")
    if backend not in ("auto", "cpu", "gpu"):
        raise BackendError(f"unknown backend {backend!r}: expected auto, cpu or gpu")
    return str(data_path), str(out_dir)


def result_key(*parts: str, roots: tuple[str, ...]) -> str:
    """A cache key: sha256 of ``parts`` (config hash, backend, input fingerprint, ...) and of the
    code the result comes from, the whole ``alphapulse`` import closure of the modules ``roots``
    (:func:`alphapulse.pipelines.runtime.code.code_hash`; a key names its stage's own module). A
    Prefect task's own source is only its thin wrapper, so ``TASK_SOURCE`` alone would reuse
    results of changed code."""
    from alphapulse.pipelines.runtime.code import code_hash

    h = hashlib.sha256("\0".join(parts).encode())
    h.update(b"\0" + code_hash(*roots).encode())
    return h.hexdigest()
