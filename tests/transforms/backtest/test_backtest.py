"""The backtest engine against independent oracles, and its invariants.

- vectorbt 1.2 (``Portfolio.from_signals``), given our rules' conditions recomputed with TA-Lib:
  the same equity curve to 1e-9 relative (in fact ~1e-14) on real and synthetic bars, long /
  short / both, on the open and on the close, with commission, slippage, fractional sizing and
  (on the close) stops; and our ``"alphapulse"`` metrics equal vectorbt's returns and trades
  statistics.
- backtesting.py 0.6.6: the same trades (entry and exit bars) and its statistics equal our
  ``definitions="backtesting.py"`` figures, with and without stop-loss / take-profit.
- Invariants: zero-cost round trips, constant prices, no look-ahead (hypothesis), sharding,
  gaps and late listings, metrics formulas, NaN (not errors) without trades, float32 bars
  computed in float64.
- The CUDA kernel under Numba's simulator equals the CPU kernel; its PTX has no float32 arithmetic.

Every oracle and invariant test runs on NumPy and, where a GPU is usable, on CuPy (the ``xp``
fixture): inputs are built on the host and copied to the device C-ordered, the whole path
(compact_bars, indicator_bank, the CUDA kernel, metrics) runs there and the results come back for
the same comparison. So on a GPU the CUDA kernel runs in float64 in every test's CuPy case, and
in float32 in ``test_float32_prices_compute_in_float64`` (TARGET, stops and costs) and
``test_float32_bars_run_the_whole_path_in_float64`` (indicator bank and kernel in float32).

Where the oracles' conventions differ from ours the tests say so, next to the test that shows it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import host
from tests.transforms.gpu_testlib import DeviceArrayStandIn, assert_on_device, device, float32_arithmetic
from tests.transforms.backtest_testlib import (COMBOS, backtesting_strategy, ohlc_frame, real_panel, rules_panel,
                                               run_engine, synthetic_panel, vbt_from_signals,
                                               vbt_portfolio)
from alphapulse.transforms.backtest.engine import (ACC, FOLLOW, TARGET, compact_bars, indicator_bank, run_backtest)
from alphapulse.transforms.kernels import series_order
from alphapulse.transforms.backtest.metrics import METRICS, metrics_from_acc
from alphapulse.transforms.backtest.strategies import STRATEGIES

RTOL = 1e-9  # the bound on equity curves; observed: a few 1e-14


@pytest.fixture(scope="module")
def panels():
    return {"real": real_panel()[1], "synthetic": synthetic_panel()[1]}


def assert_equity_equal(run, pf, rtol=RTOL):
    ours = run.compacted(run.equity)
    theirs = pf.value().to_numpy()
    # vectorbt trades on below zero; we stop at ruin, flat at 0 from then on (as backtesting.py
    # does): its curve with that rule applied (tests/transforms/backtest/test_backtest_ruin.py)
    theirs = np.where(np.logical_or.accumulate(theirs <= 0, axis=0), 0.0, theirs)
    present = ~np.isnan(ours)
    assert present.sum() > 0
    # vectorbt values the trailing (compacted-away) rows at NaN prices: compare present bars
    np.testing.assert_allclose(ours[present], theirs[present], rtol=rtol, atol=0)


# ---------------------------------------------------------------------------------------------
# vectorbt: equity curves
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trade_on", ["open", "close"])
@pytest.mark.parametrize("direction", ["long", "short", "both"])
@pytest.mark.parametrize("strategy", ["sma_cross", "rsi_reversion", "bb_reversion", "bb_breakout"])
@pytest.mark.parametrize("dataset", ["real", "synthetic"])
def test_equity_equals_vectorbt(xp, panels, dataset, strategy, direction, trade_on):
    pytest.importorskip("vectorbt")  # before computing: the GPU host may not have the oracle
    costs = dict(commission_bps=10.0, slippage_bps=5.0)
    run = run_engine(xp, panels[dataset], strategy, COMBOS[strategy], direction=direction, trade_on=trade_on, **costs)
    rules = rules_panel(run, strategy)
    assert rules["long_in"].any() and rules["long_out"].any()
    pf = vbt_portfolio(run, rules, direction=direction, trade_on=trade_on, **costs)
    assert_equity_equal(run, pf)
    # the run traded, in the directions asked for
    assert run.acc[:, ACC.index("trades")].sum() > 0


@pytest.mark.parametrize("strategy", ["ema_cross", "macd_cross"])
def test_equity_equals_vectorbt_other_strategies(xp, panels, strategy):
    pytest.importorskip("vectorbt")
    run = run_engine(xp, panels["real"], strategy, COMBOS[strategy], direction="both", commission_bps=5.0)
    pf = vbt_portfolio(run, rules_panel(run, strategy), direction="both", trade_on="open", commission_bps=5.0)
    assert_equity_equal(run, pf)


@pytest.mark.parametrize("direction", ["long", "short"])
@pytest.mark.parametrize("size_fraction", [0.5, 0.999])
def test_fractional_sizing_equals_vectorbt_percent(xp, panels, direction, size_fraction):
    """Our ``size_fraction=f`` is vectorbt's ``size=f, size_type="percent"``: q = f * cash /
    (fill * (1 + commission)). (vectorbt rejects percent sizes on reversals, hence one direction.)"""
    pytest.importorskip("vectorbt")
    costs = dict(commission_bps=25.0, slippage_bps=10.0)
    run = run_engine(xp, panels["real"], "sma_cross", COMBOS["sma_cross"], direction=direction,
                     size_fraction=size_fraction, **costs)
    pf = vbt_portfolio(run, rules_panel(run, "sma_cross"), direction=direction, trade_on="open",
                       size_fraction=size_fraction, **costs)
    assert_equity_equal(run, pf)


@pytest.mark.parametrize("direction", ["long", "short", "both"])
def test_zero_costs_equal_vectorbt(xp, panels, direction):
    pytest.importorskip("vectorbt")
    run = run_engine(xp, panels["synthetic"], "bb_reversion", COMBOS["bb_reversion"], direction=direction)
    pf = vbt_portfolio(run, rules_panel(run, "bb_reversion"), direction=direction, trade_on="open")
    assert_equity_equal(run, pf)


@pytest.mark.parametrize("direction", ["long", "short", "both"])
@pytest.mark.parametrize("strategy", ["sma_cross", "rsi_reversion"])
@pytest.mark.parametrize("dataset", ["real", "synthetic"])
def test_stops_on_the_close_equal_vectorbt(xp, panels, dataset, strategy, direction):
    """Entering on the close, the first bar a stop can trigger is the next one, for both
    engines: vectorbt's ``sl_stop``/``tp_stop`` (relative to the fill price, filled at the level
    with slippage or at the open on a gap, the stop-loss first) are then exactly ours."""
    pytest.importorskip("vectorbt")
    kw = dict(commission_bps=10.0, slippage_bps=5.0, stop_loss=0.03, take_profit=0.05)
    run = run_engine(xp, panels[dataset], strategy, COMBOS[strategy], direction=direction, trade_on="close", **kw)
    pf = vbt_portfolio(run, rules_panel(run, strategy), direction=direction, trade_on="close", **kw)
    assert_equity_equal(run, pf)
    plain = run_engine(xp, panels[dataset], strategy, COMBOS[strategy], direction=direction, trade_on="close",
                       commission_bps=10.0, slippage_bps=5.0)
    # the stops did fire
    assert not np.array_equal(run.acc[:, ACC.index("trades")], plain.acc[:, ACC.index("trades")])


def test_stops_on_the_open_differ_from_vectorbt_on_the_entry_bar_only(xp):
    """Entering on the open, we (like backtesting.py) let the rest of the entry bar hit the new
    position's stops: a stop order placed with the entry would. vectorbt arms stops only after
    the entry bar, so it misses those. A hand-built bar shows the difference; every other bar
    is the same (see the backtesting.py stop tests for the full check on the open)."""
    # bar 0 signals a long; bar 1 opens at 100 and trades down to 90; later bars stay above 95.
    close = np.array([100.0, 97.0, 98.0, 99.0, 100.0])
    open_ = np.array([100.0, 100.0, 97.0, 98.0, 99.0])
    high = np.maximum(open_, close) + 0.5
    low = np.minimum(open_, close) - 0.5
    low[1] = 90.0
    targets = np.ones((1, 5, 1))
    prices = {k: v[:, None] for k, v in {"open": open_, "high": high, "low": low, "close": close}.items()}
    acc, _, eq = _run_targets(xp, prices, targets, stop_loss=0.05, want_equity=True)
    # ours: stopped out on the entry bar at 95, flat at its close, back in at bar 2's open (97)
    np.testing.assert_allclose(eq[:, 0], [1.0, 0.95, 0.95 * 98 / 97, 0.95 * 99 / 97, 0.95 * 100 / 97], rtol=1e-15)
    assert acc[0, ACC.index("trades")] == 2  # the stopped trade and the re-entered, still open one
    pytest.importorskip("vectorbt")
    # (two identical columns: a single column would make vectorbt's simulator compile again)
    column = {k: np.tile(v, (1, 2)) for k, v in prices.items()}
    entry = np.tile(np.array([[False], [True], [False], [False], [False]]), (1, 2))
    none = np.zeros_like(entry)
    pf = vbt_from_signals(column, {"long_in": entry, "long_out": none, "short_in": none, "short_out": none},
                          trade_on="open", stop_loss=0.05)
    # vectorbt: bar 1's low is not checked against the stop set at its open; held to the end
    np.testing.assert_allclose(pf.value().to_numpy()[:, 0], close / 100.0, rtol=1e-15)
    assert pf.trades.count().iloc[0] == 1


def _run_targets(xp, prices, targets, *, n=None, want_equity=False, want_returns=False, positions_out=None,
                 **engine):
    """The engine in TARGET mode on a tiny compacted panel (hand-built examples) on ``xp``, with
    arrays in the layouts ``compact_bars``/``indicator_bank`` give (one compiled kernel signature
    on the CPU; C-ordered on the GPU). Host inputs; ``(acc, returns, equity)`` on the host, and a
    host ``positions_out`` filled in place."""
    n_bars, n_sym = prices["close"].shape
    n = np.full(n_sym, n_bars, dtype=np.int64) if n is None else n
    rows = np.asfortranarray(np.tile(np.arange(n_bars)[:, None], (1, n_sym)).astype(np.int64))
    n_comb = targets.shape[0]
    bank = np.full((2, n_sym, n_bars), np.nan).transpose(0, 2, 1)  # unused by TARGET
    held = None if positions_out is None else device(xp, positions_out)
    out = run_backtest(device(xp, {k: np.asfortranarray(v, dtype=prices["close"].dtype) for k, v in prices.items()}),
                       device(xp, n), bank=device(xp, bank), legs=device(xp, np.full((n_comb, 5), -1, dtype=np.int64)),
                       levels=device(xp, np.zeros((n_comb, 4))), mode=TARGET, targets=device(xp, targets),
                       rows=device(xp, rows), n_rows_out=n_bars, want_equity=want_equity, want_returns=want_returns,
                       positions_out=held, **engine)
    if held is not None and held is not positions_out:
        positions_out[...] = host(held)
    return host(out)


def _symbols(xp, x, columns: list):
    """Columns (symbols) of a (..., n_bars, n_symbols) array, in the engine's layout: time-contiguous
    on the CPU (one compiled kernel signature), C-ordered on the GPU."""
    if xp is not np:
        return xp.ascontiguousarray(x[..., columns])
    part = x[..., columns]
    out = np.empty(part.shape[:-2] + part.shape[:-3:-1], dtype=x.dtype)  # (..., n_symbols, n_bars)
    out = np.swapaxes(out, -1, -2)
    out[...] = part
    return out


# ---------------------------------------------------------------------------------------------
# vectorbt: metrics ("alphapulse" definitions)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["long", "both"])
@pytest.mark.parametrize("dataset", ["real", "synthetic"])
def test_alphapulse_metrics_equal_vectorbt(xp, panels, dataset, direction):
    """``definitions="alphapulse"`` are vectorbt's: its returns statistics (the first period is
    the initial cash to the first close, return 0; 252 periods a year) and its trade statistics
    over all trades, the open one marked to the last close without exit fees. Compared on
    symbols listed over the whole panel (vectorbt values a trade still open at the array's last
    row, which is NaN for a shorter, compacted symbol)."""
    pytest.importorskip("vectorbt")
    costs = dict(commission_bps=10.0, slippage_bps=5.0)
    strategy = "sma_cross"
    run = run_engine(xp, panels[dataset], strategy, COMBOS[strategy], direction=direction, **costs)
    pf = vbt_portfolio(run, rules_panel(run, strategy), direction=direction, trade_on="open", **costs)
    ours = host(metrics_from_acc(device(xp, run.acc), periods_per_year=252))
    full = np.nonzero(run.n[np.arange(run.acc.shape[0]) % run.n_symbols] == run.prices["close"].shape[0])[0]
    assert len(full) >= 2
    returns = pf.returns().to_numpy()
    r = __import__("vectorbt").returns.nb
    trades = pf.trades
    theirs = {
        "total_return": pf.total_return().to_numpy(),
        "cagr": np.array([r.annualized_return_1d_nb(returns[:, j], 252.0) for j in range(returns.shape[1])]),
        "ann_volatility": np.array([r.annualized_volatility_1d_nb(returns[:, j], 252.0)
                                    for j in range(returns.shape[1])]),
        "sharpe": np.array([r.sharpe_ratio_1d_nb(returns[:, j], 252.0) for j in range(returns.shape[1])]),
        "sortino": np.array([r.sortino_ratio_1d_nb(returns[:, j].copy(), 252.0) for j in range(returns.shape[1])]),
        "max_drawdown": np.array([r.max_drawdown_1d_nb(returns[:, j]) for j in range(returns.shape[1])]),
        "calmar": np.array([r.calmar_ratio_1d_nb(returns[:, j], 252.0) for j in range(returns.shape[1])]),
        "trades": trades.count().to_numpy(),
        "win_rate": trades.win_rate().to_numpy(),
        "profit_factor": trades.profit_factor().to_numpy(),
        "avg_trade": trades.returns.mean().to_numpy(),
        "exposure": pf.position_coverage().to_numpy(),
    }
    # ann_return (the arithmetic mean return times 252) is vectorbt's too, though not a stat it prints
    theirs["ann_return"] = np.nanmean(returns, axis=0) * 252
    for name, values in theirs.items():
        np.testing.assert_allclose(ours[name][full], values[full], rtol=1e-9, atol=1e-12, err_msg=name)


# ---------------------------------------------------------------------------------------------
# backtesting.py: trades and statistics ("backtesting.py" definitions)
# ---------------------------------------------------------------------------------------------

# backtesting.py trades whole units: with 1e12 of cash and prices below 2,000 the floor leaves
# at most 2e-9 of the equity uninvested per entry; over ~100 trades the curves stay within
# ~1e-7, so the statistics are compared at 1e-6 (counts exactly).
BT_CASH = 1e12
BT_SIZE = 0.9999  # backtesting.py's default fraction of the available margin
BT_STATS = {"Sharpe Ratio": ("sharpe", 1), "Sortino Ratio": ("sortino", 1), "Calmar Ratio": ("calmar", 1),
            "Return (Ann.) [%]": ("ann_return", 100), "Volatility (Ann.) [%]": ("ann_volatility", 100),
            "Max. Drawdown [%]": ("max_drawdown", 100), "# Trades": ("trades", 1), "Win Rate [%]": ("win_rate", 100),
            "Profit Factor": ("profit_factor", 1), "Avg. Trade [%]": ("avg_trade", 100),
            "Exposure Time [%]": ("exposure", 100), "Return [%]": ("total_return", 100)}


def _our_trades(positions: np.ndarray) -> list[tuple[int, int]]:
    """(entry bar, exit bar) of each closed trade, from the positions held at each close."""
    out, entry, prev = [], None, 0
    for i, p in enumerate(positions):
        if p != prev:
            if prev != 0:
                out.append((entry, i))
            entry = i if p != 0 else None
        prev = p
    return out


def _gapless(panel: dict) -> dict:
    """Each symbol's bars with the open at the previous (present) close; high/low widened to it."""
    out = {k: v.copy() for k, v in panel.items()}
    for s in range(out["close"].shape[1]):
        present = np.nonzero(~np.isnan(out["close"][:, s]))[0]
        out["open"][present[1:], s] = out["close"][present[:-1], s]
    out["high"] = np.fmax(out["high"], out["open"])
    out["low"] = np.fmin(out["low"], out["open"])
    return out


