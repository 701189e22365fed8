"""Per-symbol models fitted for every symbol at once: batched over the symbol axis in xp.

Implements: :func:`standardise` (scikit-learn's ``StandardScaler`` per symbol),
:func:`fit_ridge` (``Ridge``: batched normal equations), :func:`fit_logistic` (L2
``LogisticRegression``: batched Newton / IRLS), :func:`fit_knn` (``KNeighborsRegressor``,
uniform weights, brute force: batched matrix products, a partial sort and exact distances
where the k-th neighbour is tied) and the fitted
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


def _host_threads(xp, tasks: int) -> int:
    """Threads for independent NumPy blocks: the cores this process may use (at most 8); 1 on a
    device, whose kernels already fill it."""
    if xp is not np or tasks < 2:
        return 1
    import os

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(8, cores, tasks))


def _in_host_chunks(fit, X, y, mask, **params) -> "LinearModel":
    """``fit(X, y, mask, **params)`` over contiguous ranges of symbols on the host's threads (one
    BLAS thread each), joined: every symbol's model depends on its own rows only (each step is a
    per-symbol product, solve or reduction), so the chunks give the same bits as one batch, and
    the chunking follows the cores, not the data. On a device: one batch."""
    xp = namespace(X)
    n_sym = X.shape[0]
    workers = _host_threads(xp, n_sym // 32)  # below ~32 symbols a chunk the threads cost more than they save
    if workers < 2:
        return fit(X, y, mask, **params)
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    cuts = [(n_sym * i) // workers for i in range(workers + 1)]
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
        parts = list(pool.map(lambda ab: fit(X[ab[0]:ab[1]], y[ab[0]:ab[1]], mask[ab[0]:ab[1]], **params),
                              zip(cuts[:-1], cuts[1:])))
    cat = np.concatenate
    return LinearModel(parts[0].kind, cat([m.coef for m in parts]), cat([m.intercept for m in parts]),
                       Scaler(cat([m.scaler.mean for m in parts]), cat([m.scaler.scale for m in parts])),
                       cat([m.fitted for m in parts]))


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
    full-size elementwise passes are made, in place where they can be: these dominate the fit's
    cost, and each fresh full-size array costs its page faults too.
    """
    xp = namespace(X)
    w = mask.astype(X.dtype)
    n = xp.maximum(w.sum(axis=1), 1.0)[:, None]
    D = xp.where(mask[:, :, None], X, 0.0)
    mean = (w[:, None, :] @ D)[:, 0, :] / n
    D -= mean[:, None, :]
    var = (w[:, None, :] @ (D * D))[:, 0, :] / n
    eps = np.finfo(np.float64).eps
    # scikit-learn's _is_constant_feature: the variance is zero within its rounding error.
    upper = n * eps * var + (n * mean * eps) ** 2
    scale = xp.where(var <= upper, 1.0, xp.sqrt(var))
    # D * (w / scale) with w in {0, 1}, bit for bit: (D / scale) * w, where D * 0 keeps D's sign
    D *= (1.0 / scale)[:, None, :]
    D *= w[:, :, None]
    return Scaler(mean, scale), D


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
    return _in_host_chunks(_fit_ridge, X, y, mask, alpha=alpha, min_rows=min_rows)


def _fit_ridge(X, y, mask, *, alpha: float, min_rows: int) -> LinearModel:
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
    return _in_host_chunks(_fit_logistic, X, y, mask, C=C, max_iter=max_iter, tol=tol, min_rows=min_rows)


