"""Shared helpers for the backtest tests: panels, one engine run, the rules recomputed with
TA-Lib, and the two oracles (vectorbt's ``Portfolio.from_signals`` and backtesting.py).

The oracles are given *our rules' levels* (booleans per bar: "the long entry condition holds at
this close", ...), computed independently with TA-Lib on each symbol's own bars, so a mismatch
is either the indicator bank, the rule evaluation or the accounting, never a different strategy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from tests.transforms.indicator_testlib import SAMPLE, load_sp500, to_panel
from alphapulse.transforms.backtest.engine import compact_bars, indicator_bank, run_backtest
from alphapulse.transforms.backtest.strategies import STRATEGIES

# Real symbols of the bundled sample: full histories, interior gaps (DHR, O, BHF), late listings
# (GOOG, BHF) and a 44-bar listing (APTV).
REAL_SYMBOLS = ("AAPL", "AMZN", "BA", "DHR", "GOOG", "O", "BHF", "APTV")

# One or two parameter sets per built-in strategy (short lookbacks: many trades).
COMBOS = {
    "sma_cross": [{"fast": 5, "slow": 20}, {"fast": 10, "slow": 50}],
    "ema_cross": [{"fast": 5, "slow": 21}],
    "rsi_reversion": [{"period": 14, "lower": 30.0, "upper": 70.0}, {"period": 7, "lower": 40.0, "upper": 60.0}],
    "bb_reversion": [{"period": 20, "nbdev": 2.0}, {"period": 10, "nbdev": 1.5}],
    "bb_breakout": [{"period": 20, "nbdev": 1.0}],
    "macd_cross": [{"fast": 12, "slow": 26, "signal": 9}],
}


def real_panel(symbols=REAL_SYMBOLS) -> tuple[list[str], dict]:
    """Bars of ``symbols`` from the bundled S&P 500 sample as a float64 panel (NaN: no bar)."""
    long = load_sp500(SAMPLE)
    long = long[long["symbol"].isin(symbols)]
    return to_panel(long, np.float64)


def synthetic_panel(n_symbols: int = 5, n_bars: int = 400, seed: int = 11) -> tuple[list[str], dict]:
    """``alphapulse.pipelines.data.synthetic`` bars (regimes, jumps; two symbols listed late) as a float64 panel."""
    from alphapulse.pipelines.data.synthetic import synthetic_bars

    long = synthetic_bars(n_symbols, n_bars, seed=seed, late_listing_fraction=0.4)
    return to_panel(long, np.float64)


@dataclass
class Run:
    """One engine run: accumulators and per-bar outputs, with the compacted inputs it saw, all
    brought to the host (NumPy) whatever device the run used."""

    acc: np.ndarray
    returns: np.ndarray  # (n_timestamps, n_series), NaN where the symbol has no bar / first bar
    equity: np.ndarray
    plan: object
    prices: dict
    n: np.ndarray
    rows: np.ndarray
    positions: np.ndarray | None = None  # held at each close (n_timestamps, n_series), when asked for

    @property
    def n_symbols(self) -> int:
        return self.n.shape[0]

    def compacted(self, values: np.ndarray) -> np.ndarray:
        """Per-bar output gathered back to compacted rows: (n_bars, n_series), NaN below n."""
        n_sym = self.n_symbols
        out = np.full((self.rows.shape[0], values.shape[1]), np.nan)
        for j in range(values.shape[1]):
            s = j % n_sym
            m = self.n[s]
            out[:m, j] = values[self.rows[:m, s], j]
        return out


def run_engine(xp, panel: dict, strategy: str, combos: list[dict], *, positions: bool = False, **engine) -> Run:
    """``strategy`` over every (combination, symbol) of the host ``panel`` in one launch on ``xp``
    (NumPy, or CuPy: the panel, the plan's legs and levels copied to the device first), with
    returns and equity outputs, and the positions with ``positions=True`` (``engine``:
    run_backtest's keywords, e.g. ``direction``, ``trade_on``)."""
    plan = STRATEGIES[strategy].plan(combos)
    assert not plan.skipped, plan.skipped
    prices, n, rows = compact_bars(device(xp, panel))
    bank = indicator_bank(plan.bank, prices, n)
    n_rows = panel["close"].shape[0]
    held = xp.full((n_rows, len(plan.combos) * n.shape[0]), np.nan) if positions else None
    acc, returns, equity = run_backtest(prices, n, bank=bank, legs=device(xp, plan.legs),
                                        levels=device(xp, plan.levels), mode=plan.mode, rows=rows, n_rows_out=n_rows,
                                        want_returns=True, want_equity=True, positions_out=held, **engine)
    return Run(*host((acc, returns, equity)), plan, host(prices), *host((n, rows)), positions=host(held))


# ---------------------------------------------------------------------------------------------
# The rules, recomputed with TA-Lib on one symbol's own bars
# ---------------------------------------------------------------------------------------------


def talib_rules(strategy: str, combo: dict, close: np.ndarray) -> dict[str, np.ndarray]:
    """The four conditions of ``strategy`` at each close, as the module docstring of
    ``alphapulse.transforms.backtest.engine`` states them, from TA-Lib (NaN lookback: every condition false)."""
    talib = pytest.importorskip("talib")  # an oracle the GPU host may lack: skip, not fail

    close = np.ascontiguousarray(close, dtype=np.float64)
    c = {**STRATEGIES[strategy].defaults, **combo}
    if strategy in ("sma_cross", "ema_cross", "macd_cross"):
        if strategy == "macd_cross":
            x, level, _ = talib.MACD(close, c["fast"], c["slow"], c["signal"])
        else:
            average = talib.SMA if strategy == "sma_cross" else talib.EMA
            x, level = average(close, c["fast"]), average(close, c["slow"])
        up, down = _gt(x, level), _gt(level, x)
        return {"long_in": up, "long_out": down, "short_in": down, "short_out": up}
    if strategy == "rsi_reversion":
        r = talib.RSI(close, c["period"])
        low, high = _gt(np.full_like(r, c["lower"]), r), _gt(r, np.full_like(r, c["upper"]))
        # NaN RSI: both false (the comparisons above are false on NaN)
        return {"long_in": low, "long_out": high, "short_in": high, "short_out": low}
    upper, middle, lower = talib.BBANDS(close, c["period"], c["nbdev"], c["nbdev"], 0)
    if strategy == "bb_reversion":
        return {"long_in": _gt(lower, close), "long_out": _gt(close, middle),
                "short_in": _gt(close, upper), "short_out": _gt(middle, close)}
    if strategy == "bb_breakout":
        return {"long_in": _gt(close, upper), "long_out": _gt(middle, close),
                "short_in": _gt(lower, close), "short_out": _gt(close, middle)}
    raise KeyError(strategy)


def _gt(a, b):
    with np.errstate(invalid="ignore"):
        return np.asarray(a > b)


def rules_panel(run: Run, strategy: str) -> dict[str, np.ndarray]:
    """``talib_rules`` for every series of ``run``: bool arrays (n_bars, n_series) on compacted
    rows, False below each symbol's last bar."""
    n_bars, n_sym = run.prices["close"].shape
    n_series = len(run.plan.combos) * n_sym
    out = {k: np.zeros((n_bars, n_series), dtype=bool) for k in ("long_in", "long_out", "short_in", "short_out")}
    for c, combo in enumerate(run.plan.combos):
        for s in range(n_sym):
            m = run.n[s]
            rules = talib_rules(strategy, combo, run.prices["close"][:m, s])
            for k, v in rules.items():
                out[k][:m, c * n_sym + s] = v
    return out


# ---------------------------------------------------------------------------------------------
# vectorbt
# ---------------------------------------------------------------------------------------------


def shift_one_bar(levels: np.ndarray) -> np.ndarray:
    """A condition at the close of bar t as a signal of bar t + 1 (we trade on the next bar)."""
    out = np.zeros_like(levels)
    out[1:] = levels[:-1]
    return out


def vbt_portfolio(run: Run, rules: dict, *, direction: str, trade_on: str, commission_bps: float = 0.0,
                  slippage_bps: float = 0.0, size_fraction: float = 1.0, stop_loss: float = 0.0,
                  take_profit: float = 0.0):
    """vectorbt's ``Portfolio.from_signals`` on the same compacted bars, one column per series.

    Settings that make vectorbt's accounting ours (see ``alphapulse.transforms.backtest.engine``):

    - entries/exits: our conditions shifted one bar; the fill price is the open
      (``trade_on="open"``) or the close, the valuation price always the close;
    - ``fees`` = commission fraction, ``slippage`` = slippage fraction, ``init_cash=1``;
    - sizing: ``size=np.inf`` (all the cash: ``q = cash / (fill * (1 + fees))``, exactly our
      ``size_fraction=1``) or ``size=f, size_type="percent"`` (``q = f * cash / (fill * (1 +
      fees))``, our ``size_fraction=f``; vectorbt refuses percent sizes when a signal reverses a
      position, so only for one direction);
    - stops: ``sl_stop``/``tp_stop`` with OHLC, relative to the entry *fill* price
      (``stop_entry_price="fillprice"``) and filled with slippage at the stop level, or at the
      open when the bar gaps through it (``stop_exit_price="stopmarket"``).
    """
    n_comb = len(run.plan.combos)
    tile = lambda x: np.ascontiguousarray(np.tile(x, (1, n_comb)))  # noqa: E731  (series j = c * n_symbols + s)
    prices = {k: tile(run.prices[k]) for k in ("open", "high", "low", "close")}
    signals = {k: shift_one_bar(v) for k, v in rules.items()}
    none = np.zeros_like(signals["long_in"])
    if direction == "long":
        signals["short_in"] = signals["short_out"] = none
    elif direction == "short":
        signals["long_in"] = signals["long_out"] = none
    return vbt_from_signals(prices, signals, trade_on=trade_on, commission_bps=commission_bps,
                            slippage_bps=slippage_bps, size_fraction=size_fraction, stop_loss=stop_loss,
                            take_profit=take_profit)


def vbt_from_signals(prices: dict, signals: dict, *, trade_on: str, commission_bps: float = 0.0,
                     slippage_bps: float = 0.0, size_fraction: float = 1.0, stop_loss: float = 0.0,
                     take_profit: float = 0.0):
    """``Portfolio.from_signals`` with every argument always given with the same types (2-D
    arrays, float scalars), so that Numba compiles vectorbt's uncached simulator once a process
    (about 4 s) rather than once per combination of options."""
    vbt = pytest.importorskip("vectorbt")

    close = prices["close"]
    return vbt.Portfolio.from_signals(
        close, entries=signals["long_in"], exits=signals["long_out"], short_entries=signals["short_in"],
        short_exits=signals["short_out"], price=prices["open"] if trade_on == "open" else close,
        open=prices["open"], high=prices["high"], low=prices["low"],
        size=np.inf if size_fraction == 1.0 else float(size_fraction),
        size_type="amount" if size_fraction == 1.0 else "percent",
        fees=commission_bps * 1e-4, slippage=slippage_bps * 1e-4, init_cash=1.0, freq="1D",
        sl_stop=float(stop_loss) if stop_loss else np.nan, tp_stop=float(take_profit) if take_profit else np.nan,
        stop_entry_price="fillprice", stop_exit_price="stopmarket")


# ---------------------------------------------------------------------------------------------
# backtesting.py
# ---------------------------------------------------------------------------------------------


def ohlc_frame(run: Run, s: int) -> pd.DataFrame:
    """Symbol ``s``'s own bars as backtesting.py wants them (business-day index, so that its
    annualisation uses 252 periods a year, as we do)."""
    m = run.n[s]
    index = pd.bdate_range("2013-01-01", periods=m)
    return pd.DataFrame({"Open": run.prices["open"][:m, s], "High": run.prices["high"][:m, s],
                         "Low": run.prices["low"][:m, s], "Close": run.prices["close"][:m, s],
                         "Volume": 1.0}, index=index)


def backtesting_strategy(rules: dict, *, direction: str, size: float, opens=None, stop_loss: float = 0.0,
                         take_profit: float = 0.0):
    """A backtesting.py ``Strategy`` executing our rule on precomputed condition arrays.

    ``next()`` runs at the close of bar ``i`` and decides what trades at the open of ``i + 1``,
    as our rule: an open position exits when its exit condition holds; a flat position (or one
    that just exited) enters when its entry condition holds, long first. Conditions are read
    from arrays, not ``self.I``, so that backtesting.py does not skip bars as "indicator warm-up".

    Stops: backtesting.py takes absolute SL/TP prices when the order is placed, so they are set
    from the next bar's open (the fill price, no spread); and before an exit on a signal the
    SL/TP orders are cancelled, so that the exit fills at the next open as ours does
    (backtesting.py would otherwise let an intrabar SL/TP of that bar pre-empt the open, which
    comes first in time).
    """
    Strategy = pytest.importorskip("backtesting").Strategy

    long_in, long_out = rules["long_in"], rules["long_out"]
    short_in, short_out = rules["short_in"], rules["short_out"]
    allow_long, allow_short = direction != "short", direction != "long"

    class Rule(Strategy):
        def init(self):
            pass

        def _brackets(self, i, side):
            if opens is None or i + 1 >= len(opens):
                return {}
            p = opens[i + 1]
            out = {}
            if stop_loss:
                out["sl"] = p * (1 - side * stop_loss)
            if take_profit:
                out["tp"] = p * (1 + side * take_profit)
            return out

        def next(self):
            i = len(self.data) - 1
            pos = 1 if self.position.is_long else (-1 if self.position.is_short else 0)
            d = pos
            if (d == 1 and long_out[i]) or (d == -1 and short_out[i]):
                d = 0
            if d == 0:
                if allow_long and long_in[i]:
                    d = 1
                elif allow_short and short_in[i]:
                    d = -1
            if d == pos:
                return
            if pos != 0:
                for trade in self.trades:
                    trade.sl = None
                    trade.tp = None
                self.position.close()
            if d == 1:
                self.buy(size=size, **self._brackets(i, 1))
            elif d == -1:
                self.sell(size=size, **self._brackets(i, -1))

    return Rule
