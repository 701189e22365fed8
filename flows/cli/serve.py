"""``alphapulse serve``: the HTTP monitoring API (:mod:`alphapulse.pipelines.gpu.api`) under uvicorn.

Binds to 127.0.0.1 by default. The API has no authentication, so a host other than a loopback
address (``0.0.0.0``, a LAN address, a name that is not ``localhost``) is refused unless
``--allow-remote`` is given, and then a warning is logged.
"""
from __future__ import annotations

import ipaddress
import logging

from alphapulse.flows.cli.options import add_config, add_quiet
from alphapulse.pipelines.errors import ArgumentError

log = logging.getLogger("alphapulse")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="HTTP monitoring API: GPU status/utilisation/benchmarks and the reports",
                       description="Serve the monitoring API (OpenAPI schema at /openapi.json, docs at /docs): "
                                   "GET /gpu/status, GET /gpu/utilization, POST /gpu/benchmark, GET /runs, "
                                   "GET /runs/{id}, GET /runs/{id}/summary.html.")
    s.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to bind (default {DEFAULT_HOST}; a non-loopback one needs --allow-remote)")
    s.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free one)")
    s.add_argument("--reports", nargs="+", metavar="DIR",
                   help="report folders or folders holding them (default: the parents of the config's "
                        "report.out_dir, backtest.out_dir and portfolio.out_dir, i.e. reports/)")
    add_config(s)
    s.add_argument("--allow-remote", action="store_true",
                   help="allow a non-loopback --host (the API has no authentication: only on a trusted network)")
    s.add_argument("--sample-interval", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between the server's own utilisation readings for /gpu/utilization?samples=N "
                        "(0.05 to 3600; default 5; 0: none)")
    s.add_argument("--max-body-bytes", type=int, default=None,
                   help="largest request body accepted (default 64 KiB; larger requests get 413)")
    add_quiet(s, help="only warnings")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _default_roots(config_path: str | None) -> list[str]:
    from pathlib import Path

    from alphapulse.pipelines.config import load_config

    c = load_config(config_path)
    roots = []
    for out in (c.report.out_dir, c.backtest.out_dir, c.portfolio.out_dir):
        parent = str(Path(out).parent)
        if parent not in roots:
            roots.append(parent)
    return roots


def run(args) -> int:
    if not 0 <= args.port <= 65535:
        raise ArgumentError(f"--port {args.port}: expected 0 to 65535")
    if not is_loopback(args.host):
        if not args.allow_remote:
            raise ArgumentError(f"--host {args.host} is not a loopback address; the API has no authentication: "
                                "add --allow-remote to serve it on the network anyway")
        log.warning("serving on %s: anyone who can reach this address can read the reports and start benchmarks",
                    args.host)
    if args.sample_interval != 0:  # 0: no background readings; else the sampler's own range
        from alphapulse.pipelines.gpu.status import MAX_SAMPLE_INTERVAL_S, MIN_SAMPLE_INTERVAL_S

        if not MIN_SAMPLE_INTERVAL_S <= args.sample_interval <= MAX_SAMPLE_INTERVAL_S:
            raise ArgumentError(f"--sample-interval {args.sample_interval!r}: expected 0 (none) or "
                                f"{MIN_SAMPLE_INTERVAL_S:g} to {MAX_SAMPLE_INTERVAL_S:g} seconds")
    import uvicorn

    from alphapulse.pipelines.gpu import MAX_BODY_BYTES, create_app, server_options

    max_body = MAX_BODY_BYTES if args.max_body_bytes is None else args.max_body_bytes
    if max_body < 1:
        raise ArgumentError(f"--max-body-bytes {max_body}: expected a positive number of bytes")
    roots = args.reports or _default_roots(args.config)
    app = create_app(roots, max_body_bytes=max_body, sample_interval_s=args.sample_interval)
    log.info("reports from %s", ", ".join(map(str, app.state.roots.roots)))
    print(f"AlphaPulse API on http://{args.host}:{args.port} (docs: /docs); reports: "
          + ", ".join(map(str, app.state.roots.roots)), flush=True)
    # server_options: read deadlines and a connection limit that slow clients cannot hold
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning" if args.quiet else "info",
                **server_options())
    return 0
