"""The daily run's signals and market breadth: what each strategy holds tomorrow, and how broad the market is.

Implements :func:`prepare_signals` (the ``signals:`` block resolved and checked before any work:
strategies imported and checked, parameter sets planned, a backtest report read),
:func:`signals_stage` (one partition's signals, chart data and breadth counts, on the run's
backend) and :func:`combine_signals` (the report's ``signals.parquet``, ``breadth.parquet`` and
chart list from every partition).

``signals.parquet``: one row per (symbol, parameter set): ``timestamp`` (the symbol's last bar),
``symbol``, ``strategy``, ``combo`` (the parameter set, e.g. ``fast=20 slow=50``), one column per
parameter (null where the strategy has no such parameter), ``position`` (held after the next
bar's fill: 1 long, -1 short, 0 flat), ``action`` (``enter``, ``exit``, ``hold``, ``flat``: see
:data:`~alphapulse.transforms.backtest.signals.ACTIONS`), ``since`` (the bar the state began on:
the last bar for an ``enter`` or ``exit``, else the fill that began the position or the flatness,
or the symbol's first bar if it never traded), ``source`` (``config`` or ``report``),
``report_rank`` and the parameter set's record on this symbol (``record_source``): from the
report, ``bt_sharpe``, ``bt_total_return``, ``bt_trades`` (its whole-period backtest) and
``oos_windows``, ``oos_sharpe`` (mean), ``oos_total_return`` (compounded) over the walk-forward
windows in which it chose this parameter set for this symbol; for a fixed set (``this run``), the
``bt_`` columns of the engine's run over this input that gave the signal (in sample: the history
the signal reads), ``oos_windows`` 0. Rows are in (symbol, parameter set) order; ``rank_actions`` ranks
the day's entries and exits by that record.

The positions are the backtest engine's own (:mod:`alphapulse.transforms.backtest.signals`): run
over each symbol's whole history, with the execution settings the parameter set was tested with
(the report's, or the ``backtest:`` block's for fixed sets).
"""
from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from alphapulse.pipelines.config.schema import Config
from alphapulse.pipelines.config.strategies import resolve_strategy
from alphapulse.pipelines.data import frames as frames
from alphapulse.pipelines.data.panel import bars_to_panel
from alphapulse.pipelines.errors import ArgumentError, ConfigError
from alphapulse.pipelines.report.manifest import parse_manifest
from alphapulse.pipelines.report.write import format_value
from alphapulse.pipelines.runtime.backend import Backend
from alphapulse.transforms.arrays import to_host as _host
from alphapulse.transforms.backtest.engine import TARGET
from alphapulse.transforms.backtest.metrics import metrics_from_acc
from alphapulse.transforms.backtest.signals import latest_signals, signal_actions
from alphapulse.transforms.backtest.strategies import PRICES, Plan, Strategy, StrategyError, check_strategy
from alphapulse.transforms.breadth import BREADTH_COUNTS, breadth_counts, breadth_shares

MAX_MANIFEST_BYTES = 16 << 20
"""A backtest report's ``manifest.json`` larger than this is refused unread."""

RECORD_COLUMNS = ("bt_sharpe", "bt_total_return", "bt_trades", "oos_windows", "oos_sharpe", "oos_total_return")


@dataclass(frozen=True)
class SignalSet:
    """One strategy's parameter sets and the execution they trade with."""

    strategy: Strategy
    ref: str
    plan: Plan
    labels: tuple[str, ...]
    engine: dict
    source: str  # "config" or "report"
    report_combo_ids: tuple[int, ...] = ()
    report_ranks: tuple[int, ...] = ()
    metrics: dict = field(default_factory=lambda: {"periods_per_year": 252.0, "definitions": "alphapulse"})


