"""Deterministic, idempotent daily runs: the same inputs and config give byte-identical parquet
(the manifest differs only in the run's id, time and timings), and Prefect's cache skips the
partitions already done for unchanged input and recomputes those whose files changed."""
import json

import pandas as pd
import pytest

from tests.flows.scale_testlib import config_file, partition_states, report_bytes, result_storage, split_by_symbol

_VARIES = ("run_id", "created_at", "stages", "cost", "monitoring")  # the run's identity and timings


def _manifest(out) -> dict:
    m = json.loads((out / "manifest.json").read_text())
    return {k: v for k, v in m.items() if k not in _VARIES}


@pytest.mark.slow
def test_reruns_are_identical_and_cached_until_an_input_changes(prefect_ephemeral, tmp_path):
    from alphapulse.flows.daily import daily_flow
    from alphapulse.pipelines.config import load_config
    from alphapulse.pipelines.data.load import inspect_input
    from alphapulse.pipelines.data.partitions import plan_partitions

    data = split_by_symbol(tmp_path / "in", 2)
    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=20_000)

    def run(name, store="cache"):
        with result_storage(tmp_path / store):
            state = daily_flow(data_path=str(data), out_dir=str(tmp_path / name), config_path=cfg, backend="cpu",
                               return_state=True)
        assert state.is_completed(), state.message
        return partition_states(state.state_details.flow_run_id)

    first = run("a")
    assert len(first) == 3 and set(first.values()) == {"Completed"}
    # the same input again: every partition comes from the cache, the report is the same
    assert set(run("b").values()) == {"Cached"}
    mb = json.loads((tmp_path / "b" / "manifest.json").read_text())
    assert mb["output"]["cached_partitions"] == 3 and "load_validate" not in mb["stages"]
    assert report_bytes(tmp_path / "b") == report_bytes(tmp_path / "a")
    # without the cache (a fresh result store): recomputed, byte for byte the same
    assert set(run("c", store="fresh").values()) == {"Completed"}
    assert report_bytes(tmp_path / "c") == report_bytes(tmp_path / "a")
    ma, mc = _manifest(tmp_path / "a"), _manifest(tmp_path / "c")
    assert ma == mc and ma["output"]["cached_partitions"] == 0
    assert json.loads((tmp_path / "a" / "manifest.json").read_text())["run_id"] != \
        json.loads((tmp_path / "c" / "manifest.json").read_text())["run_id"]

    # change one file: the partitions that read it miss the cache, the others hit it
    config = load_config(cfg)
    inputs = inspect_input(data, columns=config.data.columns)
    reads = {f"partition-{p.index}": 1 in p.files for p in plan_partitions(inputs, bars_per_partition=20_000)}
    assert set(reads.values()) == {True, False}
    f1 = data / "f1.parquet"
    df = pd.read_parquet(f1)
    df.loc[df.index[-1], "volume"] += 1.0  # one bar's volume: obv of that symbol's last bar changes
    df.to_parquet(f1, index=False)
    states = run("d")
    assert states == {name: "Completed" if read else "Cached" for name, read in reads.items()}
    before, after = report_bytes(tmp_path / "a"), report_bytes(tmp_path / "d")
    changed = {name for name in before if before[name] != after[name]}
    last = max(int(n.removeprefix("partition-")) for n, read in reads.items() if read)
    assert changed == {f"indicators/part-{last:05d}.parquet"}

    # a cached result whose part file was removed meanwhile (a cleaned part folder) is recomputed
    for part in (tmp_path / "cache" / "alphapulse-daily-parts").glob("*.parquet"):
        part.unlink()
    run("e")
    assert report_bytes(tmp_path / "e") == after
