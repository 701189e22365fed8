"""The models pipeline on the bundled sample: report files, out-of-sample predictions, scores,
the signal's backtest, model files (round trip, wrong features, untrusted content), config
checks and the CLI."""
import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import yaml

from alphapulse.pipelines.runtime.backend import probe_gpu
from alphapulse.pipelines.config import ConfigError, parse_config
from alphapulse.pipelines.models.estimators import ModelFileError, load_model
from alphapulse.pipelines.models.pipeline import prepare_models, run_models
from tests.pipelines.conftest import SAMPLE, SP500_COLUMNS

GPU, WHY = probe_gpu("auto")

FAST = {"data": {"columns": SP500_COLUMNS},
        "models": {"walk_forward": {"train_bars": 252, "test_bars": 126, "validation_bars": 42},
                   "models": [{"kind": "ridge", "alpha": 2.0}, {"kind": "logistic", "C": 0.5},
                              {"kind": "knn", "n_neighbors": 15},
                              {"kind": "random_forest", "scope": "pooled", "n_estimators": 8, "max_depth": 4},
                              {"kind": "ridge", "name": "ridge_pooled", "scope": "pooled"}]}}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    config = parse_config(FAST)
    out = tmp_path_factory.mktemp("models") / "rep"
    result = run_models(prepare_models(config, data_path=str(SAMPLE), out_dir=str(out), backend="cpu"))
    return result, config


def test_report_files(report):
    result, _ = report
    names = {p.name for p in result.out_dir.iterdir()}
    assert {"predictions.parquet", "model_scores.parquet", "ensemble_weights.parquet", "backtest.parquet",
            "manifest.json", "summary.md", "model_ridge.npz", "model_ridge.json", "model_knn.npz",
            "model_random_forest.skops", "model_random_forest.json"} <= names
    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    assert manifest["pipeline"] == "models" and manifest["walk_forward"]["purge_bars"] == 5
    assert [m["scope"] for m in manifest["models"]] == ["per_symbol"] * 3 + ["pooled"] * 2
    assert "Signal backtest" in (result.out_dir / "summary.md").read_text()


def test_predictions_out_of_sample_only(report):
    result, config = report
    pred = pd.read_parquet(result.out_dir / "predictions.parquet")
    splits = result.manifest["walk_forward"]["splits"]
    assert list(pred.columns[:2]) == ["timestamp", "symbol"] and pred.columns[-1] == "target"
    assert {"ridge", "logistic", "knn", "random_forest", "ridge_pooled", "ensemble_mean", "ensemble_weighted",
            "ensemble_stacking"} <= set(pred.columns)
    ts = pd.DatetimeIndex(sorted(pred["timestamp"].unique()))
    assert len(ts) == splits[-1]["test_stop"] - splits[0]["test_start"]
    # the target is the realised 5-bar forward return of the sample's closes
    bars = pd.read_parquet(SAMPLE).rename(columns={"date": "timestamp", "Name": "symbol"})
    bars["timestamp"] = pd.to_datetime(bars["timestamp"])
    aapl = bars[bars["symbol"] == "AAPL"].set_index("timestamp")["close"].sort_index()
    got = pred[pred["symbol"] == "AAPL"].set_index("timestamp")["target"]
    want = (aapl.shift(-5) / aapl - 1).reindex(got.index)
    np.testing.assert_allclose(got, want, rtol=1e-12, equal_nan=True)
    # live predictions
    assert got.iloc[-5:].isna().all() and pred[pred["timestamp"] == ts[-1]]["ridge"].notna().sum() >= 45
    # probabilities for the classifier, z-scores for the ensembles
    assert pred["logistic"].dropna().between(0, 1).all()
    day = pred[pred["timestamp"] == ts[10]]["ensemble_mean"]
    assert abs(day.mean()) < 1e-9


def test_scores_and_backtest(report):
    result, _ = report
    scores = pd.read_parquet(result.out_dir / "model_scores.parquet")
    allp = scores[scores["step"] == -1].set_index("model")
    assert set(allp.index) >= {"ridge", "ensemble_stacking"}
    assert allp["n_dates"].min() > 500 and allp["ic_mean"].abs().max() < 0.2
    assert allp["hit_rate"].between(0.4, 0.6).all()
    n_splits = len(result.manifest["walk_forward"]["splits"])
    assert (scores[scores["step"] >= 0].groupby("model")["step"].nunique() == n_splits).all()
    bt = pd.read_parquet(result.out_dir / "backtest.parquet").set_index("strategy")
    assert set(bt.index) == {"signal", "buy_and_hold"}
    assert 0 < bt.loc["signal", "avg_long_fraction"] < 1 and bt.loc["buy_and_hold", "avg_long_fraction"] == 1
    assert bt.loc["buy_and_hold", "total_return"] > 0