@dataclass(frozen=True)
class SignalsRequest:
    """The ``signals:`` block, resolved (:func:`prepare_signals`)."""

    sets: tuple[SignalSet, ...]
    params: tuple[str, ...]  # every parameter name, in first-seen order: signals.parquet's columns
    records: pd.DataFrame | None = field(default=None, repr=False)  # symbol, combo key -> RECORD_COLUMNS
    report: dict | None = None  # path, run_id, strategy, execution, top
    charts: int = 12
    chart_bars: int = 120
    breadth_bars: int = 504
    breadth: bool = True

    def fingerprint(self) -> str:
        """What the signals depend on beyond the config: the report's run (the partition cache key)."""
        return "" if self.report is None else f"{self.report['path']}#{self.report['run_id']}"


@dataclass
class PartitionSignals:
    """One partition's share of the report: its signals rows, its chart candidates and breadth counts."""

    frame: pd.DataFrame
    charts: list
    breadth: pd.DataFrame | None


def _label(combo: dict) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in combo.items())


def _cast(strategy: Strategy, params: dict, where: str) -> dict:
    combo = dict(strategy.defaults)
    for name, value in params.items():
        kind = strategy.params.get(name)
        if kind is None:
            raise ConfigError(f"{where}: {strategy.name} has no parameter {name!r}; its parameters: "
                              f"{', '.join(strategy.params)}")
        if kind is int and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)):
            raise ConfigError(f"{where}: {strategy.name}.{name} takes an integer, got {value!r}")
        combo[name] = kind(value)
    return {k: strategy.params[k](v) for k, v in combo.items()}


def _plan(strategy: Strategy, combos: list[dict], where: str) -> Plan:
    try:
        plan = strategy.plan(combos)
    except ValueError as e:
        raise ConfigError(f"{where}: {e}") from None
    if plan.skipped:
        combo, why = plan.skipped[0]
        raise ConfigError(f"{where}: {strategy.name} {_label(combo)}: {why}")
    if plan.mode == TARGET:
        try:
            check_strategy(strategy, plan.combos[:2])
        except StrategyError as e:
            raise ConfigError(f"{where}: {e}") from None
    return plan


def _resolve(ref: str, where: str) -> Strategy:
    try:
        return resolve_strategy(ref)
    except ArgumentError as e:
        raise ConfigError(f"{where}: {e}") from None


def prepare_signals(config: Config) -> SignalsRequest | None:
    """The ``signals:`` block resolved (no sets when it asks for none and only the breadth is
    drawn; None when it asks for neither). One-line ``ConfigError`` naming the entry for a
    strategy that does not resolve or keep the protocol, a parameter set the strategy refuses, or a
    ``from_report`` folder that is not a backtest report."""
    cfg = config.signals
    if not cfg.enabled and not cfg.breadth:
        return None
    sets, order = [], {}
    for i, entry in enumerate(cfg.strategies):
        where = f"signals.strategies[{i}]"
        strategy = _resolve(entry.strategy, where)
        combo = _cast(strategy, entry.params, where)
        order.setdefault(entry.strategy, []).append((where, strategy, combo))
    for ref, entries in order.items():
        strategy, combos = entries[0][1], [c for _, _, c in entries]
        unique = list({_label(c): c for c in combos}.values())  # a set listed twice is signalled once
        plan = _plan(strategy, unique, entries[0][0])
        bt = config.backtest
        sets.append(SignalSet(strategy, ref, plan, tuple(_label(c) for c in plan.combos), bt.execution(), "config",
                              metrics={"periods_per_year": bt.periods_per_year, "definitions": bt.definitions}))
    records, report = None, None
    if cfg.from_report is not None:
        report_set, records, report = read_backtest_report(cfg.from_report, top=cfg.top)
        sets.append(report_set)
    params = tuple(dict.fromkeys(p for s in sets for p in s.strategy.params))
    return SignalsRequest(tuple(sets), params, records, report, cfg.charts, cfg.chart_bars, cfg.breadth_bars,
                          cfg.breadth)


