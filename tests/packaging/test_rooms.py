"""The rooms hold what they say: public surfaces resolve, transforms stay pure, acyclic and small.

- Every ``_EXPORTS`` entry of every ``alphapulse`` sub-package resolves to a name its module
  defines (a split that forgets an ``__init__`` fails here, not in a user's import).
- A public name means one thing across the transforms rooms: two rooms that export the same name
  export the same object (``ensemble_weights`` once meant a portfolio in one room and a model
  mix in another).
- No module under ``transforms/`` imports Prefect, Dask, distributed or ``alphapulse.pipelines``
  / ``alphapulse.flows``, at module level or inside a function.
- The transforms modules import each other without a cycle, counting imports inside functions
  (a cycle that only closes at call time still ties two modules into one).
- No transforms module is over :data:`MAX_LINES` lines, except those in :data:`ALLOWED_OVER`.

The import graph is built from the source (``ast``), so nothing here imports the modules it
checks except the ``_EXPORTS`` test. ``make lint``'s import-linter contracts
(``pyproject.toml``) check the layers and the forbidden packages too, but only where
import-linter is installed and run; these run with the tests.
"""
from __future__ import annotations

import ast
import importlib
import tomllib
from collections import defaultdict
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIRS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))[
    "tool"]["setuptools"]["package-dir"]

MAX_LINES = 560
"""Lines a transforms module may have (issue 14 splits modules at about 500)."""

ALLOWED_OVER: dict[str, str] = {}
"""Transforms modules allowed over :data:`MAX_LINES`, each with the reason. None today: the
largest, ``backtest/engine.py`` (556 lines), is one Numba kernel of ~280 lines and its launcher,
plus the input preparation the pipelines call as ``engine.compact_bars``/``engine.indicator_bank``."""

FORBIDDEN_IN_TRANSFORMS = ("prefect", "prefect_dask", "dask", "distributed", "alphapulse.pipelines", "alphapulse.flows")


def _modules() -> dict[str, Path]:
    """Every module of the mapped source folders, by its installed dotted name."""
    found = {}
    for package, folder in PACKAGE_DIRS.items():
        root = REPO / folder
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            if "__pycache__" in parts or any(p.startswith(".") for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = _modules()
PACKAGES = sorted(name for name, path in MODULES.items() if path.name == "__init__.py")
TRANSFORMS = {name: path for name, path in MODULES.items() if name.split(".")[:2] == ["alphapulse", "transforms"]}


def _exports(package: str) -> dict[str, str]:
    """A package's ``_EXPORTS`` literal, read from its source ({} when it has none)."""
    for node in ast.parse(MODULES[package].read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            if isinstance(node.value, ast.Dict):
                return ast.literal_eval(node.value)
            # alphapulse/__init__.py builds its mapping with a comprehension: ask the package.
            return dict(importlib.import_module(package)._EXPORTS)
    return {}


ROOMS = {package: _exports(package) for package in PACKAGES if _exports(package)}


def _imports(module: str) -> set[str]:
    """The absolute module names ``module``'s source imports, anywhere in the file. For ``from
    X import a`` that is ``X.a`` when ``X.a`` is a module, else ``X``."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    is_package = MODULES[module].name == "__init__.py"
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in MODULES else base)
    return found


def test_the_rooms_are_found():
    assert {"alphapulse.transforms.portfolio", "alphapulse.transforms.indicators", "alphapulse.transforms.models",
            "alphapulse.transforms.backtest"} <= set(ROOMS)
    assert "alphapulse.transforms.portfolio.qp" in TRANSFORMS


@pytest.mark.parametrize("package", sorted(ROOMS))
def test_every_export_resolves(package):
    """Each name resolves through the package and is the object its module holds under that name."""
    pkg = importlib.import_module(package)
    missing = []
    for name, module in sorted(ROOMS[package].items()):
        if f"{package}.{module}" not in MODULES:
            missing.append(f"{name}: no module {package}.{module}")
            continue
        try:
            value = getattr(pkg, name)
        except AttributeError as e:
            missing.append(f"{name}: {e}")
            continue
        assert value is getattr(importlib.import_module(f"{package}.{module}"), name), name
    assert not missing, f"{package}._EXPORTS names what is not there:\n" + "\n".join(missing)
    assert set(ROOMS[package]) <= set(pkg.__all__) <= set(ROOMS[package]) | {"__version__"}


def test_a_public_name_means_one_thing_across_the_transforms_rooms():
    owners = defaultdict(list)
    for package, exports in ROOMS.items():
        if package.startswith("alphapulse.transforms."):
            for name in exports:
                owners[name].append(package)
    clashes = []
    for name, packages in sorted(owners.items()):
        values = {id(getattr(importlib.import_module(p), name)) for p in packages}
        if len(values) > 1:
            clashes.append(f"{name}: {', '.join(packages)}")
    assert not clashes, "one name, several meanings:\n" + "\n".join(clashes)


def test_transforms_import_no_orchestration_and_no_upper_layer():
    bad = []
    for module in sorted(TRANSFORMS):
        for imported in sorted(_imports(module)):
            if any(imported == f or imported.startswith(f + ".") for f in FORBIDDEN_IN_TRANSFORMS):
                bad.append(f"{module} imports {imported}")
    assert not bad, "transforms must stay pure (no Prefect, Dask, pipelines or flows):\n" + "\n".join(bad)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import), by
    Tarjan's algorithm, each sorted."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_transforms_modules_import_each_other_without_a_cycle():
    graph = {m: {i for i in _imports(m) if i in TRANSFORMS} for m in TRANSFORMS}
    assert not _cycles(graph), f"import cycles among transforms modules: {_cycles(graph)}"


def test_the_cycle_finder_finds_a_cycle():
    """The check above would pass on a graph it cannot read; it can."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"a"}}) == [["a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_portfolio_chain_imports_hrp_and_hrp_imports_none_of_it():
    hrp = "alphapulse.transforms.portfolio.hrp"
    assert hrp in _imports("alphapulse.transforms.portfolio.fallback")
    room = {m for m in TRANSFORMS if m.startswith("alphapulse.transforms.portfolio.")}
    assert not (_imports(hrp) & room), _imports(hrp) & room


def test_no_transforms_module_is_over_the_line_limit():
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in TRANSFORMS.items()}
    over = {m: n for m, n in sizes.items() if n > MAX_LINES and m not in ALLOWED_OVER}
    assert not over, f"split these (or add them to ALLOWED_OVER with the reason): {over}"
    stale = {m for m in ALLOWED_OVER if sizes.get(m, 0) <= MAX_LINES}
    assert not stale, f"no longer over {MAX_LINES} lines, drop them from ALLOWED_OVER: {stale}"
