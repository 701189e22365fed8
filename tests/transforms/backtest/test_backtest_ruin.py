"""Ruin in the backtest kernel (issue 13, item 6): equity that reaches zero stops trading.

Hand-computed cases, one symbol, TARGET rule, no costs unless said:

- a short whose price more than doubles: the close that marks equity below zero closes it there,
  equity 0 and flat from then on, although the target stays short;
- a long with a 200 % commission (what ``commission_bps: 20000`` used to run): the exit's
  proceeds are negative, so the exit leaves no cash; before the fix equity went to -0.43 and the
  drawdown to -143 %;
- a reversal (short to long on one bar) whose short exit leaves no cash: no long is entered.

Each on the CPU kernel (``xp`` fixture: NumPy, and CuPy where a GPU exists) and on the CUDA
kernel under Numba's simulator (a subprocess), which must give the same numbers. Values are
sums of a few float64 products of exactly representable prices: compared to 1e-15 relative.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from alphapulse.transforms.backtest.engine import ACC, TARGET, run_backtest


def _case(open_, close, targets):
    open_ = np.asarray(open_, dtype=np.float64)[:, None]
    close = np.asarray(close, dtype=np.float64)[:, None]
    prices = {"open": open_, "high": np.maximum(open_, close), "low": np.minimum(open_, close), "close": close}
    return prices, np.asarray(targets, dtype=np.float64).reshape(1, -1, 1)


CASES = {
    # short at bar 1's open (100): 0.01 shares, cash 2; close 150: equity 0.5; close 260: 2 - 2.6 < 0
    "short_doubles": (_case([100, 100, 140, 240, 300, 200], [100, 150, 260, 250, 280, 150], [-1] * 6),
                      dict(direction="short")),
    # long at bar 1's open (100): q = 1 / 300 at a 200 % commission, cash 0; exit at bar 3's open
    # (130): proceeds 130/300 * (1 - 2) < 0; the target goes long again at bar 3's close
    "long_commission": (_case([100, 100, 115, 130, 140, 150], [100, 110, 120, 135, 145, 160], [1, 1, 0, 1, 1, 1]),
                        dict(direction="long", commission_bps=20_000.0)),
    # short at 100 (cash 2), reverse at bar 2's open (210): buying back costs 2.1 > 2
    "reversal": (_case([100, 100, 210, 220, 230], [100, 150, 215, 225, 235], [-1, 1, 1, 1, 1]),
                 dict(direction="both")),
}

# (equity at each close, positions, returns after bar 0, acc fields) computed by hand
EXPECTED = {
    "short_doubles": ([1, 0.5, 0, 0, 0, 0], [0, -1, 0, 0, 0, 0], [-0.5, -1, 0, 0, 0],
                      dict(trades=1, wins=0, gross_loss=1.0, sum_trade_return=-1.0, sum_loss_return=-1.0,
                           bars_in_market=1, traded_value=1 + 2.6, closed_trade_bars=2, open_trades=0,
                           final_equity=0.0, max_drawdown=-1.0, max_drawdown_bars=5, sum_equity=1.5)),
    "long_commission": ([1, 110 / 300, 120 / 300, 0, 0, 0], [0, 1, 1, 0, 0, 0],
                        [110 / 300 - 1, 120 / 110 - 1, -1, 0, 0],
                        dict(trades=1, wins=0, gross_loss=1.0, sum_trade_return=-3.0, bars_in_market=2,
                             traded_value=1 / 3 + 130 / 300, closed_trade_bars=3, open_trades=0, final_equity=0.0,
                             max_drawdown=-1.0)),
    "reversal": ([1, 0.5, 0, 0, 0], [0, -1, 0, 0, 0], [-0.5, -1, 0, 0],
                 dict(trades=1, wins=0, gross_loss=1.0, sum_trade_return=-1.0, bars_in_market=1,
                      traded_value=1 + 2.1, final_equity=0.0, max_drawdown=-1.0)),
}


def _run(xp, name):
    (prices, targets), engine = CASES[name]
    n_bars = prices["close"].shape[0]
    rows = np.asfortranarray(np.arange(n_bars, dtype=np.int64)[:, None])
    positions = np.full((n_bars, 1), np.nan)
    held = device(xp, positions)
    acc, returns, equity = run_backtest(
        device(xp, {k: np.asfortranarray(v) for k, v in prices.items()}), device(xp, np.array([n_bars])),
        bank=device(xp, np.full((2, n_bars, 1), np.nan)), legs=device(xp, np.full((1, 5), -1, dtype=np.int64)),
        levels=device(xp, np.zeros((1, 4))), mode=TARGET, targets=device(xp, targets), rows=device(xp, rows),
        n_rows_out=n_bars, want_returns=True, want_equity=True, positions_out=held, **engine)
    return {"acc": host(acc), "returns": host(returns), "equity": host(equity), "positions": host(held)}


def _check(name, out):
    eq, pos, rets, fields = EXPECTED[name]
    np.testing.assert_allclose(out["equity"][:, 0], eq, rtol=1e-15, atol=1e-16)
    np.testing.assert_array_equal(out["positions"][:, 0], pos)
    assert math.isnan(out["returns"][0, 0])
    np.testing.assert_allclose(out["returns"][1:, 0], rets, rtol=1e-14, atol=1e-16)
    acc = dict(zip(ACC, out["acc"][0]))
    for key, want in fields.items():
        assert acc[key] == pytest.approx(want, rel=1e-15, abs=1e-16), key
    assert (out["equity"] >= 0).all()
    assert math.isnan(acc["sum_log1p"]) and acc["sum_log_trade"] == -math.inf  # a total loss


@pytest.mark.parametrize("name", list(CASES))
def test_ruin_closes_and_stays_flat_at_zero(xp, name):
    _check(name, _run(xp, name))


def test_ruin_metrics():
    """Total loss: total return and CAGR -100 %, drawdown -100 %, never beyond."""
    from alphapulse.transforms.backtest.metrics import metrics_from_acc

    m = metrics_from_acc(_run(np, "long_commission")["acc"])
    assert m["total_return"][0] == -1.0 and m["cagr"][0] == -1.0 and m["max_drawdown"][0] == -1.0


_SIMULATOR_SCRIPT = r"""
import sys
import numpy as np
from numba import config
assert config.ENABLE_CUDASIM, "the CUDA simulator is not enabled"
from alphapulse.transforms.kernels import SeriesKernel
from tests.transforms.backtest.test_backtest_ruin import CASES, _run

# every kernel launch through its CUDA launcher (on NumPy arrays the simulator runs it)
SeriesKernel.__call__ = lambda self, n_cols, *args: self.gpu(n_cols, *args)
np.savez(sys.argv[1], **{f"{name}/{k}": v for name in CASES for k, v in _run(np, name).items()})
"""


def test_ruin_under_the_cuda_simulator(tmp_path):
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", _SIMULATOR_SCRIPT, str(tmp_path / "out.npz")], env=env,
                          capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr[-4000:]
    simulated = np.load(tmp_path / "out.npz")
    for name in CASES:
        out = {k: simulated[f"{name}/{k}"] for k in ("acc", "returns", "equity", "positions")}
        _check(name, out)
        cpu = _run(np, name)
        for k, v in cpu.items():
            np.testing.assert_array_equal(out[k], v, err_msg=f"{name}/{k}")