def test_saved_models_round_trip(report):
    result, _ = report
    out = result.out_dir
    pred = pd.read_parquet(out / "predictions.parquet")
    feats = result.manifest["features"]
    last = result.manifest["walk_forward"]["splits"][-1]
    model, meta = load_model(out / "model_ridge.json", features=feats)
    assert meta["kind"] == "ridge" and meta["config_hash"] == result.manifest["config_hash"]
    assert meta["training_window"]["end"] < str(pred["timestamp"].max())
    # re-predict the last test window from the loaded model: the report's numbers
    from alphapulse.pipelines.runtime.backend import choose_backend
    from alphapulse.pipelines.data.load import load_bars
    from alphapulse.pipelines.models.pipeline import features_stage

    request = prepare_models(parse_config(FAST), data_path=str(SAMPLE), out_dir=str(out.parent / "x"), backend="cpu")
    fs = features_stage(load_bars(request.inputs).bars, request.config.models,
                        choose_backend(request.config.gpu, override="cpu"))
    Xq = np.ascontiguousarray(fs.features[last["test_start"]:last["test_stop"]].transpose(1, 0, 2))
    n_test = last["test_stop"] - last["test_start"]
    for name in ("ridge", "knn"):
        model, meta = load_model(out / f"model_{name}.json", features=feats)
        stored = pred.pivot(index="timestamp", columns="symbol", values=name).reindex(columns=fs.symbols)
        np.testing.assert_allclose(model.predict(Xq).T, stored.to_numpy()[-n_test:], rtol=1e-12, equal_nan=True)
    rf, meta = load_model(out / "model_random_forest.json", features=feats)
    X_last = fs.features[last["test_stop"] - 1]
    ok = np.isfinite(X_last).all(axis=1)
    rf_stored = pred[pred["timestamp"] == pred["timestamp"].max()].set_index("symbol")["random_forest"]
    np.testing.assert_allclose(rf.predict(X_last[ok]), rf_stored.reindex(np.asarray(fs.symbols)[ok]), rtol=1e-12)


