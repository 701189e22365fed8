"""GPU status and utilisation: what the machine has and what it is doing.

- :func:`gpu_status`: devices (id, name, compute capability, memory total/free), driver and CUDA
  versions through NVML (``nvidia-ml-py``), CuPy's runtime version when CuPy is installed and a
  device exists, and the installed RAPIDS packages' versions. Never raises: a machine without a
  GPU answers ``available: False`` and the reason.
- :func:`utilization_snapshot`: one reading of every device's utilisation and memory (NVML) and
  of this process's CPU % and resident memory (psutil, so a CPU machine has a real timeline too).
- :class:`UtilizationSampler`: a daemon thread taking such readings every ``interval_s`` seconds,
  each tagged with the active stage (set by :meth:`UtilizationSampler.mark`, which the run's stage
  tracker in :mod:`alphapulse.pipelines.runtime.stages` calls), with per-stage peaks.
- :func:`timeline_png`: the samples as a PNG (GPU utilisation and memory, CPU %, RSS over time,
  stages shaded).

NVML is a C library shipped with the NVIDIA driver; ``pynvml`` imports without it and raises
``NVMLError_LibraryNotFound`` on ``nvmlInit``, which is how a CPU machine is recognised. CuPy is
imported only when NVML has found a device (a CPU machine never imports it).
"""
from __future__ import annotations

import importlib.util
import logging
import re
import threading
import time
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata

from alphapulse.pipelines.errors import ArgumentError

log = logging.getLogger(__name__)

RAPIDS_PACKAGES = re.compile(r"^(cudf|cuml|rmm|dask[-_]cudf|dask[-_]cuda|cupy|pylibcudf|pylibraft|raft[-_]dask|"
                             r"ucx[-_]py|ucxx|numba[-_]cuda|cuda[-_]python|nvidia[-_]ml[-_]py)([-_]cu\d+x?)?$",
                             re.IGNORECASE)

_nvml_lock = threading.Lock()
_nvml_state: dict = {}  # {"ok": bool, "reason": str | None}: nvmlInit is tried once per process


def _nvml():
    """``(pynvml module, None)`` once NVML is initialised, or ``(None, why not)``. Never raises."""
    with _nvml_lock:
        if "ok" not in _nvml_state:
            try:
                import pynvml

                pynvml.nvmlInit()
                _nvml_state.update(ok=True, reason=None)
            except ImportError as e:
                _nvml_state.update(ok=False, reason=f"nvidia-ml-py is not installed ({e})")
            except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded / ...: no usable driver
                _nvml_state.update(ok=False, reason=f"NVML unavailable: {type(e).__name__}: {e} "
                                                    "(no NVIDIA driver on this machine?)")
        if not _nvml_state["ok"]:
            return None, _nvml_state["reason"]
    import pynvml

    return pynvml, None


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


@lru_cache(maxsize=1)
def _rapids_versions() -> tuple:
    return tuple(rapids_versions_uncached().items())


def rapids_versions() -> dict[str, str]:
    """Installed RAPIDS-stack distributions (cuDF, cuML, RMM, dask-cuda, CuPy, ...) -> version
    (listed once per process: scanning the installed distributions takes ~0.1 s)."""
    return dict(_rapids_versions())


def rapids_versions_uncached() -> dict[str, str]:
    """:func:`rapids_versions`, scanning the installed distributions now."""
    out = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") or ""
        if RAPIDS_PACKAGES.match(name):
            out[name.lower()] = dist.version
    return dict(sorted(out.items()))


def _cuda_version(nv) -> str | None:
    v = nv.nvmlSystemGetCudaDriverVersion()  # e.g. 12040
    return f"{v // 1000}.{(v % 1000) // 10}"


def _cupy_details(devices: list[dict]) -> str | None:
    """CuPy's CUDA runtime version, and each device's multiprocessor count added to ``devices``,
    when CuPy is installed (imported only on a machine where NVML found a device)."""
    if importlib.util.find_spec("cupy") is None:
        return None
    try:
        import cupy

        v = cupy.cuda.runtime.runtimeGetVersion()
        for d in devices:
            if d["id"] < cupy.cuda.runtime.getDeviceCount():
                d["multiprocessors"] = int(cupy.cuda.runtime.getDeviceProperties(d["id"])["multiProcessorCount"])
        return f"{v // 1000}.{(v % 1000) // 10}"
    except Exception as e:
        log.info("CuPy device properties unavailable: %s: %s", type(e).__name__, e)
        return None


