"""What every flow shares: running a pipeline's stage list as Prefect tasks, retrying IO and
caching results.

- :func:`run_flow`: the Prefect runner of a pipeline declared in its room (``DAILY``,
  ``BACKTEST``, ``PORTFOLIO``, ``MODELS``; :mod:`alphapulse.pipelines.runtime.run`): each stage a
  task, IO stages retried (:func:`io_retry`), stages with a ``key`` cached under it (persisted,
  ``INPUTS + TASK_SOURCE`` on the key), a stage with units one task per unit. The run's cluster is
  opened by the run context as for the in-process runner (a ``distributed.Client``), and remote
  stages are submitted to it from their tasks: one cluster mechanism with and without Prefect.
- :func:`task_runner`: Prefect's ``DaskTaskRunner`` for a cluster spec (``alphapulse.pipelines.runtime.cluster``),
  or None for Prefect's default in-process runner, for flows of one's own; the pipelines' flows
  do not use it. ``prefect_dask`` is imported only when it is called with a cluster.
- :func:`io_retry`: the retry condition of IO tasks: retry an ``OSError`` (a file on a flaky
  mount, a full disk, a vanished file), never an input error or arithmetic.
- :func:`parts_dir`: where cached partition files live, beside Prefect's persisted results
  (``PREFECT_LOCAL_STORAGE_PATH``; this package defaults it to
  ``~/.cache/alphapulse/prefect-results/``, see ``alphapulse.flows``).
"""
from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

from prefect import task
from prefect.cache_policies import INPUTS, NO_CACHE, TASK_SOURCE

from alphapulse.pipelines.runtime.cluster import dask_runner_options, local_cluster
from alphapulse.pipelines.errors import AlphaPulseError, InputError, RunError
from alphapulse.pipelines.runtime.run import Pipeline, Run, Stage, open_run

log = logging.getLogger(__name__)

RETRIES = 2
RETRY_DELAY_SECONDS = 5


def task_runner(spec: str | None, config):
    """A ``DaskTaskRunner`` for ``spec`` (None: no cluster -> None) and its description for the
    manifest: ``(runner, info)``."""
    options = dask_runner_options(spec, workers=config.cluster.workers,
                                  gpu_pool_size=config.gpu.memory_management.pool_size)
    if options is None:
        return None, {"kind": "in-process", "workers": 1}
    from prefect_dask import DaskTaskRunner

    if "address" in options:
        info = {"kind": "scheduler", "address": spec}
    else:
        info = local_cluster(spec, workers=config.cluster.workers)[2]
    log.info("tasks on a Dask cluster: %s", ", ".join(f"{k} {v}" for k, v in info.items()))
    return DaskTaskRunner(**options), info


def io_retry(task, task_run, state) -> bool:
    """Retry condition of IO tasks: a run error's ``retryable`` (a ``StageError`` on an
    ``OSError`` in an IO stage), True for any other ``OSError``; False for every input error
    (config, data, grid, report path, ...) and anything else."""
    try:
        state.result()
    except RunError as e:
        return e.retryable
    except InputError:
        return False
    except AlphaPulseError:  # ours but of neither kind (a bare ReportError), not the machine's OSError
        return False
    except OSError:
        return True
    except Exception:
        return False
    return False


def parts_dir() -> Path:
    """The folder of cached partition files (created on first use)."""
    from prefect.settings import get_current_settings

    path = Path(get_current_settings().results.local_storage_path).expanduser() / "alphapulse-daily-parts"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _execute(run: Run, state, stage: Stage, unit=None):
    """A stage's work inside its task (a remote stage's on the run's cluster)."""
    if stage.units is not None:
        return run.call(stage.fn, *stage.args(run, state, unit))
    with run.stage(stage.name) if stage.timed else nullcontext():
        if stage.remote:
            return run.call(stage.fn, *stage.args(run, state))
        return stage.fn(run, state)


@task(cache_policy=NO_CACHE)
def stage_task(run: Run, state, stage: Stage, unit=None):
    return _execute(run, state, stage, unit)


# Only ``cache_key`` (config hash, backend, input fingerprint, code) and this source decide a hit:
# the run holds the output folder, the state the previous stages' (large) results.
@task(persist_result=True, cache_policy=(INPUTS - "run" - "state" - "stage" - "unit") + TASK_SOURCE)
def cached_stage_task(run: Run, state, stage: Stage, cache_key: str, unit=None):
    return _execute(run, state, stage, unit)


def _task(stage: Stage):
    base = cached_stage_task if stage.key is not None else stage_task
    options = {"name": stage.name}
    if stage.io:
        options.update(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry)
    if stage.task_name:
        options["task_run_name"] = stage.task_name.replace("{index}", "{unit.index}")
    return base.with_options(**options)


def _flow_stage(run: Run, state, stage: Stage):
    t = _task(stage)
    if stage.units is None:
        args = (run, state, stage) + ((stage.key(run, state),) if stage.key else ())
        st = t(*args, return_state=True)
        result = st.result()  # raises the stage's failure (its message names the stage)
        if st.name == "Cached":
            state.cached[stage.name] = 1
            result = stage.from_cache(result) if stage.from_cache else result
        return result

    units = stage.units(run, state)

    def call(unit, **options):
        args = (run, state, stage) + ((stage.key(run, state, unit),) if stage.key else ())
        return (t.with_options(**options) if options else t), args

    if run.client is not None:  # all at once: the cluster runs as many as it has threads
        futures = []
        for u in units:
            fn, args = call(u)
            futures.append(fn.submit(*args, unit=u))
        for f in futures:
            f.wait()
        states = [f.state for f in futures]
    else:  # one after the other: one unit in memory at a time, stopping at the first failure
        states = []
        for u in units:
            fn, args = call(u)
            states.append(fn(*args, unit=u, return_state=True))
            if not states[-1].is_completed():
                break
    results = [s.result() for s in states]  # raises the first failure (its message names stage and unit)
    if stage.reuse is not None:  # a cached result whose file was removed since (a cleaned cache folder)
        for i, (r, u) in enumerate(zip(results, units)):
            if not stage.reuse(r):
                fn, args = call(u, refresh_cache=True)
                states[i] = fn(*args, unit=u, return_state=True)
                results[i] = states[i].result()
    cached = [s.name == "Cached" for s in states]
    state.cached[stage.name] = sum(cached)
    if stage.from_cache is not None:
        results = [stage.from_cache(r) if c else r for r, c in zip(results, cached)]
    return results


def run_flow(pipeline: Pipeline, request, *, scratch=None):
    """Run ``pipeline``'s stages as Prefect tasks of the current flow run (see the module
    docstring); the last stage's value. ``scratch``: where remote stages write their files (kept
    across runs for the cache; default: :func:`parts_dir`)."""
    from prefect.runtime import flow_run

    run_id = str(flow_run.get_id() or "")[:12] or None
    pipeline = pipeline.for_request(request)
    with open_run(request, run_id=run_id, scratch=scratch if scratch is not None else parts_dir()) as run:
        state = SimpleNamespace(cached={})
        for stage in pipeline.stages:
            setattr(state, stage.name, _flow_stage(run, state, stage))
        return getattr(state, pipeline.stages[-1].name)
