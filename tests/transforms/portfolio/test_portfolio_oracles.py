"""alphapulse.transforms.portfolio (its optimisers and HRP) against PyPortfolioOpt 1.6 and skfolio 1.12 on real data.

Data: the bundled S&P 500 sample (data/sp500_sample.parquet: the 40 of its 50 symbols with a close
on every one of its 1,259 dates) and the full S&P 500 file (the 470 full-history symbols of
all_stocks_5yr.csv.gz; skipped when the file is absent). Daily simple returns of closes;
expected returns are their mean x 252, covariances the sample and the Ledoit-Wolf
(scikit-learn) estimates x 252.

Tolerances (what is asserted; measured figures in the report and docs/benchmarks.md):

- Mean-variance vs PyPortfolioOpt's EfficientFrontier solved by Clarabel at tight tolerances
  (1e-12 gaps and feasibility): weights within 1e-6 absolute (1e-5 for efficient_risk, whose
  reference solves a second-order cone program) and our objective at least as good as the
  reference's to 1e-9 relative (ours are KKT-certified to rounding, Clarabel's are not).
- HRP vs HRPOpt and HierarchicalRiskParity: weights within 1e-12 absolute and 1e-10 relative.
- Black-Litterman posterior returns and covariance, Idzorek's omega, bl_weights: 1e-12 relative.
- Risk budgeting vs skfolio's RiskBudgeting (variance, Clarabel at 1e-12): weights within 1e-8.

The tests of the optimisers take the ``xp`` fixture: moments go to the device, weights come
back with ``host`` and meet the same references at the same tolerances (NumPy always; CuPy where
a GPU exists, else skipped; the solvers are float64 on both, and polished to exact KKT points).
HRP is CPU-only (SciPy's linkage), so its comparisons run on NumPy alone.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import assert_on_device, device
from tests.transforms.indicator_testlib import SP500_CSV  # ALPHAPULSE_SP500_CSV where ../shared is absent
from alphapulse.transforms import portfolio as pf
from alphapulse.transforms.portfolio.hrp import hrp_weights

pypfopt = pytest.importorskip("pypfopt")
skfolio = pytest.importorskip("skfolio")

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"

CLARABEL = {"solver": "CLARABEL",
            "solver_options": {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12,
                               "tol_ktratio": 1e-10, "max_iter": 500}}
SKFOLIO_CLARABEL = {"tol_gap_abs": 1e-12, "tol_gap_rel": 1e-12, "tol_feas": 1e-12, "tol_ktratio": 1e-10}


def full_history_returns(path: Path) -> pd.DataFrame:
    """Daily simple returns (n_obs, n_assets) of the symbols with a close on every date."""
    raw = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    wide = raw.pivot(index="date", columns="Name", values="close").sort_index()
    wide = wide.loc[:, wide.notna().all()]
    return wide.pct_change().iloc[1:]


def moments(returns: pd.DataFrame) -> dict:
    from sklearn.covariance import LedoitWolf

    r = returns.to_numpy()
    return {"returns": returns, "names": list(returns.columns), "mu": r.mean(axis=0) * 252,
            "sample_cov": np.cov(r, rowvar=False) * 252,
            "lw_cov": LedoitWolf().fit(r).covariance_ * 252}


@pytest.fixture(scope="module")
def sample():
    if not SAMPLE.exists():
        pytest.skip(f"bundled sample not found at {SAMPLE}")
    return moments(full_history_returns(SAMPLE))


@pytest.fixture(scope="module")
def sp500():
    if not SP500_CSV.exists():
        pytest.skip(f"S&P 500 file not found at {SP500_CSV}")
    return moments(full_history_returns(SP500_CSV))


def test_data_shapes(sample, sp500):
    assert sample["returns"].shape == (1258, 40)
    assert sp500["returns"].shape == (1258, 470)


# ---------------------------------------------------------------------------------------------
# Mean-variance
# ---------------------------------------------------------------------------------------------

def _pypfopt_weights(mu, cov, objective, bounds, **kw):
    from pypfopt import EfficientFrontier

    ef = EfficientFrontier(mu, cov, weight_bounds=bounds, **CLARABEL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        getattr(ef, objective)(**kw)
    return np.asarray(ef.weights, dtype=float)


# (our function, PyPortfolioOpt method, our keywords, theirs, objective to compare, sense)
CASES = {
    "min_volatility": (lambda mu, S, **b: pf.min_variance_weights(S, **b), {}, "variance", -1),
    "max_sharpe": (lambda mu, S, **b: pf.max_sharpe_weights(mu, S, risk_free_rate=0.02, **b),
                   {"risk_free_rate": 0.02}, "sharpe", 1),
    "efficient_return": (lambda mu, S, **b: pf.efficient_return_weights(mu, S, target_return=0.22, **b),
                         {"target_return": 0.22}, "variance", -1),
    "efficient_risk": (lambda mu, S, **b: pf.efficient_risk_weights(mu, S, target_volatility=0.15, **b),
                       {"target_volatility": 0.15}, "return", 1),
    "max_quadratic_utility": (lambda mu, S, **b: pf.max_utility_weights(mu, S, risk_aversion=4.0, **b),
                              {"risk_aversion": 4.0}, "utility", 1),
}


def _objective(kind, w, mu, S):
    return {"variance": w @ S @ w, "sharpe": (w @ mu - 0.02) / np.sqrt(w @ S @ w), "return": w @ mu,
            "utility": w @ mu - 2.0 * w @ S @ w}[kind]


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (0.005, 0.08)], ids=["long_only", "bounded"])
@pytest.mark.parametrize("cov_name", ["sample_cov", "lw_cov"])
@pytest.mark.parametrize("objective", list(CASES))
def test_mean_variance_equals_pypfopt_on_sample(xp, sample, objective, cov_name, bounds):
    mu, S = sample["mu"], sample[cov_name]
    ours_fn, kw, kind, sense = CASES[objective]
    ours = ours_fn(device(xp, mu), device(xp, S), min_weights=bounds[0], max_weights=bounds[1])
    assert_on_device(xp, ours, np.float64)
    ours = host(ours)
    theirs = _pypfopt_weights(mu, S, objective, bounds, **kw)
    tol = 1e-5 if objective == "efficient_risk" else 1e-6
    assert np.abs(ours - theirs).max() < tol
    assert abs(ours.sum() - 1) < 1e-12
    assert (ours >= bounds[0]).all() and (ours <= bounds[1]).all()
    f_ours, f_theirs = _objective(kind, ours, mu, S), _objective(kind, theirs, mu, S)
    assert sense * (f_ours - f_theirs) >= -1e-9 * abs(f_theirs)
    if objective == "efficient_return":
        assert ours @ mu >= 0.22 - 1e-12
    if objective == "efficient_risk":
        assert np.sqrt(ours @ S @ ours) <= 0.15 * (1 + 1e-12)


@pytest.mark.parametrize("objective", ["min_volatility", "max_sharpe"])
def test_mean_variance_equals_pypfopt_at_470_assets(xp, sp500, objective):
    """The 470-asset problem on which PyPortfolioOpt's default solver (OSQP) stops max_sharpe
    with status user_limit; Clarabel at tight tolerances is the reference here."""
    mu, S = sp500["mu"], sp500["lw_cov"]
    ours_fn, kw, kind, sense = CASES[objective]
    ours = host(ours_fn(device(xp, mu), device(xp, S)))
    theirs = _pypfopt_weights(mu, S, objective, (0.0, 1.0), **kw)
    assert np.abs(ours - theirs).max() < 1e-6
    f_ours, f_theirs = _objective(kind, ours, mu, S), _objective(kind, theirs, mu, S)
    assert sense * (f_ours - f_theirs) >= -1e-9 * abs(f_theirs)


def test_max_sharpe_with_per_asset_bounds_equals_pypfopt(xp, sample):
    mu, S = sample["mu"], sample["lw_cov"]
    n = len(mu)
    lo = np.where(np.arange(n) % 5 == 0, 0.01, 0.0)
    hi = np.where(np.arange(n) % 3 == 0, 0.04, 0.15)
    ours = host(pf.max_sharpe_weights(*device(xp, (mu, S)), min_weights=device(xp, lo), max_weights=device(xp, hi)))
    theirs = _pypfopt_weights(mu, S, "max_sharpe", list(zip(lo, hi)))
    assert np.abs(ours - theirs).max() < 1e-6
    assert (ours >= lo).all() and (ours <= hi).all()


# ---------------------------------------------------------------------------------------------
# HRP
# ---------------------------------------------------------------------------------------------

def _skfolio_hrp(returns, linkage, **kw):
    from skfolio.cluster import HierarchicalClustering, LinkageMethod
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import HierarchicalRiskParity
    from skfolio.seriation import HierarchicalSeriation

    model = HierarchicalRiskParity(
        risk_measure=RiskMeasure.VARIANCE,
        seriation_estimator=HierarchicalSeriation(
            hierarchical_clustering_estimator=HierarchicalClustering(linkage_method=LinkageMethod[linkage.upper()]),
            optimal_ordering=False),
        **kw)
    return model.fit(returns).weights_


def _assert_same_weights(ours, theirs):
    assert np.abs(ours - theirs).max() < 1e-12
    assert np.abs(ours / theirs - 1).max() < 1e-10


@pytest.mark.parametrize("linkage", ["single", "ward", "complete", "average"])
def test_hrp_equals_pypfopt_and_skfolio_on_sample(sample, linkage):
    from pypfopt import HRPOpt

    returns = sample["returns"]
    ours = hrp_weights(np.cov(returns.to_numpy(), rowvar=False), linkage_method=linkage)
    ref = HRPOpt(returns)
    ref.optimize(linkage)
    _assert_same_weights(ours, np.asarray(ref.weights))
    _assert_same_weights(ours, _skfolio_hrp(returns.to_numpy(), linkage))
    assert abs(ours.sum() - 1) < 1e-12 and (ours > 0).all()


def test_hrp_from_a_covariance_matrix_equals_pypfopt(sample):
    """HRPOpt(cov_matrix=...) clusters on the correlation rounded to 6 decimals."""
    from pypfopt import HRPOpt

    S = sample["lw_cov"]
    names = sample["names"]
    ref = HRPOpt(cov_matrix=pd.DataFrame(S, index=names, columns=names))
    ref.optimize("single")
    sd = np.sqrt(np.diag(S))
    ours = hrp_weights(S, correlation=np.round(S / np.outer(sd, sd), 6))
    _assert_same_weights(ours, np.asarray(ref.weights))


def test_hrp_with_bounds_equals_skfolio(sample):
    returns = sample["returns"].to_numpy()
    n = returns.shape[1]
    lo = np.full(n, 0.01)
    hi = np.where(np.arange(n) % 4 == 0, 0.03, 0.06)
    ours = hrp_weights(np.cov(returns, rowvar=False), linkage_method="ward", min_weights=lo, max_weights=hi)
    theirs = _skfolio_hrp(returns, "ward", min_weights=lo, max_weights=hi)
    _assert_same_weights(ours, theirs)
    assert (ours >= lo - 1e-15).all() and (ours <= hi + 1e-15).all()


def test_hrp_equals_pypfopt_single_and_skfolio_ward_at_470_assets(sp500):
    from pypfopt import HRPOpt

    returns = sp500["returns"]
    cov = np.cov(returns.to_numpy(), rowvar=False)
    ref = HRPOpt(returns)
    ref.optimize("single")
    _assert_same_weights(hrp_weights(cov, linkage_method="single"), np.asarray(ref.weights))
    _assert_same_weights(hrp_weights(cov, linkage_method="ward"), _skfolio_hrp(returns.to_numpy(), "ward"))


# ---------------------------------------------------------------------------------------------
# Black-Litterman
# ---------------------------------------------------------------------------------------------

def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.abs(a - b).max() / np.abs(b).max()


@pytest.fixture(scope="module")
def bl_inputs(sample):
    from pypfopt import black_litterman as bl

    names, S = sample["names"], sample["lw_cov"]
    n = len(names)
    prices = (1 + sample["returns"]).cumprod().mean(axis=1)  # an equal-weight index as "the market"
    caps = np.linspace(1.0, 8.0, n)
    delta = pf.market_implied_risk_aversion(prices.to_numpy())
    assert delta == pytest.approx(bl.market_implied_risk_aversion(prices), rel=1e-13)
    S_df = pd.DataFrame(S, index=names, columns=names)
    pi = pf.market_implied_prior_returns(caps, S, risk_aversion=delta, risk_free_rate=0.01)
    pi_ref = bl.market_implied_prior_returns(pd.Series(caps, index=names), delta, S_df, risk_free_rate=0.01)
    assert _rel(pi, pi_ref.to_numpy()) < 1e-13
    return {"names": names, "S": S, "S_df": S_df, "delta": delta, "pi": pi, "pi_ref": pi_ref, "n": n}


def test_market_implied_risk_aversion_and_prior_equal_pypfopt(xp, sample, bl_inputs):
    """bl_inputs' two checks, with our side on the device."""
    from pypfopt import black_litterman as bl

    d = bl_inputs
    prices = (1 + sample["returns"]).cumprod().mean(axis=1)
    delta = pf.market_implied_risk_aversion(device(xp, prices.to_numpy()))
    assert isinstance(delta, float) and delta == pytest.approx(bl.market_implied_risk_aversion(prices), rel=1e-13)
    pi = pf.market_implied_prior_returns(device(xp, np.linspace(1.0, 8.0, d["n"])), device(xp, d["S"]),
                                         risk_aversion=d["delta"], risk_free_rate=0.01)
    assert_on_device(xp, pi, np.float64)
    assert _rel(host(pi), d["pi_ref"].to_numpy()) < 1e-13


