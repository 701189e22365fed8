"""Portfolio walk-forward: every optimiser re-estimated at each rebalance, held out of sample.

Implements :func:`walk_forward_backtest` (its result a :class:`PortfolioWalkForward`), the options it
passes to the optimisers (:class:`OptimiserOptions`, :class:`View`), :func:`estimation_windows`
(each rebalance date's universe and trailing window) and :data:`WALK_FORWARD_BENCHMARKS`.

At each rebalance row ``d`` (:func:`~alphapulse.transforms.portfolio.schedule.rebalance_rows`; the
first bar the new weights are held over):

1. the universe and estimation window: :func:`alphapulse.transforms.returns.common_window` over
   the ``train_bars`` one-bar returns ending at row ``d - 1`` (no bar at or after ``d`` is read),
   with the portfolio pipeline's ``min_history_bars`` / ``max_gap_fraction`` rules;
2. the covariance of every date's window in one batched pass
   (:func:`alphapulse.transforms.batched_covariance.batched_cov`, the windows stacked by shape), expected
   returns the window's mean times ``periods_per_year``;
3. every method through the fallback chain
   (:func:`alphapulse.transforms.portfolio.fallback.optimise_with_fallback`), the chain recorded
   per date; Black-Litterman is max-Sharpe of the posterior from the equal-weight market prior
   and the views on that date's universe (as the portfolio pipeline). Each optimiser starts from
   its answer at the latest earlier date (``initial_weights``: a warm start; the same optimum,
   certified by the same checks, with a fraction of the factorisations of a cold start);
4. the ensemble mixes the methods' portfolios: ``equal``, ``inverse_volatility`` (ex ante, the
   date's covariance) or ``adaptive``: by the Sharpe ratio of each method's *realised
   out-of-sample* returns over the ``train_bars`` bars before ``d`` (equal at the first date,
   when there are none), so no method is weighed on the window it was fitted on.

Each method's account is then simulated by
:func:`~alphapulse.transforms.portfolio.schedule.simulate_holdings` (``drift`` or ``constant``
holdings, costs on turnover, cash at the risk-free rate). The benchmarks
(:data:`WALK_FORWARD_BENCHMARKS`) are equal weight rebalanced on the same schedule (when not a
configured method) and the equal-weight buy-and-hold of the first date's universe (bought once,
drifting, its one trade charged).

Backend: NumPy or CuPy (``xp = namespace(prices)``); returns, covariances, weights and the
accounts stay on the device. HRP runs on a host copy of its covariance inside the fallback chain
(SciPy's linkage), as everywhere. The loops are over dates and methods (the solves), never
over symbols.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from alphapulse.transforms.arrays import namespace
from alphapulse.transforms.batched_covariance import batched_cov
from alphapulse.transforms.errors import OptimisationError
from alphapulse.transforms.portfolio.black_litterman import (black_litterman_posterior, default_omega,
                                                             idzorek_omega, market_implied_prior_returns)
from alphapulse.transforms.portfolio.ensemble import ensemble_mixing_weights
from alphapulse.transforms.portfolio.fallback import optimise_with_fallback
from alphapulse.transforms.portfolio.schedule import holding_returns, rebalance_rows, simulate_holdings
from alphapulse.transforms.returns import common_window, simple_returns

__all__ = ["View", "OptimiserOptions", "PortfolioWalkForward", "WALK_FORWARD_BENCHMARKS", "estimation_windows",
           "walk_forward_backtest"]

WALK_FORWARD_BENCHMARKS = ("equal_weight", "buy_and_hold")
"""Series every walk-forward reports beside the methods: equal weight on the methods' schedule,
and the equal-weight buy-and-hold of the first date's universe."""


@dataclass(frozen=True)
class View:
    """One Black-Litterman view (annual returns): ``asset`` returns ``expected_return``, or, with
    ``versus``, outperforms it by that much; ``confidence`` in [0, 1] (Idzorek) or None."""

    asset: str
    expected_return: float
    versus: str | None = None
    confidence: float | None = None


