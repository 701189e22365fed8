"""A parameter sweep: AlphaPulse's backtest engine vs vectorbt 1.2, in one process.

    python benchmarks/backtest.py [--data PATH] [--symbols N] [--vbt-symbols M] [--chunk C]

SMA cross (``alphapulse.transforms.backtest.strategies.STRATEGIES["sma_cross"]``), fast 5..50 step 1 x slow
20..200 step 5: 1,590 valid combinations (fast < slow); long-only, trading on the next open,
commission 10 bps, all the cash in each entry; every (symbol, combination) series gets the 15
metrics of ``alphapulse.transforms.backtest.metrics``. Throughput is counted in symbol-combination-bars (each
symbol's own bars, summed, times the combinations) per second.

(a) AlphaPulse, CPU: the panel compacted once (``compact_bars``), the indicator bank (the 76
    distinct SMA windows) computed once (``indicator_bank``), then ``run_backtest`` +
    ``metrics_from_acc`` over chunks of ``--chunk`` combinations (memory stays bounded: the bank,
    one chunk's accumulators and the metrics tables). The kernel is compiled (or loaded from
    numba's cache) on a one-combination warm-up, timed separately.
(b) vectorbt 1.2 on ``--vbt-symbols`` symbols x all combinations, one symbol at a time, in calls
    of ``--vbt-columns`` combinations (one column each; this bounds vectorbt's memory): vectorbt's
    TA-Lib SMA indicator for the windows (``vbt.MA`` sums differently, to ~1e-12, which flips ties
    between the two averages on real prices), the level signals ``fast > slow`` /
    ``fast < slow`` shifted one bar (vectorbt's entries/exits for our rule, as the tests
    establish), ``Portfolio.from_signals`` (price = open, fees, ``size=inf``, ``init_cash=1``),
    then total return, Sharpe, max drawdown and trade count. Its JIT compile (Numba, on a first
    tiny call) is timed separately; the sweep time is extrapolated per symbol-combination-bar.

(c) with ``--pipeline``: ``alphapulse.pipelines.backtest.pipeline.run_backtest_pipeline`` end to end (its own loading,
    the sweep with per-bar returns for the equal-weight portfolio, the report), for reference.

A check: the final equity of (a) and (b) on the vectorbt symbols agree to 1e-9, and their trade
counts are identical (in float64; with ``--dtype float32`` the bank holds float32 averages, and
near-ties between the two averages can fall the other way than in vectorbt's float64).
Peak RSS (``resource.getrusage``) is printed after (a) and at the end.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
from _machine import LoadGuard, cpu_model  # benchmarks/ is the script folder, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"
SAMPLE = ROOT / "data" / "sp500_sample.parquet"
COMMISSION_BPS = 10.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def load_panel(path: Path, dtype):
    """The S&P 500 file through the project's loader (validation included) into an F-ordered panel."""
    from alphapulse.pipelines.data.load import inspect_input, load_bars
    from alphapulse.pipelines.data.panel import bars_to_panel

    columns = {"timestamp": "date", "symbol": "Name"} if path.name.startswith(("all_stocks", "sp500")) else None
    loaded = load_bars(inspect_input(path, columns=columns), scheduler="synchronous")
    panel = bars_to_panel(loaded.bars, fields=("open", "high", "low", "close"), dtype=dtype, order="F")
    return [str(s) for s in panel.symbols], panel.fields, loaded.stats


def sweep_combos():
    return [{"fast": f, "slow": s} for f in range(5, 51) for s in range(20, 201, 5)]


def alphapulse(fields: dict, plan, chunk: int):
    """(a): returns (metrics tables, seconds for prepare / kernel+metrics, compile seconds)."""
    from alphapulse.transforms.backtest.engine import compact_bars, indicator_bank, run_backtest
    from alphapulse.transforms.backtest.metrics import METRICS, metrics_from_acc

    few = {k: np.asfortranarray(v[:, :2]) for k, v in fields.items()}
    indicator_bank(plan.bank[:1], compact_bars(few)[0], compact_bars(few)[1])  # compile / load the cache
    t0 = time.perf_counter()
    prices, n, rows = compact_bars(fields)
    bank = indicator_bank(plan.bank, prices, n)
    t_prepare = time.perf_counter() - t0

    kw = dict(bank=bank, mode=plan.mode, direction="long", trade_on="open", commission_bps=COMMISSION_BPS)
    t0 = time.perf_counter()
    run_backtest(prices, n, legs=plan.legs[:1], levels=plan.levels[:1], **kw)  # compile / load the cache
    t_compile = time.perf_counter() - t0

    n_comb, n_sym = len(plan.combos), n.shape[0]
    tables = {m: np.empty((n_comb, n_sym)) for m in METRICS}
    t0 = time.perf_counter()
    for c0 in range(0, n_comb, chunk):
        c1 = min(n_comb, c0 + chunk)
        acc, _, _ = run_backtest(prices, n, legs=plan.legs[c0:c1], levels=plan.levels[c0:c1], **kw)
        for name, v in metrics_from_acc(acc, periods_per_year=252).items():
            tables[name][c0:c1] = v.reshape(c1 - c0, n_sym)
    t_sweep = time.perf_counter() - t0
    return tables, n, t_prepare, t_sweep, t_compile


