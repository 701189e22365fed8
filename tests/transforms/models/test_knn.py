"""The batched KNN's neighbours against scikit-learn's brute force, with deliberate ties.

Ties at the k-th distance are where a matrix-product distance can pick differently from an
exact one, and where the tie-break shows. Two sets of data make them on purpose:

- points of the hypercube {-1, 1}^17 with every column balanced (mean exactly 0, standard
  deviation exactly 1, so both standardisations leave them unchanged) and integer queries: every
  squared distance is a small integer, exact in any summation order, and most queries have
  several training rows at their k-th distance;
- the bundled sample's training rows written twice: every distance appears twice.

scikit-learn's brute force (what ``KNeighborsRegressor`` chooses for 17 features) keeps the k
smallest in a max-heap of training rows met in index order; a smaller distance evicts whatever
tied row sits at the heap's root, so among rows tied at the k-th distance its choice follows the
heap, not the index: on the hypercube below it is the lowest-index set for all 40 tied queries
at k = 1 (a heap of one keeps the first), 53 of 106 at k = 10 and 16 of 111 at k = 25
(scikit-learn 1.9.1). The batched KNN takes the lower indices, whatever k. Asserted: the same k distances as
scikit-learn for every query, the same neighbours wherever the k-th distance is not tied, and the
lowest-index set where it is (the predictions then differ only by which tied rows are averaged;
with duplicated rows and targets they equal scikit-learn's).
"""
import numpy as np
import pytest
from sklearn.neighbors import KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.models.test_walkforward import _real_block
from alphapulse.transforms.models.batched import fit_knn


def _hypercube(seed=1, n_sym=3, n_valid=120, n_feat=17, n_queries=40, n_masked=15):
    """Training rows on the balanced hypercube with NaN rows interleaved (not trained on), integer queries."""
    rng = np.random.default_rng(seed)
    half = np.where(np.arange(n_valid) < n_valid // 2, 1.0, -1.0)
    X = np.empty((n_sym, n_valid + n_masked, n_feat))
    mask = np.zeros((n_sym, n_valid + n_masked), dtype=bool)
    for s in range(n_sym):
        rows = np.sort(rng.choice(n_valid + n_masked, n_valid, replace=False))
        mask[s, rows] = True
        X[s, rows] = np.stack([rng.permutation(half) for _ in range(n_feat)], axis=1)
        X[s, ~mask[s]] = np.nan
    y = rng.normal(size=mask.shape)
    Xq = rng.integers(-2, 3, size=(n_sym, n_queries, n_feat)).astype(float)
    return X, y, mask, Xq


@pytest.mark.parametrize("k", [1, 10, 25])
def test_hypercube_ties_same_distances_as_sklearn_lower_index_on_ties(xp, k):
    X, y, mask, Xq = _hypercube()
    model = fit_knn(*device(xp, (X, y, mask)), n_neighbors=k)
    idx, pred = model.neighbours(device(xp, Xq)), model.predict(device(xp, Xq))
    assert_on_device(xp, (idx, pred))
    idx, pred = host((idx, pred))
    tied = untied = 0
    for s in range(X.shape[0]):
        rows = np.flatnonzero(mask[s])
        pipe = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=k)).fit(X[s, rows], y[s, rows])
        assert pipe[-1]._fit_method == "brute"
        _, nb = pipe[-1].kneighbors(pipe[0].transform(Xq[s]))
        want_pred = pipe.predict(Xq[s])
        d2 = ((Xq[s][:, None, :] - X[s, rows][None]) ** 2).sum(axis=2)  # exact: small integers
        for q in range(Xq.shape[1]):
            ours = np.searchsorted(rows, idx[s, q])
            assert np.array_equal(rows[ours], idx[s, q])  # only trained rows
            np.testing.assert_array_equal(np.sort(d2[q, ours]), np.sort(d2[q, nb[q]]))
            lowest = np.sort(np.argsort(d2[q], kind="stable")[:k])
            np.testing.assert_array_equal(np.sort(ours), lowest)
            np.testing.assert_allclose(pred[s, q], y[s, rows[lowest]].mean(), rtol=1e-13)
            ordered = np.sort(d2[q])
            if k < len(rows) and ordered[k - 1] == ordered[k]:
                tied += 1
            else:
                untied += 1
                assert set(ours) == set(nb[q])
                np.testing.assert_allclose(pred[s, q], want_pred[q], rtol=1e-13)
    assert tied >= 30 and untied >= 5  # both cases ran (tied queries: 40, 106, 111 of 120 for k = 1, 10, 25)


