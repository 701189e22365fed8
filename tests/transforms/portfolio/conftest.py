"""Data the portfolio tests share."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sp500_sample.parquet"


@pytest.fixture(scope="module")
def closes():
    """The bundled sample's closes, dates x symbols (NaN where a symbol has no bar)."""
    if not SAMPLE.exists():
        pytest.skip(f"bundled sample not found at {SAMPLE}")
    raw = pd.read_parquet(SAMPLE)
    wide = raw.pivot(index="date", columns="Name", values="close").sort_index()
    wide.index = pd.DatetimeIndex(wide.index)
    return wide
