"""Continue the registry's indicators from a saved state: pay for the new bars only.

Implements :class:`IndicatorState` (what each symbol's recurrences need to go on), :func:`state_window`,
:func:`empty_state` and :func:`continue_indicators`, which either launches one *resumable* series kernel
per indicator family (``*_resume``, :mod:`alphapulse.transforms.indicators.resume`), compiled for the CPU
and CUDA like the kernels of :mod:`alphapulse.transforms.indicators.series`, or, for a few new bars
(:data:`STEP_BARS`), steps bar by bar over every symbol at once in NumPy or CuPy
(:mod:`alphapulse.transforms.indicators.steps`): a day's run then starts no Numba machinery.

Identity with the full run. A resumable kernel performs, bar for bar, the same float64 operations in the
same order as its counterpart in ``series``; it keeps between calls exactly the values that counterpart
keeps in registers between iterations (running totals, EMA / Wilder accumulators, running extremes
with their bar index, ring buffers of STOCH's smoothed %K), in float64, plus the last bars a window
reads back (SMA / Bollinger ``period - 1``, ROC ``period``, CCI / WILLR / STOCH their high-low-close
windows). So, on the CPU, splitting a symbol's bars anywhere (inside a warm-up included) and
continuing gives the outputs of one :func:`~alphapulse.transforms.indicators.registry.compute_indicators`
over all the bars bit for bit, in float64 and in float32 panels alike (a float32 panel's kernel reads
float32 values and accumulates in float64; the state holds those float64 accumulators, and the kept
bars are float32 values, exact in float64). On the GPU, NVVM contracts multiply-adds into FMAs where it
chooses, and the resumable kernels are other functions than ``series``' ones: a GPU run agrees with
the GPU full run within a few ulp (tested at 1e-12 relative in float64), as ``series`` already agrees
with the CPU.

Gaps. As in the registry, a NaN ``close`` is a missing bar: the kernels see each symbol's valid bars
compacted (:func:`alphapulse.transforms.kernels.compact`), so a symbol missing from a day's bars keeps
its state untouched, and a new symbol starts from :func:`empty_state` (its own first bar is its bar 0).
The absolute bar number (``seen``) drives the warm-ups, so outputs stay NaN exactly where TA-Lib's are.

Layout. The resumable kernels read a *stacked* compacted panel per input: for column ``j``, the kept
bars (``t[j]`` rows) then the new valid bars; ``start[j] = t[j]``, ``n[j]`` the rows in all,
``base[j]`` the absolute number of the stacked panel's row 0 (``seen[j] - t[j]``). Each family's state
is a float64 array of shape (size, n_symbols) updated in place.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from alphapulse.transforms.arrays import float_dtype, namespace
from alphapulse.transforms.indicators.registry import INDICATORS, IndicatorSpec
from alphapulse.transforms.indicators.steps import STEPS
from alphapulse.transforms.indicators.resume import (sma_resume, ema_resume, rsi_resume, macd_resume, bbands_resume,
                                                     atr_resume, stoch_resume, adx_resume, cci_resume, willr_resume,
                                                     obv_resume, roc_resume, stack_column, unstack_column,
                                                     keep_column)
from alphapulse.transforms.kernels import valid_mask

__all__ = ["IndicatorState", "state_key", "state_size", "state_window", "state_fields", "empty_state",
           "continue_indicators", "STEP_BARS"]

STEP_BARS = 32
"""Up to this many new bars per symbol, :func:`continue_indicators` steps bar by bar over every symbol
at once (NumPy / CuPy) instead of launching the compiled kernels: a daily store run then pays for no
Numba start-up (about 0.5 s in a fresh process against a few milliseconds of steps)."""


# ---------------------------------------------------------------------------------------------
# Per-family layout: the bars a window reads back, the state's size, the launch
# ---------------------------------------------------------------------------------------------


def _macd_order(p):
    fast, slow = p["fast"], p["slow"]
    return (slow, fast) if slow < fast else (fast, slow)


# name -> (bars kept, state rows), from the resolved parameters
_LAYOUT = {
    "sma": lambda p: (p["period"] - 1, 1),
    "ema": lambda p: (0, 1),
    "rsi": lambda p: (0, 3),
    "macd": lambda p: (0, 4),
    "bbands": lambda p: (p["period"] - 1, 5),
    "atr": lambda p: (0, 2),
    "natr": lambda p: (0, 2),
    "stoch": lambda p: (p["fastk_period"] - 1, 6 + p["slowk_period"] + p["slowd_period"]),
    "adx": lambda p: (0, 8),
    "cci": lambda p: (p["period"] - 1, 0),
    "willr": lambda p: (p["period"] - 1, 4),
    "obv": lambda p: (0, 2),
    "roc": lambda p: (p["period"], 0),
}
assert set(_LAYOUT) == set(INDICATORS), "every registry indicator needs a resumable kernel"


def _launch(name, p, ins, start, n, base, st, outs, scratch):
    cols = ins[0].shape[1]
    if name == "sma":
        sma_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "ema":
        ema_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "rsi":
        rsi_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "macd":
        fast, slow = _macd_order(p)
        macd_resume(cols, *ins, start, n, base, fast, slow, p["signal"], st, *outs)
    elif name == "bbands":
        bbands_resume(cols, *ins, start, n, base, p["period"], float(p["nbdev"]), st, *outs)
    elif name in ("atr", "natr"):
        atr_resume(cols, *ins, start, n, base, p["period"], name == "natr", st, *outs)
    elif name == "stoch":
        stoch_resume(cols, *ins, start, n, base, p["fastk_period"], p["slowk_period"], p["slowd_period"], st, *outs)
    elif name == "adx":
        adx_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "cci":
        cci_resume(cols, *ins, start, n, base, p["period"], scratch(), *outs)
    elif name == "willr":
        willr_resume(cols, *ins, start, n, base, p["period"], st, *outs)
    elif name == "obv":
        obv_resume(cols, *ins, start, n, base, st, *outs)
    elif name == "roc":
        roc_resume(cols, *ins, start, n, base, p["period"], *outs)
    else:  # pragma: no cover - guarded by the _LAYOUT assertion
        raise ValueError(name)


def state_key(spec: IndicatorSpec) -> str:
    """The name of ``spec``'s state: its first output column (``sma_20``, ``macd_12_26_9``, ``bb_upper_20_2``)."""
    return spec.column_names()[0]


