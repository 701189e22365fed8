import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


def _fast_config(tmp_path) -> Path:
    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"columns": {"timestamp": "date", "symbol": "Name"}},
                                   "models": {"walk_forward": {"train_bars": 252, "test_bars": 252},
                                              "models": [{"kind": "ridge"}, {"kind": "logistic"},
                                                         {"kind": "random_forest", "scope": "pooled",
                                                          "n_estimators": 5}]}}))
    return cfg


@pytest.mark.slow
def test_models_flow_in_ephemeral_prefect_cached_rerun(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from alphapulse.flows.models import models_flow

    cfg = _fast_config(tmp_path)
    state = models_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), config_path=str(cfg),
                        backend="cpu", cluster=None, return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] and manifest["pipeline"] == "models" and not manifest["cached_compute"]
    assert {"load_validate", "features", "walk_forward", "ensemble", "evaluate", "backtest"} <= set(manifest["stages"])
    pred = pd.read_parquet(out / "predictions.parquet")
    assert {"ridge", "logistic", "random_forest", "ensemble_mean", "target"} <= set(pred.columns)

    # the same input and config again: the walk-forward comes from Prefect's cache, same tables
    again = Path(models_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "again"), config_path=str(cfg),
                             backend="cpu", cluster=None))
    m2 = json.loads((again / "manifest.json").read_text())
    assert m2["cached_compute"] and "walk_forward" not in m2["stages"]
    for name in ("predictions.parquet", "model_scores.parquet", "backtest.parquet"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.slow
def test_models_flow_on_processes_equals_in_process(prefect_ephemeral, tmp_path):
    """On a LocalCluster of processes the models are the same as in-process. Each run reads its
    own copy of the input, so the fingerprints differ and neither is served from the cache."""
    import shutil

    from alphapulse.flows.models import models_flow

    cfg = _fast_config(tmp_path)
    outs = []
    for mode in ("processes", "none"):
        data = tmp_path / f"bars-{mode}.parquet"
        shutil.copy(SAMPLE, data)
        outs.append(Path(models_flow(data_path=str(data), out_dir=str(tmp_path / mode), config_path=str(cfg),
                                     backend="cpu", cluster=mode)))
    manifests = [json.loads((o / "manifest.json").read_text()) for o in outs]
    assert not any(m["cached_compute"] for m in manifests)
    # byte for byte: BLAS runs on one thread in either mode and the forest sums its trees in order
    for name in ("predictions.parquet", "model_scores.parquet", "ensemble_weights.parquet", "backtest.parquet",
                 "model_random_forest.skops"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name


def test_prefect_yaml_models_deployment_is_valid():
    """Offline: the ad-hoc models deployment's entrypoint and parameters."""
    from prefect.flows import Flow, load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "models")
    flow = load_flow_from_entrypoint(dep["entrypoint"])  # as `prefect deploy` and a worker load it
    assert isinstance(flow, Flow)
    assert set(dep["parameters"]) <= set(flow.parameters.properties)
    assert "schedules" not in dep
    assert (ROOT / dep["parameters"]["data_path"]).exists()
