"""The backtest's request: everything checked before any heavy work.

Implements :class:`BacktestRequest`, :func:`prepare_backtest_request` (the strategy, by name or
as a :class:`~alphapulse.transforms.backtest.strategies.Strategy`, the grid and its plan, and the
cluster spec: what a run on bars in memory needs) and :func:`prepare_backtest` (that and the
paths), which the CLI runs before Prefect starts.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from alphapulse.pipelines.config.grid import GridError, check_grid, expand_grid, grid_size, parse_grid, parse_values
from alphapulse.pipelines.config.schema import Config
from alphapulse.pipelines.config.strategies import ENTRY_POINTS, resolve_strategy  # noqa: F401  (re-exported)
from alphapulse.pipelines.data.load import InputFiles, inspect_input
from alphapulse.pipelines.errors import ArgumentError
from alphapulse.pipelines.report.write import check_out_dir
from alphapulse.pipelines.runtime.cluster import check_cluster_spec
from alphapulse.pipelines.runtime.stages import request_paths
from alphapulse.transforms.backtest import engine as engine
from alphapulse.transforms.backtest.strategies import STRATEGIES, Plan, Strategy, StrategyError, check_strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BacktestRequest:
    """A checked request: what the CLI validates before Prefect starts. ``inputs``, ``data_path``
    and ``out_dir`` are None for bars already in memory (:func:`prepare_backtest_request`)."""

    config: Config
    inputs: InputFiles | None
    data_path: str | None
    out_dir: Path | None
    strategy: Strategy
    grid: dict
    grid_source: str
    grid_size: int
    plan: Plan
    backend: str = "auto"
    cluster: str | None = None
    strategy_ref: str | None = None
    """How the strategy was named (a built-in's name, ``package.module:name`` or a plug-in's name), so
    that a report's strategy can be found again (the daily signals' ``from_report``); None for a
    :class:`Strategy` object."""


def prepare_backtest_request(config: Config, *, strategy: str | Strategy | None = None,
                             grid: str | dict | None = None, backend: str = "auto",
                             cluster: str | None = "config") -> BacktestRequest:
    """Resolve the strategy, the grid and its plan, and the cluster, and check them cheaply: the
    request of a run on bars in memory (no input files, no report folder).

    Parameters
    ----------
    config : the validated config (its ``backtest`` block gives the defaults)
    strategy : a built-in strategy's name, ``package.module:name``, an entry point's name (group
        ``alphapulse.strategies``) or a :class:`Strategy` (:func:`resolve_strategy`); default
        ``backtest.strategy``
    grid : the command-line grid text (see :mod:`alphapulse.pipelines.config.grid`) or a mapping parameter ->
        values; default ``backtest.grid`` when the strategy is the config's, else the strategy's
        defaults (one combination)
    backend : "auto", "cpu" or "gpu"
    cluster : a cluster spec (see :mod:`alphapulse.pipelines.runtime.cluster`), None or "none" for
        in-process, or "config" for ``backtest.cluster``

    Raises ``ArgumentError`` or ``GridError`` with a one-line message.
    """
    bt = config.backtest
    strat = resolve_strategy(strategy or bt.strategy)
    if isinstance(grid, str):
        values, source = parse_grid(grid), "command line"
    elif isinstance(grid, dict):
        values, source = dict(grid), "argument"
    elif strategy is None or strategy == bt.strategy:  # the config's strategy: the config's grid
        values, source = {n: parse_values(n, v) for n, v in bt.grid.items()}, "config"
    else:
        values, source = {}, "strategy defaults"
        if bt.grid:
            log.info("backtest.grid is for %s, not %s: running %s's defaults", bt.strategy, strat.name, strat.name)
    values = check_grid(values, strategy_name=strat.name, params=strat.params)
    combos = expand_grid(values, random_sample=bt.random_sample, seed=bt.seed)
    try:
        plan = strat.plan(combos)
    except ValueError as e:
        raise GridError(f"{strat.name}: {e}") from None
    if not plan.combos:
        reasons = Counter(why for _, why in plan.skipped)
        raise GridError(f"{strat.name}: all {len(combos)} combinations are invalid "
                        f"({', '.join(f'{k}: {v}' for k, v in reasons.items())})")
    if plan.mode == engine.TARGET and strat is not STRATEGIES.get(strat.name):
        try:  # the grid's own combinations through the signal too (shapes, errors, look-ahead)
            check_strategy(strat, plan.combos[:2])
        except StrategyError as e:
            raise ArgumentError(str(e)) from None
    if cluster == "config":  # backtest.cluster overrides the top-level cluster.address
        cluster = bt.cluster if bt.cluster is not None else config.cluster.address
    if isinstance(cluster, str) and cluster.lower() == "none":
        cluster = None
    check_cluster_spec(cluster)
    ref = strategy or bt.strategy
    return BacktestRequest(config, None, None, None, strat, values, source, grid_size(values), plan, backend, cluster,
                           ref if isinstance(ref, str) else None)


def prepare_backtest(config: Config, *, data_path: str | None = None, out_dir: str | None = None,
                     strategy: str | Strategy | None = None, grid: str | dict | None = None,
                     backend: str = "auto", cluster: str | None = "config") -> BacktestRequest:
    """:func:`prepare_backtest_request` and the paths: ``data_path`` / ``out_dir`` override
    ``data.path`` / ``backtest.out_dir``; the input is inspected and the report folder checked.

    Raises ``ArgumentError``, ``GridError``, ``DataError`` or ``ReportError`` with a one-line message.
    """
    data_path, out_dir = request_paths(config, data_path=data_path, out_dir=out_dir,
                                       default_out_dir=config.backtest.out_dir, out_key="backtest.out_dir",
                                       backend=backend)
    request = prepare_backtest_request(config, strategy=strategy, grid=grid, backend=backend, cluster=cluster)
    inputs = inspect_input(data_path, columns=config.data.columns, fmt=config.data.format)
    out = check_out_dir(out_dir, inputs=[data_path])
    return replace(request, inputs=inputs, data_path=str(data_path), out_dir=out)