def test_black_litterman_relative_views_idzorek_equal_pypfopt(xp, bl_inputs):
    from pypfopt import BlackLittermanModel

    d = bl_inputs
    d_S, d_pi = device(xp, (d["S"], d["pi"]))
    P = np.zeros((4, d["n"]))
    P[0, 0] = 1.0                              # absolute
    P[1, 1], P[1, 2] = 1.0, -1.0               # relative: asset 1 beats asset 2
    P[2, [3, 4]], P[2, 5] = 0.5, -1.0          # a basket against one asset
    P[3, 6] = 1.0
    Q = np.array([0.12, 0.03, -0.02, 0.05])
    conf = np.array([0.6, 0.25, 1.0, 0.0])     # includes certainty and no confidence
    for tau in (0.05, 0.5):
        ref = BlackLittermanModel(d["S_df"], pi=d["pi_ref"], Q=Q, P=P, omega="idzorek", view_confidences=conf,
                                  tau=tau, risk_aversion=d["delta"])
        d_P = device(xp, P)
        omega = pf.idzorek_omega(device(xp, conf), d_S, d_P, tau=tau)
        assert _rel(host(omega), ref.omega) < 1e-12
        post, post_cov = pf.black_litterman_posterior(d_pi, d_S, picking=d_P, views=device(xp, Q), omega=omega,
                                                      tau=tau)
        assert _rel(host(post), ref.bl_returns().to_numpy()) < 1e-12
        assert _rel(host(post_cov), ref.bl_cov().to_numpy()) < 1e-12
        ref.bl_weights(d["delta"])
        w = pf.black_litterman_weights(post, d_S, risk_aversion=d["delta"])
        assert_on_device(xp, w, np.float64)
        assert _rel(host(w), ref.weights) < 1e-12


