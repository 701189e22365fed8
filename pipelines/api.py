"""The HTTP monitoring API (FastAPI): the GPU's status and utilisation, benchmarks, the reports.

Endpoints (the OpenAPI schema is at ``/openapi.json``, an interactive page at ``/docs``):

- ``GET /gpu/status``: devices, driver/CUDA/RAPIDS versions (:func:`pipelines.gpu.gpu_status`);
  ``available: false`` and the reason on a machine without a GPU.
- ``GET /gpu/utilization``: one reading of the GPUs and of the server process
  (:func:`pipelines.gpu.utilization_snapshot`); ``?samples=N`` adds the last N readings of the
  server's background sampler (one every ``sample_interval_s``, the last ``history`` kept).
- ``POST /gpu/benchmark`` ``{"operation": ..., "size": ..., "dtype": ..., "repeats": ...}``: runs
  :func:`pipelines.gpu_bench.run_benchmark` at one size and answers ``cpu_time``, ``gpu_time``,
  ``speedup``, ``agree``, ``device``. Sizes are bounded by ``gpu_bench.MIN_SIZE``/``MAX_SIZE``
  (422 outside them, for an unknown operation and for a malformed body); one benchmark runs at a
  time: a request arriving while one runs gets 409 at once.
- ``GET /runs``: the report folders under the reports root(s): id, pipeline, run id, time,
  backend and why, status, alerts, path. ``GET /runs/{id}``: the manifest and the folder's
  files; ``GET /runs/{id}/summary.html``: the page for people.

Safety: the server binds to 127.0.0.1 unless told otherwise (``alphapulse serve`` refuses a
non-loopback host without ``--allow-remote``: there is no authentication). Request bodies are
bounded (``max_body_bytes``, 64 KiB by default; 413 above it, with or without a Content-Length).
A run id is looked up among the folders found by listing the roots, never joined to a path: ids
with a path separator, a NUL or a leading dot are refused (400) and unknown ids get 404, so a
request cannot reach outside the roots; symbolic links in a root are not followed.
"""
from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipelines import gpu_bench

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REPEATS = 10
SUMMARY_HTML = "summary.html"
_PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # the page needs nothing else


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


class GpuDevice(BaseModel):
    id: int
    name: str
    compute_capability: str
    memory_total_bytes: int
    memory_free_bytes: int


class GpuStatus(BaseModel):
    available: bool
    reason: str | None = None
    driver_version: str | None = None
    cuda_version: str | None = None
    cupy_cuda_runtime: str | None = None
    devices: list[GpuDevice] = []
    rapids: dict[str, str] = {}


class DeviceReading(BaseModel):
    id: int
    utilization_pct: float | None = None
    memory_used_bytes: int | None = None
    memory_total_bytes: int | None = None


class ProcessReading(BaseModel):
    cpu_pct: float | None = Field(None, description="since the previous reading; 100 = one core busy")
    rss_bytes: int | None = None


class UtilizationReading(BaseModel):
    timestamp: str
    available: bool
    reason: str | None = None
    devices: list[DeviceReading] = []
    process: ProcessReading


class Utilization(UtilizationReading):
    samples: list[UtilizationReading] | None = Field(
        None, description="the server's last readings, oldest first (when ?samples=N is given)")


class BenchmarkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operation: Literal[gpu_bench.OPERATIONS]
    size: int | None = Field(None, description="in the operation's unit (gpu_bench.UNITS), within its bounds; "
                                               "default the smallest of its default sizes")
    dtype: Literal["float64", "float32"] = "float64"
    repeats: int = Field(3, ge=1, le=MAX_REPEATS, description="timed runs per backend after a warm-up; median")

    @model_validator(mode="after")
    def _size_in_bounds(self):
        if self.size is not None:
            gpu_bench.check_sizes(self.operation, [self.size])  # ValueError -> 422 naming the bounds
        return self


class BenchmarkResult(BaseModel):
    operation: str
    size: int
    unit: str
    shape: str
    dtype: str
    device: str = Field(description="the GPU's name, or 'cpu' when there is none")
    cpu_time: float = Field(description="seconds, median of `repeats` runs")
    gpu_time: float | None = Field(None, description="seconds; null without a usable GPU")
    speedup: float | None = Field(None, description="cpu_time / gpu_time")
    agree: bool | None = Field(None, description="GPU and CPU results agree within the dtype's tolerance")
    max_abs_diff: float | None = None
    cpu_check: bool | None = None
    repeats: int
    gpu_reason: str | None = None
    wall_s: float = Field(description="seconds the whole request's benchmark took (warm-ups included)")


class RunSummary(BaseModel):
    id: str = Field(description="the report folder's name (unique across roots: a later duplicate gets ~2, ~3)")
    pipeline: str | None = None
    run_id: str | None = None
    created_at: str | None = None
    backend: str | None = None
    backend_reason: str | None = None
    status: Literal["ok", "alerts", "unreadable"]
    alerts: int = 0
    error: str | None = None
    path: str
    summary_html: str | None = Field(None, description="URL path of the page, when the folder has one")


