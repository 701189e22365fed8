"""Cost accounting and the run tracker: CPU-seconds measured per stage, GPU-seconds where the
stage held the GPU, prices from the config, the manifest's sections and the summary table."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.config import parse_config
from alphapulse.pipelines.runtime.cost import run_cost, stage_table_lines
from alphapulse.pipelines.runtime.stages import (RunTracker, StageTimer, current_tracker, run_sections, task_scope,
                                                 tracking)


def _busy(seconds: float) -> None:
    """Use ``seconds`` of CPU time (not wall time: the machine may be shared)."""
    end = time.process_time() + seconds
    x = np.random.default_rng(0).normal(size=100_000)
    while time.process_time() < end:
        np.sort(x)


def test_cost_arithmetic():
    cost = run_cost({"load": 10.0, "compute": 3600.0, "inner": 5.0}, {"load": 12.0, "compute": 7200.0},
                    {"compute": True, "inner": True}, top_level={"load", "compute"},
                    prices={"gpu_per_hour": 2.0, "cpu_core_per_hour": 0.05, "currency": "EUR"},
                    work=("million backtests", 4.0))
    assert cost["stages"]["load"] == {"gpu_seconds": 0.0, "cpu_seconds": 12.0, "cost": pytest.approx(12 / 3600 * 0.05)}
    assert cost["stages"]["compute"]["cost"] == pytest.approx(2.0 + 2 * 0.05)
    assert cost["stages"]["inner"]["cpu_seconds"] is None  # not measured: costed on its GPU time only
    want = 12 / 3600 * 0.05 + 2.0 + 0.1  # the nested stage is inside its parent's time: not added
    assert cost["total"] == pytest.approx(want)
    assert cost["gpu_seconds"] == 3600.0 and cost["cpu_seconds"] == 7212.0
    assert cost["per_unit"] == {"unit": "million backtests", "value": pytest.approx(want / 4), "amount": 4.0}
    assert cost["currency"] == "EUR"
    assert run_cost({"a": 1.0}, {"a": 1.0}, {}, work=("million bars", 0))["per_unit"]["unit"] == "run"


def test_tracker_measures_cpu_seconds_per_stage():
    tracker = RunTracker()
    with tracker.track("busy"):
        _busy(0.3)
    with tracker.track("idle"):
        time.sleep(0.3)
    # 0.3 s of CPU used by the loop (more if other threads of the process ran); sleeping uses ~none
    assert 0.3 <= tracker.cpu["busy"] < 0.3 + tracker.wall["busy"]
    assert tracker.cpu["idle"] < 0.1
    assert tracker.top_level == {"busy", "idle"}
    with tracker.track("outer"):
        with tracker.track("inner"):
            assert tracker.active_stage == "inner"
        assert tracker.active_stage == "outer"
    assert tracker.active_stage is None and "inner" not in tracker.top_level


def test_gpu_seconds_follow_the_backend_and_the_routes():
    tracker = RunTracker()
    gpu_cfg = parse_config({}).gpu
    tracker.attach(gpu_cfg, Backend("gpu", "test", np.dtype("float64"), 0, "test device"))
    for name in ("load", "indicators", "sweep"):
        with tracker.track(name):
            time.sleep(0.01)
            if name == "indicators":
                tracker.route({"operation": "indicators", "size": 5, "backend": "cpu", "speedup": 0.3,
                               "min_speedup": 1.0, "reason": "cpu: measured"})
            if name == "sweep":
                tracker.route({"operation": "backtest", "size": 5, "backend": "gpu", "speedup": 9.0,
                               "min_speedup": 1.0, "reason": "gpu: measured"})
    out = tracker.sections(parse_config({"cost": {"gpu_per_hour": 3600.0, "cpu_core_per_hour": 0.0}}))
    st = out["cost"]["stages"]
    assert st["load"]["gpu_seconds"] > 0 and st["indicators"]["gpu_seconds"] == 0.0 and st["sweep"]["gpu_seconds"] > 0
    assert out["cost"]["total"] == pytest.approx(st["load"]["gpu_seconds"] + st["sweep"]["gpu_seconds"], abs=2e-3)
    assert [r["stage"] for r in out["routing"]] == ["indicators", "sweep"]
    assert "monitoring" not in out  # track_utilization is off by default


def test_stage_timer_runs_and_sections():
    """The run's tracker is the context's (set by ``tracking``), never a process global: a timer
    made inside the run adds to it, one made outside has its own, and two runs in two threads
    keep apart."""
    import threading

    alone = StageTimer()
    with alone.stage("backend"):
        pass
    assert current_tracker() is None and set(alone.tracker.wall) == {"backend"}
    with tracking() as run:
        timer = StageTimer()
        with timer.stage("backend"):
            pass
        assert timer.tracker is run and current_tracker() is run
        inner = StageTimer()  # e.g. a timer made inside a task: the same run
        with inner.stage("report_tables"):
            pass
        with timer.stage("backend"):  # a stage's name no longer starts a run
            pass
        assert inner.tracker is run and set(run.wall) == {"backend", "report_tables"}

        seen = {}

        def other_run():
            with tracking() as mine:
                with StageTimer().stage("sweep"):
                    pass
                seen["tracker"] = mine

        t = threading.Thread(target=other_run)
        t.start()
        t.join()
        assert seen["tracker"] is not run and "sweep" not in run.wall and set(seen["tracker"].wall) == {"sweep"}
        sections = run_sections(None, timer.seconds)
        assert current_tracker() is None and run.closed  # closed by its sections
        assert set(sections) == {"routing", "alerts", "cost"}
    assert run_sections(None, {"x": 1.0})["cost"]["stages"]["x"]["cpu_seconds"] is None  # outside a run


def test_a_task_scope_returns_its_record_and_the_run_absorbs_it():
    """A task's routing decisions, alerts and stage times come back in one TaskRecord, tagged,
    whether it ran in the run's process or on a worker; the run adds them to its manifest."""
    with tracking() as run:
        with task_scope(stage="indicators", partition=2) as (timer, record):
            with timer.stage("indicators"):
                current_tracker().alert("gpu_oom", message="m", batch_size=4, action="halved")
        assert current_tracker() is run and not run.alerts  # the task's own tracker, not the run's
        assert record.alerts == [{"kind": "gpu_oom", "stage": "indicators", "message": "m", "batch_size": 4,
                                  "action": "halved", "partition": 2}]
        assert set(record.seconds) == {"indicators"} and "indicators" in record.cpu_seconds
        out = run_sections(None, {"indicators": record.seconds["indicators"]}, records=[record])
    assert out["alerts"] == record.alerts and out["cost"]["stages"]["indicators"]["cpu_seconds"] is not None
    assert record.without_seconds().seconds == {} and record.without_seconds().alerts == record.alerts


