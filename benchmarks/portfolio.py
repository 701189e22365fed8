"""Risk and portfolio benchmarks: AlphaPulse against PyPortfolioOpt and skfolio, one process.

    python benchmarks/portfolio.py                      # every section
    python benchmarks/portfolio.py --section portfolio [--repeat 3] [--blas-threads 1]
    python benchmarks/portfolio.py --section rolling_correlation [--pandas-rolling]
    python benchmarks/portfolio.py --section covariance
    python benchmarks/portfolio.py --section walk_forward [--wf-symbols 470] [--repeat 1]

Sections (``--section``):

- ``rolling_correlation``: the correlation matrix of the 470 full-history symbols' daily simple
  returns over the last 250 returns at every month end with a full window (49 dates), by

  (a) AlphaPulse ``alphapulse.transforms.correlation.rolling_corr`` (batched window products), float64;
  (b) pandas, a loop of ``df.iloc[t - 249:t + 1].corr()`` over the dates;
  (c) pandas ``df.rolling(250).corr()`` (every row's matrix; the month ends picked out): about
      80-150 s and about 6 GB here, so it runs only with ``--pandas-rolling`` (once).

  (a) is checked against (b) (and (c)) first; (a) is timed best of ``max(10, --repeat)``, (b) best
  of ``--repeat``; peak memory of one run of (a) and (b) by ``tracemalloc`` (NumPy's and pandas'
  buffers), of (c) as the process's peak resident set size.
- ``covariance``: Ledoit-Wolf on the same 470 x 1,258 returns, ``alphapulse.transforms.covariance.ledoit_wolf_cov``
  vs ``sklearn.covariance.LedoitWolf().fit``; also OAS vs sklearn's ``OAS`` and Marcenko-Pastur
  denoising vs skfolio's ``DenoiseCovariance`` (its kernel density fit is slow: best of 1).
- ``portfolio``: the optimiser set on the S&P 500 file's 470 full-history symbols (daily simple
  returns of closes, 1,258 observations): Ledoit-Wolf covariance, HRP (single linkage),
  minimum variance, maximum Sharpe (risk-free rate 0), risk parity (equal risk contributions),
  long-only, fully invested, done by

  (a) AlphaPulse on the CPU: ``alphapulse.transforms.covariance.ledoit_wolf_cov``,
      ``alphapulse.transforms.portfolio.hrp.hrp_weights``,
      ``alphapulse.transforms.portfolio.mean_variance.min_variance_weights`` / ``max_sharpe_weights``,
      ``alphapulse.transforms.portfolio.risk_budgeting.risk_budget_weights``;
  (b) PyPortfolioOpt 1.6: ``risk_models.CovarianceShrinkage(prices).ledoit_wolf()``,
      ``HRPOpt(cov_matrix=...)``, ``EfficientFrontier.min_volatility`` and ``max_sharpe``. Its
      default solver (OSQP) stops ``max_sharpe`` at this size with status ``user_limit``, so
      max-Sharpe runs with Clarabel (its other installed QP solver; the default-solver attempt is
      timed and reported apart). PyPortfolioOpt has no risk parity: its set has four steps;
  (c) skfolio 1.12: ``EmpiricalPrior(covariance_estimator=LedoitWolf())`` as the prior of
      ``HierarchicalRiskParity`` (single linkage, no optimal leaf ordering: the comparable
      setting), ``MeanRisk`` (minimise variance; maximise the Sharpe ratio) and ``RiskBudgeting``
      (variance), each ``fit`` on the returns (each fit re-estimates its prior, as skfolio's
      estimators do).

  Every step is timed best of ``--repeat`` rounds after a warm-up run; a round runs every step
  of every library once (interleaved, so that background load on a shared machine hits all
  libraries alike); the set time is the sum of the steps' best times. Before timing, the
  script reports how far each peer's weights are from AlphaPulse's (largest absolute
  difference; with the peers' default solver tolerances).

- ``walk_forward``: the portfolio walk-forward on the same 470 full-history symbols (the first
  ``--wf-symbols`` of them; smoke runs use a few): trailing 252-return Ledoit-Wolf windows,
  rebalanced at each month end (about 48 dates over the file's five years), min-variance,
  max-Sharpe, HRP (single linkage) and risk parity, weights held constant within each month (the
  convention both libraries share), by

  (a) AlphaPulse on the CPU: ``alphapulse.transforms.portfolio.walk_forward.walk_forward_backtest``
      (its covariances batched over the dates; it also runs the equal-weight and buy-and-hold
      benchmarks);
  (b) skfolio 1.12: ``cross_val_predict`` of each model (the ``portfolio`` section's models, each
      with ``EmpiricalPrior(covariance_estimator=LedoitWolf())``) over the same train/test
      splits (given as index pairs, so the windows are identical; ``WalkForward(freq="MS")``
      counts its training length in months, not bars).

  Before timing, the largest difference between the two libraries' out-of-sample returns per
  method is printed; then each side's whole walk-forward, best of ``--repeat``, and the ratio.
  The check is not an oracle (tests/transforms/portfolio/test_walk_forward.py is, with the
  sample covariance): skfolio's HRP clusters on the sample correlation of the returns
  (``PearsonDistance``) and takes only the variances from the Ledoit-Wolf prior, ours clusters
  on the Ledoit-Wolf matrix's correlation, so HRP differs by ~1e-3; its Clarabel runs at its
  default tolerances here (min-variance and max-Sharpe ~1e-5).

Results are recorded in docs/benchmarks.md ("Risk and portfolios").
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import LoadGuard  # benchmarks/ is the script folder, first on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SP500 = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"


def best_of(fn, repeat):
    """(best seconds, last result) over ``repeat`` runs after one warm-up run."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def timed(fn):
    """Seconds one call of ``fn`` takes."""
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def full_history_prices(path: Path) -> pd.DataFrame:
    """Closes (dates x symbols) of the symbols with a close on every date."""
    raw = pd.read_csv(path, usecols=["date", "close", "Name"])
    wide = raw.pivot(index="date", columns="Name", values="close").sort_index()
    return wide.loc[:, wide.notna().all()]


