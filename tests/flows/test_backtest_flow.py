import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from alphapulse.pipelines.config.grid import parse_grid

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


@pytest.mark.slow
def test_backtest_flow_in_ephemeral_prefect(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from alphapulse.flows.backtest import backtest_flow

    state = backtest_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), strategy="sma_cross",
                          grid="fast=10,20;slow=50,100", backend="cpu", cluster=None, return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run_id"] and manifest["pipeline"] == "backtest"
    assert {"load_validate", "panel", "sweep", "report_tables"} <= set(manifest["stages"])
    assert len(pd.read_parquet(out / "backtest_summary.parquet")) == 4
    assert (out / "sharpe_heatmap.png").exists()


@pytest.mark.slow
def test_backtest_flow_reruns_from_cache_until_the_input_changes(prefect_ephemeral, tmp_path):
    """The sweep is cached on (config, strategy, grid, backend, input fingerprint, code): a re-run
    on the same input skips it and writes the same tables; a changed input file sweeps again."""
    import os
    import shutil

    from alphapulse.flows.backtest import backtest_flow

    data = tmp_path / "bars.parquet"
    shutil.copy(SAMPLE, data)

    def run(name):
        out = Path(backtest_flow(data_path=str(data), out_dir=str(tmp_path / name), strategy="ema_cross",
                                 grid="fast=5,10;slow=30,60", backend="cpu", cluster=None))
        return out, json.loads((out / "manifest.json").read_text())

    first, m1 = run("a")
    second, m2 = run("b")
    assert not m1["cached_compute"] and "sweep" in m1["stages"]
    assert m2["cached_compute"] and "sweep" not in m2["stages"]
    for name in ("backtest_metrics.parquet", "backtest_summary.parquet", "equity.parquet"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    # same bytes, new mtime: the fingerprint changes, so the sweep runs again
    st = os.stat(data)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    _, m3 = run("c")
    assert not m3["cached_compute"] and "sweep" in m3["stages"]


def test_backtest_deployment():
    """The ad-hoc backtest deployment: no schedule, its parameters fit the flow and are valid."""
    from alphapulse.flows.backtest import backtest_flow

    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    dep = next(d for d in spec["deployments"] if d["name"] == "backtest")
    assert dep["entrypoint"] == "alphapulse.flows.backtest.backtest_flow" and not dep.get("schedules")
    assert set(dep["parameters"]) <= set(backtest_flow.parameters.properties)
    assert (ROOT / dep["parameters"]["data_path"]).exists()
    assert parse_grid(dep["parameters"]["grid"])["fast"][0] == 5
