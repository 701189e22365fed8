"""Ensembles of model predictions, on the device: mean, validation-score weighted, stacking.

Implements: :func:`cross_sectional_zscore`, :func:`ensemble_model_weights` (the three methods'
weights for one walk-forward step) and :func:`combine` (all steps, one pass per step).

Models predict on different scales (a forward return, a probability), so every model's
predictions are first z-scored across symbols per date (:func:`cross_sectional_zscore`); an
ensemble is a weighted sum of those z-scores, with weights fixed per walk-forward step:

- ``mean``: equal weights over the models;
- ``weighted``: weights proportional to each model's mean information coefficient on the step's
  validation slice (the end of the train window, predicted by a model fitted before it and its
  purge), negative scores clipped to zero; equal weights when no model scores above zero
  (recorded by the caller through the returned weights);
- ``stacking``: a ridge meta-model (no intercept) from the models' validation z-scores to the
  validation target's per-date z-score, pooled over the slice's (date, symbol) rows, its
  weights shrunk towards the mean ensemble's (scaled by the size of its own least-squares fit) with
  penalty ``alpha`` per row: the models' z-scores are nearly collinear, and an unshrunk
  meta-model trades them off against each other on noise. The validation predictions are out of
  sample for the models that made them and every validation label ends before the test window
  (the purge), so the meta-model sees nothing of
  the test period: no leakage.

The weights of every step are returned, so the report can show what each ensemble did.
"""
from __future__ import annotations

import numpy as np

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.models.scoring import information_coefficient

ENSEMBLE_METHODS = ("mean", "weighted", "stacking")


def cross_sectional_zscore(x):
    """Per-date z-score across symbols: ``(x - mean) / std`` (population std) over each row's
    finite values; NaN stays NaN, a row with no spread becomes 0.

    Parameters
    ----------
    x : array (..., n_bars, n_symbols)
    """
    xp = namespace(x)
    ok = xp.isfinite(x)
    n = ok.sum(axis=-1, keepdims=True)
    xz = xp.where(ok, x, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = xz.sum(axis=-1, keepdims=True) / n
        var = (xp.where(ok, x - mean, 0.0) ** 2).sum(axis=-1, keepdims=True) / n
        std = xp.sqrt(var)
        z = xp.where(std > 0, (x - mean) / xp.where(std > 0, std, 1.0), 0.0)
    return xp.where(ok, z, xp.nan)


def ensemble_model_weights(method: str, validation, val_target, *, alpha: float = 1.0, min_symbols: int = 5):
    """One step's model weights (host float64 array of shape (n_models,)) and a note.

    Parameters
    ----------
    method : "mean", "weighted" or "stacking"
    validation : array (n_models, n_val_rows, n_symbols): validation predictions, or None
    val_target : array (n_val_rows, n_symbols): the validation rows' realised target
    alpha : ridge penalty of the stacking meta-model (on z-scored inputs)
    min_symbols : dates with fewer symbols have no IC (``weighted``)

    Returns
    -------
    (weights, note) : note is "" or why the method fell back to equal weights.
    """
    if method not in ENSEMBLE_METHODS:
        raise ValueError(f"unknown ensemble method {method!r}; expected one of {ENSEMBLE_METHODS}")
    if validation is None:
        n_models = None
    else:
        n_models = validation.shape[0]
    if method == "mean" or validation is None:
        if method != "mean":
            return None, "no validation slice: equal weights"
        return None, ""
    xp = namespace(validation)
    equal = np.full(n_models, 1.0 / n_models)
    if method == "weighted":
        scores = np.array([float(_nanmean(xp, information_coefficient(validation[m], val_target,
                                                                      min_symbols=min_symbols)))
                           for m in range(n_models)])
        pos = np.where(np.isfinite(scores), np.maximum(scores, 0.0), 0.0)
        if pos.sum() <= 0:
            return equal, "no model has a positive validation IC: equal weights"
        return pos / pos.sum(), ""
    z = cross_sectional_zscore(validation)  # (M, n, S)
    t = cross_sectional_zscore(val_target)
    ok = xp.isfinite(t) & xp.isfinite(z).all(axis=0)
    if int(ok.sum()) <= n_models:
        return equal, "too few validation rows for stacking: equal weights"
    A = z[:, ok].T  # (rows, M)
    b = t[ok]
    # min |b - A w|^2 + alpha * n * |w - w_eq|^2, w_eq = equal weights scaled to A's fit: the
    # models' z-scores are nearly collinear, and an unshrunk fit trades them off against each
    # other on noise. The penalty is per row, so alpha means the same for any slice size.
    n = A.shape[0]
    eq = xp.full(n_models, 1.0 / n_models, dtype=A.dtype)
    ae = A @ eq
    eq = eq * abs(float((ae @ b) / (ae @ ae))) if float(ae @ ae) > 0 else eq
    lam = alpha * n
    coef = xp.linalg.solve(A.T @ A + lam * xp.eye(n_models, dtype=A.dtype), A.T @ b + lam * eq)
    w = np.asarray(coef.get() if hasattr(coef, "get") else coef, dtype=np.float64)
    return w, ""


def _nanmean(xp, x):
    ok = xp.isfinite(x)
    return (xp.where(ok, x, 0.0).sum() / ok.sum()) if bool(ok.any()) else xp.nan


def combine(predictions, weights):
    """Weighted sum of the models' cross-sectional z-scores.

    Parameters
    ----------
    predictions : array (n_models, n_rows, n_symbols)
    weights : (n_models,) weights, or None for the mean of the available models

    Returns
    -------
    array (n_rows, n_symbols): ``sum_m w_m z_m`` over the models with a prediction at that
    (row, symbol), the weights renormalised by the sum of their absolute values over those
    models (so a symbol one model could not fit still gets the others' ensemble); NaN where no
    model predicts.
    """
    xp = namespace(predictions)
    z = cross_sectional_zscore(predictions)
    ok = xp.isfinite(z)
    m = predictions.shape[0]
    w = xp.full(m, 1.0 / m, dtype=z.dtype) if weights is None else xp.asarray(weights, dtype=z.dtype)
    w = w[:, None, None]
    num = (xp.where(ok, z, 0.0) * w).sum(axis=0)
    den = (ok * xp.abs(w)).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return xp.where(den > 0, num / xp.where(den > 0, den, 1.0) * xp.abs(w).sum(), xp.nan)