def _backtesting_run(run, s, c, rules, *, direction, stop_loss=0.0, take_profit=0.0, commission=1e-3):
    Backtest = pytest.importorskip("backtesting").Backtest

    m = run.n[s]
    j = c * run.n_symbols + s
    cond = {k: v[:m, j] for k, v in rules.items()}
    strategy = backtesting_strategy(cond, direction=direction, size=BT_SIZE, opens=run.prices["open"][:m, s],
                                    stop_loss=stop_loss, take_profit=take_profit)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "trades remain open at the end" (left out of its stats)
        return Backtest(ohlc_frame(run, s), strategy, cash=BT_CASH, commission=commission).run()


@pytest.mark.parametrize("stops", [False, True], ids=["no-stops", "stops"])
@pytest.mark.parametrize("direction", ["long", "both"])
def test_trades_and_stats_equal_backtesting_py(xp, panels, direction, stops):
    """SMA cross on real symbols, trading on the next open, 10 bps commission.

    Definitions as backtesting.py computes them (``definitions="backtesting.py"``): geometric
    annual return and its volatility formula over the bar-to-bar returns, trade returns
    ``PnL / (size * entry price)``, trades still open at the end left out of the trade
    statistics and of the exposure (backtesting.py's default ``finalize_trades=False``), exposure
    counting each closed trade's entry through exit bar. Not compared: its CAGR (calendar days,
    which our accumulators do not see) and its SQN/Kelly/alpha/beta (not ours).
    """
    pytest.importorskip("backtesting")
    stop_kw = dict(stop_loss=0.03, take_profit=0.05) if stops else {}
    panel = panels["real"]
    if stops:
        # backtesting.py validates SL < price < TP against the *last close* when the order is
        # placed (it cannot know the fill), so a bracket set from the next open fails on an
        # overnight gap beyond the stop distance (real symbols gap up to 24 %). With stops the
        # real closes/highs/lows are used with each open moved to the previous close.
        panel = _gapless(panel)
    combos = [{"fast": 10, "slow": 30}]
    run = run_engine(xp, panel, "sma_cross", combos, positions=True, direction=direction, size_fraction=BT_SIZE,
                     commission_bps=10.0, **stop_kw)
    positions = run.compacted(run.positions)
    ours = host(metrics_from_acc(device(xp, run.acc), periods_per_year=252, definitions="backtesting.py"))
    rules = rules_panel(run, "sma_cross")
    stopped_same_bar = 0
    for s in (0, 1, 3, 4):  # AAPL, AMZN, DHR (gaps), GOOG (listed late)
        stats = _backtesting_run(run, s, 0, rules, direction=direction, **stop_kw)
        m = run.n[s]
        trades = stats["_trades"]
        theirs = [(int(a), int(b)) for a, b in zip(trades["EntryBar"], trades["ExitBar"])]
        # a stop on the entry bar leaves no trace in the positions at the closes
        same_bar = [t for t in theirs if t[0] == t[1]]
        stopped_same_bar += len(same_bar)
        assert _our_trades(positions[:m, s]) == [t for t in theirs if t[0] != t[1]], s
        their_equity = stats["_equity_curve"]["Equity"].to_numpy() / BT_CASH
        np.testing.assert_allclose(run.compacted(run.equity)[:m, s], their_equity, rtol=1e-7)
        for key, (name, scale) in BT_STATS.items():
            np.testing.assert_allclose(ours[name][s] * scale, stats[key], rtol=1e-6, atol=1e-9,
                                       err_msg=f"{key} (symbol {s})")
    if stops:
        assert stopped_same_bar > 0  # the entry-bar stops were exercised


