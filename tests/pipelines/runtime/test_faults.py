"""Faults in the daily pipeline, without Prefect: an input file that vanishes or rots after
planning, and the process killed while the report is being assembled."""
import os
import signal
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from alphapulse.pipelines.runtime.backend import cpu_backend
from alphapulse.pipelines.config import load_config, parse_config
from alphapulse.pipelines.daily.pipeline import compute_partition, plan_stage, prepare_daily, run_daily
from alphapulse.pipelines.data.load import DataError
from alphapulse.pipelines.runtime.stages import StageError
from tests.pipelines.conftest import ROOT, SAMPLE


def _config(bars_per_partition: int):
    raw = load_config().model_dump(mode="json")
    raw["data"]["bars_per_partition"] = bars_per_partition
    return parse_config(raw)


@pytest.fixture
def two_files(tmp_path):
    """The sample as two parquet files of whole symbols."""
    folder = tmp_path / "in"
    folder.mkdir()
    df = pd.read_parquet(SAMPLE)
    names = sorted(df["Name"].unique())
    df[df["Name"].isin(names[:25])].to_parquet(folder / "a.parquet", index=False)
    df[df["Name"].isin(names[25:])].to_parquet(folder / "b.parquet", index=False)
    return folder


def test_a_file_that_vanishes_after_planning_is_a_retryable_load_failure(two_files, tmp_path):
    request = prepare_daily(_config(20_000), data_path=str(two_files), out_dir=str(tmp_path / "rep"), backend="cpu")
    plan = plan_stage(request)
    assert len(plan) == 3
    (two_files / "b.parquet").unlink()
    last = plan[-1]
    with pytest.raises(StageError) as err:
        compute_partition(request, cpu_backend("test"), last, total=len(plan), dest=tmp_path / "p.parquet")
    msg = str(err.value)
    assert err.value.stage == "load" and err.value.retryable
    assert msg.startswith("stage 'load' failed on partition 3 of 3 (") and "FileNotFoundError" in msg
    assert "b.parquet" in msg and "\n" not in msg
    # the partitions that do not read the file are unaffected
    first = compute_partition(request, cpu_backend("test"), plan[0], total=len(plan), dest=tmp_path / "p0.parquet")
    assert first.rows > 0 and not (tmp_path / "p.parquet").exists()


def test_a_file_that_rots_after_planning_is_bad_input_not_retried(two_files, tmp_path):
    request = prepare_daily(_config(20_000), data_path=str(two_files), out_dir=str(tmp_path / "rep"), backend="cpu")
    plan = plan_stage(request)
    data = (two_files / "b.parquet").read_bytes()
    (two_files / "b.parquet").write_bytes(data[: len(data) // 2])  # truncated: no footer
    with pytest.raises(DataError, match=r"b\.parquet: cannot read as parquet"):
        compute_partition(request, cpu_backend("test"), plan[-1], total=len(plan), dest=tmp_path / "p.parquet")


def test_killed_while_assembling_a_partitioned_report(two_files, tmp_path):
    """kill -9 after some part files are linked into the new report: the previous report is
    intact, nothing partial is visible, and the next run removes the hidden leftovers."""
    out = tmp_path / "rep"
    cfg_path = tmp_path / "cfg.yaml"
    raw = load_config().model_dump(mode="json")
    raw["data"]["bars_per_partition"] = 20_000
    import yaml

    cfg_path.write_text(yaml.safe_dump(raw))
    first = run_daily(prepare_daily(_config(20_000), data_path=str(two_files), out_dir=str(out), backend="cpu"))
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    script = textwrap.dedent(f"""
        import time
        from alphapulse.pipelines.report import write as report
        from alphapulse.pipelines.config import load_config
        from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily
        real = report.link_or_copy
        def slow(src, dest):
            real(src, dest)
            print("linked", flush=True)
            time.sleep(60)
        report.link_or_copy = slow
        run_daily(prepare_daily(load_config({str(cfg_path)!r}), data_path={str(two_files)!r}, out_dir={str(out)!r},
                                backend="cpu"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "linked"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["cfg.yaml", "in", "rep"]
    assert any(p.name.startswith(".rep.") for p in tmp_path.iterdir())  # the killed run's leftovers, hidden
    again = run_daily(prepare_daily(_config(20_000), data_path=str(two_files), out_dir=str(out), backend="cpu"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.yaml", "in", "rep"]
    pd.testing.assert_frame_equal(again.indicators, first.indicators)


def test_a_vanished_file_of_a_whole_load_is_retryable_too(tmp_path):
    f = tmp_path / "bars.parquet"
    f.write_bytes(SAMPLE.read_bytes())
    request = prepare_daily(load_config(), data_path=str(f), out_dir=str(tmp_path / "rep"), backend="cpu")
    plan = plan_stage(request)
    assert [p.whole for p in plan] == [True]
    f.unlink()
    with pytest.raises(StageError, match=r"^stage 'load' failed on the whole input: FileNotFoundError") as err:
        compute_partition(request, cpu_backend("test"), plan[0], total=1, dest=tmp_path / "p.parquet")
    assert err.value.retryable
