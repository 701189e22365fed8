"""The work a run plans, estimated from its sizes before it starts, held to the machine's means.

Each pipeline calls its check after loading, when the data's sizes are known, and before the
stages that allocate:

- :func:`check_daily`, per partition: the indicator panels (timestamps x symbols each) and the
  report's rows x columns frame;
- :func:`check_backtest`: the grid's bookkeeping (each combination's metrics for every symbol,
  the portfolio's bars x combinations sums and counts), the engine's chunk and the report's
  metrics table;
- :func:`check_portfolio`: the covariance and the optimisers (symbols^2 matrices, symbols^3
  factorisations), the month-end and the regimes' rolling correlations (symbols^2 a date), the
  Monte Carlo paths, and the time of the KMeans restarts and the Monte Carlo draws; with
  ``portfolio.walk_forward``, its stacked windows and covariances and its solves
  (:func:`walk_forward_needs`);
- :func:`check_models`: the feature array, the predictions, the knn neighbours, the forests and
  the time of their trees.

Means: ``budget.memory_fraction`` of the memory available when the check runs
(``psutil.virtual_memory().available``) and ``budget.max_hours``. Over them a
:class:`BudgetError` (a ``ValueError``: exit status 2 on the command line) names the setting or
the data's size at fault, the estimate and how it follows from the sizes, and the means, in one
line, before anything is allocated.

The memory estimates count what a stage holds at its peak (8-byte values; frames and their
parquet copies), checked against tracemalloc's peak on small runs (``tests/pipelines/
test_budget.py``): within a small factor, not exact. The time estimates are lower bounds:
operation counts at rates above what one machine reaches, so only work that is surely too long
is refused.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from alphapulse.pipelines.config.schema import BudgetConfig, Config
from alphapulse.pipelines.errors import BudgetError

log = logging.getLogger(__name__)

ITEM = 8
"""Bytes a value: estimates assume float64 (and int64 indices); float32 runs need less."""

FLOPS = 2e11
"""Floating-point operations a second assumed for dense linear algebra and simulation: above a
many-core CPU's BLAS, so a time estimate is a lower bound."""
DRAWS = 2e9
"""Random numbers a second assumed for the Monte Carlo (a CPU core draws about 1e8)."""
TREE_UNITS = 2e9
"""Forest work units (sampled rows x features tried x depth) a second; one core does ~1e8."""
KMEANS_FIT_S = 2e-4
"""Seconds of one KMeans restart at the least (scikit-learn's fixed cost is about 1 ms)."""
TREE_FIT_S = 1e-4
"""Seconds of one tree's fit at the least, however few its rows (scikit-learn's is about 1 ms)."""

KNN_BLOCK = 50_000_000
"""Distances a per-symbol knn computes at once (``alphapulse.transforms.models.batched.fit_knn``'s default)."""
MC_CHUNK_BYTES = 128 * 2**20
"""The Monte Carlo's per-chunk draws (``alphapulse.transforms.montecarlo``'s default chunk)."""
CORR_CHUNK_BYTES = 256 * 2**20
"""The rolling correlation's per-chunk working memory (``alphapulse.transforms.correlation``'s default)."""


@dataclass(frozen=True)
class Need:
    """What one part of a run plans.

    what : the setting (``key = value``) or data size it follows from, as the message starts
    bytes : memory held at the part's peak
    formula : how ``bytes`` follows from the sizes
    seconds, time_formula : a lower bound of its time, and how it follows (0: not estimated)
    plural : ``what`` takes "need" rather than "needs"
    """

    what: str
    bytes: float = 0.0
    formula: str = ""
    seconds: float = 0.0
    time_formula: str = ""
    plural: bool = False


def available_bytes() -> int:
    """Memory available to a new allocation now (psutil's ``available``: free plus reclaimable)."""
    import psutil

    return int(psutil.virtual_memory().available)