def _fit_logistic(X, y, mask, *, C: float, max_iter: int, tol: float, min_rows: int) -> LinearModel:
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

    Neighbours are scikit-learn's (brute force, Euclidean, as ``KNeighborsRegressor`` picks for
    the pipeline's 17 features): the k training rows nearest to a query; among rows tied at the
    k-th distance, the lower training indices. (scikit-learn keeps its k in a max-heap, and a
    nearer row evicts whichever tied row sits at the root, so its choice among tied rows follows
    the heap: the lower index for k = 1 only. The k distances are the same either way.)

    How, for all symbols at once (NumPy or CuPy, no loop over symbols or queries):

    1. one batched matrix product per block of symbols and queries gives the surrogate distance
       ``s = |x|^2 / 2 - q.x`` (``|q - x|^2 / 2`` less ``|q|^2 / 2``, the same for every
       training row of a query, so the same order), +inf on masked training rows;
    2. ``partition`` at k gives each query's k-th and (k+1)-th smallest surrogates, and the rows
       at or below the k-th are its k nearest;
    3. the product rounds: each ``s`` is within ``E = gamma_(f+2) (|q| R + R^2)`` of its exact
       value (``R`` the symbol's largest training row norm, the standard dot-product bound). Where
       the gap between the (k+1)-th surrogate and the largest of the first k exceeds ``2 E``, no
       rounding can reorder the boundary and the k are the exact k nearest; elsewhere (an exact
       or near tie at the k-th distance: duplicated rows, discrete features) the query's
       distances to every training row are recomputed as ``sum((q - x)^2)`` and ordered by a
       stable sort, so ties go to the lower index.

    scikit-learn selects by the same kind of matrix-product surrogate, so for two rows whose
    distances differ only in the last bits its choice follows its own rounding; this one
    follows the recomputed distance. ``tests/transforms/models/test_knn.py`` checks ties made on
    purpose: the same k distances as scikit-learn, the same rows where the k-th is not tied.

    Attributes
    ----------
    n_neighbors : k
    train : array (n_symbols, n_rows, n_features), standardised (0 on masked rows)
    target : array (n_symbols, n_rows)
    mask : bool array (n_symbols, n_rows)
    scaler : :class:`Scaler`
    fitted : bool array (n_symbols,)
    max_elements : largest distance block (symbols x queries x training rows) built at once:
        a few such blocks are alive at a time per thread (the surrogates, their partition, a
        mask); the default (2 MiB of float64) keeps them in cache, measured faster than larger
        blocks. On the host the blocks run on a thread per core (at most 8), with one BLAS
        thread each: NumPy releases the GIL in every step of a block, and BLAS threads on top
        of them only contend (measured on 2 cores: 2.41 s one thread, 2.59 s with BLAS's own
        threads too, 1.94 s this way, for the S&P 500 walk-forward's KNN)
    """

    n_neighbors: int
    train: object
    target: object
    mask: object
    scaler: Scaler
    fitted: object
    max_elements: int = 262_144

    def neighbours(self, X):
        """Indices (n_symbols, n_queries, k) of each query's k nearest training rows, in ascending
        index order (the set; ties at the k-th distance to the lower index). Rows of queries with
        NaN features and of unfitted symbols are unspecified."""
        xp = namespace(X)
        Q = self.scaler.transform(X)
        n_sym, n_q, n_feat = Q.shape
        n_tr = self.train.shape[1]
        k = int(self.n_neighbors)
        out = xp.zeros((n_sym, n_q, k), dtype=xp.int64)
        if k > n_tr or n_sym * n_q == 0:  # no symbol has k training rows: nothing is fitted
            return out
        dtype = self.train.dtype
        ok_q = xp.isfinite(Q).all(axis=2)
        Q = xp.where(ok_q[:, :, None], Q, 0.0)
        sq = xp.einsum("snf,snf->sn", self.train, self.train)
        half = xp.where(self.mask, 0.5 * sq, xp.inf)  # masked training rows are never near
        radius = xp.sqrt(xp.where(self.mask, sq, 0.0).max(axis=1))[:, None]
        q_norm = xp.sqrt(xp.einsum("sqf,sqf->sq", Q, Q))
        eps = float(np.finfo(dtype).eps)
        gamma = (n_feat + 2) * eps / (1.0 - (n_feat + 2) * eps)
        tie_gap = 2.0 * 1.01 * gamma * (q_norm * radius + radius * radius)  # (n_sym, n_q); 1.01: sqrt's rounding
        first_k = xp.arange(n_tr) < k
        unsure = xp.zeros((n_sym, n_q), dtype=bool)
        budget = max(1, int(self.max_elements))
        q_step = n_q if n_q * n_tr <= budget else max(1, budget // n_tr)
        s_step = max(1, budget // (q_step * n_tr))

        def block(a: int, c: int) -> None:
            b, d = min(n_sym, a + s_step), min(n_q, c + q_step)
            if k == n_tr:
                out[a:b, c:d] = xp.arange(n_tr, dtype=xp.int64)
                return
            s = Q[a:b, c:d] @ self.train[a:b].transpose(0, 2, 1)
            xp.subtract(half[a:b, None, :], s, out=s)
            # The k-th and (k+1)-th smallest values; partitioning values is about twice as
            # fast as argpartition, and the k indices then come from one comparison, in
            # ascending order (row-major nonzero) with no sort.
            v = xp.partition(s, k, axis=2)
            kth = v[:, :, :k].max(axis=2)
            finite = xp.isfinite(kth)  # an unfitted symbol's k-th may be +inf: not sure, not needed
            sure = finite & (v[:, :, k] - xp.where(finite, kth, 0.0) > tie_gap[a:b, c:d])
            # on a sure row exactly k values are <= the k-th: those up to it, none after the gap
            near = s <= kth[:, :, None]
            if not bool(sure.all()):
                near = xp.where(sure[:, :, None], near, first_k)
                unsure[a:b, c:d] = ~sure
            cols = xp.flatnonzero(near) % n_tr
            out[a:b, c:d] = cols.reshape(b - a, d - c, k)

        starts = [(a, c) for a in range(0, n_sym, s_step) for c in range(0, n_q, q_step)]
        workers = _host_threads(xp, len(starts))
        if workers > 1:
            # NumPy releases the GIL in the products, the partition and the comparisons: the
            # blocks (disjoint slices of out and unsure) on the host's cores, as scikit-learn's
            # own neighbour search uses them
            from concurrent.futures import ThreadPoolExecutor

            from threadpoolctl import threadpool_limits

            with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda ac: block(*ac), starts))
        else:
            for a, c in starts:
                block(a, c)
        unsure &= ok_q & self.fitted[:, None]
        if bool(unsure.any()):
            self._exact_neighbours(Q, unsure, out)
        return out

    def _exact_neighbours(self, Q, rows, out):
        """Overwrite ``out`` at the (symbol, query) pairs of ``rows`` with the k nearest by
        ``sum((q - x)^2)`` over every training row, ties to the lower index (stable sort)."""
        xp = namespace(Q)
        si, qi = xp.nonzero(rows)
        n_tr, n_feat = self.train.shape[1], self.train.shape[2]
        k = int(self.n_neighbors)
        step = max(1, int(self.max_elements) // (n_tr * n_feat))
        for r in range(0, int(si.shape[0]), step):
            s_, q_ = si[r:r + step], qi[r:r + step]
            diff = self.train[s_] - Q[s_, q_][:, None, :]
            d2 = xp.where(self.mask[s_], (diff * diff).sum(axis=2), xp.inf)
            out[s_, q_] = xp.sort(xp.argsort(d2, axis=1, kind="stable")[:, :k], axis=1)

    def predict(self, X):
        """Mean target of the k nearest training rows, shape (n_symbols, n_queries); NaN for rows
        with NaN features and unfitted symbols."""
        xp = namespace(X)
        idx = self.neighbours(X)
        y = xp.take_along_axis(self.target[:, None, :], idx.reshape(idx.shape[0], -1)[:, None, :], axis=2)
        pred = y.reshape(idx.shape).mean(axis=2)
        ok = self.fitted[:, None] & xp.isfinite(X).all(axis=2)
        return xp.where(ok, pred, xp.nan)


def fit_knn(X, y, mask, *, n_neighbors: int = 25, min_rows: int = 2, max_elements: int = 262_144) -> KNNModel:
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
