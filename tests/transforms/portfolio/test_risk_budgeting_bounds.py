"""Risk budgeting within weight bounds (issue 13, item 5) against skfolio's bounded RiskBudgeting.

skfolio 1.12's problem: minimise ``w' S w`` subject to ``b' log(w) >= 0`` and
``min_w * k <= w <= max_w * k``, ``sum(w) = k`` (weights ``w / k``), solved by Clarabel at 1e-12
gaps. Data: the bundled S&P 500 sample (the 40 symbols with a close on every date) and the FTSE
100 file (the 46 symbols with a full history; skipped when absent), daily simple returns.

Tolerances: weights within 1e-8 absolute of skfolio's (measured: 2e-10 and below; Clarabel's
weights are accurate to its gap tolerance, ours are a Newton point whose QP steps are polished to
their KKT conditions). Independent of skfolio: the bounds hold to rounding, and the free assets'
risk contributions are ``b_i - nu x_i`` for one multiplier ``nu`` (the KKT conditions of the
normalised problem), checked as a straight line through ``b_i / w_i`` against ``(S w)_i`` to
1e-9 relative.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from alphapulse.transforms import portfolio as pf
from tests.transforms.risk_testlib import ftse_closes

skfolio = pytest.importorskip("skfolio")

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sp500_sample.parquet"
CLARABEL = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}


def _full_history_returns(wide: pd.DataFrame) -> np.ndarray:
    wide = wide.loc[:, wide.notna().all()]
    return wide.pct_change().iloc[1:].to_numpy()


@pytest.fixture(scope="module")
def sample_returns():
    raw = pd.read_parquet(SAMPLE)
    return _full_history_returns(raw.pivot(index="date", columns="Name", values="close").sort_index())


@pytest.fixture(scope="module")
def ftse_returns():
    return _full_history_returns(ftse_closes())


def _skfolio(returns, lo, hi, budgets=None):
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import RiskBudgeting

    model = RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, risk_budget=budgets, min_weights=lo, max_weights=hi,
                          solver_params=CLARABEL)
    with warnings.catch_warnings():  # "may be inaccurate" at 1e-12 gaps
        warnings.simplefilter("ignore")
        model.fit(returns)
    return model.weights_, model.prior_estimator_.return_distribution_.covariance


def _assert_bounded_risk_budget(w, S, lo, hi, b):
    """Bounds held; the free assets' ``b_i / w_i`` on one line against ``(S w)_i``."""
    lo, hi = np.broadcast_to(lo, w.shape), np.broadcast_to(hi, w.shape)
    assert abs(w.sum() - 1) < 1e-12 and (w >= lo).all() and (w <= hi).all()
    free = (w > lo + 1e-9) & (w < hi - 1e-9)
    assert free.sum() >= 2
    X = np.c_[(S @ w)[free], np.ones(free.sum())]
    y = b[free] / w[free]
    coef = np.linalg.lstsq(X, y, rcond=None)[0]
    assert coef[0] > 0 and np.abs(X @ coef - y).max() < 1e-9 * np.abs(y).max()


# bounds that bind: minima only, maxima only, both (the unbounded sample solution spans 0.0138-0.0381)
BOUNDS = [(0.02, 1.0), (0.0, 0.03), (0.015, 0.035)]


@pytest.mark.parametrize("lo,hi", BOUNDS)
@pytest.mark.parametrize("budgets", ["equal", "custom"])
def test_bounded_risk_budgeting_equals_skfolio_on_sample(sample_returns, lo, hi, budgets):
    n = sample_returns.shape[1]
    b = None if budgets == "equal" else np.linspace(1.0, 2.0, n)
    theirs, S = _skfolio(sample_returns, lo, hi, b)
    free = pf.risk_budget_weights(S, risk_budgets=b)
    assert free.min() < lo or free.max() > hi  # the bounds bind: the unbounded answer breaks them
    ours = pf.risk_budget_weights(S, risk_budgets=b, min_weights=lo, max_weights=hi)
    assert np.abs(ours - theirs).max() < 1e-8
    _assert_bounded_risk_budget(ours, S, lo, hi, np.full(n, 1 / n) if b is None else b / b.sum())


def test_bounded_risk_budgeting_equals_skfolio_on_ftse_with_per_asset_bounds(ftse_returns):
    n = ftse_returns.shape[1]
    lo = np.where(np.arange(n) % 3 == 0, 0.015, 0.0)
    hi = np.where(np.arange(n) % 2 == 0, 0.025, 0.05)
    theirs, S = _skfolio(ftse_returns, lo, hi)
    free = pf.risk_budget_weights(S)
    assert (free < lo).any() and (free > hi).any()
    ours = pf.risk_budget_weights(S, min_weights=lo, max_weights=hi)
    assert np.abs(ours - theirs).max() < 1e-8
    _assert_bounded_risk_budget(ours, S, lo, hi, np.full(n, 1 / n))


def test_bounds_that_do_not_bind_change_nothing(sample_returns):
    S = np.cov(sample_returns, rowvar=False) * 252
    free = pf.risk_budget_weights(S)
    np.testing.assert_array_equal(pf.risk_budget_weights(S, min_weights=0.005, max_weights=0.05), free)


def test_bounds_that_leave_no_choice_or_no_holding():
    S = np.diag([0.04, 0.09, 0.16])
    np.testing.assert_allclose(pf.risk_budget_weights(S, min_weights=[0.2, 0.3, 0.5]), [0.2, 0.3, 0.5], rtol=1e-15)
    np.testing.assert_allclose(pf.risk_budget_weights(S, max_weights=[0.2, 0.3, 0.5]), [0.2, 0.3, 0.5], rtol=1e-15)
    with pytest.raises(pf.OptimisationError, match="max_weights of asset 1 is 0: risk budgeting holds every asset"):
        pf.risk_budget_weights(S, max_weights=[1.0, 0.0, 1.0])
    with pytest.raises(pf.OptimisationError, match="exclude full investment"):
        pf.risk_budget_weights(S, max_weights=0.3)


def test_fallback_chain_passes_the_bounds_to_risk_parity(sample_returns):
    """The chain used to call risk parity without the bounds: its weights broke max_weights."""
    S = np.cov(sample_returns, rowvar=False) * 252
    res = pf.optimise_with_fallback("risk_parity", covariance=S, max_weights=0.03)
    assert res.method == "risk_parity" and not res.fell_back
    assert res.weights.max() <= 0.03 and abs(res.weights.sum() - 1) < 1e-12


def test_bounded_risk_budgeting_on_the_device(xp, sample_returns):
    """The same Newton/QP path in the array namespace of the inputs (CuPy where a GPU exists)."""
    from tests.conftest import host
    from tests.transforms.gpu_testlib import assert_on_device, device

    S = np.cov(sample_returns, rowvar=False) * 252
    n = S.shape[0]
    lo, hi = np.where(np.arange(n) % 4 == 0, 0.02, 0.0), np.full(n, 0.035)
    want = pf.risk_budget_weights(S, min_weights=lo, max_weights=hi)
    got = pf.risk_budget_weights(device(xp, S), min_weights=device(xp, lo), max_weights=device(xp, hi))
    assert_on_device(xp, got, np.float64)
    np.testing.assert_allclose(host(got), want, rtol=0, atol=1e-12)
    _assert_bounded_risk_budget(host(got), S, lo, hi, np.full(n, 1 / n))
