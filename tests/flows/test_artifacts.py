"""Prefect artifacts of a report folder, read back through the Prefect client (ephemeral server)."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"


def _artifacts(flow_run_id) -> dict:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        run_filter = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        found = client.read_artifacts(artifact_filter=run_filter)
    return {a.key: a for a in found}


def _table(artifact) -> pd.DataFrame:
    data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    return pd.DataFrame.from_records(data)


@pytest.mark.slow
def test_daily_flow_publishes_summary_stage_and_result_tables(prefect_ephemeral, tmp_path):
    from prefect.states import StateType

    from alphapulse.flows.daily import daily_flow

    signals = {"strategies": [{"strategy": "sma_cross", "params": {"fast": 3, "slow": 8}},
                              {"strategy": "rsi_reversion", "params": {"period": 14, "lower": 30, "upper": 70}}]}
    state = daily_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / "rep"), backend="cpu", cluster=None,
                       signals=signals, return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    out = Path(state.result())
    arts = _artifacts(state.state_details.flow_run_id)
    assert {"daily-summary", "daily-stages", "daily-results", "daily-signals"} <= set(arts)

    # today's entries and exits (the flow's signals parameter, not the config's), as signals.parquet has them
    today = pd.read_parquet(out / "signals.parquet")
    today = today[(today["timestamp"] == today["timestamp"].max()) & today["action"].isin(["enter", "exit"])]
    moves = _table(arts["daily-signals"])
    assert len(today) >= 2 and len(moves) == len(today) and len(set(moves["strategy"])) == 2
    assert sorted(zip(moves["symbol"], moves["strategy"], moves["action"])) == \
        sorted(zip(today["symbol"], today["strategy"], today["action"]))
    assert "fast=3 slow=8" in set(moves["combo"])
    md = arts["daily-summary"]
    assert md.type == "markdown" and (out / "summary.md").read_text() in md.data
    assert str(out / "summary.html") in md.data and (out / "summary.html").is_file()

    manifest = json.loads((out / "manifest.json").read_text())
    stages = _table(arts["daily-stages"])
    assert arts["daily-stages"].type == "table"
    assert dict(zip(stages["stage"], stages["seconds"])) == manifest["stages"]

    # the latest values per symbol, against pandas on the written indicators
    results = _table(arts["daily-results"]).set_index("symbol")
    ind = pd.read_parquet(out / "indicators.parquet")
    oracle = ind.sort_values("timestamp").groupby("symbol").tail(1).set_index("symbol")
    assert len(results) == manifest["input"]["symbols"] == 50
    for col in ("rsi_14", "sma_20", "macd_hist_12_26_9"):
        got = results.loc[oracle.index, col].astype(float).to_numpy()
        np.testing.assert_array_equal(np.isnan(got), oracle[col].isna().to_numpy())  # NaN -> null -> NaN
        np.testing.assert_allclose(got[~np.isnan(got)], oracle[col].dropna().to_numpy(), rtol=0, atol=0)
    assert (pd.to_datetime(results.loc[oracle.index, "timestamp"]) == oracle["timestamp"]).all()


def test_any_pipeline_report_publishes_alerts_costs_and_its_main_table(prefect_ephemeral, tmp_path):
    """A report of a pipeline the module does not know (as alphapulse.flows.models is): the named main table,
    the cost columns and the alerts artifact."""
    from prefect import flow
    from prefect.states import StateType

    from alphapulse.flows.artifacts import publish_report_artifacts
    from alphapulse.pipelines.report.write import write_report

    preds = pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=80), "symbol": ["<b>X</b>"] * 80,
                          "prediction": np.linspace(-1, 1, 80), "target": np.r_[np.nan, np.ones(79)]})
    manifest = {"run_id": "r1", "pipeline": "models", "stages": {"features": 1.5, "fit": 2.25},
                "cost": {"currency": "USD", "total": 0.004,
                         "stages": {"features": {"gpu_seconds": 0.0, "cpu_seconds": 3.0, "cost": 0.001},
                                    "fit": {"gpu_seconds": 2.0, "cpu_seconds": 1.0, "cost": 0.003}}},
                "alerts": [{"kind": "gpu_oom", "stage": "fit", "message": "out of memory", "batch_size": 64,
                            "action": "retried at 32"}]}
    out = write_report(tmp_path / "models", tables={"metrics.parquet": preds.head(3), "predictions.parquet": preds},
                       manifest=manifest, summary="# models\n")

    @flow
    def publish():
        return publish_report_artifacts(out, key="models", main_table="predictions.parquet")

    state = publish(return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    assert set(state.result()) == {"summary", "stages", "results", "alerts"}
    arts = _artifacts(state.state_details.flow_run_id)
    stages = _table(arts["models-stages"])
    assert stages.to_dict("records") == [
        {"stage": "features", "seconds": 1.5, "gpu_seconds": 0.0, "cpu_seconds": 3.0, "cost": 0.001},
        {"stage": "fit", "seconds": 2.25, "gpu_seconds": 2.0, "cpu_seconds": 1.0, "cost": 0.003}]
    results = _table(arts["models-results"])
    assert len(results) == 50 and results["symbol"].eq("<b>X</b>").all()
    np.testing.assert_array_equal(results["prediction"].to_numpy(dtype=float), preds["prediction"].head(50).to_numpy())
    assert results["target"].isna().iloc[0]
    assert "retried at 32" in arts["models-alerts"].data and "Alerts (1)" in arts["models-summary"].data


def test_result_tables_are_json_safe_and_part_files_read_as_one(tmp_path, monkeypatch):
    """No Prefect server needed: what the results artifact is built from."""
    from alphapulse.flows import artifacts as artifacts

    frame = pd.DataFrame({"t": pd.to_datetime(["2024-01-02", None]), "x": [np.nan, np.inf], "n": np.array([1, 2]),
                          "b": [True, False], "s": ["a", None]})
    rows = artifacts.table_rows(frame)
    assert rows == [{"t": "2024-01-02T00:00:00", "x": None, "n": 1, "b": True, "s": "a"},
                    {"t": None, "x": None, "n": 2, "b": False, "s": None}]
    json.dumps(rows, allow_nan=False)

    out = tmp_path / "rep"
    (out / "indicators").mkdir(parents=True)
    parts = [pd.DataFrame({"timestamp": pd.date_range("2024-01-01", periods=3), "symbol": s, "v": [1.0, 2.0, 3.0]})
             for s in ("A", "B")]
    for k, p in enumerate(parts):
        p.to_parquet(out / "indicators" / f"part-{k:05d}.parquet")
    manifest = {"files": {f"indicators/part-{k:05d}.parquet": {} for k in range(2)}}
    tables = artifacts._load_tables(out, manifest, None)
    pd.testing.assert_frame_equal(tables["indicators.parquet"], pd.concat(parts, ignore_index=True))
    monkeypatch.setattr(artifacts, "MAX_READ_ROWS", 5)  # six rows: too many to read back
    assert artifacts._load_tables(out, manifest, None) == {}
