"""The stand-in's device array and its ``cupy`` namespace (see the package docstring).

A device array (:class:`ndarray`, reported as ``cupy.ndarray``) wraps a NumPy array that only the
stand-in touches. It does not subclass ``numpy.ndarray``, so NumPy, pandas and numba cannot read
it without an explicit ``.get()``: NumPy asks it for ``__array__`` (which raises) or for
``__array_function__`` (which raises). Ufuncs and operators reach ``__array_ufunc__``, which runs
NumPy's ufunc on the wrapped arrays when every operand is a device array or a scalar, and raises
``TypeError`` for a NumPy array, as CuPy does.

The ``cupy`` namespace is NumPy's, each function taking device arrays and returning them, minus
what CuPy does not have (``_NOT_IN_CUPY``, from CuPy's comparison table), with CuPy's own
``bincount``, ``linalg``, ``random``, ``asnumpy``, ``get_array_module`` and ``is_available``.
Creation functions (``asarray``, ``array``, ...) accept host data and always copy it: device
memory never aliases a host array.
"""
from __future__ import annotations

import numbers
import types
import warnings

import numpy as np

__version__ = "stand-in"

# NumPy names CuPy 13 does not have (docs.cupy.dev's comparison table, "-" in the CuPy column), that a
# transform or a test could reach for. Asked for, they raise AttributeError naming the reason.
_NOT_IN_CUPY = frozenset({
    # NumPy's floating-point error state (CuPy's is cupyx.errstate, for linalg only)
    "errstate", "seterr", "geterr", "seterrcall", "geterrcall", "setbufsize", "getbufsize",
    # iteration helpers and the array subclasses
    "nditer", "nested_iters", "ndenumerate", "ndindex", "flatiter", "matrix", "asmatrix", "bmat",
    "recarray", "record", "chararray", "memmap", "frompyfunc", "einsum_path",
    # calendars and text IO
    "busday_count", "busday_offset", "is_busday", "busdaycalendar", "datetime_as_string", "datetime_data",
    "fromregex", "genfromtxt", "loadtxt", "savetxt", "fromstring",
    # NaN-skipping order statistics other than nanmedian
    "nanquantile", "nanpercentile",
})
# numpy.linalg functions CuPy's linalg has (the rest of numpy.linalg is missing from the stand-in)
_CUPY_LINALG = ("cholesky", "qr", "svd", "eigh", "eigvalsh", "norm", "det", "slogdet", "matrix_rank", "solve",
                "tensorsolve", "lstsq", "inv", "pinv", "tensorinv", "matrix_power")
# methods of cupy.ndarray (numpy.ndarray's others, e.g. searchsorted, resize, byteswap, are missing)
_METHODS = frozenset({
    "all", "any", "argmax", "argmin", "argpartition", "argsort", "astype", "choose", "clip", "compress", "conj",
    "conjugate", "copy", "cumprod", "cumsum", "diagonal", "dot", "dump", "dumps", "fill", "flatten", "item", "max",
    "mean", "min", "nonzero", "partition", "prod", "ptp", "put", "ravel", "repeat", "reshape", "round", "sort",
    "squeeze", "std", "sum", "swapaxes", "take", "tobytes", "tofile", "tolist", "trace", "transpose", "var", "view",
})
_QUANTILE_METHODS = ("linear", "lower", "higher", "midpoint", "nearest", "inverted_cdf")
_UFUNC_KEYWORDS = frozenset({"out", "dtype", "casting"})


class StandInTypeError(TypeError):
    """A host/device mistake the stand-in refuses (a ``TypeError``, as CuPy raises)."""


def _refuse_host(where: str):
    raise StandInTypeError(f"{where}: a numpy.ndarray given where CuPy takes device arrays (mixing host and device "
                           "arrays; move data to one device at a named boundary)")


class _Flags:
    """``cupy.ndarray.flags``: read-only contiguity flags."""

    def __init__(self, a: np.ndarray):
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, key):
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous,
                "OWNDATA": self.owndata}[key]


