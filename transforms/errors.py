"""The roots of AlphaPulse's one error hierarchy, and the transforms' own errors.

Implements :class:`AlphaPulseError` (every error AlphaPulse raises on purpose), its two kinds,
:class:`InputError` (bad input: fix the command, the config or the data; the CLI exits 2 and
Prefect never retries) and :class:`RunError` (a run that failed on good input; the CLI exits 1),
and :class:`OptimisationError` (an optimiser failed or its problem is infeasible).

The roots live in the lowest layer so that transforms, pipelines and flows share them; each
layer's ``errors`` module holds its own subclasses (``alphapulse.pipelines.errors``). Anything
raised that is neither kind is a bug, and the CLI shows its traceback.

An input error is a ``ValueError`` and a run error a ``RuntimeError``, so code written against
the built-in classes (``except ValueError``) still catches them.
"""
from __future__ import annotations

__all__ = ["AlphaPulseError", "InputError", "RunError", "OptimisationError"]


class AlphaPulseError(Exception):
    """Any error AlphaPulse raises on purpose; its message is one line fit for a user."""

    def __reduce__(self):
        # pickle's default rebuilds an exception by calling its class with ``args`` (the message),
        # which subclasses taking other arguments refuse: a process pool could not send them back
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls, args, state):
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class InputError(AlphaPulseError, ValueError):
    """Input that cannot be used (arguments, config, data, paths): the message names the option,
    key, file or row at fault. Never worth retrying."""


class RunError(AlphaPulseError, RuntimeError):
    """A run that failed on input that was fine (a stage, the device, the disk).

    Attributes
    ----------
    retryable : bool
        Whether running the failed step again may succeed (a transient IO failure); False unless
        a subclass says otherwise.
    """

    retryable: bool = False


class OptimisationError(RunError):
    """An optimiser failed or its problem is infeasible.

    Attributes
    ----------
    method : str
        The method that failed (``"max_sharpe"``, ``"min_variance"``, ``"hrp"``, ...).
    reason : str
        Why, in words fit for a report.
    """

    def __init__(self, method: str, reason: str):
        super().__init__(f"{method}: {reason}")
        self.method = method
        self.reason = reason
