"""The API's request and response schemas, and how a request that does not match is described.

Implements the response models (:class:`GpuStatus`, :class:`Utilization`,
:class:`BenchmarkResult`, :class:`RunSummary`, :class:`RunDetail`, :class:`Problem`, ...),
:func:`benchmark_request_models` (the body of ``POST /gpu/benchmark``: one model per operation
with that operation's size bounds), the error answers every route documents
(:data:`SERVER_ANSWERS`, :func:`problem_doc`), and one-line messages for a body that fails the
schema (:func:`validation_detail`) or is not JSON Python reads (:func:`json_problem`).
"""
from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, Field, create_model, field_serializer, field_validator

from alphapulse.pipelines.gpu import bench as gpu_bench
from alphapulse.pipelines.report.manifest import AnyManifest

MAX_REPEATS = 10
DEFAULT_REPEATS = 3
DTYPES = ("float64", "float32")


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


def short_value(v) -> str:
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
        raise ValueError(f"{short_value(v)} is not a number JSON can carry (NaN, or beyond a 64-bit float like "
                         f"1e400): {expected}")
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError(f"{short_value(v)} is not an integer: {expected}")
    if not lo <= v <= hi:
        raise ValueError(f"{short_value(v)} is out of bounds: {expected}")
    return v


def size_caps(max_sizes: Mapping[str, int] | None) -> dict[str, int]:
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
    caps = size_caps(max_sizes)
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
            dtype=(Literal[DTYPES], "float64"),
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
    manifest: AnyManifest | dict | None = Field(
        None, description="the run's manifest.json: typed by its pipeline (alphapulse.pipelines.report.manifest); "
                          "a folder written by another version may hold any JSON object")

    @field_serializer("manifest")
    def _as_written(self, manifest):
        # the file's own keys, not the model's defaults for keys it does not have
        return manifest.model_dump(mode="json", exclude_unset=True) if isinstance(manifest, BaseModel) else manifest
    files: list[RunFile]


class Problem(BaseModel):
    detail: str = Field(description="what was wrong, in one line, naming the field or the limit")


def problem_doc(description: str) -> dict:
    """An error response in the schema: a :class:`Problem` as JSON, whatever the route's own type."""
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


# What the server itself may answer to any request, before or around the route (see server_options).
SERVER_ANSWERS = {
    408: problem_doc("the request's headers or body did not arrive in time; the connection is then closed"),
    413: problem_doc("request body larger than the server's limit"),
    503: {"description": "the server's connection limit is reached, every connection busy with a request "
                         "(uvicorn's plain-text answer)",
          "content": {"text/plain": {"schema": {"type": "string"}}}},
}


def validation_detail(errors) -> str:
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
            loc, msg = ["operation"], (f"{short_value(tag)} is not one of {', '.join(gpu_bench.OPERATIONS)}")
        parts.append(f"{'.'.join(loc) or 'body'}: {msg}")
    text = "; ".join(parts).replace("\n", " ") or "invalid request"
    return text if len(text) <= 600 else text[:597] + "..."


def json_problem(raw: bytes) -> str | None:
    """Why ``raw`` is not a JSON document Python reads, or None when it is."""
    try:
        json.loads(raw)  # what FastAPI parses the body with
    except RecursionError:
        return "request body is not valid JSON: nested too deeply"
    except ValueError as e:  # bad syntax, bad UTF-8, an integer longer than Python reads
        why = str(e).splitlines()[0].split("; use sys.")[0]  # Python's advice means nothing to a client
        return f"request body is not valid JSON: {why[:200]}"
    return None
