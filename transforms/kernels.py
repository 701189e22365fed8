"""Per-series kernels compiled once for the CPU and once for the GPU, from one Python source.

A *series function* processes one column ``j`` of time x symbols arrays, as a plain loop:
``fn(j, *arrays_and_parameters)``. :func:`series_kernel` compiles it twice:

- CPU: ``numba.njit`` for the body, called from a ``numba.njit(parallel=True)`` loop with
  ``prange`` over columns (one thread per block of symbols);
- GPU: ``numba.cuda.jit(device=True)`` for the body, called from a CUDA kernel with one thread per
  column. Adjacent threads read adjacent symbols of a C-ordered time x symbols array, so the loads
  coalesce.

The target follows the arrays: CuPy arrays run the CUDA kernel, NumPy arrays the CPU one. Tests
run the CUDA kernel on the CPU with ``NUMBA_ENABLE_CUDASIM=1`` through :meth:`SeriesKernel.gpu`.

Conventions for series functions: accumulate in float64 whatever the storage dtype, so float32
panels lose precision only in storage -- read values as ``np.float64(x[i, j])``, not
``float(x[i, j])``, which Numba types as float32 for a float32 array (and ``total += x[i, j]`` is
float32 arithmetic in the CUDA simulator, where NumPy 2 keeps a Python float weak); write only
valid positions and leave the rest as the caller initialised them (NaN).

This module also holds the gap compaction used by the indicators (:func:`compact`,
:func:`expand`): each column's valid rows are moved to the top, so kernels see a series with no
holes, exactly what TA-Lib sees when it is run on one symbol's own bars.
"""
from __future__ import annotations

import math
import types

import numba
import numpy as np

from alphapulse.transforms.arrays import is_cupy, namespace

_THREADS_PER_BLOCK = 128


class SeriesKernel:
    """A series function compiled lazily for the CPU and the GPU (see the module docstring)."""

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._cpu = None
        self._gpu = None

    def __call__(self, n_cols: int, *args) -> None:
        if any(is_cupy(a) for a in args):
            # Numba would copy a NumPy argument to the device and back around every launch: a
            # hidden transfer and sync inside a transform (e.g. a plan's host legs with CuPy bars).
            if any(isinstance(a, np.ndarray) and not is_cupy(a) for a in args):
                raise TypeError(f"{self.__name__}: mixed NumPy and CuPy arrays in one kernel launch; "
                                "move every input to one device at a named boundary first")
            self.gpu(n_cols, *args)
        else:
            self.cpu(n_cols, *args)

    def cpu(self, n_cols: int, *args) -> None:
        """Run over ``n_cols`` columns on the CPU (NumPy arrays)."""
        if self._cpu is None:
            self._cpu = _cpu_column_loop(self.fn)
        self._cpu(n_cols, *args)

    def gpu(self, n_cols: int, *args) -> None:
        """Run over ``n_cols`` columns as a CUDA kernel (CuPy arrays, or NumPy under the simulator)."""
        if n_cols == 0:
            return
        if self._gpu is None:
            self._gpu = _cuda_column_kernel(self.fn)
        blocks = math.ceil(n_cols / _THREADS_PER_BLOCK)
        self._gpu[blocks, _THREADS_PER_BLOCK](n_cols, *args)


_CUDA_LAUNCHER = """
def run(n, *a):
    j = cuda.grid(1)
    if j < n:
        body(j, *a)
"""


def _cuda_column_kernel(fn):
    """CUDA kernel with one thread per column calling ``fn`` as a device function.

    ``cuda`` must be a *global* of the kernel, not a closure variable: Numba's CUDA simulator
    runs a kernel by swapping the ``numba.cuda`` module in the kernel's globals for its fake
    module (``cuda.grid`` and friends), and cannot see a closure cell. So the launcher is
    compiled from source into its own namespace holding ``cuda`` and the device function.
    """
    from numba import cuda

    namespace_ = {"cuda": cuda, "body": cuda.jit(device=True)(_retarget(fn, "gpu"))}
    exec(compile(_CUDA_LAUNCHER, f"<cuda launcher for {fn.__name__}>", "exec"), namespace_)
    return cuda.jit(namespace_["run"])


def _cpu_column_loop(fn):
    """``njit(parallel=True)`` loop over columns calling ``fn``, cached on disk per kernel.

    Numba keys a closure's cache entry by its pickled cell contents, which differ each process,
    so a closure wrapper would recompile on every run (about 0.5 s a kernel). Instead the wrapper
    is compiled from source attributed to ``fn``'s own file and line, with ``fn`` as a global:
    each kernel gets its own cache file, invalidated when that source file changes.
    """
    name = f"{fn.__name__}_cpu"
    source = f"def {name}(n, *a):\n    for j in numba.prange(n):\n        body(j, *a)\n"
    code = compile(source, fn.__code__.co_filename, "exec")
    namespace_ = {"numba": numba, "body": numba.njit(_retarget(fn, "cpu"), cache=True)}
    exec(code, namespace_)
    loop = namespace_[name]
    loop.__code__ = loop.__code__.replace(co_firstlineno=fn.__code__.co_firstlineno)
    loop.__module__ = fn.__module__
    loop.__qualname__ = name
    return numba.njit(parallel=True, cache=True)(loop)


