"""Same results in every cluster mode: the daily and portfolio flows in-process, on a
LocalCluster of processes and on an existing scheduler's address write byte-identical parquet, and
so do all four pipelines without Prefect (one cluster mechanism: the run opens the cluster,
remote stages are submitted to it, with or without Prefect).
(The backtest's sweep has its own test: tests/pipelines/backtest/test_backtest_pipeline.py.)"""
import json
import sys

import pytest

from tests.flows.scale_testlib import SAMPLE, config_file, report_bytes, result_storage, split_by_symbol


def test_runner_options_never_import_dask_cuda():
    from alphapulse.flows.runners import task_runner
    from alphapulse.pipelines.runtime.cluster import dask_runner_options, resolve_cluster
    from alphapulse.pipelines.config import load_config, parse_config

    config = load_config()
    assert dask_runner_options(None) is None and task_runner(None, config)[0] is None
    cuda = dask_runner_options("cuda", workers=2, gpu_pool_size="8GB")
    assert cuda == {"cluster_class": "alphapulse.pipelines.runtime.cluster.cuda_cluster",
                    "cluster_kwargs": {"dashboard_address": None, "n_workers": 2, "rmm_pool_size": "8GB"}}
    runner, info = task_runner("cuda", config)  # built, not started: nothing imported yet
    assert type(runner).__name__ == "DaskTaskRunner" and info["kind"] == "LocalCUDACluster"
    assert "dask_cuda" not in sys.modules
    assert dask_runner_options("tcp://10.0.0.5:8786") == {"address": "tcp://10.0.0.5:8786"}
    processes = dask_runner_options("processes", workers=3)["cluster_kwargs"]
    assert (processes["n_workers"], processes["threads_per_worker"], processes["processes"]) == (3, 1, True)
    # the top-level cluster block, "none" and the backtest override
    cfg = parse_config({"cluster": {"address": "processes", "workers": 2}})
    assert resolve_cluster("config", cfg) == "processes" and resolve_cluster("none", cfg) is None
    assert resolve_cluster(None, cfg) is None and resolve_cluster("local", cfg) == "local"
    with pytest.raises(ValueError, match="scheduler address"):
        resolve_cluster("htpp://x", cfg)


def test_backtest_cluster_falls_back_to_the_top_level_block(tmp_path):
    from alphapulse.pipelines.backtest import prepare_backtest
    from alphapulse.pipelines.config import parse_config

    raw = {"data": {"columns": {"timestamp": "date", "symbol": "Name"}}, "cluster": {"address": "local"}}
    assert prepare_backtest(parse_config(raw), data_path=str(SAMPLE), out_dir=str(tmp_path / "r")).cluster == "local"
    raw["backtest"] = {"cluster": "processes"}
    where = {"data_path": str(SAMPLE), "out_dir": str(tmp_path / "r")}
    assert prepare_backtest(parse_config(raw), **where).cluster == "processes"
    assert prepare_backtest(parse_config(raw), **where, cluster=None).cluster is None


@pytest.mark.slow
def test_daily_flow_same_bytes_in_every_mode(prefect_ephemeral, tmp_path):
    from distributed import LocalCluster

    from alphapulse.flows.daily import daily_flow

    data = split_by_symbol(tmp_path / "in", 3)
    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=15_000)  # 5 partitions
    reports = {}
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as scheduler:
        for mode in ("none", "processes", scheduler.scheduler_address):
            with result_storage(tmp_path / f"store-{len(reports)}"):  # no cache shared between modes
                out = daily_flow(data_path=str(data), out_dir=str(tmp_path / f"rep{len(reports)}"), config_path=cfg,
                                 backend="cpu", cluster=mode)
            reports[mode] = out
    files = {mode: report_bytes(out) for mode, out in reports.items()}
    first = files["none"]
    assert sorted(first) == ["breadth.parquet", *(f"indicators/part-{i:05d}.parquet" for i in range(5)),
                             "rejected.parquet", "signals.parquet"]
    for mode, got in files.items():
        assert got == first, mode
    kinds = [json.loads((tmp_path / f"rep{i}" / "manifest.json").read_text())["cluster"]["kind"] for i in range(3)]
    assert kinds == ["in-process", "LocalCluster (processes)", "scheduler"]
    assert "dask_cuda" not in sys.modules


@pytest.mark.slow
def test_portfolio_flow_same_bytes_in_process_and_on_processes(prefect_ephemeral, tmp_path):
    from alphapulse.flows.portfolio import portfolio_flow

    outs = [portfolio_flow(data_path=str(SAMPLE), out_dir=str(tmp_path / mode), backend="cpu", cluster=mode)
            for mode in ("none", "processes")]
    a, b = report_bytes(outs[0]), report_bytes(outs[1])
    assert len(a) >= 10 and a == b


