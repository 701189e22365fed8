"""Walk-forward training with a purge gap: every prediction out of sample.

Implements: :func:`walk_forward_splits` (expanding or rolling train windows, each followed by a
test window, with a validation slice at the end of each train window) and
:func:`walk_forward` (refit every model at every step, predict only the test rows; also the
validation slice, from a model fitted before it, for the ensembles).

Rows are panel rows (bars). The target of row t is the return from t to t + ``horizon_bars``
(:func:`alphapulse.transforms.models.features.forward_returns`), so row t's label window is (t, t + k]. With a
purge of ``purge_bars >= horizon_bars`` rows between a train window's end and the next window's
start, the last training row ``train_stop - 1`` has its label window end at
``train_stop - 1 + k < test_start``: no training label touches a test date (nor, inside the
train window, a validation date). ``tests/transforms/models/test_walkforward.py`` checks it for every
split.

Models come in two scopes:

- ``per_symbol``: one model per symbol on its own rows, all symbols fitted in one batched call
  (:mod:`alphapulse.transforms.models.batched`); ``fit(X, y, mask)`` with X of shape (n_symbols, n_rows,
  n_features).
- ``pooled``: one cross-sectional model over every symbol's rows (e.g. a random forest), fitted
  on the rows with finite features and target, standardised with the training rows' mean and
  std; ``fit(X, y)`` with X of shape (n_rows, n_features). The caller supplies the estimator
  (scikit-learn or cuML through ``alphapulse.pipelines.models.estimators``), so this module stays free of them.

Either ``fit`` returns an object whose ``predict`` takes the same layout. Classifiers
(``target="sign"``) train on ``1[return > 0]`` and predict P(up).
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from alphapulse.transforms.arrays import namespace

log = logging.getLogger(__name__)

SCOPES = ("per_symbol", "pooled")


@dataclass(frozen=True)
class Split:
    """One walk-forward step, in panel rows (half-open ranges).

    ``[train_start, train_stop)`` trains the model that predicts ``[test_start, test_stop)``;
    ``[val_start, train_stop)`` is the validation slice (empty when ``val_start == train_stop``),
    predicted by a model fitted on ``[train_start, fit_stop)``, ``fit_stop = val_start - purge``.
    """

    step: int
    train_start: int
    train_stop: int
    fit_stop: int
    val_start: int
    test_start: int
    test_stop: int

    @property
    def has_validation(self) -> bool:
        return self.val_start < self.train_stop


def walk_forward_splits(n_bars: int, *, train_bars: int, test_bars: int, purge_bars: int, horizon_bars: int,
                        validation_bars: int = 0, expanding: bool = False, start_row: int = 0) -> list[Split]:
    """The walk-forward steps over ``n_bars`` rows.

    Parameters
    ----------
    n_bars : rows of the panel
    train_bars : rows of the (first) train window
    test_bars : rows of each test window (and the step between windows)
    purge_bars : rows left out between a train window and its test window (>= horizon_bars)
    horizon_bars : the target's horizon k
    validation_bars : rows at the end of each train window used as the validation slice (0: none)
    expanding : train windows start at ``start_row`` and grow (True) or roll with fixed length
    start_row : the first row of the first train window (e.g. the first row with features)

    Returns
    -------
    list of :class:`Split`, test windows consecutive and covering ``[first test_start, n_bars)``.
    """
    if purge_bars < horizon_bars:
        raise ValueError(f"purge_bars ({purge_bars}) must be at least horizon_bars ({horizon_bars}): otherwise the "
                         f"last training labels overlap the test period")
    if min(train_bars, test_bars) < 1 or validation_bars < 0:
        raise ValueError("train_bars and test_bars must be positive and validation_bars >= 0")
    if validation_bars and validation_bars + purge_bars >= train_bars:
        raise ValueError(f"validation_bars + purge_bars ({validation_bars + purge_bars}) must be below train_bars "
                         f"({train_bars}): the validation model needs training rows")
    splits = []
    test_start = start_row + train_bars + purge_bars
    while test_start < n_bars:
        train_stop = test_start - purge_bars
        train_start = start_row if expanding else train_stop - train_bars
        val_start = train_stop - validation_bars
        fit_stop = val_start - purge_bars if validation_bars else train_stop
        splits.append(Split(len(splits), train_start, train_stop, fit_stop, val_start, test_start,
                            min(test_start + test_bars, n_bars)))
        test_start += test_bars
    return splits


@dataclass(frozen=True)
class ModelSpec:
    """A model of the walk-forward.

    name : column name of its predictions
    scope : "per_symbol" or "pooled"
    target : "return" (regression on the forward return) or "sign" (classifier on its sign)
    fit : per_symbol: ``fit(X (n_symbols, n_rows, n_features), y (n_symbols, n_rows), mask)``;
        pooled: ``fit(X (n_rows, n_features), y (n_rows,))``; returns an object with ``predict``
    tuned : pooled only: the fit takes ``validation=(X_val, y_val)`` (early stopping) and
        ``rounds=``, and its model says how many ``rounds`` it kept. At each step with a
        validation slice, the validation fit (train rows before the purge) stops early on the
        slice, and the step's model is refit on the whole train window with those rounds, so the
        test window's model never saw its stopping rows as anything but training rows. (The
        validation predictions the ensembles weigh come from the model that stopped on them:
        slightly in that model's favour.)
    """

    name: str
    scope: str
    target: str
    fit: Callable
    tuned: bool = False


@dataclass
class StepResult:
    """What one step produced: the split, validation predictions (n_models, n_val_rows,
    n_symbols) on the device (None without a validation slice), fit seconds per model, fitted
    symbols per per-symbol model, boosting rounds per tuned model, and the fitted models of the
    step (the final refit)."""

    split: Split
    validation: object
    seconds: dict = field(default_factory=dict)
    fitted_symbols: dict = field(default_factory=dict)
    rounds: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict, repr=False)


@dataclass
class WalkForwardResult:
    """predictions : array (n_models, n_bars, n_symbols): out-of-sample predictions, NaN
    outside the test windows; names : model names in that order; steps : per-step results."""

    predictions: object
    names: list
    steps: list


def _labels(y, target: str):
    xp = namespace(y)
    if target == "sign":
        return xp.where(xp.isfinite(y), (y > 0).astype(y.dtype), xp.nan)
    return y


def _per_symbol_block(features, a: int, b: int):
    xp = namespace(features)
    return xp.ascontiguousarray(features[a:b].transpose(1, 0, 2))


def _fit_predict(spec: ModelSpec, features, y, fit_rows: tuple, pred_rows: tuple, keep_model: bool, *,
                 validate: bool = False, rounds: int | None = None):
    """Fit on rows fit_rows (a, b) and predict rows pred_rows (c, d): (predictions (d - c,
    n_symbols), fitted-symbol count or None, the model or None). A tuned pooled model stops
    early on the predicted rows' complete rows (``validate``) or boosts ``rounds``."""
    xp = namespace(features)
    a, b = fit_rows
    c, d = pred_rows
    n_sym, n_feat = features.shape[1], features.shape[2]
    labels = _labels(y[a:b], spec.target)
    if spec.scope == "per_symbol":
        X = _per_symbol_block(features, a, b)
        yy = xp.ascontiguousarray(labels.T)
        mask = xp.isfinite(yy) & xp.isfinite(X).all(axis=2)
        model = spec.fit(X, yy, mask)
        pred = model.predict(_per_symbol_block(features, c, d)).T
        n_fitted = int(model.fitted.sum())
    else:
        X = features[a:b].reshape(-1, n_feat)
        yy = labels.reshape(-1)
        keep = xp.isfinite(yy) & xp.isfinite(X).all(axis=1)
        X, yy = X[keep], yy[keep]
        if X.shape[0] < 2:
            return xp.full((d - c, n_sym), np.nan, dtype=features.dtype), 0, None
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        std = xp.where(std > 0, std, 1.0)
        Xq = features[c:d].reshape(-1, n_feat)
        ok = xp.isfinite(Xq).all(axis=1)
        kwargs = {}
        if spec.tuned and rounds is not None:
            kwargs["rounds"] = rounds
        elif spec.tuned and validate:
            yv = _labels(y[c:d], spec.target).reshape(-1)
            okv = ok & xp.isfinite(yv)
            if bool(okv.any()):
                kwargs["validation"] = ((Xq[okv] - mean) / std, yv[okv])
        model = spec.fit((X - mean) / std, yy, **kwargs)
        pred = xp.full(Xq.shape[0], np.nan, dtype=features.dtype)
        if bool(ok.any()):
            pred[ok] = xp.asarray(model.predict((Xq[ok] - mean) / std), dtype=features.dtype).reshape(-1)
        pred = pred.reshape(d - c, n_sym)
        model = _Standardised(model, mean, std)
        n_fitted = None
    return pred, n_fitted, (model if keep_model else None)


