"""``alphapulse``: the command line.

Arguments, the config and the input path are checked before Prefect is imported, so a mistake is
reported in a second, not after the ephemeral server's start-up.

Exit status: 0 for a report; 2 and one line on stderr for an input error (any
:class:`~alphapulse.transforms.errors.InputError`: arguments, config, data, grid, report folder,
backend); 1 and one line for a run error (:class:`~alphapulse.transforms.errors.RunError`: a
stage, the GPU's memory, a busy report folder) or an ``OSError`` of the machine (a disk, a
permission, a vanished file). Anything else is a bug: it propagates, with its traceback.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import time

from alphapulse.flows.cli.options import add_paths, add_run_options
from alphapulse.pipelines.config import load_config
from alphapulse.pipelines.errors import InputError, RunError

_REPORTED = (InputError, RunError, OSError)
"""What the CLI reports as one line: input errors (exit status 2), run errors and the machine's
``OSError`` (exit status 1). Anything else is a bug and keeps its traceback."""


class _OneLineUserErrors(logging.Filter):
    """Prefect logs a failed flow run's exception with its traceback; for bad input the CLI's own
    one line says it all on the console. Prefect's API handler (the UI) still gets the traceback:
    it sees the record first, as the flow-run loggers' own handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], InputError):
            record.exc_info = record.exc_text = None
        return True


def quiet_user_tracebacks() -> None:
    """Install :class:`_OneLineUserErrors` on the console handlers (call after Prefect is imported:
    it sets up its own handler then)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, _OneLineUserErrors) for f in handler.filters):
            handler.addFilter(_OneLineUserErrors())


def _error(e: BaseException, status: int) -> int:
    # one line even when a path or a quoted value holds a newline
    print("alphapulse: error: " + str(e).replace("\r", " ").replace("\n", " "), file=sys.stderr)
    return status


def _report(e: BaseException) -> int:
    """One line for one of :data:`_REPORTED`; its exit status."""
    return _error(e, 2 if isinstance(e, InputError) else 1)


# Subcommands kept in their own modules, each with ``add_parser(subparsers)`` and ``run(args) -> int``
# (``run`` may raise one of ``_REPORTED``: main prints it as one line). Importing them
# must stay cheap: no Prefect, no GPU libraries at module level.
_MODULES = {"models": "alphapulse.flows.cli.models", "gpu": "alphapulse.flows.cli.gpu",
            "serve": "alphapulse.flows.cli.serve"}

_BACKTEST_HELP = """\
grid syntax (--grid, or backtest.grid in the config):
  fast=5:50:5,slow=20:200:10         inclusive ranges start:stop[:step] (step 1 if left out)
  lower=20,25,30;upper=70,75,80      lists; parameters separated by ';', ',' or spaces
  period=10:20:5,30 nbdev=1.5:2.5:0.5
  A comma-separated item containing '=' starts the next parameter. The grid is the Cartesian
  product; parameters left out keep the strategy's defaults; backtest.random_sample: N sweeps a
  seeded random sample of N combinations. Invalid combinations (fast >= slow, lower >= upper)
  are skipped and counted in the report.

strategies: sma_cross, ema_cross (fast, slow), macd_cross (fast, slow, signal),
  rsi_reversion (period, lower, upper), bb_reversion, bb_breakout (period, nbdev)

execution: each symbol on its own bars; a signal at bar t's close trades at bar t+1's open
  (backtest.trade_on: close for its close), never on bar t; equity starts at 1; commission and
  slippage in basis points per fill; optional stop-loss/take-profit; metrics per (symbol,
  combination) and for the equal-weight portfolio of all symbols (rebalanced every bar).

report (--out): backtest_metrics.parquet, backtest_summary.parquet, equity.parquet,
  best_equity_by_symbol.parquet, sharpe_heatmap.png, walk_forward.parquet (if configured),
  rejected.parquet (if any), manifest.json, summary.md
"""

_PORTFOLIO_HELP = """\
window: the last portfolio.lookback_bars bars; symbols with fewer than min_history_bars returns
  there, or too many gaps, are excluded (listed in excluded.parquet and summary.md).
methods (portfolio.methods): min_variance, max_sharpe, hrp, risk_parity, black_litterman,
  efficient_return, efficient_risk, max_utility, equal_weight; a method that fails falls back
  (max_sharpe -> min_variance -> hrp -> equal_weight) and the chain is reported.

