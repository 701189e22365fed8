"""The benchmarks' quiet-machine check (benchmarks/_machine.py): the verdict, the run's own share
of the load average, and that every benchmark script runs under it."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from benchmarks import _machine
from benchmarks._machine import LoadGuard, own_share_of_load, quiet_verdict

ROOT = Path(__file__).resolve().parents[2]


def test_quiet_and_loaded_verdicts():
    ok, line = quiet_verdict(0.4, 0.9, own=0.8, cores=2)
    assert ok and line.startswith("quiet machine") and "0.20 per core" in line
    ok, line = quiet_verdict(1.2, 1.0, own=0.0, cores=2)  # 0.6 per core before the run
    assert not ok and line.startswith("NOT FOR THE RECORD") and "0.60 per core" in line
    ok, _ = quiet_verdict(0.2, 2.6, own=1.0, cores=2)  # others' load rose to 1.6 during the run
    assert not ok


def test_own_share_follows_the_one_minute_average():
    assert own_share_of_load(2.0, 0.0) == 0.0
    assert own_share_of_load(2.0, 60.0) == pytest.approx(2.0 * (1 - math.exp(-1)))
    assert own_share_of_load(1.0, 1e6) == pytest.approx(1.0)


def test_guard_prints_before_after_and_refuses_under_load(monkeypatch, capsys):
    loads = iter([(3.0, 0, 0), (3.1, 0, 0)])
    monkeypatch.setattr(_machine.os, "getloadavg", lambda: next(loads))
    monkeypatch.setattr(_machine.os, "cpu_count", lambda: 2)
    with LoadGuard() as guard:
        pass
    out = capsys.readouterr().out
    assert "load average before: 3.00 over 2 cores (1.50 per core)" in out
    assert "load average after: 3.10" in out and "NOT FOR THE RECORD" in out
    assert guard.recordable is False and guard.record()["recordable"] is False


def test_every_benchmark_script_runs_under_the_guard():
    scripts = [p for p in sorted((ROOT / "benchmarks").glob("*.py")) if not p.name.startswith("_")]
    assert len(scripts) >= 7
    for p in scripts:
        text = p.read_text()
        assert re.search(r"^from (benchmarks\.)?_machine import .*LoadGuard", text, re.M), p.name
        assert "LoadGuard()" in text, p.name
