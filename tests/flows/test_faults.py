"""Faults under real Prefect: a Dask worker killed mid-run, and stages that raise (IO retried,
arithmetic and bad input not; the failed run's state names the stage, the partition and the cause)."""
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.flows.scale_testlib import config_file, report_bytes, result_storage, split_by_symbol, task_runs


def _io_retry(exc) -> bool:
    from prefect.states import Failed

    from alphapulse.flows.runners import io_retry

    return io_retry(None, None, Failed(data=exc))


def test_io_retry_retries_io_only():
    from alphapulse.pipelines.config import ConfigError
    from alphapulse.pipelines.data.load import DataError
    from alphapulse.pipelines.report.write import ReportError
    from alphapulse.pipelines.runtime.stages import StageError

    assert _io_retry(StageError("load", "partition 1 of 2", FileNotFoundError(2, "No such file")))
    assert _io_retry(StageError("write", "", OSError(28, "No space left on device")))
    assert _io_retry(PermissionError(13, "Permission denied"))
    assert not _io_retry(StageError("indicators", "partition 1 of 2", FloatingPointError("overflow")))
    assert not _io_retry(StageError("indicators", "", MemoryError()))
    assert not _io_retry(StageError("load", "", ValueError("not IO")))
    assert not _io_retry(DataError("x.parquet: cannot read as parquet"))
    assert not _io_retry(ReportError("out: output path exists and is not a folder"))
    assert not _io_retry(ConfigError("cfg: data.path: ..."))
    assert not _io_retry(ZeroDivisionError())


def _partitions_reading(data, cfg, path) -> set[int]:
    from alphapulse.pipelines.config import load_config
    from alphapulse.pipelines.data.load import inspect_input
    from alphapulse.pipelines.data.partitions import plan_partitions

    config = load_config(cfg)
    inputs = inspect_input(data, columns=config.data.columns)
    index = [Path(p) for p in inputs.paths].index(path)
    return {p.index for p in plan_partitions(inputs, bars_per_partition=config.data.bars_per_partition)
            if index in p.files}


class _AfterPlan(logging.Handler):
    """Runs ``action`` once, when the flow logs the end of its plan stage (the flow's own log
    line: a real event of the run, in the flow's thread, before any partition task)."""

    def __init__(self, action):
        super().__init__()
        self.action, self.done = action, False

    def emit(self, record):
        if not self.done and record.getMessage().startswith("stage plan: ") and "started" not in record.getMessage():
            self.done = True
            self.action()


@pytest.fixture
def after_plan():
    handlers, logger = [], logging.getLogger("alphapulse")
    level = logger.level

    def install(action):
        h = _AfterPlan(action)
        logger.addHandler(h)
        logger.setLevel(logging.INFO)  # the stage lines are INFO
        handlers.append(h)
        return h

    yield install
    for h in handlers:
        logger.removeHandler(h)
    logger.setLevel(level)