def gpu_status() -> dict:
    """What GPUs this machine has. Never raises.

    Returns
    -------
    dict
        ``available`` (bool: at least one device answered), ``reason`` (why not, else None),
        ``driver_version``, ``cuda_version`` (the driver's CUDA version), ``cupy_cuda_runtime``
        (None without CuPy), ``devices``: list of ``{"id", "name", "compute_capability" ("9.0"),
        "memory_total_bytes", "memory_free_bytes"}`` (plus ``"multiprocessors"`` from CuPy when
        installed; device ids are NVML's, which CUDA shares unless ``CUDA_VISIBLE_DEVICES``
        reorders them), ``rapids``: package -> version.
    """
    out = {"available": False, "reason": None, "driver_version": None, "cuda_version": None,
           "cupy_cuda_runtime": None, "devices": [], "rapids": {}}
    try:
        out["rapids"] = rapids_versions()
    except Exception as e:  # a broken site-packages entry must not break the status
        log.warning("could not list RAPIDS versions: %s", e)
    nv, why = _nvml()
    if nv is None:
        out["reason"] = why
        return out
    try:
        out["driver_version"] = _text(nv.nvmlSystemGetDriverVersion())
        out["cuda_version"] = _cuda_version(nv)
        count = nv.nvmlDeviceGetCount()
        for i in range(count):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            major, minor = nv.nvmlDeviceGetCudaComputeCapability(h)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            out["devices"].append({"id": i, "name": _text(nv.nvmlDeviceGetName(h)),
                                   "compute_capability": f"{major}.{minor}",
                                   "memory_total_bytes": int(mem.total), "memory_free_bytes": int(mem.free)})
    except Exception as e:
        out["reason"] = f"NVML query failed: {type(e).__name__}: {e}"
        return out
    if not out["devices"]:
        out["reason"] = "NVML found no NVIDIA device"
        return out
    out["available"] = True
    out["cupy_cuda_runtime"] = _cupy_details(out["devices"])
    return out


def _process():
    import psutil

    p = psutil.Process()
    p.cpu_percent(None)  # the first call only sets the baseline
    return p


_snapshot_process = None
_snapshot_lock = threading.Lock()


def _gpu_readings() -> tuple[list[dict], str | None]:
    nv, why = _nvml()
    if nv is None:
        return [], why
    devices = []
    try:
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            util = nv.nvmlDeviceGetUtilizationRates(h)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            devices.append({"id": i, "utilization_pct": float(util.gpu), "memory_used_bytes": int(mem.used),
                            "memory_total_bytes": int(mem.total)})
    except Exception as e:
        return [], f"NVML query failed: {type(e).__name__}: {e}"
    return devices, None if devices else "NVML found no NVIDIA device"