def test_model_files_refuse_wrong_features_and_untrusted_types(report, tmp_path):
    result, _ = report
    out = result.out_dir
    feats = result.manifest["features"]
    with pytest.raises(ModelFileError, match="other features .missing \\['rsi_14'\\]"):
        load_model(out / "model_ridge.json", features=[f for f in feats if f != "rsi_14"])
    with pytest.raises(ModelFileError, match="same names, other order"):
        load_model(out / "model_ridge.json", features=feats[::-1])
    # a skops file holding a type a random forest never contains is refused before loading
    import skops.io as sio
    from sklearn.neighbors import KNeighborsRegressor

    for name in ("model_random_forest.json", "model_random_forest.npz"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    knn = KNeighborsRegressor(2, algorithm="kd_tree").fit(np.random.rand(10, len(feats)), np.random.rand(10))
    (tmp_path / "model_random_forest.skops").write_bytes(sio.dumps(knn))
    with pytest.raises(ModelFileError, match="refusing to load types not expected in a random_forest model: "
                                             ".*KDTree"):
        load_model(tmp_path / "model_random_forest.json", features=feats)


@pytest.mark.parametrize("models,match", [
    ({"features": {"rank_features": ["nope"]}}, "rank_features: unknown feature 'nope'"),
    ({"walk_forward": {"purge_bars": 2}}, "purge_bars .2. must be at least models.horizon_bars .5."),
    ({"walk_forward": {"validation_bars": 0}}, "need a validation slice"),
    ({"walk_forward": {"validation_bars": 500}}, "validation_bars \\+ purge"),
    ({"signal": {"ensemble": "stacking"}, "ensemble": {"methods": ["mean"]}}, "models.signal.ensemble 'stacking'"),
])
def test_cross_field_checks(models, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        prepare_models(parse_config({"models": models}), data_path=str(SAMPLE), out_dir=str(tmp_path / "r"))


@pytest.mark.parametrize("models,match", [
    ({"models": [{"kind": "random_forest"}]}, "random_forest is a pooled model"),
    ({"models": [{"kind": "ridge"}, {"kind": "ridge"}]}, "used twice"),
    ({"models": [{"kind": "svm"}]}, "models.models.0.kind"),
    ({"features": {"indicators": {"obv": []}}}, "obv has no stationary scale"),
    ({"walk_forward": {"train_bar": 5}}, "unknown key .did you mean 'train_bars'"),
])
def test_config_errors_name_the_key(models, match):
    with pytest.raises(ConfigError, match=match):
        parse_config({"models": models})


def test_cli(tmp_path, capsys):
    from alphapulse.flows.cli.dispatch import main

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({**FAST, "models": {**FAST["models"], "models": [{"kind": "ridge"}]}}))
    assert main(["models", "--data", str(SAMPLE), "--out", str(tmp_path / "r"), "--config", str(cfg),
                 "--no-prefect", "-q"]) == 0
    text = capsys.readouterr().out
    assert "ridge" in text and "backtest signal" in text and (tmp_path / "r" / "predictions.parquet").exists()
    assert main(["models", "--data", str(tmp_path / "missing.csv"), "--out", str(tmp_path / "r2")]) == 2
    assert "missing.csv" in capsys.readouterr().err


@pytest.mark.gpu
@pytest.mark.skipif(GPU is None, reason=f"no usable GPU: {WHY}")
# before the CPU report fixture runs: the GPU check's level 2 brings cuDF without cuML
@pytest.mark.skipif(importlib.util.find_spec("cuml") is None, reason="cuML is not installed")
def test_models_gpu_agrees_with_cpu(report, tmp_path):
    """CuPy/cuML against the CPU run: the batched per-symbol models to rounding, KNN by the share
    of identical predictions, the pooled models (cuML vs scikit-learn: other algorithms) by rank
    agreement of their predictions."""
    from scipy.stats import spearmanr

    pytest.importorskip("cuml")
    cpu, config = report
    gpu = run_models(prepare_models(config, data_path=str(SAMPLE), out_dir=str(tmp_path / "gpu"), backend="gpu"))
    assert gpu.manifest["backend"]["name"] == "gpu"
    a = cpu.tables["predictions.parquet"].set_index(["timestamp", "symbol"])
    b = gpu.tables["predictions.parquet"].set_index(["timestamp", "symbol"]).loc[a.index]
    np.testing.assert_allclose(b["ridge"], a["ridge"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(b["logistic"], a["logistic"], atol=1e-5)
    both = a["knn"].notna() & b["knn"].notna()
    assert np.isclose(a["knn"][both], b["knn"][both], rtol=1e-9).mean() > 0.99
    for name in ("random_forest", "ridge_pooled"):
        ok = a[name].notna() & b[name].notna()
        assert spearmanr(a[name][ok], b[name][ok]).statistic > (0.99 if name == "ridge_pooled" else 0.5)


def test_signal_backtest_against_hand_computed_returns():
    """The signal's portfolio: long symbol 0 from the bar after the first test row's close (its
    open), flat in symbols 1 and 2; equal weight over the symbols with a bar."""
    from types import SimpleNamespace

    from alphapulse.pipelines.models.pipeline import Ensembles, Features, backtest_stage
    from alphapulse.transforms.models.training import Split

    rng = np.random.default_rng(3)
    n, first = 40, 15
    close = 100 * np.cumprod(1 + 0.01 * rng.normal(size=(n, 3)), axis=0)
    open_ = close * (1 + 0.003 * rng.normal(size=(n, 3)))
    close[20, 1] = open_[20, 1] = np.nan  # a gap in a flat symbol
    prices = {"open": open_, "high": np.fmax(open_, close) * 1.01, "low": np.fmin(open_, close) * 0.99,
              "close": close, "volume": np.ones((n, 3))}
    score = np.tile([1.0, -1.0, np.nan], (n, 1))
    feats = Features(None, None, prices, [], pd.date_range("2020-01-01", periods=n), ["A", "B", "C"], 0)
    trained = SimpleNamespace(splits=[Split(0, 0, 10, 10, 10, first, n)])
    mc = parse_config({}).models
    bt = backtest_stage(feats, trained, Ensembles({"ensemble_mean": score}, pd.DataFrame()), mc).set_index("strategy")
    r0 = np.zeros(n)
    r0[first + 1] = close[first + 1, 0] / open_[first + 1, 0] - 1  # bought at the open
    r0[first + 2:] = close[first + 2:, 0] / close[first + 1:-1, 0] - 1
    counts = np.isfinite(close).sum(axis=1)
    port = (r0 / counts)[first:]
    assert bt.loc["signal", "total_return"] == pytest.approx(np.prod(1 + port) - 1, rel=1e-12)
    assert bt.loc["signal", "avg_long_fraction"] == pytest.approx(1 / 3)


def test_forest_predictions_do_not_depend_on_thread_timing():
    """scikit-learn's forest with n_jobs=-1 sums its trees' predictions in the order its threads
    finish: the same model gave predictions differing by ~1e-17 from call to call."""
    from alphapulse.pipelines.models.estimators import estimator

    rng = np.random.default_rng(0)
    X = rng.normal(size=(20_000, 20))
    y = X[:, 0] + rng.normal(size=len(X))
    model = estimator("random_forest", n_estimators=8, max_depth=4).fit(X, y)
    assert len({model.predict(X).tobytes() for _ in range(20)}) == 1


_RUN_FIELDS = ("run_id", "created_at", "stages", "cost", "monitoring", "fit_seconds")  # identity and timings


def _summary_without_run_fields(text: str, manifest: dict) -> str:
    """summary.md / summary.html less what names this run: its id, its clock time, and the stage
    timings and cost section (from its heading on)."""
    text = text.replace(manifest["run_id"], "RUN").replace(manifest["created_at"], "TIME")
    cut = min(i for i in (text.find("## Stage timings"), text.find("<h2>Stage timings"), len(text)) if i >= 0)
    tail = text[cut:]
    rejected = tail.find("Rejected rows")  # the html goes on with rejected rows and files after the timings
    return text[:cut] + (tail[rejected:] if rejected >= 0 else "")


def test_reruns_are_byte_identical(report, tmp_path):
    """A second run on the same bars writes the same bytes in every file: predictions, scores,
    weights, backtest, model files (.skops archives without memory addresses or clock times);
    the manifest and summaries differ only in the run's id, time and timings."""
    first, config = report
    second = run_models(prepare_models(config, data_path=str(SAMPLE), out_dir=str(tmp_path / "again"), backend="cpu"))
    a, b = first.out_dir, second.out_dir
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    ma, mb = (json.loads((d / "manifest.json").read_text()) for d in (a, b))
    assert ma["run_id"] != mb["run_id"]
    same = [{k: v for k, v in m.items() if k not in _RUN_FIELDS} for m in (ma, mb)]
    assert same[0] == same[1]
    for name in names:
        if name == "manifest.json":
            continue
        if name.startswith("summary."):
            ta = _summary_without_run_fields((a / name).read_text(), ma)
            assert ta == _summary_without_run_fields((b / name).read_text(), mb), name
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_skops_files_are_canonical():
    """skops names archive parts after memory addresses, dates them by the clock and records which
    immutable values were one Python object: the same forest, and its pickled copy (what a Dask
    worker returns), must give the same bytes, and load back to the same predictions."""
    import io
    import pickle
    import zipfile

    import skops.io as sio

    from alphapulse.pipelines.models.estimators import canonical_skops, estimator

    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 6))
    forest = estimator("random_forest", n_estimators=4, max_depth=3).fit(X, X[:, 0]).forest
    data = canonical_skops(sio.dumps(forest))
    assert canonical_skops(sio.dumps(pickle.loads(pickle.dumps(forest)))) == data
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        infos = z.infolist()
    assert infos[0].filename == "schema.json" and {i.date_time for i in infos} == {(1980, 1, 1, 0, 0, 0)}
    assert [i.filename for i in infos[1:]] == [f"{k:06d}.npy" for k in range(len(infos) - 1)]
    loaded = sio.loads(data, trusted=sio.get_untrusted_types(data=data))
    np.testing.assert_array_equal(loaded.predict(X), forest.predict(X))


def test_signal_is_flat_within_rounding_noise_of_the_threshold():
    """A score that is the threshold up to its last bits (a z-score of 0 computed with another
    summation order) is on the threshold, hence flat, whichever side the noise falls."""
    from types import SimpleNamespace

    from alphapulse.pipelines.models.pipeline import Ensembles, Features, backtest_stage
    from alphapulse.transforms.models.training import Split

    n, first = 30, 10
    close = 100 * np.cumprod(1 + 0.01 * np.random.default_rng(4).normal(size=(n, 3)), axis=0)
    prices = {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": np.ones((n, 3))}
    feats = Features(None, None, prices, [], pd.date_range("2020-01-01", periods=n), ["A", "B", "C"], 0)
    trained = SimpleNamespace(splits=[Split(0, 0, 5, 5, 5, first, n)])
    mc = parse_config({}).models
    score = np.tile([4e-16, -4e-16, 1e-6], (n, 1))
    bt = backtest_stage(feats, trained, Ensembles({"ensemble_mean": score}, pd.DataFrame()), mc).set_index("strategy")
    assert bt.loc["signal", "avg_long_fraction"] == pytest.approx(1 / 3)  # only C, clearly above 0