def _read_manifest(path: Path) -> dict:
    where = f"signals.from_report: {path}"
    try:
        st = os.stat(path / "manifest.json")
    except OSError:
        raise ConfigError(f"{where}: no manifest.json there (not a report folder)") from None
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_MANIFEST_BYTES:
        raise ConfigError(f"{where}: manifest.json is not a regular file of at most {MAX_MANIFEST_BYTES:,} bytes")
    try:
        data = json.loads((path / "manifest.json").read_bytes())
    except (OSError, ValueError, RecursionError) as e:
        raise ConfigError(f"{where}: manifest.json unreadable: {type(e).__name__}: {e}") from None
    if not isinstance(data, dict) or data.get("pipeline") != "backtest":
        got = data.get("pipeline") if isinstance(data, dict) else type(data).__name__
        raise ConfigError(f"{where}: not a backtest report (its manifest's pipeline is {got!r})")
    try:
        parse_manifest(data)
    except ValueError as e:
        raise ConfigError(f"{where}: manifest.json is not a backtest manifest: {str(e).splitlines()[0]}") from None
    return data


def _read_table(path: Path, name: str, **kw) -> pd.DataFrame:
    try:
        return pd.read_parquet(path / name, **kw)
    except (OSError, ValueError) as e:
        raise ConfigError(f"signals.from_report: {path / name}: unreadable: {type(e).__name__}: {e}") from None


def read_backtest_report(folder: str | Path, *, top: int) -> tuple[SignalSet, pd.DataFrame, dict]:
    """The ``top`` combinations of the backtest report ``folder`` by its rank, as a
    :class:`SignalSet` with the report's strategy and execution, each (symbol, combination)'s
    record (:data:`RECORD_COLUMNS`) and what the manifest says of the run."""
    path = Path(folder)
    manifest = _read_manifest(path)
    ref = manifest.get("strategy_ref") or manifest["strategy"]
    where = f"signals.from_report: {path}"
    strategy = _resolve(ref, where)
    summary = _read_table(path, "backtest_summary.parquet")
    missing = [c for c in ("combo_id", "rank", *strategy.params) if c not in summary.columns]
    if missing:
        raise ConfigError(f"{where}: backtest_summary.parquet has no column(s) {missing}")
    best = summary.sort_values(["rank", "combo_id"]).head(top)
    combos = [_cast(strategy, {p: row[p].item() if hasattr(row[p], "item") else row[p] for p in strategy.params},
                    where) for _, row in best.iterrows()]
    plan = _plan(strategy, combos, where)
    ids = tuple(int(i) for i in best["combo_id"])
    execution = {k: manifest["execution"][k] for k in ("direction", "trade_on", "size_fraction", "commission_bps",
                                                       "slippage_bps", "stop_loss", "take_profit")
                 if k in manifest["execution"]}
    labels = tuple(_label(c) for c in plan.combos)
    ex = manifest["execution"]
    metrics = {"periods_per_year": float(ex.get("periods_per_year", 252.0)),
               "definitions": ex.get("definitions", "alphapulse")}
    signal_set = SignalSet(strategy, ref, plan, labels, execution, "report", ids, tuple(int(r) for r in best["rank"]),
                           metrics)
    records = _records(path, ids, labels, strategy.name)
    info = {"path": str(path), "run_id": manifest["run_id"], "strategy": strategy.name, "strategy_ref": ref,
            "execution": execution, "top": len(ids), "combo_ids": list(ids)}
    return signal_set, records, info


def _records(path: Path, ids: tuple[int, ...], labels: tuple[str, ...], strategy: str) -> pd.DataFrame:
    label_of = dict(zip(ids, labels))
    metrics = _read_table(path, "backtest_metrics.parquet", columns=["symbol", "combo_id", "sharpe", "total_return",
                                                                     "trades"],
                          filters=[("combo_id", "in", list(ids))])
    out = pd.DataFrame({"symbol": metrics["symbol"].astype(str), "combo": metrics["combo_id"].map(label_of),
                        "bt_sharpe": metrics["sharpe"].astype("float64"),
                        "bt_total_return": metrics["total_return"].astype("float64"),
                        "bt_trades": metrics["trades"].astype("float64")})
    if (path / "walk_forward.parquet").exists():
        wf = _read_table(path, "walk_forward.parquet", columns=["symbol", "combo_id", "oos_sharpe", "oos_total_return"],
                         filters=[("combo_id", "in", list(ids))])
        wf = wf.assign(symbol=wf["symbol"].astype(str), growth=np.log1p(wf["oos_total_return"].astype("float64")))
        g = wf.groupby(["symbol", "combo_id"], sort=True)
        agg = pd.DataFrame({"oos_windows": g.size().astype("float64"), "oos_sharpe": g["oos_sharpe"].mean(),
                            "oos_total_return": np.expm1(g["growth"].sum())}).reset_index()
        agg["combo"] = agg["combo_id"].map(label_of)
        out = out.merge(agg.drop(columns="combo_id"), on=["symbol", "combo"], how="left")
        out["oos_windows"] = out["oos_windows"].fillna(0.0)
    else:
        out["oos_windows"], out["oos_sharpe"], out["oos_total_return"] = 0.0, np.nan, np.nan
    out["strategy"] = strategy
    return out


