"""Batched per-symbol models against per-symbol scikit-learn fits, and the walk-forward's splits:
no training label ever touches a test date; predictions only out of sample.

The model and walk-forward tests take the ``xp`` fixture: the blocks go to the device, the
predictions come back with ``host`` and meet scikit-learn's on the host at the same tolerances
(NumPy always; CuPy where a GPU exists, else skipped; both solve the same float64 systems). The
split tests do integer arithmetic on row numbers, no arrays, so they have no backend."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.indicator_testlib import to_panel
from alphapulse.transforms.models.batched import fit_knn, fit_logistic, fit_ridge
from alphapulse.transforms.models.features import feature_panel, forward_returns
from alphapulse.transforms.models.training import ModelSpec, walk_forward, walk_forward_splits


def _real_block(long, rows=slice(300, 700), test=slice(710, 760), horizon=5):
    """(X_train, y_train, mask, X_test) of the bundled sample's features, per symbol."""
    _, panel = to_panel(long)
    close = np.ascontiguousarray(panel["close"])
    X, _ = feature_panel(close, return_lags=4, return_windows=(5, 21), volatility_windows=(21,),
                         rank_features=("ret_5",))
    y = forward_returns(close, horizon_bars=horizon)
    Xtr = np.ascontiguousarray(X[rows].transpose(1, 0, 2))
    ytr = np.ascontiguousarray(y[rows].T)
    mask = np.isfinite(ytr) & np.isfinite(Xtr).all(axis=2)
    return Xtr, ytr, mask, np.ascontiguousarray(X[test].transpose(1, 0, 2))


def _synthetic_block(seed=3, n_sym=6, n=240, f=7, m=30):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_sym, n, f)) * rng.uniform(0.1, 5, size=f) + rng.normal(size=f)
    y = 0.3 * X[:, :, 0] - 0.1 * X[:, :, 3] + rng.normal(size=(n_sym, n))
    X[rng.random((n_sym, n)) < 0.05, 2] = np.nan
    mask = np.isfinite(X).all(axis=2) & (rng.random((n_sym, n)) > 0.1)
    return X, y, mask, rng.normal(size=(n_sym, m, f))


@pytest.fixture(params=["sample", "synthetic"])
def block(request, sample_long):
    return _real_block(sample_long) if request.param == "sample" else _synthetic_block()


def _each_symbol(X, y, mask, Xq):
    for s in range(X.shape[0]):
        rows = mask[s]
        if rows.sum() < 50:  # a late listing: not fitted (tested below)
            continue
        ok = np.isfinite(Xq[s]).all(axis=1)
        yield s, X[s, rows], y[s, rows], Xq[s], ok


def test_ridge_matches_sklearn(xp, block):
    X, y, mask, Xq = block
    got = fit_ridge(*device(xp, (X, y, mask)), alpha=2.5).predict(device(xp, Xq))
    assert_on_device(xp, got, np.float64)
    got = host(got)
    for s, Xs, ys, q, ok in _each_symbol(X, y, mask, Xq):
        want = make_pipeline(StandardScaler(), Ridge(alpha=2.5)).fit(Xs, ys).predict(q[ok])
        np.testing.assert_allclose(got[s, ok], want, rtol=1e-8, atol=1e-12)  # float64 normal equations
        assert np.isnan(got[s, ~ok]).all()


def test_logistic_matches_sklearn(xp, block):
    X, y, mask, Xq = (a[:12] for a in block)  # tightly converged lbfgs is slow: 12 symbols are plenty
    got = fit_logistic(*device(xp, (X, y, mask)), C=0.3).predict(device(xp, Xq))
    assert_on_device(xp, got, np.float64)
    got = host(got)
    for s, Xs, ys, q, ok in _each_symbol(X, y, mask, Xq):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.3, tol=1e-12, max_iter=10_000))
        want = clf.fit(Xs, (ys > 0).astype(int)).predict_proba(q[ok])[:, 1]
        # Newton converges to machine precision; lbfgs to its tolerance on the gradient.
        np.testing.assert_allclose(got[s, ok], want, atol=1e-6)