@dataclass(frozen=True)
class OptimiserOptions:
    """What the optimisers take besides the moments (annual units, the portfolio block's meaning)."""

    min_weight: float = 0.0
    max_weight: float = 1.0
    risk_free_rate: float = 0.0
    target_return: float | None = None
    target_volatility: float | None = None
    risk_aversion: float = 1.0
    bl_tau: float = 0.05
    bl_risk_aversion: float = 1.0
    views: tuple = ()


@dataclass(frozen=True)
class PortfolioWalkForward:
    """The walk-forward of every method and benchmark.

    Attributes
    ----------
    series : tuple of str
        The configured methods, ``"ensemble"`` (when two or more methods), then the
        benchmarks (:data:`WALK_FORWARD_BENCHMARKS`; equal weight only when not configured).
    returns, turnover, cost : arrays of shape (n_bars, n_series)
        Net returns a bar (NaN before the first rebalance), turnover and costs paid at each
        rebalance (fractions of the value before the trade), one column a series.
    rows : dict of str to NumPy int64 array
        Each series' rebalance rows (first bar held).
    weights : list of dict
        One record a (rebalance, series): ``row``, ``series``, ``columns`` (NumPy int64 indices
        of the date's universe) and ``weights`` (array of shape (len(columns),), the targets).
    chains : list of dict
        The fallback chain at each (row, method): ``row, method, step, tried, status, reason``.
    first_row : int
        The first row with a full estimation window (the first possible rebalance).
    """

    series: tuple
    returns: object
    turnover: object
    cost: object
    rows: dict
    weights: list = field(repr=False)
    chains: list = field(repr=False)
    first_row: int = 0


def estimation_windows(returns, rows, *, train_bars: int, min_history_bars: int, max_gap_fraction: float,
                       symbols=None) -> list:
    """Each rebalance row's universe and window: :func:`~alphapulse.transforms.returns.common_window`
    over the ``train_bars`` returns ending at row ``d - 1``.

    Parameters
    ----------
    returns : array of shape (n_bars, n_symbols)
        One-bar returns, NaN where missing.
    rows : sequence of int
        Rebalance rows, each at least 1.
    train_bars, min_history_bars, max_gap_fraction
        The window's length and the qualification rules (bars, bars, fraction).
    symbols : sequence of str, optional

    Returns
    -------
    list of CommonWindow, one a row
    """
    return [common_window(returns, min_history_bars, window_bars=train_bars, end=int(d) - 1,
                          max_gap_fraction=max_gap_fraction, symbols=symbols) for d in rows]


def _views(options: OptimiserOptions, names: tuple, cov, *, xp):
    """Picking matrix, view returns and omega for the views on this universe (None when none)."""
    index = {s: i for i, s in enumerate(names)}
    rows, q, conf = [], [], []
    for v in options.views:
        if v.asset not in index or (v.versus is not None and v.versus not in index):
            continue
        p = np.zeros(len(names))
        p[index[v.asset]] = 1.0
        if v.versus is not None:
            p[index[v.versus]] = -1.0
        rows.append(p)
        q.append(v.expected_return)
        conf.append(v.confidence)
    if not rows:
        return None, None, None
    P, Q = xp.asarray(np.array(rows)), xp.asarray(np.array(q))
    if all(c is not None for c in conf):
        return P, Q, idzorek_omega(xp.asarray(np.array(conf, dtype=float)), cov, P, tau=options.bl_tau)
    return P, Q, default_omega(cov, P, tau=options.bl_tau)