class RunFile(BaseModel):
    name: str
    bytes: int


class RunDetail(RunSummary):
    manifest: dict | None = None
    files: list[RunFile]


class Problem(BaseModel):
    detail: str


# ---------------------------------------------------------------------------------------------
# Report folders
# ---------------------------------------------------------------------------------------------


def check_run_id(run_id: str) -> str:
    """A run id as it may be looked up: a plain folder name. HTTPException 400 otherwise."""
    if (not run_id or "/" in run_id or "\\" in run_id or "\x00" in run_id or run_id.startswith(".")
            or len(run_id) > 255):
        raise HTTPException(400, f"invalid run id {run_id!r}: a report folder's name, without path separators")
    return run_id


@dataclass(frozen=True)
class ReportRoots:
    """The folders whose report folders the API lists: each root itself when it holds a
    ``manifest.json``, and each of its immediate, visible, non-link sub-folders that does."""

    roots: tuple[Path, ...]

    def folders(self) -> dict[str, Path]:
        """id -> report folder, roots in order, folders by name."""
        out: dict[str, Path] = {}
        for root in self.roots:
            if not root.is_dir():
                continue
            candidates = [root] + sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()
                                         and not p.is_symlink())
            for folder in candidates:
                if not (folder / "manifest.json").is_file():
                    continue
                rid, k = folder.name, 1
                while rid in out:
                    k += 1
                    rid = f"{folder.name}~{k}"
                out[rid] = folder
        return out

    def summary(self, rid: str, folder: Path) -> tuple[RunSummary, dict | None]:
        manifest, error = None, None
        try:
            manifest = json.loads((folder / "manifest.json").read_text())
            if not isinstance(manifest, dict):
                raise ValueError("manifest.json is not a JSON object")
        except (OSError, ValueError) as e:
            manifest, error = None, f"{type(e).__name__}: {e}"
        m = manifest or {}
        be = m.get("backend") if isinstance(m.get("backend"), dict) else {}
        alerts = m.get("alerts") if isinstance(m.get("alerts"), list) else []
        status = "unreadable" if manifest is None else ("alerts" if alerts else "ok")
        has_page = (folder / SUMMARY_HTML).is_file()

        def text(v):
            return None if v is None else str(v)

        return RunSummary(id=rid, pipeline=text(m.get("pipeline")), run_id=text(m.get("run_id")),
                          created_at=text(m.get("created_at")), backend=text(be.get("name")),
                          backend_reason=text(be.get("reason")), status=status, alerts=len(alerts), error=error,
                          path=str(folder), summary_html=f"/runs/{rid}/{SUMMARY_HTML}" if has_page else None), manifest

    def find(self, rid: str) -> Path:
        folder = self.folders().get(check_run_id(rid))
        if folder is None:
            raise HTTPException(404, f"no report folder {rid!r} under {', '.join(map(str, self.roots))}")
        return folder


# ---------------------------------------------------------------------------------------------
# Request size bound (a pure ASGI middleware: it sees the body before FastAPI parses it)
# ---------------------------------------------------------------------------------------------