def test_knn_same_neighbours_as_sklearn(xp, block):
    X, y, mask, Xq = block
    model = fit_knn(*device(xp, (X, y, mask)), n_neighbors=7)
    got, idx = model.predict(device(xp, Xq)), model.neighbours(device(xp, Xq))
    assert_on_device(xp, got, np.float64)
    assert_on_device(xp, idx)
    got, idx = host((got, idx))
    for s, Xs, ys, q, ok in _each_symbol(X, y, mask, Xq):
        pipe = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=7)).fit(Xs, ys)
        want = pipe.predict(q[ok])
        _, nb = pipe[-1].kneighbors(pipe[0].transform(q[ok]))
        rows = np.flatnonzero(mask[s])  # sklearn's neighbour i is the symbol's i-th valid row
        assert all(set(rows[a]) == set(b) for a, b in zip(nb, idx[s, ok]))
        np.testing.assert_allclose(got[s, ok], want, rtol=1e-12, atol=1e-15)


def test_unfittable_symbols_predict_nan(xp):
    X, y, mask, Xq = _synthetic_block()
    mask[1] = False
    mask[2, 5:] = False  # 5 rows: below min_rows
    y[3] = -abs(y[3])  # one class only
    X, y, mask, Xq = device(xp, (X, y, mask, Xq))
    for model in (fit_ridge(X, y, mask, min_rows=20), fit_logistic(X, y, mask, min_rows=20),
                  fit_knn(X, y, mask, n_neighbors=10, min_rows=20)):
        p = host(model.predict(Xq))
        assert np.isnan(p[1]).all() and np.isnan(p[2]).all()
        assert np.isfinite(p[0]).all()
    assert not host(fit_logistic(X, y, mask).fitted)[3]


@pytest.mark.parametrize("expanding", [False, True])
@pytest.mark.parametrize("horizon,purge,val", [(1, 1, 0), (5, 5, 20), (5, 9, 30)])
def test_no_training_label_touches_a_test_date(expanding, horizon, purge, val):
    splits = walk_forward_splits(400, train_bars=100, test_bars=37, purge_bars=purge, horizon_bars=horizon,
                                 validation_bars=val, expanding=expanding, start_row=13)
    assert splits[0].test_start == 13 + 100 + purge and splits[-1].test_stop == 400
    covered = np.concatenate([np.arange(s.test_start, s.test_stop) for s in splits])
    np.testing.assert_array_equal(covered, np.arange(splits[0].test_start, 400))  # consecutive, no overlap
    for s in splits:
        label_end = s.train_stop - 1 + horizon  # last training row's label window ends here
        assert label_end < s.test_start
        assert s.train_start == (13 if expanding else s.train_stop - 100)
        if val:
            assert s.fit_stop - 1 + horizon < s.val_start  # the validation model's labels too
            assert s.train_stop - s.val_start == val


def test_split_arguments_are_checked():
    with pytest.raises(ValueError, match="purge_bars .3. must be at least horizon_bars .5."):
        walk_forward_splits(300, train_bars=50, test_bars=10, purge_bars=3, horizon_bars=5)
    with pytest.raises(ValueError, match="validation_bars"):
        walk_forward_splits(300, train_bars=50, test_bars=10, purge_bars=5, horizon_bars=5, validation_bars=45)


def test_walk_forward_trains_only_before_each_test_window(xp):
    """A feature holding the row index shows exactly which rows each fit saw."""
    rng = np.random.default_rng(0)
    n_bars, n_sym, horizon = 300, 4, 5
    X = rng.normal(size=(n_bars, n_sym, 3))
    X[:, :, 0] = np.arange(n_bars)[:, None]
    y = rng.normal(size=(n_bars, n_sym))
    y[-horizon:] = np.nan
    seen = []

    def spy(Xb, yb, mask):
        seen.append(float(Xb[:, :, 0][mask].max()))
        return fit_ridge(Xb, yb, mask)

    splits = walk_forward_splits(n_bars, train_bars=80, test_bars=50, purge_bars=horizon, horizon_bars=horizon,
                                 validation_bars=20)
    res = walk_forward(*device(xp, (X, y)), splits, [ModelSpec("ridge", "per_symbol", "return", spy)])
    assert_on_device(xp, res.predictions, np.float64)
    predictions = host(res.predictions)
    for k, s in enumerate(splits):
        assert seen[2 * k] + horizon < s.val_start  # the validation model
        assert seen[2 * k + 1] + horizon < s.test_start  # the refit that predicts the test window
        # and the refit reproduces a direct fit on the train rows
        direct = fit_ridge(device(xp, np.ascontiguousarray(X[s.train_start:s.train_stop].transpose(1, 0, 2))),
                           device(xp, np.ascontiguousarray(y[s.train_start:s.train_stop].T)),
                           device(xp, np.ones((n_sym, s.train_stop - s.train_start), bool)))
        want = host(direct.predict(device(xp, np.ascontiguousarray(X[s.test_start:s.test_stop].transpose(1, 0, 2))))).T
        np.testing.assert_allclose(predictions[0, s.test_start:s.test_stop], want, rtol=1e-12)
    assert np.isnan(predictions[0, :splits[0].test_start]).all()
    assert np.isfinite(predictions[0, splits[0].test_start:]).all()


