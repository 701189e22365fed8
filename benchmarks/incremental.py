"""Incremental daily runs: one new day appended to a store vs the full recompute, wall time and peak RSS.

Generates (once, under ``--root``, default ``/tmp/alphapulse-incremental``) seeded random-walk bars for
``--symbols`` x ``--days`` (default 5,000 x 2,521: 10 years in the store, then one new day), as three
parquet files: the history, the new day, and both. Builds a store from the history (untimed), then
times, each in its own child process (so each peak RSS is that phase's alone):

- ``full``: the compute alone: read every bar, compute every shipped indicator over the whole
  panel (``compute_indicators``), write the indicators parquet;
- ``incremental``: read the new day, continue the store (``update_store``: state in, one day's rows
  and the next state out, one atomic commit);
- ``full_run`` and ``incremental_run``: what a user runs (indicators only), ``alphapulse daily`` without Prefect
  (``run_daily``: load and validate, the indicators in partitions of whole symbols, the report
  folder) on every bar, and ``alphapulse daily --store`` on the new day (load and validate, the
  store's update, the report folder);
- ``full_run_signals`` and ``incremental_run_signals``: the same with the shipped ``signals:`` block
  (two strategies and the breadth), which read each symbol's whole history: the store run reads it
  from the store's bars (and the script checks both ``signals.parquet`` are equal);
- ``merge_run``: ``alphapulse daily --store`` (indicators only) on the 32nd day after the history, the
  run that merges the store's small bar files (``BARS_COMPACT_FILES``, every 32 runs); the 31 runs
  before it (``later/``, the random walk carried on) are untimed.

Each phase is timed from its first call (the imports at the top of ``phase`` done; whatever the call
imports or loads lazily, Dask or Numba's cached kernels, inside the timed call). The report says the
ratios, and checks the store after the append equals the full run's rows bit for bit. Peak RSS is the
child's own high-water mark (``VmHWM``; ``ru_maxrss`` would carry the parent's from before the fork).
Measure on a quiet machine; ``--symbols 50 --days 120`` is a smoke run.

Usage: ``python benchmarks/incremental.py [--symbols 5000] [--days 2521] [--root DIR]``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _machine import LoadGuard  # noqa: E402  (benchmarks/ is the script folder, first on sys.path)


def _specs():
    from alphapulse.pipelines.config import load_config

    return load_config().indicator_specs()


def prepare(root: Path, n_symbols: int, n_days: int) -> None:
    done = root / f"_complete-{n_symbols}x{n_days}"
    if done.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    days = pd.bdate_range("2015-01-01", periods=n_days)
    close = np.round(np.exp(np.log(50.0) + np.cumsum(rng.normal(0, 0.015, (n_days, n_symbols)), axis=0)), 4)
    spread = rng.uniform(0, 0.02, (2, n_days, n_symbols)) * close
    frame = pd.DataFrame({
        "timestamp": np.repeat(days.values[None, :], n_symbols, axis=0).ravel(),
        "symbol": np.repeat([f"S{k:05d}" for k in range(n_symbols)], n_days),
        "open": close.T.ravel(), "high": (close + spread[0]).T.ravel(), "low": (close - spread[1]).T.ravel(),
        "close": close.T.ravel(), "volume": rng.integers(0, 10**7, n_days * n_symbols).astype(np.float64)})
    frame.to_parquet(root / "all.parquet", index=False)
    frame[frame["timestamp"] < days[-1]].to_parquet(root / "history.parquet", index=False)
    frame[frame["timestamp"] == days[-1]].to_parquet(root / "day.parquet", index=False)
    done.write_text("")


def prepare_later(root: Path, n_symbols: int) -> None:
    """``later/day-KK.parquet``: the :data:`LATER_DAYS` business days after the last, one file each."""
    done = root / "later" / f"_complete-{LATER_DAYS}"
    if done.exists():
        return
    shutil.rmtree(root / "later", ignore_errors=True)
    (root / "later").mkdir()
    last = pd.read_parquet(root / "day.parquet")
    rng = np.random.default_rng(1)
    days = pd.bdate_range(last["timestamp"].iloc[0], periods=LATER_DAYS + 1)[1:]
    close = last["close"].to_numpy()
    for k, day in enumerate(days):
        close = np.round(close * np.exp(rng.normal(0, 0.015, n_symbols)), 4)
        spread = rng.uniform(0, 0.02, (2, n_symbols)) * close
        pd.DataFrame({"timestamp": np.full(n_symbols, day.to_datetime64()), "symbol": last["symbol"].to_numpy(),
                      "open": close, "high": close + spread[0], "low": close - spread[1], "close": close,
                      "volume": rng.integers(0, 10**7, n_symbols).astype(np.float64)}
                     ).to_parquet(root / "later" / f"day-{k:02d}.parquet", index=False)
    done.write_text("")


LATER_DAYS = 31
"""The new day and these make the 32 runs after which a store merges its small bar files."""


def phase(name: str, root: Path) -> dict:
    from alphapulse.pipelines.daily.incremental import update_store
    from alphapulse.pipelines.data.frames import write_computed
    from alphapulse.pipelines.data.panel import bars_to_panel, panel_to_frame
    from alphapulse.transforms.indicators.registry import compute_indicators

    specs = _specs()
    t0 = time.perf_counter()
    if name == "base":
        update_store(root / "store", pd.read_parquet(root / "history.parquet"), specs, dtype=np.dtype(np.float64))
    elif name == "full":
        bars = pd.read_parquet(root / "all.parquet")
        panel = bars_to_panel(bars, dtype=np.float64, xp=np, order="F")
        frame = panel_to_frame(panel, compute_indicators(panel.fields, specs), keys=bars[["timestamp", "symbol"]])
        write_computed(frame, root / "full-indicators.parquet")  # as the store and the daily parts are written
    elif name == "incremental":
        update_store(root / "store-run", pd.read_parquet(root / "day.parquet"), specs, dtype=np.dtype(np.float64))
    elif name == "merge_prep":  # untimed: the 31 runs before the one that merges
        for path in [root / "day.parquet", *sorted((root / "later").glob("day-*.parquet"))[:-1]]:
            update_store(root / "store-merge_run", pd.read_parquet(path), specs, dtype=np.dtype(np.float64))
    elif name in RUNS:
        from alphapulse.pipelines.config import load_config, with_block
        from alphapulse.pipelines.daily import prepare_daily, run_daily

        config = load_config()  # the shipped signals block: two strategies and the breadth
        if not name.endswith("_signals"):  # the indicators alone, what the store itself saves
            config = with_block(config, "signals", {"strategies": [], "breadth": False}, source="benchmark")
        t0 = time.perf_counter()
        if name.startswith("full_run"):
            run_daily(prepare_daily(config, data_path=str(root / "all.parquet"), out_dir=str(root / f"report-{name}"),
                                    backend="cpu", cluster=None))
        else:
            day = sorted((root / "later").glob("day-*.parquet"))[-1] if name == "merge_run" else root / "day.parquet"
            run_daily(prepare_daily(config, data_path=str(day), out_dir=str(root / f"report-{name}"),
                                    backend="cpu", cluster=None, store=root / f"store-{name}"))
    return {"phase": name, "wall_s": round(time.perf_counter() - t0, 3), "peak_rss_mb": _peak_rss_mb()}


RUNS = ("full_run", "incremental_run", "full_run_signals", "incremental_run_signals", "merge_run")


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _store_is_current(store: Path) -> bool:
    from alphapulse.pipelines.daily.store import MANIFEST, code_version

    try:
        manifest = json.loads((store / "data" / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("identity", {}).get("code") == code_version()


def _bar_files(store: Path) -> list[dict]:
    from alphapulse.pipelines.daily.store import MANIFEST

    return json.loads((store / "data" / MANIFEST).read_text())["bars"]


def child(name: str, root: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--phase", name, "--root", str(root)], check=True, cwd=ROOT,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--symbols", type=int, default=5000)
    p.add_argument("--days", type=int, default=2521)
    p.add_argument("--root", type=Path, default=Path("/tmp/alphapulse-incremental"))
    p.add_argument("--phase", choices=["base", "full", "incremental", "merge_prep", *RUNS],
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.root)), flush=True)
        return
    from benchmarks._machine import cpu_model

    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; {args.symbols:,} symbols x {args.days:,} days",
          flush=True)
    prepare(args.root, args.symbols, args.days)
    prepare_later(args.root, args.symbols)
    if not _store_is_current(args.root / "store"):  # built by other code: it would recompute in full
        shutil.rmtree(args.root / "store", ignore_errors=True)
        print(json.dumps(child("base", args.root)), flush=True)
    shutil.rmtree(args.root / "store-run", ignore_errors=True)
    shutil.copytree(args.root / "store", args.root / "store-run")  # hard to link a store: copy it untimed
    for name in ("incremental_run", "incremental_run_signals", "merge_run"):
        shutil.rmtree(args.root / f"store-{name}", ignore_errors=True)
        shutil.copytree(args.root / "store", args.root / f"store-{name}")
    child("merge_prep", args.root)
    os.sync()  # the copies' writeback would otherwise run (as other load) inside the timed phases
    with LoadGuard():
        full = child("full", args.root)
        inc = child("incremental", args.root)
        runs = {name: child(name, args.root) for name in RUNS}
    print(json.dumps(full), json.dumps(inc), *map(json.dumps, runs.values()), sep="\n", flush=True)
    got = pd.read_parquet(args.root / "store-run").sort_values(["symbol", "timestamp"], ignore_index=True)
    want = pd.read_parquet(args.root / "full-indicators.parquet").sort_values(["symbol", "timestamp"],
                                                                               ignore_index=True)
    got["timestamp"] = got["timestamp"].astype(want["timestamp"].dtype)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    print(f"compute: incremental {inc['wall_s']} s vs full {full['wall_s']} s: "
          f"{full['wall_s'] / inc['wall_s']:.1f}x faster; peak RSS {inc['peak_rss_mb']} MB vs "
          f"{full['peak_rss_mb']} MB; store after the append == full run", flush=True)
    for what, suffix in (("daily runs", ""), ("daily runs with signals", "_signals")):
        a, b = runs[f"incremental_run{suffix}"], runs[f"full_run{suffix}"]
        print(f"{what}: --store {a['wall_s']} s vs full {b['wall_s']} s: {b['wall_s'] / a['wall_s']:.1f}x faster; "
              f"peak RSS {a['peak_rss_mb']} MB vs {b['peak_rss_mb']} MB", flush=True)
    merge, day = runs["merge_run"], runs["incremental_run"]
    merged = _bar_files(args.root / "store-merge_run")
    assert any("merged" in f["path"] for f in merged), "the 32nd run did not merge the bar files"
    n_merged = sum(f["rows"] for f in merged if "merged" in f["path"])
    print(f"the run that merges the small bar files ({n_merged:,} bars): "
          f"{merge['wall_s']} s vs a day's {day['wall_s']} s; peak RSS {merge['peak_rss_mb']} MB; "
          f"{len(merged)} bar files after it", flush=True)
    full_signals, inc_signals = (pd.read_parquet(args.root / f"report-{n}_signals" / "signals.parquet")
                                 for n in ("full_run", "incremental_run"))
    pd.testing.assert_frame_equal(inc_signals, full_signals, check_exact=True)
    print("signals.parquet of the day-only store run == the full run's", flush=True)


if __name__ == "__main__":
    main()
