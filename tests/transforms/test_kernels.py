"""The kernel framework itself: device functions on both targets, compaction round trips."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.transforms._device_function_example import scaled_column
from transforms.kernels import compact, expand, lengths, valid_mask

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


def test_compact_expand_round_trip():
    rng = np.random.default_rng(0)
    x = np.asfortranarray(rng.normal(size=(30, 5)))
    x[:10, 1] = np.nan
    x[[3, 17], 2] = np.nan
    valid = valid_mask(x)
    c = compact(x, valid)
    n = lengths(valid)
    assert list(n) == [30, 20, 28, 30, 30]
    for j in range(5):
        np.testing.assert_array_equal(c[: n[j], j], x[valid[:, j], j])
        assert np.isnan(c[n[j]:, j]).all()
    np.testing.assert_array_equal(expand(c, valid), x)