# ----------------------------------------------------------------------------------------------
# One partition
# ----------------------------------------------------------------------------------------------

def _chart_series(signal_set: SignalSet, c: int) -> list[int]:
    """The bank rows combination ``c`` of the set reads (the indicator lines of its chart)."""
    plan = signal_set.plan
    if plan.mode == TARGET:
        return list(plan.inputs[c].values()) if plan.inputs else []
    return list(dict.fromkeys(int(r) for r in plan.legs[c] if r >= 0))


def signals_stage(bars, request: SignalsRequest, backend: Backend) -> PartitionSignals:
    """One partition's signals (its rows of ``signals.parquet``, with the report's records), its
    best ``request.charts`` entries and exits on its last bar with their chart data, and its breadth
    counts per bar (``timestamp`` and :data:`~alphapulse.transforms.breadth.BREADTH_COUNTS`).

    ``bars``: the partition's validated bars (whole symbols; pandas or cuDF as the backend)."""
    panel = bars_to_panel(bars, fields=PRICES, dtype=backend.dtype, xp=backend.xp, order=backend.panel_order)
    timestamps = frames.to_host(panel.timestamps)
    timestamps = pd.DatetimeIndex(np.asarray(timestamps)) if not isinstance(timestamps, pd.Index) else timestamps
    symbols = np.asarray(frames.to_host(panel.symbols), dtype=object)
    breadth = None
    if request.breadth:
        counts = breadth_counts(panel.fields["high"], panel.fields["low"], panel.fields["close"])
        breadth = pd.DataFrame({"timestamp": timestamps, **{k: _host(counts[k]) for k in BREADTH_COUNTS}})
    n_rows, n_sym = panel.shape
    tail = min(request.chart_bars, n_rows) if request.charts else 0
    parts, charts, sigs = [], [], []
    for set_index, s in enumerate(request.sets):
        sig = latest_signals(panel.fields, strategy=s.strategy, plan=s.plan, engine=s.engine, tail_bars=tail)
        sigs.append(sig)
        position, nxt = _host(sig.position), _host(sig.next_position)
        since, last = _host(sig.since_row), _host(sig.last_row)
        actions = signal_actions(position, nxt)
        own = {k: _host(v).reshape(len(s.labels), n_sym) for k, v in
               metrics_from_acc(sig.acc, **s.metrics).items() if k in ("sharpe", "total_return", "trades")}
        for c, label in enumerate(s.labels):
            at = np.where(last >= 0, last, 0)
            moving = (actions[c] == "enter") | (actions[c] == "exit")
            since_ts = np.where(moving, timestamps.values[at], timestamps.values[np.maximum(since[c], 0)])
            part = pd.DataFrame({"timestamp": timestamps.values[at], "symbol": symbols, "strategy": s.strategy.name,
                                 "combo": label, **{p: s.plan.combos[c].get(p, np.nan) for p in request.params},
                                 "position": nxt[c].astype(np.int8), "action": actions[c],
                                 "since": since_ts.astype("datetime64[ns]"), "source": s.source,
                                 "report_rank": s.report_ranks[c] if s.report_ranks else pd.NA,
                                 "record_source": "this run",
                                 "bt_sharpe": own["sharpe"][c], "bt_total_return": own["total_return"][c],
                                 "bt_trades": own["trades"][c], "oos_windows": 0.0, "oos_sharpe": np.nan,
                                 "oos_total_return": np.nan,
                                 "_set": set_index, "_combo": c, "_last": last})
            parts.append(part[last >= 0])
    if not parts:
        return PartitionSignals(empty_signals(request), [], breadth)
    frame = attach_records(pd.concat(parts, ignore_index=True), request)
    if tail:
        charts = _chart_candidates(frame, request, sigs, panel=panel, timestamps=timestamps, symbols=symbols,
                                   tail=tail, n_rows=n_rows)
    frame = frame.drop(columns=["_set", "_combo", "_last"])
    return PartitionSignals(frame, charts, breadth)


