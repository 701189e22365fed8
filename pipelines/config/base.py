"""What every block of the config shares: the frozen model base, key suggestions, shared bounds.

Implements :class:`Frozen` (the pydantic base of every block: unknown keys, NaN and infinities
refused, instances immutable), :func:`suggest` (the closest valid name, for error messages) and
:data:`MAX_COST_BPS`.
"""
from __future__ import annotations

import difflib

from pydantic import BaseModel, ConfigDict


class Frozen(BaseModel):
    # allow_inf_nan=False: a YAML .nan or .inf (a risk-free rate, a cost, a threshold) is an error
    # naming the key, not a NaN that flows through every optimiser; "off" is spelt null
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


def suggest(word: str, choices) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


MAX_COST_BPS = 1000.0
"""Commission and slippage, per fill, lie in [0, MAX_COST_BPS) basis points (10 %)."""
