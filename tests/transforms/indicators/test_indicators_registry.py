"""The registry, ``lookback``, ``compute_indicators`` and the per-indicator functions as an API.

Tests that compute run on NumPy and, where a GPU is usable, on CuPy (the ``xp`` fixture): outputs
stay on the inputs' device, in their float dtype, whatever the inputs' layout."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from alphapulse.transforms import indicators as ind
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec, compute_indicators, lookback

DEFAULT_COLUMNS = {
    "sma": ["sma_20"], "ema": ["ema_12"], "rsi": ["rsi_14"],
    "macd": ["macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9"],
    "bbands": ["bb_upper_20_2", "bb_middle_20_2", "bb_lower_20_2"],
    "atr": ["atr_14"], "natr": ["natr_14"], "stoch": ["stoch_k_5_3_3", "stoch_d_5_3_3"],
    "adx": ["adx_14"], "cci": ["cci_14"], "willr": ["willr_14"], "obv": ["obv"], "roc": ["roc_10"],
}


def panel(n_bars=80, n_symbols=3, seed=0):
    rng = np.random.default_rng(seed)
    close = 20 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_bars, n_symbols)), axis=0))
    spread = rng.uniform(0, 0.02, (2, n_bars, n_symbols))
    return {"open": np.asfortranarray(close * (1 + spread[0] - spread[1])),
            "high": np.asfortranarray(close * (1 + spread[0])),
            "low": np.asfortranarray(close * (1 - spread[1])),
            "close": np.asfortranarray(close),
            "volume": np.asfortranarray(rng.integers(100, 10_000, (n_bars, n_symbols)).astype(np.float64))}


def test_default_column_names():
    assert {name: IndicatorSpec(name).column_names() for name in INDICATORS} == DEFAULT_COLUMNS


def test_column_names_format_parameters():
    assert IndicatorSpec("bbands", {"period": 10, "nbdev": 1.5}).column_names()[0] == "bb_upper_10_1.5"
    assert IndicatorSpec("bbands", {"nbdev": 2}).column_names()[1] == "bb_middle_20_2"  # int -> float
    assert IndicatorSpec("sma", {"period": 50}).column_names() == ["sma_50"]
    assert IndicatorSpec("macd", {"signal": 5}).column_names()[2] == "macd_hist_12_26_5"


def test_registry_entries_are_consistent():
    for name, indicator in INDICATORS.items():
        assert set(indicator.defaults) == set(indicator.params), name
        assert set(indicator.bounds) <= set(indicator.params), name
        assert set(indicator.inputs) <= {"open", "high", "low", "close", "volume"}, name
        assert all(kind in (int, float) for kind in indicator.params.values()), name
        assert isinstance(lookback(IndicatorSpec(name)), int), name


# Parameter grids checked against TA-Lib's own *_Lookback through talib.abstract.
LOOKBACK_GRID = {
    "sma": ("SMA", {"period": [1, 2, 20, 200]}),
    "ema": ("EMA", {"period": [1, 2, 12, 26]}),
    "rsi": ("RSI", {"period": [2, 14, 30]}),
    "macd": ("MACD", {"fast": [2, 12, 30], "slow": [2, 26], "signal": [1, 9]}),
    "bbands": ("BBANDS", {"period": [2, 20]}),
    "atr": ("ATR", {"period": [1, 14]}),
    "natr": ("NATR", {"period": [1, 14]}),
    "stoch": ("STOCH", {"fastk_period": [1, 5, 14], "slowk_period": [1, 3], "slowd_period": [1, 3]}),
    "adx": ("ADX", {"period": [2, 14]}),
    "cci": ("CCI", {"period": [2, 14]}),
    "willr": ("WILLR", {"period": [2, 14]}),
    "obv": ("OBV", {}),
    "roc": ("ROC", {"period": [1, 10]}),
}
TALIB_NAMES = {"period": "timeperiod", "fast": "fastperiod", "slow": "slowperiod", "signal": "signalperiod"}


@pytest.mark.parametrize("name", sorted(LOOKBACK_GRID))
def test_lookback_equals_talib(name):
    abstract = pytest.importorskip("talib.abstract")
    function_name, grid = LOOKBACK_GRID[name]
    assert set(grid) <= set(INDICATORS[name].params)
    for values in itertools.product(*grid.values()):
        params = dict(zip(grid, values))
        function = abstract.Function(function_name)
        if params:
            function.set_parameters(**{TALIB_NAMES.get(k, k): v for k, v in params.items()})
        assert lookback(IndicatorSpec(name, params)) == function.lookback, (name, params)


def test_lookback_is_where_outputs_start(xp):
    bars = device(xp, panel(n_bars=120))
    for name in INDICATORS:
        spec = IndicatorSpec(name)
        for column, values in host(compute_indicators(bars, [spec])).items():
            first = np.argmax(~np.isnan(values[:, 0]))
            assert first == lookback(spec), column


def test_spec_defaults_and_params():
    assert IndicatorSpec("macd").resolved_params() == {"fast": 12, "slow": 26, "signal": 9}
    assert IndicatorSpec("macd", {"slow": 30}).resolved_params() == {"fast": 12, "slow": 30, "signal": 9}
    assert IndicatorSpec("bbands", {"nbdev": 1}).resolved_params() == {"period": 20, "nbdev": 1.0}
    assert IndicatorSpec("obv").resolved_params() == {}
    assert lookback(IndicatorSpec("macd")) == 33
    assert lookback(IndicatorSpec("rsi")) == 14
    assert lookback(IndicatorSpec("atr")) == 14
    assert lookback(IndicatorSpec("adx")) == 27


@pytest.mark.parametrize("spec, message", [
    (IndicatorSpec("smaa"), "unknown indicator"),
    (IndicatorSpec("sma", {"window": 3}), "unknown parameter"),
    (IndicatorSpec("sma", {"period": 2.5}), "integer"),
    (IndicatorSpec("sma", {"period": True}), "expected int"),
    (IndicatorSpec("sma", {"period": "5"}), "expected int"),
    (IndicatorSpec("sma", {"period": 0}), "must be in"),
    (IndicatorSpec("rsi", {"period": 1}), "must be in"),
    (IndicatorSpec("adx", {"period": 1}), "must be in"),
    (IndicatorSpec("macd", {"signal": 0}), "must be in"),
    (IndicatorSpec("bbands", {"nbdev": float("inf")}), "must be in"),
    (IndicatorSpec("bbands", {"nbdev": float("nan")}), "must be in"),
])
def test_bad_specs_are_rejected_before_computing(xp, spec, message):
    with pytest.raises(ValueError, match=message):
        compute_indicators(device(xp, panel()), [IndicatorSpec("sma"), spec])
    with pytest.raises(ValueError, match=message):
        lookback(spec)


def test_missing_input_is_a_key_error(xp):
    bars = device(xp, panel())
    del bars["volume"]
    with pytest.raises(KeyError):
        compute_indicators(bars, [IndicatorSpec("obv")])


def test_outputs_follow_spec_order_dtype_and_shape(xp):
    bars = panel()
    specs = [IndicatorSpec("rsi"), IndicatorSpec("macd"), IndicatorSpec("sma", {"period": 5})]
    for dtype in (np.float64, np.float32):
        out = compute_indicators(device(xp, {k: v.astype(dtype) for k, v in bars.items()}), specs)
        assert list(out) == ["rsi_14", "macd_12_26_9", "macd_signal_12_26_9", "macd_hist_12_26_9", "sma_5"]
        assert all(v.dtype == dtype and v.shape == bars["close"].shape for v in out.values())
        assert_on_device(xp, out, dtype)


def test_integer_volume_and_c_order_give_the_same_results(xp):
    # (OBV only: a C-ordered panel makes Numba compile a C-layout variant of each kernel it meets.)
    # The layouts are explicit: F as the CPU pipeline hands panels over, C as the GPU one does.
    bars = panel()
    specs = [IndicatorSpec("obv")]
    reference = host(compute_indicators({k: xp.asarray(v, order="F") for k, v in bars.items()}, specs))
    as_ints = {**bars, "volume": bars["volume"].astype(np.int64)}
    c_order = {k: np.ascontiguousarray(v) for k, v in bars.items()}
    for variant, order in ((as_ints, "F"), (c_order, "C")):
        out = host(compute_indicators({k: xp.asarray(v, order=order) for k, v in variant.items()}, specs))
        for name, values in reference.items():
            np.testing.assert_array_equal(out[name], values)


def test_short_and_empty_series(xp):
    bars = panel(n_bars=40, n_symbols=4)
    for v in bars.values():
        v[:, 1] = np.nan  # never listed
        v[:-5, 2] = np.nan  # five bars only
    bars = device(xp, bars)
    out = host(compute_indicators(bars, [IndicatorSpec(name) for name in INDICATORS]))
    for column, values in out.items():
        assert np.isnan(values[:, 1]).all(), column
        if column != "obv":
            assert np.isnan(values[:, 2]).all(), column
    assert not np.isnan(out["obv"][-5:, 2]).any()
    empty = {k: v[:, :0] for k, v in bars.items()}
    assert [v.shape for v in compute_indicators(empty, [IndicatorSpec("obv")]).values()] == [(40, 0)]


def test_public_functions(xp):
    bars = device(xp, panel())
    h, lo, c, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    checks = {
        "sma": (ind.sma(c, period=7), [IndicatorSpec("sma", {"period": 7})]),
        "ema": (ind.ema(c), [IndicatorSpec("ema")]),
        "rsi": (ind.rsi(c), [IndicatorSpec("rsi")]),
        "macd": (ind.macd(c, fast=5, slow=10, signal=3), [IndicatorSpec("macd", {"fast": 5, "slow": 10, "signal": 3})]),
        "bbands": (ind.bbands(c, nbdev=1.5), [IndicatorSpec("bbands", {"nbdev": 1.5})]),
        "atr": (ind.atr(h, lo, c), [IndicatorSpec("atr")]),
        "natr": (ind.natr(h, lo, c), [IndicatorSpec("natr")]),
        "stoch": (ind.stoch(h, lo, c), [IndicatorSpec("stoch")]),
        "adx": (ind.adx(h, lo, c), [IndicatorSpec("adx")]),
        "cci": (ind.cci(h, lo, c), [IndicatorSpec("cci")]),
        "willr": (ind.willr(h, lo, c), [IndicatorSpec("willr")]),
        "obv": (ind.obv(c, v), [IndicatorSpec("obv")]),
        "roc": (ind.roc(c), [IndicatorSpec("roc")]),
    }
    assert set(checks) == set(INDICATORS)
    for name, (got, specs) in checks.items():
        expected = host(tuple(compute_indicators(bars, specs).values()))
        got = got if isinstance(got, tuple) else (got,)
        assert len(got) == len(INDICATORS[name].outputs), name
        assert_on_device(xp, got, np.float64)
        for a, b in zip(host(got), expected):
            np.testing.assert_array_equal(a, b, err_msg=name)
        assert getattr(ind, name).__doc__, name