def empty_signals(request: SignalsRequest) -> pd.DataFrame:
    """``signals.parquet``'s columns without rows (no parameter set, or no symbol with a bar)."""
    return pd.DataFrame({"timestamp": pd.Series([], dtype="datetime64[ns]"), "symbol": pd.Series([], dtype=object),
                         "strategy": pd.Series([], dtype=object), "combo": pd.Series([], dtype=object),
                         **{p: pd.Series([], dtype="Float64") for p in request.params},
                         "position": pd.Series([], dtype=np.int8), "action": pd.Series([], dtype=object),
                         "since": pd.Series([], dtype="datetime64[ns]"), "source": pd.Series([], dtype=object),
                         "report_rank": pd.Series([], dtype="Int64"), "record_source": pd.Series([], dtype=object),
                         **{c: pd.Series([], dtype=np.float64) for c in RECORD_COLUMNS}})


def attach_records(frame: pd.DataFrame, request: SignalsRequest) -> pd.DataFrame:
    """``frame`` (with this run's record in :data:`RECORD_COLUMNS`) with the report's record in
    place of it on the report's rows (``record_source`` ``report``); a symbol the report did not
    test keeps NaN."""
    if request.records is None or not len(frame):
        return frame
    rec = request.records[["symbol", "strategy", "combo", *RECORD_COLUMNS]].assign(source="report")
    keyed = frame.drop(columns=list(RECORD_COLUMNS)).assign(_row=np.arange(len(frame)))
    merged = keyed.merge(rec, on=["symbol", "strategy", "combo", "source"], how="left").sort_values("_row")
    merged = merged.drop(columns="_row").reset_index(drop=True)
    report = (merged["source"] == "report").to_numpy()
    out = frame.copy()
    for c in RECORD_COLUMNS:
        out[c] = np.where(report, merged[c].to_numpy(dtype=np.float64), frame[c].to_numpy(dtype=np.float64))
    out["record_source"] = np.where(report, "report", frame["record_source"].to_numpy(dtype=object))
    return out


def record_key(frame: pd.DataFrame) -> pd.Series:
    """The record a ranking uses: the walk-forward's mean out-of-sample Sharpe where the report has
    windows for the row, else its whole-period Sharpe (NaN: no record)."""
    return frame["oos_sharpe"].where(frame["oos_windows"] > 0, frame["bt_sharpe"])


def rank_actions(frame: pd.DataFrame) -> pd.DataFrame:
    """The entries and exits of ``frame``, best record first (no record last, then by symbol)."""
    moves = frame[frame["action"].isin(["enter", "exit"])]
    key = record_key(moves)
    return (moves.assign(_key=key.fillna(-np.inf))
            .sort_values(["_key", "symbol", "strategy", "combo"], ascending=[False, True, True, True], kind="stable")
            .drop(columns="_key"))