def state_size(spec: IndicatorSpec) -> int:
    """Rows of ``spec``'s float64 state (0 for CCI and ROC, which keep bars only)."""
    return int(_LAYOUT[spec.name](spec.resolved_params())[1])


def state_window(specs: list[IndicatorSpec]) -> int:
    """Bars each symbol keeps for the windows that read back: the largest over ``specs`` (0 when none do)."""
    return max((int(_LAYOUT[s.name](s.resolved_params())[0]) for s in specs), default=0)


def state_fields(specs: list[IndicatorSpec]) -> tuple[str, ...]:
    """The bar fields the specs read (``close`` always: it decides which bars are present), sorted."""
    return tuple(sorted({i for s in specs for i in INDICATORS[s.name].inputs} | {"close"}))


@dataclass
class IndicatorState:
    """What each symbol's indicators need to continue: bars seen, the last bars, the recurrences.

    Attributes
    ----------
    seen : int64 array of shape (n_symbols,)
        Valid bars consumed so far (the next bar's absolute number).
    kept : dict of str to float64 array of shape (window, n_symbols)
        For each field of :func:`state_fields`, the last ``min(seen, window)`` bars at the bottom,
        newest last, NaN above (``window`` = :func:`state_window`). Values are the panel's own
        (a float32 panel's bars, exact in float64).
    values : dict of str to float64 array of shape (size, n_symbols)
        For each spec (:func:`state_key`), its recurrences' accumulators (:func:`state_size` rows).
    """

    seen: object
    kept: dict
    values: dict

    @property
    def n_symbols(self) -> int:
        return int(self.seen.shape[0])