# ---------------------------------------------------------------------------------------------
# Invariants
# ---------------------------------------------------------------------------------------------


def _bars(close, open_=None, spread=0.01):
    """A consistent OHLC panel (n_bars, n_symbols) around ``close`` (open: previous close)."""
    close = np.asarray(close, dtype=np.float64)
    close = close[:, None] if close.ndim == 1 else close
    if open_ is None:
        open_ = np.vstack([close[:1], close[:-1]])
    open_ = np.asarray(open_, dtype=np.float64).reshape(close.shape)
    high = np.maximum(open_, close) * (1 + spread)
    low = np.minimum(open_, close) * (1 - spread)
    return {"open": open_, "high": high, "low": low, "close": close}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.floats(1.0, 1000.0), min_size=6, max_size=30), st.data())
def test_zero_cost_round_trip_leaves_equity_unchanged(xp, path, data):
    """Entering and leaving at the same price without costs gives back exactly the cash, long or
    short, whatever the prices in between (to the rounding of q * fill)."""
    m = len(path)
    entry = data.draw(st.integers(1, m - 2), label="entry bar")
    exit_ = data.draw(st.integers(entry + 1, m - 1), label="exit bar")
    side = data.draw(st.sampled_from([1.0, -1.0]), label="side")
    trade_on = data.draw(st.sampled_from(["open", "close"]), label="trade_on")
    close = np.array(path)
    open_ = np.roll(close, 1) * 1.01
    fill = open_ if trade_on == "open" else close
    fill[exit_] = fill[entry]
    # a short that doubles before the exit is ruined, not round-tripped (test_backtest_ruin.py)
    assume(side > 0 or close[entry:exit_].max() < 1.999 * fill[entry])
    targets = np.zeros((1, m, 1))
    targets[0, entry - 1:exit_ - 1, 0] = side  # decided at the close before each fill
    acc, _, eq = _run_targets(xp, _bars(close, open_), targets, trade_on=trade_on, direction="both",
                              want_equity=True)
    assert acc[0, ACC.index("trades")] == 1 and acc[0, ACC.index("open_trades")] == 0
    np.testing.assert_allclose(eq[exit_:, 0], 1.0, rtol=0, atol=1e-14)
    assert abs(acc[0, ACC.index("sum_trade_return")]) < 1e-14
    np.testing.assert_allclose(eq[:entry, 0], 1.0, rtol=0, atol=0)


