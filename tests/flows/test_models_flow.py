import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


@pytest.mark.slow
def test_models_flow_in_ephemeral_prefect(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from flows.models import models_flow

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"columns": {"timestamp": "date", "symbol": "Name"}},
                                   "models": {"walk_forward": {"train_bars": 252, "test_bars": 252},
                                              "models": [{"kind": "ridge"}, {"kind": "logistic"},
                                                         {"kind": "random_forest", "scope": "pooled",
                                                          "n_estimators": 5}]}}))
    state = models_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), config_path=str(cfg),
                        backend="cpu", return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] and manifest["pipeline"] == "models"
    assert {"load_validate", "features", "walk_forward", "ensemble", "evaluate", "backtest"} <= set(manifest["stages"])
    pred = pd.read_parquet(out / "predictions.parquet")
    assert {"ridge", "logistic", "random_forest", "ensemble_mean", "target"} <= set(pred.columns)


def test_prefect_yaml_models_deployment_is_valid():
    """Offline: the ad-hoc models deployment's entrypoint and parameters."""
    import importlib

    from prefect.flows import Flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "models")
    module, _, attr = dep["entrypoint"].partition(":")
    flow = getattr(importlib.import_module(module.removesuffix(".py").replace("/", ".")), attr)
    assert isinstance(flow, Flow)
    assert set(dep["parameters"]) <= set(flow.parameters.properties)
    assert "schedules" not in dep
    assert (ROOT / dep["parameters"]["data_path"]).exists()