# ---------------------------------------------------------------------------------------------
# Section: portfolio optimisers
# ---------------------------------------------------------------------------------------------

def alphapulse_steps(returns: np.ndarray):
    from alphapulse.transforms.covariance import ledoit_wolf_cov
    from alphapulse.transforms.portfolio.hrp import hrp_weights
    from alphapulse.transforms.portfolio.mean_variance import max_sharpe_weights, min_variance_weights
    from alphapulse.transforms.portfolio.risk_budgeting import risk_budget_weights

    mu = returns.mean(axis=0) * 252
    state = {}

    def lw():
        state["cov"] = ledoit_wolf_cov(returns, periods_per_year=252)
        return state["cov"]

    lw()
    return {
        "ledoit_wolf": lw,
        "hrp": lambda: hrp_weights(state["cov"], linkage_method="single"),
        "min_variance": lambda: min_variance_weights(state["cov"]),
        "max_sharpe": lambda: max_sharpe_weights(mu, state["cov"]),
        "risk_parity": lambda: risk_budget_weights(state["cov"]),
    }


def pypfopt_steps(prices: pd.DataFrame, returns: pd.DataFrame):
    from pypfopt import EfficientFrontier, HRPOpt, risk_models

    mu = returns.mean() * 252
    state = {}

    def lw():
        state["cov"] = risk_models.CovarianceShrinkage(prices).ledoit_wolf()
        return state["cov"]

    def hrp():
        h = HRPOpt(cov_matrix=state["cov"])
        h.optimize("single")
        return np.asarray(h.weights)

    def ef(objective, solver=None):
        def run():
            e = EfficientFrontier(mu, state["cov"], solver=solver)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                getattr(e, objective)()
            return np.asarray(e.weights)
        return run

    lw()
    return {"ledoit_wolf": lw, "hrp": hrp, "min_variance": ef("min_volatility"),
            "max_sharpe": ef("max_sharpe", solver="CLARABEL")}, ef("max_sharpe")


