"""Stage timing and the run record's environment: shared by every pipeline."""
from __future__ import annotations

import logging
import platform
import sys
import time
from contextlib import contextmanager
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
