"""alphapulse.transforms.backtest.walk_forward: the windows, a window's re-compacted bars, the
train-window choice.

Oracles: a window's bars equal ``compact_bars`` run on the panel cut to the window's timestamps
(an independent path: it compacts from the raw panel, not from the compacted one); the windows'
invariants are checked by hypothesis over sizes.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alphapulse.transforms.backtest.engine import compact_bars
from alphapulse.transforms.backtest.walk_forward import choose_combinations, walk_forward_windows, window_bars
from tests.conftest import host
from tests.transforms.gpu_testlib import device


def test_walk_forward_windows():
    assert walk_forward_windows(10, 4, 3) == [(0, 4, 4, 7), (3, 7, 7, 10)]
    assert walk_forward_windows(6, 4, 3) == []


@given(n_bars=st.integers(0, 400), train=st.integers(2, 120), test=st.integers(2, 60))
def test_windows_roll_by_the_test_length_and_stay_inside(n_bars, train, test):
    windows = walk_forward_windows(n_bars, train_bars=train, test_bars=test)
    assert len(windows) == (max(0, (n_bars - train) // test) if n_bars >= train + test else 0)
    for k, (a, b, c, d) in enumerate(windows):
        assert (a, b - a, c, d - c) == (k * test, train, b, test)  # train then test, adjacent
        assert d <= n_bars
    if windows:  # the next window would not fit whole
        assert windows[-1][3] + test > n_bars


def test_choose_combinations():
    nan = np.nan
    is_ = np.array([[[1.0, nan, 0.2], [2.0, nan, 0.1], [0.5, nan, 0.3]]])  # 1 window, 3 combos, 3 symbols
    assert choose_combinations(is_, select="per_symbol").tolist() == [[1, -1, 2]]
    # medians over symbols: 0.6, 1.05, 0.4 -> combination 1 for everyone
    assert choose_combinations(is_, select="median").tolist() == [[1, 1, 1]]
    assert choose_combinations(np.full((1, 2, 2), nan), select="median").tolist() == [[-1, -1]]


def test_choose_combinations_refuses_an_unknown_selection():
    with pytest.raises(ValueError, match="unknown selection 'mean'"):
        choose_combinations(np.zeros((1, 2, 2)), select="mean")


def _panel(n_bars=40, n_sym=5, seed=0):
    """A panel with a late listing, an early delisting and interior gaps (NaN where no bar)."""
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (n_bars, n_sym)), axis=0))
    close[:12, 1] = np.nan       # listed late
    close[30:, 2] = np.nan       # delisted early
    close[[5, 6, 18, 25], 3] = np.nan
    close[:, 4] = np.nan         # no bar at all
    close[20:22, 4] = 50.0
    fields = {"open": close * 0.999, "high": close * 1.01, "low": close * 0.99, "close": close}
    return {k: np.asfortranarray(v) for k, v in fields.items()}


@pytest.mark.parametrize("start, stop", [(0, 40), (10, 25), (12, 13), (33, 40), (38, 40)])
def test_window_bars_equal_compacting_the_cut_panel(xp, start, stop):
    raw = _panel()
    prices, n, rows = compact_bars(device(xp, raw))
    bank = xp.stack([prices["close"] * 2, prices["high"] - prices["low"]])  # any per-bar series
    p_w, n_w, bank_w, idx = window_bars(prices, n, rows, bank, start_row=start, stop_row=stop)
    want, want_n, _ = compact_bars({k: v[start:stop] for k, v in raw.items()})
    n_w = host(n_w)
    np.testing.assert_array_equal(n_w, want_n)
    width = max(int(want_n.max()), 2)
    assert p_w["close"].shape == (width, 5) and bank_w.shape == (2, width, 5) and host(idx).shape == (width, 5)
    for s in range(5):
        k = n_w[s]
        for field in raw:
            np.testing.assert_array_equal(host(p_w[field])[:k, s], want[field][:k, s], err_msg=f"{field} {s}")
        got_close = host(p_w["close"])[:k, s]
        np.testing.assert_array_equal(host(bank_w)[0, :k, s], got_close * 2)
    # the layout the engine reads: each series contiguous on the CPU, C order on the GPU
    if xp is np:
        assert p_w["close"].flags.f_contiguous and all(bank_w[k].flags.f_contiguous for k in range(2))
    else:
        assert p_w["close"].flags.c_contiguous and bank_w.flags.c_contiguous


def test_a_placeholder_bank_is_returned_as_is():
    prices, n, rows = compact_bars(_panel())
    placeholder = np.full((2, 2, 2), np.nan)
    _, _, bank_w, _ = window_bars(prices, n, rows, placeholder, start_row=5, stop_row=20)
    assert bank_w is placeholder
