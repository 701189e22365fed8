"""``alphapulse gpu status|utilization|benchmark``: what the GPU is, what it does, whether it pays.

Nothing here imports Prefect or CuPy at module level (see flows/cli/dispatch.py's _MODULES).
"""
from __future__ import annotations

import argparse
import json
import math

from alphapulse.flows.cli.options import add_config, add_out, add_quiet
from alphapulse.pipelines.errors import ArgumentError

_HELP = """\
status       devices (id, name, compute capability, memory), driver and CUDA versions, RAPIDS
             versions (NVML + CuPy); without a GPU: "available: no" and why (exit 0)
utilization  sample GPU utilisation/memory (NVML) and this process's CPU %/RSS for --seconds
benchmark    run an operation on both backends on the same seeded data: cpu_time, gpu_time,
             speedup, agreement, crossover size -> benchmark.parquet (with --out);
             --refresh-routing measures every operation and stores this device's speedups for
             routing (gpu.fallback.min_speedup)

sizes (--size): indicators: panel cells (bars x symbols, 1,260 bars); covariance: assets (756
returns); backtest: symbols x combinations (sma_cross, 1,260 bars); montecarlo: paths (50 assets)
"""


def add_parser(sub) -> None:
    from alphapulse.pipelines.gpu.bench import OPERATIONS

    g = sub.add_parser("gpu", help="GPU status, utilisation and GPU-vs-CPU benchmarks",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_HELP,
                       description="What the GPU is, what it is doing, and whether it beats the CPU.")
    gs = g.add_subparsers(dest="gpu_command", required=True)
    s = gs.add_parser("status", help="devices, driver/CUDA and RAPIDS versions")
    s.add_argument("--json", action="store_true", help="print the status as JSON")
    u = gs.add_parser("utilization", help="sample utilisation for a while")
    u.add_argument("--seconds", type=float, default=5.0, help="how long to sample (default 5)")
    u.add_argument("--interval", type=float, default=None,
                   help="seconds between samples, 0.05 to 3600 (default: gpu.monitoring.sample_interval_s)")
    add_config(u)
    u.add_argument("--json", action="store_true", help="print the samples as JSON")
    u.add_argument("--png", help="also write the timeline plot to this PNG file")
    b = gs.add_parser("benchmark", help="GPU vs CPU on the same synthetic data -> benchmark.parquet",
                      formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_HELP)
    b.add_argument("--op", choices=OPERATIONS, action="append",
                   help="operation (repeatable; default: all with --refresh-routing, else required)")
    b.add_argument("--size", type=int, nargs="+", help="sizes in the operation's unit (default: its ladder)")
    b.add_argument("--dtype", choices=("float64", "float32"), default="float64")
    b.add_argument("--repeats", type=int, default=3, help="timed runs per backend after a warm-up (median)")
    add_out(b, help="folder for benchmark.parquet, manifest.json and summary.md")
    b.add_argument("--refresh-routing", action="store_true",
                   help="store the measured speedups as this device's routing figures (replacing older ones)")
    add_config(b, help="YAML config (for gpu.fallback.speedup_cache)")
    b.add_argument("--json", action="store_true", help="print the rows as JSON")
    add_quiet(b, help="only warnings and the table")


def _gib(n) -> str:
    return "?" if n is None else f"{n / 2**30:.1f} GiB"


def _status(args) -> int:
    from alphapulse.pipelines.gpu.status import gpu_status

    st = gpu_status()
    if args.json:
        print(json.dumps(st, indent=2))
        return 0
    print(f"available: {'yes' if st['available'] else 'no'}" + (f" ({st['reason']})" if st["reason"] else ""))
    if st["driver_version"]:
        print(f"driver: {st['driver_version']}; CUDA (driver): {st['cuda_version']}"
              + (f"; CuPy CUDA runtime: {st['cupy_cuda_runtime']}" if st["cupy_cuda_runtime"] else ""))
    for d in st["devices"]:
        sms = f", {d['multiprocessors']} multiprocessors" if "multiprocessors" in d else ""
        print(f"device {d['id']}: {d['name']}, compute capability {d['compute_capability']}{sms}, "
              f"memory {_gib(d['memory_free_bytes'])} free of {_gib(d['memory_total_bytes'])}")
    print("RAPIDS: " + (", ".join(f"{k} {v}" for k, v in st["rapids"].items()) or "none installed"))
    return 0


def _utilization(args) -> int:
    from alphapulse.pipelines.config import load_config
    from alphapulse.pipelines.gpu.status import check_sample_interval, sample_for, timeline_png

    if args.interval is not None:
        interval = check_sample_interval(args.interval, name="--interval")
    else:  # the config's value is range-checked when the config is read
        interval = load_config(args.config).gpu.monitoring.sample_interval_s
    if not 0 <= args.seconds <= 3600:
        raise ArgumentError(f"--seconds must be from 0 to 3600, got {args.seconds}")
    sampler = sample_for(args.seconds, interval)
    record = sampler.record()
    if args.png:
        from pathlib import Path

        png = timeline_png(record, title=f"Utilisation over {args.seconds:g} s")
        Path(args.png).write_bytes(png)
    if args.json:
        print(json.dumps(record, indent=1))
        return 0
    if record["gpu_reason"]:
        print(f"GPU: not sampled ({record['gpu_reason']}); process CPU % and RSS only")
    print(f"{'t (s)':>8} {'GPU %':>6} {'GPU mem':>10} {'CPU %':>6} {'RSS':>10}")
    for s in record["samples"]:
        gpu = "-" if s["gpu_util_pct"] is None else f"{s['gpu_util_pct']:.0f}"
        mem = "-" if s["gpu_mem_used_bytes"] is None else _gib(s["gpu_mem_used_bytes"])
        print(f"{s['t']:>8.2f} {gpu:>6} {mem:>10} {s['cpu_pct']:>6.0f} {s['rss_bytes'] / 2**20:>7.0f} MiB")
    return 0


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format(v, spec)


