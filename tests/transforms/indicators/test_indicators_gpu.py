"""The CUDA side of the indicator kernels, with and without a GPU.

- Under Numba's CUDA simulator (always): every kernel's ``.gpu`` launcher runs the same series
  function as a CUDA kernel, one thread per column, on the CPU, and must equal the compiled CPU
  path. Runs in a subprocess because ``NUMBA_ENABLE_CUDASIM`` is read when Numba is imported.
- PTX compilation (where CUDA's NVVM/NVRTC libraries are installed, else skipped): every kernel
  compiles for sm_90 in float64 and float32, with no float32 arithmetic.

On a real GPU the kernels run on the device in the CuPy cases of the ``xp`` tests (``gpu``
marker), fed C-ordered CuPy panels: every kernel in float64 and float32 against TA-Lib in
``test_indicators_talib`` (where TA-Lib is installed), and without TA-Lib in
``test_indicators_properties.test_float32_panels_compute_in_float64`` (both dtypes, every
kernel), the other properties and ``test_indicators_reference`` (float64).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tests.transforms.gpu_testlib import float32_arithmetic

from alphapulse.transforms.indicators import series
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec, compute_indicators

SIM_SPECS = [IndicatorSpec(name) for name in INDICATORS] + [
    IndicatorSpec("macd", {"fast": 3, "slow": 7, "signal": 1}),
    IndicatorSpec("stoch", {"fastk_period": 14, "slowk_period": 1, "slowd_period": 4}),
    IndicatorSpec("ema", {"period": 1}),
    IndicatorSpec("natr", {"period": 1}),
]


def small_panel(n_bars=60, n_symbols=3, seed=3):
    """A tiny panel (the simulator runs Python threads): a late listing, an interior gap, a flat
    stretch."""
    rng = np.random.default_rng(seed)
    close = np.round(50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, n_symbols)), axis=0)), 2)
    high = np.round(close * (1 + rng.uniform(0, 0.02, close.shape)), 2)
    low = np.round(close * (1 - rng.uniform(0, 0.02, close.shape)), 2)
    volume = rng.integers(1_000, 100_000, close.shape).astype(np.float64)
    high[20:30, 2] = low[20:30, 2] = close[20:30, 2] = close[20, 2]
    bars = {"high": high, "low": low, "close": close, "volume": volume}
    for v in bars.values():
        v[:7, 1] = np.nan
        v[33, 0] = np.nan
    return {k: np.asfortranarray(v) for k, v in bars.items()}


_SIMULATOR_SCRIPT = r"""
import json, sys
import numpy as np
from numba import config
assert config.ENABLE_CUDASIM, "the CUDA simulator is not enabled"
from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators
from alphapulse.transforms.kernels import SeriesKernel

# Route every kernel launch to its CUDA launcher (on NumPy arrays: the simulator runs it).
SeriesKernel.__call__ = lambda self, n_cols, *args: self.gpu(n_cols, *args)

inputs = np.load(sys.argv[1])
specs = [IndicatorSpec(name, params) for name, params in json.loads(sys.argv[2])]
results = {}
for dtype in ("float64", "float32"):
    bars = {k: np.asfortranarray(inputs[k].astype(dtype)) for k in inputs.files}
    for column, values in compute_indicators(bars, specs).items():
        results[f"{dtype}/{column}"] = values
np.savez(sys.argv[3], **results)
"""


def test_cuda_kernels_match_cpu_under_the_simulator(tmp_path):
    bars = small_panel()
    np.savez(tmp_path / "inputs.npz", **bars)
    specs = json.dumps([[s.name, s.params] for s in SIM_SPECS])
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", _SIMULATOR_SCRIPT, str(tmp_path / "inputs.npz"), specs,
                           str(tmp_path / "outputs.npz")],
                          env=env, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr[-4000:]
    simulated = np.load(tmp_path / "outputs.npz")
    for dtype, rtol in (("float64", 1e-12), ("float32", 2.0**-23)):
        cpu = compute_indicators({k: v.astype(dtype) for k, v in bars.items()}, SIM_SPECS)
        for column, values in cpu.items():
            sim = simulated[f"{dtype}/{column}"]
            assert sim.dtype == values.dtype, column
            np.testing.assert_array_equal(np.isnan(sim), np.isnan(values), err_msg=f"{dtype} {column} NaN")
            # The simulator executes the same operations in Python floats (IEEE double), so the
            # results are in fact identical; the tolerance only guards against a libm ulp.
            np.testing.assert_allclose(sim, values, rtol=rtol, atol=0, err_msg=f"{dtype} {column}")


def _nvvm_available():
    try:
        from numba.cuda.cudadrv import nvrtc, nvvm

        return bool(nvvm.is_available()) and bool(nvrtc.get_supported_ccs())
    except Exception:
        return False


KERNELS = list(series.__all__)  # every kernel the module declares needs a signature below


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernels_compile_to_ptx(dtype):
    """Every series function compiles for a Hopper GPU, reading float32 panels in float64."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not _nvvm_available():
        pytest.skip("CUDA's NVVM/NVRTC libraries are not installed (pip: nvidia-nvvm, nvidia-cuda-nvrtc)")
    from numba import cuda, types

    data = getattr(types, dtype)
    panel = types.Array(data, 2, "C")
    scratch = types.Array(types.float64, 2, "C")
    n = types.Array(types.int64, 1, "C")
    i64 = types.int64
    signatures = {
        "sma_column": (i64, panel, n, i64, panel),
        "ema_column": (i64, panel, n, i64, i64, panel),
        "rsi_column": (i64, panel, n, i64, panel),
        "macd_column": (i64, panel, n, i64, i64, i64, panel, panel, panel),
        "bbands_column": (i64, panel, n, i64, types.float64, panel, panel, panel),
        "atr_column": (i64, panel, panel, panel, n, i64, types.boolean, panel),
        "stoch_column": (i64, panel, panel, panel, n, i64, i64, i64, scratch, scratch, panel, panel),
        "adx_column": (i64, panel, panel, panel, n, i64, panel),
        "cci_column": (i64, panel, panel, panel, n, i64, scratch, panel),
        "willr_column": (i64, panel, panel, panel, n, i64, panel),
        "obv_column": (i64, panel, panel, n, panel),
        "roc_column": (i64, panel, n, i64, panel),
    }
    assert set(signatures) == set(KERNELS)
    for name, signature in signatures.items():
        ptx, _ = cuda.compile_ptx(getattr(series, name).fn, signature, device=True, cc=(9, 0))
        single = float32_arithmetic(ptx)
        assert not single, f"{name} ({dtype}) does float32 arithmetic: {single[:3]}"

