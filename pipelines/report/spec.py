"""What each pipeline's report module supplies, and where to find it by the pipeline's name.

A pipeline's report is owned by its ``report`` module (``alphapulse.pipelines.<pipeline>.report``):
it builds the manifest and the tables, writes ``summary.md``, and exports :data:`REPORT`, a
:class:`ReportSpec` with its ``summary.html`` sections, its CLI lines and its headline table.
``summary.html`` (:func:`alphapulse.pipelines.report.html.render`), the Prefect artifacts and the
CLI only iterate over them, so a new report field is a change to that one module.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

REPORT_MODULES = {"daily": "alphapulse.pipelines.daily.report", "backtest": "alphapulse.pipelines.backtest.report",
                  "portfolio": "alphapulse.pipelines.portfolio.report", "models": "alphapulse.pipelines.models.report"}
"""Pipeline name -> the module that owns its report (imported by name: the report room stays below
the pipeline rooms)."""


@dataclass(frozen=True)
class ReportSpec:
    """One pipeline's report, as the page, the artifacts and the CLI see it.

    Attributes
    ----------
    pipeline : the manifest's ``pipeline``
    sections : ``summary.html`` sections, in page order, between the run card and the common
        monitoring, stages, routing, rejected-rows and files sections; each
        ``(manifest, tables, files) -> str | None``
    cli_lines : ``(manifest, out_dir) -> list[str]``: what ``alphapulse <pipeline>`` prints
        before the stage times
    headline : ``(manifest, tables) -> (title, frame) | None``: the run's main result (the
        Prefect results artifact)
    main_table : the parquet file ``headline`` reads
    artifacts : ``(manifest, out_dir) -> [(name, description, frame)]``: further Prefect table
        artifacts (``<key>-<name>``), e.g. the daily run's signals
    """

    pipeline: str
    sections: tuple[Callable, ...]
    cli_lines: Callable[[dict, object], list[str]]
    headline: Callable[[dict, Mapping[str, pd.DataFrame]], tuple[str, pd.DataFrame] | None]
    main_table: str | None = None
    artifacts: Callable[[dict, object], list] | None = None


def report_spec(pipeline) -> ReportSpec | None:
    """The :class:`ReportSpec` of a pipeline by name (None for a report of another kind)."""
    module = REPORT_MODULES.get(pipeline) if isinstance(pipeline, str) else None
    return importlib.import_module(module).REPORT if module else None


def all_specs() -> list[ReportSpec]:
    """Every pipeline's spec, in :data:`REPORT_MODULES` order."""
    return [report_spec(name) for name in REPORT_MODULES]
