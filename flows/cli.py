"""``alphapulse``: the command line.

Arguments, the config and the input path are checked before Prefect is imported, so a mistake is
reported in a second, not after the ephemeral server's start-up.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from pipelines.backend import BackendError
from pipelines.config import ConfigError, load_config
from pipelines.data import DataError
from pipelines.report import ReportError

_USER_ERRORS = (ConfigError, DataError, ReportError, BackendError, ValueError)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="alphapulse", description="GPU-native market research pipeline.")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("daily", help="indicators for every symbol -> parquet report",
                       description="Load bars, validate them, compute the configured indicators for every "
                                   "symbol and write a report folder (indicators.parquet, rejected.parquet, "
                                   "manifest.json, summary.md).")
    d.add_argument("--data", help="bars: CSV/parquet file or folder (default: data.path in the config)")
    d.add_argument("--out", help="report folder (default: report.out_dir in the config)")
    d.add_argument("--config", help="YAML config (default: the shipped default config)")
    d.add_argument("--backend", choices=("auto", "cpu", "gpu"), default="auto",
                   help="override the config's backend choice (default: auto)")
    d.add_argument("--no-prefect", action="store_true",
                   help="run the pipeline directly, without a Prefect flow run")
    d.add_argument("-q", "--quiet", action="store_true", help="only warnings and the final summary")
    return p


def _print_summary(manifest: dict, out_dir, seconds: float) -> None:
    inp, be = manifest["input"], manifest["backend"]
    print(f"report: {out_dir}")
    print(f"backend: {be['name']} ({be['reason']}), {be['dtype']}")
    print(f"rows: {inp['rows_read']:,} read, {inp['rows_accepted']:,} accepted, {inp['rows_rejected']:,} rejected"
          + (" (rejected.parquet)" if inp["rows_rejected"] else ""))
    print(f"symbols: {inp['symbols']}; indicator columns: {len(manifest['output']['columns']) - 2}; "
          f"short histories: {len(manifest['short_history'])}")
    print("stages: " + ", ".join(f"{k} {v:.2f}s" for k, v in manifest["stages"].items()) + f"; total {seconds:.1f}s")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect API call otherwise
    start = time.perf_counter()
    try:
        from pipelines.daily import prepare_daily, run_daily

        config = load_config(args.config)
        request = prepare_daily(config, data_path=args.data, out_dir=args.out, backend=args.backend)
        if args.no_prefect:
            result = run_daily(request)
            manifest, out_dir = result.manifest, result.out_dir
        else:
            import json

            from flows.daily import daily_flow

            out_dir = daily_flow(data_path=request.data_path, out_dir=str(request.out_dir),
                                 config_path=args.config, backend=args.backend)
            manifest = json.loads((request.out_dir / "manifest.json").read_text())
    except _USER_ERRORS as e:
        print(f"alphapulse: error: {e}", file=sys.stderr)
        return 2
    _print_summary(manifest, out_dir, time.perf_counter() - start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
