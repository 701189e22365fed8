"""Signals against the engine they come from: what a run over bars up to t says the engine holds
after bar t + 1 is what a run over bars up to t + 1 holds.

The oracle is the backtest engine's own per-bar positions (``run_backtest(positions_out=...)``),
over the whole panel, on real (bundled S&P 500 sample) and synthetic bars (late listings and gaps);
every case on NumPy and, with a GPU, on CuPy. Positions are exact integers, so comparisons are
exact.
"""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.backtest_testlib import COMBOS, real_panel, run_engine, synthetic_panel
from tests.transforms.gpu_testlib import device
from alphapulse.transforms.backtest.signals import ACTIONS, latest_signals, signal_actions
from alphapulse.transforms.backtest.strategies import STRATEGIES, signal_strategy
from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.indicators.registry import compute_indicators


@pytest.fixture(scope="module")
def panels():
    real = real_panel()[1]
    synthetic = synthetic_panel()[1]
    for v in synthetic.values():  # an interior gap in one symbol too (late listings are already there)
        v[200:204, 0] = np.nan
    return {"real": real, "synthetic": synthetic}


def _cut(panel: dict, t: int) -> dict:
    return {k: np.ascontiguousarray(v[:t]) for k, v in panel.items()}


def _check_against_engine(xp, panel, strategy, combos, cuts, **engine):
    """For each cut t: the signals over rows [0, t) against the engine's positions over the whole
    panel at each symbol's last bar before t (``position``) and its next bar (``next_position``)."""
    full = run_engine(np, panel, strategy, combos, positions=True, **engine)
    held = full.positions  # (n_rows, n_combos * n_symbols), NaN where the symbol has no bar
    n_rows, n_sym = panel["close"].shape
    plan = STRATEGIES[strategy].plan(combos)
    has = ~np.isnan(panel["close"])
    checked = 0
    for t in cuts:
        sig = latest_signals(device(xp, _cut(panel, t)), strategy=STRATEGIES[strategy], plan=plan, engine=engine)
        position, nxt, since, last = host((sig.position, sig.next_position, sig.since_row, sig.last_row))
        for s in range(n_sym):
            before = np.flatnonzero(has[:t, s])
            after = np.flatnonzero(has[t:, s])
            if not len(before):
                assert last[s] == -1
                continue
            assert last[s] == before[-1]
            for c in range(len(plan.combos)):
                h = held[:, c * n_sym + s]
                assert position[c, s] == h[before[-1]], (t, s, c)
                if len(after):
                    assert nxt[c, s] == h[t + after[0]], (t, s, c)
                    checked += 1
                # the held state began at `since` and has not changed on the symbol's bars since then
                run = h[before][before >= since[c, s]]
                assert len(run) and (run == position[c, s]).all(), (t, s, c)
                earlier = h[before][before < since[c, s]]
                if len(earlier):
                    assert earlier[-1] != position[c, s], (t, s, c)
    assert checked > 0


