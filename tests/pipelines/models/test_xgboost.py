"""Gradient-boosted trees (XGBoost) as a pooled model of the walk-forward: in-place predictions
against XGBoost's own ``predict`` on the same booster, a planted signal found out of sample,
early stopping on the validation slice, byte-identical reruns and model files, loading without
pickle, the config's bounds, and the model in the ensembles and the report."""
import json

import numpy as np
import pandas as pd
import pytest

from alphapulse.pipelines.config import ConfigError, parse_config
from alphapulse.pipelines.models.estimators import BoostedTrees, load_model, model_files
from alphapulse.pipelines.models.pipeline import model_specs, prepare_models, run_models
from alphapulse.pipelines.runtime.backend import choose_backend
from alphapulse.transforms.models.scoring import information_coefficient
from alphapulse.transforms.models.training import walk_forward, walk_forward_splits
from tests.conftest import host
from tests.pipelines.conftest import SAMPLE, SP500_COLUMNS

xgb = pytest.importorskip("xgboost")

XGB = {"kind": "xgboost", "scope": "pooled", "n_estimators": 150, "max_depth": 3, "learning_rate": 0.1,
       "early_stopping_rounds": 10, "min_child_weight": 5.0, "seed": 7}


def _planted(n_bars=400, n_sym=30, n_feat=5, seed=0):
    """Features (n_bars, n_symbols, n_features) and a target that is a known nonlinear function
    of them plus noise (signal-to-noise about 1): a tanh of one feature and a product of two."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_bars, n_sym, n_feat))
    signal = np.tanh(2 * X[:, :, 0]) + 0.7 * X[:, :, 1] * X[:, :, 2]
    y = signal + rng.normal(size=signal.shape) * signal.std()
    X[rng.random((n_bars, n_sym)) < 0.02, 3] = np.nan  # incomplete rows are neither trained on nor predicted
    return X, y, signal


def _spec(backend="cpu", **overrides):
    cfg = parse_config({"models": {"models": [{**XGB, **overrides}], "ensemble": {"methods": ["mean"]},
                                   "signal": {"ensemble": "mean"}}})
    return model_specs(cfg.models, choose_backend(cfg.gpu, override=backend))[0]


def _splits(n_bars, validation_bars=40):
    return walk_forward_splits(n_bars, train_bars=200, test_bars=50, purge_bars=1, horizon_bars=1,
                               validation_bars=validation_bars)


def _backend_of(xp):
    return "cpu" if xp is np else "gpu"


def test_in_place_predictions_equal_xgboost_predict(xp):
    """The walk-forward's predictions of the last step are the booster's own ``predict`` on a
    DMatrix of the same standardised rows: our feature plumbing and in-place path add nothing."""
    X, y, _ = _planted()
    splits = _splits(len(X))
    res = walk_forward(xp.asarray(X), xp.asarray(y), splits, [_spec(_backend_of(xp))])
    model = res.steps[-1].models["xgboost"]
    assert isinstance(model.model, BoostedTrees)
    s = splits[-1]
    Xq = X[s.test_start:s.test_stop].reshape(-1, X.shape[2])
    ok = np.isfinite(Xq).all(axis=1)
    want = np.full(len(Xq), np.nan)
    want[ok] = model.model.booster.predict(xgb.DMatrix((Xq[ok] - host(model.mean)) / host(model.std)))
    got = host(res.predictions[0, s.test_start:s.test_stop]).reshape(-1)
    np.testing.assert_array_equal(got, want)  # float32 leaf sums on both paths, then widened
    assert np.isnan(got[~ok]).all() and ok.sum() < len(ok)


def test_planted_signal_found_out_of_sample_with_early_stopping():
    X, y, signal = _planted()
    splits = _splits(len(X))
    res = walk_forward(X, y, splits, [_spec()])
    first, last = splits[0].test_start, splits[-1].test_stop
    ic = host(information_coefficient(res.predictions[0, first:last], y[first:last], min_symbols=5))
    ceiling = host(information_coefficient(signal[first:last], y[first:last], min_symbols=5))
    # the planted signal itself scores 0.68 here (noise as large as the signal); the trees 0.66
    assert np.nanmean(ic) > 0.5 and np.nanmean(ic) > 0.85 * np.nanmean(ceiling)
    rounds = [st.rounds["xgboost"] for st in res.steps]
    assert all(1 <= r <= 150 for r in rounds) and min(rounds) < 150  # stopped early, somewhere
    # without a validation slice: no early stopping, every round
    plain = walk_forward(X, y, _splits(len(X), validation_bars=0), [_spec(n_estimators=30)])
    assert [st.rounds["xgboost"] for st in plain.steps] == [30] * len(plain.steps)


def test_the_step_model_is_refit_with_the_rounds_its_validation_fit_chose():
    X, y, _ = _planted(n_bars=300)
    seen = []
    spec = _spec()

    def spy(Xf, yf, **tuning):
        model = spec.fit(Xf, yf, **tuning)
        seen.append((len(yf), tuning.get("rounds"), "validation" in tuning, model.rounds))
        return model

    splits = _splits(len(X))
    walk_forward(X, y, splits, [type(spec)(spec.name, spec.scope, spec.target, spy, tuned=True)])
    assert len(seen) == 2 * len(splits)
    for (n_val, r_val, has_val, kept), (n_fit, r_fit, has_val2, kept2) in zip(seen[::2], seen[1::2]):
        assert has_val and r_val is None and not has_val2
        assert r_fit == kept == kept2 and n_fit > n_val  # the whole train window, the chosen rounds


def test_reruns_are_byte_identical_and_the_model_file_loads_without_pickle(tmp_path):
    X, y, _ = _planted(n_bars=300)
    splits = _splits(len(X))
    runs = [walk_forward(X, y, splits, [_spec()]) for _ in range(2)]
    assert runs[0].predictions.tobytes() == runs[1].predictions.tobytes()
    names = [f"f{i}" for i in range(X.shape[2])]
    files = [model_files(r.steps[-1].models["xgboost"], name="xgboost", kind="xgboost", scope="pooled",
                         features=names, symbols=[], config_hash="h", window={"start": "a", "end": "b"})
             for r in runs]
    assert files[0] == files[1] and set(files[0]) == {"model_xgboost.ubj", "model_xgboost.npz", "model_xgboost.json"}
    assert files[0]["model_xgboost.ubj"][:1] == b"{"  # UBJSON: XGBoost's own data format, no pickle opcodes
    for name, data in files[0].items():
        (tmp_path / name).write_bytes(data)
    loaded, meta = load_model(tmp_path / "model_xgboost.json", features=names)
    assert meta["format"] == "xgboost-ubj" and meta["rounds"] == runs[0].steps[-1].rounds["xgboost"]
    s = splits[-1]
    Xq = X[s.test_start:s.test_stop].reshape(-1, X.shape[2])
    ok = np.isfinite(Xq).all(axis=1)
    np.testing.assert_array_equal(np.asarray(loaded.predict(Xq[ok]), dtype=np.float64),
                                  runs[0].predictions[0, s.test_start:s.test_stop].reshape(-1)[ok])
    (tmp_path / "model_xgboost.ubj").write_bytes(b"not a model")
    with pytest.raises(Exception, match="model_xgboost.ubj: cannot read"):
        load_model(tmp_path / "model_xgboost.json")


@pytest.mark.parametrize("entry,key", [
    ({"learning_rate": 0}, "learning_rate"), ({"learning_rate": 1.5}, "learning_rate"),
    ({"early_stopping_rounds": 0}, "early_stopping_rounds"), ({"subsample": 0}, "subsample"),
    ({"colsample_bytree": 2}, "colsample_bytree"), ({"n_estimators": 0}, "n_estimators"),
    ({"max_depth": 65}, "max_depth"), ({"n_threads": 0}, "n_threads"), ({"min_child_weight": -1}, "min_child_weight"),
    ({"scope": "per_symbol"}, "scope"),
])
def test_config_bounds_name_the_key(entry, key):
    with pytest.raises(ConfigError, match=key) as err:
        parse_config({"models": {"models": [{"kind": "xgboost", "scope": "pooled", **entry}]}})
    assert "\n" not in str(err.value)


FAST = {"data": {"columns": SP500_COLUMNS},
        "models": {"walk_forward": {"train_bars": 252, "test_bars": 252, "validation_bars": 42},
                   "models": [{"kind": "ridge"}, {**XGB, "n_estimators": 60}]}}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    config = parse_config(FAST)
    base = tmp_path_factory.mktemp("xgb")
    return [run_models(prepare_models(config, data_path=str(SAMPLE), out_dir=str(base / n), backend="cpu"))
            for n in ("a", "b")]


def test_in_the_ensembles_and_the_report(reports):
    result = reports[0]
    out = result.out_dir
    pred = pd.read_parquet(out / "predictions.parquet")
    assert pred["xgboost"].notna().mean() > 0.9
    weights = pd.read_parquet(out / "ensemble_weights.parquet")
    assert set(weights["model"]) == {"ridge", "xgboost"}
    assert weights[weights["model"] == "xgboost"]["weight"].abs().sum() > 0
    scores = pd.read_parquet(out / "model_scores.parquet")
    assert "xgboost" in set(scores["model"]) and scores.loc[scores["model"] == "xgboost", "n_predictions"].min() > 0
    manifest = json.loads((out / "manifest.json").read_text())
    rounds = manifest["boosting_rounds"]["xgboost"]
    assert len(rounds) == manifest["walk_forward"]["steps"] and all(1 <= r <= 60 for r in rounds)
    assert next(m for m in manifest["models"] if m["kind"] == "xgboost")["params"]["learning_rate"] == 0.1
    summary = (out / "summary.md").read_text()
    assert "Boosting rounds of `xgboost` per step" in summary and "| xgboost" in summary
    assert "model_xgboost.json" in manifest["saved_models"] and (out / "model_xgboost.ubj").exists()
    assert "xgboost" in (out / "summary.html").read_text()


def test_report_reruns_are_byte_identical(reports):
    a, b = (r.out_dir for r in reports)
    for name in ("predictions.parquet", "model_scores.parquet", "ensemble_weights.parquet", "model_xgboost.ubj",
                 "model_xgboost.npz", "model_xgboost.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