def skfolio_steps(returns: np.ndarray):
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.measures import RiskMeasure
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction, RiskBudgeting
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    def prior():
        return EmpiricalPrior(covariance_estimator=LedoitWolf())

    def fit(make):
        def run():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return make().fit(returns).weights_
        return run

    def lw():
        return prior().fit(returns).return_distribution_.covariance

    hrp = fit(lambda: HierarchicalRiskParity(
        risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior(),
        seriation_estimator=HierarchicalSeriation(
            hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.SINGLE),
            optimal_ordering=False)))
    return {
        "ledoit_wolf": lw,
        "hrp": hrp,
        "min_variance": fit(lambda: MeanRisk(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior(),
                                             objective_function=ObjectiveFunction.MINIMIZE_RISK)),
        "max_sharpe": fit(lambda: MeanRisk(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior(),
                                           objective_function=ObjectiveFunction.MAXIMIZE_RATIO)),
        "risk_parity": fit(lambda: RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior())),
    }


def portfolio_section(args) -> None:
    if not SP500.exists():
        print(f"portfolio: skipped, the S&P 500 file is not at {SP500}")
        return
    prices = full_history_prices(SP500)
    returns_df = prices.pct_change().iloc[1:]
    returns = np.ascontiguousarray(returns_df.to_numpy())
    print(f"portfolio: {returns.shape[1]} full-history symbols x {returns.shape[0]} daily returns")

    ours = alphapulse_steps(returns)
    peers = {}
    pp, pp_default_max_sharpe = pypfopt_steps(prices, returns_df)
    peers["PyPortfolioOpt"] = pp
    peers["skfolio"] = skfolio_steps(returns)

    # Agreement with AlphaPulse (peers at their default tolerances).
    from alphapulse.transforms.portfolio.hrp import hrp_weights

    ref = {k: f() for k, f in ours.items()}
    cov = ref["ledoit_wolf"]
    print("\nlargest |difference| from AlphaPulse (weights; covariance relative to its largest entry)")
    for name, steps in peers.items():
        row = []
        for step, fn in steps.items():
            got = np.asarray(fn(), dtype=float)
            if step == "ledoit_wolf":
                if name == "skfolio":  # its prior covariance is per period (daily)
                    got = got * 252
                row.append(f"{step} {np.abs(got - cov).max() / np.abs(cov).max():.1e}")
                continue
            mine = ref[step]
            if step == "hrp" and name == "PyPortfolioOpt":  # HRPOpt(cov_matrix) rounds the correlation
                sd = np.sqrt(np.diag(cov))
                mine = hrp_weights(cov, correlation=np.round(cov / np.outer(sd, sd), 6))
            if step == "hrp" and name == "skfolio":  # skfolio clusters on the returns' Pearson correlation
                mine = hrp_weights(cov, correlation=np.corrcoef(returns, rowvar=False))
            row.append(f"{step} {np.abs(got - mine).max():.1e}")
        print(f"  {name}: " + ", ".join(row))
    try:
        pp_default_max_sharpe()
        status = "solved"
    except Exception as e:  # noqa: BLE001 (reported, not raised)
        status = f"failed: {e}"
    t0 = time.perf_counter()
    try:
        pp_default_max_sharpe()
    except Exception:  # noqa: BLE001
        pass
    print(f"  PyPortfolioOpt max_sharpe with its default solver (OSQP): {status} "
          f"({time.perf_counter() - t0:.2f} s)")

    print(f"\nbest of {args.repeat} rounds (after a warm-up run; each round runs every step of every "
          "library once, so background load hits them alike), seconds")
    results = {"AlphaPulse (CPU)": ours, **peers}
    table = {name: {step: float("inf") for step in steps} for name, steps in results.items()}
    for _ in range(args.repeat):
        for name, steps in results.items():
            for step, fn in steps.items():
                table[name][step] = min(table[name][step], best_of(fn, 1)[0] if _ == 0 else timed(fn))
    steps = list(ours)
    header = f"{'':>18}" + "".join(f"{s:>14}" for s in steps) + f"{'set':>10}{'vs ours':>10}"
    print(header)
    total_ours = sum(table["AlphaPulse (CPU)"].values())
    for name, t in table.items():
        total = sum(t.values())
        cells = "".join(f"{t[s]:>14.4f}" if s in t else f"{'n/a':>14}" for s in steps)
        ratio = "" if name.startswith("AlphaPulse") else f"{total / total_ours:>9.1f}x"
        print(f"{name:>18}{cells}{total:>10.3f}{ratio:>10}")
    # Like for like with PyPortfolioOpt, which has no risk parity.
    four = sum(v for k, v in table["AlphaPulse (CPU)"].items() if k != "risk_parity")
    print(f"AlphaPulse without risk parity: {four:.3f} s; PyPortfolioOpt's four steps are "
          f"{sum(table['PyPortfolioOpt'].values()) / four:.1f}x that")


