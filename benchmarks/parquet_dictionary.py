"""Parquet's dictionary on computed floats: pandas' default writer against ``frames.write_computed``.

Writes the same frames both ways into a temporary folder and prints write time, read time and
file size, and their ratios (default / write_computed), each time the median of ``--repeat``:

- ``rows``: the first indicator file of an indicator store (2 M rows x 22 columns at 5,000 symbols);
- ``state``: the store's first state file (4,096 symbols x 248 columns);
- ``bars``: the real S&P 500 bars (``../shared/data``), which the store keeps with the default
  dictionary: for them it is the size that counts.

The store is the one ``benchmarks/incremental.py`` builds (``--store``, default
``/tmp/alphapulse-incremental/store``); run that first. Measure on a quiet machine.

Usage: ``python benchmarks/parquet_dictionary.py [--store DIR] [--repeat 5]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402
from _machine import LoadGuard, cpu_model  # noqa: E402  (benchmarks/ is the script folder, first on sys.path)

from alphapulse.pipelines.data.frames import write_computed  # noqa: E402

SP500 = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"


def _median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(name: str, frame: pd.DataFrame, tmp: Path, repeat: int) -> None:
    writers = {"default": lambda p: frame.to_parquet(p, index=False, row_group_size=65_536),
               "write_computed": lambda p: write_computed(frame, p, row_group_size=65_536)}
    got = {}
    for how, write in writers.items():
        path = tmp / f"{name}-{how}.parquet"
        write(path)  # warm: the first write pays for imports and page cache
        got[how] = (_median_s(lambda: write(path), repeat), _median_s(lambda: pd.read_parquet(path), repeat),
                    os.path.getsize(path))
    (dw, dr, ds), (cw, cr, cs) = got["default"], got["write_computed"]
    print(f"{name} {frame.shape[0]:,} x {frame.shape[1]}: write {dw:.3f} s vs {cw:.3f} s ({dw / cw:.2f}x), "
          f"read {dr:.3f} s vs {cr:.3f} s ({dr / cr:.2f}x), size {ds / 1e6:.1f} MB vs {cs / 1e6:.1f} MB "
          f"({ds / cs:.2f}x)  [default vs write_computed]", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--store", type=Path, default=Path("/tmp/alphapulse-incremental/store"))
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    data = args.store / "data"
    rows, states = sorted(data.glob("part-*.parquet")), sorted((data / "_state").glob("state-*.parquet"))
    if not rows or not states:
        sys.exit(f"no indicator store at {args.store}: run benchmarks/incremental.py first")
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores", flush=True)
    with LoadGuard(), tempfile.TemporaryDirectory() as tmp:  # the reads inside: their load is this run's
        frames = {"rows": pd.read_parquet(rows[0]), "state": pd.read_parquet(states[0])}
        if SP500.exists():
            frames["bars"] = pd.read_csv(SP500)
        for name, frame in frames.items():
            measure(name, frame, Path(tmp), args.repeat)


if __name__ == "__main__":
    main()
