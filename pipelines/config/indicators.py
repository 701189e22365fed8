"""The ``indicators:`` block's syntax, shared by the top-level block and ``models.features``.

Implements :func:`check_indicator_block` (every entry valid, at most
:data:`MAX_INDICATOR_COLUMNS` output columns) and :func:`indicator_specs` (one entry's
parameter sets resolved into :class:`~alphapulse.transforms.indicators.registry.IndicatorSpec`).
Both raise ``ValueError`` naming the indicator and the parameter; pydantic adds the key.
"""
from __future__ import annotations

import math

from alphapulse.pipelines.config.base import suggest
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec

MAX_INDICATOR_COLUMNS = 1000
"""Output columns an indicators block may ask for: each is a panel (bars x symbols) in memory and
a column of the report; 20,000 aborted a run at 8.4 GB."""


def check_indicator_block(block: dict) -> None:
    """Every entry of an indicators block valid, and at most :data:`MAX_INDICATOR_COLUMNS` output
    columns; counted before the entries are resolved, so a huge list costs nothing."""
    columns = 0
    for name, entries in block.items():
        ind = INDICATORS.get(name)
        columns += max(1, len(entries or ())) * (len(ind.outputs) if ind is not None else 1)
    if columns > MAX_INDICATOR_COLUMNS:
        raise ValueError(f"{columns:,} output columns (at most {MAX_INDICATOR_COLUMNS:,}): fewer parameter sets")
    for name, entries in block.items():
        indicator_specs(name, entries)


def indicator_specs(name: str, entries) -> list[IndicatorSpec]:
    """The parameter sets of one indicator's entries (a bare number for a one-parameter
    indicator, else a mapping; none: the defaults), each checked and filled in."""
    if name not in INDICATORS:
        raise ValueError(f"unknown indicator {name!r}{suggest(name, INDICATORS)}; "
                         f"known: {', '.join(sorted(INDICATORS))}")
    ind = INDICATORS[name]
    if not entries:
        entries = [{}]
    specs = []
    for entry in entries:
        if not isinstance(entry, dict):
            if len(ind.params) != 1:
                raise ValueError(f"{name}: give the parameters {list(ind.params)} as a mapping, not {entry!r}")
            entry = {next(iter(ind.params)): entry}
        params = dict(ind.defaults)
        for key, value in entry.items():
            if key not in ind.params:
                raise ValueError(f"{name}: unknown parameter {key!r}{suggest(key, ind.params)}; "
                                 f"known: {', '.join(ind.params)}")
            kind = ind.params[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or (kind is int and value != int(value)):
                raise ValueError(f"{name}.{key}: expected {kind.__name__}, got {value!r}")
            if value <= 0:
                raise ValueError(f"{name}.{key}: must be positive, got {value!r}")
            params[key] = kind(value)
        try:  # the indicator's own bounds (TA-Lib's), checked here so that the error names the file
            ind.resolve(**params)
        except ValueError as e:
            raise ValueError(f"{name}.{e}") from None
        specs.append(IndicatorSpec(name, params))
    return specs

