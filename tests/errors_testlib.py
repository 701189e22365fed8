"""Every class of the error hierarchy, by kind, and an instance of each (for tests that map them)."""
from __future__ import annotations

import alphapulse.pipelines.errors as pipeline_errors
import alphapulse.transforms.errors as transform_errors
from alphapulse.transforms.errors import InputError, RunError


def subclasses(kind: type) -> list[type]:
    """The classes the errors modules name that are ``kind`` (``kind`` itself left out), by name."""
    found = {getattr(m, n) for m in (transform_errors, pipeline_errors) for n in m.__all__}
    return sorted((c for c in found if isinstance(c, type) and issubclass(c, kind) and c is not kind),
                  key=lambda c: c.__name__)


INPUT_ERRORS = subclasses(InputError)
RUN_ERRORS = subclasses(RunError)


def instance(cls: type) -> BaseException:
    """An instance of ``cls``, its message on two lines (the CLI prints one)."""
    if issubclass(cls, pipeline_errors.StageError):
        return cls("indicators", "partition 1 of 2", FloatingPointError("overflow"))
    if issubclass(cls, transform_errors.OptimisationError):
        return cls("max_sharpe", "no feasible portfolio")
    return cls(f"{cls.__name__} says\nwhat is wrong")