# ---------------------------------------------------------------------------------------------
# Section: rolling correlation
# ---------------------------------------------------------------------------------------------

LOOKBACK = 250


def full_history_returns(path: Path):
    """(dates of the return rows, daily simple returns (n_returns, n_symbols)) of the full-history
    symbols, through ``alphapulse.transforms.returns.simple_returns``."""
    from alphapulse.transforms.returns import simple_returns

    prices = full_history_prices(path)
    returns = simple_returns(prices.to_numpy(dtype=np.float64))[1:]
    return pd.DatetimeIndex(pd.to_datetime(prices.index[1:])), np.ascontiguousarray(returns)


def month_end_rows(dates: pd.DatetimeIndex, lookback: int) -> np.ndarray:
    """Each calendar month's last row whose trailing window of ``lookback`` rows is complete."""
    pos = pd.Series(np.arange(len(dates)), index=dates)
    rows = pos.groupby([dates.year, dates.month]).max().to_numpy()
    return rows[rows >= lookback - 1]


def peak_traced_mib(fn) -> float:
    """Peak traced allocation of one run of ``fn``, MiB (tracemalloc sees NumPy's buffers)."""
    import tracemalloc

    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def rolling_correlation_section(args) -> None:
    import resource

    from alphapulse.transforms.correlation import rolling_corr

    if not SP500.exists():
        print(f"rolling_correlation: skipped, the S&P 500 file is not at {SP500}")
        return
    dates, x = full_history_returns(SP500)
    rows = month_end_rows(dates, LOOKBACK)
    df = pd.DataFrame(x)
    print(f"\nrolling_correlation: {x.shape[1]} full-history symbols x {x.shape[0]} daily returns; "
          f"{len(rows)} month ends, lookback {LOOKBACK}, float64")

    ours = lambda: rolling_corr(x, rows, lookback=LOOKBACK)  # noqa: E731
    loop = lambda: [df.iloc[t - LOOKBACK + 1:t + 1].corr().to_numpy() for t in rows]  # noqa: E731
    got = ours()
    ref = np.stack(loop())
    print(f"  check (a) vs (b): NaN positions identical: {np.array_equal(np.isnan(got), np.isnan(ref))}; "
          f"largest |difference| {np.nanmax(np.abs(got - ref)):.1e}")
    repeat_ours = max(10, args.repeat)
    t_ours = best_of(ours, repeat_ours)[0]
    t_loop = best_of(loop, args.repeat)[0]
    m_ours, m_loop = peak_traced_mib(ours), peak_traced_mib(loop)
    print(f"  (a) AlphaPulse rolling_corr:              {t_ours * 1e3:9.1f} ms  best of {repeat_ours}, "
          f"peak {m_ours:5.0f} MiB (output {got.nbytes / 2**20:.0f} MiB)")
    print(f"  (b) pandas loop of .iloc[window].corr():  {t_loop * 1e3:9.1f} ms  best of {args.repeat}, "
          f"peak {m_loop:5.0f} MiB; {t_loop / t_ours:.1f}x (a)")
    if not args.pandas_rolling:
        print("  (c) pandas rolling(250).corr(): not run (80-150 s and about 6 GB here; add --pandas-rolling)")
        return
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    t0 = time.perf_counter()
    rolled = df.rolling(LOOKBACK).corr()
    picked = np.stack([rolled.loc[t].to_numpy() for t in rows])
    t_rolling = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    print(f"  check (a) vs (c): largest |difference| {np.nanmax(np.abs(got - picked)):.1e}")
    print(f"  (c) pandas rolling(250).corr():           {t_rolling * 1e3:9.1f} ms  one run, process peak RSS "
          f"{peak:.0f} MiB ({before:.0f} MiB before); {t_rolling / t_ours:.1f}x (a)")


