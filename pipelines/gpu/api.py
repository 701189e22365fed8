"""The HTTP monitoring API (FastAPI): the GPU's status and utilisation, benchmarks, the reports.

Implements :func:`create_app` (the routes); the schemas are in
:mod:`~alphapulse.pipelines.gpu.schemas`, the report folders' lookup in
:mod:`~alphapulse.pipelines.gpu.reports`, and the connection guards in
:mod:`~alphapulse.pipelines.gpu.server`.

Endpoints (the OpenAPI schema is at ``/openapi.json``, an interactive page at ``/docs``):

- ``GET /gpu/status``: devices, driver/CUDA/RAPIDS versions (:func:`alphapulse.pipelines.gpu.status.gpu_status`);
  ``available: false`` and the reason on a machine without a GPU.
- ``GET /gpu/utilization``: one reading of the GPUs and of the server process
  (:func:`alphapulse.pipelines.gpu.status.utilization_snapshot`); ``?samples=N`` adds the last N readings of the
  server's background sampler (one every ``sample_interval_s``, the last ``history`` kept).
- ``POST /gpu/benchmark`` ``{"operation": ..., "size": ..., "dtype": ..., "repeats": ...}``: runs
  :func:`alphapulse.pipelines.gpu.bench.run_benchmark` at one size and answers ``cpu_time``, ``gpu_time``,
  ``speedup``, ``agree``, ``device``. The body is one schema per operation (a union on
  ``operation``) whose ``size`` bounds are that operation's (``gpu_bench.MIN_SIZE``/``MAX_SIZE``,
  or the lower ones the app was made with); any body the schema refuses gets 422, malformed JSON
  and numbers JSON cannot carry (``NaN``, ``1e400``) included. One benchmark runs at a time: a
  request arriving while one runs gets 409 at once.
- ``GET /runs``: the report folders under the reports root(s): id, pipeline, run id, time,
  backend and why, status, alerts, path. ``GET /runs/{id}``: the manifest and the folder's
  files; ``GET /runs/{id}/summary.html``: the page for people.

Every error body is ``{"detail": "<one line>"}`` (:class:`~alphapulse.pipelines.gpu.schemas.Problem`),
and the schema lists every status each operation answers, so a client (or schemathesis) can hold
the server to it.

Safety: the server binds to 127.0.0.1 unless told otherwise (``alphapulse serve`` refuses a
non-loopback host without ``--allow-remote``: there is no authentication). Request bodies are
bounded (``max_body_bytes``, 64 KiB by default; 413 above it, with or without a Content-Length).
Served under :func:`~alphapulse.pipelines.gpu.server.server_options`, a request's headers must arrive within
``header_timeout_s`` and its body within ``body_timeout_s`` (408, then the connection is closed),
and at the connection limit a new connection closes the oldest one not running a request
(still sending one, or idle), so slow clients cannot starve the others.
A run id is looked up among the folders found by listing the roots, never joined to a path: ids
with a path separator, a NUL or a leading dot are refused (400) and unknown ids get 404, so a
request cannot reach outside the roots. Symbolic links are not followed: a linked report folder
is not listed, and a manifest or page that is a link (or not a regular file) is not read.
"""
from __future__ import annotations

import json
import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Union

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute

from alphapulse.pipelines.errors import ArgumentError
from alphapulse.pipelines.gpu import bench as gpu_bench
from alphapulse.pipelines.gpu.reports import (RUN_ID_MAX_LENGTH, RUN_ID_PATTERN, SUMMARY_HTML, ReportRoots,
                                              is_regular_file)
from alphapulse.pipelines.gpu.schemas import (MAX_REPEATS, SERVER_ANSWERS, BenchmarkResult, GpuStatus, Problem,
                                              RunDetail, RunFile, RunSummary, Utilization, benchmark_request_models,
                                              json_problem, problem_doc, size_caps, validation_detail)
from alphapulse.pipelines.gpu.server import MAX_BODY_BYTES, BodyLimit

_PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # the page needs nothing else