@pytest.mark.parametrize("commission_bps, slippage_bps", [(0.0, 0.0), (10.0, 0.0), (7.0, 3.0)])
def test_constant_prices(xp, commission_bps, slippage_bps):
    """Constant prices: without costs, zero returns and zero PnL for any trading; with costs,
    each long round trip multiplies equity by (1 - s)(1 - c) / ((1 + s)(1 + c))."""
    m = 40
    close = np.full(m, 37.25)
    targets = np.zeros((2, m, 1))
    targets[0, 3:9] = 1  # one long round trip
    targets[0, 15:20] = 1  # and another
    targets[1] = np.where(np.arange(m) % 7 < 3, 1.0, -1.0)[:, None]  # reversals all along
    acc, ret, eq = _run_targets(xp, _bars(close, spread=0.0), targets, direction="both", want_equity=True,
                                want_returns=True, commission_bps=commission_bps, slippage_bps=slippage_bps)
    c, s = commission_bps * 1e-4, slippage_bps * 1e-4
    np.testing.assert_allclose(eq[-1, 0], ((1 - s) * (1 - c) / ((1 + s) * (1 + c))) ** 2, rtol=1e-14)
    assert acc[0, ACC.index("trades")] == 2
    if c == s == 0:
        np.testing.assert_array_equal(eq, 1.0)
        np.testing.assert_array_equal(ret[1:], 0.0)
        for name in ("gross_profit", "sum_trade_return", "wins", "sum_r", "sum_r2", "max_drawdown"):
            np.testing.assert_array_equal(np.abs(acc[:, ACC.index(name)]), 0.0, err_msg=name)
        assert acc[1, ACC.index("trades")] > 5
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            for definitions in ("alphapulse", "backtesting.py"):
                m_ = host(metrics_from_acc(device(xp, acc), definitions=definitions))
                np.testing.assert_array_equal(m_["total_return"], 0.0)
                for name in ("sharpe", "sortino", "calmar"):
                    assert np.isnan(m_[name]).all(), (definitions, name)
    else:
        assert np.all(np.diff(eq[:, 1]) <= 0)  # costs only ever lose


