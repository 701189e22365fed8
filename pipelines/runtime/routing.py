"""Routing by measured speedup: each operation runs on the GPU only where it beats the CPU.

``gpu.fallback.min_speedup`` is the bar. The speedups come from ``alphapulse gpu benchmark``
(:mod:`alphapulse.pipelines.gpu.bench`), measured on *this* device and cached per device in a JSON file
(:func:`cache_path`), keyed by the device's name, the driver, the CUDA version and the versions of
CuPy and AlphaPulse (:func:`device_key`): a new driver or release is a new key, measured afresh.
``alphapulse gpu benchmark --refresh-routing`` measures every operation at its default sizes
and replaces this device's entry.

The decision for (operation, size) (:func:`decide`, a pure function):

- the run's backend is the CPU: ``cpu`` ("cpu: no GPU ...");
- the device has measurements for the operation: the speedup at ``size`` is interpolated
  linearly in log(size) between the measured sizes (beyond them, the nearest measurement's);
  ``gpu`` iff it is at least ``min_speedup``;
- no measurement: ``gpu`` iff ``min_speedup <= 1`` (asking for no more than parity trusts the
  GPU, as before routing existed), else ``cpu`` with the reason naming the command that measures.

Sizes are in each operation's unit (:data:`alphapulse.pipelines.gpu.bench.UNITS`): indicators in panel
cells, covariance in assets, backtest in symbol x combination pairs, montecarlo in paths.
:func:`route` applies a decision to a run (returns the backend the operation uses) and records it,
with its figure, in the run's manifest (``routing``).
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from datetime import datetime, timezone
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)


def cache_path(speedup_cache: str | None = None) -> Path:
    """The speedup cache: ``speedup_cache`` (``gpu.fallback.speedup_cache``) if given, else
    ``$ALPHAPULSE_CACHE_DIR/speedups.json``, else ``~/.cache/alphapulse/speedups.json``."""
    if speedup_cache:
        return Path(speedup_cache).expanduser()
    base = os.environ.get("ALPHAPULSE_CACHE_DIR")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "alphapulse") / "speedups.json"


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"


def device_key(status: dict | None = None, device: int = 0) -> str | None:
    """``"<name>|driver <v>|cuda <v>|cupy <v>|alphapulse <v>"`` of ``device`` (from
    :func:`alphapulse.pipelines.gpu.status.gpu_status` when ``status`` is None), or None without a GPU."""
    if status is None:
        from alphapulse.pipelines.gpu.status import gpu_status

        status = gpu_status()
    if not status.get("available") or device >= len(status.get("devices", [])):
        return None
    cupy = next((v for k, v in status.get("rapids", {}).items() if k.startswith("cupy")), "-")
    return (f"{status['devices'][device]['name']}|driver {status['driver_version']}|cuda {status['cuda_version']}"
            f"|cupy {cupy}|alphapulse {_version('alphapulse')}")


@lru_cache(maxsize=4)
def _this_device_key(device: int) -> str | None:
    return device_key(device=device)


def load_speedups(path: str | Path) -> dict:
    """The cache: ``{device key: {"measured_at": iso, "operations": {op: [[size, speedup], ...]}}}``;
    empty when the file does not exist. A corrupt file is reported once and treated as empty."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        log.warning("speedup cache %s unreadable (%s): routing without measurements", path, e)
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict) -> None:
    """Atomic: a temporary file in the same folder, renamed over the old one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def record_speedups(frame: pd.DataFrame, *, key: str, path: str | Path, replace: bool = False) -> dict:
    """Store a benchmark's measured speedups (:func:`alphapulse.pipelines.gpu.bench.run_benchmark` rows with a
    finite speedup and agreeing results) under device ``key``; ``replace`` drops the key's older
    measurements first (a refresh), else an operation's points are replaced per operation.
    Returns the key's entry."""
    path = Path(path)
    data = load_speedups(path)
    entry = {"operations": {}} if replace or key not in data else data[key]
    ok = frame[frame["speedup"].apply(lambda v: v is not None and math.isfinite(float(v)))
               & frame["agree"].apply(lambda v: v is True or v is None)]
    for op, part in ok.groupby("operation"):
        points = sorted((int(s), float(x)) for s, x in zip(part["size"], part["speedup"]))
        entry["operations"][str(op)] = [list(p) for p in points]
    entry["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data[key] = entry
    _write_json(path, data)
    return entry


def interpolated_speedup(points, size: int) -> float | None:
    """Speedup at ``size`` from measured ``[(size, speedup), ...]``: linear in log(size) between
    neighbours, the nearest end's value beyond them; None without points."""
    pts = sorted((float(s), float(v)) for s, v in points if s > 0 and v is not None and math.isfinite(v))
    if not pts:
        return None
    x = math.log(max(size, 1))
    xs = [math.log(s) for s, _ in pts]
    if x <= xs[0]:
        return pts[0][1]
    if x >= xs[-1]:
        return pts[-1][1]
    for k in range(1, len(pts)):
        if x <= xs[k]:
            f = (x - xs[k - 1]) / (xs[k] - xs[k - 1])
            return pts[k - 1][1] + f * (pts[k][1] - pts[k - 1][1])
    return pts[-1][1]  # unreachable: x < xs[-1]


def decide(operation: str, size: int, *, gpu: bool, min_speedup: float, measurements: dict | None,
           no_gpu_reason: str = "no GPU") -> dict:
    """The routing decision for one operation at one size (see the module docstring). Pure.

    Parameters
    ----------
    operation, size : what is about to run, ``size`` in the operation's unit
    gpu : whether the run's backend is the GPU
    min_speedup : ``gpu.fallback.min_speedup``
    measurements : this device's cache entry's ``operations`` (op -> [[size, speedup], ...]) or None
    no_gpu_reason : why the backend is the CPU (for the reason text)

    Returns
    -------
    dict: ``{"operation", "size", "backend": "cpu"|"gpu", "speedup": float|None, "min_speedup", "reason"}``
    """
    out = {"operation": operation, "size": int(size), "backend": "cpu", "speedup": None,
           "min_speedup": float(min_speedup)}
    if not gpu:
        return {**out, "reason": f"cpu: {no_gpu_reason}"}
    speedup = interpolated_speedup((measurements or {}).get(operation, []), size)
    if speedup is None:
        if min_speedup <= 1.0:
            return {**out, "backend": "gpu",
                    "reason": f"gpu: no measured speedup for {operation} on this device; min_speedup "
                              f"{min_speedup:g} <= 1 trusts the GPU"}
        return {**out, "reason": f"cpu: no measured speedup for {operation} on this device and min_speedup "
                                 f"{min_speedup:g} > 1 (measure: alphapulse gpu benchmark --refresh-routing)"}
    out["speedup"] = round(speedup, 4)
    if speedup >= min_speedup:
        return {**out, "backend": "gpu", "reason": f"gpu: measured speedup {speedup:.2f}x >= {min_speedup:g}"}
    return {**out, "reason": f"cpu: measured speedup {speedup:.2f}x < {min_speedup:g}"}


def route(operation: str, size: int, backend, gpu_config, *, tracker=None, key: str | None = None):
    """The backend ``operation`` at ``size`` runs on in this run, the decision recorded in the run's
    ``routing`` (the active :class:`alphapulse.pipelines.runtime.stages.RunTracker`, or ``tracker``).

    Parameters
    ----------
    backend : the run's :class:`alphapulse.pipelines.runtime.backend.Backend`
    gpu_config : the config's ``gpu`` block (``fallback.min_speedup``, ``fallback.speedup_cache``)
    tracker : where the decision is recorded (default: the active run's)
    key : the device's key in the cache (default: :func:`device_key` of the backend's device)

    Returns
    -------
    Backend: ``backend`` itself, or a CPU backend of the same dtype when routed to the CPU.
    """
    from alphapulse.pipelines.runtime.backend import cpu_backend

    fb = gpu_config.fallback
    measurements = None
    if backend.is_gpu:
        key = key or _this_device_key(backend.device or 0)
        entry = load_speedups(cache_path(fb.speedup_cache)).get(key, {}) if key else {}
        measurements = entry.get("operations")
    decision = decide(operation, size, gpu=backend.is_gpu, min_speedup=fb.min_speedup, measurements=measurements,
                      no_gpu_reason=f"no GPU ({backend.reason})")
    if tracker is None:
        from alphapulse.pipelines.runtime.stages import current_tracker

        tracker = current_tracker()
    if tracker is not None:
        decision = tracker.route(decision)
    log.info("routing %s (size %s): %s", operation, f"{size:,}", decision["reason"])
    if backend.is_gpu and decision["backend"] == "cpu":
        return cpu_backend(f"routed: {decision['reason']}", precision=str(backend.dtype))
    return backend