@pytest.mark.gpu
@pytest.mark.slow
def test_daily_flow_on_a_cuda_cluster_matches_in_process(prefect_ephemeral, tmp_path):
    """dask-cuda LocalCUDACluster (one worker per GPU): the same partitions, on the GPU backend,
    match the CPU in-process run to float64 rounding (GPU and CPU kernels differ in summation order)."""
    import numpy as np
    import pandas as pd

    from tests.transforms.gpu_testlib import cupy_or_skip

    cupy_or_skip()
    pytest.importorskip("dask_cuda")
    from alphapulse.flows.daily import daily_flow

    data = split_by_symbol(tmp_path / "in", 2)
    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=20_000)
    with result_storage(tmp_path / "s1"):
        cpu = daily_flow(data_path=str(data), out_dir=str(tmp_path / "cpu"), config_path=cfg, backend="cpu",
                         cluster="none")
    with result_storage(tmp_path / "s2"):
        gpu = daily_flow(data_path=str(data), out_dir=str(tmp_path / "gpu"), config_path=cfg, backend="gpu",
                         cluster="cuda")
    manifest = json.loads((tmp_path / "gpu" / "manifest.json").read_text())
    assert manifest["cluster"]["kind"] == "LocalCUDACluster" and manifest["backend"]["name"] == "gpu"
    a, b = pd.read_parquet(f"{cpu}/indicators"), pd.read_parquet(f"{gpu}/indicators")
    assert list(a.columns) == list(b.columns) and len(a) == len(b)
    for col in a.columns[2:]:
        np.testing.assert_allclose(b[col], a[col], rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=col)
    pd.testing.assert_frame_equal(pd.read_parquet(f"{gpu}/rejected.parquet"),
                                  pd.read_parquet(f"{cpu}/rejected.parquet"), check_dtype=False)


@pytest.mark.parametrize("argv, message", [
    (["daily", "--cluster", "bogus"], "cluster must be null, 'local', 'processes', 'cuda' or a scheduler address"),
    (["portfolio", "--cluster", "htp://x:1"], "not 'htp://x:1'"),
    (["backtest", "--no-prefect", "--cluster", "procs"], "cluster must be null"),
    (["models", "--cluster", "udp://x"], "cluster must be null"),
])
def test_cli_cluster_errors_are_one_line(argv, message, tmp_path, capsys):
    from alphapulse.flows.cli.dispatch import main

    assert main([*argv, "--data", str(SAMPLE), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alphapulse: error: ") and message in err and err.count("\n") == 1


@pytest.mark.parametrize("pipeline", ["daily", "backtest", "portfolio", "portfolio --walk-forward", "models"])
def test_every_pipeline_on_a_cluster_without_prefect_matches_in_process(pipeline, tmp_path, capsys):
    """``alphapulse <pipeline> --no-prefect --cluster processes``: the remote stages (daily's
    partitions, the backtest's symbol blocks, the portfolio's and the models' analysis) run on a
    LocalCluster of worker processes and the report's parquet equals the in-process run's."""
    from alphapulse.flows.cli.dispatch import main

    cfg = config_file(tmp_path / "cfg.yaml", bars_per_partition=20_000, columns={"timestamp": "date", "symbol": "Name"})
    pipeline, *extra = pipeline.split()
    extra += ["--grid", "fast=5:15:5,slow=30:50:20"] if pipeline == "backtest" else []
    outs = {}
    for mode in ("none", "processes"):
        out = tmp_path / mode
        argv = [pipeline, "--no-prefect", "--cluster", mode, "--config", cfg, "--backend", "cpu", "--data", str(SAMPLE),
                "--out", str(out), *extra]
        assert main(argv) == 0, capsys.readouterr().err
        outs[mode] = out
    a, b = report_bytes(outs["none"]), report_bytes(outs["processes"])
    assert len(a) >= 2 and a == b
    if extra == ["--walk-forward"]:
        assert {"rebalance_weights.parquet", "wf_returns.parquet", "wf_metrics.parquet"} <= set(a)
    manifests = [json.loads((outs[m] / "manifest.json").read_text()) for m in ("none", "processes")]
    assert "cluster_start" in manifests[1]["stages"] and "cluster_start" not in manifests[0]["stages"]
    if pipeline in ("daily", "backtest"):
        assert manifests[1]["cluster"]["kind"] == "LocalCluster (processes)"
    if pipeline == "daily":
        assert manifests[0]["output"]["partitions"] == 3
