"""GPU vs CPU benchmark of the pipeline's operations, on the same seeded synthetic data.

Operations and what ``size`` counts (the same unit :mod:`alphapulse.pipelines.runtime.routing` looks sizes up in):

- ``indicators``: panel cells (bars x symbols). 1,260 bars (five years of days) x ``size / 1260``
  symbols of OHLCV random walks (a tenth of the symbols listed late, so NaN handling runs);
  the default config's 18 indicators through ``alphapulse.transforms.indicators.registry.compute_indicators``.
- ``covariance``: assets. 756 daily returns (three years) of ``size`` assets from a five-factor
  model; ``alphapulse.transforms.covariance.ledoit_wolf_cov`` (the portfolio pipeline's default estimator).
- ``backtest``: backtests (symbols x parameter combinations). 1,260 bars; ``sma_cross`` over up
  to 100 combinations of its default grid and ``size / combinations`` symbols (at least two);
  ``alphapulse.transforms.backtest.engine.indicator_bank`` + ``run_backtest`` (the sweep's kernel).
- ``montecarlo``: paths. 50 assets, normal model, one bar, summed returns;
  ``alphapulse.transforms.montecarlo.monte_carlo_var_cvar`` at the 95 % and 99 % levels.

Timing: each backend runs once as a warm-up (Numba / CUDA compilation, CuPy's kernel cache: the
``*_warmup`` columns), then ``repeats`` times; the figure is the median. Inputs are generated on
the host and copied to the device before the clock starts and results are copied back after it
stops (the pipeline moves data only at its load and report boundaries); the GPU is synchronised
before each clock read.

Agreement (``agree``, ``max_abs_diff``): the GPU's outputs against the CPU's, NaN at the same
places and ``|gpu - cpu| <= atol + rtol |cpu|`` with ``rtol`` 1e-9 in float64 and 1e-3 in float32
(float32 recurrences over 1,260 bars accumulate rounding of about 1e-4 relative). Monte Carlo:
CuPy's and NumPy's random streams differ, so VaR and CVaR must agree within 4.5 x sqrt(2)
standard errors of the estimates (normal-model asymptotics), not bit for bit. Independently of
a GPU the CPU result is checked (``cpu_check``): indicators' SMA(20) against a cumulative-sum
moving mean, covariance against the shrinkage formula on the sample covariance, Monte Carlo
against the normal closed form (``normal_var_cvar``), the backtest's trade count is positive
and its equity finite.

Without a usable GPU: ``gpu_time`` and ``speedup`` are NaN, ``agree`` is None, and
``gpu_reason`` says why; the CPU side still runs and is checked.
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from functools import lru_cache
from statistics import NormalDist

import numpy as np
import pandas as pd

from alphapulse.transforms.arrays import to_host
from alphapulse.pipelines.errors import ArgumentError

log = logging.getLogger(__name__)

OPERATIONS = ("indicators", "covariance", "backtest", "montecarlo")
UNITS = {"indicators": "cells (bars x symbols)", "covariance": "assets",
         "backtest": "backtests (symbols x combinations)", "montecarlo": "paths"}
MIN_SIZE = {"indicators": 2 * 1260, "covariance": 2, "backtest": 2, "montecarlo": 1_000}
MAX_SIZE = {"indicators": 12_600_000, "covariance": 5_000, "backtest": 1_000_000, "montecarlo": 4_000_000}
"""Largest size per operation (bounds memory and time; the HTTP API enforces them too)."""
_DEFAULT_SIZES = {
    "indicators": [12_600, 126_000, 630_000, 2_520_000],
    "covariance": [20, 100, 500, 1_000],
    "backtest": [200, 2_000, 20_000, 100_000],
    "montecarlo": [10_000, 100_000, 1_000_000],
}
BARS = 1260
COV_OBSERVATIONS = 756
MC_ASSETS = 50
MC_LEVELS = (0.95, 0.99)
MAX_COMBINATIONS = 100
COLUMNS = ["operation", "size", "shape", "dtype", "cpu_time", "gpu_time", "speedup", "agree", "max_abs_diff",
           "cpu_check", "cpu_warmup", "gpu_warmup", "repeats", "device", "gpu_reason", "crossover_size"]


def default_sizes(operation: str) -> list[int]:
    """The sizes ``alphapulse gpu benchmark --op OPERATION`` runs when none are given."""
    _check_op(operation)
    return list(_DEFAULT_SIZES[operation])


def _check_op(operation: str) -> None:
    if operation not in OPERATIONS:
        raise ArgumentError(f"unknown operation {operation!r}: expected one of {', '.join(OPERATIONS)}")


def check_sizes(operation: str, sizes) -> list[int]:
    """Sizes as ints within [MIN_SIZE, MAX_SIZE] of the operation; :class:`ArgumentError` (one line) otherwise."""
    _check_op(operation)
    out = []
    for s in sizes:
        integer = isinstance(s, (int, np.integer)) and not isinstance(s, bool)
        if not integer or not MIN_SIZE[operation] <= s <= MAX_SIZE[operation]:
            raise ArgumentError(f"{operation}: size {s!r} out of bounds: expected an integer from "
                                f"{MIN_SIZE[operation]:,} to {MAX_SIZE[operation]:,} {UNITS[operation]}")
        out.append(int(s))
    if not out:
        raise ArgumentError(f"{operation}: no sizes given")
    return out


# ---------------------------------------------------------------------------------------------
# The GPU, if any
# ---------------------------------------------------------------------------------------------


def gpu_device() -> tuple[object | None, str]:
    """``(cupy, device name)`` when CuPy runs on a device here, else ``(None, why not)``.

    NVML is asked first, so a machine without an NVIDIA driver never imports CuPy."""
    from alphapulse.pipelines.gpu.status import gpu_status

    status = gpu_status()
    if not status["available"]:
        return None, status["reason"]
    try:
        import cupy
    except Exception as e:
        return None, f"CuPy does not import ({type(e).__name__}: {e}); install the 'gpu' extra"
    try:
        if not cupy.is_available():
            return None, "cupy.is_available() is False"
        name = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"]
        return cupy, name.decode() if isinstance(name, bytes) else str(name)
    except Exception as e:
        return None, f"CUDA query failed ({type(e).__name__}: {e})"


def _sync(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


# ---------------------------------------------------------------------------------------------
# Synthetic inputs (host, seeded) and one run of each operation
# ---------------------------------------------------------------------------------------------


def ohlcv_panel(n_bars: int, n_symbols: int, *, dtype="float64", seed: int = 0) -> dict[str, np.ndarray]:
    """OHLCV random walks of shape (n_bars, n_symbols): daily log returns N(0, 2 %), highs and
    lows up to 2 % beyond the open/close, every tenth symbol listed after a quarter of the bars
    (NaN before), float ``dtype``."""
    rng = np.random.default_rng(seed)
    close = 50.0 * np.exp(np.cumsum(rng.normal(0.0, 0.02, (n_bars, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.005, close.shape))
    top, bottom = np.maximum(open_, close), np.minimum(open_, close)
    out = {"open": open_, "high": top * (1 + rng.uniform(0, 0.02, close.shape)),
           "low": bottom * (1 - rng.uniform(0, 0.02, close.shape)), "close": close,
           "volume": rng.integers(1_000, 1_000_000, close.shape).astype(np.float64)}
    late = np.arange(0, n_symbols, 10)
    for v in out.values():
        v[: n_bars // 4, late] = np.nan
    return {k: v.astype(dtype) for k, v in out.items()}


def factor_returns(n_obs: int, n_assets: int, *, dtype="float64", seed: int = 0) -> np.ndarray:
    """Per-bar returns (n_obs, n_assets) from five N(0, 1 %) factors with N(0, 1) loadings plus
    N(0, 1.5 %) idiosyncratic noise."""
    rng = np.random.default_rng(seed)
    factors = rng.normal(0.0, 0.01, (n_obs, 5))
    loadings = rng.normal(0.0, 1.0, (5, n_assets))
    return (factors @ loadings + rng.normal(0.0, 0.015, (n_obs, n_assets))).astype(dtype)


@lru_cache(maxsize=1)
def _indicator_specs():
    from alphapulse.pipelines.config import load_config

    return tuple(load_config().indicator_specs())


def _sma_cross_plan(n_comb: int):
    from alphapulse.pipelines.config.grid import expand_grid
    from alphapulse.transforms.backtest.strategies import STRATEGIES

    strat = STRATEGIES["sma_cross"]
    combos = expand_grid({"fast": list(range(5, 55, 5)), "slow": list(range(20, 210, 10))}, random_sample=None,
                         seed=0)
    plan = strat.plan(combos)
    return strat.plan(plan.combos[:n_comb])


class _Case:
    """One (operation, size): host inputs, a run on a given array module, outputs as host arrays."""

    def __init__(self, operation: str, size: int, dtype: str):
        self.operation, self.size, self.dtype = operation, size, np.dtype(dtype)
        if operation == "indicators":
            n_sym = max(2, size // BARS)
            self.shape = f"{BARS} bars x {n_sym} symbols"
            self.inputs = ohlcv_panel(BARS, n_sym, dtype=dtype)
        elif operation == "covariance":
            self.shape = f"{COV_OBSERVATIONS} returns x {size} assets"
            self.inputs = {"returns": factor_returns(COV_OBSERVATIONS, size, dtype=dtype)}
        elif operation == "backtest":
            n_comb = max(1, min(MAX_COMBINATIONS, size // 2))
            n_sym = max(2, size // n_comb)
            self.plan = _sma_cross_plan(n_comb)
            n_comb = len(self.plan.combos)
            self.shape = f"{BARS} bars x {n_sym} symbols x {n_comb} combinations"
            self.inputs = ohlcv_panel(BARS, n_sym, dtype=dtype)
        else:
            rets = factor_returns(COV_OBSERVATIONS, MC_ASSETS, dtype="float64", seed=1)
            self.mean, self.cov = rets.mean(axis=0), np.cov(rets, rowvar=False)
            self.weights = np.full(MC_ASSETS, 1.0 / MC_ASSETS)
            self.shape = f"{size} paths x {MC_ASSETS} assets, 1 bar"
            self.inputs = {"mean": self.mean.astype(dtype), "cov": self.cov.astype(dtype),
                           "weights": self.weights.astype(dtype)}

    def device_inputs(self, xp):
        from alphapulse.transforms.kernels import series_order

        if self.operation in ("indicators", "backtest"):
            order = series_order(xp)
            return {k: xp.asarray(np.asarray(v, order=order), order=order) for k, v in self.inputs.items()}
        return {k: xp.asarray(v) for k, v in self.inputs.items()}

    def run(self, xp, inputs) -> dict:
        """Run the operation on ``xp`` arrays; device outputs (not synchronised)."""
        if self.operation == "indicators":
            from alphapulse.transforms.indicators.registry import compute_indicators

            return compute_indicators(inputs, list(_indicator_specs()))
        if self.operation == "covariance":
            from alphapulse.transforms.covariance import ledoit_wolf_cov

            return {"cov": ledoit_wolf_cov(inputs["returns"])}
        if self.operation == "backtest":
            from alphapulse.transforms.backtest import engine as engine

            prices, n, rows = engine.compact_bars(inputs, fields=("open", "high", "low", "close"))
            bank = engine.indicator_bank(self.plan.bank, prices, n)
            acc, _, _ = engine.run_backtest(prices, n, bank=bank, legs=xp.asarray(self.plan.legs),
                                            levels=xp.asarray(self.plan.levels), mode=self.plan.mode)
            return {"acc": acc}
        from alphapulse.transforms.montecarlo import monte_carlo_var_cvar

        out = monte_carlo_var_cvar(inputs["weights"], model="normal", levels=MC_LEVELS, n_paths=self.size,
                                   mean=inputs["mean"], cov=inputs["cov"], compound=False, seed=0)
        return {"var": out["var"], "cvar": out["cvar"]}

    # -- checks -----------------------------------------------------------------------------

    def _mc_standard_errors(self) -> tuple[np.ndarray, np.ndarray]:
        """Asymptotic standard errors of the normal model's VaR and CVaR estimates at MC_LEVELS."""
        sigma = math.sqrt(float(self.weights @ self.cov @ self.weights))
        std = NormalDist()
        se_var, se_cvar = [], []
        for a in MC_LEVELS:
            z = std.inv_cdf(a)
            es = std.pdf(z) / (1 - a)
            tail_var = 1 + z * es - es * es
            se_var.append(sigma * math.sqrt(a * (1 - a) / self.size) / std.pdf(z))
            se_cvar.append(sigma * math.sqrt((tail_var + a * (es - z) ** 2) / (self.size * (1 - a))))
        return np.array(se_var), np.array(se_cvar)

    def cpu_check(self, out: dict) -> bool:
        """An independent check of the CPU result (see the module docstring)."""
        if self.operation == "indicators":
            close = self.inputs["close"].astype(np.float64)
            got = out["sma_20"]
            col = close[:, 1]  # a symbol listed from the first bar
            c = np.cumsum(np.concatenate([[0.0], col]))
            want = (c[20:] - c[:-20]) / 20
            tol = 1e-9 if self.dtype == np.float64 else 1e-3
            return bool(np.all(np.isnan(got[:19, 1])) and np.allclose(got[19:, 1], want, rtol=tol, atol=0))
        if self.operation == "covariance":
            x = self.inputs["returns"].astype(np.float64)
            s = np.cov(x, rowvar=False, bias=True)
            mu = np.trace(s) / s.shape[0]
            cov = out["cov"]
            # cov = (1 - d) s + d mu I: the off-diagonal ratio gives d; the diagonal must then fit
            off = ~np.eye(s.shape[0], dtype=bool)
            d = 1 - float(np.sum(cov[off] * s[off]) / np.sum(s[off] ** 2)) if s.shape[0] > 1 else 0.0
            want = (1 - d) * s + d * mu * np.eye(s.shape[0])
            tol = 1e-9 if self.dtype == np.float64 else 1e-4
            return bool(0 <= d <= 1 and np.allclose(cov, want, rtol=tol, atol=tol * mu))
        if self.operation == "montecarlo":
            from alphapulse.transforms.montecarlo import normal_var_cvar

            var, cvar = normal_var_cvar(self.weights, mean=self.mean, cov=self.cov, levels=MC_LEVELS)
            se_var, se_cvar = self._mc_standard_errors()
            return bool(np.all(np.abs(out["var"] - var) < 4.5 * se_var)
                        and np.all(np.abs(out["cvar"] - cvar) < 4.5 * se_cvar))
        from alphapulse.transforms.backtest.engine import ACC

        acc = out["acc"]
        return bool(np.all(np.isfinite(acc)) and acc[:, list(ACC).index("trades")].sum() > 0) \
            if "trades" in ACC else bool(np.all(np.isfinite(acc)))

    def compare(self, cpu: dict, gpu: dict) -> tuple[bool, float]:
        """(agree, max |gpu - cpu|) over every output."""
        if self.operation == "montecarlo":
            se_var, se_cvar = self._mc_standard_errors()
            dv, dc = np.abs(gpu["var"] - cpu["var"]), np.abs(gpu["cvar"] - cpu["cvar"])
            k = 4.5 * math.sqrt(2)
            return bool(np.all(dv < k * se_var) and np.all(dc < k * se_cvar)), float(max(dv.max(), dc.max()))
        rtol = 1e-9 if self.dtype == np.float64 else 1e-3
        agree, worst = True, 0.0
        for name, a in cpu.items():
            b = gpu[name]
            a64, b64 = a.astype(np.float64), b.astype(np.float64)
            nan_a, nan_b = np.isnan(a64), np.isnan(b64)
            if a64.shape != b64.shape or not np.array_equal(nan_a, nan_b):
                return False, float("nan")
            ok = ~nan_a
            diff = np.abs(a64[ok] - b64[ok])
            if diff.size:
                worst = max(worst, float(diff.max()))
                scale = np.abs(a64[ok])
                atol = rtol * max(1.0, float(np.median(scale)))
                agree &= bool(np.all(diff <= atol + rtol * scale))
        return agree, worst


