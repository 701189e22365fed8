"""Stage timing and the run record's environment: shared by every pipeline."""
from __future__ import annotations

import logging
import platform
import sys
import time
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from importlib import metadata

log = logging.getLogger("alphapulse")


IO_STAGES = ("plan", "load", "write")
"""Stages that read or write files: an ``OSError`` there is worth a retry; arithmetic is not."""


class StageError(RuntimeError):
    """A pipeline stage failed on something other than bad input; the message names the stage,
    where (e.g. the partition) and the cause. ``retryable``: an ``OSError`` in an IO stage."""

    def __init__(self, stage: str, where: str, cause: BaseException):
        self.stage = stage
        self.retryable = stage in IO_STAGES and isinstance(cause, OSError)
        super().__init__(f"stage {stage!r} failed{' on ' + where if where else ''}: "
                         f"{type(cause).__name__}: {cause}")


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


class StageTimer:
    """Times named stages and logs their start and end (the CLI's and Prefect's progress lines)."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        log.info("stage %s: started", name)
        start = time.perf_counter()
        try:
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