def test_black_litterman_absolute_views_default_omega_and_bl_max_sharpe(xp, bl_inputs):
    from pypfopt import BlackLittermanModel, EfficientFrontier

    d = bl_inputs
    views = {d["names"][0]: 0.15, d["names"][9]: -0.05, d["names"][20]: 0.08}
    ref = BlackLittermanModel(d["S_df"], pi=d["pi_ref"], absolute_views=views, tau=0.1)
    P = pf.absolute_views_picking([0, 9, 20], n_assets=d["n"])
    view_values = list(views.values()) if xp is np else device(xp, np.array(list(views.values())))
    post, post_cov = pf.black_litterman_posterior(*device(xp, (d["pi"], d["S"])), picking=device(xp, P),
                                                  views=view_values, tau=0.1)
    assert _rel(host(post), ref.bl_returns().to_numpy()) < 1e-12
    assert _rel(host(post_cov), ref.bl_cov().to_numpy()) < 1e-12
    # Long-only BL portfolio through the mean-variance solver, against EfficientFrontier on the posterior.
    ef = EfficientFrontier(ref.bl_returns(), ref.bl_cov(), **CLARABEL)
    ef.max_sharpe(risk_free_rate=0.01)
    ours = host(pf.max_sharpe_weights(post, post_cov, risk_free_rate=0.01))
    assert np.abs(ours - np.asarray(ef.weights)).max() < 1e-6