# ---------------------------------------------------------------------------------------------
# Section: covariance estimators
# ---------------------------------------------------------------------------------------------

def covariance_section(args) -> None:
    from skfolio.moments import DenoiseCovariance
    from sklearn.covariance import OAS, LedoitWolf

    from alphapulse.transforms.covariance import denoised_cov, ledoit_wolf_cov, oas_cov

    if not SP500.exists():
        print(f"covariance: skipped, the S&P 500 file is not at {SP500}")
        return
    _, x = full_history_returns(SP500)
    print(f"\ncovariance: {x.shape[1]} full-history symbols x {x.shape[0]} daily returns, float64")
    repeat_fast = max(10, args.repeat)
    cases = [("Ledoit-Wolf", ledoit_wolf_cov, lambda: LedoitWolf().fit(x).covariance_, "sklearn LedoitWolf",
              repeat_fast),
             ("OAS", oas_cov, lambda: OAS().fit(x).covariance_, "sklearn OAS", repeat_fast),
             ("denoised", denoised_cov, lambda: DenoiseCovariance().fit(x).covariance_, "skfolio DenoiseCovariance", 1)]
    for name, fn, peer, peer_name, peer_repeat in cases:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t_ours, got = best_of(lambda: fn(x), repeat_fast)
            t_peer, ref = best_of(peer, peer_repeat)
        err = np.abs(got - ref).max() / np.abs(ref).max()
        print(f"  {name:<12} AlphaPulse {t_ours * 1e3:8.1f} ms (best of {repeat_fast}), {peer_name} "
              f"{t_peer * 1e3:8.1f} ms (best of {peer_repeat}): {t_peer / t_ours:.1f}x; "
              f"largest |difference| / largest entry {err:.1e}")


# ---------------------------------------------------------------------------------------------
# Section: portfolio walk-forward
# ---------------------------------------------------------------------------------------------

WF_TRAIN = 252
WF_METHODS = ("min_variance", "max_sharpe", "hrp", "risk_parity")