def size_text(nbytes: float) -> str:
    """``nbytes`` in the largest binary unit that keeps it at least 1: "21 GiB", "1.5 MiB"."""
    value, unit = float(nbytes), "B"
    for next_unit in ("KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if value < 1024:
            break
        value, unit = value / 1024, next_unit
    return f"{value:.1f} {unit}" if value < 10 else f"{value:,.0f} {unit}"


def duration_text(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


def check(needs: list[Need], budget: BudgetConfig, *, pipeline: str) -> None:
    """Raise :class:`BudgetError` when the largest need's memory exceeds ``budget.memory_fraction``
    of the available memory, or the needs' time together exceeds ``budget.max_hours``."""
    needs = [n for n in needs if n.bytes > 0 or n.seconds > 0]
    if not needs:
        return
    available = available_bytes()
    allowed = budget.memory_fraction * available
    peak = max(needs, key=lambda n: n.bytes)
    if peak.bytes > allowed:
        verb = "need" if peak.plural else "needs"
        raise BudgetError(f"{peak.what} {verb} ~{size_text(peak.bytes)} ({peak.formula}); "
                          f"this machine has {size_text(available)} available, of which budget.memory_fraction "
                          f"{budget.memory_fraction:g} allows {size_text(allowed)}")
    total = sum(n.seconds for n in needs)
    if total > budget.max_hours * 3600:
        long = max(needs, key=lambda n: n.seconds)
        rest = f", ~{duration_text(total)} in all" if total > 1.5 * long.seconds else ""
        raise BudgetError(f"{long.what} plans at least ~{duration_text(long.seconds)} ({long.time_formula}{rest}); "
                          f"budget.max_hours is {budget.max_hours:g}")
    log.info("%s budget: peak ~%s (%s) of %s allowed%s", pipeline, size_text(peak.bytes), peak.what,
             size_text(allowed), f"; long parts at least ~{duration_text(total)}" if total else "")


def _count(frame, column: str) -> int:
    return int(frame[column].nunique())


# ---------------------------------------------------------------------------------------------
# Daily
# ---------------------------------------------------------------------------------------------


def daily_needs(*, rows: int, timestamps: int, symbols: int, inputs: int, outputs: int,
                signal_series: int = 0) -> list[Need]:
    """One partition: ``inputs`` price panels and ``outputs`` indicator panels (timestamps x
    symbols each, three more for an indicator's temporaries), and the rows x (outputs + 2) frame
    three times (built, sorted for the latest rows, and converted for parquet). Then the signals
    and breadth (``alphapulse.pipelines.daily.signals``), one parameter set's strategy at a time:
    the five price panels and their compacted copies, the row index, the set's
    ``signal_series`` indicator panels, the positions panel, breadth's four indicators and three
    temporaries."""
    cells = timestamps * symbols
    nbytes = ITEM * (cells * (inputs + outputs + 3) + 3 * rows * (outputs + 2))
    needs = [Need(f"indicators: {outputs:,} output columns x {rows:,} bars ({timestamps:,} timestamps x {symbols:,} "
                  f"symbols)", nbytes, "(inputs + columns + 3) panels of timestamps x symbols and 3 copies of the "
                  "bars x columns frame, x 8 B; fewer indicators, or a smaller data.bars_per_partition", plural=True)]
    panels = 18 + max(signal_series, 2)
    needs.append(Need(f"signals and breadth: {panels} panels of {timestamps:,} timestamps x {symbols:,} symbols",
                      ITEM * cells * panels, "(18 + the largest strategy's indicator series) panels x 8 B; fewer "
                      "indicator series in one signals strategy, or a smaller data.bars_per_partition", plural=True))
    return needs


def check_daily(config: Config, bars, signals=None) -> None:
    """:func:`daily_needs` of a loaded partition (``bars``: its long frame) against the means;
    ``signals``: the run's resolved signals (``alphapulse.pipelines.daily.signals.SignalsRequest``)."""
    from alphapulse.transforms.indicators.registry import INDICATORS

    specs = config.indicator_specs()
    inputs = len({i for s in specs for i in INDICATORS[s.name].inputs} | {"close"})
    series = max((len(s.plan.bank) for s in signals.sets), default=0) if signals is not None else 0
    check(daily_needs(rows=len(bars), timestamps=_count(bars, "timestamp"), symbols=_count(bars, "symbol"),
                      inputs=inputs, outputs=sum(len(s.column_names()) for s in specs), signal_series=series),
          config.budget, pipeline="daily")


# ---------------------------------------------------------------------------------------------
# Backtest
# ---------------------------------------------------------------------------------------------


def backtest_needs(*, bars: int, symbols: int, combinations: int, parameters: int, metrics: int,
                   batch_elements: int, windows: int = 0) -> list[Need]:
    """The sweep's bookkeeping at its peak, or the report's, whichever is larger.

    Held through the run: ``metrics`` (n_combinations, n_symbols) arrays and the portfolio's
    returns, counts and sums (n_bars, n_combinations). During the sweep, a task's own copies of
    those, its fold group's sums on the host, and the portfolio metrics' temporaries (about six
    bars x combinations arrays), with the engine's chunk (``batch_elements`` values, three
    buffers). In the report, the metrics table: a row per (combination, symbol) of parameters
    and metrics, built and converted for parquet. Walk-forward: ``metrics`` arrays per window."""
    c, t, s = combinations, bars, symbols
    held = ITEM * (metrics * c * s + 3 * t * c)
    sweep = held + ITEM * (metrics * c * s + 6 * t * c) + 3 * ITEM * min(batch_elements, t * s * c)
    report = held + 2 * ITEM * c * s * (3 + parameters + metrics)
    walk = held + 2 * ITEM * windows * c * s * metrics
    nbytes = max(sweep, report, walk)
    if nbytes == sweep:
        formula = (f"combinations x ({metrics} metrics x 2 x symbols + 9 x bars) x 8 B of bookkeeping, with the "
                   f"engine's chunk")
    elif nbytes == report:
        formula = f"the report's combinations x symbols rows of {3 + parameters + metrics} columns, twice, x 8 B"
    else:
        formula = f"{windows} walk-forward windows x combinations x symbols x {metrics} metrics x 2 x 8 B"
    return [Need(f"backtest.grid: {c:,} combinations x {t:,} bars x {s:,} symbols", nbytes,
                 formula + "; fewer combinations (backtest.random_sample) or symbols", plural=True)]


def check_backtest(config: Config, *, bars: int, symbols: int, combinations: int, parameters: int, metrics: int,
                   windows: int = 0) -> None:
    check(backtest_needs(bars=bars, symbols=symbols, combinations=combinations, parameters=parameters,
                         metrics=metrics, batch_elements=config.gpu.operations.batch_size, windows=windows),
          config.budget, pipeline="backtest")


# ---------------------------------------------------------------------------------------------
# Portfolio
# ---------------------------------------------------------------------------------------------

OPTIMISER_MATRICES = 10
"""Symbols x symbols matrices the covariance estimators and the optimisers hold at once (the
covariance, its annualised and posterior copies, the interior-point solver's system, its factor
and products)."""
OPTIMISER_ITERATIONS = 30
"""Factorisations an optimiser needs at the least (interior-point iterations, each one Cholesky)."""


def portfolio_needs(pc, *, bars: int, symbols: int, qualified: int, month_ends: int) -> list[Need]:
    """The portfolio pipeline's parts (``pc``: the ``portfolio:`` block).

    - covariance and optimisers: :data:`OPTIMISER_MATRICES` qualified^2 matrices; time: each
      method's factorisations, qualified^3 / 3 flops each;
    - month-end correlation: (month ends, symbols, symbols) and its upper triangle as a long
      frame (date, two names, rho: 32 B a pair, twice for parquet), over every symbol;
    - regimes: the average pairwise correlation of every bar from ``corr_window_bars`` on, a
      (dates, symbols, symbols) array with a mask and a masked copy; time: ``n_init`` restarts;
    - Monte Carlo: the paths' returns, losses, sorted copy and per-level masks; one chunk of
      draws (at least one path: horizon x qualified); time: the draws and their matrix product.
    """
    n, s = qualified, symbols
    panel = ITEM * 4 * bars * s
    held = ITEM * 2 * n * n + 32 * month_ends * s * (s - 1) / 2
    out = [Need(f"portfolio: {s:,} symbols ({n:,} qualifying)",
                panel + ITEM * OPTIMISER_MATRICES * n * n,
                f"qualifying^2 x {OPTIMISER_MATRICES} matrices x 8 B for the covariance and optimisers; fewer symbols",
                len(pc.methods) * OPTIMISER_ITERATIONS * n ** 3 / 3 / FLOPS,
                f"{len(pc.methods)} methods x {OPTIMISER_ITERATIONS} factorisations x qualifying^3 / 3 at "
                f"{FLOPS:.0e} flop/s", plural=True)]
    out.append(Need(f"portfolio: {s:,} symbols x {month_ends:,} month ends (correlation_lookback_bars "
                    f"{pc.correlation_lookback_bars})",
                    panel + ITEM * 2 * n * n + ITEM * month_ends * s * s + 2 * 40 * month_ends * s * (s - 1) / 2
                    + CORR_CHUNK_BYTES,
                    "month ends x symbols^2 x 8 B, and the upper triangle as a frame of 40 B a pair, twice; "
                    "fewer symbols", plural=True))
    rc = pc.regimes
    dates = max(0, bars - rc.corr_window_bars + 1)
    per_init = KMEANS_FIT_S + 300 * dates * rc.n_clusters * 5 * 3 / FLOPS  # up to 300 Lloyd iterations
    out.append(Need(f"portfolio: {s:,} symbols x {dates:,} dates of the regimes' correlations "
                    f"(regimes.corr_window_bars {rc.corr_window_bars})",
                    panel + held + ITEM * 2.2 * dates * s * s + CORR_CHUNK_BYTES,
                    "dates x symbols^2 x 8 B x 2.2 (the matrices, a mask and a masked copy); fewer symbols",
                    plural=True))
    out.append(Need(f"portfolio.regimes.n_init = {rc.n_init}", seconds=rc.n_init * per_init,
                    time_formula=f"n_init x {KMEANS_FIT_S * 1e3:g} ms a KMeans fit at the least"))
    mc = pc.monte_carlo
    levels, horizon, draws = len(mc.levels), max(mc.horizons_bars), sum(mc.horizons_bars) * len(mc.models)
    chunk = 4 * max(MC_CHUNK_BYTES, ITEM * horizon * n)
    out.append(Need(f"portfolio.monte_carlo.n_paths = {mc.n_paths}",
                    panel + held + ITEM * mc.n_paths * (3 + 2 * levels) + chunk,
                    f"n_paths x (3 + 2 x {levels} levels) x 8 B, and draws of at least one path of "
                    f"{horizon:,} bars x {n:,} assets",
                    mc.n_paths * draws * (n / DRAWS + 2 * n * n / FLOPS),
                    f"n_paths x {draws:,} bars over the horizons and models x ({n:,} draws at {DRAWS:.0e}/s + "
                    f"{n:,}^2 x 2 flops)"))
    return out


def check_portfolio(config: Config, *, bars: int, symbols: int, qualified: int, month_ends: int,
                    timestamps=None) -> None:
    needs = portfolio_needs(config.portfolio, bars=bars, symbols=symbols, qualified=qualified, month_ends=month_ends)
    if config.portfolio.walk_forward is not None:
        needs += walk_forward_needs(config.portfolio, bars=bars, symbols=symbols, timestamps=timestamps)
    check(needs, config.budget, pipeline="portfolio")


def walk_forward_dates(wf, *, bars: int, timestamps=None) -> int:
    """The most rebalances ``portfolio.walk_forward`` can make over ``bars`` bars (``band``: one a
    bar at worst; calendar rules: the periods in ``timestamps``, or one a 20 bars without them)."""
    span = max(0, bars - wf.train_bars - 1)
    if wf.rebalance == "every":
        return math.ceil(span / wf.rebalance_bars)
    if wf.rebalance == "band":
        return span
    if timestamps is not None and len(timestamps):
        import pandas as pd

        return int(pd.DatetimeIndex(timestamps).to_period("M" if wf.rebalance == "month_end" else "Q").nunique())
    return math.ceil(span / (20 if wf.rebalance == "month_end" else 60))


def walk_forward_needs(pc, *, bars: int, symbols: int, timestamps=None) -> list[Need]:
    """The portfolio walk-forward (``pc.walk_forward``), over every symbol (each date's universe is
    at most all of them):

    - memory: the stacked estimation windows (dates x train_bars x symbols, twice: the block and
      its centred copy), their covariances (dates x symbols^2, twice: the batch and its
      symmetrised copy), six bars x symbols arrays (prices, returns, holding returns, a block's
      growth and drifted weights, the mask) and the weights table (dates x methods x symbols
      rows of 40 B, twice for parquet);
    - time: every method's factorisations at every date, symbols^3 / 3 flops each.
    """
    wf = pc.walk_forward
    dates = walk_forward_dates(wf, bars=bars, timestamps=timestamps)
    methods = len(pc.methods) + 3  # the ensemble and the two benchmarks
    s = symbols
    memory = ITEM * (2 * dates * wf.train_bars * s + 2 * dates * s * s + 6 * bars * s) + 2 * 40 * dates * methods * s
    return [Need(f"portfolio.walk_forward: {dates:,} rebalances (rebalance {wf.rebalance}) x {s:,} symbols x "
                 f"train_bars {wf.train_bars}", memory,
                 "rebalances x (2 x train_bars x symbols + 2 x symbols^2) x 8 B, and the weights table; "
                 "fewer rebalances, a shorter train_bars or fewer symbols",
                 dates * len(pc.methods) * OPTIMISER_ITERATIONS * s ** 3 / 3 / FLOPS,
                 f"rebalances x {len(pc.methods)} methods x {OPTIMISER_ITERATIONS} factorisations x symbols^3 / 3 "
                 f"at {FLOPS:.0e} flop/s", plural=True)]


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------


def models_needs(mc, *, bars: int, symbols: int, features: int) -> list[Need]:
    """The models pipeline's parts (``mc``: the ``models:`` block), over the most walk-forward
    steps the bars allow.

    - features: the (bars, symbols, features) array, its completeness mask, the indicator panels
      and the ranks' temporaries (about four copies);
    - predictions: one (bars, symbols) array per model and ensemble;
    - knn, per symbol: each test row's ``n_neighbors`` distances, indices and targets (symbols x
      test_bars x k); pooled: the same for all test rows at once;
    - random forest: the training rows twice, and its trees (at most 2 x sampled rows /
      min_samples_leaf, or 2^(depth + 1), nodes of ~100 B each); time: trees x steps x
      sampled rows x features tried x depth;
    - xgboost: the training rows twice; time: the rounds it must boost (all, or
      early_stopping_rounds + 1) x steps x fits x one histogram pass over the rows.
    """
    wf = mc.walk_forward
    purge = mc.purge()
    steps = max(0, math.ceil((bars - wf.train_bars - purge) / wf.test_bars))
    train_rows = bars if wf.expanding else wf.train_bars
    cells = bars * symbols
    base = ITEM * cells * (len(mc.models) + len(mc.ensemble.methods) + 6)
    out = [Need(f"models.features: {features:,} features x {bars:,} bars x {symbols:,} symbols",
                base + ITEM * 4 * cells * features, "bars x symbols x features x 4 copies x 8 B; fewer features",
                plural=True)]
    held = base + ITEM * cells * features
    for i, m in enumerate(mc.models):
        key = f"models.models.{i}"
        if m.kind == "knn":
            test_rows = wf.test_bars * symbols
            # per symbol, distances come in blocks of whole symbols of at most KNN_BLOCK values
            block = min(test_rows * train_rows, max(KNN_BLOCK, wf.test_bars * train_rows))
            out.append(Need(f"{key}.n_neighbors = {m.n_neighbors}",
                            held + 3 * ITEM * (test_rows * m.n_neighbors + block),
                            f"test rows ({wf.test_bars:,} x {symbols:,} symbols) x n_neighbors x 3 x 8 B",
                            steps * test_rows * train_rows * features * 2 / FLOPS,
                            f"{steps} steps x test rows x train rows x features x 2 at {FLOPS:.0e} flop/s"))
        elif m.kind == "random_forest":
            rows = train_rows * symbols
            sampled = max(1, int(rows * m.max_samples))
            tried = max(1, int(features * m.max_features))
            depth = m.max_depth if m.max_depth is not None else max(1, math.ceil(math.log2(max(2, sampled))))
            nodes = min(2 ** min(depth + 1, 62), 2 * sampled // m.min_samples_leaf + 1)
            out.append(Need(f"{key}.n_estimators = {m.n_estimators}",
                            held + 2 * ITEM * rows * features + 100 * m.n_estimators * nodes,
                            f"training rows x features x 2 x 8 B and n_estimators x {nodes:,} nodes x 100 B",
                            m.n_estimators * steps * (TREE_FIT_S + sampled * tried * depth / TREE_UNITS),
                            f"n_estimators x {steps} steps x ({TREE_FIT_S * 1e3:g} ms + {sampled:,} sampled rows x "
                            f"{tried} features x depth {depth} at {TREE_UNITS:.0e}/s) a tree"))
        elif m.kind == "xgboost":
            rows = train_rows * symbols
            fits = 2 if wf.validation_bars else 1  # the validation fit, then the refit
            # at least early_stopping_rounds + 1 rounds when it can stop early, each at least one
            # histogram pass over the rows
            least = m.n_estimators if not (wf.validation_bars and m.early_stopping_rounds) else \
                min(m.n_estimators, m.early_stopping_rounds + 1)
            out.append(Need(f"{key}.n_estimators = {m.n_estimators}",
                            held + 2 * ITEM * rows * features,
                            "training rows x features x 2 x 8 B (the standardised rows and XGBoost's matrix)",
                            least * steps * fits * (TREE_FIT_S + rows * features / TREE_UNITS),
                            f"{least} rounds x {steps} steps x {fits} fits x ({TREE_FIT_S * 1e3:g} ms + "
                            f"{rows:,} rows x {features} features at {TREE_UNITS:.0e}/s) a round"))
        elif m.kind == "logistic":
            out.append(Need(f"{key}.max_iter = {m.max_iter}", 0, "",
                            m.max_iter * steps * train_rows * symbols * features * 4 / FLOPS,
                            f"max_iter x {steps} steps x train rows x features x 4 at {FLOPS:.0e} flop/s"))
    return out


def check_models(config: Config, bars, *, features: int) -> None:
    """:func:`models_needs` of the loaded bars (``bars``: the long frame) against the means."""
    check(models_needs(config.models, bars=_count(bars, "timestamp"), symbols=_count(bars, "symbol"),
                       features=features), config.budget, pipeline="models")