class _JsonBodyRoute(APIRoute):
    """A route whose body must be JSON: what ``json.loads`` cannot read gets 422 naming why, where
    FastAPI answers a bare 400 for all but syntax errors (bad UTF-8, deep nesting, huge integers)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def checked(request: Request):
            raw = await request.body()  # cached on the request: the handler reads it again for free
            problem = json_problem(raw) if raw else None
            if problem is not None:
                return JSONResponse({"detail": problem}, status_code=422)
            return await handler(request)

        return checked


class _History:
    """The server's own utilisation readings, taken by a daemon thread (bounded memory)."""

    def __init__(self, interval_s: float, keep: int):
        self.interval_s = interval_s
        self.readings: deque = deque(maxlen=keep)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _loop(self):
        from alphapulse.pipelines.gpu.status import utilization_snapshot

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


def _tell_the_truth(doc: dict) -> dict:
    """Finish the generated schema: the error body's schema, and no 422 where nothing can fail
    validation (FastAPI adds one with its own error body to every route with a parameter)."""
    doc.setdefault("components", {}).setdefault("schemas", {})["Problem"] = Problem.model_json_schema()
    for item in doc["paths"].values():
        for operation in item.values():
            answer = operation.get("responses", {}).get("422", {})
            ref = answer.get("content", {}).get("application/json", {}).get("schema", {}).get("$ref", "")
            if ref.endswith("/HTTPValidationError"):
                del operation["responses"]["422"]
    if "HTTPValidationError" not in json.dumps(doc["paths"]):
        for name in ("HTTPValidationError", "ValidationError"):
            doc["components"]["schemas"].pop(name, None)
    return doc


