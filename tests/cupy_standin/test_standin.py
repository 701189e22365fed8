"""The CuPy stand-in stays strict: each refusal and silent failure that makes it worth running is
pinned here, so that it cannot quietly become a permissive NumPy alias. Runs in the ordinary test
suite (no GPU, no plugin needed): the modules are built and installed for the test only."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.cupy_standin import _core, plugin


@pytest.fixture
def cp():
    """The stand-in's ``cupy``, installed in ``sys.modules`` for the test as the plugin does."""
    installed = sys.modules.get("cupy")
    if installed is not None and getattr(installed, "__version__", None) == "stand-in":
        yield installed  # this run already loaded the plugin
        return
    if installed is not None or importlib.util.find_spec("cupy") is not None:
        pytest.skip("a real CuPy is installed here; the stand-in is for machines without one")
    plugin.pytest_configure(None)
    try:
        yield sys.modules["cupy"]
    finally:
        plugin.pytest_unconfigure(None)


@pytest.fixture
def x(cp):
    return cp.asarray(np.arange(6.0).reshape(2, 3))


def test_it_says_what_it_is(cp):
    assert cp.__version__ == "stand-in" and cp.is_available()
    assert plugin.pytest_report_header(None) == "CuPy stand-in on the CPU (not CuPy)"
    assert type(cp.zeros(2)).__module__ == "cupy" and isinstance(cp.zeros(2), cp.ndarray)


def test_it_is_not_importable_as_cupy_without_the_plugin():
    here = Path(__file__).parent
    assert not (here / "cupy").exists() and not (here / "cupy.py").exists()
    if "cupy" not in sys.modules and importlib.util.find_spec("cupy") is None:
        with pytest.raises(ImportError):
            import cupy  # noqa: F401


@pytest.mark.parametrize("convert", [np.asarray, np.array, pd.DataFrame, lambda a: pd.Series(a[0]), np.mean,
                                     lambda a: np.concatenate([a, a]), lambda a: np.maximum.accumulate(a)],
                         ids=["asarray", "array", "DataFrame", "Series", "mean", "concatenate", "ufunc-method"])
def test_implicit_conversion_to_numpy_is_refused(x, convert):
    with pytest.raises(TypeError):
        convert(x)


@pytest.mark.parametrize("mix", [lambda cp, d, h: d + h, lambda cp, d, h: h * d, lambda cp, d, h: cp.where(d > 0, h, 0),
                                 lambda cp, d, h: cp.concatenate([d, h]), lambda cp, d, h: d[np.array([0])],
                                 lambda cp, d, h: d.__setitem__(0, h[0]), lambda cp, d, h: np.add(d, h, out=h)],
                         ids=["add", "rmul", "where", "concatenate", "index", "setitem", "ufunc-out"])
def test_mixing_host_and_device_arrays_is_refused(cp, x, mix):
    with pytest.raises(TypeError):
        mix(cp, x, np.ones((2, 3)))


def test_scalars_sync_explicitly_and_reductions_stay_on_the_device(cp, x):
    total = x.sum()
    assert isinstance(total, cp.ndarray) and total.shape == ()
    assert isinstance(x[1, 2], cp.ndarray) and isinstance(cp.max(x), cp.ndarray)
    assert float(total) == 15.0 and int(x[1, 1]) == 4 and bool(x[0, 0] == 0) and x[1, 0].item() == 3.0
    assert isinstance(np.sqrt(x), cp.ndarray)  # a NumPy ufunc call dispatches, as CuPy's does
    with pytest.raises(ValueError):
        bool(x > 0)
    with pytest.raises(TypeError):
        range(x.sum().astype(np.int64))  # no __index__ on CuPy arrays
    np.testing.assert_array_equal(x.get(), np.arange(6.0).reshape(2, 3))


def test_cholesky_of_a_matrix_that_is_not_positive_definite_fails_silently(cp):
    a = np.array([[1.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(a)
    low = cp.linalg.cholesky(cp.asarray(a)).get()  # no exception: cuSOLVER's status is not checked
    assert np.isfinite(low).all()
    assert low[0, 0] == 1.0 and low[1, 0] == 2.0 and low[1, 1] == -3.0  # the failed pivot, left in place
    spd = np.array([[4.0, 2.0], [2.0, 3.0]])
    np.testing.assert_allclose(cp.linalg.cholesky(cp.asarray(spd)).get(), np.linalg.cholesky(spd))


def test_solve_of_a_singular_system_fails_silently(cp):
    out = cp.linalg.solve(cp.asarray(np.ones((2, 2))), cp.asarray(np.ones(2))).get()
    assert not np.isfinite(out).any()
    tri = cp.asarray(np.array([[1.0, 0.0], [1.0, 0.0]]))
    import cupyx.scipy.linalg

    assert not np.isfinite(cupyx.scipy.linalg.solve_triangular(tri, cp.ones(2), lower=True).get()).all()


def test_random_stream_differs_from_numpys_for_the_same_seed(cp):
    ours = cp.random.default_rng(7).standard_normal(5).get()
    assert not np.allclose(ours, np.random.default_rng(7).standard_normal(5))
    np.testing.assert_array_equal(ours, cp.random.default_rng(7).standard_normal(5).get())
    with pytest.raises(TypeError):
        cp.random.default_rng(7).chisquare(np.float64(3.0), size=2)  # CuPy takes Python numbers only


def test_bincount_is_sized_by_the_maximum_and_refuses_an_empty_input(cp):
    assert cp.bincount(cp.asarray(np.array([1, 3]))).get().tolist() == [0, 1, 0, 1]
    assert np.bincount(np.array([], dtype=np.int64), minlength=3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError):
        cp.bincount(cp.asarray(np.array([], dtype=np.int64)), minlength=3)


def test_what_cupy_lacks_is_missing(cp, x):
    for missing in (lambda: cp.errstate, lambda: cp.linalg.eig, lambda: cp.random.seed, lambda: x.searchsorted,
                    lambda: cp.cuda):
        with pytest.raises(AttributeError):
            missing()
    with pytest.raises(ValueError):
        cp.quantile(x, 0.5, method="hazen")


def test_repeated_indices_do_not_store_numpys_last_value(cp):
    y = cp.zeros(2)
    y[cp.asarray(np.array([0, 0, 1]))] = cp.asarray(np.array([1.0, 2.0, 3.0]))
    assert y.get().tolist() == [1.0, 3.0]  # NumPy stores 2.0 at 0; on CuPy which value wins is undefined


def test_a_series_kernel_launch_on_device_arrays_runs_the_cpu_kernel_in_place(cp):
    from alphapulse.transforms.kernels import compact

    bars = np.array([[1.0, np.nan], [np.nan, 5.0], [3.0, 6.0]])
    d = cp.asarray(bars)
    compacted = compact(d, ~cp.isnan(d))
    assert isinstance(compacted, cp.ndarray) and compacted.flags.c_contiguous
    np.testing.assert_array_equal(compacted.get()[:2], [[1.0, 5.0], [3.0, 6.0]])
    with pytest.raises(TypeError, match="mixed NumPy and CuPy"):
        compact(d, ~np.isnan(bars))


def test_device_arrays_are_a_wrapper_not_numpy(x):
    assert not isinstance(x, np.ndarray) and isinstance(x, _core.ndarray)
