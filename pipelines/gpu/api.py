"""The HTTP monitoring API (FastAPI): the GPU's status and utilisation, benchmarks, the reports.

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

Every error body is ``{"detail": "<one line>"}`` (:class:`Problem`), and the schema lists every
status each operation answers, so a client (or schemathesis) can hold the server to it.

Safety: the server binds to 127.0.0.1 unless told otherwise (``alphapulse serve`` refuses a
non-loopback host without ``--allow-remote``: there is no authentication). Request bodies are
bounded (``max_body_bytes``, 64 KiB by default; 413 above it, with or without a Content-Length).
Served under :func:`server_options`, a request's headers must arrive within
``header_timeout_s`` and its body within ``body_timeout_s`` (408, then the connection is closed),
and at the connection limit a new connection closes the oldest one not running a request
(still sending one, or idle), so slow clients cannot starve the others.
A run id is looked up among the folders found by listing the roots, never joined to a path: ids
with a path separator, a NUL or a leading dot are refused (400) and unknown ids get 404, so a
request cannot reach outside the roots. Symbolic links are not followed: a linked report folder
is not listed, and a manifest or page that is a link (or not a regular file) is not read.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
import socket
import stat
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Union

import h11
from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, create_model, field_validator
from uvicorn.protocols.http.h11_impl import H11Protocol

from alphapulse.pipelines.gpu import bench as gpu_bench

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_REPEATS = 10
DEFAULT_REPEATS = 3
HEADER_TIMEOUT_S = 10.0
BODY_TIMEOUT_S = 30.0
MAX_CONNECTIONS = 64
KEEP_ALIVE_S = 5
SUMMARY_HTML = "summary.html"
MANIFEST = "manifest.json"
RUN_ID_PATTERN = r"^[^./\\\x00][^/\\\x00]*$"
"""A report folder's name: no path separator or NUL, no leading dot (the schema states it too)."""
RUN_ID_MAX_LENGTH = 255
_PAGE_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"  # the page needs nothing else
_DTYPES = ("float64", "float32")


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


def _short(v) -> str:
    """A value as the client sent it, in JSON's spelling, cut to a few words for a message."""
    if isinstance(v, bool) or v is None:
        text = json.dumps(v)
    elif isinstance(v, float) and not math.isfinite(v):
        text = "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    elif isinstance(v, (int, float)):
        text = str(v)
    elif isinstance(v, str):
        text = json.dumps(v)
    else:
        text = "an array" if isinstance(v, list) else "an object"
    return text if len(text) <= 40 else text[:37] + "..."


def _bounded_int(v, lo: int, hi: int, unit: str) -> int:
    """``v`` as an int within [lo, hi], else ValueError saying why and what is expected.

    JSON's integers include ``20.0``; ``NaN`` and infinities (``1e400`` parses to one) are not
    numbers JSON can carry, so they are refused with that reason rather than compared."""
    expected = f"expected an integer from {lo:,} to {hi:,} {unit}"
    if isinstance(v, float) and not math.isfinite(v):
        raise ValueError(f"{_short(v)} is not a number JSON can carry (NaN, or beyond a 64-bit float like "
                         f"1e400): {expected}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{_short(v)} is not an integer: {expected}")
    if not lo <= v <= hi:
        raise ValueError(f"{_short(v)} is out of bounds: {expected}")
    return v


def _size_caps(max_sizes: Mapping[str, int] | None) -> dict[str, int]:
    caps = dict(gpu_bench.MAX_SIZE)
    for op, cap in (max_sizes or {}).items():
        if op not in gpu_bench.OPERATIONS:
            raise ValueError(f"max_sizes: unknown operation {op!r}: expected one of {', '.join(gpu_bench.OPERATIONS)}")
        if isinstance(cap, bool) or not isinstance(cap, int) or not (
                gpu_bench.MIN_SIZE[op] <= cap <= gpu_bench.MAX_SIZE[op]):
            raise ValueError(f"max_sizes[{op!r}] = {cap!r}: expected an integer from {gpu_bench.MIN_SIZE[op]:,} "
                             f"to {gpu_bench.MAX_SIZE[op]:,}")
        caps[op] = cap
    return caps


