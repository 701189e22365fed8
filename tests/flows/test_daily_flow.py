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


@pytest.mark.slow
def test_the_daily_deployment_appends_to_its_store(prefect_ephemeral, tmp_path):
    """The ``daily`` deployment's way: a store parameter. The first run, on an empty store, is a
    full run; the next adds only the new bars; the store then equals a full run's indicators."""
    from alphapulse.flows.daily import daily_flow

    bars = pd.read_parquet(SAMPLE)
    first, rest = bars[bars["date"] < "2017-06-01"], bars[bars["date"] >= "2017-06-01"]
    first.to_parquet(tmp_path / "first.parquet", index=False)
    rest.to_parquet(tmp_path / "rest.parquet", index=False)
    store = tmp_path / "store"
    out = daily_flow(data_path=str(tmp_path / "first.parquet"), out_dir=str(tmp_path / "r1"), backend="cpu",
                     store=str(store))
    m1 = json.loads((Path(out) / "manifest.json").read_text())["incremental"]
    assert m1["full_recompute"] or len(m1["recomputed"]) == m1["store_symbols"]  # nothing stored before
    out = daily_flow(data_path=str(tmp_path / "rest.parquet"), out_dir=str(tmp_path / "r2"), backend="cpu",
                     store=str(store))
    m2 = json.loads((Path(out) / "manifest.json").read_text())["incremental"]
    assert m2["bars_computed"] == len(pd.read_parquet(Path(out) / "indicators.parquet")) < len(rest)  # 1 rejected
    full = daily_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "full"), backend="cpu")
    got = pd.read_parquet(store).sort_values(["symbol", "timestamp"]).reset_index(drop=True)
    want = pd.read_parquet(Path(full) / "indicators.parquet").sort_values(["symbol", "timestamp"])
    pd.testing.assert_frame_equal(got, want.reset_index(drop=True), check_exact=True, check_dtype=False)
