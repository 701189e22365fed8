"""GPU out-of-memory handling: recognise the error, alert, retry at half the batch, fall back to the CPU.

:func:`is_gpu_oom` recognises the out-of-memory errors of the GPU stack without importing it
(a CPU machine never imports CuPy): by the exception's class path and message:

- CuPy: ``cupy.cuda.memory.OutOfMemoryError`` (also raised through an RMM allocator as
  ``MemoryError`` with "std::bad_alloc" / "out_of_memory" in the message);
- RMM: ``rmm._lib.memory_resource`` / ``rmm.pylibrmm`` ``MemoryError`` (``std::bad_alloc``,
  ``rmm::out_of_memory``);
- Numba CUDA: ``CudaAPIError`` with ``CUDA_ERROR_OUT_OF_MEMORY`` (code 2);
- cuDF / pylibcudf: ``MemoryError`` raised from a ``cudf``/``rmm`` module;
- any class registered with :func:`register_oom_type` (tests, or a library not listed here).

A plain host ``MemoryError`` (from NumPy) is *not* a GPU OOM.

:func:`run_chunks` runs a chunked computation with the handling the issue asks for: on a GPU OOM
it records an alert (a log warning, an entry for the manifest's ``alerts``, and the run
tracker's flag for a Prefect artifact), frees the CuPy memory pools, retries the failed chunk
in halves (recursively, down to ``min_batch``), then runs it on the CPU when
``gpu.fallback.cpu_fallback`` allows, else raises :class:`GpuOutOfMemoryError` with a one-line
message. Each chunk's result is a pure function of its inputs, and halves are merged by the
caller's ``merge``, so the run's results are unchanged.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

from alphapulse.pipelines.errors import GpuOutOfMemoryError

log = logging.getLogger(__name__)

_REGISTERED: list[type] = []
_OOM_TEXT = ("std::bad_alloc", "out_of_memory", "out of memory", "rmm", "cuda", "device memory")
"""Words of a ``MemoryError`` raised by the GPU stack's C++ allocators (RMM's bad_alloc through
CuPy, cuDF); a host ``MemoryError`` from NumPy has an empty message or "Unable to allocate"."""


GpuOutOfMemory = GpuOutOfMemoryError
"""The class's name before :mod:`alphapulse.pipelines.errors` (``alphapulse.pipelines.runtime.GpuOutOfMemory``)."""


def register_oom_type(cls: type) -> type:
    """Treat ``cls`` (an exception class) as a GPU out-of-memory error; returns ``cls`` (a decorator)."""
    if cls not in _REGISTERED:
        _REGISTERED.append(cls)
    return cls


def is_gpu_oom(exc: BaseException) -> bool:
    """True when ``exc`` is an out-of-memory error of the GPU (see the module docstring)."""
    if any(isinstance(exc, cls) for cls in _REGISTERED):
        return True
    for cls in type(exc).__mro__:
        path = f"{cls.__module__}.{cls.__qualname__}"
        if path.startswith("cupy") and cls.__name__ == "OutOfMemoryError":
            return True
        if path.startswith("cupy_backends") and cls.__name__ == "CUDARuntimeError" \
                and "memoryallocation" in str(exc).lower().replace(" ", ""):
            return True
        if cls.__name__ == "CudaAPIError" and cls.__module__.startswith("numba"):
            return getattr(exc, "code", None) == 2 or "OUT_OF_MEMORY" in str(exc).upper()
    text = str(exc).lower()
    if isinstance(exc, MemoryError):
        module = type(exc).__module__
        if module.startswith(("rmm", "cudf", "pylibcudf", "cupy")):
            return True
        return any(t in text for t in _OOM_TEXT)
    return False


def free_gpu_memory() -> None:
    """Return CuPy's cached blocks to the device (if CuPy is already in use: never imported here)."""
    import sys

    cupy = sys.modules.get("cupy")
    if cupy is None:
        return
    try:
        cupy.get_default_memory_pool().free_all_blocks()
        cupy.get_default_pinned_memory_pool().free_all_blocks()
    except Exception as e:
        log.info("could not free CuPy pools: %s", e)