def benchmark_request_models(max_sizes: Mapping[str, int] | None = None,
                             max_repeats: int = MAX_REPEATS) -> tuple[type[BaseModel], ...]:
    """The body of ``POST /gpu/benchmark``: one model per operation (the API takes their union,
    told apart by ``operation``), so the schema states each operation's own size bounds.

    Parameters
    ----------
    max_sizes : operation -> largest size the server accepts, at most ``gpu_bench.MAX_SIZE``
        (default: that); the smallest is always ``gpu_bench.MIN_SIZE``
    max_repeats : largest ``repeats``

    Returns
    -------
    tuple of pydantic models, in ``gpu_bench.OPERATIONS`` order
    """
    caps = _size_caps(max_sizes)
    if isinstance(max_repeats, bool) or not isinstance(max_repeats, int) or not 1 <= max_repeats <= MAX_REPEATS:
        raise ValueError(f"max_repeats {max_repeats!r}: expected an integer from 1 to {MAX_REPEATS}")
    default_repeats = min(DEFAULT_REPEATS, max_repeats)

    def size_check(op, lo, hi, unit):
        def check(cls, v):
            # Before pydantic's own checks, so that a wrong size is told with its bounds and unit.
            return None if v is None else _bounded_int(v, lo, hi, f"{unit} for {op}")
        return field_validator("size", mode="before")(check)

    def repeats_check(cls, v):
        return _bounded_int(v, 1, max_repeats, "timed runs")

    models = []
    for op in gpu_bench.OPERATIONS:
        lo, hi, unit = gpu_bench.MIN_SIZE[op], caps[op], gpu_bench.UNITS[op]
        default = min(min(gpu_bench.default_sizes(op)), hi)
        models.append(create_model(
            f"Benchmark{op.capitalize()}Request",
            __config__={"extra": "forbid", "title": f"Benchmark{op.capitalize()}Request"},
            __doc__=f"Benchmark {op} at one size, in {unit}.",
            __validators__={"check_size": size_check(op, lo, hi, unit),
                            "check_repeats": field_validator("repeats", mode="before")(repeats_check)},
            operation=(Literal[op], ...),
            size=(int | None, Field(None, ge=lo, le=hi,
                                    description=f"{unit}, from {lo:,} to {hi:,}; null or absent: {default:,}")),
            dtype=(Literal[_DTYPES], "float64"),
            repeats=(int, Field(default_repeats, ge=1, le=max_repeats,
                                description="timed runs per backend after a warm-up; the median is reported")),
        ))
    return tuple(models)


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
    detail: str = Field(description="what was wrong, in one line, naming the field or the limit")


def _problem_doc(description: str) -> dict:
    """An error response in the schema: a :class:`Problem` as JSON, whatever the route's own type."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


# What the server itself may answer to any request, before or around the route (see server_options).
_SERVER_ANSWERS = {
    408: _problem_doc("the request's headers or body did not arrive in time; the connection is then closed"),
    413: _problem_doc("request body larger than the server's limit"),
    503: {"description": "the server's connection limit is reached, every connection busy with a request "
                         "(uvicorn's plain-text answer)",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}


def _validation_detail(errors) -> str:
    """Pydantic's errors as one line: ``field: what is wrong``, never echoing the input itself
    (a NaN or an infinity in it is what made FastAPI's own answer fail)."""
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ())]
        if loc[:1] == ["body"]:
            loc = loc[1:]
            if loc[:1] and loc[0] in gpu_bench.OPERATIONS:  # the union's branch: the message names it
                loc = loc[1:]
        kind, msg = e.get("type"), str(e.get("msg", "invalid")).removeprefix("Value error, ")
        if kind == "union_tag_not_found":
            loc, msg = ["operation"], f"required: one of {', '.join(gpu_bench.OPERATIONS)}"
        elif kind == "union_tag_invalid":
            tag = (e.get("ctx") or {}).get("tag")
            loc, msg = ["operation"], (f"{_short(tag)} is not one of {', '.join(gpu_bench.OPERATIONS)}")
        parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    text = "; ".join(parts).replace("\n", " ") or "invalid request"
    return text if len(text) <= 600 else text[:597] + "..."