class ndarray:
    """A device array of the CuPy stand-in (host memory that only the stand-in reads or writes)."""

    __slots__ = ("_a", "__weakref__")
    __array_priority__ = 100.0
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError("the CuPy stand-in has no device memory pointers")
        self._a = np.empty(shape, dtype=dtype, order=order)

    # -- what NumPy, pandas and numba would use to read it: refused ------------------------------

    def __array__(self, dtype=None, copy=None):
        raise StandInTypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                               "a NumPy array explicitly. (CuPy stand-in)")

    def __array_function__(self, func, types_, args, kwargs):
        raise StandInTypeError(f"numpy.{func.__name__}() on a device array: use the array's own module "
                               f"(xp.{func.__name__}), or .get() it at a named boundary (CuPy stand-in)")

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__":
            # CuPy answers NotImplemented for ufunc methods called through NumPy
            raise StandInTypeError(f"numpy.{ufunc.__name__}.{method}() on a device array: CuPy dispatches only "
                                   f"calls of NumPy ufuncs; use xp.{ufunc.__name__}.{method}")
        if ufunc.__name__ not in _UFUNCS:
            return NotImplemented
        return _UFUNCS[ufunc.__name__](*inputs, **kwargs)

    def __reduce__(self):
        return _from_host_copy, (self.get(),)

    # -- attributes ------------------------------------------------------------------------------

    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    T = property(lambda self: device_from_host(self._a.T))
    real = property(lambda self: device_from_host(self._a.real))
    imag = property(lambda self: device_from_host(self._a.imag))

    def __getattr__(self, name):
        if name.startswith("__") or name not in _METHODS:
            raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}' (CuPy stand-in: numpy.ndarray has "
                                 "it, cupy.ndarray does not)" if hasattr(np.ndarray, name) else name)
        method = getattr(self._a, name)
        where = f"cupy.ndarray.{name}"

        def call(*args, **kwargs):
            if name == "view" and any(isinstance(v, type) and issubclass(v, np.ndarray)
                                      for v in (*args, *kwargs.values())):
                raise StandInTypeError("cupy.ndarray.view takes a dtype only (a view as another array type "
                                       "would hand device memory to the host)")
            return _wrap(method(*_unwrap(args, where), **_unwrap(kwargs, where)))

        call.__name__ = name
        return call

    # -- explicit transfers and syncs (allowed, as on CuPy) --------------------------------------

    def get(self, stream=None, order="C", out=None):
        """A host copy (C-ordered unless ``order`` says otherwise, as CuPy's ``get``)."""
        if out is not None:
            if not isinstance(out, np.ndarray) or out.shape != self.shape or out.dtype != self.dtype:
                raise TypeError("out must be a numpy.ndarray of the same shape and dtype")
            out[...] = self._a
            return out
        order = order.upper()
        if order == "A":
            order = "F" if self._a.flags.f_contiguous and not self._a.flags.c_contiguous else "C"
        return np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, np.ndarray):
            raise TypeError("Only numpy.ndarray can be set to cupy.ndarray")
        if arr.dtype != self.dtype or arr.shape != self.shape:
            raise ValueError("shape and dtype must match")
        self._a[...] = arr

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        if self._a.size == 0:
            warnings.warn("The truth value of an empty array is ambiguous. Returning False", DeprecationWarning,
                          stacklevel=2)
            return False
        if self._a.size > 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous. "
                             "Use a.any() or a.all()")
        return bool(self._a.reshape(-1)[0])

    # No __index__: CuPy has none, so a device scalar cannot be a Python index, length or slice bound.

    def __repr__(self):
        return f"{np.array_repr(self._a)[:-1]}, device='CuPy stand-in')"

    def __str__(self):
        return str(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    # -- containers --------------------------------------------------------------------------------

    def __len__(self):
        if self._a.ndim == 0:
            raise TypeError("len() of unsized object")
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (device_from_host(self._a[i, ...]) for i in range(self._a.shape[0]))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key, "cupy.ndarray.__getitem__")])

    def __setitem__(self, key, value):
        key = _index(key, "cupy.ndarray.__setitem__")
        value = _unwrap(value, "cupy.ndarray.__setitem__")
        if _has_integer_array(key):
            _scatter_first_wins(self._a, key, value)
        else:
            self._a[key] = value

    def __copy__(self):
        return device_from_host(self._a.copy())

    def __deepcopy__(self, memo):
        return device_from_host(self._a.copy())


