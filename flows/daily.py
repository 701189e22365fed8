"""The daily flow: load -> validate -> indicators -> report, over ``pipelines.daily``.

Retries belong to IO: loading (a file on a flaky mount) and report writing retry; arithmetic
does not. Runs with no Prefect server configured (Prefect's ephemeral mode).
"""
from __future__ import annotations

import flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact

from pipelines import daily
from pipelines.backend import Backend, choose_backend
from pipelines.config import load_config
from pipelines.stages import StageTimer


@task(retries=2, retry_delay_seconds=5)
def load_bars_task(request: daily.DailyRequest, backend: Backend):
    return daily.load_stage(request, backend)


@task
def indicators_task(bars, request: daily.DailyRequest, backend: Backend):
    return daily.indicators_stage(bars, request, backend)


@task(retries=2, retry_delay_seconds=5)
def write_report_task(request, backend, loaded, indicators, stages, run_id):
    return daily.report_stage(request, backend, loaded, indicators, stages, run_id=run_id)


@flow(name="alphapulse-daily", log_prints=False)
def daily_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
               backend: str = "auto") -> str:
    """Daily indicators for every symbol; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``report.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    """
    from prefect.runtime import flow_run

    request = daily.prepare_daily(load_config(config_path), data_path=data_path, out_dir=out_dir, backend=backend)
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("load_validate"):
        loaded = load_bars_task(request, chosen)
    with timer.stage("indicators"):
        indicators = indicators_task(loaded.bars, request, chosen)
    run_id = str(flow_run.get_id() or "")[:12] or None
    result = write_report_task(request, chosen, loaded, indicators, timer.seconds, run_id)
    create_markdown_artifact(key="daily-summary", markdown=(result.out_dir / "summary.md").read_text(),
                             description=f"AlphaPulse daily report in {result.out_dir}")
    return str(result.out_dir)
