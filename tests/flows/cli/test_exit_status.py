"""What the CLI makes of an exception: an input error is one line and exit status 2, a run error
one line and exit status 1, anything else a bug that keeps its traceback (never "bad input")."""
from __future__ import annotations

import logging

import pandas as pd
import pytest

import alphapulse.pipelines.errors as pipeline_errors
from alphapulse.flows.cli import dispatch
from alphapulse.flows.cli.dispatch import main
from alphapulse.pipelines.errors import InputError
from tests.errors_testlib import INPUT_ERRORS, RUN_ERRORS
from tests.errors_testlib import instance as _instance
from tests.pipelines.conftest import SAMPLE


def test_every_kind_is_listed():
    names = {c.__name__ for c in INPUT_ERRORS}
    assert {"ArgumentError", "ConfigError", "DataError", "GridError", "BudgetError", "BackendError",
            "ModelFileError", "ReportPathError"} <= names
    assert {"StageError", "GpuOutOfMemoryError", "ReportBusyError", "OptimisationError"} <= \
        {c.__name__ for c in RUN_ERRORS}
    assert not set(INPUT_ERRORS) & set(RUN_ERRORS)


def _raise(exc: BaseException):
    def raising(*args, **kwargs):
        raise exc
    return raising


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("command", ["daily", "backtest", "portfolio"])
@pytest.mark.parametrize("cls", INPUT_ERRORS + RUN_ERRORS, ids=lambda c: c.__name__)
def test_each_error_class_has_its_exit_status(command, cls, tmp_path, capsys, monkeypatch):
    exc = _instance(cls)
    monkeypatch.setattr(dispatch, "load_config", _raise(exc))
    rc = main([command, "--data", str(SAMPLE), "--out", str(tmp_path / "o"), "--backend", "cpu", "--no-prefect", "-q"])
    assert rc == (2 if isinstance(exc, InputError) else 1)
    assert _one_line(capsys.readouterr().err) == "alphapulse: error: " + str(exc).replace("\n", " ")


@pytest.mark.parametrize("command, module", [(["models"], "models"), (["gpu", "status"], "gpu"), (["serve"], "serve")])
@pytest.mark.parametrize("cls", [pipeline_errors.ArgumentError, pipeline_errors.ConfigError,
                                 pipeline_errors.StageError, pipeline_errors.ReportBusyError], ids=lambda c: c.__name__)
def test_subcommand_modules_map_errors_alike(command, module, cls, capsys, monkeypatch):
    import importlib

    exc = _instance(cls)
    monkeypatch.setattr(importlib.import_module(f"alphapulse.flows.cli.{module}"), "run", _raise(exc))
    assert main(command) == (2 if isinstance(exc, InputError) else 1)
    assert _one_line(capsys.readouterr().err).startswith("alphapulse: error: ")


def test_an_oserror_of_the_machine_is_a_failed_run(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(dispatch, "load_config", _raise(OSError(28, "No space left on device")))
    assert main(["daily", "--data", str(SAMPLE), "--out", str(tmp_path / "o"), "--no-prefect"]) == 1
    assert "No space left on device" in _one_line(capsys.readouterr().err)


def _small_bars(tmp_path):
    ts = pd.date_range("2024-01-01", periods=300, freq="D").strftime("%Y-%m-%d")
    frames = [pd.DataFrame({"timestamp": ts, "symbol": s, "open": 10.0 + i, "high": 11.0 + i, "low": 9.0 + i,
                            "close": 10.5 + i + 0.01 * (pd.Series(range(300)) % 7 - 3), "volume": 1.0})
              for i, s in enumerate(("AAA", "BBB", "CCC"))]
    path = tmp_path / "bars.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("bug", [ZeroDivisionError("division by zero"), ValueError("a bug, not your input")],
                         ids=["ZeroDivisionError", "ValueError"])
def test_a_bug_in_a_stage_is_not_bad_input(bug, tmp_path, capsys, monkeypatch):
    """A stage that raises something no one meant (a plain ValueError included: it used to exit 2
    as "bad input") propagates with its traceback (Python's exit status 1)."""
    from alphapulse.pipelines.portfolio import pipeline

    monkeypatch.setattr(pipeline, "returns_stage", _raise(bug))
    with pytest.raises(type(bug), match=str(bug)):
        main(["portfolio", "--data", str(_small_bars(tmp_path)), "--out", str(tmp_path / "o"), "--backend", "cpu",
              "--no-prefect", "-q"])
    assert "alphapulse: error" not in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_bug_in_a_daily_partition_is_a_failed_stage_not_bad_input(tmp_path, capsys, monkeypatch):
    """The daily pipeline names the stage and partition of any failure (StageError): exit 1."""
    from alphapulse.pipelines.daily import pipeline

    monkeypatch.setattr(pipeline, "indicators_stage", _raise(ZeroDivisionError("division by zero")))
    rc = main(["daily", "--data", str(_small_bars(tmp_path)), "--out", str(tmp_path / "o"), "--backend", "cpu",
               "--no-prefect", "-q"])
    assert rc == 1
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("alphapulse: error: stage 'indicators' failed") and "ZeroDivisionError" in line


def test_prefect_console_drops_the_traceback_of_input_errors_only():
    """Under Prefect the CLI's own line says what is wrong with the input; a bug's traceback stays."""
    def record(exc):
        try:
            raise exc
        except BaseException:
            import sys

            return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())

    quiet = dispatch._OneLineUserErrors()
    for exc in (pipeline_errors.DataError("x.csv: all rows rejected"), pipeline_errors.ReportPathError("out: a file")):
        r = record(exc)
        assert quiet.filter(r) and r.exc_info is None
    for exc in (ZeroDivisionError(), ValueError("bug"), _instance(pipeline_errors.StageError)):
        r = record(exc)
        assert quiet.filter(r) and r.exc_info is not None


@pytest.mark.slow
def test_a_bug_under_prefect_is_not_bad_input(prefect_ephemeral, tmp_path, monkeypatch):
    """The flow run fails and the CLI re-raises the bug (its traceback in Prefect's log) instead of
    returning exit status 2. No capfd here: Prefect's console handler keeps the stream it first
    sees, and a fixture's stream is closed after its test."""
    from alphapulse.pipelines.portfolio import pipeline

    monkeypatch.setattr(pipeline, "returns_stage", _raise(ValueError("a bug, not your input")))
    with pytest.raises(ValueError, match="a bug, not your input"):
        main(["portfolio", "--data", str(_small_bars(tmp_path)), "--out", str(tmp_path / "o"), "--backend", "cpu"])
    assert not (tmp_path / "o").exists()
