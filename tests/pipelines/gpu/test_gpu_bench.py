"""The GPU-vs-CPU benchmark: every operation really runs on the CPU and is checked; without a
GPU the GPU columns say why; the agreement check catches a wrong result."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alphapulse.pipelines.gpu.bench import (COLUMNS, MAX_SIZE, OPERATIONS, _Case, crossover_size, default_sizes,
                                            gpu_device, run_benchmark)

SMALL = {"indicators": [2_520, 12_600], "covariance": [5, 40], "backtest": [20, 300], "montecarlo": [5_000, 20_000]}
CUPY, DEVICE = gpu_device()


@pytest.mark.parametrize("op", OPERATIONS)
def test_cpu_side_runs_and_is_checked(op):
    f = run_benchmark(op, SMALL[op], repeats=1)
    assert list(f.columns) == COLUMNS and list(f["size"]) == SMALL[op]
    assert (f["cpu_time"] > 0).all() and f["cpu_check"].all()
    assert (f["operation"] == op).all()
    if CUPY is None:
        assert f["gpu_time"].isna().all() and f["speedup"].isna().all()
        assert f["agree"].isna().all() and (f["device"] == "cpu").all()
        assert f["gpu_reason"].str.len().gt(0).all()
        assert crossover_size(f) is None


def test_default_sizes_are_in_bounds():
    for op in OPERATIONS:
        sizes = default_sizes(op)
        assert sizes == sorted(sizes) and sizes[-1] <= MAX_SIZE[op]


@pytest.mark.parametrize("op, sizes, match", [
    ("fft", None, "unknown operation 'fft'"),
    ("covariance", [10**9], "out of bounds"),
    ("covariance", [1.5], "out of bounds"),
    ("covariance", [], "no sizes"),
])
def test_bad_requests(op, sizes, match):
    with pytest.raises(ValueError, match=match):
        run_benchmark(op, sizes)


def test_bad_dtype_and_repeats():
    with pytest.raises(ValueError, match="dtype"):
        run_benchmark("covariance", [5], dtype="int8")
    with pytest.raises(ValueError, match="repeats"):
        run_benchmark("covariance", [5], repeats=0)


@pytest.mark.parametrize("op", OPERATIONS)
def test_checks_catch_a_wrong_result(op):
    """The agreement and CPU checks are not vacuous: a perturbed output fails them."""
    case = _Case(op, SMALL[op][0], "float64")
    out = {k: np.asarray(v, dtype=np.float64) for k, v in case.run(np, case.device_inputs(np)).items()}
    assert case.cpu_check(out)
    agree, diff = case.compare(out, out)
    assert agree and diff == 0.0
    bad = {k: v.copy() for k, v in out.items()}
    key = "sma_20" if op == "indicators" else next(iter(bad))
    flat = bad[key].reshape(-1)
    i = int(np.flatnonzero(np.isfinite(flat) & (flat != 0))[-1])
    flat[i] *= 1.5 if op != "backtest" else np.nan
    assert not case.compare(out, bad)[0]
    if op != "backtest":  # the backtest's CPU check is a sanity check (finite, trades)
        assert not case.cpu_check(bad)


def test_crossover_size():
    f = pd.DataFrame({"size": [10, 100, 1000, 10000], "speedup": [0.2, 1.5, 0.9, 4.0]})
    assert crossover_size(f) == 10000  # the GPU must keep winning from the crossover on
    f["speedup"] = [0.2, 1.5, 2.0, 4.0]
    assert crossover_size(f) == 100
    f["speedup"] = [0.2, 0.5, 2.0, 0.9]
    assert crossover_size(f) is None


@pytest.mark.gpu
@pytest.mark.parametrize("op", OPERATIONS)
def test_gpu_agrees_with_cpu(op):
    if CUPY is None:
        pytest.skip(f"no GPU: {DEVICE}")
    f = run_benchmark(op, SMALL[op], repeats=1)
    assert f["agree"].all() and (f["gpu_time"] > 0).all() and f["gpu_reason"].isna().all()
    assert (f["speedup"] == f["cpu_time"] / f["gpu_time"]).all()
