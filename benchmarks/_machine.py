"""What the benchmark scripts print about the machine they ran on, and whether it was quiet.

Implements :func:`cpu_model` and :class:`LoadGuard`, the check every script under ``benchmarks/``
runs around its measurements: it prints the machine's load average before and after, and when
the load from other processes was above :data:`MAX_LOAD_PER_CORE` per core it says that the
figures are not for the record (``docs/benchmarks.md`` takes figures only from quiet runs: ratios
taken under another user's load were off by up to 10x).
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass

MAX_LOAD_PER_CORE = 0.5
"""Largest load average per core, from other processes, under which figures may be recorded."""

LOADAVG_WINDOW_S = 60.0
"""Time constant of the kernel's 1-minute load average (an exponential moving average)."""


def cpu_model() -> str:
    """The CPU's model name (``lscpu``), for the record of a measurement."""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def own_share_of_load(own_threads: float, seconds: float) -> float:
    """How much of the 1-minute load average a run of ``seconds`` with ``own_threads`` busy threads
    on average has put there by its end: the kernel's moving average has moved ``1 - exp(-t/60)``
    of the way towards the run's own load."""
    return own_threads * (1.0 - math.exp(-max(seconds, 0.0) / LOADAVG_WINDOW_S))


def quiet_verdict(before: float, after: float, own: float, cores: int,
                  limit_per_core: float = MAX_LOAD_PER_CORE) -> tuple[bool, str]:
    """Whether a run may be recorded, and the line that says so.

    Parameters
    ----------
    before, after : the 1-minute load average at the start and at the end of the run
    own : the run's own share of ``after`` (:func:`own_share_of_load`): the benchmark's threads
        count in the load too, and are not another user's load
    cores : logical CPUs of the machine (the load average is machine-wide)
    limit_per_core : the quiet limit
    """
    others = max(before, after - own) / cores
    if others > limit_per_core:
        return False, (f"NOT FOR THE RECORD: load from other processes reached {others:.2f} per core "
                       f"(limit {limit_per_core}): re-run on a quiet machine before recording these figures")
    return True, f"quiet machine: load from other processes at most {others:.2f} per core (limit {limit_per_core})"


@dataclass
class LoadGuard:
    """Load average before and after a benchmark, and the verdict: ``with LoadGuard(): ...``.

    ``recordable`` is None until the run has ended, then True or False; ``record()`` is the
    same as a dict for a JSON result file.
    """

    limit_per_core: float = MAX_LOAD_PER_CORE
    before: float | None = None
    after: float | None = None
    own: float | None = None
    recordable: bool | None = None
    verdict: str = ""

    def __post_init__(self):
        self.cores = os.cpu_count() or 1
        self._t0 = self._cpu0 = 0.0

    @staticmethod
    def _cpu_seconds() -> float:
        t = os.times()  # children: the subprocesses a script waited for (the CLI, a child run)
        return t.user + t.system + t.children_user + t.children_system

    def start(self) -> LoadGuard:
        self.before = os.getloadavg()[0]
        self._t0, self._cpu0 = time.monotonic(), self._cpu_seconds()
        print(f"load average before: {self.before:.2f} over {self.cores} cores "
              f"({self.before / self.cores:.2f} per core)", flush=True)
        return self

    def finish(self) -> bool:
        wall = max(time.monotonic() - self._t0, 1e-9)
        self.after = os.getloadavg()[0]
        self.own = own_share_of_load((self._cpu_seconds() - self._cpu0) / wall, wall)
        self.recordable, self.verdict = quiet_verdict(self.before, self.after, self.own, self.cores,
                                                      self.limit_per_core)
        print(f"load average after: {self.after:.2f} over {self.cores} cores, of which this run ~{self.own:.2f}",
              flush=True)
        print(self.verdict, flush=True)
        return self.recordable

    def record(self) -> dict:
        return {"load_before": self.before, "load_after": self.after, "own_load": self.own, "cores": self.cores,
                "limit_per_core": self.limit_per_core, "recordable": self.recordable, "verdict": self.verdict}

    def __enter__(self) -> LoadGuard:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.finish()
