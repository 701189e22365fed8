"""``alphapulse models``: placeholder while the subcommand is being built (see flows/cli.py's _MODULES)."""
from __future__ import annotations


def add_parser(sub) -> None:
    sub.add_parser("models", help="(being built)")


def run(args) -> int:
    raise ValueError("alphapulse models is not available yet")