def _json_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a JSON document Python reads, or None when it is."""
    try:
        json.loads(raw)  # what FastAPI parses the body with
    except RecursionError:
        return "request body is not valid JSON: nested too deeply"
    except ValueError as e:  # bad syntax, bad UTF-8, an integer longer than Python reads
        why = str(e).splitlines()[0].split("; use sys.")[0]  # Python's advice means nothing to a client
        return f"request body is not valid JSON: {why[:200]}"
    return None


class _JsonBodyRoute(APIRoute):
    """A route whose body must be JSON: what ``json.loads`` cannot read gets 422 naming why, where
    FastAPI answers a bare 400 for all but syntax errors (bad UTF-8, deep nesting, huge integers)."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def checked(request: Request):
            raw = await request.body()  # cached on the request: the handler reads it again for free
            problem = _json_problem(raw) if raw else None
            if problem is not None:
                return JSONResponse({"detail": problem}, status_code=422)
            return await handler(request)

        return checked


# ---------------------------------------------------------------------------------------------
# Report folders
# ---------------------------------------------------------------------------------------------


def check_run_id(run_id: str) -> str:
    """A run id as it may be looked up: a plain folder name. HTTPException 400 otherwise."""
    if len(run_id) > RUN_ID_MAX_LENGTH or not re.fullmatch(RUN_ID_PATTERN, run_id):
        raise HTTPException(400, f"invalid run id {_short(run_id)}: a report folder's name (no path separator, "
                                 f"NUL or leading dot; at most {RUN_ID_MAX_LENGTH} characters)")
    return run_id


def _read_regular(folder: Path, name: str, *, follow_folder: bool) -> bytes:
    """The bytes of ``folder/name`` when it is a regular file reached without following a
    symbolic link (``folder`` itself only when ``follow_folder``); OSError otherwise.

    The checks are made on the open descriptors, so a file swapped for a link between listing
    and reading is refused too; O_NONBLOCK keeps a FIFO from blocking the open."""
    flags = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | (0 if follow_folder else os.O_NOFOLLOW)
    try:
        dir_fd = os.open(folder, flags)
    except OSError as e:
        raise OSError(f"{folder.name}: not a folder reached without a symbolic link ({e.strerror})") from None
    try:
        if stat.S_ISLNK(os.lstat(name, dir_fd=dir_fd).st_mode):
            raise OSError(f"{name} is a symbolic link (not followed)")
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{name} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        return f.read()


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


@dataclass(frozen=True)
class ReportRoots:
    """The folders whose report folders the API lists: each root itself when it holds a
    ``manifest.json``, and each of its immediate, visible, non-link sub-folders that does (a
    manifest that is a link or not a file lists the folder as unreadable, saying so)."""

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
                if not os.path.lexists(folder / MANIFEST):
                    continue
                rid, k = folder.name, 1
                while rid in out:
                    k += 1
                    rid = f"{folder.name}~{k}"
                out[rid] = folder
        return out

    def read(self, folder: Path, name: str) -> bytes:
        """A file of a report folder: a regular file, no link followed below the roots."""
        return _read_regular(folder, name, follow_folder=folder in self.roots)

    def summary(self, rid: str, folder: Path) -> tuple[RunSummary, dict | None]:
        manifest, error = None, None
        try:
            manifest = json.loads(self.read(folder, MANIFEST))
            if not isinstance(manifest, dict):
                raise ValueError("manifest.json is not a JSON object")
        except (OSError, ValueError) as e:
            manifest, error = None, f"{type(e).__name__}: {e}"
        m = manifest or {}
        be = m.get("backend") if isinstance(m.get("backend"), dict) else {}
        alerts = m.get("alerts") if isinstance(m.get("alerts"), list) else []
        status = "unreadable" if manifest is None else ("alerts" if alerts else "ok")
        has_page = _is_regular(folder / SUMMARY_HTML)

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
# Slow clients (a protocol-level guard: ASGI code only runs once a request's headers are in)
# ---------------------------------------------------------------------------------------------


