"""Backend-chosen estimators more than one pipeline uses: cuML on the GPU, scikit-learn on the CPU.

Implements :func:`kmeans_model` (the portfolio's regimes cluster with it). The prediction models'
factory and their files stay in the models room (:mod:`alphapulse.pipelines.models.estimators`).
cuML is imported only when a GPU model is asked for, so a CPU machine never needs it.
"""
from __future__ import annotations

__all__ = ["kmeans_model"]


def kmeans_model(n_clusters: int, *, seed: int = 0, backend: str = "cpu", n_init: int = 10, max_iter: int = 300,
                 tol: float = 1e-4):
    """An unfitted KMeans clusterer (k-means++ initialisation, ``n_init`` restarts, seeded).

    Parameters
    ----------
    n_clusters : int
    seed : int, default 0
        ``random_state`` of the initialisation.
    backend : {"cpu", "gpu"}
        "gpu": ``cuml.cluster.KMeans`` (its scalable k-means++ initialisation); "cpu":
        ``sklearn.cluster.KMeans``.
    n_init, max_iter, tol : passed to both.
    """
    if n_clusters < 1:
        raise ValueError(f"n_clusters must be at least 1, got {n_clusters}")
    if backend == "gpu":
        from cuml.cluster import KMeans as CuKMeans

        return CuKMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, max_iter=max_iter, tol=tol,
                        output_type="numpy")
    if backend != "cpu":
        raise ValueError(f"backend must be 'cpu' or 'gpu', got {backend!r}")
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=n_clusters, random_state=seed, n_init=n_init, max_iter=max_iter, tol=tol)


# ---------------------------------------------------------------------------------------------
# Prediction models: one factory, scikit-learn on the CPU, cuML on the GPU, same parameters
# ---------------------------------------------------------------------------------------------