@pytest.mark.parametrize("which", ["real", "synthetic"])
@pytest.mark.parametrize("strategy", list(COMBOS))
def test_next_position_is_what_the_engine_holds_a_bar_later(xp, panels, which, strategy):
    panel = panels[which]
    n = panel["close"].shape[0]
    _check_against_engine(xp, panel, strategy, COMBOS[strategy], cuts=[n // 3, 202, n - 3, n - 2, n - 1],
                          direction="both")


@pytest.mark.parametrize("direction", ["long", "short"])
@pytest.mark.parametrize("trade_on", ["open", "close"])
def test_directions_fills_and_costs(xp, panels, direction, trade_on):
    panel = panels["real"]
    n = panel["close"].shape[0]
    _check_against_engine(xp, panel, "rsi_reversion", COMBOS["rsi_reversion"], cuts=[n // 2, n - 2, n - 1],
                          direction=direction, trade_on=trade_on, commission_bps=5.0, slippage_bps=3.0)


def test_with_stops_a_difference_is_only_a_stop_in_the_next_bar(xp, panels):
    """With stops the engine can leave a position inside the next bar (after its fill): the one
    place the signal and the next bar's close differ, and then the engine is flat."""
    panel, engine = panels["real"], {"direction": "both", "stop_loss": 0.03, "take_profit": 0.05}
    combos = COMBOS["sma_cross"]
    full = run_engine(np, panel, "sma_cross", combos, positions=True, **engine)
    n_rows, n_sym = panel["close"].shape
    plan = STRATEGIES["sma_cross"].plan(combos)
    agree = differ = 0
    for t in range(n_rows - 40, n_rows - 1):
        sig = latest_signals(device(xp, _cut(panel, t)), strategy=STRATEGIES["sma_cross"], plan=plan, engine=engine)
        nxt = host(sig.next_position)
        for c in range(len(combos)):
            for s in range(n_sym):
                h = full.positions[t, c * n_sym + s]
                if np.isnan(h):
                    continue
                if h == nxt[c, s]:
                    agree += 1
                else:
                    differ += 1
                    assert h == 0 and nxt[c, s] != 0, (t, c, s)
    assert differ and agree > 3 * differ


def test_a_signal_strategy_too(xp, panels):
    def trend(panel, *, period):
        close, sma = panel["close"], panel["sma"]
        xp_ = namespace(close)
        return xp_.where(close > sma, 1.0, xp_.where(close < sma, -1.0, xp_.nan))

    strat = signal_strategy("trend", trend, params={"period": int}, defaults={"period": 30},
                            indicators=lambda c: {"sma": ("sma", {"period": c["period"]}, "sma")})
    panel = panels["synthetic"]
    plan = strat.plan([{"period": 30}])
    n = panel["close"].shape[0]
    full = latest_signals(device(xp, panel), strategy=strat, plan=plan, engine={"direction": "both"}, tail_bars=n)
    held = host(full.tail_positions)[0]
    for t in (n // 2, n - 1):
        sig = latest_signals(device(xp, _cut(panel, t)), strategy=strat, plan=plan, engine={"direction": "both"})
        nxt = host(sig.next_position)[0]
        ok = ~np.isnan(held[t])
        np.testing.assert_array_equal(nxt[ok], held[t][ok])


def test_tails_are_the_engine_positions_and_the_indicators(xp, panels):
    panel = panels["synthetic"]
    combos = COMBOS["bb_reversion"]
    plan = STRATEGIES["bb_reversion"].plan(combos)
    full = run_engine(np, panel, "bb_reversion", combos, positions=True, direction="long")
    sig = latest_signals(device(xp, panel), strategy=STRATEGIES["bb_reversion"], plan=plan,
                         engine={"direction": "long"}, tail_bars=50)
    n_rows, n_sym = panel["close"].shape
    tail = host(sig.tail_positions)
    for c in range(len(combos)):
        np.testing.assert_array_equal(tail[c], full.positions[n_rows - 50:, c * n_sym:(c + 1) * n_sym])
    expected = compute_indicators(panel, [spec for spec, _ in plan.bank])
    series = host(sig.tail_series)
    for k, (_, column) in enumerate(plan.bank):
        np.testing.assert_array_equal(series[k], expected[column][n_rows - 50:])


def test_one_symbol_equals_its_column_in_a_wider_panel(xp, panels):
    panel = panels["real"]
    one = {k: np.ascontiguousarray(v[:, 1:2]) for k, v in panel.items()}
    plan = STRATEGIES["macd_cross"].plan(COMBOS["macd_cross"])
    kw = {"strategy": STRATEGIES["macd_cross"], "plan": plan, "engine": {"direction": "both"}, "tail_bars": 20}
    wide, narrow = latest_signals(device(xp, panel), **kw), latest_signals(device(xp, one), **kw)
    for name in ("position", "next_position", "since_row"):
        np.testing.assert_array_equal(host(getattr(narrow, name))[:, 0], host(getattr(wide, name))[:, 1])
    np.testing.assert_array_equal(host(narrow.tail_positions)[..., 0], host(wide.tail_positions)[..., 1])
    assert host(narrow.last_row)[0] == host(wide.last_row)[1]


def test_actions_table():
    now = np.array([0, 0, 0, 1, 1, 1, -1, -1, -1], dtype=float)
    nxt = np.array([0, 1, -1, 1, 0, -1, -1, 0, 1], dtype=float)
    assert list(signal_actions(now, nxt)) == ["flat", "enter", "enter", "hold", "exit", "enter", "hold", "exit",
                                              "enter"]
    assert set(signal_actions(now, nxt)) == set(ACTIONS)
