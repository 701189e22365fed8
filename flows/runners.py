"""What every flow shares for running on a cluster, retrying IO and caching results.

- :func:`task_runner`: Prefect's ``DaskTaskRunner`` for a cluster spec (``alphapulse.pipelines.runtime.cluster``),
  or None for Prefect's default in-process runner. ``prefect_dask`` is imported only when a
  cluster is asked for, and dask-cuda only by the runner that starts a ``cuda`` cluster.
- :func:`io_retry`: the retry condition of IO tasks: retry an ``OSError`` (a file on a flaky
  mount, a full disk, a vanished file), never an input error or arithmetic.
- :func:`parts_dir`: where cached partition files live, beside Prefect's persisted results
  (``PREFECT_LOCAL_STORAGE_PATH``; this package defaults it to ``~/.cache/alphapulse/prefect-results/``, see ``alphapulse.flows``; in the
  project, see ``flows/__init__.py``).
"""
from __future__ import annotations

import logging
from pathlib import Path

from alphapulse.pipelines.runtime.cluster import dask_runner_options, local_cluster
from alphapulse.pipelines.errors import AlphaPulseError, InputError, RunError

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