def test_duplicated_rows_same_predictions_as_sklearn(xp, sample_long):
    """Every training row twice (features and target): each query's k-th distance is tied, the
    first copies are chosen, and the predictions equal scikit-learn's whichever copies it kept."""
    X, y, mask, Xq = _real_block(sample_long)
    X2, y2, mask2 = (np.concatenate([a, a], axis=1) for a in (X, y, mask))
    n = X.shape[1]
    k = 7  # odd: the 7th neighbour is always one of a pair
    model = fit_knn(*device(xp, (X2, y2, mask2)), n_neighbors=k, min_rows=50)
    idx, pred = host((model.neighbours(device(xp, Xq)), model.predict(device(xp, Xq))))
    checked = 0
    for s in range(X.shape[0]):
        rows = np.flatnonzero(mask2[s])
        if len(rows) < 100:
            continue
        ok = np.isfinite(Xq[s]).all(axis=1)
        pipe = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=k)).fit(X2[s, rows], y2[s, rows])
        np.testing.assert_allclose(pred[s, ok], pipe.predict(Xq[s, ok]), rtol=1e-12, atol=1e-15)
        dist, nb = pipe[-1].kneighbors(pipe[0].transform(Xq[s, ok]))
        for chosen in idx[s, ok]:
            partner = np.where(chosen < n, chosen + n, chosen - n)
            unpaired = chosen[~np.isin(partner, chosen)]
            assert len(unpaired) == 1 and unpaired[0] < n  # three whole pairs and the first copy of a fourth
        z = pipe[0].transform(X2[s, rows])
        zq = pipe[0].transform(Xq[s, ok])
        for a, chosen in enumerate(idx[s, ok]):
            ours = np.searchsorted(rows, chosen)
            d_ours = np.sort(np.sqrt(((z[ours] - zq[a]) ** 2).sum(axis=1)))
            np.testing.assert_allclose(d_ours, dist[a], rtol=1e-12, atol=1e-12)
        checked += int(ok.sum())
    assert checked > 1000


@pytest.mark.parametrize("max_elements", [1, 500, 40_000])
def test_blocks_do_not_change_the_neighbours(xp, max_elements):
    """Blocks of one query, of a few queries, of several symbols: the same neighbours, ties included."""
    X, y, mask, Xq = _hypercube(seed=4, n_queries=30)
    X[1, :, 3] *= 1.7  # one symbol off the lattice: its ties are decided by recomputed distances too
    want = host(fit_knn(*device(xp, (X, y, mask)), n_neighbors=9).neighbours(device(xp, Xq)))
    got = host(fit_knn(*device(xp, (X, y, mask)), n_neighbors=9, max_elements=max_elements)
               .neighbours(device(xp, Xq)))
    np.testing.assert_array_equal(got, want)


def test_exactly_k_training_rows_and_nan_queries(xp):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 12, 4))
    y = rng.normal(size=(2, 12))
    mask = np.ones((2, 12), dtype=bool)
    mask[0, 5:] = False  # 5 rows: below k, not fitted
    Xq = rng.normal(size=(2, 6, 4))
    Xq[1, 2, 0] = np.nan
    model = fit_knn(*device(xp, (X, y, mask)), n_neighbors=12)
    p = host(model.predict(device(xp, Xq)))
    assert np.isnan(p[0]).all()
    assert np.isnan(p[1, 2]) and np.isfinite(np.delete(p[1], 2)).all()
    np.testing.assert_allclose(np.delete(p[1], 2), y[1].mean(), rtol=1e-13)  # k = all 12 rows


def test_host_threads_do_not_change_the_neighbours(monkeypatch):
    """On the host the blocks run on a thread per core: the same neighbours as one thread."""
    from alphapulse.transforms.models import batched

    X, y, mask, Xq = _hypercube(seed=5, n_queries=40)
    X[2, :, 1] *= 1.3
    model = fit_knn(X, y, mask, n_neighbors=7, max_elements=300)
    threaded = model.neighbours(Xq)
    monkeypatch.setattr(batched, "_host_threads", lambda xp, tasks: 1)
    np.testing.assert_array_equal(model.neighbours(Xq), threaded)
    monkeypatch.setattr(batched, "_host_threads", lambda xp, tasks: 4)
    np.testing.assert_array_equal(model.neighbours(Xq), threaded)
