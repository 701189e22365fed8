import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


@pytest.mark.slow
def test_daily_flow_in_ephemeral_prefect(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from alphapulse.flows.daily import daily_flow

    state = daily_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), backend="cpu", return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["input"]["rows_rejected"] == 16
    assert manifest["run_id"]  # the Prefect flow run's id
    assert len(pd.read_parquet(out / "indicators.parquet")) == 58084


def test_prefect_yaml_deployments_are_valid():
    """Offline: entrypoints import to flows, parameters fit their signatures, schedules parse."""
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import Flow, load_flow_from_entrypoint

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = {d["name"] for d in spec["deployments"]}
    assert {"daily", "daily-adhoc"} <= names
    for dep in spec["deployments"]:
        flow = load_flow_from_entrypoint(dep["entrypoint"])  # as `prefect deploy` and a worker load it
        assert isinstance(flow, Flow)
        accepted = set(flow.parameters.properties)
        assert set(dep.get("parameters", {})) <= accepted, dep["name"]
        for sched in dep.get("schedules", []):
            CronSchedule(cron=sched["cron"], timezone=sched.get("timezone"))
    daily = next(d for d in spec["deployments"] if d["name"] == "daily")
    assert daily["schedules"][0]["cron"] == "30 22 * * 1-5"
    assert (ROOT / daily["parameters"]["data_path"]).exists()


@pytest.mark.slow
def test_cli_bad_input_under_prefect_is_one_line_without_traceback(prefect_ephemeral, tmp_path, capfd):
    """Input that only the load can judge (every row breaks a rule) fails inside the flow run:
    the console gets Prefect's state lines and the CLI's one line, never a Python traceback."""
    from alphapulse.flows.cli.dispatch import main

    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,symbol,open,high,low,close,volume\n"
                   "2024-01-02,AAA,10,9,11,10,100\n2024-01-03,AAA,10,9,11,10,100\n")
    assert main(["daily", "--data", str(bad), "--out", str(tmp_path / "rep"), "--backend", "cpu"]) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == (f"alphapulse: error: {bad}: all 2 rows rejected (high_below_low: 2); "
                                            f"first: {bad} row 0 (0-based data row): high_below_low")
    assert not (tmp_path / "rep").exists()