@pytest.mark.slow
def test_a_vanished_file_is_retried_then_named_in_the_failed_state(prefect_ephemeral, tmp_path, after_plan):
    from prefect.states import StateType

    from alphapulse.flows.daily import daily_flow

    data = split_by_symbol(tmp_path / "in", 2)
    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=20_000)  # 3 partitions
    victim, away = data / "f1.parquet", tmp_path / "f1.away"

    # 1. the file is gone after planning and back 2 s later: the partition's load is retried
    # (after 5 s) and the run completes with the same report as a clean run
    def vanish_briefly():
        os.rename(victim, away)
        threading.Timer(2.0, os.rename, (away, victim)).start()

    after_plan(vanish_briefly)
    with result_storage(tmp_path / "s1"):
        state = daily_flow(data_path=str(data), out_dir=str(tmp_path / "rep"), config_path=cfg, backend="cpu",
                           return_state=True)
    assert state.type == StateType.COMPLETED, state.message
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    reads_f1 = _partitions_reading(data, cfg, victim)
    assert reads_f1 and reads_f1 != set(range(len(runs) - 2))  # some partitions do not read it
    # in-process, partitions run in order: the first to read the file fails once; later ones find it back
    assert {n: r.run_count for n, r in runs.items() if n.startswith("partition-")} == \
        {f"partition-{i}": 2 if i == min(reads_f1) else 1 for i in range(len(runs) - 2)}
    with result_storage(tmp_path / "s2"):
        clean = daily_flow(data_path=str(data), out_dir=str(tmp_path / "clean"), config_path=cfg, backend="cpu")
    assert report_bytes(tmp_path / "rep") == report_bytes(clean)

    # 2. gone for good: three attempts, then the flow fails naming the stage, partition and cause
    after_plan(lambda: os.rename(victim, away))
    with result_storage(tmp_path / "s3"):
        state = daily_flow(data_path=str(data), out_dir=str(tmp_path / "rep2"), config_path=cfg, backend="cpu",
                           return_state=True)
    assert state.type == StateType.FAILED
    assert "stage 'load' failed on partition " in state.message
    assert "FileNotFoundError" in state.message and "f1.parquet" in state.message
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    first = f"partition-{min(reads_f1)}"  # in-process, partitions run in order: the first to fail stops the run
    assert runs[first].run_count == 3 and runs[first].state.type == StateType.FAILED
    assert not (tmp_path / "rep2").exists()  # no report, not a partial one


@pytest.mark.slow
def test_bad_input_after_planning_is_not_retried(prefect_ephemeral, tmp_path, after_plan):
    from prefect.states import StateType

    from alphapulse.flows.daily import daily_flow

    data = split_by_symbol(tmp_path / "in", 2)
    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=30_000)
    victim = data / "f1.parquet"
    first = min(_partitions_reading(data, cfg, victim))
    after_plan(lambda: victim.write_bytes(victim.read_bytes()[:1000]))  # truncated: not parquet any more
    with result_storage(tmp_path / "s"):
        state = daily_flow(data_path=str(data), out_dir=str(tmp_path / "rep"), config_path=cfg, backend="cpu",
                           return_state=True)
    assert state.type == StateType.FAILED
    assert "f1.parquet: cannot read as parquet" in state.message
    runs = {r.name: r for r in task_runs(state.state_details.flow_run_id)}
    assert runs[f"partition-{first}"].run_count == 1


@pytest.mark.slow
def test_a_worker_killed_mid_run(prefect_ephemeral, tmp_path):
    """SIGKILL one LocalCluster worker process once the first partition is done: Dask reruns its
    tasks elsewhere, the run completes, and the report equals a clean in-process run's."""
    import psutil
    from prefect.states import StateType

    from alphapulse.flows.daily import daily_flow
    from alphapulse.pipelines.config import load_config
    from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily

    data = split_by_symbol(tmp_path / "in", 4)
    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=6_000)  # 11 partitions on 2 workers
    store = tmp_path / "store"
    killed = {}

    def killer():
        parts = store / "alphapulse-daily-parts"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = list(parts.glob("*.parquet")) if parts.exists() else []
            workers = []
            for p in psutil.Process().children(recursive=True):
                try:
                    cmd = " ".join(p.cmdline())
                except psutil.Error:  # a process that ended meanwhile
                    continue
                if "spawn_main" in cmd and "resource_tracker" not in cmd:
                    workers.append(p)
            if done and workers:
                killed["pid"], killed["parts_done"] = workers[0].pid, len(done)
                os.kill(workers[0].pid, signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    with result_storage(store):
        state = daily_flow(data_path=str(data), out_dir=str(tmp_path / "rep"), config_path=cfg, backend="cpu",
                           cluster="processes", return_state=True)
    thread.join(5)
    assert state.type == StateType.COMPLETED, state.message
    assert killed and killed["parts_done"] < 11, killed  # killed while partitions were still to do
    assert not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == psutil.STATUS_ZOMBIE
    ref = run_daily(prepare_daily(load_config(cfg), data_path=str(data), out_dir=str(tmp_path / "ref"),
                                  backend="cpu"))
    assert report_bytes(tmp_path / "rep") == report_bytes(ref.out_dir)
    assert len(report_bytes(ref.out_dir)) > 10  # the parts and rejected.parquet
