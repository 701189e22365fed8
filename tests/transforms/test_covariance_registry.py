"""The covariance registry (``COVARIANCE_ESTIMATORS``): each entry is its function, called with
the parameters it names; the portfolio config's ``covariance`` names are the registry's, an
unknown one is refused in one line listing them, and each entry's parameters are config keys."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import host
from tests.transforms.gpu_testlib import device
from alphapulse.pipelines.config import COVARIANCE_ESTIMATORS as CONFIG_NAMES
from alphapulse.pipelines.config import ConfigError, PortfolioConfig, parse_config
from alphapulse.transforms import covariance as cv

DIRECT = {  # each entry as a direct call, the parameters as the pipeline passes them
    "sample": lambda x, ppy: cv.sample_cov(x, periods_per_year=ppy),
    "ledoit_wolf": lambda x, ppy: cv.ledoit_wolf_cov(x, periods_per_year=ppy),
    "oas": lambda x, ppy: cv.oas_cov(x, periods_per_year=ppy),
    "ewma": lambda x, ppy: cv.ewma_cov(x, halflife=40.0, periods_per_year=ppy),
    "denoised": lambda x, ppy: cv.denoised_cov(x, periods_per_year=ppy),
}


def test_registry_names():
    assert list(cv.COVARIANCE_ESTIMATORS) == list(DIRECT) == list(CONFIG_NAMES)
    assert cv.COVARIANCE_ESTIMATORS["ewma"].params == ("halflife",)


@pytest.mark.parametrize("name", list(DIRECT))
def test_each_entry_equals_the_direct_call(xp, name):
    x = device(xp, np.random.default_rng(3).normal(0, 0.01, size=(200, 12)))
    spec = cv.COVARIANCE_ESTIMATORS[name]
    got = spec.function(x, periods_per_year=252, **{p: 40.0 for p in spec.params})
    np.testing.assert_array_equal(host(got), host(DIRECT[name](x, 252)))


@pytest.mark.parametrize("name", list(DIRECT))
def test_the_config_holds_each_entry_parameter(name):
    """The pipeline reads parameter ``p`` of estimator ``e`` from ``portfolio.<e>_<p>``."""
    for p in cv.COVARIANCE_ESTIMATORS[name].params:
        assert f"{name}_{p}" in PortfolioConfig.model_fields
    assert parse_config({"portfolio": {"covariance": name}}).portfolio.covariance == name


def test_the_config_refuses_an_unknown_estimator_in_one_line():
    with pytest.raises(ConfigError) as err:
        parse_config({"portfolio": {"covariance": "shrunk_sample"}})
    message = str(err.value)
    assert "\n" not in message and "portfolio.covariance" in message and "shrunk_sample" in message
    assert all(f"'{name}'" in message for name in cv.COVARIANCE_ESTIMATORS)