def vectorbt_symbol(open_, close, plan, fast_windows, slow_windows):
    """(b) for one symbol's own bars: every combination as a column. Returns (total return,
    Sharpe, max drawdown, trades) per combination."""
    import vectorbt as vbt

    windows = sorted(set(fast_windows) | set(slow_windows))
    sma = vbt.IndicatorFactory.from_talib("SMA")  # TA-Lib's SMA, as ours (bit-identical)
    ma = sma.run(close, timeperiod=windows).real.to_numpy()  # (bars, windows)
    col = {w: k for k, w in enumerate(windows)}
    fast = ma[:, [col[w] for w in fast_windows]]
    slow = ma[:, [col[w] for w in slow_windows]]
    with np.errstate(invalid="ignore"):
        up, down = fast > slow, fast < slow
    entries, exits = np.zeros_like(up), np.zeros_like(down)
    entries[1:], exits[1:] = up[:-1], down[:-1]  # the close of t decides the open of t + 1
    n_comb = len(fast_windows)
    pf = vbt.Portfolio.from_signals(np.tile(close[:, None], (1, n_comb)), entries, exits,
                                    price=np.tile(open_[:, None], (1, n_comb)), fees=COMMISSION_BPS * 1e-4,
                                    size=np.inf, init_cash=1.0, freq="1D")
    return (pf.total_return().to_numpy(), pf.sharpe_ratio().to_numpy(), pf.max_drawdown().to_numpy(),
            pf.trades.count().to_numpy())


def run_vectorbt(fields: dict, n, plan, symbols: list[int], columns: int):
    fast_windows = [c["fast"] for c in plan.combos]
    slow_windows = [c["slow"] for c in plan.combos]
    n_comb = len(plan.combos)
    # JIT compile: a first call on a tiny input compiles what vectorbt does not cache on disk
    t0 = time.perf_counter()
    tiny = np.linspace(10, 11, 260)
    vectorbt_symbol(tiny, tiny, plan, fast_windows[:2], slow_windows[:2])
    t_compile = time.perf_counter() - t0
    out = {}
    t0 = time.perf_counter()
    for s in symbols:
        present = ~np.isnan(fields["close"][:, s])
        close = fields["close"][present, s].astype(np.float64)
        open_ = fields["open"][present, s].astype(np.float64)
        parts = [vectorbt_symbol(open_, close, plan, fast_windows[c0:c0 + columns], slow_windows[c0:c0 + columns])
                 for c0 in range(0, n_comb, columns)]
        out[s] = tuple(np.concatenate(p) for p in zip(*parts))
    return out, time.perf_counter() - t0, t_compile


