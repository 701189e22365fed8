"""The daily flow: ``alphapulse.pipelines.daily.DAILY`` (plan -> one task per partition: load,
validate, indicators, part file -> report) as Prefect tasks.

Cluster (``cluster``: "config", None/"none", "local", "processes", "cuda" or a scheduler address):
the run opens it (a ``distributed.Client``) and the partition tasks submit their work to it, all
at once; without one they run in-process one after the other, so memory stays bounded by one
partition. The same mechanism as ``alphapulse daily --no-prefect --cluster ...``.

Retries belong to IO: planning, a partition (whose loading or part file failed with an
``OSError``) and report writing retry; arithmetic and bad input do not (``alphapulse.flows.runners.io_retry``).
A failed run's state message names the stage, the partition and the cause.

Store (``store``): the run continues an indicator store instead (``DAILY_INCREMENTAL``: load, update
the store in one atomic commit, report), computing only the bars newer than each symbol's state.

Signals (``signals``, ``signals_from``): each strategy's position for the next bar per symbol
(``signals.parquet``), ranked on ``summary.html`` and published as the ``daily-signals`` artifact
(:mod:`alphapulse.pipelines.daily.signals`).

Caching: a partition's results are cached (persisted) under
:func:`alphapulse.pipelines.daily.partition_key` (the config hash, the backend and dtype, the input
files' fingerprint with the partition's symbols, the code), so a re-run on unchanged input skips
finished partitions (their task runs are 'Cached') and a changed file recomputes. The part files
themselves live beside Prefect's results (``alphapulse.flows.runners.parts_dir``) and are
hard-linked into each report.
"""
from __future__ import annotations

import alphapulse.flows  # noqa: F401  (Prefect settings before Prefect is imported)

from prefect import flow

from alphapulse.flows.artifacts import publish_report_artifacts
from alphapulse.flows.runners import run_flow
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.daily import DAILY, prepare_daily


@flow(name="alphapulse-daily", log_prints=False)
def daily_flow(data_path: str | None = None, out_dir: str | None = None, config_path: str | None = None,
               backend: str = "auto", cluster: str | None = "config", store: str | None = None,
               signals: dict | None = None, signals_from: str | None = None) -> str:
    """Daily indicators for every symbol; returns the report folder.

    Parameters
    ----------
    data_path : bars (CSV/parquet file or folder); default ``data.path`` from the config
    out_dir : report folder; default ``report.out_dir`` from the config
    config_path : YAML config; default the shipped config
    backend : "auto", "cpu" or "gpu"
    cluster : "config" (``cluster.address``), None or "none" (in-process), "local", "processes",
        "cuda" or a Dask scheduler address
    store : an indicator store folder to continue (new bars only; the first run on an empty or new
        folder is a full run), see :mod:`alphapulse.pipelines.daily.incremental`; None: a full run
    signals : a ``signals:`` block replacing the config's, e.g. ``{"strategies": [{"strategy":
        "sma_cross", "params": {"fast": 20, "slow": 50}}]}`` or ``{"from_report": "reports/backtest",
        "top": 3}``; None: the config's. Today's entries and exits become the ``daily-signals`` artifact
    signals_from : a backtest report folder whose top combinations to signal (``signals.top``)
    """
    request = prepare_daily(load_config(config_path), data_path=data_path, out_dir=out_dir, backend=backend,
                            cluster=cluster, store=store, signals=signals, signals_from=signals_from)
    result = run_flow(DAILY, request)  # DAILY_INCREMENTAL when the request has a store
    publish_report_artifacts(result.out_dir, key="daily")
    return str(result.out_dir)