def test_monitoring_section_and_summary_table():
    cfg = parse_config({"gpu": {"monitoring": {"track_utilization": True, "sample_interval_s": 0.05}}})
    with tracking():  # the run's context, as open_run sets it
        timer = StageTimer()
        with timer.stage("backend"):
            timer.tracker.attach(cfg.gpu, Backend("cpu", "test"))
        with timer.stage("indicators"):
            _busy(0.3)
        out = run_sections(cfg, timer.seconds, work=("million bars", 2.0))
    mon = out["monitoring"]
    assert mon["interval_s"] == 0.05 and len(mon["samples"]) >= 4
    assert {"indicators"} <= {s["stage"] for s in mon["samples"]}
    assert mon["stage_peaks"]["indicators"]["rss_bytes"] > 0
    json.dumps(out)  # the manifest is JSON
    manifest = {"stages": timer.seconds, **out,
                "alerts": [{"kind": "gpu_oom", "stage": "sweep", "message": "m", "batch_size": 8, "action": "a"}]}
    text = "\n".join(stage_table_lines(manifest))
    assert "| stage | seconds | CPU-seconds | GPU-seconds | cost |" in text
    assert "| indicators |" in text and "per million bars" in text and "gpu_oom" in text


def test_child_process_cpu_is_counted_and_a_failed_run_stops_sampling():
    import subprocess
    import sys

    import psutil

    burn = "import time\nend = time.process_time() + 0.3\nwhile time.process_time() < end: pass\ntime.sleep(30)"
    tracker = RunTracker()
    proc = None
    try:
        with tracker.track("with_child"):
            # a child process burning 0.3 s of CPU (a local Dask cluster's worker, say), alive at the end
            proc = subprocess.Popen([sys.executable, "-c", burn])
            child, deadline = psutil.Process(proc.pid), time.perf_counter() + 20
            while sum(child.cpu_times()[:2]) < 0.3 and time.perf_counter() < deadline:
                time.sleep(0.02)
        assert tracker.cpu["with_child"] >= 0.3
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    with tracker.track("after"):  # the child is gone: nothing counted for it, never negatively
        pass
    assert 0 <= tracker.cpu["after"] < 0.1
    cfg = parse_config({"gpu": {"monitoring": {"track_utilization": True, "sample_interval_s": 0.05}}})
    failing = RunTracker()
    failing.attach(cfg.gpu, Backend("cpu", "test"))
    with pytest.raises(ZeroDivisionError):
        with failing.track("compute"):
            1 / 0
    assert not failing.sampler.running


def test_concurrent_stages_are_not_counted_twice():
    import threading

    tracker = RunTracker()

    def work(name):
        with tracker.track(name):
            end = time.thread_time() + 0.25  # this thread's own CPU
            x = np.random.default_rng(0).normal(size=50_000)
            while time.thread_time() < end:
                np.sort(x)

    threads = [threading.Thread(target=work, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 0.5 s of CPU in all: process-wide readings per stage would give each ~0.5 (1.0 in all)
    assert 0.5 <= tracker.cpu["a"] + tracker.cpu["b"] < 0.7
    assert tracker.top_level == {"a", "b"}