def run_pipeline(data: str) -> None:
    """(c) ``alphapulse.pipelines.backtest.pipeline.run_backtest_pipeline`` (load, validate, panel, sweep with the
    equal-weight portfolio, report), in process on the CPU, same grid and costs, every symbol of
    the file (``--symbols`` does not apply)."""
    import tempfile

    import yaml

    from alphapulse.pipelines.backtest import prepare_backtest, run_backtest_pipeline
    from alphapulse.pipelines.config import default_config_text, parse_config

    raw = yaml.safe_load(default_config_text())
    raw["gpu"]["enabled"] = False
    raw["backtest"].update(grid={"fast": "5:50:1", "slow": "20:200:5"}, commission_bps=COMMISSION_BPS, top_n=1)
    with tempfile.TemporaryDirectory() as out:
        request = prepare_backtest(parse_config(raw), data_path=data, out_dir=str(Path(out) / "report"),
                                   backend="cpu", cluster=None)
        t0 = time.perf_counter()
        result = run_backtest_pipeline(request)
        seconds = time.perf_counter() - t0
    stages = result.manifest.get("stages") or result.manifest.get("timings") or {}
    print(f"(c) alphapulse.pipelines.backtest.pipeline end to end (CPU, in process): {seconds:.1f} s; stages: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in stages.items() if isinstance(v, (int, float))))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(SHARED if SHARED.exists() else SAMPLE))
    ap.add_argument("--symbols", type=int, help="the first N symbols only (default: all)")
    ap.add_argument("--vbt-symbols", type=int, default=10, help="symbols vectorbt runs (0: skip vectorbt)")
    ap.add_argument("--chunk", type=int, default=128, help="combinations per kernel launch")
    ap.add_argument("--vbt-columns", type=int, default=530,
                    help="combinations per vectorbt call (bounds its memory; 1,590 = one call a symbol)")
    ap.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    ap.add_argument("--pipeline", action="store_true",
                    help="also time alphapulse.pipelines.backtest.pipeline end to end")
    args = ap.parse_args()

    import numba

    from alphapulse.transforms.backtest.strategies import STRATEGIES

    t0 = time.perf_counter()
    symbols, fields, stats = load_panel(Path(args.data), np.dtype(args.dtype))
    t_load = time.perf_counter() - t0
    if args.symbols:
        symbols = symbols[:args.symbols]
        fields = {k: np.asfortranarray(v[:, :args.symbols]) for k, v in fields.items()}
    plan = STRATEGIES["sma_cross"].plan(sweep_combos())
    n_bars, n_sym = fields["close"].shape
    print(f"data: {args.data}: {stats['rows_accepted']:,} of {stats['rows_read']:,} rows accepted "
          f"(load + validate + pivot {t_load:.1f} s, not in the timings)")
    print(f"panel: {n_bars} timestamps x {n_sym} symbols, {args.dtype}")
    print(f"sweep: sma_cross fast 5..50 x slow 20..200 step 5: {len(plan.combos)} combinations "
          f"({len(plan.skipped)} skipped: fast >= slow), bank of {len(plan.bank)} SMA series; "
          f"long-only, next open, commission {COMMISSION_BPS:g} bps")
    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs, numba {numba.__version__} "
          f"({numba.config.NUMBA_NUM_THREADS} threads, {numba.config.THREADING_LAYER} layer)")

    tables, n, t_prepare, t_sweep, t_compile = alphapulse(fields, plan, args.chunk)
    work = len(plan.combos) * int(n.sum())
    ours = work / (t_prepare + t_sweep)
    rss_a = peak_rss_mb()
    print(f"(a) AlphaPulse CPU: compact + bank {t_prepare:.2f} s, kernel + metrics {t_sweep:.2f} s "
          f"(chunks of {args.chunk}), compile/cache load {t_compile:.2f} s")
    print(f"    {work:,} symbol-combination-bars in {t_prepare + t_sweep:.2f} s: {ours / 1e6:,.1f} M/s "
          f"(kernel + metrics alone {work / t_sweep / 1e6:,.1f} M/s); peak RSS {rss_a:,.0f} MB")

    if args.vbt_symbols:
        # the vectorbt subset: full-history symbols, spread over the panel
        full = [s for s in range(n_sym) if n[s] == n_bars]
        pick = full[:: max(1, len(full) // args.vbt_symbols)][: args.vbt_symbols]
        theirs, t_vbt, t_vbt_compile = run_vectorbt(fields, n, plan, pick, args.vbt_columns)
        vbt_work = len(plan.combos) * int(sum(n[s] for s in pick))
        rate = vbt_work / t_vbt
        worst = max(float(np.max(np.abs((1 + tables["total_return"][:, s]) / (1 + theirs[s][0]) - 1))) for s in pick)
        trades_equal = all(np.array_equal(tables["trades"][:, s], theirs[s][3]) for s in pick)
        print(f"check: final equity of (a) vs (b) on {len(pick)} symbols x {len(plan.combos)} combinations: "
              f"largest relative difference {worst:.1e}; trade counts identical: {trades_equal}")
        print(f"(b) vectorbt {__import__('vectorbt').__version__}: JIT compile {t_vbt_compile:.1f} s; "
              f"{len(pick)} symbols x {len(plan.combos)} combinations = {vbt_work:,} symbol-combination-bars "
              f"in {t_vbt:.1f} s: {rate / 1e6:,.2f} M/s; full sweep extrapolated: {work / rate:,.0f} s")
        print(f"ratio: AlphaPulse CPU {ours / rate:,.1f}x vectorbt's throughput "
              f"(kernel + metrics alone {work / t_sweep / rate:,.1f}x)")
    print(f"peak RSS at the end (vectorbt included): {peak_rss_mb():,.0f} MB")
    if args.pipeline:
        run_pipeline(args.data)


if __name__ == "__main__":
    with LoadGuard():
        main()