def _solve(method, cov, mu, options: OptimiserOptions, names, *, xp, initial_weights=None):
    box = dict(min_weights=options.min_weight, max_weights=options.max_weight, risk_free_rate=options.risk_free_rate,
               target_return=options.target_return, target_volatility=options.target_volatility,
               risk_aversion=options.risk_aversion, initial_weights=initial_weights)
    if method != "black_litterman":
        return optimise_with_fallback(method, covariance=cov, expected_returns=mu, **box)
    n = cov.shape[0]
    prior = market_implied_prior_returns(xp.full(n, 1.0 / n), cov, risk_aversion=options.bl_risk_aversion,
                                         risk_free_rate=options.risk_free_rate)
    P, Q, omega = _views(options, names, cov, xp=xp)
    post_mu, post_cov = (prior, cov) if P is None else black_litterman_posterior(prior, cov, picking=P, views=Q,
                                                                                 omega=omega, tau=options.bl_tau)
    return optimise_with_fallback("max_sharpe", covariance=post_cov, expected_returns=post_mu, **box)


class _Targets:
    """Every method's targets at a rebalance row, estimated once and kept (the band rule asks for
    rows one at a time, the calendar rules for all of them at once)."""

    def __init__(self, r, *, methods, symbols, train_bars, min_history_bars, max_gap_fraction, covariance,
                 ewma_halflife, periods_per_year, options):
        self.r, self.methods, self.symbols = r, tuple(methods), symbols
        self.xp = namespace(r)
        self.window_args = dict(train_bars=train_bars, min_history_bars=min_history_bars,
                                max_gap_fraction=max_gap_fraction, symbols=symbols)
        self.cov_args = dict(estimator=covariance, periods_per_year=periods_per_year, halflife=ewma_halflife)
        self.ppy, self.options = periods_per_year, options
        self.done = {}  # row -> (window, cov, {method: (full weights, FallbackResult or None)})
        self.chains = []
        self.solved = []  # rows with a covariance, ascending: the warm starts come from them

    def prepare(self, rows):
        """Estimate the rows not done yet: the windows, then their covariances batched by shape."""
        xp = self.xp
        rows = sorted({int(d) for d in rows if int(d) not in self.done})
        windows = estimation_windows(self.r, rows, **self.window_args)
        groups, moments = {}, {}
        for d, w in zip(rows, windows):
            if len(w.columns) >= 2 and len(w.rows) >= 2:
                groups.setdefault((len(w.rows), len(w.columns)), []).append((d, w))
        for members in groups.values():
            blocks = xp.stack([w.select(self.r) for _, w in members]).astype(xp.float64, copy=False)
            # batched_cov's matrices are exactly symmetric (symmetrised, then shrunk towards a
            # multiple of I), so symmetrising them again changed no bit and cost a pass over all.
            covs = batched_cov(blocks, **self.cov_args)
            mus = blocks.mean(axis=1) * self.ppy
            for k, (d, _) in enumerate(members):
                moments[d] = (covs[k], mus[k])
        for d, w in zip(rows, windows):
            self._store(d, w, *moments.get(d, (None, None)))

    def _store(self, d, window, cov, mu):
        xp = self.xp
        n = self.r.shape[1]
        cols = xp.asarray(window.columns)
        names = window.symbols or tuple(str(c) for c in window.columns)
        out = {}
        before = self._solved_before(d) if cov is not None else None
        for m in self.methods:
            full = xp.zeros(n, dtype=xp.float64)
            if cov is None:  # fewer than two symbols qualify: the account holds cash this period
                self.chains.append({"row": d, "method": m, "step": 0, "tried": m, "status": "failed",
                                    "reason": f"{len(window.columns)} symbol(s) and {len(window.rows)} complete "
                                              "row(s) in the window: cash held"})
                out[m] = full
                continue
            guess = None
            if before is not None and m != "equal_weight":
                guess = xp.full(n, xp.nan, dtype=xp.float64)
                guess[before[0]] = before[1][m][before[0]]
                guess = guess[cols]
            res = _solve(m, cov, mu, self.options, names, xp=xp, initial_weights=guess)
            full[cols] = xp.asarray(res.weights, dtype=xp.float64)
            out[m] = full
            self.chains += [{"row": d, "method": m, "step": rec["step"], "tried": rec["method"],
                             "status": rec["status"], "reason": rec["reason"]} for rec in res.records()]
        self.done[d] = (window, cov, out)
        if cov is not None:
            bisect.insort(self.solved, d)

    def _solved_before(self, d):
        """(universe columns, targets) of the latest solved row before ``d``, or None.

        Each optimiser starts from that row's answer (a warm start: the same optimum, fewer
        iterations). The latest row *before* ``d``, not the latest solved: the band rule asks
        for rows out of order (one account after another), and a row's start must not depend
        on a later one (no look-ahead, even in the rounding); solving the calendar rules' rows
        in date order makes the start the previous rebalance.
        """
        k = bisect.bisect_left(self.solved, d)
        if k == 0:
            return None
        window, _, out = self.done[self.solved[k - 1]]
        return self.xp.asarray(window.columns), out

    def at(self, d, method):
        if d not in self.done:
            self.prepare([d])
        return self.done[d][2][method]