def _perturbed_after(bars: dict, t: int, rng) -> dict:
    """``bars`` with every bar after ``t`` replaced by a different consistent bar."""
    out = {k: v.copy() for k, v in bars.items()}
    k = out["close"].shape[0] - t - 1
    if k <= 0:
        return out
    shape = (k, out["close"].shape[1])
    close = out["close"][t + 1:] * np.exp(rng.normal(0, 0.05, shape))
    open_ = out["open"][t + 1:] * np.exp(rng.normal(0, 0.05, shape))
    out["close"][t + 1:], out["open"][t + 1:] = close, open_
    out["high"][t + 1:] = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0, 0.02, shape)))
    out["low"][t + 1:] = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0, 0.02, shape)))
    return out


def _run_follow(xp, bars: dict, strategy: str, combos: list, **engine):
    """``strategy`` over host ``bars`` on ``xp``; (acc, returns, equity, positions) on the host."""
    plan = STRATEGIES[strategy].plan(combos)
    prices, n, rows = compact_bars(device(xp, bars))
    bank = indicator_bank(plan.bank, prices, n)
    n_rows = bars["close"].shape[0]
    positions = xp.full((n_rows, len(plan.combos) * n.shape[0]), np.nan)
    acc, ret, eq = run_backtest(prices, n, bank=bank, legs=device(xp, plan.legs), levels=device(xp, plan.levels),
                                mode=plan.mode, rows=rows, n_rows_out=n_rows, want_returns=True, want_equity=True,
                                positions_out=positions, **engine)
    return host((acc, ret, eq, positions))


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31), t=st.integers(0, 59), trade_on=st.sampled_from(["open", "close"]),
       direction=st.sampled_from(["long", "short", "both"]), stops=st.booleans())
def test_no_look_ahead(xp, seed, t, trade_on, direction, stops):
    """Changing any bar after t never changes equity, returns or positions up to t (indicators
    recomputed from the changed bars, stops on, every direction)."""
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, (60, 3)), axis=0))
    bars = _bars(close, close * np.exp(rng.normal(0, 0.01, close.shape)), spread=0.02)
    engine = dict(trade_on=trade_on, direction=direction, commission_bps=5.0, slippage_bps=2.0,
                  stop_loss=0.04 if stops else 0.0, take_profit=0.06 if stops else 0.0)
    combos = [{"fast": 2, "slow": 5}, {"fast": 3, "slow": 9}]
    before = _run_follow(xp, bars, "sma_cross", combos, **engine)
    after = _run_follow(xp, _perturbed_after(bars, t, rng), "sma_cross", combos, **engine)
    for a, b in zip(before[1:], after[1:]):
        np.testing.assert_array_equal(a[:t + 1], b[:t + 1])


def test_sharded_equals_unsharded(xp, panels):
    """Any split of the combinations and of the symbols into chunks gives bit-identical
    accumulators (each series is computed alone)."""
    bars = device(xp, panels["real"])
    combos = [{"fast": f, "slow": s} for f in (3, 5, 8) for s in (13, 21)]
    plan = STRATEGIES["sma_cross"].plan(combos)
    prices, n, rows = compact_bars(bars)
    bank = indicator_bank(plan.bank, prices, n)
    legs, levels = device(xp, plan.legs), device(xp, plan.levels)
    kw = dict(mode=plan.mode, direction="both", commission_bps=10.0, slippage_bps=3.0, stop_loss=0.05)
    whole, _, _ = run_backtest(prices, n, bank=bank, legs=legs, levels=levels, **kw)
    n_sym, n_comb = n.shape[0], len(plan.combos)
    whole = host(whole).reshape(n_comb, n_sym, len(ACC))
    for combo_chunks, symbol_chunks in [([range(0, 6)], [[3], [0, 1, 2], [4, 5, 6, 7]]),
                                        ([range(0, 1), range(1, 4), range(4, 6)], [list(range(8))]),
                                        ([range(0, 5), range(5, 6)], [[7, 0], [5, 1, 6], [2, 3, 4]])]:
        for cs in combo_chunks:
            cs = list(cs)
            for ss in symbol_chunks:
                part, _, _ = run_backtest({k: _symbols(xp, v, ss) for k, v in prices.items()}, n[ss],
                                          bank=_symbols(xp, bank, ss), legs=legs[cs], levels=levels[cs], **kw)
                np.testing.assert_array_equal(host(part).reshape(len(cs), len(ss), len(ACC)), whole[np.ix_(cs, ss)])