ndarray.__module__ = "cupy"
ndarray.__qualname__ = ndarray.__name__ = "ndarray"


def _binary(name, reflected=False, inplace=False):
    def op(self, other):
        u = _UFUNCS[name]
        if inplace:
            return u(self, other, out=self)
        return u(other, self) if reflected else u(self, other)

    return op


for _op, _name in (("add", "add"), ("sub", "subtract"), ("mul", "multiply"), ("truediv", "true_divide"),
                   ("floordiv", "floor_divide"), ("mod", "remainder"), ("pow", "power"), ("matmul", "matmul"),
                   ("and", "bitwise_and"), ("or", "bitwise_or"), ("xor", "bitwise_xor"),
                   ("lshift", "left_shift"), ("rshift", "right_shift")):
    setattr(ndarray, f"__{_op}__", _binary(_name))
    setattr(ndarray, f"__r{_op}__", _binary(_name, reflected=True))
    setattr(ndarray, f"__i{_op}__", _binary(_name, inplace=True))
for _op, _name in (("lt", "less"), ("le", "less_equal"), ("eq", "equal"), ("ne", "not_equal"), ("gt", "greater"),
                   ("ge", "greater_equal")):
    setattr(ndarray, f"__{_op}__", _binary(_name))
ndarray.__neg__ = lambda self: _UFUNCS["negative"](self)
ndarray.__pos__ = lambda self: self
ndarray.__abs__ = lambda self: _UFUNCS["absolute"](self)
ndarray.__invert__ = lambda self: _UFUNCS["invert"](self)
ndarray.__divmod__ = lambda self, other: _UFUNCS["divmod"](self, other)


# -- moving between the wrapper and NumPy --------------------------------------------------------


def device_from_host(a: np.ndarray) -> ndarray:
    """Wrap ``a`` (no copy: the caller hands its memory over to the device)."""
    d = object.__new__(ndarray)
    d._a = a
    return d


def _from_host_copy(a):
    return device_from_host(np.array(a, copy=True))


def as_host(x):
    """``x``'s host value where CuPy itself converts (device arrays unwrapped, anything else as NumPy)."""
    return x._a if isinstance(x, ndarray) else np.asarray(x)


def _unwrap(x, where: str):
    """Device arrays to their host arrays for NumPy to compute on; a NumPy array is refused."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        _refuse_host(where)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where) for v in x) if type(x) in (list, tuple) else x
    if isinstance(x, dict):
        return {k: _unwrap(v, where) for k, v in x.items()}
    return x


def _wrap(r):
    """NumPy results to device arrays: arrays, and scalars as 0-d arrays (CuPy never returns a
    NumPy scalar from an array operation)."""
    if isinstance(r, np.ndarray):
        return device_from_host(r)
    if isinstance(r, (np.number, np.bool_)):
        return device_from_host(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _index(key, where: str):
    """An index for the wrapped array: device index arrays unwrapped; a NumPy index array is a
    hidden host-to-device copy inside a transform, refused."""
    if isinstance(key, tuple):
        return tuple(_index(k, where) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, np.ndarray):
        _refuse_host(where)
    return key


def _has_integer_array(key) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any((isinstance(k, np.ndarray) and k.dtype.kind in "iu" and k.ndim > 0) or isinstance(k, list)
               for k in keys)


def _scatter_first_wins(a: np.ndarray, key, value) -> None:
    """``a[key] = value`` for integer-array indices. Where an index repeats, CuPy stores one of the
    values, which one undefined (parallel writes); NumPy stores the last. The stand-in stores the
    first, so code that relies on NumPy's order gives another answer here too."""
    positions = np.arange(a.size).reshape(a.shape)[key]
    if np.unique(positions).size == positions.size:
        a[key] = value
        return
    values = np.broadcast_to(np.asarray(value, dtype=a.dtype), positions.shape)
    a.flat[positions.reshape(-1)[::-1]] = values.reshape(-1)[::-1]


