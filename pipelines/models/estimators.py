"""Model factory: cuML on the GPU, scikit-learn on the CPU, with the same parameters; and model files.

Implements: :func:`estimator` (ridge, logistic,
random forest, k-nearest neighbours, XGBoost's gradient-boosted trees: :class:`BoostedTrees`)
and the persistence of fitted models without pickle (:func:`model_files`, :func:`load_model`).
cuML is imported only when a GPU model is asked for, so a CPU machine never needs it; XGBoost
only when a boosted model is fitted or loaded. The regimes' KMeans, which the portfolio uses too,
is :func:`alphapulse.pipelines.runtime.estimators.kmeans_model`.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import to_host
from alphapulse.pipelines.errors import ModelFileError

__all__ = ["estimator", "ProbabilityOfOne", "TreeOrderForest", "BoostedTrees", "model_files",
           "load_model", "ModelFileError", "canonical_skops"]


MODEL_TARGETS = {"ridge": "return", "logistic": "sign", "random_forest": "return", "knn": "return",
                 "xgboost": "return"}
"""What each kind predicts: the forward return, or (``sign``) the probability that it is > 0."""


def estimator(kind: str, *, backend: str = "cpu", alpha: float = 1.0, C: float = 1.0, max_iter: int = 100,
              n_neighbors: int = 25, n_estimators: int = 50, max_depth: int | None = 6, min_samples_leaf: int = 50,
              max_features: float = 0.5, max_samples: float = 0.1, learning_rate: float = 0.1,
              early_stopping_rounds: int | None = 20, subsample: float = 0.8, colsample_bytree: float = 0.8,
              min_child_weight: float = 50.0, reg_lambda: float = 1.0, n_threads: int = 1, seed: int = 0):
    """An unfitted estimator of ``kind`` for ``backend``; the parameters mean the same on both.

    Parameters
    ----------
    kind : "ridge" (``Ridge(alpha)``), "logistic" (L2 ``LogisticRegression(C, max_iter)``),
        "random_forest" (``RandomForestRegressor``: n_estimators, max_depth, min_samples_leaf,
        max_features and max_samples as shares, seed), "knn" (``KNeighborsRegressor(n_neighbors)``)
        or "xgboost" (:class:`BoostedTrees`: at most n_estimators rounds, max_depth, learning_rate,
        early_stopping_rounds, subsample, colsample_bytree, min_child_weight, reg_lambda,
        n_threads, seed)
    backend : "cpu" (scikit-learn; XGBoost's ``hist`` trees) or "gpu" (cuML, imported here only;
        its forest predicts through FIL, cuML's forest inference library; XGBoost on
        ``device="cuda"``)

    Returns
    -------
    the estimator; a classifier (logistic) is wrapped so that ``predict`` returns P(class 1), and
    scikit-learn's forest so that its predictions do not depend on thread timing
    (:class:`TreeOrderForest`).
    """
    if kind not in MODEL_TARGETS:
        raise ValueError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_TARGETS)}")
    if backend not in ("cpu", "gpu"):
        raise ValueError(f"backend must be 'cpu' or 'gpu', got {backend!r}")
    if kind == "xgboost":
        return BoostedTrees(boosted_params(backend=backend, max_depth=max_depth, learning_rate=learning_rate,
                                           subsample=subsample, colsample_bytree=colsample_bytree,
                                           min_child_weight=min_child_weight, reg_lambda=reg_lambda,
                                           n_threads=n_threads, seed=seed),
                            n_estimators=n_estimators, early_stopping_rounds=early_stopping_rounds)
    if backend == "gpu":
        if kind == "ridge":
            from cuml.linear_model import Ridge as M

            return M(alpha=alpha, output_type="input")
        if kind == "logistic":
            from cuml.linear_model import LogisticRegression as M

            return ProbabilityOfOne(M(C=C, max_iter=max_iter, output_type="input"))
        if kind == "knn":
            from cuml.neighbors import KNeighborsRegressor as M

            return M(n_neighbors=n_neighbors, output_type="input")
        from cuml.ensemble import RandomForestRegressor as M

        return M(n_estimators=n_estimators, max_depth=max_depth or 16, min_samples_leaf=min_samples_leaf,
                 max_features=max_features, max_samples=max_samples, random_state=seed, output_type="input")
    if kind == "ridge":
        from sklearn.linear_model import Ridge

        return Ridge(alpha=alpha)
    if kind == "logistic":
        from sklearn.linear_model import LogisticRegression

        return ProbabilityOfOne(LogisticRegression(C=C, max_iter=max_iter))
    if kind == "knn":
        from sklearn.neighbors import KNeighborsRegressor

        return KNeighborsRegressor(n_neighbors=n_neighbors)
    from sklearn.ensemble import RandomForestRegressor

    return TreeOrderForest(RandomForestRegressor(n_estimators=n_estimators, max_depth=max_depth,
                                                 min_samples_leaf=min_samples_leaf, max_features=max_features,
                                                 max_samples=max_samples, random_state=seed, n_jobs=-1))


class ProbabilityOfOne:
    """A fitted-on-0/1 classifier whose ``predict`` is ``predict_proba(X)[:, 1]`` (a score)."""

    def __init__(self, classifier):
        self.classifier = classifier

    def fit(self, X, y):
        self.classifier.fit(X, y.astype("int32") if hasattr(y, "astype") else y)
        return self

    def predict(self, X):
        return self.classifier.predict_proba(X)[:, 1]


class TreeOrderForest:
    """A scikit-learn forest fitted on every core that predicts by summing its trees in their order.

    With ``n_jobs != 1`` scikit-learn's forest adds each tree's prediction to one buffer as its
    thread finishes, so the rounding of the sum follows thread timing (reruns differed by ~1e-17,
    enough to flip decisions at a threshold). Each tree is built from its own seed, so fitting in
    parallel is reproducible; predicting is done with ``n_jobs=1``, which is also what a saved
    model keeps.
    """

    def __init__(self, forest):
        self.forest = forest

    def fit(self, X, y):
        self.forest.set_params(n_jobs=-1).fit(X, y)
        self.forest.set_params(n_jobs=1)
        return self

    def predict(self, X):
        return self.forest.predict(X)


def boosted_params(*, backend: str = "cpu", max_depth: int | None = 6, learning_rate: float = 0.1,
                   subsample: float = 0.8, colsample_bytree: float = 0.8, min_child_weight: float = 50.0,
                   reg_lambda: float = 1.0, n_threads: int = 1, seed: int = 0) -> dict:
    """XGBoost's training parameters for ``backend``: the same trees on both (``hist``), on
    ``device="cuda"`` for the GPU. ``n_threads`` is fixed because the CPU's histogram sums are
    split by thread: another count could round differently."""
    return {"objective": "reg:squarederror", "eval_metric": "rmse", "tree_method": "hist",
            "device": "cuda" if backend == "gpu" else "cpu", "max_depth": 0 if max_depth is None else int(max_depth),
            "learning_rate": float(learning_rate), "subsample": float(subsample),
            "colsample_bytree": float(colsample_bytree), "min_child_weight": float(min_child_weight),
            "reg_lambda": float(reg_lambda), "nthread": int(n_threads), "seed": int(seed), "verbosity": 0}


class BoostedTrees:
    """XGBoost's gradient-boosted regression trees, fitted by ``xgboost.train`` and predicting by
    ``Booster.inplace_predict`` (no DMatrix: NumPy on the CPU, CuPy on the GPU, the result on the
    input's device).

    ``fit(X, y, validation=(X_val, y_val))`` boosts at most ``n_estimators`` rounds and stops
    once the validation loss has not improved for ``early_stopping_rounds`` rounds; the booster
    keeps the rounds up to the best one (``rounds``). ``fit(X, y, rounds=r)`` boosts exactly r
    rounds (the walk-forward refits the whole train window with the rounds its validation fit
    chose). Without either, ``n_estimators`` rounds.

    Attributes
    ----------
    params : dict, XGBoost's parameters (:func:`boosted_params`)
    booster : ``xgboost.Booster`` once fitted
    rounds : boosting rounds kept
    """

    def __init__(self, params: dict, *, n_estimators: int = 50, early_stopping_rounds: int | None = 20):
        self.params = dict(params)
        self.n_estimators = int(n_estimators)
        self.early_stopping_rounds = early_stopping_rounds
        self.booster = None
        self.rounds = None

    def fit(self, X, y, *, validation=None, rounds: int | None = None):
        """X : array (n_rows, n_features); y : array (n_rows,); validation : (X_val, y_val) or None."""
        import xgboost as xgb

        dtrain = xgb.QuantileDMatrix(X, label=y)
        evals, stop = [], None
        if validation is not None and rounds is None and self.early_stopping_rounds:
            evals = [(xgb.QuantileDMatrix(validation[0], label=validation[1], ref=dtrain), "validation")]
            stop = int(self.early_stopping_rounds)
        booster = xgb.train(self.params, dtrain, num_boost_round=int(rounds or self.n_estimators), evals=evals,
                            early_stopping_rounds=stop, verbose_eval=False)
        if stop is not None:
            # xgb.train returns every round it ran, up to early_stopping_rounds past the best one
            booster = booster[:booster.best_iteration + 1]
        self.booster = booster
        self.rounds = booster.num_boosted_rounds()
        return self

    def predict(self, X):
        """Predictions for X of shape (n_rows, n_features), shape (n_rows,), float32 (XGBoost's
        leaf values), on X's device."""
        return self.booster.inplace_predict(X)


# ---------------------------------------------------------------------------------------------
# Persistence: no pickle. Batched models as .npz (allow_pickle=False), scikit-learn ones as skops,
# each with a JSON sidecar (model kind, scope, features, config hash, training window).
# ---------------------------------------------------------------------------------------------

SKOPS_TRUSTED = {
    "random_forest": ["sklearn.tree._tree.Tree"],
    "knn": ["sklearn.metrics._dist_metrics.EuclideanDistance64", "sklearn.neighbors._kd_tree.KDTree",
            "sklearn.neighbors._ball_tree.BallTree"],
    "ridge": [], "logistic": [],
}
"""Types beyond skops' defaults that a saved model of each kind may contain: anything else in a
file is refused before it is loaded."""


def model_files(model, *, name: str, kind: str, scope: str, features: list, symbols: list, config_hash: str,
                window: dict) -> dict[str, bytes]:
    """The files of one fitted model, as ``name -> bytes`` for ``write_report(files=...)``.

    ``model_<name>.npz`` (arrays, never pickled) and, for a pooled scikit-learn estimator,
    ``model_<name>.skops`` (for XGBoost's trees ``model_<name>.ubj``, its own format);
    ``model_<name>.json`` holds the kind, scope, feature list, symbols,
    config hash and training window (``{"start": ..., "end": ...}``, first and last training
    timestamps).
    """
    import io
    import json

    from alphapulse.transforms.models.batched import KNNModel, LinearModel

    meta = {"name": name, "kind": kind, "scope": scope, "features": list(features), "config_hash": config_hash,
            "training_window": window, "format": None}
    arrays, files = {}, {}
    if isinstance(model, LinearModel):
        meta["format"] = "npz-linear"
        meta["linear_kind"] = model.kind
        arrays = {"coef": model.coef, "intercept": model.intercept, "mean": model.scaler.mean,
                  "scale": model.scaler.scale, "fitted": model.fitted}
    elif isinstance(model, KNNModel):
        meta["format"] = "npz-knn"
        meta["n_neighbors"] = model.n_neighbors
        arrays = {"train": model.train, "target": model.target, "mask": model.mask, "mean": model.scaler.mean,
                  "scale": model.scaler.scale, "fitted": model.fitted}
    elif isinstance(model.model, BoostedTrees):
        # XGBoost's own binary JSON (UBJSON): data only, and the same bytes for the same trees
        meta["format"] = "xgboost-ubj"
        meta["rounds"] = model.model.rounds
        meta["params"] = model.model.params
        files[f"model_{name}.ubj"] = bytes(model.model.booster.save_raw("ubj"))
        arrays = {"mean": model.mean, "std": model.std}
    else:  # a pooled estimator with its standardisation (alphapulse.transforms.models.training)
        import skops.io as sio

        est = model.model
        est = est.classifier if isinstance(est, ProbabilityOfOne) else est
        est = est.forest if isinstance(est, TreeOrderForest) else est
        if not type(est).__module__.startswith("sklearn"):
            try:
                est = est.as_sklearn()  # cuML's scikit-learn interoperability
            except Exception as e:  # noqa: BLE001  (no such conversion for this estimator/version)
                raise ModelFileError(f"model {name}: {type(est).__name__} cannot be saved without pickle "
                                     f"({type(e).__name__}: {e})") from None
        meta["format"] = "skops"
        meta["classifier"] = isinstance(model.model, ProbabilityOfOne)
        files[f"model_{name}.skops"] = canonical_skops(sio.dumps(est))
        arrays = {"mean": model.mean, "std": model.std}
    if scope == "per_symbol":
        meta["symbols"] = [str(s) for s in symbols]
    buf = io.BytesIO()
    np.savez(buf, **{k: to_host(v) for k, v in arrays.items()})
    files[f"model_{name}.npz"] = buf.getvalue()
    files[f"model_{name}.json"] = (json.dumps(meta, indent=2) + "\n").encode()
    return files


def canonical_skops(data: bytes) -> bytes:
    """The same skops archive written byte-stably: what :func:`skops.io.loads` reads back unchanged.

    skops names the archive's array files and the schema's ``__id__`` fields after the objects'
    memory addresses (``id()``), other binary parts after random UUIDs, and stamps every entry
    with the clock. Its ids also record which nodes were one Python object, and for immutable
    values (JSON scalars, types) that follows Python's caching, not the model: ``0.0`` is one
    object in the fitting process and two after a pickle round trip (a Dask worker's result).
    Here those values lose their id (loading builds each anew, as it would anyway), the other
    ids are renumbered and files renamed in the order the schema first mentions them
    (one-to-one, so shared arrays and estimators stay shared), and the archive is rewritten
    uncompressed with a fixed entry date, permissions and order (schema first).
    """
    import io
    import json
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as z:
        schema = json.loads(z.read("schema.json"))
        parts = {n: z.read(n) for n in z.namelist() if n != "schema.json"}
    ids: dict = {}
    names: dict = {}

    def walk(node):
        if isinstance(node, dict):
            out = {}
            immutable = node.get("__loader__") in ("JsonNode", "TypeNode")
            for k, v in node.items():
                if k == "__id__" and immutable:
                    continue
                if k == "__id__" and isinstance(v, int):
                    v = ids.setdefault(v, len(ids) + 1)  # from 1: skops does not memoise an id of 0
                elif k == "file" and isinstance(v, str) and v in parts:
                    v = names.setdefault(v, f"{len(names):06d}{v[v.rfind('.'):] if '.' in v else ''}")
                out[k] = walk(v)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    schema = walk(schema)
    unnamed = sorted(set(parts) - set(names))
    if unnamed:  # an archive part the schema does not point at: refuse rather than drop it
        raise ModelFileError(f"skops archive has parts its schema does not name: {', '.join(unnamed)}")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        entries = [("schema.json", json.dumps(schema, indent=2).encode())]
        entries += sorted((new, parts[old]) for old, new in names.items())
        for name, payload in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3
            info.external_attr = 0o644 << 16
            z.writestr(info, payload)
    return buf.getvalue()


def load_model(json_path, *, features: list | None = None):
    """Load a model saved by :func:`model_files` (host arrays; no code runs while loading).

    Parameters
    ----------
    json_path : the ``model_<name>.json`` sidecar
    features : the feature list the caller will predict with; a different list (names or
        order) is an error naming the differences

    Returns
    -------
    (model, meta): a ``LinearModel``/``KNNModel`` (per-symbol) or a pooled model with
    ``predict(X (n_rows, n_features))``; ``meta`` the sidecar.

    Raises
    ------
    ModelFileError
        Features that do not match, a skops file holding types beyond :data:`SKOPS_TRUSTED`, or
        a missing or malformed file.
    """
    import json
    from pathlib import Path

    from alphapulse.transforms.models.batched import KNNModel, LinearModel, Scaler
    from alphapulse.transforms.models.training import _Standardised

    json_path = Path(json_path)
    try:
        meta = json.loads(json_path.read_text())
        kind, fmt = meta["kind"], meta["format"]
        saved = list(meta["features"])
    except (OSError, ValueError, KeyError) as e:
        raise ModelFileError(f"{json_path}: not a model sidecar ({e})") from None
    if features is not None and list(features) != saved:
        missing = [f for f in saved if f not in features]
        extra = [f for f in features if f not in saved]
        detail = (f"missing {missing}" if missing else "") + ("; " if missing and extra else "") + \
                 (f"not in the model {extra}" if extra else "")
        raise ModelFileError(f"{json_path.name}: the model was trained on other features "
                             f"({detail or 'same names, other order'})")
    stem = json_path.with_suffix("")
    try:
        with np.load(f"{stem}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise ModelFileError(f"{stem}.npz: cannot read ({e})") from None
    if fmt == "npz-linear":
        return LinearModel(meta["linear_kind"], arrays["coef"], arrays["intercept"],
                           Scaler(arrays["mean"], arrays["scale"]), arrays["fitted"]), meta
    if fmt == "npz-knn":
        return KNNModel(int(meta["n_neighbors"]), arrays["train"], arrays["target"], arrays["mask"],
                        Scaler(arrays["mean"], arrays["scale"]), arrays["fitted"]), meta
    if fmt == "xgboost-ubj":
        import xgboost as xgb

        booster = xgb.Booster()
        try:
            booster.load_model(bytearray(Path(f"{stem}.ubj").read_bytes()))
        except (OSError, xgb.core.XGBoostError) as e:
            raise ModelFileError(f"{stem}.ubj: cannot read ({str(e).splitlines()[0]})") from None
        params = {**meta["params"], "device": "cpu"}  # loaded on the host; set_param moves it
        booster.set_param({"nthread": params["nthread"], "device": "cpu"})
        trees = BoostedTrees(params, n_estimators=int(meta["rounds"]), early_stopping_rounds=None)
        trees.booster, trees.rounds = booster, booster.num_boosted_rounds()
        return _Standardised(trees, arrays["mean"], arrays["std"]), meta
    if fmt != "skops":
        raise ModelFileError(f"{json_path.name}: unknown model format {fmt!r}")
    import skops.io as sio

    data = Path(f"{stem}.skops").read_bytes()
    untrusted = sio.get_untrusted_types(data=data)
    unexpected = sorted(set(untrusted) - set(SKOPS_TRUSTED.get(kind, [])))
    if unexpected:
        raise ModelFileError(f"{stem}.skops: refusing to load types not expected in a {kind} model: "
                             f"{', '.join(unexpected)}")
    est = sio.loads(data, trusted=untrusted)
    if meta.get("classifier"):
        est = ProbabilityOfOne(est)
    return _Standardised(est, arrays["mean"], arrays["std"]), meta