def test_gaps_and_late_listings_equal_the_symbols_own_bars(xp, panels):
    """A symbol with interior gaps or a late listing, run inside the panel, gives exactly what
    it gives run alone on its own bars; per-bar outputs sit at its timestamps, NaN elsewhere."""
    bars = panels["real"]
    symbols = real_panel()[0]
    combos = [{"period": 10, "nbdev": 1.5}, {"period": 20, "nbdev": 2.0}]
    kw = dict(direction="both", commission_bps=10.0, stop_loss=0.05, take_profit=0.1)
    acc, ret, eq, pos = _run_follow(xp, bars, "bb_reversion", combos, **kw)
    n_sym = bars["close"].shape[1]
    present = ~np.isnan(bars["close"])
    checked = 0
    for s, name in enumerate(symbols):
        own = {k: v[present[:, s], s][:, None] for k, v in bars.items()}
        if present[:, s].all() or own["close"].shape[0] < 25:
            continue
        a1, r1, e1, p1 = _run_follow(xp, own, "bb_reversion", combos, **kw)
        for c in range(len(combos)):
            j = c * n_sym + s
            np.testing.assert_array_equal(acc[j], a1[c], err_msg=name)
            for full, alone in ((ret, r1), (eq, e1), (pos, p1)):
                np.testing.assert_array_equal(full[present[:, s], j], alone[:, c], err_msg=name)
                assert np.isnan(full[~present[:, s], j]).all(), name
        checked += 1
    assert checked >= 3  # DHR, GOOG, O, BHF


def test_metrics_of_a_known_return_series(xp):
    """Always long from the first fill, zero costs, each open at the previous close: equity is
    close / close[0], so the returns are known and every metric is its formula."""
    rng = np.random.default_rng(5)
    r = rng.normal(0.0005, 0.012, 300)
    close = 100 * np.cumprod(np.r_[1.0, 1 + r])
    acc, ret, eq = _run_targets(xp, _bars(close), np.ones((1, close.size, 1)), want_equity=True, want_returns=True)
    np.testing.assert_allclose(ret[1:, 0], r, rtol=1e-11)
    np.testing.assert_allclose(eq[:, 0], close / close[0], rtol=1e-13)
    equity = close / close[0]
    dd = equity / np.maximum.accumulate(equity) - 1
    years = lambda k: k / 252  # noqa: E731

    vbt = host(metrics_from_acc(device(xp, acc), periods_per_year=252))
    r0 = np.r_[0.0, r]  # vectorbt's periods: the initial cash to the first close, then each bar
    expect = {"total_return": equity[-1] - 1, "cagr": equity[-1] ** (1 / years(r0.size)) - 1,
              "ann_return": r0.mean() * 252, "ann_volatility": r0.std(ddof=1) * np.sqrt(252),
              "sharpe": r0.mean() / r0.std(ddof=1) * np.sqrt(252),
              "sortino": r0.mean() / np.sqrt(np.mean(np.minimum(r0, 0) ** 2)) * np.sqrt(252),
              "max_drawdown": dd.min(), "trades": 1, "win_rate": float(equity[-1] > 1), "exposure": 300 / 301,
              "avg_trade": equity[-1] - 1}
    expect["calmar"] = expect["cagr"] / abs(dd.min())
    for name, value in expect.items():
        np.testing.assert_allclose(vbt[name][0], value, rtol=1e-10, err_msg=name)

    bt = host(metrics_from_acc(device(xp, acc), periods_per_year=252, definitions="backtesting.py"))
    g = np.exp(np.log1p(r).mean()) - 1
    ann = (1 + g) ** 252 - 1
    vol = np.sqrt((r.var(ddof=1) + (1 + g) ** 2) ** 252 - (1 + g) ** 504)
    expect = {"ann_return": ann, "ann_volatility": vol, "sharpe": ann / vol,
              "sortino": ann / (np.sqrt(np.mean(np.minimum(r, 0) ** 2)) * np.sqrt(252)),
              "calmar": ann / abs(dd.min()), "max_drawdown": dd.min()}
    for name, value in expect.items():
        np.testing.assert_allclose(bt[name][0], value, rtol=1e-9, err_msg=name)
    # the one trade is still open: backtesting.py's statistics leave it out
    assert bt["trades"][0] == 0 and np.isnan(bt["win_rate"][0]) and np.isnan(bt["avg_trade"][0])


@pytest.mark.parametrize("definitions", ["alphapulse", "backtesting.py"])
def test_no_trades_and_degenerate_series_give_nan_not_errors(xp, definitions):
    """A series that never trades, a one-bar symbol and a symbol with no bar at all: the
    ratios are NaN, counts 0, no warning or error."""
    close = 20 + np.sin(np.arange(50) / 3.0)
    bars = _bars(np.column_stack([close, close, close]))
    for k in bars:
        bars[k][:49, 1] = np.nan  # one bar
        bars[k][:, 2] = np.nan  # none
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # numba-cuda warns that a three-series grid leaves the GPU idle: true, and not this test's matter
        # (by message: numba and numba-cuda each define their own NumbaPerformanceWarning class)
        warnings.filterwarnings("ignore", message=r"(?s).*low occupancy")
        acc, ret, eq, _ = _run_follow(xp, bars, "rsi_reversion", [{"period": 5, "lower": 1.0, "upper": 99.0}])
        m = host(metrics_from_acc(device(xp, acc), periods_per_year=252, definitions=definitions))
    assert set(m) == set(METRICS)
    np.testing.assert_array_equal(acc[:, ACC.index("trades")], 0.0)
    np.testing.assert_array_equal(m["trades"], 0.0)
    np.testing.assert_array_equal(m["total_return"], 0.0)
    for name in ("win_rate", "profit_factor", "avg_trade", "sharpe", "sortino", "calmar"):
        assert np.isnan(m[name]).all(), name
    assert np.isnan(eq[:, 2]).all() and np.isnan(ret[:, 2]).all()
    assert eq[49, 1] == 1.0 and np.isnan(ret[49, 1])


