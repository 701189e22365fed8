"""Lazy re-exports for package ``__init__`` files (PEP 562).

Each room's ``__init__`` names its public surface in ``__all__`` (so ``from
alphapulse.transforms.portfolio import hrp_weights`` works and files can move without breaking
users) but imports a module only when one of its names is first used: importing
``alphapulse.pipelines.gpu.bench`` on a GPU host must not import the HTTP API's FastAPI, and a
CPU machine never pays for what it does not call.
"""
from __future__ import annotations

from importlib import import_module


def lazy_exports(package: str, exports: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package``: ``exports`` maps a public name to the
    sub-module (relative to ``package``) that defines it."""

    def __getattr__(name: str):
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        value = getattr(import_module(f"{package}.{module}"), name)
        globals_of(package)[name] = value  # later look-ups skip this function
        return value

    def __dir__():
        return sorted(set(globals_of(package)) | set(exports))

    return __getattr__, __dir__


def globals_of(package: str) -> dict:
    import sys

    return vars(sys.modules[package])
