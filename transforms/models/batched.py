"""Per-symbol models fitted for every symbol at once: batched over the symbol axis in xp.

Implements: :func:`standardise` (scikit-learn's ``StandardScaler`` per symbol),
:func:`fit_ridge` (``Ridge``: batched normal equations), :func:`fit_logistic` (L2
``LogisticRegression``: batched Newton / IRLS), :func:`fit_knn` (``KNeighborsRegressor``,
uniform weights, brute force: batched distance matrices and a top-k) and the fitted
:class:`LinearModel` / :class:`KNNModel` whose ``predict`` serves all symbols in one pass.

A researcher would fit ``make_pipeline(StandardScaler(), Ridge(alpha))`` (or the logistic/KNN
equivalent) once per symbol in a Python loop; here symbol ``s`` of a batch gets the same model,
fitted on its own valid rows, with one array operation per step for all symbols: the same
numbers (``tests/transforms/models/test_walkforward.py`` compares against scikit-learn: ridge within
1e-8 in float64, logistic within ~1e-6 of a tightly converged lbfgs, KNN the same neighbours).

Shapes: ``X`` is (n_symbols, n_rows, n_features), ``y`` and ``mask`` (n_symbols, n_rows);
``mask`` marks the rows a symbol trains on (finite features and target). Rows outside the mask
never influence that symbol's model. A symbol with fewer than ``min_rows`` valid rows (or, for
the logistic model, a single class) is not fitted: its predictions are NaN, and ``fitted``
says which symbols are.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphapulse.transforms.arrays import namespace


@dataclass
class Scaler:
    """Per-symbol feature means and scales, each of shape (n_symbols, n_features)."""

    mean: object
    scale: object

    def transform(self, X):
        """``(X - mean) / scale`` for X of shape (n_symbols, n_rows, n_features)."""
        return (X - self.mean[:, None, :]) / self.scale[:, None, :]


def standardise(X, mask) -> Scaler:
    """``StandardScaler`` statistics of each symbol's valid rows (population std; a constant
    feature gets scale 1, as scikit-learn's ``_handle_zeros_in_scale``)."""
    return _standardised(X, mask)[0]


def _standardised(X, mask):
    """(Scaler, Z): the statistics and the standardised rows, masked rows exactly 0.

    Sums over rows are batched matrix products with the 0/1 row weights (BLAS), and only a few
    full-size elementwise passes are made: these dominate the fit's cost.
    """
    xp = namespace(X)
    w = mask.astype(X.dtype)
    n = xp.maximum(w.sum(axis=1), 1.0)[:, None]
    Xz = xp.where(mask[:, :, None], X, 0.0)
    mean = (w[:, None, :] @ Xz)[:, 0, :] / n
    D = Xz - mean[:, None, :]
    var = (w[:, None, :] @ (D * D))[:, 0, :] / n
    eps = np.finfo(np.float64).eps
    # scikit-learn's _is_constant_feature: the variance is zero within its rounding error.
    upper = n * eps * var + (n * mean * eps) ** 2
    scale = xp.where(var <= upper, 1.0, xp.sqrt(var))
    Z = D * (w[:, :, None] / scale[:, None, :])
    return Scaler(mean, scale), Z


@dataclass
class LinearModel:
    """A batch of fitted linear models on standardised features.

    Attributes
    ----------
    kind : "ridge" (predicts the target) or "logistic" (predicts P(y = 1))
    coef : array (n_symbols, n_features), on the standardised features
    intercept : array (n_symbols,)
    scaler : the per-symbol :class:`Scaler`
    fitted : bool array (n_symbols,)
    """

    kind: str
    coef: object
    intercept: object
    scaler: Scaler
    fitted: object

    def decision(self, X):
        """``standardise(X) @ coef + intercept``, shape (n_symbols, n_rows)."""
        xp = namespace(X)
        Z = self.scaler.transform(X)
        out = (Z @ self.coef[:, :, None])[:, :, 0] + self.intercept[:, None]
        return xp.where(self.fitted[:, None], out, xp.nan)

    def predict(self, X):
        """Predictions for X of shape (n_symbols, n_rows, n_features): the target (ridge) or the
        probability of class 1 (logistic); NaN for unfitted symbols and rows with NaN features."""
        d = self.decision(X)
        if self.kind == "logistic":
            xp = namespace(d)
            return 1.0 / (1.0 + xp.exp(-d))
        return d