# -- ufuncs ----------------------------------------------------------------------------------------


def _ufunc_operand(x, where: str):
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, (numbers.Number, np.generic)) and not isinstance(x, (np.str_, np.bytes_)):
        return x
    if isinstance(x, np.ndarray):
        _refuse_host(where)
    raise StandInTypeError(f"{where}: unsupported operand type {type(x).__name__} (CuPy takes device arrays and "
                           "scalars only)")


class ufunc:
    """A CuPy ufunc of the stand-in: NumPy's, on device arrays and scalars only."""

    def __init__(self, np_ufunc):
        self._u = np_ufunc
        self.__name__ = np_ufunc.__name__
        self.nin, self.nout, self.nargs = np_ufunc.nin, np_ufunc.nout, np_ufunc.nargs
        self.__doc__ = np_ufunc.__doc__

    def __repr__(self):
        return f"<ufunc '{self.__name__}' (CuPy stand-in)>"

    def _run(self, method: str, args, kwargs, n_operands: int):
        where = f"cupy.{self.__name__}" + ("" if method == "__call__" else f".{method}")
        extra = set(kwargs) - _UFUNC_KEYWORDS - ({"axis", "keepdims"} if method != "__call__" else set())
        if extra:
            raise StandInTypeError(f"{where}: keyword(s) {sorted(extra)} not supported by CuPy's ufuncs")
        ops = [_ufunc_operand(x, where) for x in args[:n_operands]] + [_unwrap(x, where) for x in args[n_operands:]]
        if "out" in kwargs:
            out = kwargs["out"]
            outs = out if isinstance(out, tuple) else (out,)
            if not all(isinstance(o, ndarray) or o is None for o in outs):
                raise StandInTypeError(f"{where}: out must be a device array")
            kwargs = {**kwargs, "out": tuple(o._a if o is not None else None for o in outs)}
            if method not in ("__call__",):
                kwargs["out"] = kwargs["out"][0]
        fn = self._u if method == "__call__" else getattr(self._u, method)
        result = fn(*ops, **kwargs)
        if "out" in kwargs and method == "__call__":
            return out
        return _wrap(result)

    def __call__(self, *args, **kwargs):
        return self._run("__call__", args, kwargs, len(args))

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        return self._run("reduce", (array,), _given(axis=axis, dtype=dtype, out=out, keepdims=keepdims), 1)

    def accumulate(self, array, axis=0, dtype=None, out=None):
        return self._run("accumulate", (array,), _given(axis=axis, dtype=dtype, out=out), 1)

    def outer(self, A, B, **kwargs):
        return self._run("outer", (A, B), kwargs, 2)

    def at(self, a, indices, b=None):
        if not isinstance(a, ndarray):
            raise StandInTypeError(f"cupy.{self.__name__}.at: a must be a device array")
        args = (_index(indices, f"cupy.{self.__name__}.at"),) + (() if b is None else (_ufunc_operand(b, "at"),))
        self._u.at(a._a, *args)


def _given(**kwargs):
    return {k: v for k, v in kwargs.items() if v is not None and not (k == "keepdims" and v is False)}


_UFUNCS = {name: ufunc(obj) for name, obj in vars(np).items() if isinstance(obj, np.ufunc)}


# -- functions -------------------------------------------------------------------------------------


