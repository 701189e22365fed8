import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


@pytest.mark.slow
def test_portfolio_flow_in_ephemeral_prefect(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from alphapulse.flows.portfolio import portfolio_flow

    cfg = tmp_path / "fast.yaml"
    cfg.write_text(yaml.safe_dump({"data": {"columns": {"timestamp": "date", "symbol": "Name"}},
                                   "portfolio": {"regimes": {"n_init": 2},
                                                 "monte_carlo": {"n_paths": 2000, "models": ["normal"]}}}))
    state = portfolio_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), config_path=str(cfg),
                           backend="cpu", return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] and manifest["pipeline"] == "portfolio"
    assert {"load_validate", "returns", "covariance", "optimise", "correlation", "regimes",
            "monte_carlo"} <= set(manifest["stages"])
    assert "APTV" in manifest["excluded"]
    w = pd.read_parquet(out / "weights.parquet")
    assert set(w["method"]) >= {"hrp", "ensemble"}


def test_prefect_yaml_portfolio_deployment_is_valid():
    """Offline: the weekly portfolio deployment's entrypoint, parameters and schedule."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow, load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "portfolio-weekly")
    flow = load_flow_from_entrypoint(dep["entrypoint"])  # as `prefect deploy` and a worker load it
    assert isinstance(flow, Flow)
    assert set(dep["parameters"]) <= set(flow.parameters.properties)
    (sched,) = dep["schedules"]
    assert sched["cron"] == "0 23 * * 5"
    CronSchedule(cron=sched["cron"], timezone=sched.get("timezone"))
    assert (ROOT / dep["parameters"]["data_path"]).exists()


@pytest.mark.slow
def test_portfolio_walk_forward_as_a_flow_parameter(prefect_ephemeral, tmp_path):
    """``walk_forward=True`` (the ``portfolio-walk-forward`` deployment): the out-of-sample tables
    beside the usual report, every method at every rebalance date."""
    from alphapulse.flows.portfolio import portfolio_flow

    out = Path(portfolio_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "wf"), backend="cpu", walk_forward=True))
    for name in ("rebalance_weights.parquet", "wf_returns.parquet", "wf_metrics.parquet", "wf_fallbacks.parquet",
                 "weights.parquet"):
        assert (out / name).is_file(), name
    wf = json.loads((out / "manifest.json").read_text())["walk_forward"]
    assert wf["train_bars"] == 756 and wf["rebalance"] == "month_end" and wf["rebalances"]["min_variance"] > 10
    w = pd.read_parquet(out / "rebalance_weights.parquet")
    sums = w.groupby(["date", "method"])["weight"].sum()
    assert ((sums - 1.0).abs() < 1e-9).all()