def _chart_candidates(frame, request, sigs, *, panel, timestamps, symbols, tail, n_rows) -> list:
    """Chart data for this partition's best ``request.charts`` entries and exits on its last bar,
    cut from the engine's tails of the signals run (``sigs``, one per set)."""
    best = rank_actions(frame[frame["_last"] == n_rows - 1]).head(request.charts)
    rows = slice(n_rows - tail, n_rows)
    cols = [int(np.searchsorted(symbols, sym)) for sym in best["symbol"]]
    close = _host(panel.fields["close"][rows][:, cols]) if cols else None
    out = []
    for j, (col, (_, r)) in enumerate(zip(cols, best.iterrows())):
        s, sig, c = request.sets[int(r["_set"])], sigs[int(r["_set"])], int(r["_combo"])
        lines = [(s.plan.bank[k][1], s.plan.bank[k][0].name, _host(sig.tail_series[k, :, col]))
                 for k in _chart_series(s, c)]
        levels = [] if s.plan.mode == TARGET else sorted({float(s.plan.levels[c, k - 1]) for k in range(1, 5)
                                                         if s.plan.legs[c, k] < 0})
        out.append({"symbol": r["symbol"], "strategy": r["strategy"], "combo": r["combo"], "action": r["action"],
                    "position": int(r["position"]), "record": float(record_key(pd.DataFrame([r])).iloc[0]),
                    "timestamps": timestamps.values[rows], "close": close[:, j].astype(np.float64),
                    "held": _host(sig.tail_positions[c, :, col]), "lines": lines, "levels": levels})
    return out


# ----------------------------------------------------------------------------------------------
# The report
# ----------------------------------------------------------------------------------------------

def combine_signals(parts: list[PartitionSignals], request: SignalsRequest) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """``signals.parquet``'s frame (every partition's rows, in (symbol, parameter set) order),
    ``breadth.parquet``'s (counts summed over partitions per bar, with the shares; None when
    ``signals.breadth`` is off) and the best
    ``request.charts`` charts of entries and exits on the input's last bar."""
    frames_ = [p.frame for p in parts if len(p.frame)]
    signals = pd.concat(frames_, ignore_index=True) if frames_ else empty_signals(request)
    set_order = {(s.strategy.name, s.source, label): k for k, s in enumerate(request.sets) for label in s.labels}
    if len(signals):
        key = [set_order[(a, b, c)] for a, b, c in zip(signals["strategy"], signals["source"], signals["combo"])]
        signals = (signals.assign(_k=key).sort_values(["symbol", "_k"], kind="stable").drop(columns="_k")
                   .reset_index(drop=True))
        signals["report_rank"] = signals["report_rank"].astype("Int64")
        for p in request.params:  # nullable: a strategy without the parameter leaves it null
            kinds = {s.strategy.params[p] for s in request.sets if p in s.strategy.params}
            signals[p] = signals[p].astype("Int64" if kinds == {int} else "Float64")
    breadth = None
    if request.breadth:
        breadth = pd.concat([p.breadth for p in parts], ignore_index=True).groupby("timestamp", sort=True).sum()
        breadth = breadth.reset_index()
        for k, v in breadth_shares(breadth).items():
            breadth[f"share_{k}"] = v
    last = signals["timestamp"].max() if len(signals) else None
    charts = [c for p in parts for c in p.charts if last is not None and c["timestamps"][-1] == last]
    charts.sort(key=lambda c: (-(c["record"] if np.isfinite(c["record"]) else -np.inf), c["symbol"], c["strategy"],
                               c["combo"]))
    return signals, breadth, charts[: request.charts]


def signals_section(request: SignalsRequest, signals: pd.DataFrame, skipped: dict | None = None) -> dict:
    """The manifest's ``signals`` section: the parameter sets, the report used, today's counts."""
    last = signals["timestamp"].max() if len(signals) else None
    today = signals[signals["timestamp"] == last] if last is not None else signals
    return {
        "sets": [{"strategy": s.strategy.name, "ref": s.ref, "combos": list(s.labels), "source": s.source,
                  "execution": s.engine, **({"report_combo_ids": list(s.report_combo_ids),
                                              "report_ranks": list(s.report_ranks)} if s.source == "report" else {})}
                 for s in request.sets],
        "report": request.report,
        "rows": int(len(signals)),
        "last_timestamp": None if last is None else format_value(pd.Timestamp(last)),
        "actions": {a: int((today["action"] == a).sum()) for a in ("enter", "exit", "hold", "flat")},
        "skipped": dict(skipped or {}),
    }