report (--out): covariance.parquet, weights.parquet, fallbacks.parquet, correlation.parquet
  (month ends, upper triangle), correlation_summary.parquet, regimes.parquet,
  regime_centres.parquet, regime_runs.parquet, risk.parquet, excluded.parquet,
  rejected.parquet (if any), manifest.json, summary.md
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alphapulse", description="GPU-native market research pipeline.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daily", help="indicators for every symbol -> parquet report",
                       description="Load bars, validate them, compute the configured indicators for every "
                                   "symbol and write a report folder (indicators.parquet, rejected.parquet, "
                                   "manifest.json, summary.md).")
    add_paths(d, out_key="report.out_dir")
    d.add_argument("--store", metavar="DIR",
                   help="an indicator store to continue: compute and append only the bars newer than each "
                        "symbol's stored state (a new or empty folder: a full run that starts the store); the "
                        "report's indicators.parquet then holds this run's rows")
    d.add_argument("--signals-from", metavar="DIR",
                   help="a backtest report folder: signal its top combinations (signals.top in the config), "
                        "with that report's execution settings and each symbol's record from it")
    add_run_options(d)

    b = sub.add_parser("backtest", help="one strategy over every (symbol, parameter combination) -> report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_BACKTEST_HELP,
                       description="Load and validate bars, run one strategy over every symbol and every "
                                   "combination of its parameter grid (sharded over Dask workers if asked), "
                                   "and write a report folder.")
    add_paths(b, out_key="backtest.out_dir")
    b.add_argument("--strategy", help="strategy name (default: backtest.strategy in the config)")
    b.add_argument("--grid", help="parameter grid, e.g. 'fast=5:50:5,slow=20:200:10' (see below; "
                                  "default: backtest.grid for the config's strategy)")
    add_run_options(b, cluster_help="where tasks run: none (in-process), local (threads), processes, cuda (one "
                                    "worker per GPU, dask-cuda) or a Dask scheduler address (default: "
                                    "backtest.cluster, else cluster.address)")

    f = sub.add_parser("portfolio", help="covariance, optimised portfolios, correlation, regimes, VaR -> report",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_PORTFOLIO_HELP,
                       description="Load and validate bars, estimate the covariance of the symbols with enough "
                                   "history, run the configured optimisers (each through its fallback chain) and "
                                   "their ensemble, month-end rolling correlation, market regimes and Monte Carlo "
                                   "VaR/CVaR, and write a report folder.")
    add_paths(f, out_key="portfolio.out_dir")
    f.add_argument("--walk-forward", action="store_true",
                   help="also backtest every method out of sample: re-estimated at each rebalance on the trailing "
                        "portfolio.walk_forward.train_bars, held between (the portfolio.walk_forward block, or its "
                        "defaults: portfolio.lookback_bars of training, month-end rebalancing, drifting holdings, "
                        "no costs)")
    add_run_options(f, block="portfolio")
    for module in _MODULES.values():
        importlib.import_module(module).add_parser(sub)
    return p


def print_report(manifest: dict, out_dir, seconds: float) -> None:
    """The report's own lines (its pipeline's ``REPORT.cli_lines``), then the stage times."""
    from alphapulse.pipelines.report.spec import report_spec

    for line in report_spec(manifest["pipeline"]).cli_lines(manifest, out_dir):
        print(line)
    print("stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in manifest["stages"].items()) + f"; total {seconds:.1f}s")


def run_pipeline_command(name: str, args, *, flow_options: dict | None = None, **options) -> tuple[dict, object]:
    """A pipeline sub-command: the request checked before Prefect starts (arguments, config, input,
    report folder, cluster), then the pipeline's stages in-process (``--no-prefect``) or as its
    Prefect flow, on the request's cluster either way. ``options``: the pipeline's own request
    arguments; ``flow_options``: the same for the flow's parameters. Returns (manifest, folder)."""
    from alphapulse.pipelines.runtime.run import run_pipeline

    pipeline = getattr(importlib.import_module(f"alphapulse.pipelines.{name}"), name.upper())
    request = pipeline.prepare(load_config(args.config), data_path=args.data, out_dir=args.out, backend=args.backend,
                               cluster="config" if args.cluster is None else args.cluster, **options)
    if args.no_prefect:
        result = run_pipeline(pipeline, request)
        return result.manifest, result.out_dir
    import json

    flow = getattr(importlib.import_module(f"alphapulse.flows.{name}"), f"{name}_flow")
    quiet_user_tracebacks()
    out_dir = flow(data_path=request.data_path, out_dir=str(request.out_dir), config_path=args.config,
                   backend=args.backend, cluster=request.cluster, **(flow_options or {}))
    return json.loads((request.out_dir / "manifest.json").read_text()), out_dir


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if getattr(args, "quiet", False) else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    logging.getLogger("distributed").setLevel(logging.WARNING)  # a Dask cluster's start-up chatter
    start = time.perf_counter()
    if args.command in _MODULES:
        try:
            return importlib.import_module(_MODULES[args.command]).run(args)
        except _REPORTED as e:
            return _report(e)
    try:
        if args.command == "backtest":
            manifest, out_dir = run_pipeline_command("backtest", args, strategy=args.strategy, grid=args.grid,
                                                     flow_options={"strategy": args.strategy, "grid": args.grid})
        elif args.command == "daily":
            manifest, out_dir = run_pipeline_command("daily", args, store=args.store, signals_from=args.signals_from,
                                                     flow_options={"store": args.store,
                                                                   "signals_from": args.signals_from})
        elif args.command == "portfolio" and args.walk_forward:
            manifest, out_dir = run_pipeline_command("portfolio", args, walk_forward=True,
                                                     flow_options={"walk_forward": True})
        else:
            manifest, out_dir = run_pipeline_command(args.command, args)
    except _REPORTED as e:
        return _report(e)
    print_report(manifest, out_dir, time.perf_counter() - start)
    return 0




if __name__ == "__main__":
    sys.exit(main())