def utilization_snapshot() -> dict:
    """One reading of the GPUs and of this process. Never raises.

    Returns
    -------
    dict
        ``timestamp`` (ISO 8601, UTC), ``available``, ``reason``, ``devices``: list of ``{"id",
        "utilization_pct" (0-100 over NVML's last sample period), "memory_used_bytes",
        "memory_total_bytes"}``, ``process``: ``{"cpu_pct" (since the previous snapshot, 100 = one
        core busy), "rss_bytes"}``.
    """
    global _snapshot_process
    devices, why = _gpu_readings()
    process = {"cpu_pct": None, "rss_bytes": None}
    try:
        with _snapshot_lock:
            if _snapshot_process is None:
                _snapshot_process = _process()
                time.sleep(0.05)  # a first reading needs an interval to measure over
            process = {"cpu_pct": float(_snapshot_process.cpu_percent(None)),
                       "rss_bytes": int(_snapshot_process.memory_info().rss)}
    except Exception as e:
        log.warning("process reading failed: %s", e)
    return {"timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "available": bool(devices), "reason": why, "devices": devices, "process": process}


_PEAK_KEYS = ("gpu_util_pct", "gpu_mem_used_bytes", "cpu_pct", "rss_bytes")


MIN_SAMPLE_INTERVAL_S = 0.05
MAX_SAMPLE_INTERVAL_S = 3600.0
"""Sample intervals allowed: below 50 ms the sampling is the load; above an hour there is no
timeline. ``threading.Event.wait`` raises OverflowError for an interval like 1e308, in the thread."""


def check_sample_interval(seconds, *, name: str = "sample interval") -> float:
    """``seconds`` as a float when it is within [:data:`MIN_SAMPLE_INTERVAL_S`,
    :data:`MAX_SAMPLE_INTERVAL_S`], else a one-line :class:`ArgumentError` naming ``name``."""
    value = float(seconds)
    if not MIN_SAMPLE_INTERVAL_S <= value <= MAX_SAMPLE_INTERVAL_S:  # NaN fails both comparisons
        raise ArgumentError(f"{name} {seconds!r}: expected {MIN_SAMPLE_INTERVAL_S:g} to "
                            f"{MAX_SAMPLE_INTERVAL_S:g} seconds")
    return value


class UtilizationSampler:
    """Samples the GPU (NVML) and this process (psutil) every ``interval_s`` seconds in a daemon thread.

    Use as a context manager (or :meth:`start` / :meth:`stop`). Each sample is ``{"t": seconds
    since start, "stage": the stage active then (None outside stages), "gpu_util_pct",
    "gpu_mem_used_bytes" (None without a GPU), "cpu_pct", "rss_bytes"}``; ``device`` picks the GPU
    read (the backend's device; default 0). A sample is also taken at start and at stop, so even a
    run shorter than the interval has a timeline. ``context``, if given, is called at each sample
    and its dict merged in (the run tracker adds ``active``: the stages running, and ``queue``:
    the tasks not finished yet).

    Parameters
    ----------
    interval_s : float, seconds between samples, 0.05 to 3600
    device : int, the NVML device index to read
    context : callable returning a dict of extra fields, optional
    """

    def __init__(self, interval_s: float = 1.0, *, device: int = 0, context=None):
        self.interval_s = check_sample_interval(interval_s)
        self.device = int(device)
        self.context = context
        self.samples: list[dict] = []
        self.reason: str | None = None
        self._stage: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start = 0.0
        self._proc = None
        self._lock = threading.Lock()

    def mark(self, stage: str | None) -> None:
        """Set the active stage: samples from now on carry it (None: between stages)."""
        self._stage = stage

    def _sample(self) -> None:
        gpu_util = gpu_mem = None
        nv, why = _nvml()
        if nv is not None:
            try:
                h = nv.nvmlDeviceGetHandleByIndex(self.device)
                gpu_util = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
                gpu_mem = int(nv.nvmlDeviceGetMemoryInfo(h).used)
            except Exception as e:
                why = f"NVML query failed: {type(e).__name__}: {e}"
        self.reason = why
        try:
            cpu, rss = float(self._proc.cpu_percent(None)), int(self._proc.memory_info().rss)
        except Exception:  # the process reading cannot fail in practice; a missing sample is no error
            return
        sample = {"t": round(time.perf_counter() - self._start, 3), "stage": self._stage,
                  "gpu_util_pct": gpu_util, "gpu_mem_used_bytes": gpu_mem, "cpu_pct": cpu, "rss_bytes": rss}
        if self.context is not None:
            sample.update(self.context())
        with self._lock:
            self.samples.append(sample)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def start(self) -> "UtilizationSampler":
        if self._thread is not None:
            return self
        self._start = time.perf_counter()
        self._proc = _process()
        self._sample()
        self._thread = threading.Thread(target=self._loop, name="alphapulse-gpu-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        self._sample()

    def __enter__(self) -> "UtilizationSampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def stage_peaks(self) -> dict[str, dict]:
        """Per stage: the highest GPU utilisation, GPU memory, CPU % and RSS among its samples."""
        peaks: dict[str, dict] = {}
        with self._lock:
            samples = list(self.samples)
        for s in samples:
            if s["stage"] is None:
                continue
            p = peaks.setdefault(s["stage"], {k: None for k in _PEAK_KEYS})
            for k in _PEAK_KEYS:
                if s[k] is not None and (p[k] is None or s[k] > p[k]):
                    p[k] = s[k]
        return peaks

    def record(self) -> dict:
        """The manifest's ``monitoring`` section."""
        with self._lock:
            samples = list(self.samples)
        return {"interval_s": self.interval_s, "device": self.device, "gpu_reason": self.reason,
                "samples": samples, "stage_peaks": self.stage_peaks()}


def sample_for(seconds: float, interval_s: float, *, device: int = 0) -> UtilizationSampler:
    """Sample for ``seconds`` (the ``alphapulse gpu utilization`` command); returns the stopped sampler."""
    if not seconds >= 0:
        raise ValueError(f"seconds must be >= 0, got {seconds!r}")
    with UtilizationSampler(interval_s, device=device) as s:
        time.sleep(seconds)
    return s


def timeline_png(monitoring: dict, *, title: str = "Utilisation") -> bytes | None:
    """A PNG of a ``monitoring`` record (:meth:`UtilizationSampler.record`): GPU utilisation % and
    CPU % (left), GPU memory and RSS in GiB (right) against seconds since the run's start, each
    stage's span shaded and named. None when there are no samples."""
    samples = monitoring.get("samples") or []
    if not samples:
        return None
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    t = [s["t"] for s in samples]
    fig = Figure(figsize=(11, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    gib = 2.0 ** 30
    ax1.plot(t, [s["cpu_pct"] for s in samples], label="process CPU %", color="tab:blue")
    if any(s["gpu_util_pct"] is not None for s in samples):
        ax1.plot(t, [s["gpu_util_pct"] for s in samples], label="GPU utilisation %", color="tab:green")
        ax2.plot(t, [None if s["gpu_mem_used_bytes"] is None else s["gpu_mem_used_bytes"] / gib for s in samples],
                 label="GPU memory used", color="tab:green")
    ax2.plot(t, [s["rss_bytes"] / gib for s in samples], label="process RSS", color="tab:blue")
    ax1.set_ylabel("%")
    ax2.set_ylabel("GiB")
    spans, current, begin = [], None, None
    for s in samples:
        if s["stage"] != current:
            if current is not None:
                spans.append((current, begin, s["t"]))
            current, begin = s["stage"], s["t"]
    if current is not None:
        spans.append((current, begin, samples[-1]["t"]))
    for k, (name, a, b) in enumerate(spans):
        for ax in (ax1, ax2):
            ax.axvspan(a, max(b, a + 1e-3), color=f"C{k % 10}", alpha=0.08)
        # three staggered rows: short stages sit side by side without their names overlapping
        ax1.text(a, 1.01 + 0.07 * (k % 3), name, transform=ax1.get_xaxis_transform(), fontsize=7, va="bottom")
    for ax in (ax1, ax2):
        ax.set_xlabel("seconds since start")
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
