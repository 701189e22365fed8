"""The built wheel installs one import root, ``alphapulse``, and nothing beside it.

The repository keeps ``transforms/``, ``pipelines/`` and ``flows/`` at its top level and maps
them under ``alphapulse`` with setuptools' ``package-dir``; the ``packages`` list is explicit, so a
sub-package nobody listed would silently be missing from the wheel (and an editable install would
hide that). These tests build the wheel from a copy of the sources, offline, and import it from a
folder that holds nothing else.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
PACKAGE_DATA = "alphapulse/pipelines/config/default_config.yaml"


def _pip(*args: str, cwd: Path) -> None:
    # --no-index: the build and the install must not need the network (CI's tests run offline).
    done = subprocess.run(
        [sys.executable, "-m", "pip", *args, "--no-index", "--no-deps", "--disable-pip-version-check", "-q"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"pip {args[0]} failed:\n{done.stdout}\n{done.stderr}"


def _source_packages() -> dict[str, Path]:
    """Every folder with an ``__init__.py`` under a mapped source folder, by its dotted name."""
    found = {}
    for name, folder in PACKAGE_DIRS.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            if "__pycache__" in relative:
                continue
            found[".".join((name, *relative))] = init.parent
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    # Built from a copy so that setuptools' build/ and egg-info never land in the checkout.
    source = tmp_path_factory.mktemp("source")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    for folder in sorted(set(PACKAGE_DIRS.values())):
        shutil.copytree(REPO / folder, source / folder, ignore=ignore)
    for pattern in ("pyproject.toml", "README*", "LICEN[CS]E*", "NOTICE*", "MANIFEST.in"):
        for path in REPO.glob(pattern):
            shutil.copy2(path, source / path.name)
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-build-isolation", "-w", str(out), ".", cwd=source)
    (built,) = out.glob("alphapulse-*.whl")
    return built


@pytest.fixture(scope="module")
def names(wheel) -> set[str]:
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_wheel_holds_only_the_alphapulse_root(names):
    tops = {n.split("/", 1)[0] for n in names}
    dist_info = {t for t in tops if t.startswith("alphapulse-") and t.endswith(".dist-info")}
    assert len(dist_info) == 1, f"expected one alphapulse-*.dist-info, got {sorted(dist_info)}"
    assert tops - dist_info == {"alphapulse"}, f"top-level entries besides alphapulse/: {sorted(tops - dist_info)}"


def test_wheel_holds_the_package_data(names):
    assert PACKAGE_DATA in names


def test_wheel_holds_every_source_package(names):
    # A new sub-package missing from pyproject's explicit packages list fails here.
    missing = sorted(
        dotted for dotted in _source_packages() if dotted.replace(".", "/") + "/__init__.py" not in names
    )
    assert not missing, f"packages with an __init__.py that the wheel lacks (list them in pyproject): {missing}"


def test_wheel_holds_every_source_module(names):
    missing = []
    for dotted, folder in _source_packages().items():
        prefix = dotted.replace(".", "/")
        missing += [f"{prefix}/{p.name}" for p in folder.glob("*.py") if f"{prefix}/{p.name}" not in names]
    assert not missing, f"modules the wheel lacks: {sorted(missing)}"


def test_installed_wheel_imports_only_under_alphapulse(wheel, tmp_path):
    target = tmp_path / "site"
    _pip("install", "--target", str(target), str(wheel), cwd=tmp_path)
    # bin/ holds the console script; everything importable is under alphapulse/.
    importable = {p.name for p in target.iterdir() if p.name != "bin" and not p.name.endswith(".dist-info")}
    assert importable == {"alphapulse"}, sorted(importable)
    # -I keeps the checkout, PYTHONPATH and user site off sys.path; the wheel's folder goes first so
    # that it wins over a developer's editable install, and every module must come from it.
    probe = f"""
import importlib, sys
sys.path.insert(0, {str(target)!r})
for name in ("alphapulse", "alphapulse.pipelines.daily", "alphapulse.transforms.indicators"):
    module = importlib.import_module(name)
    assert module.__file__.startswith({str(target)!r}), (name, module.__file__)
for name in ("transforms", "pipelines", "flows"):
    try:
        importlib.import_module(name)
    except ModuleNotFoundError:
        continue
    raise SystemExit(f"top-level {{name!r}} imports from {{sys.modules[name].__file__}}")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [sys.executable, "-I", "-c", probe], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
