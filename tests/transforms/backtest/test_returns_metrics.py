"""alphapulse.transforms.backtest.returns_metrics: metrics of return series equal the engine's metrics of the same
series; the equal-weight portfolio is the mean of the symbols' returns and does not depend on how
the symbols are chunked (on NumPy and, where a GPU is usable, on CuPy: the ``xp`` fixture); the
CUDA kernels match under Numba's simulator."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from alphapulse.transforms.backtest.engine import ACC, run_backtest
from alphapulse.transforms.kernels import compact, lengths, valid_mask
from alphapulse.transforms.backtest.metrics import metrics_from_acc
from alphapulse.transforms.backtest.returns_metrics import (RETURN_METRICS, equal_weight_accumulate,
                                                            equal_weight_returns, metrics_from_returns,
                                                            returns_accumulators)
from alphapulse.transforms.backtest.strategies import STRATEGIES
from alphapulse.transforms.indicators.registry import compute_indicators

ROOT = Path(__file__).resolve().parents[3]


def random_bars(n_bars=300, n_symbols=6, seed=0):
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, n_symbols)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, close.shape))
    bars = {"open": open_, "high": high, "low": low, "close": close}
    for v in bars.values():
        v[:40, 1] = np.nan  # late listing
        v[100:103, 2] = np.nan  # interior gap
        v[250:, 3] = np.nan  # delisted
    return {k: np.asfortranarray(v) for k, v in bars.items()}


def engine_run(xp, bars, combos, **kw):
    """The engine over host ``bars`` on ``xp`` (CPU layouts on NumPy, C-ordered on CuPy); device
    outputs."""
    bars = device(xp, bars)
    valid = valid_mask(bars["close"])
    n = lengths(valid)
    prices = {k: compact(v, valid) for k, v in bars.items()}
    n_bars, n_sym = bars["close"].shape
    timeline = device(xp, np.asfortranarray(np.broadcast_to(np.arange(n_bars, dtype=float)[:, None],
                                                            (n_bars, n_sym))))
    compacted = compact(timeline, valid)
    rows = xp.where(xp.isnan(compacted), -1, compacted).astype(np.int64)
    plan = STRATEGIES["sma_cross"].plan(combos)
    values = compute_indicators(prices, [s for s, _ in plan.bank])
    if xp is np:
        bank = np.empty((len(plan.bank), n_sym, n_bars)).transpose(0, 2, 1)
    else:
        bank = xp.empty((len(plan.bank), n_bars, n_sym))
    for k, (_, col) in enumerate(plan.bank):
        bank[k] = values[col]
    return run_backtest(prices, n, bank=bank, legs=device(xp, plan.legs), levels=device(xp, plan.levels),
                        mode=plan.mode, rows=rows, n_rows_out=n_bars, want_returns=True, **kw)


@pytest.mark.parametrize("definitions", ["alphapulse", "backtesting.py"])
def test_single_series_equals_metrics_from_acc(xp, definitions):
    bars = random_bars()
    acc, returns, _ = engine_run(xp, bars, [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 40}],
                                 commission_bps=5, slippage_bps=2, direction="both")
    expected = host(metrics_from_acc(acc, periods_per_year=252, definitions=definitions))
    got = metrics_from_returns(returns, periods_per_year=252, definitions=definitions)
    assert set(got) == set(RETURN_METRICS)
    assert_on_device(xp, got, np.float64)
    got = host(got)
    for k in RETURN_METRICS:
        np.testing.assert_allclose(got[k], expected[k], rtol=1e-10, atol=1e-13, err_msg=k)
    # one column at a time gives the same as the batch
    one = host(metrics_from_returns(returns[:, [3]], definitions=definitions))
    assert one["sharpe"][0] == got["sharpe"][3]


def test_hand_computed_metrics(xp):
    """Definition-independent values by hand; the ratios' definitions are metrics_from_acc's (the
    test above holds them to the engine's)."""
    r = device(xp, np.array([[np.nan], [0.1], [-0.2], [np.nan], [0.05]]))
    m = host(metrics_from_returns(r, periods_per_year=252))
    eq = np.cumprod(1 + np.array([0.1, -0.2, 0.05]))
    assert m["total_return"][0] == pytest.approx(eq[-1] - 1, rel=1e-15)
    assert m["max_drawdown"][0] == pytest.approx(eq[1] / eq[0] - 1, rel=1e-12)
    assert m["max_drawdown_bars"][0] == 2  # below the peak of return bar 1 for bars 2 and 3
    assert m["sharpe"][0] < 0 < host(metrics_from_returns(-r)["sharpe"])[0]
    acc = returns_accumulators(r)
    assert_on_device(xp, acc, np.float64)
    acc = host(acc)
    assert acc[0, ACC.index("returns")] == 3 and acc[0, ACC.index("bars")] == 4
    empty = host(metrics_from_returns(device(xp, np.full((4, 1), np.nan))))
    assert np.isnan(empty["sharpe"][0]) and empty["total_return"][0] == 0


def test_equal_weight_is_the_mean_of_available_returns(xp):
    # 2 combinations x 3 symbols; NaN = no return for that symbol at that bar
    r = device(xp, np.array([
        [np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
        [0.01, 0.02, np.nan, -0.01, 0.00, np.nan],
        [0.03, np.nan, 0.06, 0.02, np.nan, 0.04],
    ]))
    sums = xp.zeros((3, 2))
    counts = xp.zeros((3, 2), dtype=np.int64)
    equal_weight_accumulate(r, n_symbols=3, sums=sums, counts=counts)
    p = equal_weight_returns(sums, counts)
    assert_on_device(xp, p, np.float64)
    p = host(p)
    assert np.isnan(p[0]).all()
    np.testing.assert_allclose(p[1], [0.015, -0.005], rtol=1e-15)
    np.testing.assert_allclose(p[2], [0.045, 0.03], rtol=1e-15)
    assert host(counts).tolist() == [[0, 0], [2, 2], [2, 2]]


def test_equal_weight_is_bit_identical_over_any_chunking(xp):
    rng = np.random.default_rng(1)
    n_bars, n_comb, n_sym = 50, 4, 11
    cube = rng.normal(0, 0.01, (n_bars, n_comb, n_sym))
    cube[rng.uniform(size=cube.shape) < 0.1] = np.nan
    whole_s, whole_c = xp.zeros((n_bars, n_comb)), xp.zeros((n_bars, n_comb), dtype=np.int64)
    equal_weight_accumulate(device(xp, cube.reshape(n_bars, -1)), n_symbols=n_sym, sums=whole_s, counts=whole_c)
    for cuts in ([0, 3, 4, 11], [0, 1, 2, 5, 6, 7, 11]):
        s, c = xp.zeros_like(whole_s), xp.zeros_like(whole_c)
        for a, b in zip(cuts[:-1], cuts[1:]):
            for c0, c1 in ((0, 1), (1, 4)):  # combination chunks too
                part = device(xp, np.ascontiguousarray(cube[:, c0:c1, a:b]).reshape(n_bars, -1))
                equal_weight_accumulate(part, n_symbols=b - a, sums=s, counts=c, offset=c0)
        assert np.array_equal(host(s), host(whole_s)) and np.array_equal(host(c), host(whole_c))
    with pytest.raises(ValueError):
        equal_weight_accumulate(device(xp, cube.reshape(n_bars, -1)), n_symbols=5, sums=whole_s, counts=whole_c)


_SIM = r"""
import sys
import numpy as np
from numba import config
assert config.ENABLE_CUDASIM
from alphapulse.transforms.kernels import SeriesKernel
from alphapulse.transforms.backtest.returns_metrics import equal_weight_accumulate, returns_accumulators
cpu_s = np.zeros((6, 2)); cpu_c = np.zeros((6, 2), dtype=np.int64)
r = np.load(sys.argv[1])
equal_weight_accumulate(r, n_symbols=3, sums=cpu_s, counts=cpu_c)
cpu_acc = returns_accumulators(r)
SeriesKernel.__call__ = lambda self, n, *a: self.gpu(n, *a)
gpu_s = np.zeros((6, 2)); gpu_c = np.zeros((6, 2), dtype=np.int64)
equal_weight_accumulate(r, n_symbols=3, sums=gpu_s, counts=gpu_c)
gpu_acc = returns_accumulators(r)
assert np.array_equal(cpu_s, gpu_s) and np.array_equal(cpu_c, gpu_c)
assert np.allclose(cpu_acc, gpu_acc, rtol=1e-14, equal_nan=True)
print("ok")
"""


def test_cuda_kernels_under_the_simulator(tmp_path):
    rng = np.random.default_rng(2)
    r = rng.normal(0, 0.01, (6, 6))
    r[0] = np.nan
    r[3, 1] = np.nan
    np.save(tmp_path / "r.npy", r)
    proc = subprocess.run([sys.executable, "-c", _SIM, str(tmp_path / "r.npy")], capture_output=True, text=True,
                          env={**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}, cwd=ROOT, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
