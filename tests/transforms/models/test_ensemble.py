"""Ensembles and signal metrics: IC against SciPy's spearmanr, noise has no IC, a planted signal
is found, and each ensemble method does what it says.

Every test takes the ``xp`` fixture: predictions and targets go to the device, results come back
with ``host`` and meet SciPy and the hand-computed values at the same tolerances (NumPy always;
CuPy where a GPU exists, else skipped). ``ensemble_model_weights`` returns host weights by design."""
import numpy as np
import pytest
from scipy.stats import spearmanr

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from alphapulse.transforms.models.batched import fit_knn, fit_logistic, fit_ridge
from alphapulse.transforms.models.ensemble import combine, cross_sectional_zscore, ensemble_model_weights
from alphapulse.transforms.models.scoring import hit_rate, ic_summary, information_coefficient
from alphapulse.transforms.models.training import ModelSpec, walk_forward, walk_forward_splits


def test_ic_matches_scipy_with_ties_and_gaps(xp):
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, size=(40, 30)).astype(float)  # many ties
    target = pred * 0.3 + rng.normal(size=pred.shape)
    pred[rng.random(pred.shape) < 0.1] = np.nan
    target[rng.random(pred.shape) < 0.1] = np.nan
    target[3, :] = np.nan
    pred[4, 5:] = np.nan  # five symbols: the minimum
    pred[5, 4:] = np.nan  # four: below it
    ic = information_coefficient(*device(xp, (pred, target)), min_symbols=5)
    assert_on_device(xp, ic, np.float64)
    ic = host(ic)
    for t in range(40):
        ok = np.isfinite(pred[t]) & np.isfinite(target[t])
        if ok.sum() < 5:
            assert np.isnan(ic[t])
        else:
            assert ic[t] == pytest.approx(spearmanr(pred[t, ok], target[t, ok]).statistic, abs=1e-12)


def test_hit_rate_by_hand(xp):
    pred = device(xp, np.array([[1.0, 2.0, 3.0, np.nan], [4.0, 3.0, 2.0, 1.0]]))
    target = device(xp, np.array([[0.1, 0.0, 0.3, 0.5], [0.2, 0.1, 0.3, 0.0]]))
    # row 0 (three pairs): medians 2 and 0.1, so symbols 0 and 1 sit at a median and are not
    # counted; symbol 2 (+, +) hits. Row 1: medians 2.5 and 0.15: (4: +, +) hit, (3: +, -) miss,
    # (2: -, +) miss, (1: -, -) hit. 3 hits of 5.
    assert hit_rate(pred, target) == pytest.approx(3 / 5)


def _panel(seed, n_bars=600, n_sym=60, beta=0.0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_bars, n_sym, 4))
    y = beta * X[:, :, 0] + rng.normal(size=(n_bars, n_sym))
    return X, y


FITS = {"ridge": ("return", lambda a, b, m: fit_ridge(a, b, m, alpha=1.0)),
        "logistic": ("sign", lambda a, b, m: fit_logistic(a, b, m, C=1.0)),
        "knn": ("return", lambda a, b, m: fit_knn(a, b, m, n_neighbors=15))}


def _oos_ic(X, y, kind="ridge", horizon=1):
    splits = walk_forward_splits(X.shape[0], train_bars=150, test_bars=50, purge_bars=horizon, horizon_bars=horizon)
    target, fit = FITS[kind]
    res = walk_forward(X, y, splits, [ModelSpec(kind, "per_symbol", target, fit)])
    return ic_summary(information_coefficient(res.predictions[0], y), horizon_bars=horizon)


@pytest.mark.parametrize("kind", list(FITS))
@pytest.mark.parametrize("seed", [11, 12])
def test_noise_has_no_ic(xp, seed, kind):
    """Seeded pure noise: the out-of-sample IC over 449 dates is indistinguishable from zero."""
    s = _oos_ic(*device(xp, _panel(seed)), kind=kind)
    assert s["n_dates"] == 600 - 151 and abs(s["ic_tstat"]) < 3


