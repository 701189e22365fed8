"""The portfolio walk-forward (alphapulse.transforms.portfolio.walk_forward, .schedule) against
skfolio's walk-forward, a hand-written account, and its invariants, on the bundled S&P 500 sample.

Oracles and tolerances (float64):

- ``constant`` holdings vs skfolio 1.12's ``cross_val_predict(model, X, cv=WalkForward(test_size=63,
  train_size=252, reduce_test=True))`` (the 40 full-history symbols of data/sp500_sample.parquet):
  the test windows' first and last dates are identical, and so are the per-bar out-of-sample
  returns, within what the weights' agreement allows: a return is ``x @ w`` with ``|x|`` below
  0.2 and 40 assets, so a bar's return is within ``sum|w - v| max|x|`` of skfolio's (asserted bar
  by bar). HRP is closed form: weights and returns to 1e-12 (measured 1e-16). Risk budgeting:
  weights to 1e-8, the optimisers' oracle tolerance against Clarabel at 1e-12. Minimum variance:
  skfolio's Clarabel stops up to 5e-6 from the optimum (weights; our KKT-polished variance is
  lower in every period, by 1e-11 to 4e-9 relative, asserted), so weights and returns to 1e-5
  (measured 2e-6 for returns).
  Where ours differs from skfolio: skfolio drops a last test period shorter than ``test_size``
  unless ``reduce_test=True`` (ours always runs to the last bar); skfolio's default ``purged_size=0``
  is ours (train rows end the bar before the first test bar); skfolio holds constant weights
  within a test period (its ``Portfolio`` returns are ``X_test @ w``), our ``drift`` does not.
- ``drift`` holdings vs a plain loop over bars keeping shares and cash (costs, cash interest, a
  missing bar of a held symbol): to 1e-12 (the loop and the vectorised cumulative products round
  differently, by ~1e-15 a bar).
- batched covariance vs the per-window estimators: 1e-15 relative (the same operations; NumPy
  gives identical bits).
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from alphapulse.transforms import covariance as cm
from alphapulse.transforms.batched_covariance import batched_cov
from alphapulse.transforms.portfolio.schedule import holding_returns, rebalance_rows, simulate_holdings
from alphapulse.transforms.portfolio.walk_forward import OptimiserOptions, View, walk_forward_backtest
from alphapulse.transforms.returns import simple_returns

SKFOLIO_CLARABEL = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}


@pytest.fixture(scope="module")
def full(closes):
    return closes.loc[:, closes.notna().all()]


# ---------------------------------------------------------------------------------------------
# skfolio
# ---------------------------------------------------------------------------------------------

def _skfolio_model(method):
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import HierarchicalRiskParity, MeanRisk, RiskBudgeting
    from skfolio.seriation import HierarchicalSeriation

    if method == "min_variance":
        return MeanRisk(risk_measure=RiskMeasure.VARIANCE, solver_params=SKFOLIO_CLARABEL)
    if method == "risk_parity":
        return RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, solver_params=SKFOLIO_CLARABEL)
    return HierarchicalRiskParity(
        risk_measure=RiskMeasure.VARIANCE,
        seriation_estimator=HierarchicalSeriation(
            hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod.SINGLE),
            optimal_ordering=False))


@pytest.fixture(scope="module")
def ours_constant(full):
    return walk_forward_backtest(full.to_numpy(), timestamps=full.index, methods=["min_variance", "hrp", "risk_parity"],
                                 train_bars=252, rebalance="every", rebalance_bars=63, holdings="constant",
                                 covariance="sample", ensemble=None, symbols=list(full.columns))


@pytest.mark.parametrize("method,tol", [("hrp", 1e-12), ("risk_parity", 1e-8), ("min_variance", 1e-5)])
def test_constant_holdings_equal_skfolio_walk_forward(full, ours_constant, method, tol):
    pytest.importorskip("skfolio")
    from skfolio.model_selection import WalkForward, cross_val_predict

    X = full.pct_change().iloc[1:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Clarabel's "may be inaccurate" at 1e-12
        pred = cross_val_predict(_skfolio_model(method), X, cv=WalkForward(test_size=63, train_size=252,
                                                                           reduce_test=True))
    ours = ours_constant
    rows = ours.rows[method]
    # window boundaries: skfolio's test periods start at our rebalance rows and end the bar before the next
    starts = [p.observations[0] for p in pred.portfolios]
    ends = [p.observations[-1] for p in pred.portfolios]
    assert list(full.index[rows]) == list(pd.DatetimeIndex(starts))
    assert list(full.index[np.r_[rows[1:] - 1, len(full) - 1]]) == list(pd.DatetimeIndex(ends))
    col = ours.series.index(method)
    mine = host(ours.returns)[rows[0]:, col]
    theirs = np.asarray(pred.returns)
    assert mine.shape == theirs.shape
    x = X.to_numpy()
    recs = [w for w in ours.weights if w["series"] == method]
    bound = np.empty_like(mine)  # |x @ (w - v)| <= sum|w - v| max|x|, bar by bar
    for k, (rec, p) in enumerate(zip(recs, pred.portfolios)):
        w, v = host(rec["weights"]), p.weights
        assert np.abs(w - v).max() < tol, (method, k)
        lo, hi = rows[k] - rows[0], (rows[k + 1] if k + 1 < len(rows) else len(full)) - rows[0]
        # plus the rounding of two 40-term dot products of terms below 0.2: 40 x 2.2e-16 x 0.2 each
        bound[lo:hi] = np.abs(w - v).sum() * np.abs(x[rows[k] - 1 + np.arange(hi - lo)]).max(axis=1) + 4e-15
        if method == "min_variance":  # the gap is Clarabel's: our variance is the lower one
            S = np.cov(x[rows[k] - 1 - 252:rows[k] - 1], rowvar=False)
            assert w @ S @ w <= v @ S @ v * (1 + 1e-12)
    diff = np.abs(mine - theirs)
    print(f"{method}: {len(rows)} periods, largest return difference {diff.max():.2e}")
    assert (diff <= bound).all() and diff.max() < tol


# ---------------------------------------------------------------------------------------------
# drift vs a hand-written account
# ---------------------------------------------------------------------------------------------

def _hand_account(prices, rows, targets, *, cost_bps, cash_rate):
    """Shares and cash, bar by bar: the account a broker statement would show."""
    n_bars, n = prices.shape
    last = np.full(n, np.nan)
    shares = np.zeros(n)
    cash = 1.0
    out = np.full(n_bars, np.nan)
    value_before = 1.0
    for t in range(n_bars):
        if t in rows:
            held = np.where(shares != 0, shares * last, 0.0)
            value = held.sum() + cash
            w = targets[rows.index(t)]
            traded = np.abs(w * value - held).sum()
            value -= traded * cost_bps / 1e4
            shares = np.where(w != 0, w * value / np.where(w != 0, last, 1.0), 0.0)
            cash = value * (1.0 - w.sum())
        ok = np.isfinite(prices[t])
        last[ok] = prices[t][ok]
        if t >= rows[0]:
            cash *= 1.0 + cash_rate
            now = np.where(shares != 0, shares * last, 0.0).sum() + cash
            out[t] = now / value_before - 1.0
            value_before = now
    return out


def test_drift_equals_hand_written_account(xp, full):
    prices = full.iloc[:, :5].to_numpy().copy()
    prices[300, 2] = np.nan  # a held symbol misses a bar: carried at its last price
    prices[301:303, 4] = np.nan
    rows = [260, 281, 330, 400]
    rng = np.random.default_rng(3)
    targets = [rng.dirichlet(np.ones(5)) * s for s in (1.0, 0.95, 1.0, 0.9)]  # two hold cash
    hold = holding_returns(device(xp, prices))
    acc = simulate_holdings(hold, target_at=lambda d: device(xp, targets[rows.index(d)]), rows=rows,
                            holdings="drift", cost_bps=25.0, cash_return=0.03 / 252)
    ref = _hand_account(prices, rows, targets, cost_bps=25.0, cash_rate=0.03 / 252)
    got = host(acc.returns)
    assert np.isnan(got[:rows[0]]).all() and np.isfinite(got[rows[0]:]).all()
    diff = np.abs(got[rows[0]:] - ref[rows[0]:]).max()
    print(f"drift vs hand-written account: {diff:.2e}")
    assert diff < 1e-12
    assert host(acc.turnover)[rows[0]] == pytest.approx(1.0, abs=1e-15)
    assert np.allclose(host(acc.cost)[rows], host(acc.turnover)[rows] * 25e-4, rtol=0, atol=1e-18)


def test_walk_forward_drift_equals_hand_written_account(full):
    prices = full.iloc[:, :6].to_numpy()
    res = walk_forward_backtest(prices, timestamps=full.index, methods=["min_variance", "risk_parity"],
                                train_bars=126, rebalance="month_end", holdings="drift", cost_bps=10.0,
                                ensemble="equal", options=OptimiserOptions(risk_free_rate=0.02))
    for s in res.series:
        recs = [w for w in res.weights if w["series"] == s]
        rows = [w["row"] for w in recs]
        targets = []
        for w in recs:
            full_w = np.zeros(6)
            full_w[w["columns"]] = w["weights"]
            targets.append(full_w)
        ref = _hand_account(prices, rows, targets, cost_bps=10.0, cash_rate=0.02 / 252)
        got = res.returns[:, res.series.index(s)]
        assert np.abs(got[rows[0]:] - ref[rows[0]:]).max() < 1e-12, s


def test_constant_holdings_arithmetic(full):
    prices = full.iloc[:, :4].to_numpy()
    r = simple_returns(prices)
    w = [np.array([0.1, 0.2, 0.3, 0.3]), np.array([0.25, 0.25, 0.25, 0.25])]
    acc = simulate_holdings(holding_returns(prices), target_at=lambda d: w[[300, 320].index(d)], rows=[300, 320],
                            holdings="constant", cost_bps=50.0, cash_return=1e-4)
    expect = r[300:] @ w[0] + 0.1 * 1e-4
    expect[20:] = r[320:] @ w[1]
    expect[0] = (1 - 0.9 * 50e-4) * (1 + expect[0]) - 1  # buying in from cash: turnover 0.9
    expect[20] = (1 - 0.3 * 50e-4) * (1 + expect[20]) - 1  # turnover |0.15|+|0.05|+|0.05|+|0.05|
    assert np.abs(acc.returns[300:] - expect).max() < 1e-15


# ---------------------------------------------------------------------------------------------
# schedule and returns
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rule,freq", [("month_end", "M"), ("quarter_end", "Q")])
def test_calendar_rows_open_each_period(full, rule, freq):
    rows = rebalance_rows(full.index, rule=rule, first_row=100)
    period = full.index.to_period(freq)
    firsts = pd.Series(np.arange(len(full)), index=period).groupby(level=0).min().to_numpy()
    assert list(rows) == [int(x) for x in firsts if x >= 100]
    every = rebalance_rows(full.index, rule="every", first_row=253, rebalance_bars=21)
    assert every[0] == 253 and (np.diff(every) == 21).all() and every[-1] + 21 >= len(full)


def test_holding_returns_carry_gaps(xp, closes):
    p = closes.to_numpy()
    h, r = host(holding_returns(device(xp, p))), simple_returns(p)
    both = np.isfinite(r)
    assert np.array_equal(h[both], r[both])  # bit for bit where there is no gap
    q = p[:, :3].copy()
    q[10:13, 1] = np.nan
    hq = host(holding_returns(device(xp, q)))
    assert (hq[10:13, 1] == 0).all() and hq[13, 1] == q[13, 1] / q[9, 1] - 1


def test_batched_cov_equals_per_window(xp, full):
    r = simple_returns(full.to_numpy())[1:]
    stack = np.stack([r[i:i + 252] for i in (0, 63, 126, 500)])
    for est in cm.COVARIANCE_ESTIMATORS:
        got = host(batched_cov(device(xp, stack), estimator=est, periods_per_year=252, halflife=30))
        one = {"sample": cm.sample_cov, "ledoit_wolf": cm.ledoit_wolf_cov, "oas": cm.oas_cov,
               "denoised": cm.denoised_cov}.get(est)
        for b in range(len(stack)):
            ref = host(one(device(xp, stack[b]), periods_per_year=252) if one else
                       cm.ewma_cov(device(xp, stack[b]), halflife=30, periods_per_year=252))
            assert np.abs(got[b] - ref).max() <= 1e-15 * np.abs(ref).max(), est


# ---------------------------------------------------------------------------------------------
# invariants
# ---------------------------------------------------------------------------------------------

METHODS = ["min_variance", "max_sharpe", "hrp", "risk_parity", "black_litterman", "equal_weight"]


def _run(xp, closes, **kw):
    args = dict(timestamps=closes.index, methods=METHODS, train_bars=252, rebalance="every", rebalance_bars=42,
                holdings="drift", cost_bps=5.0, min_history_bars=200, ensemble="adaptive",
                symbols=list(closes.columns),
                options=OptimiserOptions(views=(View("AAPL", 0.2), View("MSFT", 0.05, versus="AMZN"))))
    args.update(kw)
    return walk_forward_backtest(device(xp, closes.to_numpy()), **args)


def test_weights_sum_to_one_and_universe_follows_history(xp, closes):
    res = _run(xp, closes)
    assert res.series == (*METHODS, "ensemble", "buy_and_hold")
    for rec in res.weights:
        w = host(rec["weights"])
        assert abs(w.sum() - 1) < 1e-12 and (w >= -1e-12).all(), (rec["series"], rec["row"])
    # a late listing enters the universe once it has min_history_bars returns in the window
    cols = {rec["row"]: set(rec["columns"]) for rec in res.weights if rec["series"] == "hrp"}
    assert len({len(c) for c in cols.values()}) > 1
    ret = host(res.returns)
    assert np.isnan(ret[:res.first_row]).all() and np.isfinite(ret[res.first_row:]).all()
    assert {c["method"] for c in res.chains} == set(METHODS)


def test_no_look_ahead(xp, closes):
    base = _run(xp, closes, rebalance="band", band=0.02, holdings="drift")
    cut = 700
    moved = closes.copy()
    moved.iloc[cut:] *= np.exp(np.random.default_rng(0).normal(0, 0.05, moved.iloc[cut:].shape))
    after = _run(xp, moved, rebalance="band", band=0.02, holdings="drift")
    a = [r for r in base.weights if r["row"] <= cut]
    b = [r for r in after.weights if r["row"] <= cut]
    assert len(a) == len(b) > 10
    for x, y in zip(a, b):
        assert (x["row"], x["series"]) == (y["row"], y["series"])
        assert np.array_equal(host(x["weights"]), host(y["weights"]))
    assert np.array_equal(host(base.returns)[:cut], host(after.returns)[:cut], equal_nan=True)
    assert not np.array_equal(host(base.returns)[cut:], host(after.returns)[cut:], equal_nan=True)


def test_rerun_is_byte_identical(closes):
    a, b = _run(np, closes, rebalance="month_end"), _run(np, closes, rebalance="month_end")
    for attr in ("returns", "turnover", "cost"):
        assert getattr(a, attr).tobytes() == getattr(b, attr).tobytes()
    assert all(x["weights"].tobytes() == y["weights"].tobytes() for x, y in zip(a.weights, b.weights))


def test_band_rebalances_only_on_a_breach(full):
    prices = full.iloc[:, :8].to_numpy()
    res = walk_forward_backtest(prices, timestamps=full.index, methods=["min_variance"], train_bars=252,
                                rebalance="band", band=0.03, holdings="drift", ensemble=None)
    rows = res.rows["min_variance"]
    assert len(rows) > 2
    r = holding_returns(prices)
    recs = [w for w in res.weights if w["series"] == "min_variance"]
    for k, rec in enumerate(recs):
        target = np.zeros(8)
        target[rec["columns"]] = rec["weights"]
        end = rows[k + 1] if k + 1 < len(rows) else len(prices)
        growth = np.cumprod(1 + r[rows[k]:end], axis=0) * target
        drift = np.abs(growth / growth.sum(axis=1, keepdims=True) - target).max(axis=1)
        assert (drift[:-1] <= 0.03).all()  # no earlier breach
        if k + 1 < len(rows):
            assert drift[-1] > 0.03  # the bar before the rebalance breached


def test_adaptive_ensemble_uses_only_realised_returns(closes):
    res = _run(np, closes, rebalance="month_end", ensemble="adaptive")
    ens = [w for w in res.weights if w["series"] == "ensemble"]
    first = {w["series"]: w for w in res.weights if w["row"] == ens[0]["row"]}
    # no out-of-sample returns before the first date: the equal mix of the methods
    mix = np.mean([first[m]["weights"] / first[m]["weights"].sum() for m in METHODS], axis=0)
    assert np.abs(ens[0]["weights"] - mix).max() < 1e-15
    assert any(np.abs(e["weights"] - np.mean([w["weights"] for w in res.weights
                                              if w["row"] == e["row"] and w["series"] in METHODS], axis=0)).max()
               > 1e-6 for e in ens[1:])