def _timed(case: _Case, xp, repeats: int) -> tuple[float, float, dict]:
    """(warm-up seconds, median seconds of ``repeats`` runs, host outputs of the last run)."""
    inputs = case.device_inputs(xp)
    _sync(xp)
    start = time.perf_counter()
    case.run(xp, inputs)
    _sync(xp)
    warmup = time.perf_counter() - start
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = case.run(xp, inputs)
        _sync(xp)
        times.append(time.perf_counter() - start)
    return warmup, statistics.median(times), {k: to_host(v) for k, v in out.items()}


def run_benchmark(operation: str, sizes: list[int] | None = None, *, dtype: str = "float64",
                  repeats: int = 3) -> pd.DataFrame:
    """Benchmark ``operation`` at each size on the CPU and, where one is usable, on the GPU.

    Parameters
    ----------
    operation : one of :data:`OPERATIONS`
    sizes : sizes in the operation's unit (:data:`UNITS`); default :func:`default_sizes`
    dtype : "float64" or "float32"
    repeats : timed runs per backend after the warm-up (>= 1); the median is reported

    Returns
    -------
    pandas.DataFrame
        One row per size, columns :data:`COLUMNS`: ``cpu_time``/``gpu_time`` in seconds (median),
        ``speedup`` = cpu_time / gpu_time, ``agree`` (None without a GPU), ``max_abs_diff``,
        ``cpu_check``, ``device`` (the GPU's name, or "cpu"), ``gpu_reason`` (why there is no GPU
        figure, else None), ``crossover_size`` (:func:`crossover_size` of these rows, the same in
        every row; null when the GPU never wins).

    Raises
    ------
    ArgumentError
        One line, for an unknown operation, a size out of bounds, a bad dtype or repeats (a ``ValueError``).
    """
    _check_op(operation)
    sizes = check_sizes(operation, default_sizes(operation) if sizes is None else sizes)
    if dtype not in ("float64", "float32"):
        raise ArgumentError(f"dtype must be float64 or float32, got {dtype!r}")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or not 1 <= repeats <= 100:
        raise ArgumentError(f"repeats must be an integer from 1 to 100, got {repeats!r}")
    cupy, device = gpu_device()
    gpu_reason = None if cupy is not None else device
    rows = []
    for size in sizes:
        case = _Case(operation, size, dtype)
        cpu_warm, cpu_time, cpu_out = _timed(case, np, repeats)
        row = {"operation": operation, "size": size, "shape": case.shape, "dtype": dtype, "cpu_time": cpu_time,
               "gpu_time": float("nan"), "speedup": float("nan"), "agree": None, "max_abs_diff": float("nan"),
               "cpu_check": case.cpu_check(cpu_out), "cpu_warmup": cpu_warm, "gpu_warmup": float("nan"),
               "repeats": repeats, "device": device if cupy is not None else "cpu", "gpu_reason": gpu_reason}
        if cupy is not None:
            try:
                gpu_warm, gpu_time, gpu_out = _timed(case, cupy, repeats)
                agree, diff = case.compare(cpu_out, gpu_out)
                row.update(gpu_time=gpu_time, speedup=cpu_time / gpu_time, agree=agree, max_abs_diff=diff,
                           gpu_warmup=gpu_warm)
            except Exception as e:  # an OOM at a large size must not lose the smaller sizes' rows
                from alphapulse.pipelines.runtime.oom import is_gpu_oom

                if not is_gpu_oom(e):
                    raise
                row["gpu_reason"] = f"GPU out of memory at this size ({type(e).__name__})"
                cupy.get_default_memory_pool().free_all_blocks()
        log.info("benchmark %s size %s: cpu %.4fs, gpu %s, speedup %s", operation, size, cpu_time,
                 row["gpu_time"], row["speedup"])
        rows.append(row)
        del case
    frame = pd.DataFrame(rows, columns=COLUMNS[:-1])
    frame["agree"] = frame["agree"].astype(object)
    frame["crossover_size"] = pd.array([crossover_size(frame)] * len(frame), dtype="Int64")
    return frame


def crossover_size(frame: pd.DataFrame) -> int | None:
    """The smallest benchmarked size from which on the GPU wins (speedup > 1 at that size and at
    every larger one); None when it never does (or there is no GPU figure)."""
    f = frame.sort_values("size")
    wins = (f["speedup"] > 1.0).to_numpy()
    if not wins.size or not wins[-1]:
        return None
    k = len(wins) - 1
    while k > 0 and wins[k - 1]:
        k -= 1
    return int(f["size"].iloc[k])