def walk_forward_backtest(prices, *, timestamps, methods, train_bars: int, rebalance: str = "every",
                          rebalance_bars: int | None = 21, band: float | None = None, holdings: str = "drift",
                          cost_bps: float = 0.0, covariance: str = "ledoit_wolf", ewma_halflife: float = 63.0,
                          periods_per_year: float = 252.0, min_history_bars: int | None = None,
                          max_gap_fraction: float = 0.01, ensemble: str | None = "inverse_volatility",
                          options: OptimiserOptions = OptimiserOptions(), symbols=None) -> PortfolioWalkForward:
    """Walk every method forward: re-estimate at each rebalance, hold out of sample, pay costs.

    Parameters
    ----------
    prices : array of shape (n_bars, n_symbols)
        Closes (NaN where a symbol has no bar), NumPy or CuPy.
    timestamps : pandas.DatetimeIndex of length n_bars
    methods : sequence of str
        Portfolio methods (the fallback chain's, plus ``"black_litterman"``).
    train_bars : int
        Returns in each estimation window (bars before the rebalance row).
    rebalance : {"every", "month_end", "quarter_end", "band"}
    rebalance_bars : int, optional
        Bars between rebalances, for ``"every"``.
    band : float, optional
        Absolute weight drift that triggers a rebalance, for ``"band"`` (``drift`` holdings).
    holdings : {"drift", "constant"}
    cost_bps : float, default 0
        Basis points of the value traded.
    covariance : {"sample", "ledoit_wolf", "oas", "ewma", "denoised"}
    ewma_halflife : float, default 63
        Bars, for ``"ewma"``.
    periods_per_year : float, default 252
        Annualises the moments; cash earns ``risk_free_rate / periods_per_year`` a bar.
    min_history_bars : int, optional
        Returns a symbol needs in a window; default ``train_bars``.
    max_gap_fraction : float, default 0.01
    ensemble : {"equal", "inverse_volatility", "adaptive"} or None
        How the ``"ensemble"`` series mixes the methods (None, or fewer than two methods: no
        ensemble).
    options : OptimiserOptions
    symbols : sequence of str, optional
        Column names (views refer to them).

    Returns
    -------
    PortfolioWalkForward
    """
    xp = namespace(prices)
    p = xp.asarray(prices)
    n_bars = p.shape[0]
    if train_bars < 2:
        raise ValueError(f"train_bars must be at least 2, got {train_bars}")
    if rebalance == "band" and band is None:
        raise ValueError("rebalance 'band' needs band")
    timestamps = pd.DatetimeIndex(timestamps)
    if len(timestamps) != n_bars:
        raise ValueError(f"{len(timestamps)} timestamps for {n_bars} bars")
    r = simple_returns(p)
    hold = holding_returns(p)
    first = train_bars + 1  # row 0 has no return: the first window is rows 1..train_bars
    rows = rebalance_rows(timestamps, rule=rebalance, first_row=first, rebalance_bars=rebalance_bars)
    methods = tuple(methods)
    solve = methods + (("equal_weight",) if "equal_weight" not in methods else ())
    targets = _Targets(r, methods=solve, symbols=symbols, train_bars=train_bars,
                       min_history_bars=train_bars if min_history_bars is None else min_history_bars,
                       max_gap_fraction=max_gap_fraction, covariance=covariance, ewma_halflife=ewma_halflife,
                       periods_per_year=periods_per_year, options=options)
    if rebalance != "band":
        targets.prepare(rows)
    sim = dict(holdings=holdings, cost_bps=cost_bps, cash_return=options.risk_free_rate / periods_per_year,
               band=band if rebalance == "band" else None)
    accounts = {}
    for m in solve:
        accounts[m] = simulate_holdings(hold, target_at=lambda d, m=m: targets.at(d, m), rows=rows, **sim)
    series = list(methods)
    if ensemble is not None and len(methods) >= 2:
        accounts["ensemble"] = simulate_holdings(
            hold, rows=rows, **sim,
            target_at=lambda d: _ensemble_target(d, targets, accounts, methods, ensemble, train_bars=train_bars,
                                                 periods_per_year=periods_per_year, xp=xp))
        series.append("ensemble")
    if "equal_weight" not in methods:
        series.append("equal_weight")
    if len(rows):
        accounts["buy_and_hold"] = simulate_holdings(hold, target_at=lambda d: targets.at(d, "equal_weight"),
                                                     rows=rows[:1], holdings="drift", cost_bps=cost_bps,
                                                     cash_return=sim["cash_return"])
    else:
        accounts["buy_and_hold"] = simulate_holdings(hold, target_at=None, rows=[], holdings="drift")
    series.append("buy_and_hold")
    weights = []
    for s in series:
        acc = accounts[s]
        for d, w in zip(acc.rows, acc.targets):
            window = targets.done[int(d)][0] if int(d) in targets.done else None
            cols = window.columns if window is not None else np.zeros(0, dtype=np.int64)
            weights.append({"row": int(d), "series": s, "columns": cols, "weights": w[xp.asarray(cols)]})
    weights.sort(key=lambda rec: (rec["row"], series.index(rec["series"])))
    chains = sorted(targets.chains, key=lambda c: (c["row"], solve.index(c["method"]), c["step"]))
    chains = [c for c in chains if c["method"] in methods]
    def columns(attr):
        return xp.stack([getattr(accounts[s], attr) for s in series], axis=1)

    return PortfolioWalkForward(tuple(series), columns("returns"), columns("turnover"), columns("cost"),
                             {s: accounts[s].rows for s in series}, weights, chains, first)


