import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipelines.grid import parse_grid

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


@pytest.mark.slow
def test_backtest_flow_in_ephemeral_prefect(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from flows.backtest import backtest_flow

    state = backtest_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), strategy="sma_cross",
                          grid="fast=10,20;slow=50,100", backend="cpu", cluster=None, return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] and manifest["pipeline"] == "backtest"
    assert {"load_validate", "panel", "sweep", "report_tables"} <= set(manifest["stages"])
    assert len(pd.read_parquet(out / "backtest_summary.parquet")) == 4
    assert (out / "sharpe_heatmap.png").exists()


def test_backtest_deployment():
    """The ad-hoc backtest deployment: no schedule, its parameters fit the flow and are valid."""
    from flows.backtest import backtest_flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "backtest")
    assert dep["entrypoint"] == "flows/backtest.py:backtest_flow" and not dep.get("schedules")
    assert set(dep["parameters"]) <= set(backtest_flow.parameters.properties)
    assert (ROOT / dep["parameters"]["data_path"]).exists()
    assert parse_grid(dep["parameters"]["grid"])["fast"][0] == 5