def empty_state(specs: list[IndicatorSpec], n_symbols: int, *, xp=np) -> IndicatorState:
    """The state of symbols with no bar yet: continuing from it is the full computation.

    Parameters
    ----------
    specs : the indicators (each resolved and range-checked here)
    n_symbols : columns
    xp : NumPy or CuPy, where the arrays live
    """
    window = state_window(specs)
    kept = {f: xp.full((window, n_symbols), np.nan, dtype=np.float64) for f in state_fields(specs)}
    values = {state_key(s): xp.zeros((max(state_size(s), 1), n_symbols), dtype=np.float64) for s in specs}
    for s in specs:
        if s.name in ("stoch", "willr"):
            # no extreme yet: bar -1 has always left the window, so the first scan rescans it
            values[state_key(s)][1] = -1.0
            values[state_key(s)][3] = -1.0
    return IndicatorState(xp.zeros(n_symbols, dtype=np.int64), kept, values)


def continue_indicators(bars: dict, specs: list[IndicatorSpec], state: IndicatorState, *,
                        method: str = "auto") -> tuple[dict, IndicatorState]:
    """The specs' outputs on the new bars, continuing each symbol from ``state``; and the state after them.

    Parameters
    ----------
    bars : dict of str to array of shape (n_new, n_symbols)
        The new bars only (NumPy or CuPy, float32 or float64), the fields of :func:`state_fields`;
        NaN where a symbol has no new bar (``close`` decides). Column ``j`` is ``state``'s symbol
        ``j``; every bar is later than the symbol's kept ones.
    specs : list of IndicatorSpec
        The same specs, in the same order, that made ``state``.
    state : IndicatorState
        From :func:`empty_state` (then this is the full computation) or an earlier call; not modified.
    method : ``"auto"``, ``"steps"`` or ``"kernels"``
        ``"steps"``: bar by bar, every symbol at once (:mod:`~alphapulse.transforms.indicators.steps`);
        ``"kernels"``: the compiled resumable kernels, symbol by symbol over its bars. ``"auto"`` takes
        the steps when no symbol has more than :data:`STEP_BARS` new bars (a day's run pays no Numba
        start-up), else the kernels (a long history costs them microseconds a bar, the steps a Python
        loop a bar). Both give the same bits on NumPy.

    Returns
    -------
    outputs : dict of str to array of shape (n_new, n_symbols)
        As :func:`alphapulse.transforms.indicators.registry.compute_indicators` would give for these
        rows after all the symbol's earlier bars (see the module docstring for when it is bit-identical).
    state : IndicatorState
        The state after the new bars (new arrays).
    """
    close = bars["close"]
    xp = namespace(close)
    resolved = [(s.name, s.resolved_params(), s.column_names(), state_key(s)) for s in specs]
    if close.ndim != 2 or close.shape[1] != state.n_symbols:
        raise ValueError(f"bars have shape {close.shape}; the state holds {state.n_symbols} symbols")
    fields = state_fields(specs)
    window = state_window(specs)
    if set(state.kept) != set(fields) or any(v.shape[0] != window for v in state.kept.values()):
        raise ValueError("the state was made for other indicators (its kept bars differ); recompute in full")
    if set(state.values) != {k for *_, k in resolved}:
        raise ValueError("the state was made for other indicators (its keys differ); recompute in full")
    if method not in ("auto", "steps", "kernels"):
        raise ValueError(f"method: expected 'auto', 'steps' or 'kernels', got {method!r}")
    dtype = float_dtype(close)
    valid = valid_mask(close)
    n_new = valid.sum(axis=0).astype(np.int64)
    longest = int(n_new.max()) if n_new.size else 0
    if method == "steps" or (method == "auto" and longest <= STEP_BARS):
        return _continue_in_steps(xp, bars, resolved, state, fields, window, dtype, valid, n_new, longest)
    t = xp.minimum(state.seen, window).astype(np.int64)
    n = t + n_new
    base = state.seen - t
    rows, cols = window + close.shape[0], close.shape[1]
    order = "F" if xp is np else "C"
    stacked = {}
    for f in fields:
        x = bars[f] if bars[f].dtype == dtype else bars[f].astype(dtype)
        dst = xp.full((rows, cols), np.nan, dtype=dtype, order=order)
        stack_column(cols, xp.asarray(state.kept[f], order=order), t, xp.asarray(x, order=order), valid, dst)
        stacked[f] = dst
    values = {k: v.copy(order=order) for k, v in state.values.items()}

    def scratch():
        return xp.empty((rows, cols), dtype=np.float64, order=order)

    outputs = {}
    for name, params, names, key in resolved:
        outs = [xp.full((rows, cols), np.nan, dtype=dtype, order=order) for _ in names]
        ins = [stacked[i] for i in INDICATORS[name].inputs]
        _launch(name, params, ins, t, n, base, values[key], outs, scratch)
        for col, out in zip(names, outs):
            result = xp.full(close.shape, np.nan, dtype=dtype, order=order)
            unstack_column(cols, out, t, valid, result)
            outputs[col] = result
    kept = {}
    for f in fields:
        kept[f] = xp.empty((window, cols), dtype=np.float64, order=order)
        keep_column(cols, stacked[f], n, kept[f])
    return outputs, IndicatorState(state.seen + n_new, kept, values)