def walk_forward_section(args) -> None:
    from skfolio.model_selection import cross_val_predict

    from alphapulse.transforms.portfolio.schedule import rebalance_rows
    from alphapulse.transforms.portfolio.walk_forward import walk_forward_backtest

    if not SP500.exists():
        print(f"walk_forward: skipped, the S&P 500 file is not at {SP500}")
        return
    prices = full_history_prices(SP500).iloc[:, :args.wf_symbols]
    dates = pd.DatetimeIndex(prices.index)
    x = prices.pct_change().iloc[1:]
    rows = rebalance_rows(dates, rule="month_end", first_row=WF_TRAIN + 1)
    # skfolio's rows are the return rows (ours minus one): train the 252 before the test, test to the next date
    ends = np.r_[rows[1:], len(dates)]
    splits = [(np.arange(d - 1 - WF_TRAIN, d - 1), np.arange(d - 1, e - 1)) for d, e in zip(rows, ends)]
    print(f"\nwalk_forward: {prices.shape[1]} full-history symbols, {len(rows)} month-end rebalances, "
          f"{WF_TRAIN}-bar Ledoit-Wolf windows, {', '.join(WF_METHODS)}; constant weights within a month")

    def ours():
        return walk_forward_backtest(prices.to_numpy(), timestamps=dates, methods=WF_METHODS, train_bars=WF_TRAIN,
                                     rebalance="month_end", holdings="constant", covariance="ledoit_wolf",
                                     ensemble=None)

    models = {k: v for k, v in _skfolio_models().items() if k in WF_METHODS}

    def theirs():
        out = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, make in models.items():
                out[name] = np.asarray(cross_val_predict(make(), x, cv=splits).returns)
        return out

    got = ours()
    # skfolio compiles nothing, so its checked run is one of its timed ones (it takes minutes here)
    t0 = time.perf_counter()
    ref = theirs()
    t_peer = time.perf_counter() - t0
    for name in WF_METHODS:
        mine = got.returns[rows[0]:, got.series.index(name)]
        print(f"  check {name:<13} largest |return difference| {np.abs(mine - ref[name]).max():.1e}")
    t_ours, _ = best_of(ours, args.repeat)
    for _ in range(args.repeat - 1):
        t_peer = min(t_peer, timed(theirs))
    print(f"  (a) AlphaPulse walk_forward_backtest: {t_ours:8.3f} s (best of {args.repeat})")
    print(f"  (b) skfolio cross_val_predict x {len(models)}: {t_peer:8.3f} s (best of {args.repeat}); "
          f"ratio (b) / (a) {t_peer / t_ours:.1f}x")


def _skfolio_models():
    """Constructors of the ``portfolio`` section's skfolio models (each with a Ledoit-Wolf prior)."""
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.measures import RiskMeasure
    from skfolio.moments import LedoitWolf
    from skfolio.optimization import HierarchicalRiskParity, MeanRisk, ObjectiveFunction, RiskBudgeting
    from skfolio.prior import EmpiricalPrior
    from skfolio.seriation import HierarchicalSeriation

    def prior():
        return EmpiricalPrior(covariance_estimator=LedoitWolf())

    return {
        "hrp": lambda: HierarchicalRiskParity(
            risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior(),
            seriation_estimator=HierarchicalSeriation(
                hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.SINGLE),
                optimal_ordering=False)),
        "min_variance": lambda: MeanRisk(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior(),
                                         objective_function=ObjectiveFunction.MINIMIZE_RISK),
        "max_sharpe": lambda: MeanRisk(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior(),
                                       objective_function=ObjectiveFunction.MAXIMIZE_RATIO),
        "risk_parity": lambda: RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, prior_estimator=prior()),
    }


# ---------------------------------------------------------------------------------------------

SECTIONS = {
    "rolling_correlation": rolling_correlation_section,
    "covariance": covariance_section,
    "portfolio": portfolio_section,
    "walk_forward": walk_forward_section,
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--section", choices=[*SECTIONS, "all"], default="all")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per step after a warm-up run")
    parser.add_argument("--pandas-rolling", action="store_true",
                        help="rolling_correlation: also time pandas rolling(250).corr() (80-150 s, about 6 GB)")
    parser.add_argument("--wf-symbols", type=int, default=470,
                        help="walk_forward: the first N full-history symbols (470 = all; a few for a smoke run)")
    parser.add_argument("--blas-threads", type=int, default=None,
                        help="limit BLAS threads for every library (threadpoolctl); default: as installed")
    args = parser.parse_args(argv)

    import threadpoolctl

    limit = threadpoolctl.threadpool_limits(args.blas_threads, user_api="blas") if args.blas_threads else None
    blas = threadpoolctl.threadpool_info()
    print(f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, NumPy {np.__version__}; "
          f"BLAS threads: {sorted({b['num_threads'] for b in blas if b['user_api'] == 'blas'})}")
    try:
        for name, section in SECTIONS.items():
            if args.section in (name, "all"):
                section(args)
    finally:
        if limit is not None:
            limit.unregister()


if __name__ == "__main__":
    with LoadGuard():
        main()