def test_target_positions_equal_the_same_rule(xp, panels):
    """A user's TARGET strategy expressing the SMA cross (long where fast > slow, flat where
    fast < slow, NaN = keep otherwise) is the built-in FOLLOW rule, to the bit."""
    from alphapulse.transforms.backtest.strategies import custom_strategy

    def cross(panel, fast, slow):
        f, s = panel["sma_fast"], panel["sma_slow"]
        with np.errstate(invalid="ignore"):
            return xp.where(f > s, 1.0, xp.where(f < s, 0.0, np.nan))

    combos = COMBOS["sma_cross"]
    kw = dict(direction="long", commission_bps=10.0, slippage_bps=5.0, stop_loss=0.05)
    acc, ret, eq, pos = _run_follow(xp, panels["real"], "sma_cross", combos, **kw)
    plan = custom_strategy("cross", cross, params={"fast": int, "slow": int}).plan(combos)
    prices, n, rows = compact_bars(device(xp, panels["real"]))
    targets = []
    for combo in plan.combos:
        smas = indicator_bank(STRATEGIES["sma_cross"].plan([combo]).bank, prices, n)
        targets.append(cross({"sma_fast": smas[0], "sma_slow": smas[1]}, **combo))
    n_rows = panels["real"]["close"].shape[0]
    acc_t, ret_t, eq_t = run_backtest(prices, n, bank=xp.full((2, 1, 1), np.nan), legs=device(xp, plan.legs),
                                      levels=device(xp, plan.levels), mode=plan.mode, targets=xp.stack(targets),
                                      rows=rows, n_rows_out=n_rows, want_returns=True, want_equity=True, **kw)
    assert plan.mode == TARGET
    np.testing.assert_array_equal(host(acc_t), acc)
    np.testing.assert_array_equal(host(eq_t), eq)


@pytest.mark.parametrize("direction, held", [("long", [0, 1, 1, 0, 0, 1, 1, 1]), ("short", [0, 0, 0, -1, -1, 0, 0, 0]),
                                              ("both", [0, 1, 1, -1, -1, 1, 1, 1])])
def test_targets_outside_the_direction_mean_flat(xp, direction, held):
    """TARGET: a target the direction forbids closes the position (long-only: -1 exits); NaN
    keeps whatever is held."""
    targets = np.array([1, np.nan, -1, np.nan, 1, np.nan, np.nan, 1.0])[None, :, None]
    positions = np.full((8, 1), np.nan)
    _run_targets(xp, _bars(np.linspace(10, 12, 8)), targets, direction=direction, positions_out=positions)
    np.testing.assert_array_equal(positions[:, 0], held)


def test_a_one_timestamp_panel(xp):
    positions = np.full((1, 1), np.nan)
    acc, ret, eq = _run_targets(xp, _bars([10.0]), np.ones((1, 1, 1)), want_equity=True, want_returns=True,
                                positions_out=positions)
    assert ret.shape == eq.shape == (1, 1) and np.isnan(ret[0, 0]) and eq[0, 0] == 1.0 and positions[0, 0] == 0
    assert acc[0, ACC.index("bars")] == 1 and acc[0, ACC.index("final_equity")] == 1.0


def test_float32_prices_compute_in_float64(xp):
    """float32 panels are read as float64: the same as a float64 run on the float32 values."""
    rng = np.random.default_rng(2)
    close = (30 * np.exp(np.cumsum(rng.normal(0, 0.02, (120, 4)), axis=0))).astype(np.float32)
    bars32 = {k: v.astype(np.float32) for k, v in _bars(close, spread=0.013).items()}
    bars64 = {k: v.astype(np.float64) for k, v in bars32.items()}
    targets = np.sign(rng.normal(size=(2, 120, 4)))
    kw = dict(direction="both", commission_bps=3.0, slippage_bps=1.0, stop_loss=0.03, take_profit=0.04)
    a32 = _run_targets(xp, bars32, targets.astype(np.float32), **kw)[0]
    a64 = _run_targets(xp, bars64, targets, **kw)[0]
    np.testing.assert_array_equal(a32, a64)


def test_float32_bars_run_the_whole_path_in_float64(xp, panels):
    """float32 bars through compact_bars, indicator_bank (a float32 bank) and the kernel, with
    costs and stops, both directions: the compacted inputs stay float32 on the bars' device in the
    engine's layout (C-ordered on the GPU), the outputs and metrics are float64 there, and they
    equal, bit for bit, a float64 run on the same float32 prices and bank (the kernel reads every
    stored value as float64)."""
    bars32 = device(xp, {k: v.astype(np.float32) for k, v in panels["real"].items()})
    plan = STRATEGIES["sma_cross"].plan(COMBOS["sma_cross"])
    prices, n, rows = compact_bars(bars32)
    bank = indicator_bank(plan.bank, prices, n)
    assert_on_device(xp, (*prices.values(), bank), np.float32)
    layout = "c_contiguous" if series_order(xp) == "C" else "f_contiguous"
    assert all(getattr(v.flags, layout) for v in (*prices.values(), *bank))
    kw = dict(bank=bank, legs=device(xp, plan.legs), levels=device(xp, plan.levels), mode=plan.mode, rows=rows,
              n_rows_out=bars32["close"].shape[0], want_returns=True, want_equity=True, direction="both",
              commission_bps=10.0, slippage_bps=5.0, stop_loss=0.05, take_profit=0.08)
    out32 = run_backtest(prices, n, **kw)
    assert_on_device(xp, out32, np.float64)
    metrics = metrics_from_acc(out32[0], periods_per_year=252)
    assert_on_device(xp, metrics, np.float64)
    prices64 = {k: v.astype(np.float64) for k, v in prices.items()}
    out64 = run_backtest(prices64, n, **{**kw, "bank": bank.astype(np.float64)})
    for a, b in zip(host(out32), host(out64)):
        np.testing.assert_array_equal(a, b)
    assert host(out32[0])[:, ACC.index("trades")].sum() > 0


def test_bars_split_between_host_and_device_are_refused():
    """compact_bars would copy a NumPy field to the device next to a CuPy close (a transfer inside
    a transform): a TypeError instead, before anything touches CuPy."""
    bars = _bars(np.linspace(10, 20, 10))
    with pytest.raises(TypeError, match="mixed NumPy and CuPy"):
        compact_bars({**bars, "close": DeviceArrayStandIn()})


