"""Strategies by reference: what a config, a flow parameter or ``--strategy`` may name.

Implements :func:`resolve_strategy` (a reference -> a checked
:class:`~alphapulse.transforms.backtest.strategies.Strategy`), :func:`known_reference` (the cheap
check a config makes without importing anything), :data:`ENTRY_POINTS` and
:func:`plugin_names`. The backtest and the daily signals both resolve their strategies here.
"""
from __future__ import annotations

import importlib
import re

from alphapulse.pipelines.errors import ArgumentError
from alphapulse.transforms.backtest.strategies import STRATEGIES, Strategy, StrategyError, check_strategy

ENTRY_POINTS = "alphapulse.strategies"
"""The entry-point group a package registers its strategies under (``name = "pkg.module:attr"``)."""

_REF = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINTS)}


def plugin_names() -> set[str]:
    """Names of the strategies installed packages register (:data:`ENTRY_POINTS`)."""
    return set(_entry_points())


def known_reference(ref: str) -> bool:
    """Whether ``ref`` can name a strategy: a built-in, ``package.module:name`` or a plug-in's name.
    Nothing is imported: a module reference is imported and checked when a run asks for it."""
    return ref in STRATEGIES or bool(_REF.match(ref)) or ref in plugin_names()


def resolve_strategy(ref: str | Strategy) -> Strategy:
    """The strategy ``ref`` names: a :class:`Strategy`, a built-in's name, ``package.module:name``
    (imported), or the name of an entry point of the group :data:`ENTRY_POINTS`. A strategy that
    is not built in is checked against the protocol
    (:func:`~alphapulse.transforms.backtest.strategies.check_strategy`: types, defaults, a signal's
    shape, errors and look-ahead). One-line :class:`ArgumentError` otherwise."""
    if isinstance(ref, Strategy):
        strategy = ref
    elif ref in STRATEGIES:
        return STRATEGIES[ref]
    elif isinstance(ref, str) and _REF.match(ref):
        module, attr = ref.split(":")
        try:
            strategy = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise ArgumentError(f"strategy {ref!r}: cannot import {module!r}: {e}") from None
        except AttributeError:
            raise ArgumentError(f"strategy {ref!r}: module {module!r} has no {attr!r}") from None
    elif isinstance(ref, str) and ref in _entry_points():
        try:
            strategy = _entry_points()[ref].load()
        except Exception as e:  # a broken plug-in names itself, it does not crash the CLI
            raise ArgumentError(f"strategy {ref!r} (entry point of {ENTRY_POINTS}): {type(e).__name__}: {e}") from None
    else:
        import difflib

        known = [*STRATEGIES, *_entry_points()]
        close = difflib.get_close_matches(str(ref), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ArgumentError(f"unknown strategy {ref!r}{hint}; known: {', '.join(known)}, or package.module:name")
    try:
        return check_strategy(strategy)
    except StrategyError as e:
        raise ArgumentError(f"{ref if isinstance(ref, str) else strategy.name!r}: {e}") from None