class BodyLimit:
    """Answer 413 to a request whose body exceeds ``max_bytes`` (declared by Content-Length or
    streamed in chunks); smaller bodies are buffered and handed on unchanged."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _reject(self, send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = f"request body larger than {self.max_bytes:,} bytes"
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                return await self._reject(send, 400, "invalid Content-Length")
            if n > self.max_bytes:
                return await self._reject(send, 413, too_big)
        chunks, total, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:
                return await self._reject(send, 413, too_big)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------


class _History:
    """The server's own utilisation readings, taken by a daemon thread (bounded memory)."""

    def __init__(self, interval_s: float, keep: int):
        self.interval_s = interval_s
        self.readings: deque = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self):
        from pipelines.gpu import utilization_snapshot

        while True:
            self.readings.append(utilization_snapshot())
            if self._stop.wait(self.interval_s):
                return

    def start(self):
        self._thread = threading.Thread(target=self._loop, name="alphapulse-api-sampler", daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _finite(v) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def create_app(reports_dirs, *, max_body_bytes: int = MAX_BODY_BYTES, sample_interval_s: float = 0.0,
               history: int = 720) -> FastAPI:
    """The monitoring API over the report folders under ``reports_dirs``.

    Parameters
    ----------
    reports_dirs : a folder or a list of folders (report folders, or folders holding them); a
        missing one lists nothing until it exists
    max_body_bytes : largest request body accepted (413 above)
    sample_interval_s : seconds between the server's own utilisation readings (``?samples=N``);
        0 takes none
    history : readings kept (the oldest dropped)

    Returns
    -------
    fastapi.FastAPI, with ``app.state.benchmark_lock`` (held while a benchmark runs) and
    ``app.state.roots``.
    """
    from contextlib import asynccontextmanager

    if isinstance(reports_dirs, (str, Path)):
        reports_dirs = [reports_dirs]
    roots = tuple(Path(p).absolute() for p in reports_dirs)
    for root in roots:
        if root.exists() and not root.is_dir():
            raise ValueError(f"{root}: reports root exists and is not a folder")
    sampler = _History(sample_interval_s, history) if sample_interval_s > 0 else None

    @asynccontextmanager
    async def lifespan(app):
        if sampler is not None:
            sampler.start()
        try:
            yield
        finally:
            if sampler is not None:
                sampler.stop()

    app = FastAPI(title="AlphaPulse monitoring API", version="1",
                  description="GPU status, utilisation and benchmarks; the run reports.", lifespan=lifespan)
    app.state.roots = ReportRoots(roots)
    app.state.benchmark_lock = threading.Lock()
    app.state.benchmark_running = None
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)

    @app.get("/gpu/status", response_model=GpuStatus, tags=["gpu"])
    def gpu_status_endpoint():
        """Devices, driver and CUDA versions, RAPIDS versions; ``available: false`` and why without a GPU."""
        from pipelines.gpu import gpu_status

        return gpu_status()

    @app.get("/gpu/utilization", response_model=Utilization, response_model_exclude_none=False, tags=["gpu"])
    def gpu_utilization(samples: int = Query(0, ge=0, le=max(history, 1),
                                             description="also return the server's last N readings")):
        """One reading now: GPU utilisation and memory per device, the server process's CPU % and RSS."""
        from pipelines.gpu import utilization_snapshot

        out = utilization_snapshot()
        if samples:
            recent = list(sampler.readings)[-samples:] if sampler is not None else []
            out = {**out, "samples": recent}
        return out

    @app.post("/gpu/benchmark", response_model=BenchmarkResult, tags=["gpu"],
              responses={409: {"model": Problem, "description": "a benchmark is already running"},
                         413: {"model": Problem, "description": "request body too large"}})
    def gpu_benchmark(req: BenchmarkRequest):
        """Run one operation at one size on the CPU and, where usable, the GPU, on the same seeded
        data: times (median of ``repeats`` after a warm-up), speedup and whether the results agree."""
        lock = app.state.benchmark_lock
        if not lock.acquire(blocking=False):
            running = app.state.benchmark_running or {}
            raise HTTPException(409, "a benchmark is already running"
                                + (f" ({running.get('operation')} size {running.get('size')}, since "
                                   f"{running.get('since')})" if running else "") + "; retry when it is done")
        size = req.size if req.size is not None else min(gpu_bench.default_sizes(req.operation))
        try:
            app.state.benchmark_running = {"operation": req.operation, "size": size,
                                           "since": time.strftime("%H:%M:%S")}
            start = time.perf_counter()
            row = gpu_bench.run_benchmark(req.operation, [size], dtype=req.dtype, repeats=req.repeats).iloc[0]
            wall = time.perf_counter() - start
        finally:
            app.state.benchmark_running = None
            lock.release()
        agree = row["agree"]
        return BenchmarkResult(
            operation=req.operation, size=int(row["size"]), unit=gpu_bench.UNITS[req.operation],
            shape=str(row["shape"]),
            dtype=str(row["dtype"]), device=str(row["device"]), cpu_time=float(row["cpu_time"]),
            gpu_time=_finite(row["gpu_time"]), speedup=_finite(row["speedup"]),
            agree=None if agree is None else bool(agree), max_abs_diff=_finite(row["max_abs_diff"]),
            cpu_check=None if row["cpu_check"] is None else bool(row["cpu_check"]), repeats=int(row["repeats"]),
            gpu_reason=None if row["gpu_reason"] is None else str(row["gpu_reason"]), wall_s=round(wall, 4))

    @app.get("/runs", response_model=list[RunSummary], tags=["runs"])
    def runs():
        """The report folders under the roots, newest first."""
        found = [app.state.roots.summary(rid, folder)[0] for rid, folder in app.state.roots.folders().items()]
        return sorted(found, key=lambda r: r.created_at or "", reverse=True)

    @app.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"],
             responses={400: {"model": Problem}, 404: {"model": Problem}})
    def run_detail(run_id: str):
        """One report folder: its manifest and its files."""
        folder = app.state.roots.find(run_id)
        summary, manifest = app.state.roots.summary(run_id, folder)
        files = [RunFile(name=p.name, bytes=p.stat().st_size) for p in sorted(folder.iterdir())
                 if p.is_file() and not p.is_symlink()]
        return RunDetail(**summary.model_dump(), manifest=manifest, files=files)

    @app.get("/runs/{run_id}/summary.html", response_class=HTMLResponse, tags=["runs"],
             responses={400: {"model": Problem}, 404: {"model": Problem}})
    def run_page(run_id: str):
        """The report folder's self-contained ``summary.html``."""
        page = app.state.roots.find(run_id) / SUMMARY_HTML
        if not page.is_file():
            raise HTTPException(404, f"report folder {run_id!r} has no {SUMMARY_HTML}")
        return HTMLResponse(page.read_text(encoding="utf-8"), headers={"Content-Security-Policy": _PAGE_POLICY})

    return app