@pytest.mark.parametrize("kind", list(FITS))
def test_planted_signal_is_found(xp, kind):
    s = _oos_ic(*device(xp, _panel(5, beta=0.3)), kind=kind)
    assert s["ic_mean"] > 0.05 and s["ic_tstat"] > 8


def test_zscore_and_mean_combine(xp):
    rng = np.random.default_rng(2)
    p = rng.normal(size=(3, 20, 8)) * np.array([1.0, 100.0, 0.01])[:, None, None]
    p[1, 0, :4] = np.nan
    z = cross_sectional_zscore(device(xp, p))
    e = combine(device(xp, p), None)
    assert_on_device(xp, (z, e), np.float64)
    z, e = host((z, e))
    ok = np.isfinite(z)
    assert np.allclose(np.nanmean(z, axis=-1), 0, atol=1e-12) and np.allclose(np.nanstd(z, axis=-1), 1)
    np.testing.assert_allclose(e[1:], z[:, 1:].mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(e[0], np.nansum(z[:, 0], axis=0) / ok[:, 0].sum(axis=0), rtol=1e-12)


def test_weighted_and_stacking_follow_validation(xp):
    rng = np.random.default_rng(4)
    target = rng.normal(size=(60, 50))
    good = target + rng.normal(size=target.shape)  # IC ~ 0.7
    noise = rng.normal(size=target.shape)
    anti = -target + 3 * rng.normal(size=target.shape)
    val = np.stack([good, noise, anti])
    d_val, d_target = device(xp, (val, target))
    w, note = ensemble_model_weights("weighted", d_val, d_target)
    assert type(w) is np.ndarray  # host weights, for the report
    assert note == "" and w[0] > 0.9 and w[2] == 0 and w.sum() == pytest.approx(1)
    w, _ = ensemble_model_weights("stacking", d_val, d_target, alpha=1e-3)
    assert type(w) is np.ndarray
    assert w[0] > 0.3 and abs(w[1]) < 0.05 and w[2] < 0  # the meta-model uses the anti-signal too
    w, note = ensemble_model_weights("weighted", device(xp, np.stack([anti, -good])), d_target)
    assert "no model has a positive validation IC" in note and np.allclose(w, 0.5)
    assert ensemble_model_weights("mean", d_val, d_target) == (None, "")


@pytest.mark.parametrize("method", ["mean", "weighted", "stacking"])
def test_ensembles_out_of_sample_find_a_planted_signal(xp, method):
    """Walk-forward with validation slices, then each step's weights applied to its test window:
    every ensemble of a signal model and a noise-only model keeps the signal."""
    X, y = _panel(6, beta=0.3)
    X[:, :, 1:] = np.random.default_rng(1).normal(size=X[:, :, 1:].shape)
    X, y = device(xp, (X, y))
    noise_only = lambda a, b, m: fit_ridge(a[:, :, 1:], b, m)  # noqa: E731  (blind to the signal)
    specs = [ModelSpec("ridge", "per_symbol", "return", FITS["ridge"][1]),
             ModelSpec("knn", "per_symbol", "return", FITS["knn"][1]),
             ModelSpec("blind", "per_symbol", "return", lambda a, b, m: _Blind(noise_only(a, b, m)))]
    splits = walk_forward_splits(600, train_bars=200, test_bars=50, purge_bars=1, horizon_bars=1, validation_bars=60)
    res = walk_forward(X, y, splits, specs)
    ens = xp.full(y.shape, np.nan)
    for step in res.steps:
        s = step.split
        w, _ = ensemble_model_weights(method, step.validation, y[s.val_start:s.train_stop], alpha=1.0)
        if method == "weighted":
            assert w[2] < w[0]  # the blind model earns the smallest weight
        ens[s.test_start:s.test_stop] = combine(res.predictions[:, s.test_start:s.test_stop], w)
    ic_ens = ic_summary(information_coefficient(ens, y))
    ic_blind = ic_summary(information_coefficient(res.predictions[2], y))
    assert ic_ens["ic_mean"] > 0.1 and abs(ic_blind["ic_tstat"]) < 3


class _Blind:
    def __init__(self, model):
        self.model, self.fitted = model, model.fitted

    def predict(self, X):
        return self.model.predict(X[:, :, 1:])
