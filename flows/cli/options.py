"""The command-line options the sub-commands share, each declared once.

Implements one ``add_*`` function per shared option (``--data``, ``--out``, ``--config``,
``--backend``, ``--cluster``, ``--no-prefect``, ``-q/--quiet``), and the two groups the pipeline
sub-commands (daily, backtest, portfolio, models) take in this order: :func:`add_paths` (input
and report folder) and :func:`add_run_options` (config, backend, cluster, Prefect, verbosity).
A sub-command passes only what its help says differently (the config key of its report folder,
its config block, how it runs a cluster); names, defaults and actions live here.

Cheap to import: argparse only (see ``alphapulse.flows.cli.dispatch``).
"""
from __future__ import annotations

import argparse

__all__ = ["CLUSTER_HELP", "add_data", "add_out", "add_config", "add_backend", "add_cluster", "add_no_prefect",
           "add_quiet", "add_paths", "add_run_options"]

BACKENDS = ("auto", "cpu", "gpu")
CLUSTER_METAVAR = "none|local|processes|cuda|tcp://HOST:PORT"
CLUSTER_HELP = ("where tasks run: none (in-process), local (threads), processes, cuda (one worker per GPU, "
                "dask-cuda) or a Dask scheduler address such as tcp://host:8786 (default: cluster.address "
                "in the config)")
NO_PREFECT_HELP = "run the pipeline directly, without a Prefect flow run (on --cluster's cluster if given)"
QUIET_HELP = "only warnings and the final summary"


def add_data(parser: argparse.ArgumentParser) -> None:
    """``--data``: the bars to read."""
    parser.add_argument("--data", help="bars: CSV/parquet file or folder (default: data.path in the config)")


def add_out(parser: argparse.ArgumentParser, *, out_key: str | None = None, help: str | None = None) -> None:
    """``--out``: the report folder, whose default is the config's ``out_key`` (or ``help`` in full)."""
    parser.add_argument("--out", help=help or f"report folder (default: {out_key} in the config)")


def add_config(parser: argparse.ArgumentParser, *, block: str | None = None, help: str | None = None) -> None:
    """``--config``: the YAML config; ``block`` names the config block the sub-command reads."""
    note = f"; see its {block}: block" if block else ""
    parser.add_argument("--config", help=help or f"YAML config (default: the shipped default config{note})")


def add_backend(parser: argparse.ArgumentParser) -> None:
    """``--backend auto|cpu|gpu``."""
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="override the config's backend choice (default: auto)")


def add_cluster(parser: argparse.ArgumentParser, *, help: str = CLUSTER_HELP) -> None:
    """``--cluster``: where the run's tasks go (no default: the sub-command reads its config's)."""
    parser.add_argument("--cluster", metavar=CLUSTER_METAVAR, help=help)


def add_no_prefect(parser: argparse.ArgumentParser, *, help: str = NO_PREFECT_HELP) -> None:
    """``--no-prefect``: run the pipeline function itself."""
    parser.add_argument("--no-prefect", action="store_true", help=help)


def add_quiet(parser: argparse.ArgumentParser, *, help: str = QUIET_HELP) -> None:
    """``-q/--quiet``: warnings only, and what the sub-command prints at the end."""
    parser.add_argument("-q", "--quiet", action="store_true", help=help)


def add_paths(parser: argparse.ArgumentParser, *, out_key: str) -> None:
    """``--data`` and ``--out`` of a pipeline sub-command whose report folder defaults to the
    config's ``out_key``."""
    add_data(parser)
    add_out(parser, out_key=out_key)


def add_run_options(parser: argparse.ArgumentParser, *, block: str | None = None, cluster_help: str = CLUSTER_HELP,
                    no_prefect_help: str = NO_PREFECT_HELP) -> None:
    """``--config``, ``--backend``, ``--cluster``, ``--no-prefect`` and ``-q`` of a pipeline
    sub-command (see :func:`add_config`, :func:`add_cluster`, :func:`add_no_prefect`)."""
    add_config(parser, block=block)
    add_backend(parser)
    add_cluster(parser, help=cluster_help)
    add_no_prefect(parser, help=no_prefect_help)
    add_quiet(parser)
