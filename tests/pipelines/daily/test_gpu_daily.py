"""The daily pipeline on cuDF/CuPy equals the CPU run (skips without a GPU)."""
import pandas as pd
import pytest

from alphapulse.pipelines.runtime.backend import probe_gpu
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
from tests.pipelines.conftest import SAMPLE

GPU, WHY = probe_gpu("auto")
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(GPU is None, reason=f"no usable GPU: {WHY}")]


def test_daily_gpu_equals_cpu(tmp_path):
    cfg = load_config()
    cpu = run_daily(prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "cpu"), backend="cpu"))
    gpu = run_daily(prepare_daily(cfg, data_path=str(SAMPLE), out_dir=str(tmp_path / "gpu"), backend="gpu"))
    assert gpu.manifest["backend"]["name"] == "gpu"
    assert gpu.manifest["input"] == cpu.manifest["input"]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "gpu" / "rejected.parquet"),
                                  pd.read_parquet(tmp_path / "cpu" / "rejected.parquet"))
    # float64 on both; fused multiply-adds on the GPU may differ in the last bits
    pd.testing.assert_frame_equal(gpu.indicators, cpu.indicators, check_exact=False, rtol=1e-9, atol=1e-12)