def _timeout_reply(detail: str) -> bytes:
    body = json.dumps({"detail": detail}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the read deadlines uvicorn lacks (its keep-alive timer stops at
    a request's first byte, so a client trickling its headers or body holds the connection for
    ever; uvicorn issue 157): a request's headers must be in within ``header_timeout_s`` of its
    first byte (or of the connection), its body within ``body_timeout_s`` of the headers. Past
    either, a client that sent part of a request gets 408, and the connection is closed.

    And at the connection limit (uvicorn's ``limit_concurrency``, which counts connections: at it
    every new request gets 503), a new connection closes the oldest one that is not running a
    request (still sending one, or idle between two), so connections held open cannot lock the
    others out. :func:`server_options` makes the subclass with the deadlines set."""

    header_timeout_s: float = HEADER_TIMEOUT_S
    body_timeout_s: float = BODY_TIMEOUT_S

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # asyncio sets TCP_NODELAY only on sockets made with proto=IPPROTO_TCP: on a listening
            # socket handed over as socket.socket() (proto 0) each response waits out the client's
            # delayed ACK, some 40 ms
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self._since = time.monotonic()
        self._received = False  # a byte of the current request is in (only then a 408 makes sense)
        self._deadline: asyncio.TimerHandle | None = None
        self._make_room()
        self._follow(received=False, fresh=True)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow(received=True)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # a pipelined request may already be partly in: its headers are now on the clock
        self._follow(received=bool(self.conn.trailing_data[0]))

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _follow(self, *, received: bool, fresh: bool = False) -> None:
        state = self.conn.their_state
        if self.transport.is_closing():
            phase = None
        elif state is h11.SEND_BODY:
            phase = "body"
        elif state is h11.IDLE and (received or fresh or self._phase == "headers"):
            phase = "headers"
        else:  # a request fully in, or idle after one (uvicorn's keep-alive timer covers that)
            phase = None
        received = received or phase == "body"  # the headers are in
        if phase == self._phase:
            self._received = self._received or received
            return
        self._disarm()
        self._phase, self._since, self._received = phase, time.monotonic(), received
        if phase is not None:
            timeout = self.header_timeout_s if phase == "headers" else self.body_timeout_s
            self._deadline = self.loop.call_later(timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        timeout = self.header_timeout_s if self._phase == "headers" else self.body_timeout_s
        detail = f"request {self._phase} not received within {timeout:g} s"
        log.warning("%s: %s; connection closed", _peer(self.client), detail)
        if self._received and (self.cycle is None or self.cycle.response_complete or not self.cycle.response_started):
            self.transport.write(_timeout_reply(detail))
        self.transport.close()

    def _idle(self) -> bool:
        return not self.transport.is_closing() and (self._phase is not None or self.conn.their_state is h11.IDLE)

    def _make_room(self) -> None:
        limit = self.limit_concurrency
        if not limit:
            return
        while len(self.connections) >= limit:
            idle = [c for c in self.connections if c is not self and isinstance(c, GuardedH11Protocol) and c._idle()]
            if not idle:
                return  # every other connection runs a request: uvicorn answers this one 503
            victim = min(idle, key=lambda c: c._since)
            log.info("connection limit %d reached: closing %s (not running a request, for %.1f s)",
                     limit, _peer(victim.client), time.monotonic() - victim._since)
            victim._disarm()
            victim.connections.discard(victim)  # counted out now; uvicorn's connection_lost comes later
            victim.transport.close()


def _peer(client) -> str:
    return "%s:%d" % client if client else "client"


def server_options(*, header_timeout_s: float = HEADER_TIMEOUT_S, body_timeout_s: float = BODY_TIMEOUT_S,
                   max_connections: int = MAX_CONNECTIONS, keep_alive_s: int = KEEP_ALIVE_S) -> dict:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` that serve the API safely.

    Parameters
    ----------
    header_timeout_s : seconds a request's headers may take to arrive
    body_timeout_s : seconds its body may take after them
    max_connections : connections held at once (idle ones are closed for new ones; past it every
        connection runs a request, and a new request gets 503)
    keep_alive_s : seconds an idle connection is kept between requests

    Returns
    -------
    dict: ``http`` (a :class:`GuardedH11Protocol` subclass), ``limit_concurrency``,
    ``timeout_keep_alive``, ``ws`` ("none": the API has no websockets) and ``server_header``.
    """
    for name, v in (("header_timeout_s", header_timeout_s), ("body_timeout_s", body_timeout_s)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 3600:
            raise ValueError(f"{name} {v!r}: expected seconds in (0, 3600]")
    for name, v, hi in (("max_connections", max_connections, 100_000), ("keep_alive_s", keep_alive_s, 3600)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ValueError(f"{name} {v!r}: expected an integer from 1 to {hi:,}")
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,),
                    {"header_timeout_s": float(header_timeout_s), "body_timeout_s": float(body_timeout_s)})
    return {"http": protocol, "limit_concurrency": max_connections, "timeout_keep_alive": keep_alive_s,
            "ws": "none", "server_header": False}


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
            raise ValueError(f"{root}: reports root exists and is not a folder")
    bench_models = benchmark_request_models(max_sizes, max_repeats)
    caps = _size_caps(max_sizes)
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
        return JSONResponse({"detail": _validation_detail(exc.errors())}, status_code=422)

    def openapi():
        if app.openapi_schema is None:
            _tell_the_truth(FastAPI.openapi(app))  # FastAPI.openapi caches what it builds on the app
        return app.openapi_schema

    app.openapi = openapi
    invalid = _problem_doc("the request does not match this schema")

    @app.get("/gpu/status", response_model=GpuStatus, tags=["gpu"], operation_id="gpu_status",
             responses=_SERVER_ANSWERS)
    def gpu_status_endpoint():
        """Devices, driver and CUDA versions, RAPIDS versions; ``available: false`` and why without a GPU."""
        from alphapulse.pipelines.gpu.status import gpu_status

        return gpu_status()

    @app.get("/gpu/utilization", response_model=Utilization, response_model_exclude_none=False, tags=["gpu"],
             operation_id="gpu_utilization", responses={**_SERVER_ANSWERS, 422: invalid})
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
        responses={**_SERVER_ANSWERS, 409: _problem_doc("a benchmark is already running"),
                   422: _problem_doc("the body is not JSON, or does not match one of the operations' schemas")})

    run_id_param = PathParam(description="a report folder's id, as GET /runs lists it",
                             json_schema_extra={"pattern": RUN_ID_PATTERN, "maxLength": RUN_ID_MAX_LENGTH})
    bad_id, no_run = _problem_doc("not a report folder's name"), _problem_doc("no such report folder")

    @app.get("/runs", response_model=list[RunSummary], tags=["runs"], operation_id="list_runs",
             responses={**_SERVER_ANSWERS, 200: {"links": {
                 "newest_run": {"operationId": "run_detail", "parameters": {"run_id": "$response.body#/0/id"},
                                "description": "the newest report folder's manifest and files"},
                 "newest_page": {"operationId": "run_page", "parameters": {"run_id": "$response.body#/0/id"},
                                 "description": "the newest report folder's page"}}}})
    def runs():
        """The report folders under the roots, newest first."""
        found = [app.state.roots.summary(rid, folder)[0] for rid, folder in app.state.roots.folders().items()]
        return sorted(found, key=lambda r: r.created_at or "", reverse=True)

    @app.get("/runs/{run_id}", response_model=RunDetail, tags=["runs"], operation_id="run_detail",
             responses={**_SERVER_ANSWERS, 400: bad_id, 404: no_run, 200: {"links": {
                 "page": {"operationId": "run_page", "parameters": {"run_id": "$response.body#/id"},
                          "description": "this report folder's page"}}}})
    def run_detail(run_id: str = run_id_param):
        """One report folder: its manifest and its files (regular files only: links are not listed)."""
        folder = app.state.roots.find(run_id)
        summary, manifest = app.state.roots.summary(run_id, folder)
        files = [RunFile(name=p.name, bytes=p.stat().st_size) for p in sorted(folder.iterdir()) if _is_regular(p)]
        return RunDetail(**summary.model_dump(), manifest=manifest, files=files)

    @app.get("/runs/{run_id}/summary.html", response_class=HTMLResponse, tags=["runs"], operation_id="run_page",
             responses={**_SERVER_ANSWERS, 400: bad_id,
                        404: _problem_doc("no such report folder, or it has no summary.html that is a regular "
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