def benchmark_summary_md(frame, crossovers: dict, status: dict) -> str:
    """summary.md of a benchmark folder: the device and one table per operation."""
    from alphapulse.pipelines.report.write import markdown_table

    dev = ", ".join(d["name"] for d in status["devices"]) or f"none ({status['reason']})"
    lines = ["# AlphaPulse GPU benchmark", "", f"- GPU: {dev}",
             f"- driver {status['driver_version'] or '-'}, CUDA {status['cuda_version'] or '-'}", ""]
    for op, part in frame.groupby("operation", sort=False):
        cross = crossovers.get(op)
        lines += [f"## {op}", "", f"crossover size (GPU wins from): {cross if cross is not None else 'none'}", "",
                  markdown_table(part[["size", "shape", "dtype", "cpu_time", "gpu_time", "speedup", "agree",
                                       "max_abs_diff", "cpu_check"]]), ""]
    return "\n".join(lines)


def _benchmark(args) -> int:
    import logging

    import pandas as pd

    from alphapulse.pipelines.gpu.status import gpu_status
    from alphapulse.pipelines.gpu.bench import OPERATIONS, crossover_size, run_benchmark

    ops = args.op or (list(OPERATIONS) if args.refresh_routing else None)
    if not ops:
        raise ArgumentError("give --op (indicators, covariance, backtest or montecarlo) or --refresh-routing")
    if args.size and len(ops) > 1:
        raise ArgumentError("--size applies to one --op at a time")
    if args.refresh_routing and not args.op:
        from alphapulse.pipelines.runtime.routing import device_key

        if device_key() is None:
            print(f"routing: nothing to measure: no GPU ({gpu_status()['reason']})")
            return 0
    if args.out:
        from alphapulse.pipelines.report.write import check_out_dir

        check_out_dir(args.out)
    logging.getLogger("pipelines").setLevel(logging.WARNING if args.quiet else logging.INFO)
    frames = [run_benchmark(op, args.size, dtype=args.dtype, repeats=args.repeats) for op in ops]
    frame = pd.concat(frames, ignore_index=True)
    frame["agree"] = frame["agree"].astype(object)
    crossovers = {op: crossover_size(f) for op, f in zip(ops, frames)}
    status = gpu_status()
    if args.json:
        print(frame.to_json(orient="records", indent=1))
    else:
        print(f"device: {frame['device'].iloc[0]}"
              + (f" (no GPU figures: {frame['gpu_reason'].iloc[0]})" if frame["gpu_reason"].notna().all() else ""))
        print(f"{'operation':<11} {'size':>10} {'cpu_time':>10} {'gpu_time':>10} {'speedup':>8} {'agree':>6} "
              f"{'max_abs_diff':>12} {'cpu_check':>9}")
        for r in frame.itertuples():
            print(f"{r.operation:<11} {r.size:>10,} {_fmt(r.cpu_time, '10.5f')} {_fmt(r.gpu_time, '10.5f'):>10} "
                  f"{_fmt(r.speedup, '8.2f'):>8} {_fmt(r.agree, ''):>6} {_fmt(r.max_abs_diff, '12.3g'):>12} "
                  f"{str(r.cpu_check):>9}")
        for op, c in crossovers.items():
            print(f"crossover {op}: {'GPU wins from size ' + format(c, ',') if c is not None else 'none'}")
    if args.out:
        from alphapulse.pipelines.report.write import write_report

        manifest = {"benchmark": {"operations": ops, "dtype": args.dtype, "repeats": args.repeats,
                                  "crossover_size": crossovers}, "gpu_status": status}
        out = write_report(args.out, tables={"benchmark.parquet": frame}, manifest=manifest,
                           summary=benchmark_summary_md(frame, crossovers, status))
        print(f"report: {out}")
    if args.refresh_routing:
        from alphapulse.pipelines.config import load_config
        from alphapulse.pipelines.runtime.routing import cache_path, device_key, record_speedups

        key = device_key(status)
        if key is None:
            print(f"routing: not refreshed: no GPU ({status['reason']})")
        else:
            path = cache_path(load_config(args.config).gpu.fallback.speedup_cache)
            entry = record_speedups(frame, key=key, path=path, replace=args.op is None)
            print(f"routing: speedups of {', '.join(entry['operations'])} stored for {key} in {path}")
    return 0


def run(args) -> int:
    if args.gpu_command == "status":
        return _status(args)
    if args.gpu_command == "utilization":
        return _utilization(args)
    return _benchmark(args)
