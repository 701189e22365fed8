"""The optimiser registry (``OPTIMISERS``): each entry through ``optimise_with_fallback`` equals
the direct call of its optimiser; Black-Litterman is an entry taking its views, max-Sharpe of
the posterior, with the same chain; the config's ``methods`` are the registry's names."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from alphapulse.pipelines.config import PORTFOLIO_METHODS, ConfigError, parse_config
from alphapulse.transforms import portfolio as pf
from alphapulse.transforms.portfolio import black_litterman as bl


def moments(n=8, seed=5):
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 0.01, size=(300, n))
    return np.cov(a, rowvar=False) * 252, a.mean(axis=0) * 252 + 0.02


BOX = dict(min_weights=0.0, max_weights=0.4, max_iterations=100)
DIRECT = {
    "min_variance": lambda S, mu: pf.min_variance_weights(S, **BOX),
    "max_sharpe": lambda S, mu: pf.max_sharpe_weights(mu, S, risk_free_rate=0.01, **BOX),
    # HRP runs on the host (SciPy's linkage): the registry's entry copies a device covariance there
    "hrp": lambda S, mu: pf.hrp_weights(host(S), linkage_method="single", min_weights=0.0, max_weights=0.4),
    "risk_parity": lambda S, mu: pf.risk_budget_weights(S, risk_budgets=None, **BOX),
    "efficient_return": lambda S, mu: pf.efficient_return_weights(mu, S, target_return=0.05, **BOX),
    "efficient_risk": lambda S, mu: pf.efficient_risk_weights(mu, S, target_volatility=0.1, **BOX),
    "max_utility": lambda S, mu: pf.max_utility_weights(mu, S, risk_aversion=2.0, **BOX),
    "equal_weight": lambda S, mu: np.full(S.shape[0], 1.0 / S.shape[0]),
}
OPTIONS = dict(risk_free_rate=0.01, target_return=0.05, target_volatility=0.1, risk_aversion=2.0,
               min_weights=0.0, max_weights=0.4)


def test_registry_names_are_the_config_methods():
    assert PORTFOLIO_METHODS == pf.OPTIMISER_METHODS == tuple(pf.OPTIMISERS)
    assert set(pf.OPTIMISERS) == set(DIRECT) | {"black_litterman"}
    with pytest.raises(ConfigError, match="black_litterman"):
        parse_config({"portfolio": {"methods": ["black_litterman", "max_diversification"]}})


@pytest.mark.parametrize("name", list(DIRECT))
def test_each_entry_equals_the_direct_call(xp, name):
    S, mu = moments()
    res = pf.optimise_with_fallback(name, covariance=device(xp, S), expected_returns=device(xp, mu), **OPTIONS)
    assert [a.method for a in res.attempts] == [name] and res.method == name
    np.testing.assert_array_equal(host(res.weights), host(DIRECT[name](device(xp, S), device(xp, mu))))


@pytest.mark.parametrize("confidences", [None, (0.6, 0.3), (0.6, None)], ids=["he-litterman", "idzorek", "mixed"])
def test_black_litterman_entry_is_max_sharpe_of_the_posterior(xp, confidences):
    S, mu = moments()
    P = np.zeros((2, 8))
    P[0, 1], P[1, 2], P[1, 5] = 1.0, 1.0, -1.0
    Q = np.array([0.15, 0.03])
    views = bl.BlackLittermanViews(device(xp, P), device(xp, Q), confidences, tau=0.1, risk_aversion=2.5)
    res = pf.optimise_with_fallback("black_litterman", covariance=device(xp, S), expected_returns=device(xp, mu),
                                    views=views, **OPTIONS)
    # the direct computation: the equal-weight market prior, the views' omega, the posterior, max-Sharpe
    prior = bl.market_implied_prior_returns(np.full(8, 1 / 8), S, risk_aversion=2.5, risk_free_rate=0.01)
    omega = (bl.idzorek_omega(np.array(confidences, dtype=float), S, P, tau=0.1) if confidences and all(confidences)
             else bl.default_omega(S, P, tau=0.1))
    post_mu, post_cov = bl.black_litterman_posterior(prior, S, picking=P, views=Q, omega=omega, tau=0.1)
    want = pf.max_sharpe_weights(post_mu, post_cov, risk_free_rate=0.01, **BOX)
    assert [a.method for a in res.attempts] == ["max_sharpe"]  # the chain the report records
    np.testing.assert_allclose(host(res.weights), want, rtol=0, atol=1e-12)
    if xp is np:
        np.testing.assert_array_equal(res.weights, want)


def test_black_litterman_without_views_is_the_prior_and_falls_back_like_max_sharpe():
    S, mu = moments()
    prior = bl.market_implied_prior_returns(np.full(8, 1 / 8), S, risk_aversion=1.0, risk_free_rate=0.0)
    res = pf.optimise_with_fallback("black_litterman", covariance=S, expected_returns=mu)
    np.testing.assert_array_equal(res.weights, pf.max_sharpe_weights(prior, S))
    # infeasible bounds (8 assets at most 1% each): the chain goes on as max-Sharpe's would, on the posterior
    views = bl.BlackLittermanViews(np.eye(8)[:1], np.array([0.2]), tau=0.1)
    failed = pf.optimise_with_fallback("black_litterman", covariance=S, expected_returns=mu, max_weights=0.01,
                                       views=views)
    post_mu, post_cov = bl.black_litterman_moments(S, views)
    direct = pf.optimise_with_fallback("max_sharpe", covariance=post_cov, expected_returns=post_mu, max_weights=0.01)
    assert failed.fell_back and failed.attempts == direct.attempts and failed.method == "equal_weight"
    assert [a.method for a in failed.attempts] == ["max_sharpe", "min_variance", "hrp", "equal_weight"]
    np.testing.assert_array_equal(failed.weights, direct.weights)
