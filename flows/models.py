"""The models flow: features, walk-forward training, ensembles and evaluation, over ``pipelines.modelling``.

Retries belong to IO: loading and report writing retry on an ``OSError``; the arithmetic (one
coarse task: features, walk-forward, ensembles, evaluation and the signal backtest) and bad input
do not (``flows.runners.io_retry``). No caching and no cluster: the input is one panel, and the
work is one batched pass per walk-forward step on this process's device. The report is published
as Prefect artifacts (``flows.artifacts``). Runs with no Prefect server configured (Prefect's
ephemeral mode).
"""
from __future__ import annotations

import flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from flows.artifacts import publish_report_artifacts
from flows.runners import RETRIES, RETRY_DELAY_SECONDS, io_retry
from pipelines import modelling
from pipelines.backend import Backend, choose_backend
from pipelines.config import load_config
from pipelines.stages import StageTimer


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def load_bars_task(request: modelling.ModelsRequest, backend: Backend):
    return modelling.load_stage(request, backend)


@task(cache_policy=NO_CACHE)
def analyse_task(request: modelling.ModelsRequest, backend: Backend, bars):
    timer = StageTimer()
    return modelling.analyse(request, backend, bars, timer), timer.seconds


@task(retries=RETRIES, retry_delay_seconds=RETRY_DELAY_SECONDS, retry_condition_fn=io_retry, cache_policy=NO_CACHE)
def write_report_task(request, backend, loaded, parts, stages, run_id):
    return modelling.report_stage(request, backend, loaded, *parts, stages, run_id=run_id)


@flow(name="alphapulse-models", log_prints=False)
def models_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
                backend: str = "auto") -> str:
    """Features, walk-forward models, ensembles, IC and the signal's backtest; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``models.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    """
    from prefect.runtime import flow_run

    request = modelling.prepare_models(load_config(config_path), data_path=data_path, out_dir=out_dir,
                                       backend=backend)
    timer = StageTimer()
    with timer.stage("backend"):
        chosen = choose_backend(request.config.gpu, override=request.backend)
    with timer.stage("load_validate"):
        loaded = load_bars_task(request, chosen)
    parts, seconds = analyse_task(request, chosen, loaded.bars)
    run_id = str(flow_run.get_id() or "")[:12] or None
    result = write_report_task(request, chosen, loaded, parts, {**timer.seconds, **seconds}, run_id)
    publish_report_artifacts(result.out_dir, key="models", main_table="model_scores.parquet")
    return str(result.out_dir)