def series_order(xp) -> str:
    """Memory order for time x symbols panels the series kernels read: "F" for NumPy, "C" for CuPy.

    A CPU thread streams one series, so each symbol's bars should be adjacent (F); on the GPU
    adjacent threads (symbols) should read adjacent addresses (C), so loads coalesce. Both
    layouts give identical results; this only decides speed (measured: an EMA over the S&P 500
    panel takes 1.2 ms in F order, 3.3 ms in C order, on 2 CPU cores).
    """
    return "F" if xp is np else "C"


def series_kernel(fn) -> SeriesKernel:
    """Decorator: compile a series function ``fn(j, ...)`` for both targets."""
    return SeriesKernel(fn)


class DeviceFunction:
    """A scalar helper that series functions (and other helpers) call on either target.

    A Numba CPU function cannot call a CUDA device function, nor the reverse, so a helper is
    compiled once per target, and each caller is compiled against a copy of its globals in which
    the helper's name means that target's version (:func:`_retarget`). Keep a helper in the same
    module as its callers: Numba's on-disk cache invalidates a caller when its own source file
    changes, not when a helper in another file does.
    """

    def __init__(self, fn):
        self.fn = fn
        self.__name__ = fn.__name__
        self.__doc__ = fn.__doc__
        self._compiled = {}

    def target(self, name: str):
        """The helper compiled for ``name`` ("cpu" or "gpu")."""
        if name not in self._compiled:
            body = _retarget(self.fn, name)
            if name == "cpu":
                self._compiled[name] = numba.njit(body, cache=True)
            else:
                from numba import cuda

                self._compiled[name] = cuda.jit(device=True)(body)
        return self._compiled[name]

    def __call__(self, *args):
        return self.fn(*args)  # plain Python, for tests and debugging


def device_function(fn) -> DeviceFunction:
    """Decorator: a helper callable from :func:`series_kernel` functions on CPU and GPU."""
    return DeviceFunction(fn)


def _retarget(fn, target: str):
    """``fn`` with each :class:`DeviceFunction` it names replaced by that helper's ``target`` build."""
    globals_ = fn.__globals__
    helpers = {name: globals_[name].target(target) for name in fn.__code__.co_names
               if isinstance(globals_.get(name), DeviceFunction)}
    if not helpers:
        return fn
    copy = types.FunctionType(fn.__code__, {**globals_, **helpers}, fn.__name__, fn.__defaults__, fn.__closure__)
    copy.__module__, copy.__qualname__ = fn.__module__, fn.__qualname__
    return copy


@series_kernel
def _compact_column(j, src, valid, dst):
    k = 0
    for i in range(src.shape[0]):
        if valid[i, j]:
            dst[k, j] = src[i, j]
            k += 1


@series_kernel
def _expand_column(j, src, valid, dst):
    k = 0
    for i in range(dst.shape[0]):
        if valid[i, j]:
            dst[i, j] = src[k, j]
            k += 1


@series_kernel
def _expand_in_place_column(j, x, valid, n):
    # Bottom-up: the compacted row k read for row i satisfies k <= i, and every row written so
    # far is > i, so nothing is overwritten before it is read.
    k = n[j]
    for i in range(x.shape[0] - 1, -1, -1):
        if valid[i, j]:
            k -= 1
            x[i, j] = x[k, j]
        else:
            x[i, j] = math.nan


def valid_mask(x):
    """Where ``x`` holds a bar (not NaN), shape of ``x``."""
    xp = namespace(x)
    return ~xp.isnan(x)


def needs_compaction(valid) -> bool:
    """False when every column is complete, so compaction would be the identity."""
    return not bool(valid.all())


def compact(x, valid):
    """Move each column's valid rows (``valid[:, j]``) to the top, in order; NaN below.

    Parameters
    ----------
    x : array of shape (n_bars, n_symbols)
    valid : bool array of shape (n_bars, n_symbols)

    Returns
    -------
    array of shape (n_bars, n_symbols), same dtype and layout as ``x``.
    """
    xp = namespace(x)
    out = xp.full_like(x, np.nan, dtype=x.dtype if x.dtype.kind == "f" else np.float64)
    _compact_column(x.shape[1], x, valid, out)
    return out


def expand(x, valid):
    """Inverse of :func:`compact`: put compacted rows back at the valid positions; NaN elsewhere."""
    xp = namespace(x)
    out = xp.full_like(x, np.nan)
    _expand_column(x.shape[1], x, valid, out)
    return out


def expand_in_place(x, valid, n):
    """:func:`expand` without a second array: ``x`` (compacted, ``n`` valid rows per column, see
    :func:`lengths`) is rewritten in place and returned."""
    _expand_in_place_column(x.shape[1], x, valid, n)
    return x


def lengths(valid):
    """Number of valid rows per column, as int64 (the compacted series' lengths)."""
    xp = namespace(valid)
    return valid.sum(axis=0).astype(xp.int64)
