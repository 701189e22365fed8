"""``cupy.random`` of the stand-in: ``default_rng`` and the ``Generator`` methods CuPy has.

CuPy's generator is cuRAND's XORWOW: for the same seed it draws another stream than NumPy's
PCG64, so a test that compares a CuPy result with a NumPy one drawn from the same seed is wrong.
The stand-in makes that visible by drawing from NumPy's Philox instead (also not PCG64). It keeps
CuPy's argument checks where they differ from NumPy's (a distribution parameter is a Python
``int``/``float`` or a device array, not a NumPy scalar), and returns 0-d device arrays where NumPy
returns Python scalars. The legacy API (``cupy.random.seed``, ``rand``, ``RandomState``) is not
modelled: it is missing here.
"""
from __future__ import annotations

import types

import numpy as np

from tests.cupy_standin import _core


def _parameter(name: str, value):
    """A host array for a distribution parameter that CuPy accepts (Python number or device array)."""
    if isinstance(value, _core.ndarray):
        return value._a.astype(np.float64, copy=False)
    if type(value) in (float, int):
        return np.float64(value)
    raise TypeError(f"{name} is required to be a cupy.ndarray or a scalar (got {type(value).__name__}; "
                    "CuPy's Generator refuses NumPy scalars and arrays)")


def _size(size, *params):
    if size is None:
        return np.broadcast_shapes(*(np.shape(p) for p in params)) if params else ()
    return tuple(size) if isinstance(size, (tuple, list)) else (int(size),)


def _out(y):
    return _core.device_from_host(np.asarray(y))


class Generator:
    """CuPy's ``Generator`` over a stream that is not NumPy's (see the module docstring)."""

    def __init__(self, bit_generator):
        self.bit_generator = bit_generator
        self._g = np.random.Generator(bit_generator)

    def random(self, size=None, dtype=np.float64, out=None):
        y = self._g.random(_size(size), dtype=np.dtype(dtype))
        return _fill(out, y)

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        low, high = _core.as_host(low), _core.as_host(high)
        y = self._g.uniform(low, high, _size(size, low, high))
        return _out(y.astype(dtype, copy=False))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        lo, hi = (0, int(low)) if high is None else (int(low), int(high))
        return _out(self._g.integers(lo, hi, size=_size(size), dtype=dtype, endpoint=endpoint))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        dtype = np.dtype(dtype)
        if dtype.char not in "fd":
            raise TypeError(f"Unsupported dtype {dtype.name} for standard_normal")
        return _fill(out, self._g.standard_normal(_size(size), dtype=dtype))

    def standard_exponential(self, size=None, dtype=np.float64, method="inv", out=None):
        if method == "zig":
            raise NotImplementedError("Ziggurat method is not supported")
        return _fill(out, self._g.standard_exponential(_size(size)).astype(dtype, copy=False))

    def exponential(self, scale=1.0, size=None):
        return self.standard_exponential(size) * scale

    def standard_gamma(self, shape, size=None, dtype=np.float64, out=None):
        shape = _parameter("shape", shape)
        return _fill(out, self._g.standard_gamma(shape, _size(size, shape)).astype(dtype, copy=False))

    def gamma(self, shape, scale=1.0, size=None):
        shape, scale = _parameter("shape", shape), _parameter("scale", scale)
        return _out(self._g.gamma(shape, scale, _size(size, shape, scale)))

    def chisquare(self, df, size=None):
        df = _parameter("df", df)
        return _out(self._g.chisquare(df, _size(size, df)))

    def beta(self, a, b, size=None, dtype=np.float64):
        a, b = _parameter("a", a), _parameter("b", b)
        return _out(self._g.beta(a, b, _size(size, a, b)).astype(dtype, copy=False))

    def poisson(self, lam=1.0, size=None):
        lam = _parameter("lam", lam)
        return _out(self._g.poisson(lam, _size(size, lam)))

    def dirichlet(self, alpha, size=None):
        alpha = _parameter("alpha", alpha)
        return _out(self._g.dirichlet(np.atleast_1d(alpha), size))


def _fill(out, y):
    if out is None:
        return _out(y)
    if not isinstance(out, _core.ndarray):
        raise TypeError("out must be a cupy.ndarray")
    out._a[...] = y
    return out


def default_rng(seed=None):
    """A :class:`Generator` seeded like CuPy's (``None`` or an ``int``), on another stream than NumPy's."""
    if seed is not None and not isinstance(seed, (int, np.integer)):
        raise TypeError(f"the stand-in's default_rng takes None or an int seed, not {type(seed).__name__}")
    return Generator(np.random.Philox(seed))


def module() -> types.ModuleType:
    m = types.ModuleType("cupy.random")
    m.__doc__ = __doc__
    m.default_rng = default_rng
    m.Generator = Generator
    m.__getattr__ = _core.missing("cupy.random", "the stand-in models CuPy's Generator API only")
    return m
