"""The backtest's compute stage: the cluster, the sweep and the walk-forward, and its cache key.

Implements :func:`compute_stage` (checks the run's memory and time budget, runs
:func:`~alphapulse.pipelines.backtest.sweep.sweep_stage` and
:func:`~alphapulse.pipelines.backtest.walk_forward.walk_forward_stage` on the run's Dask client
if it has one), its :class:`ComputeResult`, and :func:`compute_key` (the Prefect flow's cache key
for that result).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

from alphapulse.pipelines.backtest.panel import PreparedPanel
from alphapulse.pipelines.backtest.request import BacktestRequest
from alphapulse.pipelines.backtest.sweep import SweepResult, sweep_stage
from alphapulse.pipelines.backtest.walk_forward import WalkForwardResult, walk_forward_stage
from alphapulse.pipelines.data.partitions import input_fingerprint
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.pipelines.runtime.budget import check_backtest
from alphapulse.pipelines.runtime.stages import StageTimer, result_key
from alphapulse.transforms.backtest.metrics import METRICS
from alphapulse.transforms.backtest.walk_forward import walk_forward_windows


@dataclass
class ComputeResult:
    """The sweep, the walk-forward (None when not configured), the cluster's record and the
    stages' seconds."""

    sweep: SweepResult
    walk_forward: WalkForwardResult | None
    cluster: dict
    stages: dict = field(default_factory=dict)
    cached: bool = False  # set by the flow when Prefect's cache served it (its stages are another run's)


def compute_key(request: BacktestRequest, backend: Backend) -> str:
    """What the sweep's results depend on: the config, the strategy and its grid (arguments may
    override the config's), the backend and dtype, the input files' fingerprint and the code. Not
    the cluster: results are bit-identical on every cluster. The flow's cache key."""
    grid = json.dumps(request.grid, sort_keys=True, default=str)
    return result_key(request.config.hash(), request.strategy.name, grid, backend.name, str(backend.dtype),
                      input_fingerprint(request.inputs), roots=("alphapulse.pipelines.backtest.compute",))


def compute_stage(prepared: PreparedPanel, request: BacktestRequest, backend: Backend,
                  timer: StageTimer | None = None, *, client=None, cluster: dict | None = None) -> ComputeResult:
    """Run the sweep and the walk-forward, sharded over ``client``'s workers when given (the run's
    cluster, described by ``cluster`` for the manifest); the stages' seconds are added to ``timer``
    and returned in the result."""
    timer = timer or StageTimer()
    before = set(timer.seconds)
    wf = request.config.backtest.walk_forward
    n_windows = (len(walk_forward_windows(prepared.shape[0], train_bars=wf.train_bars, test_bars=wf.test_bars))
                 if wf else 0)
    check_backtest(request.config, bars=prepared.shape[0], symbols=prepared.shape[1],
                   combinations=len(request.plan.combos), parameters=len(request.strategy.params),
                   metrics=len(METRICS), windows=2 * n_windows)  # train and test metrics per window
    with timer.stage("sweep"):
        sweep = sweep_stage(prepared, request, backend, client)
    wf = None
    if request.config.backtest.walk_forward is not None:
        with timer.stage("walk_forward"):
            wf = walk_forward_stage(prepared, request, backend, client)
    stages = {k: v for k, v in timer.seconds.items() if k not in before}
    return ComputeResult(sweep, wf, {"spec": request.cluster, **(cluster or {"kind": "in-process", "workers": 1})},
                         stages)
