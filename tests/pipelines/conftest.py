from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sp500_sample.parquet"
SHARED_SP500 = ROOT.parent / "shared" / "data" / "sp500_5yr" / "all_stocks_5yr.csv.gz"
SP500_COLUMNS = {"timestamp": "date", "symbol": "Name"}


def good_rows():
    """Six valid bars of two symbols, in standard columns."""
    return pd.DataFrame({
        "timestamp": ["2024-01-02", "2024-01-03", "2024-01-04"] * 2,
        "symbol": ["AAA"] * 3 + ["BBB"] * 3,
        "open": [10.0, 10.5, 10.2, 50.0, 51.0, 50.5],
        "high": [10.8, 10.9, 10.6, 51.5, 51.8, 51.0],
        "low": [9.9, 10.1, 10.0, 49.5, 50.2, 49.9],
        "close": [10.5, 10.2, 10.4, 51.0, 50.6, 50.1],
        "volume": [1000, 1100, 900, 500, 600, 550],
    })


@pytest.fixture
def rows():
    return good_rows()


@pytest.fixture
def write_csv(tmp_path):
    def write(frame, name="bars.csv"):
        path = tmp_path / name
        frame.to_csv(path, index=False)
        return path
    return write
