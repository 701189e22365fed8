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