def create_app(reports_dirs, *, max_body_bytes: int = MAX_BODY_BYTES, sample_interval_s: float = 0.0,
               history: int = 720, max_sizes: Mapping[str, int] | None = None,
               max_repeats: int = MAX_REPEATS) -> FastAPI:
    """The monitoring API over the report folders under ``reports_dirs``.

    Parameters
    ----------
    reports_dirs : a folder or a list of folders (report folders, or folders holding them); a
        missing one lists nothing until it exists
    max_body_bytes : largest request body accepted (413 above)
    sample_interval_s : seconds between the server's own utilisation readings (``?samples=N``);
        0 takes none
    history : readings kept (the oldest dropped)
    max_sizes : operation -> largest benchmark size accepted, at most (and by default)
        ``gpu_bench.MAX_SIZE``; the schema states them
    max_repeats : largest benchmark ``repeats``, at most (and by default) ``MAX_REPEATS``

    Returns
    -------
    fastapi.FastAPI, with ``app.state.benchmark_lock`` (held while a benchmark runs) and
    ``app.state.roots``. Serve it with :func:`server_options`.
    """
    from contextlib import asynccontextmanager

    if isinstance(reports_dirs, (str, Path)):
        reports_dirs = [reports_dirs]
    roots = tuple(Path(p).absolute() for p in reports_dirs)
    for root in roots:
        if root.exists() and not root.is_dir():
            raise ArgumentError(f"{root}: reports root exists and is not a folder")
    bench_models = benchmark_request_models(max_sizes, max_repeats)
    caps = size_caps(max_sizes)
    default_size = {op: min(min(gpu_bench.default_sizes(op)), caps[op]) for op in gpu_bench.OPERATIONS}
    if sample_interval_s:  # 0: no background sampler; anything else within the sampler's bounds
        from alphapulse.pipelines.gpu.status import check_sample_interval

        check_sample_interval(sample_interval_s, name="sample_interval_s")
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

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request, exc: RequestValidationError):
        return JSONResponse({"detail": validation_detail(exc.errors())}, status_code=422)

    def openapi():
        if app.openapi_schema is None:
            _tell_the_truth(FastAPI.openapi(app))  # FastAPI.openapi caches what it builds on the app
        return app.openapi_schema

    app.openapi = openapi
    invalid = problem_doc("the request does not match this schema")

    @app.get("/gpu/status", response_model=GpuStatus, tags=["gpu"], operation_id="gpu_status",
             responses=SERVER_ANSWERS)
    def gpu_status_endpoint():
        """Devices, driver and CUDA versions, RAPIDS versions; ``available: false`` and why without a GPU."""
        from alphapulse.pipelines.gpu.status import gpu_status

        return gpu_status()

    @app.get("/gpu/utilization", response_model=Utilization, response_model_exclude_none=False, tags=["gpu"],
             operation_id="gpu_utilization", responses={**SERVER_ANSWERS, 422: invalid})
    def gpu_utilization(samples: int = Query(0, ge=0, le=max(history, 1),
                                             description="also return the server's last N readings")):
        """One reading now: GPU utilisation and memory per device, the server process's CPU % and RSS."""
        from alphapulse.pipelines.gpu.status import utilization_snapshot

        out = utilization_snapshot()
        if samples:
            recent = list(sampler.readings)[-samples:] if sampler is not None else []
            out = {**out, "samples": recent}
        return out

    def gpu_benchmark(req):
        """Run one operation at one size on the CPU and, where usable, the GPU, on the same seeded
        data: times (median of ``repeats`` after a warm-up), speedup and whether the results agree."""
        lock = app.state.benchmark_lock
        if not lock.acquire(blocking=False):
            running = app.state.benchmark_running or {}
            raise HTTPException(409, "a benchmark is already running"
                                + (f" ({running.get('operation')} size {running.get('size')}, since "
                                   f"{running.get('since')})" if running else "") + "; retry when it is done")
        size = req.size if req.size is not None else default_size[req.operation]
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

    # The body's type is made above from the app's bounds, so it is set here rather than written
    # in the signature (which, under postponed annotations, FastAPI would look up by name).
    gpu_benchmark.__annotations__ = {"req": Annotated[Union[bench_models], Body(discriminator="operation")]}
    app.router.add_api_route(
        "/gpu/benchmark", gpu_benchmark, methods=["POST"], response_model=BenchmarkResult, tags=["gpu"],
        operation_id="gpu_benchmark", route_class_override=_JsonBodyRoute,
        responses={**SERVER_ANSWERS, 409: problem_doc("a benchmark is already running"),
                   422: problem_doc("the body is not JSON, or does not match one of the operations' schemas")})

    run_id_param = PathParam(description="a report folder's id, as GET /runs lists it",
                             json_schema_extra={"pattern": RUN_ID_PATTERN, "maxLength": RUN_ID_MAX_LENGTH})
    bad_id, no_run = problem_doc("not a report folder's name"), problem_doc("no such report folder")

    @app.get("/runs", response_model=list[RunSummary], tags=["runs"], operation_id="list_runs",
             responses={**SERVER_ANSWERS, 200: {"links": {
                 "newest_run": {"operationId": "run_detail", "parameters": {"run_id": "$response.body#/0/id"},
                                "description": "the newest report folder's manifest and files"},
                 "newest_page": {"operationId": "run_page", "parameters": {"run_id": "$response.body#/0/id"},
                                 "description": "the newest report folder's page"}}}})
    def runs():
        """The report folders under the roots, newest first."""
        found = [app.state.roots.summary(rid, folder)[0] for rid, folder in app.state.roots.folders().items()]
        return sorted(found, key=lambda r: r.created_at or "", reverse=True)

    @app.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"], operation_id="run_detail",
             responses={**SERVER_ANSWERS, 400: bad_id, 404: no_run, 200: {"links": {
                 "page": {"operationId": "run_page", "parameters": {"run_id": "$response.body#/id"},
                          "description": "this report folder's page"}}}})
    def run_detail(run_id: str = run_id_param):
        """One report folder: its manifest and its files (regular files only: links are not listed)."""
        folder = app.state.roots.find(run_id)
        summary, manifest = app.state.roots.summary(run_id, folder)
        files = [RunFile(name=p.name, bytes=p.stat().st_size) for p in sorted(folder.iterdir()) if is_regular_file(p)]
        return RunDetail(**summary.model_dump(), manifest=manifest, files=files)

    @app.get("/runs/{run_id}/summary.html", response_class=HTMLResponse, tags=["runs"], operation_id="run_page",
             responses={**SERVER_ANSWERS, 400: bad_id,
                        404: problem_doc("no such report folder, or it has no summary.html that is a regular "
                                          "file (a symbolic link is not followed)")})
    def run_page(run_id: str = run_id_param):
        """The report folder's self-contained ``summary.html``."""
        folder = app.state.roots.find(run_id)
        try:
            page = app.state.roots.read(folder, SUMMARY_HTML)
        except FileNotFoundError:
            raise HTTPException(404, f"report folder {run_id!r} has no {SUMMARY_HTML}") from None
        except OSError as e:
            raise HTTPException(404, f"report folder {run_id!r}: {e}") from None
        return HTMLResponse(page, headers={"Content-Security-Policy": _PAGE_POLICY})

    return app
