"""Features and target: pandas/SciPy oracles, and no look-ahead (perturbing the future never
changes a feature at or before the perturbed row); on NumPy and, where a GPU is usable, on CuPy
(the ``xp`` fixture: inputs built on the host, copied to the device, results brought back)."""
import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.indicator_testlib import to_panel
from alphapulse.transforms.models.features import (average_ranks, cross_sectional_rank, feature_panel, forward_returns,
                                 indicator_feature, rolling_std, window_returns)
from alphapulse.transforms.indicators.registry import IndicatorSpec, compute_indicators

SPECS = [IndicatorSpec("rsi", {"period": 14}), IndicatorSpec("natr", {"period": 14}),
         IndicatorSpec("sma", {"period": 20}), IndicatorSpec("macd", {"fast": 12, "slow": 26, "signal": 9})]


def _features(xp, panel):
    """The feature panel of host ``panel`` computed on ``xp``, brought back to the host."""
    panel = device(xp, panel)
    ind = compute_indicators(panel, SPECS)
    close = xp.ascontiguousarray(panel["close"])
    X, names = feature_panel(close, indicators={k: xp.ascontiguousarray(v) for k, v in ind.items()}, return_lags=3,
                             return_windows=(5, 21), volatility_windows=(10,), rank_features=("ret_5", "rsi_14"))
    assert_on_device(xp, X, close.dtype)
    return host(X), names


def test_no_look_ahead(synthetic_bars, xp):
    """Scramble every bar after row t (prices and gaps): features at rows <= t stay identical."""
    _, panel = to_panel(synthetic_bars)
    X, names = _features(xp, panel)
    rng = np.random.default_rng(7)
    n = panel["close"].shape[0]
    for t in (40, n // 2, n - 2):
        future = {k: v.copy() for k, v in panel.items()}
        scale = rng.uniform(0.5, 1.5, size=future["close"][t + 1:].shape)
        for k in ("open", "high", "low", "close"):
            future[k][t + 1:] *= scale
        future["volume"][t + 1:] *= 3.0
        holes = rng.random(future["close"][t + 1:].shape) < 0.1
        for k in future:
            future[k][t + 1:][holes] = np.nan
        X2, names2 = _features(xp, future)
        assert names2 == names
        np.testing.assert_array_equal(X2[:t + 1], X[:t + 1])
        assert not np.array_equal(X2[t + 1:], X[t + 1:], equal_nan=True)
        y = host(forward_returns(device(xp, panel["close"]), horizon_bars=5))
        y2 = host(forward_returns(device(xp, future["close"]), horizon_bars=5))
        # the target is the one thing that looks ahead: rows t-4 .. t see the change, earlier rows do not
        np.testing.assert_array_equal(y2[:t - 4], y[:t - 4])


def test_features_against_pandas(sample_long, xp):
    symbols, panel = to_panel(sample_long)
    close = np.ascontiguousarray(panel["close"])
    X, names = _features(xp, panel)
    df = pd.DataFrame(close)
    r1 = df / df.shift(1) - 1
    col = {n: k for k, n in enumerate(names)}
    np.testing.assert_allclose(X[:, :, col["ret_1_lag0"]], r1, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(X[:, :, col["ret_1_lag2"]], r1.shift(2), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(X[:, :, col["ret_21"]], df / df.shift(21) - 1, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(X[:, :, col["vol_10"]], r1.rolling(10).std(), rtol=1e-9, atol=1e-15, equal_nan=True)
    sma = host(compute_indicators(device(xp, panel), [SPECS[2]])["sma_20"])
    np.testing.assert_allclose(X[:, :, col["sma_20"]], close / sma - 1, rtol=1e-12, equal_nan=True)
    ranks = pd.DataFrame(X[:, :, col["ret_5"]]).rank(axis=1, method="average")
    count = ranks.notna().sum(axis=1).to_numpy()[:, None]
    want = np.where(count > 1, (ranks - 1) / np.maximum(count - 1, 1), 0.5)
    np.testing.assert_allclose(X[:, :, col["rank_ret_5"]], np.where(ranks.isna(), np.nan, want), atol=1e-12,
                               equal_nan=True)
    y = forward_returns(device(xp, close), horizon_bars=5)
    assert_on_device(xp, y, np.float64)
    y = host(y)
    np.testing.assert_allclose(y, df.shift(-5) / df - 1, rtol=1e-12, equal_nan=True)
    assert np.isnan(y[-5:]).all()


def test_window_returns_never_span_gap(xp):
    close = device(xp, np.array([[1.0], [2.0], [np.nan], [4.0], [5.0]]))
    np.testing.assert_array_equal(np.isnan(host(window_returns(close, 1))[:, 0]), [True, False, True, True, False])
    assert np.isnan(host(rolling_std(window_returns(close, 1), 2))[:, 0]).tolist() == [True, True, True, True, True]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.lists(st.sampled_from([np.nan, -1.0, 0.0, 0.5, 2.0, 3.0]), min_size=4, max_size=4),
                min_size=1, max_size=6))
def test_average_ranks_match_scipy(xp, rows):
    x = np.array(rows)
    got = average_ranks(device(xp, x))
    assert_on_device(xp, got, np.float64)
    got = host(got)
    for i, row in enumerate(x):
        ok = np.isfinite(row)
        want = np.full(row.shape, np.nan)
        want[ok] = rankdata(row[ok])
        np.testing.assert_array_equal(got[i], want)
    r = host(cross_sectional_rank(device(xp, x)))
    assert np.all((r[np.isfinite(r)] >= 0) & (r[np.isfinite(r)] <= 1))


def test_obv_is_refused_and_names_checked(xp):
    with pytest.raises(ValueError, match="obv_"):
        indicator_feature("obv_", xp.ones((3, 2)), xp.ones((3, 2)))
    with pytest.raises(ValueError, match="rank_features: unknown feature 'nope'"):
        feature_panel(xp.ones((30, 3)), rank_features=("nope",))


@pytest.mark.parametrize("shape", [(0, 4), (3, 0), (0, 0)])
def test_ranks_of_an_empty_panel(xp, shape):
    x = xp.empty(shape)
    for ranks in (average_ranks(x), cross_sectional_rank(x)):
        assert_on_device(xp, ranks, np.float64)
        assert ranks.shape == shape


def test_empty_ranks_never_call_bincount_on_nothing(monkeypatch):
    """CuPy's bincount sizes its output with ``int(x.max()) + 1`` (cupy/_statistics/histogram.py),
    which raises on an empty array where NumPy's returns ``minlength`` zeros. Emulated on the CPU
    with NumPy's bincount behind CuPy's sizing: ranking an empty panel must not reach it."""
    numpy_bincount = np.bincount

    def cupy_sized_bincount(x, weights=None, minlength=None):
        size = max(int(x.max()) + 1, minlength or 0)
        return numpy_bincount(x, weights=weights, minlength=size)

    monkeypatch.setattr(np, "bincount", cupy_sized_bincount)
    assert average_ranks(np.empty((0, 4))).shape == (0, 4)
    assert cross_sectional_rank(np.empty((3, 0))).shape == (3, 0)
    np.testing.assert_array_equal(average_ranks(np.array([[2.0, np.nan, 1.0, 2.0]])), [[2.5, np.nan, 1.0, 2.5]])
