"""Prefect's retry condition over the whole error hierarchy: input errors are never retried, run
errors only when they say so, and an OSError of the machine is."""
import pytest

import alphapulse.pipelines.errors as errors
import alphapulse.transforms.errors as roots
from tests.errors_testlib import INPUT_ERRORS, RUN_ERRORS
from tests.errors_testlib import instance as _instance


def _io_retry(exc) -> bool:
    from prefect.states import Failed

    from alphapulse.flows.runners import io_retry

    return io_retry(None, None, Failed(data=exc))


@pytest.mark.parametrize("cls", INPUT_ERRORS, ids=lambda c: c.__name__)
def test_input_errors_are_never_retried(cls):
    assert not _io_retry(_instance(cls))


@pytest.mark.parametrize("cls", RUN_ERRORS, ids=lambda c: c.__name__)
def test_run_errors_are_retried_when_they_say_so(cls):
    exc = _instance(cls)
    assert _io_retry(exc) is exc.retryable is False


def test_a_stage_error_on_io_is_retried():
    assert _io_retry(errors.StageError("write", "", OSError(28, "No space left on device")))
    assert not _io_retry(errors.StageError("write", "", ValueError("not IO")))
    assert _io_retry(FileNotFoundError(2, "No such file"))
    assert not _io_retry(errors.ReportError("a bare family member"))
    assert not _io_retry(roots.AlphaPulseError("neither kind"))