class _OnHost:
    """A scikit-learn model fitted and queried on host copies, answering on ``xp``'s device: the
    stand-in for cuML (which the GPU pipelines pass) where scikit-learn cannot take CuPy arrays.
    The walk-forward's own pooled path (masks, standardisation, scattering predictions) is what
    runs on the device."""

    def __init__(self, model, xp):
        self.model, self.xp = model, xp

    def predict(self, X):
        return self.xp.asarray(self.model.predict(host(X)))


def test_pooled_model_through_sklearn(xp):
    from sklearn.linear_model import Ridge as SkRidge

    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 5, 2))
    y = X[:, :, 0] * 0.5 + 0.1 * rng.normal(size=(200, 5))
    splits = walk_forward_splits(200, train_bars=100, test_bars=50, purge_bars=1, horizon_bars=1)
    if xp is np:
        fit = lambda a, b: SkRidge(1e-9).fit(a, b)  # noqa: E731
    else:
        fit = lambda a, b: _OnHost(SkRidge(1e-9).fit(host(a), host(b)), xp)  # noqa: E731
    res = walk_forward(*device(xp, (X, y)), splits, [ModelSpec("pooled", "pooled", "return", fit)])
    assert_on_device(xp, res.predictions, np.float64)
    s = splits[0]
    oracle = SkRidge(1e-9).fit(X[:100].reshape(-1, 2), y[:100].ravel())
    want = oracle.predict(X[s.test_start:s.test_stop].reshape(-1, 2))
    np.testing.assert_allclose(host(res.predictions)[0, s.test_start:s.test_stop].ravel(), want, rtol=1e-7)
    assert "pooled" in res.steps[-1].models


@settings(max_examples=200, deadline=None)
@given(n_bars=st.integers(20, 400), train=st.integers(2, 120), test=st.integers(1, 60), horizon=st.integers(1, 10),
       extra_purge=st.integers(0, 5), val=st.integers(0, 40), expanding=st.booleans(), start=st.integers(0, 30))
def test_splits_never_leak_property(n_bars, train, test, horizon, extra_purge, val, expanding, start):
    purge = horizon + extra_purge
    if val and val + purge >= train:
        with pytest.raises(ValueError):
            walk_forward_splits(n_bars, train_bars=train, test_bars=test, purge_bars=purge, horizon_bars=horizon,
                                validation_bars=val, expanding=expanding, start_row=start)
        return
    splits = walk_forward_splits(n_bars, train_bars=train, test_bars=test, purge_bars=purge, horizon_bars=horizon,
                                 validation_bars=val, expanding=expanding, start_row=start)
    tested = set()
    for s in splits:
        assert start <= s.train_start < s.fit_stop <= s.val_start <= s.train_stop < s.test_start < s.test_stop <= n_bars
        train_labels = set(range(s.train_start + 1, s.train_stop + horizon))  # dates any training label spans
        assert not train_labels & set(range(s.test_start, s.test_stop))
        assert not set(range(s.train_start + 1, s.fit_stop + horizon)) & set(range(s.val_start, s.train_stop))
        assert not tested & set(range(s.test_start, s.test_stop))
        tested |= set(range(s.test_start, s.test_stop))