def _rounds(model) -> int | None:
    """Boosting rounds a tuned pooled model kept (None: not fitted, too few rows)."""
    return None if model is None else int(model.model.rounds)


@dataclass
class _Standardised:
    """A pooled model with the standardisation it was fitted on (kept for persistence)."""

    model: object
    mean: object
    std: object

    def predict(self, X):
        return self.model.predict((X - self.mean) / self.std)


def walk_forward(features, target, splits: list[Split], models: list[ModelSpec], *,
                 keep_models: str = "last") -> WalkForwardResult:
    """Refit every model at every step and predict its test rows (and validation slice).

    Parameters
    ----------
    features : array (n_bars, n_symbols, n_features), NaN where unknown
    target : array (n_bars, n_symbols): forward returns (NaN where unknown)
    splits : from :func:`walk_forward_splits`
    models : the :class:`ModelSpec` list
    keep_models : "last" (keep the fitted models of the last step, for persistence) or "none"

    Returns
    -------
    :class:`WalkForwardResult`; predictions are NaN outside the test windows and where a row's
    features are NaN or its symbol's model could not be fitted.
    """
    xp = namespace(features, target)
    n_bars, n_sym, _ = features.shape
    if target.shape != (n_bars, n_sym):
        raise ValueError(f"target has shape {target.shape}, features {features.shape}")
    for spec in models:
        if spec.scope not in SCOPES:
            raise ValueError(f"model {spec.name}: scope must be one of {SCOPES}, got {spec.scope!r}")
    preds = xp.full((len(models), n_bars, n_sym), np.nan, dtype=features.dtype)
    steps = []
    for split in splits:
        val = None
        if split.has_validation:
            val = xp.full((len(models), split.train_stop - split.val_start, n_sym), np.nan, dtype=features.dtype)
        res = StepResult(split, val)
        last = keep_models == "last" and split is splits[-1]
        for m, spec in enumerate(models):
            t0 = time.perf_counter()
            rounds = None
            if val is not None:
                val[m], _, vmodel = _fit_predict(spec, features, target, (split.train_start, split.fit_stop),
                                                 (split.val_start, split.train_stop), spec.tuned, validate=True)
                rounds = _rounds(vmodel) if spec.tuned else None
            p, n_fitted, model = _fit_predict(spec, features, target, (split.train_start, split.train_stop),
                                              (split.test_start, split.test_stop), last or spec.tuned,
                                              rounds=rounds)
            preds[m, split.test_start:split.test_stop] = p
            res.seconds[spec.name] = time.perf_counter() - t0
            if n_fitted is not None:
                res.fitted_symbols[spec.name] = n_fitted
            if spec.tuned and model is not None:
                res.rounds[spec.name] = _rounds(model)
            if model is not None and last:
                res.models[spec.name] = model
        log.info("walk-forward step %d/%d: train %d..%d, test %d..%d (%s)", split.step + 1, len(splits),
                 split.train_start, split.train_stop, split.test_start, split.test_stop,
                 ", ".join(f"{k} {v:.2f}s" for k, v in res.seconds.items()))
        steps.append(res)
    return WalkForwardResult(preds, [s.name for s in models], steps)