def test_invalid_arguments_raise(xp):
    bars = _bars(np.linspace(10, 20, 10))
    for bad in (dict(direction="sideways"), dict(trade_on="noon"), dict(size_fraction=1.5),
                dict(size_fraction=0.0), dict(commission_bps=-1.0)):
        with pytest.raises(ValueError):
            _run_targets(xp, bars, np.ones((1, 10, 1)), **bad)


# ---------------------------------------------------------------------------------------------
# The CUDA kernel: simulator (always), CuPy on a GPU (gpu marker)
# ---------------------------------------------------------------------------------------------

SIM_CONFIGS = [
    dict(direction="both", trade_on="open", commission_bps=10.0, slippage_bps=5.0, stop_loss=0.03, take_profit=0.05),
    dict(direction="long", trade_on="close", commission_bps=10.0, stop_loss=0.02),
    dict(direction="short", trade_on="open", size_fraction=0.5, take_profit=0.02),
]


def _sim_inputs(seed=4, n_bars=40):
    """40 bars x 2 symbols (one listed late, with a gap), SMA cross with 2 combinations."""
    rng = np.random.default_rng(seed)
    close = 40 * np.exp(np.cumsum(rng.normal(0, 0.03, (n_bars, 2)), axis=0))
    bars = _bars(close, close * np.exp(rng.normal(0, 0.01, close.shape)), spread=0.02)
    for k in bars:
        bars[k][:9, 1] = np.nan
        bars[k][20, 1] = np.nan
    plan = STRATEGIES["sma_cross"].plan([{"fast": 2, "slow": 5}, {"fast": 3, "slow": 8}])
    prices, n, rows = compact_bars(bars)
    bank = indicator_bank(plan.bank, prices, n)
    targets = np.sign(rng.normal(size=(2, n_bars, 2)))
    return {"open": prices["open"], "high": prices["high"], "low": prices["low"], "close": prices["close"],
            "n": n, "rows": rows, "bank": np.ascontiguousarray(bank), "legs": plan.legs, "levels": plan.levels,
            "targets": targets}


def _engine_runs(inputs: dict, configs: list) -> dict:
    """run_backtest over ``configs`` x (FOLLOW on the bank, TARGET), every output wanted."""
    prices = {k: inputs[k] for k in ("open", "high", "low", "close")}
    n_rows = inputs["rows"].shape[0]
    out = {}
    for k, cfg in enumerate(configs):
        for mode in (FOLLOW, TARGET):
            n_series = inputs["legs"].shape[0] * inputs["n"].shape[0]
            positions = np.full((n_rows, n_series), np.nan)
            acc, ret, eq = run_backtest(prices, inputs["n"], bank=inputs["bank"], legs=inputs["legs"],
                                        levels=inputs["levels"], mode=mode,
                                        targets=inputs["targets"] if mode == TARGET else None,
                                        rows=inputs["rows"], n_rows_out=n_rows, want_returns=True,
                                        want_equity=True, positions_out=positions, **cfg)
            for name, v in (("acc", acc), ("returns", ret), ("equity", eq), ("positions", positions)):
                out[f"{k}/{mode}/{name}"] = v
    return out


_SIMULATOR_SCRIPT = r"""
import json, sys
import numpy as np
from numba import config
assert config.ENABLE_CUDASIM, "the CUDA simulator is not enabled"
from alphapulse.transforms.kernels import SeriesKernel
from tests.transforms.backtest.test_backtest import _engine_runs

# Route every kernel launch to its CUDA launcher (on NumPy arrays: the simulator runs it).
SeriesKernel.__call__ = lambda self, n_cols, *args: self.gpu(n_cols, *args)
inputs = dict(np.load(sys.argv[1]))
np.savez(sys.argv[3], **_engine_runs(inputs, json.loads(sys.argv[2])))
"""


def test_cuda_kernel_matches_cpu_under_the_simulator(tmp_path):
    inputs = _sim_inputs()
    np.savez(tmp_path / "inputs.npz", **inputs)
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", _SIMULATOR_SCRIPT, str(tmp_path / "inputs.npz"),
                           json.dumps(SIM_CONFIGS), str(tmp_path / "outputs.npz")],
                          env=env, capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[3])
    assert proc.returncode == 0, proc.stderr[-4000:]
    simulated = np.load(tmp_path / "outputs.npz")
    cpu = _engine_runs(inputs, SIM_CONFIGS)
    assert set(simulated.files) == set(cpu)
    for key, values in cpu.items():
        # The simulator runs the same IEEE double operations in Python; only libm's log/log1p
        # could differ by an ulp.
        np.testing.assert_allclose(simulated[key], values, rtol=1e-13, atol=0, err_msg=key)
        if key.endswith("acc"):
            assert values[:, ACC.index("trades")].sum() > 0, key


def _nvvm_available():
    try:
        from numba.cuda.cudadrv import nvrtc, nvvm

        return bool(nvvm.is_available()) and bool(nvrtc.get_supported_ccs())
    except Exception:
        return False


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernel_compiles_to_ptx_without_float32_arithmetic(dtype):
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or not _nvvm_available():
        pytest.skip("CUDA's NVVM/NVRTC libraries are not installed (pip: nvidia-nvvm, nvidia-cuda-nvrtc)")
    from numba import cuda, types

    from alphapulse.transforms.backtest.engine import _backtest_series

    data = getattr(types, dtype)
    panel, bank = types.Array(data, 2, "C"), types.Array(data, 3, "C")
    f64, i64 = types.float64, types.int64
    out2 = types.Array(f64, 2, "C")
    signature = (i64, i64, panel, panel, panel, panel, types.Array(i64, 1, "C"), bank, types.Array(i64, 2, "C"),
                 out2, bank, i64, i64, i64, f64, f64, f64, f64, f64, out2, types.Array(i64, 2, "C"), out2, out2, out2)
    ptx, _ = cuda.compile_ptx(_backtest_series.fn, signature, device=True, cc=(9, 0))
    single = float32_arithmetic(ptx)
    assert not single, f"float32 arithmetic: {single[:3]}"

