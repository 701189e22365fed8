"""Larger than memory: the daily pipeline on synthetic partitioned parquet, wall time and peak RSS.

Generates (once, kept under ``--root``, default ``/tmp/alphapulse-scale``) seeded synthetic bars
with :func:`alphapulse.pipelines.data.synthetic.write_synthetic_parquet`, then runs ``alphapulse daily
--no-prefect`` on them in a child process and reports its wall time and peak resident memory
(``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the child's own peak), next to the in-memory size of
the bars and of the indicators the run wrote (what a one-shot load would hold at once).

Each run is one child process, so the peak is that run's alone. Sizes (``--case``):

- ``daily``: 5,000 symbols x 2,520 daily bars (10 years; 12.6 M bars), files of 500 symbols;
- ``daily-small``: the first 1,000 of them (2.5 M bars), to show the peak does not grow with the input;
- ``minute``: 500 symbols x 98,280 minute bars (252 days x 390; 49.1 M bars), files of 50 symbols;
- ``minute-small``: 100 symbols of them (9.8 M bars).

Usage: ``python benchmarks/scale.py --case daily-small --case daily [--bars-per-partition N]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from benchmarks._machine import LoadGuard, cpu_model  # noqa: E402
from alphapulse.pipelines.config import default_config_text  # noqa: E402

CASES = {  # name -> (frequency, symbols, bars per symbol, symbols per file)
    "daily": ("daily", 5000, 2520, 500),
    "daily-small": ("daily", 1000, 2520, 500),
    "minute": ("minute", 500, 252 * 390, 50),
    "minute-small": ("minute", 100, 252 * 390, 50),
}


def ensure_data(root: Path, case: str) -> Path:
    """The case's parquet folder, generated if missing (seed 0, float64)."""
    from alphapulse.pipelines.data.synthetic import write_synthetic_parquet

    freq, symbols, bars, per_file = CASES[case]
    folder = root / f"{freq}-{symbols}x{bars}"
    done = folder / "_complete"
    if not done.exists():
        t0 = time.perf_counter()
        write_synthetic_parquet(folder, symbols, bars, frequency=freq, seed=0, symbols_per_file=per_file,
                                overwrite=True)
        done.write_text("")
        print(f"generated {folder} in {time.perf_counter() - t0:.0f} s", flush=True)
    return folder


def run_case(root: Path, case: str, bars_per_partition: int) -> dict:
    data = ensure_data(root, case)
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        config = Path(tmp) / "config.yaml"
        cfg = yaml.safe_load(default_config_text())  # the shipped indicators, synthetic column names
        cfg["data"].update(path=None, columns={}, bars_per_partition=bars_per_partition)
        cfg["gpu"]["enabled"] = False
        config.write_text(yaml.safe_dump(cfg))
        out = Path(tmp) / "report"
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "alphapulse.flows.cli.dispatch", "daily", "--no-prefect", "-q",
                        "--data", str(data), "--out", str(out), "--config", str(config), "--backend", "cpu"],
                       check=True, cwd=ROOT,
                       stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - t0
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if peak_kib <= before:
            print("warning: the peak is not above an earlier child's; run one case per invocation", flush=True)
        manifest = json.loads((out / "manifest.json").read_text())
        n_rows, n_cols = manifest["output"]["rows"], len(manifest["output"]["columns"])
    bars = manifest["input"]["rows_read"]
    # in memory at once without partitions: the bars as pandas holds them (measured on the first
    # file, per row) and the indicator frame (timestamp, symbol ~ 16 B, float64 columns)
    import pandas as pd

    first = pd.read_parquet(sorted(data.glob("part-*.parquet"))[0])
    bars_gb = first.memory_usage(deep=True, index=False).sum() / len(first) * bars / 1e9
    ind_gb = n_rows * (8 * (n_cols - 2) + 8 + 16) / 1e9
    return {"case": case, "bars": bars, "symbols": manifest["input"]["symbols"],
            "partitions": manifest["output"]["partitions"], "bars_per_partition": bars_per_partition,
            "wall_s": round(wall, 1), "peak_rss_gb": round(peak_kib * 1024 / 1e9, 2),
            "bars_in_memory_gb": round(bars_gb, 2), "indicators_in_memory_gb": round(ind_gb, 2),
            "stages": manifest["stages"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", action="append", choices=sorted(CASES), required=True)
    p.add_argument("--root", type=Path, default=Path("/tmp/alphapulse-scale"))
    p.add_argument("--bars-per-partition", type=int, default=2_000_000)
    args = p.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores", flush=True)
    for case in args.case:
        r = run_case(args.root, case, args.bars_per_partition)
        print(json.dumps(r), flush=True)
        print(f"{case}: {r['bars']:,} bars, {r['symbols']:,} symbols, {r['partitions']} partitions: "
              f"{r['wall_s']} s, peak RSS {r['peak_rss_gb']} GB (bars {r['bars_in_memory_gb']} GB + "
              f"indicators {r['indicators_in_memory_gb']} GB in memory at once)", flush=True)


if __name__ == "__main__":
    with LoadGuard():
        main()
