"""The whole daily pipeline on a bars file, without Prefect and (optionally) through Prefect.

    python benchmarks/daily.py [--data PATH] [--repeat 3] [--prefect]

Without Prefect: load + validate + indicators + report in this process, best of ``--repeat``
(the first run, which loads numba's cached kernels and imports Dask, is reported separately).
With ``--prefect``: the CLI as a subprocess, once with ``--no-prefect`` and once as a Prefect
flow in ephemeral mode, so the difference is Prefect's start-up and bookkeeping.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from _machine import LoadGuard  # benchmarks/ is the script folder, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT if DEFAULT.exists() else ROOT / "data" / "sp500_sample.parquet"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prefect", action="store_true")
    args = ap.parse_args()

    t0 = time.perf_counter()
    from alphapulse.pipelines.config import load_config
    from alphapulse.pipelines.daily.pipeline import prepare_daily, run_daily

    imports = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        times = []
        for i in range(args.repeat + 1):
            start = time.perf_counter()
            result = run_daily(prepare_daily(load_config(), data_path=args.data, out_dir=f"{tmp}/r", backend="cpu"))
            times.append((time.perf_counter() - start, dict(result.manifest["stages"])))
        inp = result.manifest["input"]
        print(f"data: {args.data}: {inp['rows_read']:,} rows, {inp['symbols']} symbols, "
              f"{len(result.manifest['output']['columns']) - 2} indicator columns, float64, CPU")
        print(f"imports: {imports:.2f} s")
        print(f"first run: {times[0][0]:.2f} s  {times[0][1]}")
        best = min(times[1:], key=lambda t: t[0])
        print(f"best of {args.repeat}: {best[0]:.2f} s  {best[1]}")

        if args.prefect:
            cli = [sys.executable, "-m", "alphapulse.flows.cli.dispatch", "daily", "--data", args.data,
                   "--out", f"{tmp}/p", "-q", "--backend", "cpu"]
            for label, extra in (("CLI --no-prefect", ["--no-prefect"]), ("CLI, Prefect ephemeral", [])):
                start = time.perf_counter()
                subprocess.run(cli + extra, check=True, capture_output=True, cwd=ROOT)
                print(f"{label}: {time.perf_counter() - start:.1f} s wall (process start to exit)")


if __name__ == "__main__":
    with LoadGuard():
        main()
