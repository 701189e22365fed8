"""The per-symbol fits on the host's threads give the same bits as one batch: every symbol's
model depends on its own rows only, so the chunking (which follows the cores) cannot show."""
from __future__ import annotations

import numpy as np
import pytest

from alphapulse.transforms.models import batched


@pytest.mark.parametrize("fit, params", [(batched.fit_ridge, {"alpha": 0.5}), (batched.fit_logistic, {"C": 2.0})])
def test_chunks_on_threads_equal_one_batch(monkeypatch, fit, params):
    rng = np.random.default_rng(1)
    X = rng.normal(size=(150, 300, 9))
    y = X[:, :, 0] * 0.3 + rng.normal(size=(150, 300))
    mask = rng.random((150, 300)) > 0.1
    X[5, :40] = np.nan
    y[7] = 1.0  # one class only: not fitted (logistic)
    models = {}
    for threads in (1, 3, 4):
        monkeypatch.setattr(batched, "_host_threads", lambda xp, tasks, n=threads: n)
        models[threads] = fit(X, y, mask, **params)
    for threads in (3, 4):
        for field in ("coef", "intercept", "fitted"):
            np.testing.assert_array_equal(getattr(models[threads], field), getattr(models[1], field))
        np.testing.assert_array_equal(models[threads].scaler.mean, models[1].scaler.mean)
        np.testing.assert_array_equal(models[threads].scaler.scale, models[1].scaler.scale)
    assert models[1].fitted.sum() >= 148
