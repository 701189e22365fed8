"""The error hierarchy: two kinds under one root, the built-in classes callers caught before it
existed, and the public names that keep working."""
import pytest

from alphapulse.pipelines import errors
from alphapulse.transforms.errors import AlphaPulseError, InputError, RunError
from tests.errors_testlib import INPUT_ERRORS, RUN_ERRORS, instance


@pytest.mark.parametrize("cls", INPUT_ERRORS, ids=lambda c: c.__name__)
def test_input_errors_are_value_errors(cls):
    exc = instance(cls)
    assert isinstance(exc, AlphaPulseError) and isinstance(exc, ValueError) and not isinstance(exc, RunError)


@pytest.mark.parametrize("cls", RUN_ERRORS, ids=lambda c: c.__name__)
def test_run_errors_are_runtime_errors(cls):
    exc = instance(cls)
    assert isinstance(exc, AlphaPulseError) and isinstance(exc, RuntimeError) and not isinstance(exc, InputError)
    assert exc.retryable is False


def test_the_bases_callers_caught_before_stay():
    assert issubclass(errors.BackendError, RuntimeError)
    for cls in (errors.ReportError, errors.ReportPathError, errors.ReportBusyError):
        assert issubclass(cls, OSError)
    assert issubclass(errors.ReportPathError, InputError) and issubclass(errors.ReportBusyError, RunError)
    assert str(errors.DataError("a\nb")) == "a b"


def test_stage_errors_on_io_are_retryable():
    assert errors.StageError("load", "partition 1 of 2", FileNotFoundError(2, "gone")).retryable
    assert not errors.StageError("indicators", "", FileNotFoundError(2, "gone")).retryable
    assert not errors.StageError("load", "", ValueError("not IO")).retryable


def test_public_names_keep_working():
    from alphapulse.pipelines import config, data, models, report, runtime
    from alphapulse.transforms import portfolio

    assert config.ConfigError is errors.ConfigError and config.GridError is errors.GridError
    assert data.DataError is errors.DataError and models.ModelFileError is errors.ModelFileError
    assert report.ReportError is errors.ReportError and report.ReportPathError is errors.ReportPathError
    assert runtime.StageError is errors.StageError and runtime.BackendError is errors.BackendError
    assert runtime.BudgetError is errors.BudgetError
    assert runtime.GpuOutOfMemory is runtime.GpuOutOfMemoryError is errors.GpuOutOfMemoryError
    assert portfolio.OptimisationError.__module__ == "alphapulse.transforms.errors"


def _every_error():
    from tests.errors_testlib import subclasses

    return subclasses(AlphaPulseError)


@pytest.mark.parametrize("cls", _every_error(), ids=lambda c: c.__name__)
def test_every_error_survives_pickling(cls):
    """A process pool, or Prefect persisting a failed state, sends the exception pickled; a class whose
    ``__init__`` takes other arguments than the message (StageError, OptimisationError) must still
    come back whole."""
    import pickle

    exc = instance(cls)
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is cls and str(back) == str(exc) and back.args == exc.args
    assert vars(back) == vars(exc)