def _function(name: str, fn):
    where = f"cupy.{name}"

    def f(*args, **kwargs):
        return _wrap(fn(*_unwrap(args, where), **_unwrap(kwargs, where)))

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"NumPy's {name} on the CuPy stand-in's device arrays."
    return f


def _converter(name: str, fn):
    """Creation from any data: a host input is copied (device memory never aliases host memory)."""

    def f(obj, *args, **kwargs):
        if isinstance(obj, ndarray):
            r = fn(obj._a, *args, **kwargs)
            return obj if r is obj._a else _wrap(r)
        if isinstance(obj, (list, tuple)):
            obj = _nested_to_host(obj)
        return device_from_host(np.array(fn(obj, *args, **kwargs), copy=True, order="K"))

    f.__name__ = f.__qualname__ = name
    return f


def _nested_to_host(obj):
    if isinstance(obj, ndarray):
        return obj._a
    if isinstance(obj, (list, tuple)):
        return type(obj)(_nested_to_host(v) for v in obj)
    return obj


def bincount(x, weights=None, minlength=None):
    """CuPy's ``bincount``: the output has ``int(x.max()) + 1`` bins (at least ``minlength``), so an
    empty ``x`` raises (the max of nothing) where NumPy returns ``minlength`` zeros."""
    if not isinstance(x, ndarray):
        raise StandInTypeError("cupy.bincount: x must be a device array")
    a = x._a
    if a.ndim > 1:
        raise ValueError("object too deep for desired array")
    if a.ndim < 1:
        raise ValueError("object of too small depth for desired array")
    if a.dtype.kind == "f":
        raise TypeError("x must be int array")
    if (a < 0).any():
        raise ValueError("The first argument of bincount must be non-negative")
    w = None if weights is None else _unwrap(weights, "cupy.bincount")
    if w is not None and np.shape(w) != a.shape:
        raise ValueError("The weights and list don't have the same length.")
    if minlength is not None and int(minlength) < 0:
        raise ValueError("minlength must be non-negative")
    size = int(a.max()) + 1  # ValueError on an empty x, as CuPy's cupy.max
    if minlength is not None:
        size = max(size, int(minlength))
    return device_from_host(np.bincount(a, weights=w, minlength=size))


def _quantile_like(name: str):
    fn = getattr(np, name)
    where = f"cupy.{name}"

    def f(a, q, axis=None, out=None, overwrite_input=False, method="linear", keepdims=False):
        if method not in _QUANTILE_METHODS:
            raise ValueError(f"{where}: method {method!r} is not supported by CuPy (it has {_QUANTILE_METHODS})")
        r = fn(_unwrap(a, where), _unwrap(q, where), axis=axis, overwrite_input=overwrite_input, method=method,
               keepdims=keepdims)
        if out is not None:
            out._a[...] = r
            return out
        return _wrap(r)

    f.__name__ = name
    return f


def asnumpy(a, stream=None, order="C", out=None):
    """``cupy.asnumpy``: a device array's host copy; anything else through ``numpy.asarray``."""
    if isinstance(a, ndarray):
        return a.get(order=order, out=out)
    return np.asarray(a, order=order)


def is_available() -> bool:
    """True: the stand-in is always "available" (it is the CPU); it is not a GPU."""
    return True


def missing(module: str, why: str):
    """A module ``__getattr__`` for what the stand-in leaves out."""

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(f"module '{module}' has no attribute '{name}' (CuPy stand-in: {why})")

    return __getattr__


def _module(name: str, doc: str) -> types.ModuleType:
    m = types.ModuleType(name)
    m.__doc__ = doc
    return m


def _from_numpy(target: types.ModuleType, source, names) -> None:
    for name in names:
        obj = getattr(source, name)
        if isinstance(obj, np.ufunc):
            setattr(target, name, _UFUNCS[name])
        elif isinstance(obj, type) or not callable(obj):
            setattr(target, name, obj)
        else:
            setattr(target, name, _function(name, obj))