def _valid_rows(X, y, mask, min_rows: int):
    xp = namespace(X)
    mask = mask & xp.isfinite(y) & xp.isfinite(X).all(axis=2)
    fitted = mask.sum(axis=1) >= max(int(min_rows), 2)
    return mask, fitted


def fit_ridge(X, y, mask, *, alpha: float = 1.0, min_rows: int = 2) -> LinearModel:
    """``StandardScaler`` + ``Ridge(alpha)`` per symbol (intercept unpenalised).

    Parameters
    ----------
    X : array (n_symbols, n_rows, n_features)
    y : array (n_symbols, n_rows)
    mask : bool array (n_symbols, n_rows): rows to train on (NaN rows are dropped anyway)
    alpha : L2 penalty on the standardised coefficients
    min_rows : symbols with fewer valid rows are not fitted
    """
    xp = namespace(X)
    mask, fitted = _valid_rows(X, y, mask, min_rows)
    scaler, Z = _standardised(X, mask)
    w = mask.astype(X.dtype)
    n = xp.maximum(w.sum(axis=1), 1.0)
    yz = xp.where(mask, y, 0.0)
    y_mean = yz.sum(axis=1) / n
    yc = xp.where(mask, yz - y_mean[:, None], 0.0)
    Zt = Z.transpose(0, 2, 1)
    # Z is centred on the valid rows up to rounding; Ridge centres again: sum (z - zbar)(z - zbar)'
    # = Z'Z - n zbar zbar', and sum (z - zbar)(y - ybar) = Z'(y - ybar).
    z_mean = (w[:, None, :] @ Z)[:, 0, :] / n[:, None]
    n_feat = X.shape[2]
    A = Zt @ Z - n[:, None, None] * (z_mean[:, :, None] * z_mean[:, None, :]) \
        + alpha * xp.eye(n_feat, dtype=X.dtype)[None]
    b = (Zt @ yc[:, :, None])[:, :, 0]
    coef = xp.linalg.solve(A, b[:, :, None])[:, :, 0]
    intercept = y_mean - (z_mean * coef).sum(axis=1)
    return LinearModel("ridge", coef, intercept, scaler, fitted)


def fit_logistic(X, y, mask, *, C: float = 1.0, max_iter: int = 100, tol: float = 1e-10,
                 min_rows: int = 2) -> LinearModel:
    """``StandardScaler`` + L2 ``LogisticRegression(C)`` per symbol, by batched Newton steps.

    Minimises ``C * sum(log-loss) + ||coef||^2 / 2`` (scikit-learn's objective; the intercept is
    not penalised). The objective is strictly convex in the coefficients, so Newton's method
    from zero converges quadratically; it stops when every symbol's largest step is below
    ``tol`` (at least 100 machine epsilons of the dtype) or after ``max_iter`` steps.

    Parameters
    ----------
    X : array (n_symbols, n_rows, n_features)
    y : array (n_symbols, n_rows) of 0/1 labels (any value > 0 counts as 1)
    mask : bool array (n_symbols, n_rows)
    C : inverse regularisation strength
    """
    xp = namespace(X)
    labels = xp.where(xp.isfinite(y), (y > 0).astype(X.dtype), xp.nan)
    mask, fitted = _valid_rows(X, labels, mask, min_rows)
    w = mask.astype(X.dtype)
    pos = (w * xp.where(mask, labels, 0.0)).sum(axis=1)
    fitted = fitted & (pos > 0) & (pos < w.sum(axis=1))  # both classes present
    scaler, Z = _standardised(X, mask)
    n_sym, n_rows, n_feat = X.shape
    Z1 = xp.concatenate([Z, xp.ones((n_sym, n_rows, 1), dtype=X.dtype)], axis=2)
    Z1t = Z1.transpose(0, 2, 1)
    t = xp.where(mask, labels, 0.0)
    penalty = xp.full(n_feat + 1, 1.0 / C, dtype=X.dtype)
    penalty[-1] = 0.0
    eye = xp.eye(n_feat + 1, dtype=X.dtype)
    beta = xp.zeros((n_sym, n_feat + 1), dtype=X.dtype)
    active = fitted.copy()
    tol = max(float(tol), 100 * float(np.finfo(X.dtype).eps))  # float32 cannot step below ~1e-5
    for _ in range(int(max_iter)):
        p = 1.0 / (1.0 + xp.exp(-(Z1 @ beta[:, :, None])[:, :, 0]))
        grad = (Z1t @ (w * (p - t))[:, :, None])[:, :, 0] + penalty * beta
        H = Z1t @ (Z1 * (w * p * (1.0 - p))[:, :, None]) + xp.diag(penalty)[None]
        # Symbols that are done (or never fitted) take a zero step on an identity system.
        H = xp.where(active[:, None, None], H, eye[None])
        grad = xp.where(active[:, None], grad, 0.0)
        step = xp.linalg.solve(H, grad[:, :, None])[:, :, 0]
        beta = beta - step
        active = active & (xp.abs(step).max(axis=1) > tol)
        if not bool(active.any()):
            break
    return LinearModel("logistic", beta[:, :-1], beta[:, -1], scaler, fitted)


