"""The code a result comes from: the ``alphapulse`` import closure of a module, and its hash.

Implements :func:`import_closure` (every ``alphapulse.*`` module that importing a root module can
execute, found by static analysis of the sources) and :func:`code_hash` (sha256 of the closure's
module names and sources), the code part of every cache key
(:func:`alphapulse.pipelines.runtime.stages.result_key`). A key names its stage's own module and
nothing else, so no hand-kept list of modules can fall behind the code.

What counts as an import (read with :mod:`ast` from each module's source, never by importing it):

- ``import a.b.c`` and ``from a.b import c``, absolute or relative, at module level or inside a
  function (the pipelines import CuPy, Prefect's pieces and their own rooms lazily);
- every package above an imported module (its ``__init__`` runs first);
- a name a package exports lazily (``_EXPORTS = {"name": "submodule", ...}``, PEP 562, see
  :mod:`alphapulse._exports`): ``from alphapulse.pipelines.backtest import prepare_backtest`` and
  ``backtest.prepare_backtest`` (with ``backtest`` bound to the package) lead to
  ``alphapulse.pipelines.backtest.request``;
- ``importlib.import_module("alphapulse....")`` with a literal name.

Sources are located with :func:`importlib.util.find_spec` (which imports the parent packages, whose
``__init__`` files only name their exports), so the installed layout (``transforms/`` installed as
``alphapulse.transforms``) and a bare source tree are read the same way. The closure over-approximates
(an import in a branch never taken still counts): a needless cache miss, never a stale hit.
"""
from __future__ import annotations

import ast
import hashlib
import importlib.util
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

ROOT_PACKAGE = "alphapulse"

__all__ = ["code_hash", "import_closure"]


@dataclass(frozen=True)
class _Module:
    name: str
    is_package: bool
    source: bytes


_lock = threading.Lock()


def code_hash(*roots: str) -> str:
    """sha256 (hex) of the import closure of the modules ``roots``: the sorted module names and
    each one's source. Computed once per process for a given set of roots.

    Parameters
    ----------
    roots : dotted module names, e.g. ``"alphapulse.pipelines.daily.pipeline"``
    """
    with _lock:
        return _code_hash(tuple(sorted(set(roots))))


def import_closure(*roots: str) -> tuple[str, ...]:
    """The ``alphapulse.*`` modules (sorted) that importing and running ``roots`` can execute:
    the roots, what they import (statically, see the module docstring), transitively, and every
    package above each of them. Raises ``ModuleNotFoundError`` for a root that does not exist."""
    with _lock:
        return _closure(tuple(sorted(set(roots))))


@lru_cache(maxsize=None)
def _code_hash(roots: tuple[str, ...]) -> str:
    names = _closure(roots)
    h = hashlib.sha256("\0".join(names).encode())
    for name in names:
        h.update(b"\0" + name.encode() + b"\0")
        h.update(_module(name).source)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _closure(roots: tuple[str, ...]) -> tuple[str, ...]:
    for root in roots:
        if _module(root) is None:
            raise ModuleNotFoundError(f"no module named {root!r}", name=root)
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_parents(name))
        todo.extend(_imports(name))
    return tuple(sorted(seen))


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


@lru_cache(maxsize=None)
def _module(name: str) -> _Module | None:
    """The module ``name`` of the ``alphapulse`` package, or None when there is none (or it is
    not Python source). Parents are checked first, so ``find_spec`` never imports a non-package."""
    if name != ROOT_PACKAGE and not name.startswith(ROOT_PACKAGE + "."):
        return None
    parent = name.rpartition(".")[0]
    if parent and not (_module(parent) and _module(parent).is_package):
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.has_location or not str(spec.origin).endswith(".py"):
        return None
    return _Module(name, spec.submodule_search_locations is not None, Path(spec.origin).read_bytes())


@lru_cache(maxsize=None)
def _exports(package: str) -> dict[str, str]:
    """A package's lazily exported names -> the module that defines each (absolute names), read
    from its ``_EXPORTS`` literal (a dict, or a dict comprehension over a tuple of names)."""
    module = _module(package)
    if module is None or not module.is_package:
        return {}
    for node in ast.parse(module.source).body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "_EXPORTS"):
            return {k: f"{package}.{v}" for k, v in _literal_exports(node.value).items()}
    return {}


def _literal_exports(value: ast.expr) -> dict[str, str]:
    if isinstance(value, ast.DictComp) and len(value.generators) == 1:
        gen = value.generators[0]
        if isinstance(gen.target, ast.Name) and isinstance(value.key, ast.Name) and value.key.id == gen.target.id:
            return {name: ast.literal_eval(value.value) for name in ast.literal_eval(gen.iter)}
    try:
        out = ast.literal_eval(value)
    except ValueError:
        out = None
    if not isinstance(out, dict):
        raise ValueError(f"_EXPORTS is not a literal dict: {ast.unparse(value)}")
    return out


def _member(package: str, name: str) -> list[str]:
    """What ``from package import name`` (or ``package.name``) runs: the sub-module ``name``
    and/or the module the package exports ``name`` from (empty for a plain attribute)."""
    found = []
    module = _module(package)
    if module is not None and module.is_package:
        target = _exports(package).get(name)
        if target:
            found.append(target)
        if _module(f"{package}.{name}") is not None:
            found.append(f"{package}.{name}")
    return found


def _absolute(name: str, module: str, level: int, is_package: bool) -> str:
    if level == 0:
        return name
    base = module if is_package else module.rpartition(".")[0]
    for _ in range(level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{name}" if name else base


@lru_cache(maxsize=None)
def _imports(name: str) -> tuple[str, ...]:
    """The ``alphapulse`` modules module ``name`` imports anywhere in its source (see the module
    docstring), each with the packages above it."""
    module = _module(name)
    if module is None:
        return ()
    tree = ast.parse(module.source)
    found: set[str] = set()
    bound: dict[str, str] = {}  # local name -> the module it is bound to, for attribute look-ups
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name)
                if alias.asname:
                    bound[alias.asname] = alias.name
                else:
                    top = alias.name.partition(".")[0]
                    bound[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node.module or "", name, node.level, module.is_package)
            found.add(base)
            for alias in node.names:
                if alias.name == "*":
                    found.update(_exports(base).values())
                    continue
                members = _member(base, alias.name)
                found.update(members)
                sub = f"{base}.{alias.name}"
                if sub in members:
                    bound[alias.asname or alias.name] = sub
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str) and _called(node.func) == "import_module"):
            found.add(node.args[0].value)
    # attribute chains on bound modules: ``daily.partition_key``, ``alphapulse.pipelines.data.load``
    for node in ast.walk(tree):
        chain, inner = [], node
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if not chain or not isinstance(inner, ast.Name) or inner.id not in bound:
            continue
        current = bound[inner.id]
        for attr in reversed(chain):
            members = _member(current, attr)
            found.update(members)
            if f"{current}.{attr}" not in members:
                break
            current = f"{current}.{attr}"
    return tuple(sorted(m for m in found if _module(m) is not None))


def _called(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return None