def modules() -> dict[str, types.ModuleType]:
    """The stand-in's ``cupy``, ``cupyx`` and their submodules, by their ``sys.modules`` names."""
    from tests.cupy_standin import _linalg, _random

    cp = _module("cupy", "CuPy stand-in on the CPU (not CuPy): see tests/cupy_standin/__init__.py.")
    public = [n for n in dir(np) if not n.startswith("_") and n not in _NOT_IN_CUPY
              and not isinstance(getattr(np, n), types.ModuleType) and n != "ndarray"]
    _from_numpy(cp, np, public)
    for name in ("asarray", "array", "asanyarray", "ascontiguousarray", "asfortranarray"):
        setattr(cp, name, _converter(name, getattr(np, name)))
    cp.bincount = bincount
    cp.quantile, cp.percentile = _quantile_like("quantile"), _quantile_like("percentile")
    cp.ndarray, cp.ufunc = ndarray, ufunc
    cp.asnumpy, cp.is_available, cp.__version__ = asnumpy, is_available, __version__
    cp.get_array_module = lambda *args: cp if any(isinstance(a, ndarray) for a in args) else np
    cp.__getattr__ = missing("cupy", "NumPy has it, CuPy does not, or it needs a real GPU (cupy.cuda, cupy.fft, ...)")

    linalg = _module("cupy.linalg", "cupy.linalg of the stand-in: NumPy's, failing silently where cuSOLVER does.")
    _from_numpy(linalg, np.linalg, _CUPY_LINALG)
    for name, fn in (("cholesky", _linalg.batched_cholesky), ("solve", _linalg.unchecked_solve),
                     ("inv", _linalg.unchecked_inv), ("eigh", _linalg.unchecked_eigh),
                     ("eigvalsh", _linalg.unchecked_eigvalsh), ("lstsq", _linalg.unchecked_lstsq)):
        setattr(linalg, name, _function(f"linalg.{name}", fn))
    linalg.LinAlgError = np.linalg.LinAlgError
    linalg.__getattr__ = missing("cupy.linalg", "numpy.linalg has it, cupy.linalg does not")
    cp.linalg = linalg

    random = _random.module()
    cp.random = random

    lib = _module("cupy.lib", "cupy.lib of the stand-in (stride_tricks only).")
    stride_tricks = _module("cupy.lib.stride_tricks", "cupy.lib.stride_tricks of the stand-in.")
    _from_numpy(stride_tricks, np.lib.stride_tricks, ("as_strided", "sliding_window_view"))
    lib.stride_tricks = stride_tricks
    lib.__getattr__ = missing("cupy.lib", "only stride_tricks is modelled")
    cp.lib = lib

    cupyx = _module("cupyx", "cupyx of the CuPy stand-in (scipy.linalg.solve_triangular only).")
    scipy_ = _module("cupyx.scipy", "cupyx.scipy of the CuPy stand-in.")
    scipy_linalg = _module("cupyx.scipy.linalg", "cupyx.scipy.linalg of the CuPy stand-in.")
    scipy_linalg.solve_triangular = _function("solve_triangular", _linalg.unchecked_solve_triangular)
    scipy_linalg.__getattr__ = missing("cupyx.scipy.linalg", "only solve_triangular is modelled")
    scipy_.linalg = scipy_linalg
    scipy_.__getattr__ = missing("cupyx.scipy", "only linalg.solve_triangular is modelled")
    cupyx.scipy = scipy_
    cupyx.__getattr__ = missing("cupyx", "only scipy.linalg.solve_triangular is modelled")

    return {"cupy": cp, "cupy.linalg": linalg, "cupy.random": random, "cupy.lib": lib,
            "cupy.lib.stride_tricks": stride_tricks, "cupyx": cupyx, "cupyx.scipy": scipy_,
            "cupyx.scipy.linalg": scipy_linalg}
