"""The kernel framework itself: device functions on both targets, compaction round trips, and
the launcher's refusal of mixed NumPy/CuPy arguments."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms._device_function_example import scaled_column
from tests.transforms.gpu_testlib import DeviceArrayStandIn, assert_on_device, device
from alphapulse.transforms.kernels import compact, expand, lengths, valid_mask

ROOT = Path(__file__).resolve().parents[2]


def test_device_functions_on_the_cpu():
    x = np.arange(12.0).reshape(4, 3)
    out = np.zeros_like(x)
    scaled_column.cpu(3, x, 2.0, out)
    np.testing.assert_array_equal(out, (x + 1.0) * 2.0)


def test_device_functions_under_the_cuda_simulator():
    script = ("import numpy as np\n"
              "from tests.transforms._device_function_example import scaled_column\n"
              "x = np.arange(12.0).reshape(4, 3); out = np.zeros_like(x)\n"
              "scaled_column.gpu(3, x, 2.0, out)\n"
              "assert np.array_equal(out, (x + 1.0) * 2.0), out\n")
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_compact_expand_round_trip(xp):
    rng = np.random.default_rng(0)
    x = np.asfortranarray(rng.normal(size=(30, 5)))
    x[:10, 1] = np.nan
    x[[3, 17], 2] = np.nan
    on = device(xp, x)
    valid = valid_mask(on)
    compacted = compact(on, valid)
    n = lengths(valid)
    assert_on_device(xp, (compacted, n))
    assert n.dtype == np.int64
    c, n = host(compacted), host(n)
    assert list(n) == [30, 20, 28, 30, 30]
    for j in range(5):
        np.testing.assert_array_equal(c[: n[j], j], x[~np.isnan(x[:, j]), j])
        assert np.isnan(c[n[j]:, j]).all()
    np.testing.assert_array_equal(host(expand(compacted, valid)), x)


def test_a_launch_mixing_host_and_device_arrays_is_refused():
    """Numba copies a NumPy argument of a CUDA launch to the device and back, silently: a
    transfer inside a transform (e.g. ``run_backtest`` given a plan's host ``legs`` with CuPy
    bars). The launcher refuses it, naming the kernel, before anything reaches CUDA."""
    x = np.zeros((4, 2))
    with pytest.raises(TypeError, match="_compact_column: mixed NumPy and CuPy"):
        compact(x, DeviceArrayStandIn())