@dataclass
class KNNModel:
    """Batched k-nearest-neighbour regressors: each symbol's standardised training rows.

    Attributes
    ----------
    n_neighbors : k
    train : array (n_symbols, n_rows, n_features), standardised (0 on masked rows)
    target : array (n_symbols, n_rows)
    mask : bool array (n_symbols, n_rows)
    scaler : :class:`Scaler`
    fitted : bool array (n_symbols,)
    max_elements : largest distance block (symbols x queries x training rows) built at once
    """

    n_neighbors: int
    train: object
    target: object
    mask: object
    scaler: Scaler
    fitted: object
    max_elements: int = 50_000_000

    def neighbours(self, X):
        """Indices (n_symbols, n_queries, k) of each query's k nearest training rows (brute force,
        Euclidean on standardised features; the set, in no particular order)."""
        xp = namespace(X)
        Q = self.scaler.transform(X)
        n_sym, n_q, _ = Q.shape
        n_tr = self.train.shape[1]
        k = self.n_neighbors
        out = xp.zeros((n_sym, n_q, k), dtype=xp.int64)
        per = max(1, int(self.max_elements) // max(1, n_q * n_tr))
        tr_sq = (self.train ** 2).sum(axis=2)
        for a in range(0, n_sym, per):
            b = min(n_sym, a + per)
            q = xp.where(xp.isfinite(Q[a:b]), Q[a:b], 0.0)
            # |q|^2 + |x|^2 - 2 q.x, scikit-learn's euclidean_distances expansion
            d2 = (q ** 2).sum(axis=2)[:, :, None] + tr_sq[a:b, None, :] - 2.0 * (q @ self.train[a:b].transpose(0, 2, 1))
            d2 = xp.where(self.mask[a:b, None, :], d2, xp.inf)
            out[a:b] = xp.argpartition(d2, k - 1, axis=2)[:, :, :k]
        return out

    def predict(self, X):
        """Mean target of the k nearest training rows, shape (n_symbols, n_queries); NaN for rows
        with NaN features and unfitted symbols."""
        xp = namespace(X)
        idx = self.neighbours(X)
        y = xp.take_along_axis(self.target[:, None, :], idx.reshape(idx.shape[0], -1)[:, None, :], axis=2)
        pred = y.reshape(idx.shape).mean(axis=2)
        ok = self.fitted[:, None] & xp.isfinite(X).all(axis=2)
        return xp.where(ok, pred, xp.nan)


def fit_knn(X, y, mask, *, n_neighbors: int = 25, min_rows: int = 2, max_elements: int = 50_000_000) -> KNNModel:
    """``StandardScaler`` + ``KNeighborsRegressor(n_neighbors)`` per symbol (uniform weights).

    Parameters
    ----------
    X : array (n_symbols, n_rows, n_features)
    y : array (n_symbols, n_rows)
    mask : bool array (n_symbols, n_rows)
    n_neighbors : k; symbols with fewer than ``max(k, min_rows)`` valid rows are not fitted
    max_elements : bound on one distance block (memory), see :class:`KNNModel`
    """
    xp = namespace(X)
    mask, fitted = _valid_rows(X, y, mask, max(int(min_rows), int(n_neighbors)))
    scaler, Z = _standardised(X, mask)
    return KNNModel(int(n_neighbors), Z, xp.where(mask, y, 0.0), mask, scaler, fitted, int(max_elements))