def _continue_in_steps(xp, bars, resolved, state, fields, window, dtype, valid, n_new, longest):
    """:func:`continue_indicators` bar by bar: row ``window + k`` of the stacked panels holds each
    symbol's k-th new bar (its kept bars above, bottom aligned), so one step serves every symbol."""
    cols = state.n_symbols
    rows_at, cols_at = xp.nonzero(valid)
    slot = (xp.cumsum(valid, axis=0) - 1)[rows_at, cols_at]  # each valid bar's rank within its symbol
    stacked = {}
    for f in fields:
        x = bars[f] if bars[f].dtype == dtype else bars[f].astype(dtype)
        new = xp.full((longest, cols), np.nan, dtype=np.float64)
        new[slot, cols_at] = x[rows_at, cols_at]
        stacked[f] = xp.concatenate([xp.asarray(state.kept[f], dtype=np.float64), new])
    typical = None
    if any(name == "cci" for name, *_ in resolved):
        typical = (stacked["high"] + stacked["low"] + stacked["close"]) / 3
    values = {k: v.copy() for k, v in state.values.items()}
    steps = {col: xp.full((longest, cols), np.nan, dtype=dtype) for _, _, names, _ in resolved for col in names}
    with np.errstate(all="ignore"):  # every column computes the branches it does not take, then drops them
        for k in range(longest):
            live = n_new > k
            live = None if bool(live.all()) else live
            a = state.seen + k
            for name, params, names, key in resolved:
                ins = [stacked[i] for i in INDICATORS[name].inputs]
                extra = {"typical": typical} if name == "cci" else {}
                for col, row in zip(names, STEPS[name](xp, params, ins, window + k, a, live, values[key], **extra)):
                    steps[col][k] = row
    outputs = {}
    for col, out in steps.items():
        result = xp.full(bars["close"].shape, np.nan, dtype=dtype)
        result[rows_at, cols_at] = out[slot, cols_at]
        outputs[col] = result
    shift = n_new[None, :] + xp.arange(window)[:, None]  # the last `window` stacked rows of each symbol
    kept = {f: stacked[f][shift, xp.arange(cols)[None, :]] for f in fields}
    return outputs, IndicatorState(state.seen + n_new, kept, values)
