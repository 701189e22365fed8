"""The pipelines' errors, under the roots in :mod:`alphapulse.transforms.errors` (re-exported
here, so that flows import every error from this module).

Input errors (:class:`~alphapulse.transforms.errors.InputError`, a ``ValueError``; the CLI exits
2, Prefect never retries):

- :class:`ArgumentError`: an argument of a pipeline function or a command-line option (a missing
  ``--data``, an unknown strategy, a cluster spec, an option out of range);
- :class:`ConfigError`: a config file or setting, alone or with another;
- :class:`DataError`: input data that cannot be used at all;
- :class:`GridError`: a backtest parameter grid;
- :class:`BudgetError`: work planned beyond the machine's means (``budget:`` settings);
- :class:`BackendError`: a backend asked for that this machine cannot give;
- :class:`ReportPathError`: a report folder (or a file name in it) that cannot be written;
- :class:`ModelFileError`: a saved model that cannot be used.

Run errors (:class:`~alphapulse.transforms.errors.RunError`, a ``RuntimeError``; the CLI exits 1):

- :class:`StageError`: a stage failed on good input, ``retryable`` when an IO stage met an
  ``OSError``;
- :class:`GpuOutOfMemoryError`: the GPU ran out of memory with no fallback left;
- :class:`ReportBusyError`: another run held the report folder for longer than a writer waits.

:class:`ReportError` is the family of both report kinds and an ``OSError``, as it was before the
kinds were told apart, so ``except ReportError`` and ``except OSError`` catch either.
"""
from __future__ import annotations

from alphapulse.transforms.errors import AlphaPulseError, InputError, RunError

__all__ = ["AlphaPulseError", "InputError", "RunError", "ArgumentError", "ConfigError", "DataError", "GridError",
           "BudgetError", "BackendError", "ModelFileError", "ReportError", "ReportPathError", "ReportBusyError",
           "StageError", "GpuOutOfMemoryError", "IO_STAGES"]

IO_STAGES = ("plan", "load", "write")
"""Stages that read or write files: an ``OSError`` there is worth a retry; arithmetic is not."""


class ArgumentError(InputError):
    """An argument (a command-line option or a pipeline function's parameter) that cannot be used;
    the message names it."""


class ConfigError(InputError):
    """A configuration that cannot be used; the message names the file and the key."""


class DataError(InputError):
    """Input that cannot be used at all; the message names the file (and column). One line: line
    breaks (from a file name, a parser's message quoting a row) become spaces."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).splitlines()))


class GridError(InputError):
    """A grid that cannot be used; the message names the parameter."""


class BudgetError(InputError):
    """Planned work over the machine's means; the message names the setting and the estimate."""


class BackendError(InputError, RuntimeError):
    """No usable backend for the requested configuration. Still a ``RuntimeError``, as it was."""


class ModelFileError(InputError):
    """A saved model that cannot be used: wrong features, unexpected content, unreadable."""


class ReportError(AlphaPulseError, OSError):
    """The report cannot be written where asked: either kind below."""


class ReportPathError(ReportError, InputError):
    """A report folder that cannot be used (a file, an input's folder, a foreign non-empty folder,
    a broken link, no room to create it) or a file name a report cannot hold."""


class ReportBusyError(ReportError, RunError):
    """Another run kept the report folder's lock for longer than a writer waits."""


class StageError(RunError):
    """A pipeline stage failed on something other than bad input; the message names the stage,
    where (e.g. the partition) and the cause. ``retryable``: an ``OSError`` in an IO stage."""

    def __init__(self, stage: str, where: str, cause: BaseException):
        self.stage = stage
        self.retryable = stage in IO_STAGES and isinstance(cause, OSError)
        super().__init__(f"stage {stage!r} failed{' on ' + where if where else ''}: "
                         f"{type(cause).__name__}: {cause}")


class GpuOutOfMemoryError(RunError):
    """A GPU ran out of memory and no fallback was allowed (or the floor was reached)."""
