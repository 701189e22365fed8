"""A CPU stand-in for CuPy (it is NOT CuPy), to rehearse the CuPy cases of the transform tests
without a GPU.

Loaded only by the pytest plugin ``-p tests.cupy_standin.plugin``, which puts the stand-in's
``cupy`` and ``cupyx`` modules into ``sys.modules`` for that pytest run; nothing here is installed,
on the import path as ``cupy``, or active otherwise (importing this package has no side effect).

The stand-in computes with NumPy on the host, but refuses what CuPy refuses and fails where CuPy
fails silently, because those are where host/device mistakes hide when the only machine is a CPU:

- a device array is a wrapper, not an ``numpy.ndarray``: ``numpy.asarray``, pandas and every
  ``numpy.<function>`` on it raise ``TypeError`` (implicit conversion); ufuncs and operators that
  mix it with a NumPy array raise ``TypeError``; ``float()``, ``int()``, ``bool()`` and ``.item()``
  of a one-element array work (a sync on CuPy); reductions and scalar indexing give 0-d arrays;
- ``cupy.linalg.cholesky`` of a matrix that is not positive definite returns a partial factor, and
  ``solve``/``inv`` of a singular matrix non-finite values, without raising (cuSOLVER's status is
  not checked under CuPy's default ``linalg="ignore"``);
- ``cupy.random.default_rng(seed)`` draws another stream than NumPy's for the same seed, with
  CuPy's Generator methods only;
- ``cupy.bincount`` sizes its output ``int(max) + 1`` and raises on an empty input;
- what CuPy does not have (see :mod:`tests.cupy_standin._core`) is missing here too;
- a :class:`alphapulse.transforms.kernels.SeriesKernel` launch on device arrays runs the compiled
  CPU kernel on the arrays' own (C-ordered) memory, in place of numba-cuda.

What it cannot catch: anything of the GPU itself (CUDA kernel code, PTX, memory, streams,
numba-cuda's typing of device arrays, float32 rounding on the device, cuML, NVML), and any
difference between CuPy's and NumPy's arithmetic that is not modelled here.
"""
