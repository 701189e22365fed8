"""What a run cost: GPU-seconds and CPU-seconds per stage times hourly prices.

- GPU-seconds of a stage: its wall time when it ran on the GPU (a GPU backend and not every
  operation of the stage routed to the CPU; :meth:`alphapulse.pipelines.runtime.stages.RunTracker.gpu_stage`): the
  device is held for the stage's whole duration, busy or not.
- CPU-seconds (core-seconds) of a stage: the CPU time the process (every thread) and its live
  child processes used during the stage: two cores busy for one second are two CPU-seconds.
  Dask workers on other machines are not counted.
- cost = GPU-seconds / 3600 x ``cost.gpu_per_hour`` + CPU-seconds / 3600 x
  ``cost.cpu_core_per_hour``; the run's total sums the top-level stages (a stage nested in
  another is already inside its parent's time); per unit of work: the total divided by the
  amount of work (the daily pipeline: per million bars; the backtest: per million backtests,
  i.e. symbol x combination pairs; the portfolio: per run).

:func:`stage_table_lines` is the summary.md table of stage timings and costs that every
pipeline's report shows.
"""
from __future__ import annotations

DEFAULT_PRICES = {"gpu_per_hour": 3.0, "cpu_core_per_hour": 0.045, "currency": "USD"}


def _prices(prices) -> dict:
    if prices is None:
        return dict(DEFAULT_PRICES)
    if isinstance(prices, dict):
        return {**DEFAULT_PRICES, **prices}
    return {"gpu_per_hour": float(prices.gpu_per_hour), "cpu_core_per_hour": float(prices.cpu_core_per_hour),
            "currency": str(prices.currency)}


def run_cost(wall: dict[str, float], cpu: dict[str, float], on_gpu: dict[str, bool], *,
             top_level: set[str] | None = None, prices=None, work: tuple[str, float] | None = None) -> dict:
    """The manifest's ``cost`` section.

    Parameters
    ----------
    wall : stage -> wall seconds
    cpu : stage -> CPU seconds (a stage missing here has unknown CPU time: ``cpu_seconds`` None,
        costed on its GPU time only)
    on_gpu : stage -> whether it held the GPU
    top_level : the stages not nested in another (default: all of ``wall``)
    prices : the config's ``cost`` block, a mapping with its keys, or None (defaults)
    work : (unit, amount), e.g. ("million backtests", 0.19); None or a zero amount: per run

    Returns
    -------
    dict
        ``{"currency", "gpu_per_hour", "cpu_core_per_hour", "stages": {stage: {"gpu_seconds",
        "cpu_seconds", "cost"}}, "gpu_seconds", "cpu_seconds", "total", "per_unit": {"unit",
        "value", "amount"}}`` (money in ``currency``; seconds rounded to ms).
    """
    p = _prices(prices)
    stages = {}
    for name, seconds in wall.items():
        gpu_s = float(seconds) if on_gpu.get(name, False) else 0.0
        cpu_s = cpu.get(name)
        cost = gpu_s / 3600 * p["gpu_per_hour"] + (cpu_s or 0.0) / 3600 * p["cpu_core_per_hour"]
        stages[name] = {"gpu_seconds": round(gpu_s, 3), "cpu_seconds": None if cpu_s is None else round(cpu_s, 3),
                        "cost": round(cost, 10)}
    top = [k for k in stages if top_level is None or k in top_level] or list(stages)
    total = sum(stages[k]["cost"] for k in top)
    unit, amount = work if work and work[1] else ("run", 1.0)
    return {"currency": p["currency"], "gpu_per_hour": p["gpu_per_hour"], "cpu_core_per_hour": p["cpu_core_per_hour"],
            "stages": stages,
            "gpu_seconds": round(sum(stages[k]["gpu_seconds"] for k in top), 3),
            "cpu_seconds": round(sum(stages[k]["cpu_seconds"] or 0.0 for k in top), 3),
            "total": round(total, 10), "per_unit": {"unit": unit, "value": round(total / amount, 10), "amount": amount}}


def _money(v: float | None, currency: str) -> str:
    if v is None:
        return ""
    return f"{v:.3g} {currency}" if v < 0.01 else f"{v:.4f} {currency}"


def stage_table_lines(manifest: dict) -> list[str]:
    """summary.md lines: the stage table (seconds, CPU-seconds, GPU-seconds, cost) and the run's
    cost, per unit of work, routing decisions and alerts where the manifest has them."""
    stages = manifest.get("stages", {})
    cost = manifest.get("cost")
    lines = ["", "## Stage timings and cost", ""]
    if not cost:
        lines += ["| stage | seconds |", "|---|---:|"]
        return lines + [f"| {k} | {v:.3f} |" for k, v in stages.items()]
    cur = cost["currency"]
    lines += ["| stage | seconds | CPU-seconds | GPU-seconds | cost |", "|---|---:|---:|---:|---:|"]
    for k, v in stages.items():
        c = cost["stages"].get(k, {})
        cpu = c.get("cpu_seconds")
        lines.append(f"| {k} | {v:.3f} | {'' if cpu is None else f'{cpu:.3f}'} | {c.get('gpu_seconds', 0.0):.3f} "
                     f"| {_money(c.get('cost'), cur)} |")
    pu = cost["per_unit"]
    lines += ["", f"Cost of the run: **{_money(cost['total'], cur)}** ({cost['cpu_seconds']:.1f} CPU-seconds at "
                  f"{cost['cpu_core_per_hour']:g} {cur}/core-hour, {cost['gpu_seconds']:.1f} GPU-seconds at "
                  f"{cost['gpu_per_hour']:g} {cur}/GPU-hour)"
              + ("" if pu["unit"] == "run" else f"; **{_money(pu['value'], cur)} per {pu['unit']}**"
                 f" ({pu['amount']:.6g} {pu['unit']})") + "."]
    routing = manifest.get("routing") or []
    if routing:
        lines += ["", "## Routing (gpu.fallback.min_speedup)", "",
                  "| stage | operation | size | backend | speedup | reason |", "|---|---|---:|---|---:|---|"]
        for r in routing:
            speedup = "" if r.get("speedup") is None else format(r["speedup"], ".2f")
            lines.append(f"| {r.get('stage') or ''} | {r['operation']} | {r['size']:,} | {r['backend']} | {speedup} "
                         f"| {r['reason']} |")
    alerts = manifest.get("alerts") or []
    if alerts:
        lines += ["", f"## Alerts ({len(alerts)})", ""]
        lines += [f"- **{a['kind']}** in {a.get('stage') or '?'}: {a['message']} -> {a['action']}" for a in alerts]
    return lines
