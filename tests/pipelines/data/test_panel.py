import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from alphapulse.pipelines.data.panel import bars_to_panel, panel_to_frame


def long_frame(present: np.ndarray, seed=0):
    """Bars for the (time, symbol) cells where ``present`` is true."""
    rng = np.random.default_rng(seed)
    t, s = np.nonzero(present)
    ts = pd.bdate_range("2024-01-01", periods=present.shape[0])
    return pd.DataFrame({"timestamp": ts[t], "symbol": np.array([f"S{j:02d}" for j in s]),
                         "close": rng.uniform(1, 100, len(t)), "volume": rng.integers(1, 9, len(t)).astype(float)})


def test_missing_bars_are_nan_and_nothing_is_filled():
    present = np.ones((5, 3), bool)
    present[:2, 1] = False  # late listing
    present[3, 2] = False  # interior gap
    bars = long_frame(present)
    p = bars_to_panel(bars, fields=("close",), order="F")
    assert p.shape == (5, 3) and p.fields["close"].flags.f_contiguous
    assert np.array_equal(~np.isnan(p.fields["close"]), present)
    assert list(p.symbols) == ["S00", "S01", "S02"]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 6), st.integers(0, 2**31), st.sampled_from(["C", "F"]),
       st.sampled_from([np.float32, np.float64]))
def test_round_trip(n_bars, n_symbols, seed, order, dtype):
    rng = np.random.default_rng(seed)
    present = rng.random((n_bars, n_symbols)) < 0.8
    present[0, 0] = True
    bars = long_frame(present, seed).sample(frac=1, random_state=seed % 1000)
    p = bars_to_panel(bars, fields=("close", "volume"), dtype=dtype, order=order)
    assert p.fields["close"].dtype == dtype
    back = panel_to_frame(p, {"c": p.fields["close"], "v": p.fields["volume"]}, keys=bars[["timestamp", "symbol"]])
    np.testing.assert_array_equal(back["c"].to_numpy(), bars["close"].to_numpy().astype(dtype))
    np.testing.assert_array_equal(back["v"].to_numpy(), bars["volume"].to_numpy().astype(dtype))
    assert list(back["symbol"]) == list(bars["symbol"])
