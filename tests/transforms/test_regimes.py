"""Regimes: market features without look-ahead, KMeans partitions equal scikit-learn's,
labels ordered by volatility and independent of the feature table's row order.

The features are an array transform: their tests take the ``xp`` fixture (the returns on the
device, the features a host DataFrame as documented) and meet pandas at the same tolerances
(NumPy always; CuPy where a GPU exists, else skipped). Clustering takes that host table and a
model from ``alphapulse.pipelines.runtime.estimators.kmeans_model``: scikit-learn here, cuML in a separate GPU test that
skips without cuML."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from alphapulse.pipelines.runtime.estimators import kmeans_model
from tests.transforms.gpu_testlib import cupy_or_skip, device
from tests.transforms.risk_testlib import close_panel
from alphapulse.transforms.regimes import FEATURES, fit_regimes, market_features, regime_runs
from alphapulse.transforms.returns import simple_returns


@pytest.fixture(scope="module")
def sample_returns(sample_long):
    wide = close_panel(sample_long)
    return wide.index, simple_returns(wide.to_numpy())


@pytest.fixture(scope="module")
def features(sample_returns):
    dates, r = sample_returns
    return market_features(r, dates=dates)


def features_on(xp, sample_returns, features):
    """The market features of the sample computed from returns on ``xp``'s device (NumPy's are
    the module fixture's: computed once)."""
    if xp is np:
        return features
    dates, r = sample_returns
    return market_features(device(xp, r), dates=dates)


def test_features_against_pandas(xp, sample_returns, features):
    dates, r = sample_returns
    features = features_on(xp, sample_returns, features)
    assert isinstance(features, pd.DataFrame) and (features.dtypes == np.float64).all()
    frame = pd.DataFrame(r, index=dates)
    index = frame.mean(axis=1)
    np.testing.assert_allclose(features["index_return"], index, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(features["volatility"], index.rolling(21).std() * np.sqrt(252), rtol=1e-9,
                               equal_nan=True)
    np.testing.assert_allclose(features["dispersion"], frame.std(axis=1, ddof=0), rtol=1e-9, equal_nan=True)
    trend = (1 + index).rolling(126).apply(np.prod, raw=True) - 1
    np.testing.assert_allclose(features["trend"], trend, rtol=1e-9, atol=1e-15, equal_nan=True)
    t = 700
    c = frame.iloc[t - 62:t + 1].corr(min_periods=31).to_numpy()
    off = ~np.eye(c.shape[0], dtype=bool) & np.isfinite(c)
    assert features["avg_correlation"].iloc[t] == pytest.approx(c[off].mean(), rel=1e-12)
    assert list(features.columns) == list(FEATURES)


def test_no_look_ahead(xp, sample_returns, features):
    dates, r = sample_returns
    features = features_on(xp, sample_returns, features)
    k = 800
    changed = r.copy()
    changed[k + 1:] = np.random.default_rng(1).normal(0, 0.05, changed[k + 1:].shape)
    again = market_features(device(xp, changed), dates=dates)
    pd.testing.assert_frame_equal(again.iloc[:k + 1], features.iloc[:k + 1])
    short = market_features(device(xp, r[:k + 1]), dates=dates[:k + 1])
    pd.testing.assert_frame_equal(short, features.iloc[:k + 1], check_exact=False, rtol=1e-12)


def test_partition_equals_sklearn_kmeans(features):
    result = fit_regimes(features, kmeans_model(3, seed=0))
    x = features.dropna().sort_index().to_numpy()
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    ref = KMeans(n_clusters=3, random_state=0, n_init=10).fit_predict(z)
    assert adjusted_rand_score(ref, result.labels.to_numpy()) == 1.0
    assert result.n_dropped == len(features) - len(x)


def test_labels_ordered_by_volatility_and_centres_in_feature_units(features):
    result = fit_regimes(features, kmeans_model(4, seed=3))
    assert result.centres["volatility"].is_monotonic_increasing
    complete = features.dropna()
    means = complete.groupby(result.labels.to_numpy()).mean()
    np.testing.assert_allclose(result.centres.to_numpy(), means.to_numpy(), rtol=1e-12)
    assert sorted(result.labels.unique()) == [0, 1, 2, 3]


def test_invariant_to_row_order(features):
    base = fit_regimes(features, kmeans_model(3, seed=0))
    shuffled = features.sample(frac=1.0, random_state=7)
    again = fit_regimes(shuffled, kmeans_model(3, seed=0))
    pd.testing.assert_series_equal(again.labels, base.labels)
    pd.testing.assert_frame_equal(again.centres, base.centres)
    pd.testing.assert_frame_equal(again.runs, base.runs)


def test_regime_runs():
    labels = pd.Series([0, 0, 1, 1, 1, 0, 2], index=pd.date_range("2024-01-01", periods=7))
    runs = regime_runs(labels)
    assert runs["regime"].tolist() == [0, 1, 0, 2]
    assert runs["bars"].tolist() == [2, 3, 1, 1]
    assert runs["start"].iloc[1] == pd.Timestamp("2024-01-03") and runs["end"].iloc[1] == pd.Timestamp("2024-01-05")
    assert len(regime_runs(labels.iloc[:0])) == 0


def test_errors(features):
    with pytest.raises(ValueError, match="order_by"):
        fit_regimes(features, kmeans_model(3), order_by="nope")
    with pytest.raises(ValueError, match="complete dates"):
        fit_regimes(features.dropna().iloc[:2], kmeans_model(3))
    with pytest.raises(ValueError, match="backend"):
        kmeans_model(3, backend="tpu")


@pytest.mark.gpu
def test_cuml_partition_agrees_with_sklearn(features):
    """The GPU factory's KMeans (cuML) on the same feature table as scikit-learn's; skipped where
    cuML is not installed (the features' own GPU case is test_features_against_pandas)."""
    cupy_or_skip()
    pytest.importorskip("cuml")
    cpu = fit_regimes(features, kmeans_model(3, seed=0, backend="cpu"))
    gpu = fit_regimes(features, kmeans_model(3, seed=0, backend="gpu"))
    # different initialisations; on these well-separated features the partitions agree almost everywhere
    assert adjusted_rand_score(cpu.labels, gpu.labels) > 0.9
    assert gpu.centres["volatility"].is_monotonic_increasing