def run_chunks(spans: Sequence[tuple[int, int]], compute: Callable[[int, int, bool], object], *,
               merge: Callable[[list], object] | None = None, min_batch: int = 1, cpu_fallback: bool = True,
               alert: bool = True, stage: str | None = None, on_gpu: bool = True, tracker=None) -> list:
    """Run ``compute(a, b, on_gpu)`` over each span ``[a, b)``, handling GPU out-of-memory errors.

    Parameters
    ----------
    spans : the chunks, as (start, stop) pairs
    compute : ``compute(a, b, on_gpu)`` computes the chunk ``[a, b)`` on the GPU (``on_gpu``) or
        on the CPU, and returns its result
    merge : combines the results of the halves of a split chunk into that chunk's result (default:
        the list of the halves' results is the chunk's result, flattened into the output)
    min_batch : a chunk is never split below this many items
    cpu_fallback : after the floor, run the chunk on the CPU (``gpu.fallback.cpu_fallback``), else raise
    alert : record alerts (``gpu.monitoring.alert_on_oom``); the retry/fallback happens either way
    stage : the stage named in the alerts (default: the tracker's active stage)
    on_gpu : whether the chunks start on the GPU (the CPU fallback is for GPU chunks only; a
        chunk is halved on an out-of-memory error wherever it ran)
    tracker : where alerts go (default: the active run tracker of :mod:`alphapulse.pipelines.runtime.stages`)

    Returns
    -------
    list: one result per span (with ``merge=None`` a split span contributes its pieces' results in
    order).

    Raises
    ------
    GpuOutOfMemoryError
        When a chunk of ``min_batch`` items runs out of memory and ``cpu_fallback`` is false.
    """
    if tracker is None:
        from alphapulse.pipelines.runtime.stages import current_tracker

        tracker = current_tracker()

    def note(message: str, size: int, action: str) -> None:
        log.warning("GPU out of memory: %s; %s", message, action)
        if alert and tracker is not None:
            tracker.alert("gpu_oom", message=message, batch_size=size, action=action, stage=stage)

    def one(a: int, b: int, gpu: bool) -> list:
        try:
            return [compute(a, b, gpu)]
        except Exception as e:
            if not is_gpu_oom(e):
                raise
            free_gpu_memory()
            size = b - a
            message = f"{type(e).__name__} on a chunk of {size:,} items ({a:,}..{b:,}): {e}"
            if size >= 2 * max(min_batch, 1):
                half = a + size // 2
                note(message, size, f"retrying as two chunks of {half - a:,} and {b - half:,}")
                parts = one(a, half, True) + one(half, b, True)
                return [merge(parts)] if merge is not None else parts
            if gpu and cpu_fallback:
                note(message, size, "running the chunk on the CPU (gpu.fallback.cpu_fallback)")
                return [compute(a, b, False)]
            why = "gpu.fallback.cpu_fallback is false" if gpu else "it already ran on the CPU"
            note(message, size, f"failing: {why}")
            raise GpuOutOfMemoryError(f"GPU out of memory on a chunk of {size:,} items (the floor of "
                                      f"{min_batch:,}) and {why}: lower gpu.operations.batch_size"
                                      + (" or allow the CPU fallback" if gpu else "")) from e

    out = []
    for a, b in spans:
        out.extend(one(int(a), int(b), on_gpu))
    return out


def chunked_columns(fields: dict, compute: Callable[[dict], dict], *, on_gpu: bool, min_columns: int = 1,
                    cpu_fallback: bool = True, alert: bool = True, stage: str | None = None, tracker=None) -> dict:
    """``compute(fields)`` for panels of shape (n_bars, n_columns) whose columns are independent
    series (indicators per symbol), split by columns on a GPU out-of-memory error.

    The whole panel is tried first (no overhead when it fits); an OOM halves the columns
    (:func:`run_chunks`), and at ``min_columns`` a GPU chunk runs on NumPy copies when
    ``cpu_fallback`` allows, its outputs copied back to the device. The pieces are concatenated
    along the columns, so every output equals the unsplit computation's (each column's series
    is computed the same way whatever its neighbours).

    Parameters
    ----------
    fields : dict of name -> array of shape (n_bars, n_columns) (NumPy or CuPy)
    compute : maps such a dict (any column subset) to a dict of output arrays of the same shape

    Returns
    -------
    dict of name -> array of shape (n_bars, n_columns), in the array module of ``fields``, except
    when the device could not even hold the joined outputs: then NumPy arrays (the caller
    continues on the host).
    """
    import numpy as np

    first = next(iter(fields.values()))
    if isinstance(first, np.ndarray):
        xp = np
    else:
        import cupy as xp  # the fields are CuPy arrays: already imported
    n_cols = first.shape[1]

    def part(a: int, b: int, gpu: bool) -> dict:
        if a == 0 and b == n_cols and (gpu or xp is np):
            return compute(fields)
        if gpu or xp is np:
            lay = np.asfortranarray if xp is np else xp.ascontiguousarray
            return compute({k: lay(v[:, a:b]) for k, v in fields.items()})
        host = {k: np.asfortranarray(v[:, a:b].get()) for k, v in fields.items()}
        return {k: xp.asarray(v) for k, v in compute(host).items()}

    def merge(pieces: list) -> dict:
        try:
            return {k: xp.concatenate([p[k] for p in pieces], axis=1) for k in pieces[0]}
        except Exception as e:  # the device cannot hold the joined outputs: join them on the host
            if xp is np or not is_gpu_oom(e):
                raise
            free_gpu_memory()
            log.warning("GPU out of memory joining %d chunks: outputs assembled on the host", len(pieces))
            return {k: np.concatenate([p[k] if isinstance(p[k], np.ndarray) else p[k].get() for p in pieces], axis=1)
                    for k in pieces[0]}

    return run_chunks([(0, n_cols)], part, merge=merge, min_batch=min_columns, cpu_fallback=cpu_fallback,
                      alert=alert, stage=stage, on_gpu=on_gpu, tracker=tracker)[0]