# ---------------------------------------------------------------------------------------------
# Risk budgeting
# ---------------------------------------------------------------------------------------------

def _skfolio_risk_budgeting(returns, budgets=None):
    from skfolio.measures import RiskMeasure
    from skfolio.optimization import RiskBudgeting

    model = RiskBudgeting(risk_measure=RiskMeasure.VARIANCE, risk_budget=budgets, solver_params=SKFOLIO_CLARABEL)
    with warnings.catch_warnings():  # "may be inaccurate" at 1e-12: the weights agree to 1e-8 all the same
        warnings.simplefilter("ignore")
        model.fit(returns)
    return model.weights_, model.prior_estimator_.return_distribution_.covariance


@pytest.mark.parametrize("budgets", ["equal", "custom"])
def test_risk_budgeting_equals_skfolio_on_sample(xp, sample, budgets):
    returns = sample["returns"].to_numpy()
    b = None if budgets == "equal" else np.linspace(1.0, 4.0, returns.shape[1])
    theirs, S = _skfolio_risk_budgeting(returns, b)
    d_S = device(xp, S)
    d_ours = pf.risk_budget_weights(d_S, risk_budgets=None if b is None else device(xp, b))
    ours, rc = host(d_ours), host(pf.risk_contributions(d_ours, d_S))
    assert np.abs(ours - theirs).max() < 1e-8
    target = np.full(len(ours), 1 / len(ours)) if b is None else b / b.sum()
    assert np.abs(rc - target).max() < 1e-12


def test_risk_parity_equals_skfolio_at_470_assets(xp, sp500):
    theirs, S = _skfolio_risk_budgeting(sp500["returns"].to_numpy())
    d_S = device(xp, S)
    d_ours = pf.risk_budget_weights(d_S)
    ours, rc = host(d_ours), host(pf.risk_contributions(d_ours, d_S))
    assert np.abs(ours - theirs).max() < 1e-8
    assert np.abs(rc - 1 / 470).max() < 1e-12
