"""The portfolio pipeline on CuPy/cuML agrees with the CPU run (skips without a GPU)."""
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from alphapulse.pipelines.runtime.backend import probe_gpu
from alphapulse.pipelines.portfolio.pipeline import prepare_portfolio, run_portfolio
from tests.pipelines.portfolio.test_portfolio_pipeline import SAMPLE, _config

GPU, WHY = probe_gpu("auto")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(GPU is None, reason=f"no usable GPU: {WHY}")]


def test_portfolio_gpu_agrees_with_cpu(tmp_path):
    pytest.importorskip("cuml")
    cfg = _config(monte_carlo={"n_paths": 20000, "models": ["normal"], "horizons_bars": [1]})
    cpu = run_portfolio(prepare_portfolio(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "cpu"), backend="cpu"))
    gpu = run_portfolio(prepare_portfolio(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "gpu"), backend="gpu"))
    assert gpu.manifest["backend"]["name"] == "gpu"
    assert gpu.manifest["excluded"] == cpu.manifest["excluded"]
    for name in ("covariance.parquet", "correlation.parquet"):
        pd.testing.assert_frame_equal(gpu.tables[name], cpu.tables[name], check_exact=False, rtol=1e-9, atol=1e-12)
    w_cpu = cpu.tables["weights.parquet"].set_index(["method", "symbol"])["weight"]
    w_gpu = gpu.tables["weights.parquet"].set_index(["method", "symbol"])["weight"]
    np.testing.assert_allclose(w_gpu.loc[w_cpu.index], w_cpu, atol=1e-6)
    labels_cpu = cpu.tables["regimes.parquet"]["regime"]
    labels_gpu = gpu.tables["regimes.parquet"]["regime"]
    assert adjusted_rand_score(labels_cpu, labels_gpu) > 0.9
