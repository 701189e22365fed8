"""Check the import contracts in pyproject.toml (``[tool.importlinter]``) against the installed layout.

The checkout keeps ``transforms/``, ``pipelines/`` and ``flows/`` at its top level and setuptools
maps them under ``alphapulse`` (``package-dir``). import-linter's graph builder (grimp) finds a
package's modules by walking its folder, so run on the checkout it would see ``alphapulse/`` alone
and report every ``alphapulse.transforms`` module as missing. This script lays the installed shape
out as symbolic links in a temporary folder and runs ``lint-imports`` there (it puts the working
directory first on ``sys.path``), in this process; its arguments are passed on, and the checkout's
pyproject.toml is the configuration unless one is named.

    python scripts/lint_imports.py [--verbose] [--contract ID ...] [CONFIG_FILE ...]
"""

from __future__ import annotations

import os
import sys
import tempfile
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def stage_packages(package_dirs: dict[str, str], into: Path) -> None:
    """Link each mapped source folder at the path its package has once installed."""
    roots = [name for name in package_dirs if "." not in name]
    for root in roots:
        # A real folder for the root, so that the mapped sub-packages can be linked inside it.
        staged = into / root
        staged.mkdir()
        for entry in (REPO / package_dirs[root]).iterdir():
            if entry.name != "__pycache__":
                (staged / entry.name).symlink_to(entry)
    for name in sorted(set(package_dirs) - set(roots), key=lambda n: n.count(".")):
        link = into.joinpath(*name.split("."))
        if link.exists() or link.is_symlink():
            raise SystemExit(f"{name}: {link.relative_to(into)} is both a mapped folder and inside another one")
        link.symlink_to(REPO / package_dirs[name], target_is_directory=True)


def main(argv: list[str]) -> int:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    package_dirs = pyproject["tool"]["setuptools"].get("package-dir", {})
    from importlinter.cli import lint_imports_command

    if not any(Path(a).suffix in (".toml", ".cfg") or Path(a).name == ".importlinter" for a in argv):
        argv = [*argv, str(REPO / "pyproject.toml")]
    argv = [str(Path(a).resolve()) if Path(a).is_file() else a for a in argv]
    here = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="alphapulse-lint-imports-") as tmp:
        stage_packages(package_dirs, Path(tmp))
        os.chdir(tmp)
        try:
            # --no-cache: the graph builds in well under a second, and the cache folder would
            # otherwise land in the working directory.
            lint_imports_command.main(args=["--no-cache", "--no-logo", *argv], prog_name="lint-imports")
        except SystemExit as stop:
            return int(stop.code or 0)
        finally:
            os.chdir(here)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
