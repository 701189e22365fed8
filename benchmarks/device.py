"""The transforms at device sizes, GPU (CuPy) against the CPU path (NumPy) on the same host.

    python benchmarks/device.py --out FILE.json [--quick] [--only indicators,sweep,...]

Run by ``scripts/gpu_check.sh`` (level 1) on the GPU host; ``--quick`` shrinks every case for
the CPU rehearsal in CI. Without a usable GPU every GPU column is empty and ``gpu_note`` says why;
the CPU side still runs and is checked against the GPU where there is one.

Cases (``scale 1``, seeded synthetic data; a tenth of the symbols listed late so NaN paths run):

- ``copy``: a 2 GiB device-to-device copy, the memory-bandwidth ceiling (bytes read + written).
- ``indicators``: 2,520 bars x 5,000 symbols, float32 and float64, the default config's 18
  outputs (``compute_indicators``). Bytes moved: the inputs the indicators read plus the outputs
  written, once each (the minimum traffic; recurrences read more).
- ``sweep``: the SMA-cross sweep end to end (``compact_bars``, the indicator bank, the engine,
  the 15 metrics) over 505 symbols x 1,590 combinations x 1,260 bars; throughput in
  symbol-combination-bars per second.
- ``covariance``: Ledoit-Wolf of 756 returns x 2,000 assets.
- ``rolling_corr``: 2,000 assets x 1,260 returns, 252-bar windows at every 21st bar.
- ``montecarlo``: 10 M paths of a 50-asset normal portfolio, VaR/CVaR at 95/99 %; the CPU side is
  timed on 1 M paths and scaled by 10 (simulation and quantile are linear in paths; stated in the
  row's ``cpu_note``). The two backends' random streams differ: they must agree within 1 %.
- ``models``: per-symbol ridge, logistic and KNN walk-forward, 505 symbols x 1,260 bars x 8
  features, 504-bar train and 21-bar test windows.

Timing: a warm-up on a small slice (Numba and CuPy compilation), one full-size warm-up on the GPU
(memory pool), then the median of ``--repeats`` runs on the GPU and one run on the CPU (the CPU
runs dominate the check's time on the host). Inputs are on the device before the clock starts
and outputs stay there until it stops; the GPU is synchronised before each clock read.

Each finished case is written to ``--out`` at once (a killed run keeps the finished cases).
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from _machine import LoadGuard  # noqa: E402  (benchmarks/ is the script folder, first on sys.path)
from alphapulse.pipelines.gpu.bench import factor_returns, ohlcv_panel  # noqa: E402
from alphapulse.transforms.arrays import to_host  # noqa: E402

CASES = ("copy", "indicators", "sweep", "covariance", "rolling_corr", "montecarlo", "models")
FULL = {"ind_bars": 2520, "ind_symbols": 5000, "sweep_bars": 1260, "sweep_symbols": 505, "sweep_fast": range(5, 51),
        "cov_assets": 2000, "corr_assets": 2000, "corr_bars": 1260, "mc_paths": 10_000_000, "mc_cpu_paths": 1_000_000,
        "model_symbols": 505, "model_bars": 1260, "copy_bytes": 2 * 2**30}
QUICK = {"ind_bars": 300, "ind_symbols": 40, "sweep_bars": 300, "sweep_symbols": 8, "sweep_fast": range(5, 11),
         "cov_assets": 60, "corr_assets": 40, "corr_bars": 400, "mc_paths": 200_000, "mc_cpu_paths": 100_000,
         "model_symbols": 12, "model_bars": 700, "copy_bytes": 2**24}


def gpu_or_why():
    """``(cupy, None)`` with a usable GPU, else ``(None, reason)``."""
    try:
        import cupy
    except Exception as e:
        return None, f"CuPy not importable ({type(e).__name__}: {e})"
    try:
        if cupy.is_available():
            return cupy, None
    except Exception as e:
        return None, f"no usable GPU ({type(e).__name__}: {e})"
    return None, "no usable GPU (cupy.is_available() is False)"


def sync(xp) -> None:
    if xp is not np:
        xp.cuda.Device().synchronize()


def clock(fn, xp, repeats: int):
    """(median seconds of ``repeats`` runs, the last run's output)."""
    times, out = [], None
    for _ in range(repeats):
        sync(xp)
        t0 = time.perf_counter()
        out = fn()
        sync(xp)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def agreement(cpu: dict, gpu: dict, rtol: float) -> tuple[bool, float]:
    """(every output within ``rtol`` of the CPU's, relative to the column scale; largest relative gap)."""
    ok, worst = True, 0.0
    for name, a in cpu.items():
        a64, b64 = np.asarray(a, np.float64), np.asarray(gpu[name], np.float64)
        nan_a = np.isnan(a64)
        if a64.shape != b64.shape or not np.array_equal(nan_a, np.isnan(b64)):
            return False, math.inf
        if nan_a.all():
            continue
        scale = max(float(np.median(np.abs(a64[~nan_a]))), 1e-300)
        rel = np.abs(a64[~nan_a] - b64[~nan_a]) / (np.abs(a64[~nan_a]) + scale)
        worst = max(worst, float(rel.max()))
        ok &= bool(worst <= rtol)
    return ok, worst


class Bench:
    def __init__(self, sizes: dict, repeats: int, out: Path | None):
        self.sizes, self.repeats, self.out = sizes, repeats, out
        self.cupy, self.why = gpu_or_why()
        self.rows: list[dict] = []
        self.ceiling = None
        self.load = LoadGuard()

    def save(self) -> None:
        if self.out is None:
            return
        record = {"gpu": self.why is None, "gpu_note": self.why, "ceiling_gbps": self.ceiling, "rows": self.rows,
                  "load": self.load.record(),
                  "host": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count()}}
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, indent=1, default=str))
        tmp.replace(self.out)

    def row(self, case: str, shape: str, dtype: str, *, make, warm=None, rtol: float, bytes_moved=None,
            work=None, unit=None, cpu_factor: float = 1.0, cpu_make=None, cpu_note=None) -> dict:
        """Time ``make(xp)()`` on both backends. ``make(xp)`` returns a zero-argument callable whose
        output is a dict of arrays; ``warm(xp)`` a small version for compilation."""
        row = {"case": case, "shape": shape, "dtype": dtype, "cpu_s": None, "gpu_s": None, "speedup": None,
               "gpu_gbps": None, "fraction_of_ceiling": None, "throughput": None, "unit": unit, "agree": None,
               "max_rel_diff": None, "cpu_note": cpu_note, "gpu_note": self.why}
        if warm is not None:
            warm(np)()
        run_cpu = (cpu_make or make)(np)
        cpu_s, cpu_out = clock(run_cpu, np, 1)
        row["cpu_s"] = cpu_s * cpu_factor
        if self.cupy is not None:
            cp = self.cupy
            try:
                if warm is not None:
                    warm(cp)()
                run_gpu = make(cp)
                clock(run_gpu, cp, 1)
                gpu_s, gpu_out = clock(run_gpu, cp, self.repeats)
                row.update(gpu_s=gpu_s, speedup=row["cpu_s"] / gpu_s, gpu_note=None)
                if bytes_moved:
                    row["gpu_gbps"] = bytes_moved / gpu_s / 1e9
                    if self.ceiling:
                        row["fraction_of_ceiling"] = row["gpu_gbps"] / self.ceiling
                if work:
                    row["throughput"] = work / gpu_s
                row["agree"], row["max_rel_diff"] = agreement({k: to_host(v) for k, v in cpu_out.items()},
                                                              {k: to_host(v) for k, v in gpu_out.items()}, rtol)
                del gpu_out
                cp.get_default_memory_pool().free_all_blocks()
            except Exception as e:  # one case's failure must not lose the others
                row["gpu_note"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]
        if work:
            row["throughput_cpu"] = work / row["cpu_s"]
        self.rows.append(row)
        self.save()
        print(format_row(row), flush=True)
        return row

    # -- cases ----------------------------------------------------------------------------------

    def copy(self) -> None:
        if self.cupy is None:
            self.rows.append({"case": "copy", "shape": f"{self.sizes['copy_bytes']} B", "dtype": "uint8",
                              "gpu_note": self.why})
            self.save()
            return
        cp = self.cupy
        n = self.sizes["copy_bytes"]
        src = cp.ones(n, dtype=cp.uint8)
        dst = cp.empty_like(src)
        cp.copyto(dst, src)
        # partial binds the arrays now; a lambda would close over names that `del` removes below.
        t, _ = clock(functools.partial(cp.copyto, dst, src), cp, 10)
        self.ceiling = 2 * n / t / 1e9
        row = {"case": "copy", "shape": f"{n / 2**30:.2f} GiB", "dtype": "uint8", "gpu_s": t,
               "gpu_gbps": self.ceiling, "fraction_of_ceiling": 1.0, "gpu_note": None}
        del src, dst
        cp.get_default_memory_pool().free_all_blocks()
        self.rows.append(row)
        self.save()
        print(format_row(row), flush=True)

    def indicators(self) -> None:
        from alphapulse.pipelines.gpu.bench import _indicator_specs
        from alphapulse.transforms.indicators.registry import compute_indicators
        from alphapulse.transforms.kernels import series_order

        specs = list(_indicator_specs())
        fields = sorted({f for s in specs for f in s.indicator.inputs})
        n_bars, n_sym = self.sizes["ind_bars"], self.sizes["ind_symbols"]
        for dtype in ("float32", "float64"):
            host = {k: v for k, v in ohlcv_panel(n_bars, n_sym, dtype=dtype).items() if k in fields}
            small = {k: v[:, :4] for k, v in host.items()}

            def on(xp, panel):
                order = series_order(xp)
                dev = {k: xp.asarray(np.asarray(v, order=order), order=order) for k, v in panel.items()}
                return lambda: compute_indicators(dev, specs)

            n_out = sum(len(s.column_names()) for s in specs)
            itemsize = np.dtype(dtype).itemsize
            moved = (len(host) + n_out) * n_bars * n_sym * itemsize
            self.row("indicators", f"{n_bars} bars x {n_sym} symbols, {n_out} outputs", dtype,
                     make=functools.partial(on, panel=host), warm=functools.partial(on, panel=small),
                     rtol=1e-9 if dtype == "float64" else 1e-3, bytes_moved=moved,
                     work=n_bars * n_sym, unit="cells/s")
            del host

    def sweep(self) -> None:
        from alphapulse.transforms.backtest.engine import compact_bars, indicator_bank, run_backtest
        from alphapulse.transforms.kernels import series_order
        from alphapulse.transforms.backtest.metrics import metrics_from_acc
        from alphapulse.transforms.backtest.strategies import STRATEGIES

        n_bars, n_sym = self.sizes["sweep_bars"], self.sizes["sweep_symbols"]
        combos = [{"fast": f, "slow": s} for f in self.sizes["sweep_fast"] for s in range(20, 201, 5) if f < s]
        plan = STRATEGIES["sma_cross"].plan(combos)
        host = {k: v for k, v in ohlcv_panel(n_bars, n_sym, seed=2).items() if k != "volume"}

        def on(xp, panel, p):
            order = series_order(xp)
            dev = {k: xp.asarray(np.asarray(v, order=order), order=order) for k, v in panel.items()}
            legs, levels = xp.asarray(p.legs), xp.asarray(p.levels)

            def run():
                prices, n, _ = compact_bars(dev)
                bank = indicator_bank(p.bank, prices, n)
                acc, _, _ = run_backtest(prices, n, bank=bank, legs=legs, levels=levels, mode=p.mode,
                                         direction="long", trade_on="open", commission_bps=10.0)
                return metrics_from_acc(acc, periods_per_year=252)
            return run

        small_plan = STRATEGIES["sma_cross"].plan(combos[:2])
        n_valid = int(np.sum(~np.isnan(host["close"])))
        self.row("sweep", f"{n_bars} bars x {n_sym} symbols x {len(plan.combos)} combinations", "float64",
                 make=lambda xp: on(xp, host, plan), warm=lambda xp: on(xp, {k: v[:, :2] for k, v in host.items()},
                                                                       small_plan),
                 rtol=1e-8, work=n_valid * len(plan.combos), unit="symbol-combination-bars/s")

    def covariance(self) -> None:
        from alphapulse.transforms.covariance import ledoit_wolf_cov

        x = factor_returns(756, self.sizes["cov_assets"], seed=3)

        def on(xp, v):
            dev = xp.asarray(v)
            return lambda: {"cov": ledoit_wolf_cov(dev)}

        self.row("covariance", f"756 returns x {x.shape[1]} assets, Ledoit-Wolf", "float64",
                 make=lambda xp: on(xp, x), warm=lambda xp: on(xp, x[:, :5]), rtol=1e-9,
                 bytes_moved=x.nbytes + x.shape[1] ** 2 * 8)

    def rolling_corr(self) -> None:
        from alphapulse.transforms.correlation import rolling_corr

        n_bars, n = self.sizes["corr_bars"], self.sizes["corr_assets"]
        x = factor_returns(n_bars, n, seed=4)
        x[: n_bars // 4, ::10] = np.nan
        lookback = 252
        rows = np.arange(lookback - 1, n_bars, 21)

        def on(xp, v):
            dev = xp.asarray(v)
            return lambda: {"corr": rolling_corr(dev, rows, lookback=lookback)}

        self.row("rolling_corr", f"{n_bars} returns x {n} assets, {len(rows)} dates, lookback {lookback}", "float64",
                 make=lambda xp: on(xp, x), warm=lambda xp: on(xp, x[:, :4]), rtol=1e-9,
                 bytes_moved=len(rows) * n * n * 8)

    def montecarlo(self) -> None:
        from alphapulse.transforms.montecarlo import monte_carlo_var_cvar

        rets = factor_returns(756, 50, seed=1)
        mean, cov = rets.mean(axis=0), np.cov(rets, rowvar=False)
        w = np.full(50, 1 / 50)
        paths, cpu_paths = self.sizes["mc_paths"], self.sizes["mc_cpu_paths"]

        def on(xp, n_paths):
            args = dict(mean=xp.asarray(mean), cov=xp.asarray(cov))
            ww = xp.asarray(w)

            def run():
                out = monte_carlo_var_cvar(ww, model="normal", n_paths=n_paths, compound=False, seed=0, **args)
                return {"var": out["var"], "cvar": out["cvar"]}
            return run

        self.row("montecarlo", f"{paths} paths x 50 assets, 1 bar", "float64",
                 make=lambda xp: on(xp, paths), cpu_make=lambda xp: on(xp, cpu_paths),
                 warm=lambda xp: on(xp, 10_000), rtol=1e-2, cpu_factor=paths / cpu_paths,
                 cpu_note=f"timed on {cpu_paths} paths, scaled by {paths / cpu_paths:g}",
                 work=paths, unit="paths/s")

    def models(self) -> None:
        from alphapulse.transforms.models.batched import fit_knn, fit_logistic, fit_ridge
        from alphapulse.transforms.models.training import ModelSpec, walk_forward, walk_forward_splits

        n_bars, n_sym, k = self.sizes["model_bars"], self.sizes["model_symbols"], 8
        rng = np.random.default_rng(5)
        X = rng.normal(size=(n_bars, n_sym, k))
        y = 0.01 * X[:, :, 0] + rng.normal(0, 0.02, (n_bars, n_sym))
        X[: n_bars // 5, ::10] = np.nan
        y[-5:] = np.nan
        splits = walk_forward_splits(n_bars, train_bars=504, test_bars=21, purge_bars=5, horizon_bars=5,
                                     expanding=False)
        specs = [ModelSpec("ridge", "per_symbol", "return", lambda X, y, m: fit_ridge(X, y, m, alpha=1.0)),
                 ModelSpec("logistic", "per_symbol", "sign", lambda X, y, m: fit_logistic(X, y, m, C=1.0)),
                 ModelSpec("knn", "per_symbol", "return", lambda X, y, m: fit_knn(X, y, m, n_neighbors=25))]

        def on(xp, s):
            dx, dy = xp.asarray(X), xp.asarray(y)
            return lambda: {"pred": walk_forward(dx, dy, s, specs, keep_models="none").predictions}

        self.row("models", f"{n_bars} bars x {n_sym} symbols x {k} features, {len(splits)} steps, ridge+logistic+knn",
                 "float64", make=lambda xp: on(xp, splits), warm=lambda xp: on(xp, splits[:1]), rtol=1e-6,
                 work=len(splits) * n_sym * 3, unit="symbol-model-fits/s")


def _f(v, spec):
    return "-" if v is None else format(v, spec)


def format_row(r: dict) -> str:
    return (f"{r['case']:<13} {r['dtype']:<8} cpu {_f(r.get('cpu_s'), '.4f'):>9} s"
            f"  gpu {_f(r.get('gpu_s'), '.5f'):>9} s"
            f"  x{_f(r.get('speedup'), '.1f'):>7}  {_f(r.get('gpu_gbps'), '.0f'):>6} GB/s"
            f"  agree {r.get('agree')}  {r.get('shape')}" + (f"  [{r['gpu_note']}]" if r.get("gpu_note") else ""))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=None, help="JSON file for the rows (rewritten after each case)")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (the CPU rehearsal)")
    ap.add_argument("--only", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    only = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = sorted(set(only) - set(CASES))
    if unknown:
        ap.error(f"unknown case(s) {unknown}: expected some of {', '.join(CASES)}")
    if not 1 <= args.repeats <= 20:
        ap.error("--repeats must be from 1 to 20")
    bench = Bench(QUICK if args.quick else FULL, args.repeats, args.out)
    bench.load.start()
    print(f"device benchmark: {'GPU' if bench.why is None else 'no GPU: ' + bench.why}; numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs", flush=True)
    failed = []
    for case in CASES:
        if case in only:
            try:
                getattr(bench, case)()
            except Exception as e:  # record and go on: the check reports every case
                failed.append(case)
                bench.rows.append({"case": case, "error": f"{type(e).__name__}: {e}"[:500]})
                bench.save()
                print(f"{case}: FAILED {type(e).__name__}: {e}", flush=True)
    # the file's "load" says whether its figures may be recorded (recordable: null while running)
    bench.load.finish()
    bench.save()
    return 1 if failed or any(r.get("agree") is False for r in bench.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
