"""Fixtures for the transforms tests: real and synthetic bar panels."""
from __future__ import annotations

import numpy as np
import pytest

from tests.transforms.indicator_testlib import SAMPLE, SP500_CSV, load_sp500, synthetic_long, to_panel


@pytest.fixture(scope="session")
def sp500_long():
    """The full S&P 500 5-year daily bars (505 symbols, late listings, gaps after cleaning)."""
    long = load_sp500(SP500_CSV)
    if long is None:
        pytest.skip(f"S&P 500 file not found at {SP500_CSV} (set ALPHAPULSE_SP500_CSV to its path)")
    return long


@pytest.fixture(scope="session")
def sample_long():
    """The bundled 50-symbol S&P 500 sample (real vendor glitches, gaps, late listings)."""
    long = load_sp500(SAMPLE)
    if long is None:
        pytest.skip(f"bundled sample not found at {SAMPLE}")
    return long


@pytest.fixture(scope="session")
def synthetic_bars():
    """Seeded synthetic bars: late listings, delistings, interior gaps, flat stretches."""
    return synthetic_long()


_SOURCES = {"sp500": "sp500_long", "sample": "sample_long", "synthetic": "synthetic_bars"}


@pytest.fixture(scope="session", params=list(_SOURCES))
def dataset(request):
    """(name, symbols, float64 F-ordered panel) for each data set."""
    long = request.getfixturevalue(_SOURCES[request.param])
    symbols, panel = to_panel(long, np.float64)
    return request.param, symbols, panel