def _ensemble_target(d, targets: _Targets, accounts: dict, methods, mixing: str, *, train_bars, periods_per_year,
                     xp):
    """The ensemble's targets at row ``d``: the methods' targets there, mixed (see the module)."""
    targets.prepare([d])  # a no-op when the methods' targets at d are estimated already
    window, cov, per_method = targets.done[d]
    if cov is None:
        return xp.zeros(targets.r.shape[1], dtype=xp.float64)
    cols = xp.asarray(window.columns)
    component = xp.stack([per_method[m][cols] / xp.sum(per_method[m][cols]) for m in methods])
    k = len(methods)
    try:
        if mixing == "adaptive":
            realised = xp.stack([accounts[m].returns[:d] for m in methods], axis=1)
            realised = realised[xp.isfinite(realised).all(axis=1)][-train_bars:]
            mix = (xp.full(k, 1.0 / k) if realised.shape[0] < 2 else
                   ensemble_mixing_weights(xp.eye(k), method="adaptive", returns=realised,
                                           periods_per_year=periods_per_year))
        else:
            mix = ensemble_mixing_weights(component, method=mixing,
                                          covariance=cov if mixing == "inverse_volatility" else None,
                                          periods_per_year=periods_per_year)
    except (ValueError, OptimisationError):
        mix = xp.full(k, 1.0 / k)  # e.g. a component with zero volatility: the equal mix
    full = xp.zeros(targets.r.shape[1], dtype=xp.float64)
    full[cols] = mix @ component
    return full
